import ArgumentParser
import AsyncHTTPClient
import Crypto
import DataMesherCore
import DataMesherHTTP
import DataMesherKeys
import DataMesherNet
import DataMesherStore
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

struct FileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "file",
        abstract: "Upload, delete, list and fetch signed files.",
        subcommands: [
            FileUpdate.self, FileDelete.self, FileList.self, FileGet.self, FileStatus.self, FileWatch.self,
        ]
    )
}

struct ServerURL: ParsableArguments {
    @Option(help: "The node's HTTP API.")
    var url: String = "http://localhost:7331"
}

struct SigningOptions: ParsableArguments {
    @Option(name: [.customLong("key"), .customLong("key-path")], help: "Private signing key (PKCS#8 PEM).")
    var key: String

    @Option(help: "Network ID signed into the file (default: the node's own).")
    var networkId: String?

    func loadKey() throws -> Curve25519.Signing.PrivateKey { try KeyFile.readPrivateKey(path: key) }

    /// The explicit network ID, or the one the node reports.
    func networkID(client: APIClient) async throws -> String {
        if let networkId { return networkId }
        return try await NodeFacts.ask(client).network_id
    }

    /// The fields of `/v1/info` (`InfoJSON`) an upload needs: decoding only them spares a short
    /// `file update` the set-up of InfoJSON's nested types.
    struct NodeFacts: Decodable {
        let network_id: String
        /// Absent from nodes older than `api_features` itself.
        let api_features: [String]?

        static func ask(_ client: APIClient) async throws -> NodeFacts {
            try client.decode(NodeFacts.self, try await client.send(.GET, "/v1/info"))
        }
    }
}

/// Signed-upload headers for a version.
func signedHeaders(_ version: FileVersion) -> [(String, String)] {
    signedHeaders(
        signer: version.signer, signature: Base64.encode(version.signature), timestamp: version.timestamp,
        validFor: version.validFor)
}

/// Signed-upload headers; `signature` is the base64 signature, or `after-body`.
func signedHeaders(signer: SignerKey, signature: String, timestamp: Int64, validFor: UInt64) -> [(String, String)] {
    [
        ("DM-Signer", signer.base64), ("DM-Signature", signature), ("DM-Timestamp", String(timestamp)),
        ("DM-Valid-For", String(validFor)),
    ]
}

/// Hashes a file and signs it on a thread of NIO's pool while `sendfile` sends it, for an upload
/// whose signature follows the content (`DM-Signature: after-body`); the sending thread waits for
/// the signature once the content is sent.
final class SignerWhileSending: Sendable {
    let signer: SignerKey
    let timestamp: Int64
    let validFor: UInt64
    private let result = NIOLockedValueBox<Result<FileVersion, CLIError>?>(nil)
    /// 1 once `result` is set.
    private let done = ConditionLock(value: 0)

    init(
        _ file: ContentReader, path: String, networkID: String, name: FileName, timestamp: Int64, validFor: UInt64,
        key: Curve25519.Signing.PrivateKey
    ) throws {
        signer = try SignerKey(bytes: Array(key.publicKey.rawRepresentation))
        self.timestamp = timestamp
        self.validFor = validFor
        let keyBytes = Array(key.rawRepresentation)  // the key type is not Sendable
        NIOThreadPool.singleton.submit { [self] state in
            let outcome: Result<FileVersion, CLIError>
            do {
                guard state == .active else { throw CLIError("the CLI is shutting down") }
                let digest = try DiskIO.hash(fd: file.fd, path: path)
                guard digest.length == UInt64(file.length) else { throw CLIError.fileChangedWhileUploading }
                outcome = .success(
                    try FileVersion.sign(
                        kind: .content, networkID: networkID, name: name, timestamp: timestamp, validFor: validFor,
                        contentSHA256: digest.sha256, contentLength: digest.length,
                        key: try Curve25519.Signing.PrivateKey(rawRepresentation: keyBytes)))
            } catch let error as CLIError {
                outcome = .failure(error)
            } catch {
                outcome = .failure(CLIError("cannot read \(path): \(error)"))
            }
            result.withLockedValue { $0 = outcome }
            done.lock()
            done.unlock(withValue: 1)
        }
    }

