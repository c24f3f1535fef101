import Crypto
import DataMesherCore
import Foundation
import Testing

/// Every bad input goes through the real daemon (raw HTTP) or the real CLI, gets the refusal the
/// SPEC names, and leaves the state dir byte-for-byte as it was.
@Suite(.serialized) struct BadInputTests {
    struct Case: CustomStringConvertible {
        let description: String
        let method: String
        let path: String
        let headers: [(String, String)]
        let body: [UInt8]
        let expected: ClosedRange<Int>
        var contentLength = true
        /// Words the refusal must contain.
        var says: String? = nil
    }

    @Test func everyBadRequestIsRefusedAndChangesNothing() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let owner = try TestKey(dir: dir, name: "owner")
        let stranger = try TestKey(dir: dir, name: "stranger")
        let daemon = try Daemon(
            files: ["config:app": [owner.base64], "dns/cnames": [owner.base64]], extra: "max_file_size = \"1KiB\"")
        defer { daemon.cleanUp() }
        try daemon.start()

        let now = nowNanoseconds()
        let accepted = try owner.sign("config:app", Array("v1".utf8), at: now - 1_000_000_000)
        #expect(try HTTP.put(daemon, accepted, Array("v1".utf8)).status == 201)
        let content = Array("new content".utf8)
        let good = try owner.sign("config:app", content, at: now)
        let goodHeaders = HTTP.signed(good)
        func without(_ name: String) -> [(String, String)] { goodHeaders.filter { $0.0 != name } }
        func replacing(_ name: String, _ value: String) -> [(String, String)] { without(name) + [(name, value)] }
        let path = "/v1/files/config:app"

