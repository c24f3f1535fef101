import DataMesherCore
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `file watch --exec` against a real daemon: debounced runs, one at a time, failures survived,
/// and a daemon restart followed.
@Suite struct WatchTests {
    @Test func watchRunsTheCommandAfterChangesAndFollowsARestart() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try TestKey(dir: dir, name: "owner")
        let daemon = try Daemon(files: ["config:app": [key.base64], "other": [key.base64]])
        defer { daemon.cleanUp() }
        try daemon.start()

        // The command logs each run (with overlap detection) and fails, which must not stop watching.
        let runs = dir + "/runs"
        let script = """
            if [ -e \(dir)/running ]; then echo overlap >> \(runs); fi
            touch \(dir)/running; echo "$DM_EVENT $DM_FILES" >> \(runs); sleep 0.5; rm \(dir)/running; exit 3
            """
        let watch = Process()
        watch.executableURL = URL(fileURLWithPath: Binary.path)
        watch.arguments = ["file", "watch", "config:app", "--url", daemon.url, "--exec", script, "--debounce", "200ms"]
        let output = Pipe()
        watch.standardOutput = output
        watch.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try watch.run()
        defer {
            if watch.isRunning { kill(watch.processIdentifier, SIGKILL) }
            watch.waitUntilExit()
        }
        let lines = { ((try? String(contentsOfFile: runs, encoding: .utf8)) ?? "").split(separator: "\n") }
        usleep(1_000_000)

        func upload(_ name: String, _ text: String) throws {
            let bytes = Array(text.utf8)
            let reply = try HTTP.put(daemon, try key.sign(name, bytes, at: nowNanoseconds()), bytes)
            #expect(reply.status == 201, "\(reply.text)")
        }
        // A burst of three versions: debounced into one run, or at most one more after it.
        for round in 0..<3 { try upload("config:app", "burst \(round)") }
        #expect(eventually(30) { lines().count >= 1 })
        usleep(1_500_000)
        #expect((1...2).contains(lines().count), "\(lines())")
        // An unwatched name runs nothing.
        let before = lines().count
        try upload("other", "not watched")
        usleep(1_500_000)
        #expect(lines().count == before)

        // The daemon restarts; watch reconnects and runs again on the next change.
        daemon.stop()
        try daemon.start()
        usleep(3_000_000)
        try upload("config:app", "after the restart")
        #expect(eventually(30) { lines().count > before }, "\(lines())")
        #expect(lines().allSatisfy { $0 == "accepted config:app" }, "\(lines())")
        #expect(watch.isRunning)
    }

    /// A daemon killed right after a change and started again, with nothing changed meanwhile:
    /// watch must not report the name as changed "while disconnected", nor run the command.
    @Test func aRestartWithoutChangesRunsNothing() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try TestKey(dir: dir, name: "owner")
        let daemon = try Daemon(files: ["config:app": [key.base64], "marker": [key.base64]])
        defer { daemon.cleanUp() }
        try daemon.start()

        let runs = dir + "/runs"
        let out = dir + "/watch.out"
        FileManager.default.createFile(atPath: out, contents: nil)
        let watch = Process()
        watch.executableURL = URL(fileURLWithPath: Binary.path)
        watch.arguments = [
            "file", "watch", "config:app", "marker", "--url", daemon.url, "--exec",
            "echo \"$DM_EVENT $DM_FILES\" >> \(runs)", "--debounce", "100ms",
        ]
        watch.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        watch.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try watch.run()
        defer {
            if watch.isRunning { kill(watch.processIdentifier, SIGKILL) }
            watch.waitUntilExit()
        }
        let runLines = { ((try? String(contentsOfFile: runs, encoding: .utf8)) ?? "").split(separator: "\n") }
        let printed = { ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n") }
        func upload(_ name: String) throws -> Int64 {
            let bytes = Array("\(name) \(nowNanoseconds())".utf8)
            let timestamp = nowNanoseconds()
            let reply = try HTTP.put(daemon, try key.sign(name, bytes, at: timestamp), bytes)
            #expect(reply.status == 201, "\(reply.text)")
            return timestamp
        }
        // Uploads `name` until one of its versions shows up live in watch's output: from then
        // on watch is subscribed, and the comparison it makes on (re)connecting is done.
        func uploadUntilSeenLive(_ name: String) -> Bool {
            eventually(60) {
                guard let timestamp = try? upload(name) else { return false }
                return eventually(2) { printed().contains { $0 == "accepted \(name) \(timestamp)" } }
            }
        }
        #expect(uploadUntilSeenLive("config:app"), "\(printed())")
        #expect(eventually(30) { runLines().contains { $0.contains("config:app") } }, "\(runLines())")
        let appRuns = runLines().filter { $0.contains("config:app") }.count

        // Killed: the stream ends and the refresh after it fails; then the same state returns.
        daemon.stop(signal: SIGKILL)
        try daemon.start()
        #expect(uploadUntilSeenLive("marker"), "\(printed())")
        // The bug this guards against: config:app reported (and the command run) as changed
        // "while disconnected" although the node came back with the version watch had seen.
        #expect(!printed().contains { $0.contains("config:app (while disconnected)") }, "\(printed())")
        #expect(eventually(30) { runLines().contains { $0.contains("marker") } }, "\(runLines())")
        #expect(runLines().filter { $0.contains("config:app") }.count == appRuns, "\(runLines())")
        #expect(watch.isRunning)
    }
}