    /// The signed version, once the file is hashed (blocks until then).
    func version() throws -> FileVersion {
        done.lock(whenValue: 1)
        done.unlock()
        return try result.withLockedValue { $0 ?? .failure(CLIError("the file was not hashed")) }.get()
    }
}

func parseName(_ text: String) throws -> FileName {
    do { return try FileName(text) } catch { throw CLIError("\(error)") }
}

func summary(_ entry: FileEntryJSON) -> String {
    let state =
        entry.deleted
        ? "deleted" : entry.expired ? "expired" : entry.missing == true ? "missing (damaged)" : "\(entry.size) bytes"
    return "\(entry.name): \(state), sha256 \(entry.sha256.prefix(16))…, timestamp \(entry.timestamp)"
}

struct FileUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update",
        abstract: "Sign a file and upload it as the newest version of NAME."
    )

    @Argument(help: "The file to upload.")
    var path: String

    @OptionGroup var server: ServerURL
    @OptionGroup var signing: SigningOptions

    @Option(help: "The name to store it under (default: the file's base name).")
    var name: String?

    // Unconditional: a value such as "-5s" is this option's (and refused as a duration) rather
    // than an unknown option that leaves --valid-for without a value.
    @Option(parsing: .unconditional, help: "How long the version is valid, e.g. 10m or 24h (default: forever).")
    var validFor: String?

    @Option(
        help: ArgumentHelp(
            "Wait until the version is held by every live member configured for the name (all), or by N members; stops at once, saying why, when members that refuse it leave too few.",
            valueName: "all|N"))
    var wait: String?

    @Option(help: "How long --wait waits, e.g. 30s.")
    var timeout: String = "30s"

    func validate() throws {
        if let wait, wait != "all", Int(wait).map({ $0 < 1 }) ?? true {
            throw ValidationError("--wait takes \"all\" or a number of members (1 or more), not \"\(wait)\"")
        }
        do { _ = try DurationFormat.parse(timeout) } catch { throw ValidationError("--timeout: \(error)") }
    }

    func run() async throws {
        try await reportingErrors {
            let key = try signing.loadKey()
            let name = try parseName(self.name ?? URL(fileURLWithPath: path).lastPathComponent)
            var validForNanoseconds: UInt64 = 0
            if let validFor {
                do { validForNanoseconds = try DurationFormat.parse(validFor) } catch {
                    throw CLIError("--valid-for: \(error)")
                }
            }
            let file = try Self.openFile(path)
            try await upload(
                file, as: name, validFor: validForNanoseconds, key: key, client: APIClient(url: server.url))
        }
    }

    /// Files up to this size are read and hashed in one piece on the calling thread and sent
    /// from memory. Larger ones go to an `http://` node with `sendfile` while a pool thread
    /// hashes and signs them, the signature after the content (`SignerWhileSending`); to a node
    /// that does not take that, or over `https://`, they are hashed first and then sent.
    static let smallFile = 64 << 10

    func upload(
        _ file: ContentReader, as name: FileName, validFor validForNanoseconds: UInt64,
        key: Curve25519.Signing.PrivateKey, client: APIClient
    ) async throws {
        let length = file.length
        let unchanged = ContentIdentity(fd: file.fd)
        let progress = ProgressBar.make("upload \(name)", total: length)
        let version: () throws -> FileVersion
        let reply: APIClient.Reply
        // A file over `smallFile` goes to an `http://` node that takes it so while it is hashed.
        // With --network-id, a node that does not answer `/v1/info` still takes the upload the
        // other way.
        var node: SigningOptions.NodeFacts? = nil
        if length > Self.smallFile, client.plain != nil {
            node = signing.networkId == nil ? try await .ask(client) : try? await .ask(client)
        }
        if let node, node.api_features?.contains(InfoJSON.Feature.signatureAfterBody) == true {
            // Sent while it is hashed: the signature follows the content.
            let signer = try SignerWhileSending(
                file, path: path, networkID: signing.networkId ?? node.network_id, name: name,
                timestamp: WallClock.now(), validFor: validForNanoseconds, key: key)
            version = signer.version
            let headers = signedHeaders(
                signer: signer.signer, signature: API.signatureAfterBody, timestamp: signer.timestamp,
                validFor: signer.validFor)
            reply = try await client.send(
                .PUT, "/v1/files/" + name.value, headers: headers + [("Content-Type", "application/octet-stream")],
                body: .fileThenSignature(file, progress: progress, signer: signer))
        } else {
            let signed = try await hashAndSign(
                file, as: name, validFor: validForNanoseconds, key: key,
                networkID: signing.networkId ?? node?.network_id, client: client)
            version = { signed.version }
            reply = try await client.send(
                .PUT, "/v1/files/" + name.value,
                headers: signedHeaders(signed.version) + [("Content-Type", "application/octet-stream")],
                body: signed.inMemory.map { PlainHTTP.Body.bytes($0) } ?? .file(file, progress: progress))
        }
        progress?.finish()
        guard reply.status == 201 || reply.status == 200 else {
            // A file written to while it was hashed and sent fails its own signature: say so.
            if reply.status == 403, ContentIdentity(fd: file.fd) != unchanged {
                throw CLIError.fileChangedWhileUploading
            }
            var message = "the node refused \"\(name)\" (\(reply.status)): \(APIClient.reason(reply))"
            if reply.status == 403, APIClient.reason(reply).contains("is not configured") {
                message += await Self.configuredNamesHint(client: client, defaulted: self.name == nil)
            }
            throw CLIError(message)
        }
        let entry = try? JSONDecoder().decode(FileEntryJSON.self, from: Data(reply.body))
        print("stored " + (entry.map(summary) ?? name.value))
        fflush(nil)  // shown before a --wait, also when stdout is a pipe
        if let wait {
            try await waitUntilHeld(
                name, version: try version(), by: wait == "all" ? nil : Int(wait), client: client,
                timeout: (try? DurationFormat.parse(timeout)) ?? 30_000_000_000)
        }
    }

    /// Hashes the file, then signs it: the version to send, and the content when it is small
    /// enough to be sent from memory. The network ID is asked of the node unless `known`.
    func hashAndSign(
        _ file: ContentReader, as name: FileName, validFor validForNanoseconds: UInt64,
        key: Curve25519.Signing.PrivateKey, networkID known: String?, client: APIClient
    ) async throws -> (version: FileVersion, inMemory: ByteBuffer?) {
        let length = file.length
        let sha256: [UInt8]
        let networkID: String
        var inMemory: ByteBuffer? = nil
        let signing = self.signing
        @Sendable func askedNetworkID() async throws -> String {
            if let known { return known }
            return try await signing.networkID(client: client)
        }
        if length <= Self.smallFile {
            // Read and hashed in microseconds: not worth a second task asking for the network ID
            // meanwhile (it would wake a second thread).
            let bytes = try await readingErrors {
                let bytes = try file.read(at: 0, upTo: length)
                guard bytes.readableBytes == length else { throw ContentReader.Shrank() }
                return bytes
            }
            sha256 = Upload.sha256(of: bytes)
            inMemory = bytes
            networkID = try await askedNetworkID()
        } else {
            // Asked of the node while the file is hashed (the next chunk is read while this one
            // is hashed).
            async let asked = askedNetworkID()
            sha256 = try await readingErrors {
                try await file.sha256 { try await NIOThreadPool.singleton.runIfActive($0) }
            }
            networkID = try await asked
        }
        let version = try FileVersion.sign(
            kind: .content, networkID: networkID, name: name,
            timestamp: WallClock.now(), validFor: validForNanoseconds, contentSHA256: sha256,
            contentLength: UInt64(length), key: key)
        return (version, inMemory)
    }

    /// Runs `body`, which reads the file to upload; a failure becomes a sentence naming it.
    func readingErrors<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch {
            throw CLIError(
                "cannot read \(path): \(error is ContentReader.Shrank ? "it shrank while it was read" : "\(error)")"
            )
        }
    }

    /// The file to upload, open for reading, with its length now.
    static func openFile(_ path: String) throws -> ContentReader {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CLIError("cannot read \(path): \(String(cString: strerror(errno)))") }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw CLIError("cannot read \(path): not a regular file")
        }
        #if os(Linux)
            _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        #endif
        return ContentReader(fd: fd, length: Int(info.st_size))
    }

    /// Polls `/v1/status/NAME` until `count` members (nil: every live member configured for the
    /// name) say they hold `version`; fails with the members still missing it, and at once when
    /// the members that refused it leave too few to get there.
    func waitUntilHeld(
        _ name: FileName, version: FileVersion, by count: Int?, client: APIClient, timeout: UInt64
    ) async throws {
        let deadline = WallClock.now().addingSaturated(Int64(clamping: timeout))
        var missing: [String] = []
        var refusals: [String] = []
        var held = 0
        var liveCount = 0
        /// Where the wait stands, for an error.
        func standing() -> String {
            var parts = refusals
            if !missing.isEmpty {
                parts.insert("not yet \(count == nil ? "held " : "")by \(missing.joined(separator: ", "))", at: 0)
            }
            if let count {
                parts.insert(
                    "held by \(held) of the \(count) members waited for (\(liveCount) live member\(liveCount == 1 ? " is" : "s are") configured for it)",
                    at: 0)
            }
            return parts.joined(separator: "; ")
        }
        repeat {
            let status = try client.decode(
                FileStatusJSON.self, try await client.send(.GET, "/v1/status/" + name.value))
            let alive = status.members.filter(\.isLive)
            let live = alive.filter(\.configured)
            func holdsIt(_ member: FileStatusJSON.Member) -> Bool {
                member.timestamp == version.timestamp && member.current
            }
            func refusal(_ member: FileStatusJSON.Member) -> FileStatusJSON.Refused? {
                member.refused.flatMap { $0.timestamp == version.timestamp && $0.current ? $0 : nil }
            }
            let holding = live.filter(holdsIt)
            // For good (its settings refuse it), or for now (no room, its clock behind): the
            // latter may still take it.
            let refusing = live.filter { !holdsIt($0) && refusal($0)?.lasting == true }
            missing = live.filter { !holdsIt($0) && !refusing.contains($0) }.map { member in
                refusal(member).map { "\(member.name) (\($0.message))" } ?? member.name
            }
            refusals = refusing.map { "\($0.name) refused it: \(refusal($0)?.message ?? "")" }
            held = holding.count
            liveCount = live.count
            if let count, holding.count >= count {
                print("held by \(holding.count) members")
                return
            }
            if count == nil && missing.isEmpty && refusing.isEmpty {
                print("held by all \(holding.count) live members configured for \(name)")
                return
            }
            // Too few left that may take it: every live member but those refusing it for good,
            // answered or not, could.
            if !refusing.isEmpty && count.map({ alive.count - refusing.count < $0 }) ?? true {
                throw CLIError(
                    "\(name) at \(version.timestamp) cannot be held by \(count.map { "\($0) member\($0 == 1 ? "" : "s")" } ?? "every live member") configured for it: "
                        + standing())
            }
            try await Task.sleep(for: .milliseconds(100))
        } while WallClock.now() < deadline
        throw CLIError("timed out after \(timeout / 1_000_000_000) s: \(name) at \(version.timestamp): " + standing())
    }
}