        var cases: [Case] = [
            Case(
                description: "missing DM-Signer", method: "PUT", path: path, headers: without("DM-Signer"),
                body: content, expected: 400...400),
            Case(
                description: "missing DM-Signature", method: "PUT", path: path, headers: without("DM-Signature"),
                body: content, expected: 400...400),
            Case(
                description: "missing DM-Timestamp", method: "PUT", path: path, headers: without("DM-Timestamp"),
                body: content, expected: 400...400),
            Case(
                description: "DM-Signer not base64", method: "PUT", path: path,
                headers: replacing("DM-Signer", "not*base64"), body: content, expected: 400...400),
            Case(
                description: "DM-Signer of 31 bytes", method: "PUT", path: path,
                headers: replacing("DM-Signer", Base64.encode([UInt8](repeating: 1, count: 31))), body: content,
                expected: 400...400),
            Case(
                description: "DM-Signature of 63 bytes", method: "PUT", path: path,
                headers: replacing("DM-Signature", Base64.encode([UInt8](repeating: 1, count: 63))), body: content,
                expected: 400...400),
            Case(
                description: "DM-Timestamp not a number", method: "PUT", path: path,
                headers: replacing("DM-Timestamp", "yesterday"), body: content, expected: 400...400),
            Case(
                description: "DM-Timestamp negative", method: "PUT", path: path,
                headers: replacing("DM-Timestamp", "-5"), body: content, expected: 400...400),
            Case(
                description: "DM-Timestamp overflows i64", method: "PUT", path: path,
                headers: replacing("DM-Timestamp", "99999999999999999999"), body: content, expected: 400...400),
            Case(
                description: "DM-Valid-For not a number", method: "PUT", path: path,
                headers: replacing("DM-Valid-For", "10m"), body: content, expected: 400...400),
            Case(
                description: "DM-Signer given twice", method: "PUT", path: path,
                headers: goodHeaders + [("DM-Signer", stranger.base64)], body: content, expected: 400...400),
            Case(
                description: "signer not allowed for the name", method: "PUT", path: path,
                headers: HTTP.signed(try stranger.sign("config:app", content, at: now)), body: content,
                expected: 403...403),
            Case(
                description: "allowed signer header, stranger's signature", method: "PUT", path: path,
                headers: replacing(
                    "DM-Signature", Base64.encode(try stranger.sign("config:app", content, at: now).signature)),
                body: content, expected: 403...403),
            Case(
                description: "name not configured", method: "PUT", path: "/v1/files/other",
                headers: HTTP.signed(try owner.sign("other", content, at: now)), body: content, expected: 403...403),
            Case(
                description: "tampered body", method: "PUT", path: path, headers: goodHeaders,
                body: Array("new contenT".utf8), expected: 403...403),
            Case(
                description: "signature for another name", method: "PUT", path: path,
                headers: HTTP.signed(try owner.sign("dns/cnames", content, at: now)), body: content, expected: 403...403
            ),
            Case(
                description: "signed for another network", method: "PUT", path: path,
                headers: HTTP.signed(try owner.sign("config:app", content, at: now, network: "other")), body: content,
                expected: 403...403),
            Case(
                description: "stale version", method: "PUT", path: path,
                headers: HTTP.signed(try owner.sign("config:app", content, at: now - 5_000_000_000)), body: content,
                expected: 409...409),
            Case(
                description: "replay of the accepted version", method: "PUT", path: path,
                headers: HTTP.signed(accepted), body: Array("v1".utf8), expected: 409...409),
            Case(
                description: "timestamp an hour in the future", method: "PUT", path: path,
                headers: HTTP.signed(try owner.sign("config:app", content, at: now + 3_600_000_000_000)), body: content,
                expected: 409...409),
            Case(
                description: "already expired valid_for", method: "PUT", path: path,
                headers: HTTP.signed(
                    try owner.sign("config:app", content, at: now - 60_000_000_000, validFor: 1_000_000_000)),
                body: content, expected: 409...409),
            Case(
                description: "body larger than max_file_size", method: "PUT", path: path,
                headers: HTTP.signed(try owner.sign("config:app", [UInt8](repeating: 7, count: 2048), at: now)),
                body: [UInt8](repeating: 7, count: 2048), expected: 413...413,
                says: "is 2048 bytes; max_file_size is 1024 bytes"),
            Case(
                description: "chunked body larger than max_file_size", method: "PUT", path: path,
                headers: HTTP.signed(try owner.sign("config:app", [UInt8](repeating: 7, count: 4096), at: now)) + [
                    ("Transfer-Encoding", "chunked")
                ], body: Array("1000\r\n".utf8) + [UInt8](repeating: 7, count: 4096) + Array("\r\n0\r\n\r\n".utf8),
                expected: 413...413, contentLength: false, says: "is more than max_file_size (1024 bytes)"),
            Case(
                description: "tombstone with a bad signature", method: "DELETE", path: path,
                headers: HTTP.signed(try stranger.sign("config:app", [], at: now, tombstone: true)), body: [],
                expected: 403...403),
            Case(
                description: "tombstone with a body", method: "DELETE", path: path,
                headers: HTTP.signed(try owner.sign("config:app", [], at: now, tombstone: true)), body: Array("x".utf8),
                expected: 400...400),
            Case(
                description: "stale tombstone", method: "DELETE", path: path,
                headers: HTTP.signed(try owner.sign("config:app", [], at: now - 5_000_000_000, tombstone: true)),
                body: [], expected: 409...409),
            Case(
                description: "signature after a body too short to hold it", method: "PUT", path: path,
                headers: replacing("DM-Signature", "after-body"), body: content, expected: 400...400,
                says: "64-byte signature after it"),
            Case(
                description: "signature after a chunked body", method: "PUT", path: path,
                headers: replacing("DM-Signature", "after-body") + [("Transfer-Encoding", "chunked")],
                body: Array("4\r\nzone\r\n0\r\n\r\n".utf8), expected: 400...400, contentLength: false),
            Case(
                description: "signature after the body, not the content's", method: "PUT", path: path,
                headers: replacing("DM-Signature", "after-body"),
                body: content + (try owner.sign("config:app", Array("other".utf8), at: now).signature),
                expected: 403...403),
            Case(
                description: "signature after the body of a tombstone", method: "DELETE", path: path,
                headers: HTTP.signed(try owner.sign("config:app", [], at: now, tombstone: true)).map {
                    $0.0 == "DM-Signature" ? ($0.0, "after-body") : $0
                }, body: [], expected: 400...400),
        ]
        let traversals = [
            "../../etc/passwd", "..%2f..%2fetc%2fpasswd", "%2e%2e/%2e%2e/etc/passwd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            "%252e%252e%252fetc", "..%5c..%5cetc", "%2fetc%2fpasswd", "config:app%00.txt", ".hidden", "a/./b",
            "%c0%ae%c0%ae/etc", "dns//cnames", "dns/cnames/", "%", "%zz", "config%3aapp/..",
        ]
        for traversal in traversals {
            cases.append(
                Case(
                    description: "traversal \(traversal)", method: "PUT", path: "/v1/files/" + traversal,
                    headers: goodHeaders, body: content, expected: 400...404))
        }
        #expect(cases.count >= 25)

