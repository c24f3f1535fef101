import ArgumentParser
import AsyncHTTPClient
import DataMesherCore
import DataMesherHTTP
import DataMesherNet
import Foundation
import NIOCore

struct FileWatch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Follow changes of files on a node; optionally run a command after each change.",
        discussion: """
            Prints one line per change (KIND NAME TIMESTAMP; --json: the event's JSON), or with --exec runs \
            CMD through /bin/sh after a change, debounced, never two at once; CMD sees DM_FILES (the names \
            that changed, space-separated), DM_FILE (the last one) and DM_EVENT (accepted, deleted or \
            expired). A failing CMD is reported and watching goes on. When the node restarts, watch \
            reconnects and catches up with what changed meanwhile. A name the node is not configured for \
            is refused at start.
            """
    )

    @Argument(help: "The file names to watch.")
    var names: [String]

    @OptionGroup var server: ServerURL

    @Option(help: "A shell command to run after changes.")
    var exec: String?

    @Option(help: "Wait this long after a change for more before running the command.")
    var debounce: String = "250ms"

    @Flag(help: "Run the command once at start when a watched file is present.")
    var initial = false

    @Flag(help: "Print each change as the event's JSON.")
    var json = false

    func run() async throws {
        try await reportingErrors {
            let watched = Set(try names.map { try parseName($0).value })
            guard !watched.isEmpty else { throw CLIError("name at least one file to watch") }
            let delay: UInt64
            do { delay = try DurationFormat.parse(debounce) } catch { throw CLIError("--debounce: \(error)") }
            let client = try APIClient(url: server.url)
            try await refuseUnconfigured(watched, client: client)
            let runner = ChangeRunner(command: exec, debounce: .nanoseconds(Int64(clamping: delay)), json: json)
            var known: [String: SeenVersion]? = nil
            var failures = 0
            while true {
                do {
                    try await follow(client: client, watched: watched, runner: runner, known: &known)
                    warn("the node closed the event stream; reconnecting")
                    failures = 0
                } catch let error as CLIError {
                    failures += 1
                    if failures == 1 || failures % 30 == 0 { warn("\(error.description); retrying") }
                }
                try await Task.sleep(for: .seconds(min(5, failures + 1)))
            }
        }
    }

    /// Fails naming the first watched name the node says it is not configured for (it would
    /// never change there). A node that cannot be reached now is left to the reconnecting loop.
    func refuseUnconfigured(_ watched: Set<String>, client: APIClient) async throws {
        for name in watched.sorted() {
            guard let reply = try? await client.send(.GET, "/v1/status/" + name) else { return }
            if reply.status == 404 {
                throw CLIError("cannot watch \"\(name)\": \(APIClient.reason(reply))")
            }
        }
    }

    /// Subscribes to events, then compares the file list with what was known (catching up on
    /// changes missed while disconnected), then hands every change of a watched file on.
    func follow(
        client: APIClient, watched: Set<String>, runner: ChangeRunner, known: inout [String: SeenVersion]?
    ) async throws {
        try await client.withClient { http in
            let response = try await http.execute(
                client.request(.GET, "/v1/events", headers: [], body: nil), timeout: .hours(24 * 365))
            guard response.status == .ok else {
                throw CLIError("the node answered \(response.status.code) to GET /v1/events")
            }
            let list = try client.decode([FileEntryJSON].self, try await client.send(.GET, "/v1/files"))
            let now = SeenVersion.map(list, watched: watched)
            if let before = known {
                for name in watched.sorted() where before[name] != now[name] {
                    let kind = now[name].map { $0.expired ? "expired" : "accepted" } ?? "deleted"
                    await runner.changed(name: name, kind: kind, line: "\(kind) \(name) (while disconnected)")
                }
            } else if initial, let present = watched.sorted().first(where: { now[$0].map { !$0.expired } ?? false }) {
                await runner.changed(name: present, kind: "accepted", line: nil)
            }
            known = now
            var parser = EventStreamParser()
            for try await chunk in response.body {
                for event in parser.feed(chunk) {
                    guard let name = event.name, watched.contains(name),
                        [.accepted, .deleted, .expired].contains(event.kind)
                    else { continue }
                    // What the node holds after this event, so a reconnect that finds the same
                    // does not count it again (even when the node went down right after it).
                    known?[name] = SeenVersion(event: event)
                    let line =
                        json
                        ? String(event.serverSentEvent.split(separator: "\n")[1].dropFirst("data: ".count))
                        : "\(event.kind.rawValue) \(name) \(event.timestamp ?? 0)"
                    await runner.changed(name: name, kind: event.kind.rawValue, line: line)
                }
            }
            // Remember the list as it is now, so a reconnect compares against the latest state.
            if let latest = try? client.decode([FileEntryJSON].self, try await client.send(.GET, "/v1/files")) {
                known = SeenVersion.map(latest, watched: watched)
            }
        }
    }
}