struct FileStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show which version of NAME each member holds."
    )

    @Argument(help: "The file name.")
    var name: String

    @OptionGroup var server: ServerURL

    @Flag(help: "Print the JSON the API returns.")
    var json = false

    func run() async throws {
        try await reportingErrors {
            let name = try parseName(name)
            let client = try APIClient(url: server.url)
            let reply = try await client.send(.GET, "/v1/status/" + name.value)
            let status = try client.decode(FileStatusJSON.self, reply)
            if json {
                print(String(decoding: reply.body, as: UTF8.self))
                return
            }
            let held = status.timestamp.map { timestamp in
                let time = RFC3339.utc(nanoseconds: timestamp)
                switch status.state {
                case "tombstone": return "this node holds its deletion of \(time)"
                case "expired": return "this node holds \(time), expired (its content is removed)"
                case "missing":
                    let fetchable = status.members.contains {
                        $0.current && $0.isLive
                    }
                    return "this node holds \(time), its content damaged on disk and "
                        + (fetchable
                            ? "being fetched again"
                            : "no live member has it to fetch: upload it again (file update) to restore it")
                default: return "this node holds \(time)"
                }
            }
            print("\(status.name): " + (held ?? "not held here"))
            printTable(
                [["MEMBER", "STATE", "CONFIGURED", "HOLDS", "CURRENT"]]
                    + status.members.map { member in
                        [
                            member.name, member.state, member.configured ? "yes" : "unknown",
                            member.timestamp.map(RFC3339.utc(nanoseconds:)) ?? "-", member.current ? "yes" : "no",
                        ]
                    })
            for member in status.members {
                guard let refused = member.refused else { continue }
                print(
                    "\(member.name) \(refused.lasting ? "refused" : "has not taken") \(refused.current ? "this node's version" : "a version this node does not hold"), of \(RFC3339.utc(nanoseconds: refused.timestamp)): \(refused.message)"
                )
            }
        }
    }
}

