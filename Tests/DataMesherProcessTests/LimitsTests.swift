import DataMesherCore
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 14 (start-up conflicts, HTTP limits, a full disk): each test runs real daemons on
/// loopback and makes its own hostile traffic.
@Suite(.serialized) struct LimitsTests {
    // MARK: Start-up conflicts

    @Test func aSecondDaemonOnTheSameStateDirExitsWithOneLine() throws {
        let first = try Daemon(files: [:])
        defer { first.cleanUp() }
        try first.start()
        let pid = try #require(first.process?.processIdentifier)

        // The same config on another address: only the state_dir is shared.
        let second = try Daemon(files: [:])
        defer { second.cleanUp() }
        let config = try String(contentsOfFile: first.configPath, encoding: .utf8)
            .replacingOccurrences(of: first.address, with: second.address)
        try config.write(toFile: second.configPath, atomically: true, encoding: .utf8)
        let result = try runBounded(Binary.path, ["server", "--config", second.configPath], seconds: 30)
        #expect(result.status == 1)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("is in use") && result.stderr.contains("pid \(pid)"), "\(result.stderr)")
        // The first daemon is untouched and still serves.
        #expect(first.get("/v1/info")?.status == 200)
    }

    @Test func aBusyHTTPAddressExitsWithOneLineAndBindsNothing() throws {
        let daemon = try Daemon(files: [:])
        defer { daemon.cleanUp() }
        let holder = try Sockets.listen(daemon.address, daemon.port)
        var holding = true
        defer { if holding { close(holder) } }
        let result = try runBounded(Binary.path, ["server", "--config", daemon.configPath], seconds: 30)
        #expect(result.status == 1)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("\(daemon.address):\(daemon.port)"), "\(result.stderr)")
        #expect(result.stderr.contains("in use"), "\(result.stderr)")
        // Nothing half-bound is left: the cluster port is free again for anyone.
        let cluster = try Sockets.listen(daemon.address, 7946)
        close(cluster)
        // And the state_dir lock went with the process: a daemon can start there now.
        close(holder)
        holding = false
        try daemon.start()
        #expect(daemon.get("/v1/info")?.status == 200)
    }

    // MARK: HTTP limits

    @Test func aSilentOrSlowClientIsClosedWithinTheHeaderTimeout() throws {
        let daemon = try Daemon(files: [:], http: "header_timeout = \"1s\"")
        defer { daemon.cleanUp() }
        try daemon.start()
        let silent = try Sockets.connect(daemon.address, daemon.port)
        defer { close(silent) }
        let slow = try Sockets.connect(daemon.address, daemon.port)
        defer { close(slow) }
        Sockets.send(slow, Array("GET /v1/info HTTP/1.1\r\nHost: x\r\n".utf8))
        // Without a header timeout neither connection is ever closed: the read times out instead.
        #expect(Sockets.waitForClose(silent, seconds: 15) == .closed)
        #expect(Sockets.waitForClose(slow, seconds: 15) == .closed)
        // A client that sends its request in time is served.
        #expect(daemon.get("/v1/info")?.status == 200)
    }

