@preconcurrency import Crypto
import DataMesherCore
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Thousands of connections from many source addresses, against a node started under a small
/// open-files limit (256): the descriptor budget keeps room for the members' streams, the
/// node's own fetches and uploads, so replication goes on while strangers hold every slot they
/// may have.
@Suite struct FloodTests {
    /// Up to `count` silent connections to `host:port` from `sources` addresses 127.0.<subnet>.1…,
    /// kept up on a thread: each one the server closes is opened again at once, as an attacker
    /// would, until `stop()` (or 180 s at most).
    final class Flood: @unchecked Sendable {  // `fds` is touched by the thread only, until stop()
        let stopped = NSCondition()
        var stopping = false
        var done = false
        var fds: [Int32] = []
        var opened = 0

        init(_ host: String, port: UInt16, count: Int, sources: Int, subnet: Int) {
            let thread = Thread { [self] in
                var next = 0
                let deadline = Date().addingTimeInterval(180)
                func source() -> String {
                    next += 1
                    return "127.0.\(subnet).\(next % sources + 1)"
                }
                while Date() < deadline && !stopped.withLock({ stopping }) {
                    while fds.count < count,
                        let fd = FloodTests.connect(to: host, port: port, from: source(), milliseconds: 50)
                    {
                        fds.append(fd)
                        stopped.withLock { opened += 1 }
                    }
                    // Drop the ones the server closed; they are opened again on the next round.
                    var polled = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
                    _ = poll(&polled, nfds_t(polled.count), 20)
                    fds = zip(fds, polled).compactMap { fd, state in
                        guard state.revents != 0 else { return fd }
                        var byte: UInt8 = 0
                        if recv(fd, &byte, 1, Int32(MSG_DONTWAIT)) > 0 { return fd }
                        close(fd)
                        return nil
                    }
                }
                fds.forEach { close($0) }
                stopped.withLock {
                    done = true
                    stopped.broadcast()
                }
            }
            thread.start()
        }

        /// Connections opened so far.
        var count: Int { stopped.withLock { opened } }

        func stop() {
            stopped.withLock {
                stopping = true
                while !done { stopped.wait() }
            }
        }
    }

    static let fileLimit = 256

    /// A non-blocking connect from `source`, given `milliseconds` to complete; nil if it did not.
    static func connect(to host: String, port: UInt16, from source: String, milliseconds: Int32 = 1000) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return nil }
        var local = Sockets.address(source, 0)
        var remote = Sockets.address(host, Int(port))
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        let started = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        var connected = bound == 0 && started == 0
        if bound == 0 && started != 0 && errno == EINPROGRESS {
            var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            connected =
                poll(&poller, 1, milliseconds) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0
                && error == 0
        }
        guard connected else {
            close(fd)
            return nil
        }
        return fd
    }

    /// Raises this process's own open-files limit: the test holds thousands of sockets.
    static func raiseOwnFileLimit(to wanted: rlim_t) -> Bool {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return false }
        if limit.rlim_cur >= wanted { return true }
        limit.rlim_cur = min(max(limit.rlim_cur, wanted), limit.rlim_max)
        return setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 && limit.rlim_cur >= wanted
    }

    static func openFiles(_ node: Daemon) -> Int {
        guard let pid = node.process?.processIdentifier else { return 0 }
        return (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
    }

    @Test func floodsOfConnectionsFromManySourcesLeaveRoomForMembersFetchesAndUploads() throws {
        try #require(Self.raiseOwnFileLimit(to: 8192), "the test needs 8192 open files")
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try TestKey(dir: dir, name: "owner")
        let files = ["a": [key.base64], "b": [key.base64], "c": [key.base64]]
        let timing = "push_pull_interval = \"2s\"\njoin_interval = \"1s\""
        let target = try Daemon(files: files, cluster: timing, name: "node0")
        target.fileLimit = Self.fileLimit
        defer { target.cleanUp() }
        try target.start()
        let peer = try Daemon(
            files: files, cluster: "bootstrap_nodes = [\"\(target.address):7946\"]\n" + timing, name: "node1")
        defer { peer.cleanUp() }
        try peer.start()
        #expect(eventually { target.memberState("node1") == "alive" && peer.memberState("node0") == "alive" })

        // 1. 2,000 silent cluster connections from 100 addresses, kept up: strangers hold their
        // slots (closed at the handshake deadline and opened again, refused beyond the cap), and
        // the members' streams have their own.
        let clusterFlood = Flood(target.address, port: 7946, count: 2000, sources: 100, subnet: 5)
        defer { clusterFlood.stop() }
        #expect(eventually(30) { clusterFlood.count >= 2000 })
        // Content too big to ride inline: each node fetches it from the other over a stream.
        let big = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        #expect(try HTTP.put(target, try key.sign("a", big, at: nowNanoseconds()), big).status == 201)
        #expect(try HTTP.put(peer, try key.sign("b", big, at: nowNanoseconds()), big).status == 201)
        #expect(eventually(20) { ClusterTests.content(of: peer, "a") == big })
        #expect(eventually(20) { ClusterTests.content(of: target, "b") == big })
        #expect(target.get("/v1/info")?.status == 200)
        #expect(SecurityTests.metric(target, "dm_cluster_streams_refused_total{reason=\"inbound_limit\"}") >= 100)
        clusterFlood.stop()

        // 2. 1,000 silent HTTP connections from 100 other addresses (10 each, under the
        // per-source cap), kept up: the node's HTTP share fills, and what is left of its
        // descriptors still fetches and stores what the peer is given.
        let httpFlood = Flood(target.address, port: UInt16(target.port), count: 1000, sources: 100, subnet: 6)
        defer { httpFlood.stop() }
        #expect(eventually(30) { httpFlood.count >= 1000 })
        let later = big.reversed() as [UInt8]
        #expect(try HTTP.put(peer, try key.sign("c", later, at: nowNanoseconds()), later).status == 201)
        let onDisk = target.stateDir + "/files/c"
        #expect(eventually(20) { FileManager.default.contents(atPath: onDisk).map(Array.init) == later })
        #expect(Self.openFiles(target) <= Self.fileLimit)
        #expect(target.process?.isRunning == true)
        httpFlood.stop()
        // Once the strangers are gone the API answers again (it may take their header timeout).
        #expect(eventually(30) { target.get("/v1/info")?.status == 200 })
        #expect(target.memberState("node1") == "alive")
    }
}