        let before = daemon.snapshot()
        #expect(!before.isEmpty)
        for testCase in cases {
            let reply = try HTTP.request(
                daemon.address, daemon.port, method: testCase.method, path: testCase.path, headers: testCase.headers,
                body: testCase.body, contentLength: testCase.contentLength)
            #expect(testCase.expected.contains(reply.status), "\(testCase): got \(reply.status) \(reply.text)")
            if let says = testCase.says { #expect(reply.text.contains(says), "\(testCase): \(reply.text)") }
            if reply.status != 404 || testCase.method != "PUT" {
                let error = try? JSONDecoder().decode([String: String].self, from: Data(reply.body))
                #expect(error?["error"]?.isEmpty == false, "\(testCase): no JSON reason in \(reply.text)")
            }
            #expect(daemon.snapshot() == before, "\(testCase) changed the store")
        }
        // Garbage that is not HTTP at all.
        _ = try? HTTP.raw(daemon.address, daemon.port, Array("\u{1}\u{2}GARBAGE\r\n\r\n".utf8))
        #expect(daemon.snapshot() == before)
        // The daemon is still alive and serving the accepted version.
        let served = try HTTP.request(daemon.address, daemon.port, method: "GET", path: path)
        #expect(served.status == 200 && served.text == "v1")
        // And a good upload still works afterwards.
        #expect(try HTTP.put(daemon, good, content).status == 201)
    }

    @Test func theCLIRefusesBadInputWithOneLineAndNoTrace() throws {
        let dir = NSTemporaryDirectory() + "dm-cli-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let owner = try TestKey(dir: dir, name: "owner")
        let daemon = try Daemon(files: ["config:app": [owner.base64]])
        defer { daemon.cleanUp() }
        try daemon.start()
        let payload = dir + "/config:app"
        try "payload".write(toFile: payload, atomically: true, encoding: .utf8)
        // Over 64 KiB: sent from the file, which the node refuses before reading it.
        let bigPayload = dir + "/big"
        try Data(repeating: 0x61, count: 8 << 20).write(to: URL(fileURLWithPath: bigPayload))
        try "not a key at all".write(toFile: dir + "/garbage.pem", atomically: true, encoding: .utf8)
        try Data([0xff, 0xfe, 0x00, 0x01]).write(to: URL(fileURLWithPath: dir + "/binary.pem"))
        let exported = try runProcess(Binary.path, ["key", "public", owner.path])
        try (exported.stdout).write(toFile: dir + "/owner.b64", atomically: true, encoding: .utf8)
        try
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA3g7CXt9PwvaYSqqNvpJt+vUH+l3uFMCIfxV4Dq89TrY=\n-----END PUBLIC KEY-----\n"
            .write(toFile: dir + "/public.pem", atomically: true, encoding: .utf8)

        let before = daemon.snapshot()
        let cases: [(String, [String], String)] = [
            (
                "garbage key file", ["file", "update", payload, "--url", daemon.url, "--key", dir + "/garbage.pem"],
                "not a PEM"
            ),
            (
                "binary key file", ["file", "update", payload, "--url", daemon.url, "--key", dir + "/binary.pem"],
                "key file"
            ),
            (
                "missing key file", ["file", "update", payload, "--url", daemon.url, "--key", dir + "/nope.pem"],
                "no such file"
            ),
            (
                "key file is a directory", ["file", "update", payload, "--url", daemon.url, "--key-path", dir],
                "directory"
            ),
            (
                "public key as signing key",
                ["file", "update", payload, "--url", daemon.url, "--key", dir + "/public.pem"], "PUBLIC KEY"
            ),
            (
                "unconfigured name",
                ["file", "update", payload, "--url", daemon.url, "--key", owner.path, "--name", "nope"],
                "not configured"
            ),
            (
                "traversal name",
                ["file", "update", payload, "--url", daemon.url, "--key", owner.path, "--name", "../x"],
                "starts with '.'"
            ),
            (
                "bad --valid-for",
                ["file", "update", payload, "--url", daemon.url, "--key", owner.path, "--valid-for", "soon"],
                "not a duration"
            ),
            (
                "negative validity",
                ["file", "update", payload, "--url", daemon.url, "--key", owner.path, "--valid-for", "-5s"],
                "--valid-for"
            ),
            (
                "missing payload", ["file", "update", dir + "/absent", "--url", daemon.url, "--key", owner.path],
                "cannot read"
            ),
            (
                "unreachable node", ["file", "update", payload, "--url", "http://127.0.0.1:1", "--key", owner.path],
                "cannot reach"
            ),
            (
                "big file under a name not configured",
                ["file", "update", bigPayload, "--url", daemon.url, "--key", owner.path, "--name", "other"],
                "is not configured"
            ),
            ("bad url", ["file", "list", "--url", "ftp://x"], "not an http"),
            ("port out of range", ["file", "list", "--url", "http://127.0.0.1:99999"], "port"),
            ("https port out of range", ["members", "--url", "https://127.0.0.1:65536"], "port"),
            ("port not a number", ["file", "list", "--url", "http://127.0.0.1:x1"], "port"),
            (
                "delete with garbage key",
                ["file", "delete", "config:app", "--url", daemon.url, "--key", dir + "/garbage.pem"], "not a PEM"
            ),
            ("get a missing file", ["file", "get", "config:app", "--url", daemon.url], "not held"),
            ("watch a name not configured", ["file", "watch", "nope", "--url", daemon.url], "is not configured"),
            ("key public of garbage", ["key", "public", dir + "/garbage.pem"], "not a PEM"),
        ]
        for (description, arguments, message) in cases {
            let result = try daemon.cli(arguments)
            #expect(result.status != 0, "\(description) exited 0")
            let lines = result.stderr.split(separator: "\n")
            #expect(lines.count == 1, "\(description): stderr is not one line: \(result.stderr)")
            #expect(result.stderr.contains(message), "\(description): \(result.stderr)")
            #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("Stack dump"))
            #expect(daemon.snapshot() == before, "\(description) changed the store")
        }
        // The same upload with a good key works.
        let good = try daemon.cli(["file", "update", payload, "--url", daemon.url, "--key-path", owner.path])
        #expect(good.status == 0, "\(good.stderr)")
        #expect(good.stdout.hasPrefix("stored config:app"))
    }