    /// Found by an attacking helper: anyone could write a line at error level ("request failed:
    /// … Connection reset by peer") per upload reset mid-body, with no key.
    @Test func uploadsResetMidBodyAreNotLoggedAsErrors() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let owner = try TestKey(dir: dir, name: "owner")
        let daemon = try Daemon(files: ["a": [owner.base64]])
        defer { daemon.cleanUp() }
        try daemon.start()
        let content = [UInt8](repeating: 0x61, count: 100_000)
        for index in 0..<20 {
            let version = try owner.sign("a", content, at: nowNanoseconds() + Int64(index))
            let fd = try Sockets.connect(daemon.address, daemon.port)
            Sockets.send(fd, RawUpload.head(version, length: UInt64(content.count)) + content.prefix(5000))
            usleep(20_000)
            // Closed with a reset (linger 0), as a client that dies or an attacker would.
            var reset = linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, socklen_t(MemoryLayout<linger>.size))
            close(fd)
        }
        #expect(eventually(20) { !RawUpload.inProgress(daemon) }, "an upload slot stayed taken")
        #expect(daemon.get("/v1/info")?.status == 200)
        let log = try String(contentsOfFile: daemon.logPath, encoding: .utf8)
        #expect(!log.contains(" error "), "\(daemon.tailOfLog(2000))")
    }

    @Test func connectionsBeyondThePerSourceCapAreRefusedWhileOthersAreServed() throws {
        let daemon = try Daemon(files: [:], http: "max_connections_per_source = 3\nheader_timeout = \"120s\"")
        defer { daemon.cleanUp() }
        try daemon.start()
        let greedy = LoopbackAddress.next()
        var held = [Int32]()
        defer { for fd in held { close(fd) } }
        // Each held connection is answered once (and kept alive), so the server has surely
        // counted it before the next one comes.
        for _ in 0..<3 {
            let fd = try Sockets.connect(daemon.address, daemon.port, from: greedy)
            held.append(fd)
            Sockets.send(fd, Array("GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
            let answer = Sockets.readReply(fd, seconds: 15)
            try #require(answer.hasPrefix("HTTP/1.1 200"), "\(answer.prefix(200))")
        }
        // A fourth from the same source is closed without an answer.
        let fourth = try Sockets.connect(daemon.address, daemon.port, from: greedy)
        defer { close(fourth) }
        Sockets.send(fourth, Array("GET /v1/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
        let refused = Sockets.readReply(fourth, seconds: 15)
        #expect(refused.isEmpty, "the fourth connection was answered: \(refused.prefix(200))")
        // Another source is served meanwhile.
        let other = LoopbackAddress.next()
        let reply = try Sockets.request(
            daemon.address, daemon.port, from: other, "GET /v1/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(reply.hasPrefix("HTTP/1.1 200"), "\(reply.prefix(200))")
        // Once one of the held connections ends, the greedy source is served again.
        close(held.removeLast())
        #expect(
            eventually(20) {
                let text = try? Sockets.request(
                    daemon.address, daemon.port, from: greedy,
                    "GET /v1/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return text?.hasPrefix("HTTP/1.1 200") == true
            }, "\(daemon.tailOfLog(4000))")
    }

    @Test func anUploadLargerThanTheFreeSpaceIsRefusedBeforeItsBody() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let owner = try TestKey(dir: dir, name: "owner")
        let daemon = try Daemon(files: ["big": [owner.base64]], extra: "max_file_size = \"1000000TiB\"")
        defer { daemon.cleanUp() }
        try daemon.start()
        let length: UInt64 = 1_000_000_000_000_000
        let version = try owner.sign("big", [], at: nowNanoseconds())
        // Only the head is sent: the answer must come without any body byte.
        let fd = try Sockets.connect(daemon.address, daemon.port)
        defer { close(fd) }
        Sockets.send(fd, RawUpload.head(version, length: length))
        let reply = Sockets.readReply(fd, seconds: 15)
        #expect(reply.hasPrefix("HTTP/1.1 507"), "\(reply.prefix(300))")
        #expect(reply.contains("disk full"), "\(reply.prefix(300))")
        #expect(daemon.get("/metrics").map { $0.text.contains("dm_disk_full_total 1") } == true)
    }

    /// An event subscriber's slot is free again as soon as its client hangs up, not at the next
    /// keepalive (15 s later): a client that reconnects in a loop is not locked out by the
    /// connections it already closed. Twice the per-address cap of subscriptions in a row.
    @Test func anEventSubscriberThatHangsUpFreesItsSlotAtOnce() throws {
        let daemon = try Daemon(files: [:])
        defer { daemon.cleanUp() }
        try daemon.start()
        let source = LoopbackAddress.next()
        for round in 0..<32 {
            var answer = ""
            for _ in 0..<100 {  // at most ~5 s per round
                guard
                    let fd = ClusterSocketTests.connect(
                        to: daemon.address, port: UInt16(daemon.port), from: source, timeout: 10)
                else { break }
                let request = Array("GET /v1/events HTTP/1.1\r\nHost: dm\r\n\r\n".utf8)
                _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                var received = [UInt8]()
                var chunk = [UInt8](repeating: 0, count: 4096)
                for _ in 0..<16 {
                    let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                    guard count > 0 else { break }
                    received += chunk[0..<count]
                    answer = String(decoding: received, as: UTF8.self)
                    if answer.contains(": connected") || answer.contains("\r\n\r\n{") { break }
                }
                close(fd)
                if answer.contains(": connected") { break }
                usleep(50_000)
            }
            #expect(answer.hasPrefix("HTTP/1.1 200") && answer.contains(": connected"), "round \(round): \(answer)")
            if !answer.contains(": connected") { break }
        }
    }

    @Test func uploadsBeyondTheConcurrencyCapAreTurnedAway() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let owner = try TestKey(dir: dir, name: "owner")
        let daemon = try Daemon(
            files: ["a": [owner.base64], "b": [owner.base64]], http: "max_concurrent_uploads = 1")
        defer { daemon.cleanUp() }
        try daemon.start()
        // Larger than the 64 KiB an upload may gather in memory, so that its body streams into
        // tmp/, where the test sees that it holds its slot.
        let content = [UInt8](repeating: 7, count: 100_000)
        let first = try owner.sign("a", content, at: nowNanoseconds())
        // The first upload holds its slot: head and ten body bytes, then it waits.
        let slow = try Sockets.connect(daemon.address, daemon.port)
        defer { close(slow) }
        Sockets.send(slow, RawUpload.head(first, length: UInt64(content.count)) + content.prefix(10))
        // It holds the only slot once its body is being received into tmp/.
        #expect(eventually(20) { RawUpload.inProgress(daemon) })
        let second = try owner.sign("b", content, at: nowNanoseconds())
        let busy = try HTTP.put(daemon, second, content)
        #expect(busy.status == 503, "second upload answered \(busy.status): \(busy.text)")
        // When the first finishes, the next upload is taken.
        Sockets.send(slow, Array(content.dropFirst(10)))
        #expect(Sockets.readReply(slow, seconds: 15).hasPrefix("HTTP/1.1 201"))
        #expect(try HTTP.put(daemon, second, content).status == 201)
    }

    /// One source address takes at most half of the upload slots; another still gets one.
    @Test func oneSourceTakesAtMostHalfTheUploadSlots() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let owner = try TestKey(dir: dir, name: "owner")
        let daemon = try Daemon(
            files: ["a": [owner.base64], "b": [owner.base64], "c": [owner.base64]], http: "max_concurrent_uploads = 2")
        defer { daemon.cleanUp() }
        try daemon.start()
        let content = [UInt8](repeating: 7, count: 100_000)
        func request(_ name: String) throws -> [UInt8] {
            RawUpload.head(try owner.sign(name, content, at: nowNanoseconds()), length: UInt64(content.count))
        }
        // From 127.0.0.1: the first upload holds its slot (head and ten body bytes, in tmp/).
        let slow = try Sockets.connect(daemon.address, daemon.port, from: "127.0.0.1")
        defer { close(slow) }
        Sockets.send(slow, try request("a") + content.prefix(10))
        #expect(eventually(20) { RawUpload.inProgress(daemon) })
        // The same source is at its share (1 of 2)...
        let same = try Sockets.connect(daemon.address, daemon.port, from: "127.0.0.1")
        defer { close(same) }
        Sockets.send(same, try request("b") + content)
        let refused = Sockets.readReply(same, seconds: 15)
        #expect(refused.hasPrefix("HTTP/1.1 503") && refused.contains("from 127.0.0.1"), "\(refused)")
        // ...while another source gets the other slot.
        let other = try Sockets.connect(daemon.address, daemon.port, from: "127.0.0.254")
        defer { close(other) }
        Sockets.send(other, try request("c") + content)
        #expect(Sockets.readReply(other, seconds: 15).hasPrefix("HTTP/1.1 201"))
    }

    @Test func aStalledUploadIsClosedAndFreesItsSlot() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let owner = try TestKey(dir: dir, name: "owner")
        let daemon = try Daemon(
            files: ["a": [owner.base64], "b": [owner.base64]],
            http: "max_concurrent_uploads = 1\nidle_timeout = \"1s\"")
        defer { daemon.cleanUp() }
        try daemon.start()
        let content = [UInt8](repeating: 7, count: 1000)
        let first = try owner.sign("a", content, at: nowNanoseconds())
        // Head and ten body bytes, then nothing: without a body timeout it holds the only slot.
        let stalled = try Sockets.connect(daemon.address, daemon.port)
        defer { close(stalled) }
        Sockets.send(stalled, RawUpload.head(first, length: UInt64(content.count)) + content.prefix(10))
        #expect(Sockets.waitForClose(stalled, seconds: 15) == .closed)
        let reply = RawUpload.putUntilTaken(daemon, try owner.sign("b", content, at: nowNanoseconds()), content)
        #expect(
            reply?.status == 201, "upload after the stalled one answered \(reply?.status ?? 0): \(reply?.text ?? "")")
    }

    @Test func aTricklingUploadIsClosedAndFreesItsSlot() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let owner = try TestKey(dir: dir, name: "owner")
        let daemon = try Daemon(files: ["a": [owner.base64], "b": [owner.base64]], http: "max_concurrent_uploads = 1")
        defer { daemon.cleanUp() }
        try daemon.start()
        let content = [UInt8](repeating: 7, count: 1000)
        let head = RawUpload.head(try owner.sign("a", content, at: nowNanoseconds()), length: UInt64(content.count))
        // A byte a second keeps re-arming the 60 s body timeout; the pace floor (256 KiB in 30 s)
        // closes the connection anyway, well before the body could end.
        let trickling = try Sockets.connect(daemon.address, daemon.port)
        defer { close(trickling) }
        Sockets.send(trickling, head)
        var end = Sockets.ReadEnd.timedOut
        for byte in content.prefix(90) where end == .timedOut {
            Sockets.send(trickling, [byte])
            end = Sockets.waitForClose(trickling, seconds: 1)
        }
        #expect(end == .closed)
        // A head and then no body at all: the window starts with the head, so the pace closes it
        // at 30 s, before the 60 s body timeout would (and before a first byte could buy 30 s more).
        let silent = try Sockets.connect(daemon.address, daemon.port)
        defer { close(silent) }
        Sockets.send(silent, head)
        #expect(Sockets.waitForClose(silent, seconds: 50) == .closed)
        let reply = RawUpload.putUntilTaken(daemon, try owner.sign("b", content, at: nowNanoseconds()), content)
        #expect(
            reply?.status == 201, "upload after the trickling one answered \(reply?.status ?? 0): \(reply?.text ?? "")")
    }

    // MARK: Nothing comes back

    @Test func aDeletedFileDoesNotComeBackAfterItsTombstoneIsForgotten() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let owner = try TestKey(dir: dir, name: "owner")
        let daemon = try Daemon(files: ["a": [owner.base64]], extra: "tombstone_retention = \"2s\"")
        defer { daemon.cleanUp() }
        try daemon.start()
        let now = nowNanoseconds()
        let content = Array("v1".utf8)
        let v1 = try owner.sign("a", content, at: now)
        #expect(try HTTP.put(daemon, v1, content).status == 201)
        let tombstone = try owner.sign("a", [], at: now + 1_000_000, tombstone: true)
        let deleted = try HTTP.request(
            daemon.address, daemon.port, method: "DELETE", path: "/v1/files/a", headers: HTTP.signed(tombstone))
        #expect(deleted.status == 200)
        // The tombstone is forgotten after tombstone_retention: the name disappears from the list.
        #expect(eventually(30) { daemon.get("/v1/files").map { !$0.text.contains("\"a\"") } == true })
        // The old signed version (GET handed out its headers) is replayed: refused.
        let replay = try HTTP.put(daemon, v1, content)
        #expect(replay.status == 409, "\(replay.status) \(replay.text)")
        daemon.stop()
        try daemon.start()
        #expect(try HTTP.put(daemon, v1, content).status == 409)
        // A newer version is still welcome.
        let v2 = try owner.sign("a", Array("v2".utf8), at: nowNanoseconds())
        #expect(try HTTP.put(daemon, v2, Array("v2".utf8)).status == 201)
    }

    @Test func aFileChangedWhileTheDaemonWasStoppedIsFoundAtStart() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let owner = try TestKey(dir: dir, name: "owner")
        let daemon = try Daemon(files: ["a": [owner.base64], "b": [owner.base64]])
        defer { daemon.cleanUp() }
        try daemon.start()
        let now = nowNanoseconds()
        #expect(
            try HTTP.put(daemon, try owner.sign("a", Array("alpha".utf8), at: now), Array("alpha".utf8)).status == 201)
        #expect(
            try HTTP.put(daemon, try owner.sign("b", Array("bravo".utf8), at: now), Array("bravo".utf8)).status == 201)
        daemon.stop()
        // Same size, written in place (same inode): only the time tells.
        let handle = try #require(FileHandle(forWritingAtPath: daemon.stateDir + "/files/a"))
        handle.write(Data("ALPHA".utf8))
        try handle.close()
        try daemon.start()
        let damaged = daemon.get("/v1/files/a")
        #expect(damaged?.status == 404, "\(damaged?.status ?? 0) \(damaged?.text ?? "")")
        #expect(damaged?.text.contains("damaged") == true)
        #expect(daemon.get("/v1/files/b")?.text == "bravo")
        #expect(daemon.get("/v1/files").map { $0.text.contains("\"missing\":true") } == true)
    }

    /// `file status` of a version whose only copy was damaged says that no member has it to
    /// fetch, and how to restore it, instead of promising a fetch that cannot come.
    @Test func fileStatusSaysWhenNoMemberHasADamagedVersion() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let owner = try TestKey(dir: dir, name: "owner")
        let daemon = try Daemon(files: ["a": [owner.base64]])
        defer { daemon.cleanUp() }
        try daemon.start()
        let version = try owner.sign("a", Array("alpha".utf8), at: nowNanoseconds())
        #expect(try HTTP.put(daemon, version, Array("alpha".utf8)).status == 201)
        let handle = try #require(FileHandle(forWritingAtPath: daemon.stateDir + "/files/a"))
        handle.write(Data("ALPHA".utf8))
        try handle.close()
        _ = daemon.get("/v1/files/a")  // read: found damaged, marked missing
        let status = try daemon.cli(["file", "status", "a", "--url", daemon.url])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(
            status.stdout.contains("no live member has it to fetch: upload it again (file update) to restore it"),
            "\(status.stdout)")
    }

    @Test func anEmptyNodeFetchesManyFilesOnAFewStreams() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let owner = try TestKey(dir: dir, name: "owner")
        let names = (0..<600).map { "many/f\($0)" }
        let files = Dictionary(uniqueKeysWithValues: names.map { ($0, [owner.base64]) })
        let timing = "push_pull_interval = \"2s\"\njoin_interval = \"1s\""
        let source = try Daemon(files: files, cluster: timing, name: "node0")
        defer { source.cleanUp() }
        try source.start()
        let now = nowNanoseconds()
        for (index, name) in names.enumerated() {
            let content = Array("content of \(name)".utf8)
            #expect(try HTTP.put(source, try owner.sign(name, content, at: now + Int64(index)), content).status == 201)
        }
        let joiner = try Daemon(
            files: files, cluster: "bootstrap_nodes = [\"\(source.address):7946\"]\n" + timing, name: "node1")
        defer { joiner.cleanUp() }
        try joiner.start()
        #expect(eventually(120) { joiner.get("/v1/files/many/f599")?.text == "content of many/f599" })
        #expect(
            eventually(120) {
                (joiner.get("/v1/files").map { $0.text.components(separatedBy: "\"name\"").count - 1 }) == 600
            })
        // One stream per file before; now a fetch stream carries up to 256, and the rest are
        // push/pulls (every 2 s) and identity checks.
        let streams = SecurityTests.metric(source, "dm_cluster_streams_total{direction=\"in\"}")
        #expect(streams > 0 && streams < 60, "\(streams) streams for 600 files")
        #expect(SecurityTests.metric(joiner, "dm_fetches_total") >= 600)
    }

    // MARK: A full disk

    @Test(.enabled(if: getuid() == 0, "mounting a small tmpfs needs root"))
    func aFullDiskAnswers507AndRecoversWithoutRestart() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let owner = try TestKey(dir: dir, name: "owner")
        let daemon = try Daemon(
            files: ["small": [owner.base64], "huge": [owner.base64], "later": [owner.base64]],
            extra: "disk_reserve = \"0B\"")
        defer { daemon.cleanUp() }
        try FileManager.default.createDirectory(atPath: daemon.stateDir, withIntermediateDirectories: true)
        let mount = try runBounded(
            "/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", daemon.stateDir], seconds: 30)
        try #require(mount.status == 0, "mount failed: \(mount.stderr)")
        defer {
            daemon.stop(signal: SIGKILL)
            _ = try? runBounded("/bin/umount", [daemon.stateDir], seconds: 30)
        }
        try daemon.start()

        let small = Array("kept".utf8)
        #expect(try HTTP.put(daemon, try owner.sign("small", small, at: nowNanoseconds()), small).status == 201)
        // 3 MiB in chunks, without a Content-Length: only the writes can find the disk full.
        let huge = [UInt8](repeating: 1, count: 3 << 20)
        let version = try owner.sign("huge", huge, at: nowNanoseconds())
        // Kept alive, so that the server reads (drains) the rest of the body after it answered.
        var head = "PUT /v1/files/huge HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        for (name, value) in HTTP.signed(version) { head += "\(name): \(value)\r\n" }
        head += "\r\n"
        var body = [UInt8]()
        var offset = 0
        while offset < huge.count {
            let size = min(65536, huge.count - offset)
            body += Array((String(size, radix: 16) + "\r\n").utf8) + huge[offset..<offset + size] + Array("\r\n".utf8)
            offset += size
        }
        body += Array("0\r\n\r\n".utf8)
        let fd = try Sockets.connect(daemon.address, daemon.port)
        defer { close(fd) }
        Sockets.send(fd, Array(head.utf8) + body)
        let reply = Sockets.readReply(fd, seconds: 30)
        #expect(reply.hasPrefix("HTTP/1.1 507"), "\(reply.prefix(300))")
        #expect(reply.contains("disk full"), "\(reply.prefix(300))")

        // Nothing held was damaged, and the daemon takes uploads again without a restart.
        let kept = daemon.get("/v1/files/small")
        #expect(kept?.status == 200 && kept?.body == small)
        let later = Array("later".utf8)
        #expect(try HTTP.put(daemon, try owner.sign("later", later, at: nowNanoseconds()), later).status == 201)
        #expect(daemon.get("/metrics").map { $0.text.contains("dm_disk_full_total 1") } == true)
        #expect(daemon.tailOfLog(20000).contains("disk full"))

        // Killed with a torn last line in the records file, and restarted on a full disk: the
        // rewrite that drops the torn line needs room, and must not keep the node from starting
        // (an attacking helper's finding: it exited with "No space left on device").
        daemon.stop(signal: SIGKILL)
        let records = try #require(FileHandle(forWritingAtPath: daemon.stateDir + "/records"))
        try records.seekToEnd()
        try records.write(contentsOf: Data("0123456789abcdef {\"format\":1,\"sta".utf8))
        try records.close()
        let filler = daemon.stateDir + "/filler"
        let fill = try #require(
            FileHandle(forWritingAtPath: filler)
                ?? {
                    FileManager.default.createFile(atPath: filler, contents: nil)
                    return FileHandle(forWritingAtPath: filler)
                }())
        for _ in 0..<64 { guard (try? fill.write(contentsOf: Data(count: 64 << 10))) != nil else { break } }
        try? fill.close()
        try daemon.start()
        #expect(daemon.get("/v1/files/later")?.body == later)
        #expect(daemon.tailOfLog(20000).contains("could not be rewritten"), "\(daemon.tailOfLog(2000))")
        // With room again, the next change rewrites the file and is stored.
        try FileManager.default.removeItem(atPath: filler)
        let again = Array("again".utf8)
        #expect(try HTTP.put(daemon, try owner.sign("small", again, at: nowNanoseconds()), again).status == 201)
        let rewritten = try String(contentsOfFile: daemon.stateDir + "/records", encoding: .utf8)
        #expect(!rewritten.contains("0123456789abcdef"), "the torn line is still in the records file")
        daemon.stop(signal: SIGKILL)
        try daemon.start()
        #expect(daemon.get("/v1/files/small")?.body == again)
    }
}

