@preconcurrency import Crypto
import DataMesherCore
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The cluster port against strangers and clumsy operators: silent connections are closed at the
/// handshake deadline, one source cannot take every stream, and a busy address stops the daemon
/// with one line.
@Suite struct ClusterSocketTests {
    /// A TCP connection from `source` to `host:port` (blocking socket, receive timeout `seconds`).
    static func connect(to host: String, port: UInt16, from source: String, timeout seconds: Int = 30) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var local = Sockets.address(source, 0)
        var remote = Sockets.address(host, Int(port))
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        let connected = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, connected == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    /// Reads until the peer closes (true) or the receive timeout passes (false).
    static func waitForClose(_ fd: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<1000 {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count == 0 { return true }
            if count < 0 { return errno == ECONNRESET }
        }
        return false
    }

    @Test func aSilentConnectionIsClosedAtTheHandshakeDeadline() throws {
        let node = try Daemon(files: [:])
        defer { node.cleanUp() }
        try node.start()
        let opened = Date()
        let fd = try #require(Self.connect(to: node.address, port: 7946, from: "127.0.0.250"))
        defer { close(fd) }
        #expect(Self.waitForClose(fd))
        let waited = Date().timeIntervalSince(opened)
        // The deadline is 10 s; anything near the old 300 s would have hit the 30 s receive timeout.
        #expect(waited >= 9 && waited < 28, "closed after \(waited) s")
    }

    @Test func oneSourceCannotTakeEveryStreamAndReplicationGoesOn() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try TestKey(dir: dir, name: "owner")
        let nodes = try ClusterTests.cluster(2, key: key) { _ in ["big": [key.base64]] }
        defer { nodes.forEach { $0.cleanUp() } }
        #expect(eventually { nodes[0].memberState("node1") == "alive" && nodes[1].memberState("node0") == "alive" })
        // 40 silent connections from one address: at most 16 are kept, the rest closed at once.
        var held: [Int32] = []
        defer { held.forEach { close($0) } }
        for _ in 0..<40 {
            if let fd = Self.connect(to: nodes[0].address, port: 7946, from: "127.0.0.249", timeout: 2) {
                held.append(fd)
            }
        }
        usleep(300_000)
        var closedAtOnce = 0
        for fd in held {
            var byte: UInt8 = 0
            let count = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
            if count == 0 || (count < 0 && errno == ECONNRESET) { closedAtOnce += 1 }
        }
        #expect(closedAtOnce >= 40 - 16, "only \(closedAtOnce) of 40 were closed")
        // Meanwhile another source (node1) still pushes and fetches over TCP.
        let big = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        #expect(try HTTP.put(nodes[1], try key.sign("big", big, at: nowNanoseconds()), big).status == 201)
        #expect(eventually(30) { ClusterTests.content(of: nodes[0], "big") == big })
        #expect(SecurityTests.metric(nodes[0], "dm_cluster_streams_refused_total{reason=\"inbound_limit\"}") >= 20)
    }

    @Test func outgoingConnectionsLeaveFromTheNodesOwnAddress() throws {
        let (listener, port) = try RelayTests.listen(on: "127.0.0.246")
        defer { close(listener) }
        let node = try Daemon(
            files: [:], cluster: "bootstrap_nodes = [\"127.0.0.246:\(port)\"]\njoin_interval = \"1s\"\n")
        defer { node.cleanUp() }
        try node.start()
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var peer = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = withUnsafeMutablePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(listener, $0, &length) }
        }
        try #require(fd >= 0, "the node never dialed its bootstrap node")
        defer { close(fd) }
        var host = [CChar](repeating: 0, count: 64)
        inet_ntop(AF_INET, &peer.sin_addr, &host, socklen_t(host.count))
        // Not whatever the kernel picks (127.0.0.1 on loopback): the address the node is bound to.
        #expect(String(cString: host) == node.address)
    }

    @Test func aBusyClusterAddressStopsTheDaemonWithOneLine() throws {
        let node = try Daemon(files: [:])
        defer { node.cleanUp() }
        // Someone else holds the cluster port's UDP socket on the node's address.
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_port = UInt16(7946).bigEndian
        inet_pton(AF_INET, node.address, &local.sin_addr)
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(bound == 0)
        let result = try runProcess(Binary.path, ["server", "--config", node.configPath])
        #expect(result.status == 1)
        let lines = result.stderr.split(separator: "\n").filter { !$0.contains(" debug ") && !$0.contains(" info ") }
        #expect(lines.count == 1, "\(result.stderr)")
        #expect(result.stderr.contains("\(node.address):7946") && result.stderr.contains("already in use"))
        #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("backtrace"))
    }
}