/// The version of a watched name that the node holds, as far as `watch` tells changes apart: a
/// name without one (never uploaded, deleted, or its tombstone forgotten) has none.
struct SeenVersion: Equatable {
    var timestamp: Int64
    var sha256: String
    var expired: Bool

    init?(entry: FileEntryJSON) {
        guard !entry.deleted else { return nil }
        timestamp = entry.timestamp
        sha256 = entry.sha256
        expired = entry.expired
    }

    /// From a live event; an event that lacks the version's fields gives nil, so the next
    /// reconnect compares against "nothing" and reports the name (as before this existed).
    init?(event: NodeEvent) {
        guard event.kind == .accepted || event.kind == .expired, let timestamp = event.timestamp,
            let sha256 = event.sha256
        else { return nil }
        self.timestamp = timestamp
        self.sha256 = sha256
        expired = event.kind == .expired
    }

    static func map(_ list: [FileEntryJSON], watched: Set<String>) -> [String: SeenVersion] {
        var out: [String: SeenVersion] = [:]
        for entry in list where watched.contains(entry.name) { out[entry.name] = SeenVersion(entry: entry) }
        return out
    }
}

func warn(_ message: String) {
    StandardStreams.error("data-mesher watch: \(message)\n")
}

/// Splits a `text/event-stream` into events (`event:`/`data:` lines ended by a blank line).
struct EventStreamParser {
    var buffer: [UInt8] = []
    var data = ""
    static let maxLine = 1 << 20

    mutating func feed(_ chunk: ByteBuffer) -> [NodeEvent] {
        var events: [NodeEvent] = []
        buffer += chunk.readableBytesView
        while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
            let line = String(decoding: buffer[..<newline], as: UTF8.self)
            buffer.removeSubrange(...newline)
            if line.isEmpty {
                if let event = try? JSONDecoder().decode(NodeEvent.self, from: Data(data.utf8)) { events.append(event) }
                data = ""
            } else if line.hasPrefix("data:") {
                data += line.dropFirst(5).drop(while: { $0 == " " })
            }
        }
        if buffer.count > Self.maxLine { buffer.removeAll() }
        return events
    }
}

/// Runs the command after changes: debounced, one run at a time, a change during a run causes
/// one more run after it.
actor ChangeRunner {
    let command: String?
    let debounce: Duration
    let json: Bool
    var pending: [(name: String, kind: String)] = []
    var scheduled = false
    var running = false
    /// False once stdout failed.
    var printing = true

    init(command: String?, debounce: Duration, json: Bool) {
        self.command = command
        self.debounce = debounce
        self.json = json
    }

    func changed(name: String, kind: String, line: String?) {
        // Unbuffered, so a pipe sees each change at once.
        if let line, printing, let code = StandardStreams.write(line + "\n", to: STDOUT_FILENO) {
            // Nobody reads the lines any more (a closed pipe, a full disk): done, unless there is
            // a command to run for each change.
            guard command != nil else { Foundation.exit(StandardStreams.outputFailed(code).rawValue) }
            warn("cannot write stdout (\(String(cString: strerror(code)))); running the command only")
            printing = false
        }
        guard command != nil else { return }
        pending.append((name, kind))
        schedule()
    }

    func schedule() {
        guard !scheduled, !running, !pending.isEmpty else { return }
        scheduled = true
        Task {
            try? await Task.sleep(for: debounce)
            await self.fire()
        }
    }

    func fire() async {
        scheduled = false
        guard let command, let last = pending.last else { return }
        var names: [String] = []
        for change in pending where !names.contains(change.name) { names.append(change.name) }
        pending = []
        running = true
        let status = await Self.run(
            command,
            environment: ["DM_FILES": names.joined(separator: " "), "DM_FILE": last.name, "DM_EVENT": last.kind])
        if status != 0 { warn("command exited with status \(status) (after \(names.joined(separator: ", ")))") }
        running = false
        schedule()
    }

    static func run(_ command: String, environment: [String: String]) async -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        return await withCheckedContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch {
                process.terminationHandler = nil
                warn("cannot run /bin/sh: \(error)")
                continuation.resume(returning: 127)
            }
        }
    }
}