/// A process run with a bound: killed (and reported as such) if it outlives `seconds`.
func runBounded(_ executable: String, _ arguments: [String], seconds: Double) throws -> (
    status: Int32, stdout: String, stderr: String
) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let outPath = NSTemporaryDirectory() + "dm-run-" + UUID().uuidString
    FileManager.default.createFile(atPath: outPath + ".out", contents: nil)
    FileManager.default.createFile(atPath: outPath + ".err", contents: nil)
    defer {
        try? FileManager.default.removeItem(atPath: outPath + ".out")
        try? FileManager.default.removeItem(atPath: outPath + ".err")
    }
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath + ".out"))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath + ".err"))
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(seconds)
    while process.isRunning && Date() < deadline { usleep(20_000) }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
    }
    process.waitUntilExit()
    let out = (try? String(contentsOfFile: outPath + ".out", encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: outPath + ".err", encoding: .utf8)) ?? ""
    return (process.terminationStatus, out, err)
}

/// Plain sockets, so a test controls the source address and every byte.
/// Raw uploads for the tests of upload slots.
enum RawUpload {
    /// The head of a PUT of `version` (signed headers) announcing `length` body bytes.
    static func head(_ version: FileVersion, length: UInt64) -> [UInt8] {
        var head = "PUT /v1/files/\(version.name.value) HTTP/1.1\r\nHost: x\r\nContent-Length: \(length)\r\n"
        for (name, value) in HTTP.signed(version) { head += "\(name): \(value)\r\n" }
        return Array((head + "\r\n").utf8)
    }