struct FileDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Delete NAME everywhere with a signed tombstone."
    )

    @Argument(help: "The file name.")
    var name: String

    @OptionGroup var server: ServerURL
    @OptionGroup var signing: SigningOptions

    func run() async throws {
        try await reportingErrors {
            let key = try signing.loadKey()
            let name = try parseName(name)
            let client = try APIClient(url: server.url)
            let version = try FileVersion.sign(
                kind: .tombstone, networkID: try await signing.networkID(client: client), name: name,
                timestamp: WallClock.now(), validFor: 0, contentSHA256: FileVersion.emptySHA256, contentLength: 0,
                key: key)
            let reply = try await client.send(.DELETE, "/v1/files/" + name.value, headers: signedHeaders(version))
            guard reply.status == 200 else {
                throw CLIError("the node refused to delete \"\(name)\" (\(reply.status)): \(APIClient.reason(reply))")
            }
            print("deleted \(name)")
        }
    }
}

struct FileList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the files a node holds."
    )

    @OptionGroup var server: ServerURL

    @Flag(help: "Print the JSON the API returns.")
    var json = false

    func run() async throws {
        try await reportingErrors {
            try await printListing(
                "/v1/files", as: [FileEntryJSON].self, url: server.url, json: json,
                header: ["NAME", "SIZE", "STATE", "TIMESTAMP", "EXPIRES", "SIGNER", "SHA256"]
            ) { entry in
                [
                    entry.name, String(entry.size),
                    entry.deleted
                        ? "deleted" : entry.expired ? "expired" : entry.missing == true ? "missing" : "present",
                    RFC3339.utc(nanoseconds: entry.timestamp),
                    entry.valid_for == 0 || entry.deleted
                        ? "-"
                        : RFC3339.utc(nanoseconds: entry.timestamp.addingSaturated(Int64(clamping: entry.valid_for))),
                    String(entry.signer.prefix(12)) + "…", String(entry.sha256.prefix(16)),
                ]
            }
        }
    }
}