/// A node whose clock is wrong says so, and shows each peer's offset, instead of silently refusing
/// correctly-clocked versions while it looks alive. Its peers here are the test's own: members
/// with real keys that answer probes with a clock an hour slow.
@Suite struct ClockTests {
    /// A member played by the test: announces itself and acks every ping with a skewed clock.
    final class FakePeer: @unchecked Sendable {  // used from one test thread
        let key = NodeKey(Curve25519.Signing.PrivateKey())
        let address: String
        let fd: Int32
        let skew: Int64

        init(address: String, skew: Int64) throws {
            self.address = address
            self.skew = skew
            fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_port = UInt16(7946).bigEndian
            inet_pton(AF_INET, address, &local.sin_addr)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0 else { throw HarnessError("cannot bind \(address):7946") }
            var timeout = timeval(tv_sec: 0, tv_usec: 20_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        deinit { close(fd) }

        func announce(to node: Daemon) {
            let me = MemberAnnouncement.signed(
                by: key, name: "slow-\(address)", incarnation: 1, addresses: [PeerAddress(host: address, port: 7946)])
            UDP.send(
                WireCodec.encode(Packet(sender: key.id, message: .gossip, items: [.alive(me)])), to: node.address,
                port: 7946, from: address, fromPort: 7946)
        }

        /// Answers the pings that arrived by now.
        func answer() {
            var buffer = [UInt8](repeating: 0, count: 65_536)
            var from = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            for _ in 0..<100 {
                let count = withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, &buffer, buffer.count, 0, $0, &length)
                    }
                }
                guard count > 0 else { return }
                guard let packet = try? WireCodec.decode(Array(buffer.prefix(count))),
                    case .ping(let sequence, let target) = packet.message, target == key.id
                else { continue }
                var host = [CChar](repeating: 0, count: 64)
                inet_ntop(AF_INET, &from.sin_addr, &host, socklen_t(host.count))
                let ack = Packet(
                    sender: key.id,
                    message: .ack(sequence: sequence, responder: key.id, clock: nowNanoseconds() - skew))
                UDP.send(
                    WireCodec.encode(ack), to: String(cString: host), port: Int(UInt16(bigEndian: from.sin_port)),
                    from: address, fromPort: 7946)
            }
        }
    }

    static func info(_ node: Daemon) -> [String: Any]? {
        guard let reply = node.get("/v1/info") else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any]
    }

    static func offsets(seenBy node: Daemon) -> [Double] {
        guard let reply = node.get("/v1/members"),
            let list = try? JSONSerialization.jsonObject(with: Data(reply.body)) as? [[String: Any]]
        else { return [] }
        return list.compactMap { ($0["clock_offset_seconds"] as? NSNumber)?.doubleValue }
    }

    @Test func aNodeWhoseClockDiffersFromItsPeersIsLoud() throws {
        let node = try Daemon(files: [:])
        defer { node.cleanUp() }
        try node.start()
        let hour: Int64 = 3_600_000_000_000
        let base = node.address.split(separator: ".").prefix(3).joined(separator: ".")
        let last = Int(node.address.split(separator: ".").last ?? "") ?? 1
        let peers = try (1...3).map { try FakePeer(address: "\(base).\((last + 100 + $0) % 250 + 1)", skew: hour) }
        for peer in peers { peer.announce(to: node) }
        // Every peer is an hour behind: this node is an hour ahead of its peers' median.
        var offset = 0.0
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            for peer in peers { peer.answer() }
            offset = (Self.info(node)?["clock_offset_seconds"] as? NSNumber)?.doubleValue ?? 0
            if offset > 3500 && Self.offsets(seenBy: node).filter({ $0 < -3500 }).count == 3 { break }
        }
        #expect(offset > 3500 && offset < 3700, "\(String(describing: Self.info(node)))")
        #expect(Self.offsets(seenBy: node).filter { $0 < -3500 }.count == 3)
        #expect(SecurityTests.metric(node, "dm_clock_offset_seconds") > 3500)
        #expect(node.tailOfLog(100_000).contains("clock differs from its peers"))
    }
}