    /// Whether an upload is being received into the daemon's tmp/ (it holds a slot then).
    static func inProgress(_ daemon: Daemon) -> Bool {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: daemon.stateDir + "/tmp")) ?? []
        return entries.contains { $0.hasPrefix("upload-") }
    }

    /// Uploads `version` again and again (for at most 15 s) until it is taken (201); the last reply.
    static func putUntilTaken(_ daemon: Daemon, _ version: FileVersion, _ content: [UInt8]) -> HTTP.Reply? {
        var reply: HTTP.Reply?
        _ = eventually(15) {
            reply = try? HTTP.put(daemon, version, content)
            return reply?.status == 201
        }
        return reply
    }
}

enum Sockets {
    enum ReadEnd: Equatable { case closed, timedOut, data }

    static func address(_ host: String, _ port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        return address
    }

    /// A listening TCP socket on host:port (held by the test to make the port busy).
    static func listen(_ host: String, _ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket failed") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = address(host, port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, Glibc.listen(fd, 16) == 0 else {
            let code = errno
            close(fd)
            throw HarnessError("cannot listen on \(host):\(port): errno \(code)")
        }
        return fd
    }

    /// A connected TCP socket, from `source` when given; reads time out after 30 s.
    static func connect(_ host: String, _ port: Int, from source: String? = nil) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket failed") }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if let source {
            var local = address(source, 0)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0 else {
                close(fd)
                throw HarnessError("cannot bind source \(source): errno \(errno)")
            }
        }
        var remote = address(host, port)
        let connected = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            let code = errno
            close(fd)
            throw HarnessError("connect to \(host):\(port) failed: errno \(code)")
        }
        return fd
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    /// Reads (discarding) until the peer closes, or `seconds` pass.
    static func waitForClose(_ fd: Int32, seconds: Double) -> ReadEnd {
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 200)
            if ready <= 0 { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return .closed }  // EOF or reset
        }
        return .timedOut
    }

    /// Reads what arrives until the peer closes or goes quiet for a moment after a reply began,
    /// or `seconds` pass.
    static func readReply(_ fd: Int32, seconds: Double) -> String {
        let deadline = Date().addingTimeInterval(seconds)
        var response = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 200)
            if ready <= 0 {
                if let text = String(validating: response, as: UTF8.self), text.contains("\r\n\r\n"),
                    complete(text)
                {
                    break
                }
                continue
            }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            response += buffer[0..<n]
        }
        return String(decoding: response, as: UTF8.self)
    }

    static func complete(_ text: String) -> Bool {
        guard let range = text.range(of: "\r\n\r\n") else { return false }
        let head = text[..<range.lowerBound].lowercased()
        guard let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
            let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces))
        else { return true }
        return text[range.upperBound...].utf8.count >= length
    }

    /// One request from `source`, read until the server closes (bounded).
    static func request(_ host: String, _ port: Int, from source: String, _ text: String) throws -> String {
        let fd = try connect(host, port, from: source)
        defer { close(fd) }
        send(fd, Array(text.utf8))
        return readReply(fd, seconds: 15)
    }
}