struct FileGet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Fetch the content of NAME (to stdout, or to --output)."
    )

    @Argument(help: "The file name.")
    var name: String

    @OptionGroup var server: ServerURL

    @Option(help: "Write the content here (atomically) instead of to stdout.")
    var output: String?

    func run() async throws {
        try await reportingErrors {
            let name = try parseName(name)
            let client = try APIClient(url: server.url)
            var download: Download?
            do {
                let reply = try await fetch(name, from: client) { head, piece in
                    if download == nil { download = try Download(name: name, output: output, head: head) }
                    try await download?.take(piece)
                }
                // An empty file's reply hands over no piece.
                if download == nil { download = try Download(name: name, output: output, head: reply.headers) }
                try await download?.finish()
            } catch {
                await download?.abandon()
                throw error
            }
        }
    }

    /// GETs the content, handing each piece of a 200's body to `content` with the reply's
    /// headers; returns the reply (a 200), or throws the node's refusal. `http://` goes over
    /// `PlainHTTP` (no event loop; each piece received straight into a buffer of its own),
    /// `https://` over AsyncHTTPClient.
    func fetch(
        _ name: FileName, from client: APIClient,
        content: (_ head: HTTPHeaders, _ piece: ByteBuffer) async throws -> Void
    ) async throws -> APIClient.Reply {
        let path = "/v1/files/" + name.value
        let reply: APIClient.Reply
        if let plain = client.plain {
            reply = try await client.reportingTransportErrors {
                try await plain.download(path, limit: 65536) { head, piece in try await content(head.headers, piece) }
            }
        } else {
            reply = try await client.withClient { http in
                let response = try await http.execute(
                    client.request(.GET, path, headers: [], body: nil), timeout: .hours(24))
                var body = [UInt8]()
                for try await chunk in response.body {
                    if response.status == .ok {
                        try await content(response.headers, chunk)
                    } else if body.count < 65536 {
                        body += chunk.readableBytesView
                    }
                }
                return APIClient.Reply(status: Int(response.status.code), headers: response.headers, body: body)
            }
        }
        guard reply.status == 200 else {
            throw CLIError("cannot get \"\(name)\" (\(reply.status)): \(APIClient.reason(reply))")
        }
        return reply
    }

    /// The content on its way to the output: each batch is written and hashed (on two threads)
    /// while the next one arrives; it is checked against the signed SHA-256 before it is kept.
    struct Download {
        let name: FileName
        let expected: String
        let sink: OutputSink
        let progress: ProgressBar?
        var batches: BatchWriter

        init(name: FileName, output: String?, head: HTTPHeaders) throws {
            self.name = name
            expected = head.first(name: "DM-SHA256") ?? ""
            let sink = try OutputSink(path: output)
            self.sink = sink
            progress = ProgressBar.make(
                "get \(name)", total: head.first(name: "Content-Length").flatMap { Int($0) } ?? 0)
            batches = BatchWriter { try await sink.write($0) }
        }

        mutating func take(_ piece: ByteBuffer) async throws {
            progress?.advance(by: piece.readableBytes)
            try await batches.append(piece)
        }

        /// Keeps the content if it is whole and matches its signed hash; `abandon` otherwise.
        mutating func finish() async throws {
            try await batches.finish()
            guard sink.sha256() == expected else {
                throw CLIError("the content of \"\(name)\" does not match its signed SHA-256; nothing written")
            }
            try sink.commit()
            progress?.finish()
        }

        /// Removes what was written so far.
        mutating func abandon() async {
            await batches.abandon()
            sink.discard()
            progress?.finish()
        }
    }
}