    /// A "node" that hangs up halfway through its reply: the CLI fails with one line saying it
    /// cannot reach the node, whatever the request (the network ID's GET, a list).
    /// Found by an attacking helper: `FileHandle.write` traps when stdout or stderr cannot be
    /// written (a closed pipe, a full disk), and `print` lost its output with exit 0.
    @Test func anOutputThatCannotBeWrittenEndsTheCommandWithoutATrap() throws {
        let daemon = try Daemon(files: [:])
        defer { daemon.cleanUp() }
        try daemon.start()
        /// Runs the CLI with stdout and stderr as given (bounded); its exit status, or the signal
        /// that ended it as a negative number.
        func run(_ arguments: [String], stdout: FileHandle, stderr: FileHandle) throws -> Int32 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Binary.path)
            process.arguments = arguments
            process.standardOutput = stdout
            process.standardError = stderr
            process.standardInput = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(30)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            let signaled = process.terminationReason == .uncaughtSignal
            return signaled ? -process.terminationStatus : process.terminationStatus
        }
        let full = try #require(FileHandle(forWritingAtPath: "/dev/full"))
        let errors = Pipe()
        // stdout on a full disk: one line on stderr and 1, not a silent 0.
        #expect(try run(["file", "list", "--url", daemon.url], stdout: full, stderr: errors.fileHandleForWriting) == 1)
        try errors.fileHandleForWriting.close()
        let said = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(said == "data-mesher: cannot write stdout: No space left on device\n", "\(said)")
        // stderr on a full disk: the error has nowhere to go, and the exit status still says it.
        let missing = NSTemporaryDirectory() + "dm-none-" + UUID().uuidString + ".toml"
        #expect(try run(["server", "--config", missing], stdout: FileHandle.nullDevice, stderr: full) == 1)
        // A reader that closed its end: ended quietly by SIGPIPE, or, where SIGPIPE is ignored (as
        // this test runner may leave it), with 141 as if it had been.
        let closed = Pipe()
        try closed.fileHandleForReading.close()
        let status = try run(["members", "--url", daemon.url], stdout: closed.fileHandleForWriting, stderr: full)
        #expect(status == 141 || status == -SIGPIPE, "status \(status)")
    }

    @Test func aReplyCutShortIsAOneLineFailure() throws {
        // A head promising 100 bytes, then 5 of them, then the connection closes.
        let reply = [Array("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[{\"na".utf8)]
        try withRawHTTPServer(replies: [reply, reply]) { url in
            let dir = NSTemporaryDirectory() + "dm-cut-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let key = try TestKey(dir: dir, name: "owner")
            try "x\n".write(toFile: dir + "/payload", atomically: true, encoding: .utf8)
            for arguments in [
                ["file", "list", "--url", url + "/"],
                ["file", "update", dir + "/payload", "--name", "a", "--url", url, "--key", key.path],
            ] {
                let result = try runProcess(Binary.path, arguments)
                #expect(result.status != 0, "\(arguments)")
                #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
                #expect(result.stderr.contains("cannot reach data-mesher at \(url)"), "\(result.stderr)")
            }
        }
    }

    /// Replies framed every way HTTP/1.1 allows, and sent in pieces, are read whole: chunked, ended
    /// by the connection's end, and a `Content-Length` body that arrives a few bytes at a time.
    @Test func repliesOfEveryFramingAreReadWhole() throws {
        let listing = "[ ]"
        let replies: [[[UInt8]]] = [
            [
                Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[ \r\n".utf8),
                Array("1\r\n]\r\n0\r\n\r\n".utf8),
            ],
            [Array("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n\(listing)".utf8)],
            [Array("HTTP/1.1 200 O".utf8), Array("K\r\nContent-Length: 3\r\n\r\n[".utf8), Array(" ]".utf8)],
        ]
        try withRawHTTPServer(replies: replies) { url in
            for _ in replies {
                let result = try runProcess(Binary.path, ["file", "list", "--json", "--url", url])
                #expect(result.status == 0, "\(result.stderr)")
                #expect(result.stdout == listing + "\n", "\(result.stdout)")
            }
        }
    }

    /// The CLI asks for the network ID and uploads on one connection when the node keeps it open;
    /// when the node closed the kept connection meanwhile, the upload goes on a new one.
    @Test func aKeptConnectionCarriesTheUploadOrIsReplacedWhenTheNodeClosedIt() throws {
        let dir = NSTemporaryDirectory() + "dm-keep-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try TestKey(dir: dir, name: "owner")
        try "x\n".write(toFile: dir + "/payload", atomically: true, encoding: .utf8)
        let info = #"{"network_id":""}"#
        let replies = [
            [Array("HTTP/1.1 200 OK\r\nContent-Length: \(info.utf8.count)\r\n\r\n\(info)".utf8)],
            [Array("HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}".utf8)],
        ]
        for onOneConnection in [true, false] {
            let connections = try withRawHTTPServer(replies: replies, onOneConnection: onOneConnection) { url in
                let result = try runProcess(
                    Binary.path, ["file", "update", dir + "/payload", "--name", "a", "--url", url, "--key", key.path])
                #expect(result.status == 0, "\(onOneConnection): \(result.stderr)")
                #expect(result.stdout == "stored a\n", "\(onOneConnection): \(result.stdout)")
            }
            #expect(connections == (onOneConnection ? 1 : 2), "\(onOneConnection)")
        }
    }

    /// A file over 64 KiB goes with its signature after the content to a node that lists
    /// `signature-after-body` in `/v1/info`, and is hashed first and signed in the headers for one
    /// that does not (a node older than the feature); both signatures hold.
    @Test func aBigUploadSignsAfterTheBodyOnlyForANodeThatTakesIt() throws {
        let dir = NSTemporaryDirectory() + "dm-after-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try TestKey(dir: dir, name: "owner")
        var generator = SystemRandomNumberGenerator()
        let content = (0..<70_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        try Data(content).write(to: URL(fileURLWithPath: dir + "/payload"))
        for takesIt in [false, true] {
            let info =
                takesIt ? #"{"network_id":"net","api_features":["signature-after-body"]}"# : #"{"network_id":"net"}"#
            let replies = [
                [Array("HTTP/1.1 200 OK\r\nContent-Length: \(info.utf8.count)\r\n\r\n\(info)".utf8)],
                [Array("HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}".utf8)],
            ]
            let requests = NSLock()
            nonisolated(unsafe) var recorded: [[UInt8]] = []
            try withRawHTTPServer(
                replies: replies, onOneConnection: true,
                record: { request in
                    requests.withLock { recorded.append(request) }
                }
            ) { url in
                let result = try runProcess(
                    Binary.path, ["file", "update", dir + "/payload", "--name", "a", "--url", url, "--key", key.path])
                #expect(result.status == 0, "\(takesIt): \(result.stderr)")
            }
            let upload = try #require(requests.withLock { recorded.count == 2 ? recorded[1] : nil }, "\(takesIt)")
            let end = try #require(upload.firstRange(of: Array("\r\n\r\n".utf8)))
            var headers: [String: String] = [:]
            for line in String(decoding: upload[..<end.lowerBound], as: UTF8.self).split(separator: "\r\n").dropFirst()
            {
                let parts = line.split(separator: ":", maxSplits: 1)
                if parts.count == 2 { headers[parts[0].lowercased()] = parts[1].trimmingCharacters(in: .whitespaces) }
            }
            var body = Array(upload[end.upperBound...])
            var signature = Base64.decode(headers["dm-signature"] ?? "") ?? []
            if takesIt {
                #expect(headers["dm-signature"] == "after-body")
                #expect(headers["content-length"] == String(content.count + 64))
                signature = Array(body.suffix(64))
                body.removeLast(min(64, body.count))
            } else {
                #expect(headers["content-length"] == String(content.count))
            }
            #expect(body == content, "\(takesIt)")
            let version = FileVersion(
                kind: .content, networkID: "net", name: try FileName("a"),
                timestamp: Int64(headers["dm-timestamp"] ?? "") ?? 0, validFor: 0,
                contentSHA256: Array(SHA256.hash(data: content)), contentLength: UInt64(content.count),
                signer: key.signer, signature: signature)
            #expect(version.hasValidSignature, "\(takesIt)")
        }
    }

    /// A refused upload of a file that was written to while it was sent is reported as such, not
    /// as the node's word that the signature does not verify (which the change caused).
    @Test func aRefusedUploadOfAFileChangedMeanwhileSaysSo() throws {
        let dir = NSTemporaryDirectory() + "dm-changed-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try TestKey(dir: dir, name: "owner")
        let path = dir + "/payload"
        try Data(repeating: 7, count: 70_000).write(to: URL(fileURLWithPath: path))
        let info = #"{"network_id":"","api_features":["signature-after-body"]}"#
        let refusal = #"{"error":"signature for \"a\" does not verify"}"#
        let replies = [
            [Array("HTTP/1.1 200 OK\r\nContent-Length: \(info.utf8.count)\r\n\r\n\(info)".utf8)],
            [Array("HTTP/1.1 403 Forbidden\r\nContent-Length: \(refusal.utf8.count)\r\n\r\n\(refusal)".utf8)],
        ]
        for changed in [false, true] {
            let requests = NSLock()
            nonisolated(unsafe) var count = 0
            try withRawHTTPServer(
                replies: replies, onOneConnection: true,
                record: { _ in
                    // The upload has arrived whole; the file is written to before the answer.
                    if requests.withLock({
                        count += 1; return count
                    }) == 2, changed,
                        let handle = FileHandle(forWritingAtPath: path)
                    {
                        handle.write(Data([8]))
                        try? handle.close()
                    }
                }
            ) { url in
                let result = try runProcess(
                    Binary.path, ["file", "update", path, "--name", "a", "--url", url, "--key", key.path])
                #expect(result.status != 0)
                #expect(
                    result.stderr.contains(
                        changed ? "the file changed while it was being uploaded" : "the node refused \"a\" (403)"),
                    "\(changed): \(result.stderr)")
            }
        }
    }

    /// `file get` writes the content whole (a body of several receive pieces and a part of one,
    /// to a file and to stdout), and writes nothing from a node whose content does not match its
    /// signed SHA-256, that hangs up halfway, or that refuses.
    @Test func fileGetKeepsOnlyWholeContentThatMatchesItsSignedHash() throws {
        let dir = NSTemporaryDirectory() + "dm-get-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let owner = try TestKey(dir: dir, name: "owner")
        let daemon = try Daemon(files: ["config:app": [owner.base64]])
        defer { daemon.cleanUp() }
        try daemon.start()
        var generator = SystemRandomNumberGenerator()
        let content = Data((0..<(3 << 20) + 12345).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try content.write(to: URL(fileURLWithPath: dir + "/payload"))
        let stored = try daemon.cli([
            "file", "update", dir + "/payload", "--name", "config:app", "--url", daemon.url, "--key", owner.path,
        ])
        #expect(stored.status == 0, "\(stored.stderr)")
        let fetched = try daemon.cli(["file", "get", "config:app", "--url", daemon.url, "--output", dir + "/fetched"])
        #expect(fetched.status == 0, "\(fetched.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/fetched")) == content)

        let hello = Array("hello".utf8)
        let helloSHA = Hex.encode(SHA256.hash(data: hello))
        let otherSHA = Hex.encode(SHA256.hash(data: Array("other".utf8)))
        let head = { (sha: String, length: Int) in
            Array("HTTP/1.1 200 OK\r\nContent-Length: \(length)\r\nDM-SHA256: \(sha)\r\n\r\n".utf8)
        }
        let error = #"{"error":"\"config:app\" is not held on this node"}"#
        let replies: [[[UInt8]]] = [
            [head(helloSHA, 5) + Array("he".utf8), Array("llo".utf8)],
            [head(helloSHA, 5), hello],
            [head(otherSHA, 5) + hello],
            [head(helloSHA, 10) + hello],
            [Array("HTTP/1.1 404 Not Found\r\nContent-Length: \(error.utf8.count)\r\n\r\n\(error)".utf8)],
        ]
        try withRawHTTPServer(replies: replies) { url in
            let toStdout = try runProcess(Binary.path, ["file", "get", "config:app", "--url", url])
            #expect(toStdout.status == 0 && toStdout.stdout == "hello", "\(toStdout.stderr)")
            let toFile = try runProcess(
                Binary.path, ["file", "get", "config:app", "--url", url, "--output", dir + "/hello"])
            #expect(toFile.status == 0, "\(toFile.stderr)")
            #expect(try String(contentsOfFile: dir + "/hello", encoding: .utf8) == "hello")
            for (failure, message) in [
                ("mismatch", "does not match its signed SHA-256"), ("cut", "stopped sending after 5 of 10 bytes"),
                ("refused", "not held"),
            ] {
                let result = try runProcess(
                    Binary.path, ["file", "get", "config:app", "--url", url, "--output", dir + "/" + failure])
                #expect(result.status != 0, "\(failure)")
                #expect(result.stderr.split(separator: "\n").count == 1, "\(failure): \(result.stderr)")
                #expect(result.stderr.contains(message), "\(failure): \(result.stderr)")
                #expect(!FileManager.default.fileExists(atPath: dir + "/" + failure), "\(failure)")
            }
        }
        // Nothing but what was kept: no temporary file is left beside the outputs.
        let left = try FileManager.default.contentsOfDirectory(atPath: dir).filter { !$0.hasSuffix(".pem") }.sorted()
        #expect(left == ["fetched", "hello", "payload"], "\(left)")
    }

    /// Serves `replies` in order on a loopback port: for each, reads one whole request, then sends
    /// the reply's pieces 20 ms apart. Closes the connection after each reply, or, when
    /// `onOneConnection`, serves them all on the first one and closes any other at once. `body`
    /// gets the server's URL. Returns how many connections were accepted.
    @discardableResult
    func withRawHTTPServer(
        replies: [[[UInt8]]], onOneConnection: Bool = false, record: (@Sendable ([UInt8]) -> Void)? = nil,
        _ body: (String) throws -> Void
    ) throws -> Int {
        let address = LoopbackAddress.next()
        let (listener, port) = try RelayTests.listen(on: address)
        let accepted = NSLock()
        nonisolated(unsafe) var connections = 0
        let server = Thread {
            var connection: Int32 = -1
            for pieces in replies {
                if connection < 0 || !onOneConnection {
                    connection = accept(listener, nil, nil)
                    guard connection >= 0 else { return }
                    accepted.withLock { connections += 1 }
                }
                let request = Self.readRequest(from: connection)
                record?(request)
                for (index, piece) in pieces.enumerated() {
                    if index > 0 { usleep(20_000) }
                    _ = piece.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                }
                if !onOneConnection {
                    close(connection)
                    connection = -1
                }
            }
            if connection >= 0 { close(connection) }
            while true {  // ends when the listener is shut down
                let extra = accept(listener, nil, nil)
                guard extra >= 0 else { return }
                accepted.withLock { connections += 1 }
                close(extra)
            }
        }
        server.start()
        defer {
            shutdown(listener, Int32(SHUT_RDWR))  // wakes the server thread if it still waits
            close(listener)
        }
        try body("http://\(address):\(port)")
        return accepted.withLock { connections }
    }

    /// Reads one request's head and its `Content-Length` body (at most 256 reads), so that closing
    /// the connection afterwards sends no reset; returns what it read.
    @discardableResult
    static func readRequest(from connection: Int32) -> [UInt8] {
        var received = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<256 {
            let text = String(decoding: received, as: UTF8.self)
            if let end = text.range(of: "\r\n\r\n") {
                let length =
                    text[..<end.lowerBound].split(separator: "\r\n")
                    .first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                if text.utf8.distance(from: text.utf8.startIndex, to: end.upperBound) + length <= received.count {
                    return received
                }
            }
            let count = chunk.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return received }
            received += chunk[0..<count]
        }
        return received
    }

    /// `--check-config` before the first start: the state_dir is made and removed again as a
    /// probe (nothing is left), the node ID is not made up, and a state_dir that cannot be made
    /// is refused in one line although its parent is writable by root.
    @Test func checkConfigProbesAStateDirThatDoesNotExistYet() throws {
        let address = LoopbackAddress.next()
        // Its own address among the bootstrap nodes (as one config for every node has): skipped.
        let daemon = try Daemon(
            files: [:], cluster: "bootstrap_nodes = [\"\(address):7946\", \"127.0.0.1:7946\"]", address: address)
        defer { daemon.cleanUp() }
        let fresh = try daemon.cli(["server", "--check-config", "--config", daemon.configPath])
        #expect(fresh.status == 0, "\(fresh.stderr)")
        #expect(fresh.stdout.contains("(made at first start), node ID decided then"), "\(fresh.stdout)")
        #expect(
            fresh.stdout.contains("join: \(address):7946 (this node: skipped), 127.0.0.1:7946\n"), "\(fresh.stdout)")
        #expect(!FileManager.default.fileExists(atPath: daemon.stateDir))

        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        let impossible = daemon.dir + "/impossible.toml"
        try config.replacingOccurrences(of: daemon.stateDir, with: "/proc/dm-check-config/state")
            .write(toFile: impossible, atomically: true, encoding: .utf8)
        let refused = try daemon.cli(["server", "--check-config", "--config", impossible])
        #expect(refused.status != 0)
        #expect(refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")
        #expect(refused.stderr.contains("state_dir: /proc/dm-check-config/state does not exist"), "\(refused.stderr)")
    }

    @Test func theDaemonRefusesToStartOnABadConfig() throws {
        let dir = NSTemporaryDirectory() + "dm-cfg-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cases: [(String, String, String)] = [
            ("unknown key", "colour = \"blue\"", "config key colour: unknown key"),
            ("bad duration", "max_clock_skew = \"ten minutes\"", "config key max_clock_skew"),
            ("bad base64 key", "[files]\n\"a\" = [\"@@@\"]", "config key files.\"a\"[0]"),
            (
                "unknown interface", "state_dir = \"\(dir)/s\"\n[http]\ninterfaces = [\"nosuch0\"]",
                "interface \"nosuch0\" does not exist"
            ),
            ("bad bootstrap node", "[cluster]\nbootstrap_nodes = [\"nowhere\"]", "cluster.bootstrap_nodes[0]"),
            ("not TOML", "this is = = not toml", "not valid TOML"),
        ]
        for (description, text, message) in cases {
            let path = dir + "/dm.toml"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let result = try runProcess(Binary.path, ["server", "--config", path])
            #expect(result.status != 0, "\(description) started")
            #expect(result.stderr.contains(message), "\(description): \(result.stderr)")
            #expect(!result.stderr.contains("Fatal error"))
        }
        let missing = try runProcess(Binary.path, ["server", "--config", dir + "/absent.toml"])
        #expect(missing.status != 0 && missing.stderr.contains("cannot read"))
    }
}