extension FileUpdate {
    /// For a name the node is not configured for: the names it is (a few, then "and N more")
    /// and how to pick one. Empty when the node does not say.
    static func configuredNamesHint(client: APIClient, defaulted: Bool) async -> String {
        guard let info = try? client.decode(InfoJSON.self, try await client.send(.GET, "/v1/info")) else { return "" }
        return configuredNamesHint(info.files_configured, defaulted: defaulted)
    }

    static func configuredNamesHint(_ names: [String], defaulted: Bool) -> String {
        let how =
            defaulted
            ? "the name defaults to the file's base name; choose one with --name NAME"
            : "choose one with --name NAME"
        guard !names.isEmpty else { return "; this node has no [files] configured" }
        let shown = names.prefix(5).map { "\"\($0)\"" }.joined(separator: ", ")
        let more = names.count > 5 ? " and \(names.count - 5) more" : ""
        return "; configured names: \(shown)\(more) (\(how))"
    }
}

/// Stdout, or a temporary file renamed over the destination once complete; hashes what it writes.
final class OutputSink: Sendable {
    struct Written: Sendable {
        var length: UInt64 = 0
        var batches: UInt64 = 0
        var writeback = WritebackPacer()
    }

    let fd: Int32
    let temporary: String?
    let destination: String?
    let written = NIOLockedValueBox(Written())
    /// Apart from `written`, so that a batch is hashed on one thread while it is written on another.
    let hasher = BatchHasher()

    init(path: String?) throws {
        guard let path else {
            fd = 1
            temporary = nil
            destination = nil
            return
        }
        let temp = path + ".part-\(getpid())"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CLIError("cannot write \(path): \(String(cString: strerror(errno)))") }
        self.fd = fd
        temporary = temp
        destination = path
    }

    /// Appends the chunks (one `writev`) and hashes them, the two at once on two threads of NIO's
    /// pool; one call at a time (`BatchWriter`). A file's pages start going to disk as it grows,
    /// so `commit`'s fsync has little left to wait for.
    func write(_ chunks: [ByteBuffer]) async throws {
        let run: DiskIO.Runner = { try await NIOThreadPool.singleton.runIfActive($0) }
        let batch = written.withLockedValue { $0.batches }
        let count = chunks.reduce(0) { $0 + $1.readableBytes }
        try await DiskIO.bothAtOnce(
            run,
            {
                try self.written.withLockedValue { (written) throws in
                    try DiskIO.writeAll(fd: self.fd, chunks, path: self.destination ?? "stdout")
                    written.length += UInt64(count)
                    written.batches += 1
                    if self.temporary != nil { written.writeback.wrote(upTo: written.length, fd: self.fd) }
                }
            },
            {
                let inOrder = self.hasher.hash(chunks, batch: batch)
                precondition(inOrder, "batches hashed out of order")
            })
    }

    /// The hex SHA-256 of everything written; nil when a write failed or a batch was not hashed.
    func sha256() -> String? {
        let batches = written.withLockedValue { $0.batches }
        return hasher.finalize(batches: batches).map(Hex.encode)
    }

    func commit() throws {
        guard let temporary, let destination else { return }
        guard fsync(fd) == 0, close(fd) == 0, rename(temporary, destination) == 0 else {
            throw CLIError("cannot write \(destination): \(String(cString: strerror(errno)))")
        }
    }

    func discard() {
        guard let temporary else { return }
        close(fd)
        unlink(temporary)
    }
}

struct MembersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "members",
        abstract: "List the members of the cluster as a node sees them."
    )

    @OptionGroup var server: ServerURL

    @Flag(help: "Print the JSON the API returns.")
    var json = false

    func run() async throws {
        try await reportingErrors {
            try await printListing(
                "/v1/members", as: [MemberInfo].self, url: server.url, json: json,
                header: ["NAME", "STATE", "INCARNATION", "ADDRESSES", "ID"]
            ) { member in
                [
                    member.name, member.state.rawValue, String(member.incarnation),
                    member.addresses.joined(separator: ","), member.id,
                ]
            }
        }
    }
}

/// GETs a JSON list and prints it as it came (`--json`) or as a table.
func printListing<Item: Decodable>(
    _ path: String, as type: [Item].Type, url: String, json: Bool, header: [String], row: (Item) -> [String]
) async throws {
    let client = try APIClient(url: url)
    let reply = try await client.send(.GET, path)
    let items = try client.decode(type, reply)
    if json {
        print(String(decoding: reply.body, as: UTF8.self))
        return
    }
    printTable([header] + items.map(row))
}

func printTable(_ rows: [[String]]) {
    guard let first = rows.first else { return }
    let widths = (0..<first.count).map { column in rows.map { $0[column].count }.max() ?? 0 }
    for row in rows {
        let padded = row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }
        print(padded.joined(separator: "  "))
    }
}
