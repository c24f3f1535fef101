@preconcurrency import Crypto
import DataMesherCore
import DataMesherKeys
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Real daemons on loopback, attacked with traffic the test makes itself: forged membership
/// claims, fake members by the thousand, forged acks for a dead node, junk "from" a peer's
/// address, datagrams replayed to another node, versions with negative timestamps, and a CA-signed
/// certificate without the node profile. Each of these hurt a node before wire version 2.
@Suite struct AttackTests {
    /// What the test knows of a running node: its key (read from its state dir), ID and address.
    struct Target {
        let key: NodeKey
        let address: PeerAddress
        var id: NodeID { key.id }

        init(_ daemon: Daemon, keyPath: String? = nil) throws {
            key = NodeKey(try KeyFile.readPrivateKey(path: keyPath ?? daemon.stateDir + "/node.key"))
            address = PeerAddress(host: daemon.address, port: 7946)
        }
    }

    static func incarnation(of name: String, seenBy node: Daemon) -> UInt64? {
        guard let reply = node.get("/v1/members"),
            let list = try? JSONSerialization.jsonObject(with: Data(reply.body)) as? [[String: Any]],
            let entry = list.first(where: { $0["name"] as? String == name })
        else { return nil }
        return (entry["incarnation"] as? NSNumber)?.uint64Value
    }

    static func addresses(of name: String, seenBy node: Daemon) -> [String] {
        guard let reply = node.get("/v1/members"),
            let list = try? JSONSerialization.jsonObject(with: Data(reply.body)) as? [[String: Any]],
            let entry = list.first(where: { $0["name"] as? String == name })
        else { return [] }
        return entry["addresses"] as? [String] ?? []
    }

    static func send(_ packet: Packet, to node: Daemon, from source: String = "127.0.0.250", port: UInt16 = 0) {
        UDP.send(WireCodec.encode(packet), to: node.address, port: 7946, from: source, fromPort: port)
    }

    static func allRunning(_ nodes: [Daemon]) -> Bool { nodes.allSatisfy { $0.process?.isRunning == true } }

    @Test func forgedMembershipClaimsNeitherCrashNorEvictNorMoveANode() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try TestKey(dir: dir, name: "owner")
        let nodes = try ClusterTests.cluster(3, key: key) { _ in ["config:app": [key.base64]] }
        defer { nodes.forEach { $0.cleanUp() } }
        let everyone = ["node0", "node1", "node2"]
        #expect(eventually { nodes.allSatisfy { node in everyone.allSatisfy { node.memberState($0) == "alive" } } })
        let victim = try Target(nodes[1])
        let witness = try Target(nodes[2])
        let attacker = NodeKey(Curve25519.Signing.PrivateKey())
        let junkSignature = [UInt8](repeating: 0x42, count: 64)
        let before = try #require(Self.incarnation(of: "node1", seenBy: nodes[0]))
        var stolen = MemberAnnouncement.signed(
            by: attacker, name: "node1", incarnation: .max,
            addresses: [PeerAddress(host: "127.0.0.250", port: 7946)])
        stolen.id = victim.id
        var items: [GossipItem] = [.alive(stolen)]
        for incarnation in [UInt64.max, UInt64.max - 1, before, before + 1] {
            for from in [victim.id, witness.id, attacker.id] {
                let accusation = Accusation(
                    id: victim.id, incarnation: incarnation, from: from, signature: junkSignature)
                items += [.dead(accusation), .suspect(accusation)]
            }
        }
        // Every claim, to every node (the victim included), many times: the packet that used to
        // crash-loop a node, forged leaves, fake "independent" confirmations, a stolen identity.
        for _ in 0..<20 {
            for chunk in stride(from: 0, to: items.count, by: 8) {
                let packet = Packet(
                    sender: witness.id, message: .gossip, items: Array(items[chunk..<min(chunk + 8, items.count)]))
                for node in nodes { Self.send(packet, to: node) }
            }
            usleep(20_000)
        }
        // A correctly signed accusation at an absurd incarnation, by a real member, is not refuted
        // to the end of the counter either.
        let absurd = Accusation.signed(id: victim.id, incarnation: .max - 1, dead: true, by: witness.key)
        Self.send(Packet(sender: witness.id, message: .gossip, items: [.dead(absurd)]), to: nodes[1])
        usleep(500_000)
        #expect(Self.allRunning(nodes), "a node died: \(nodes.map { $0.tailOfLog(500) })")
        for node in nodes {
            #expect(
                eventually(10) { everyone.allSatisfy { node.memberState($0) == "alive" } },
                Comment(rawValue: node.address))
            #expect(Self.addresses(of: "node1", seenBy: node) == ["\(nodes[1].address):7946"])
            let incarnation = Self.incarnation(of: "node1", seenBy: node) ?? .max
            #expect(incarnation < before + 1000, "node1 incarnation \(incarnation) at \(node.address)")
        }
        let bytes = Array("still replicating".utf8)
        #expect(try HTTP.put(nodes[1], try key.sign("config:app", bytes, at: nowNanoseconds()), bytes).status == 201)
        for node in nodes { #expect(eventually(30) { ClusterTests.content(of: node, "config:app") == bytes }) }
        // Restarting the victim finds no poisoned state anywhere.
        nodes[1].stop(signal: SIGKILL)
        try nodes[1].start()
        #expect(eventually(30) { nodes.allSatisfy { node in everyone.allSatisfy { node.memberState($0) == "alive" } } })
        #expect(Self.allRunning(nodes))
    }

    /// Members announced at addresses nobody can be sent to (broadcast, multicast, unspecified):
    /// the kernel refuses a send to a broadcast address, and SwiftNIO closes a UDP socket on such
    /// a refusal, which left a node deaf to every datagram until it was restarted.
    /// Broadcast and multicast addresses, and (an attacking helper's finding) addresses this
    /// node has no route to: from a socket bound to loopback, any address off the machine. A
    /// send there failed, and SwiftNIO closed the cluster socket each time.
    @Test func membersAnnouncedAtBroadcastOrUnroutableAddressesDoNotDeafenANode() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try TestKey(dir: dir, name: "owner")
        let nodes = try ClusterTests.cluster(2, key: key) { _ in ["config:app": [key.base64]] }
        defer { nodes.forEach { $0.cleanUp() } }
        #expect(eventually { ClusterTests.allAlive(nodes) })
        let hosts = ["255.255.255.255", "224.0.0.1", "0.0.0.0", "ff02::1", "::", "192.0.2.1", "198.51.100.7"]
        let items: [GossipItem] = hosts.map { host in
            let stranger = NodeKey(Curve25519.Signing.PrivateKey())
            return .alive(
                MemberAnnouncement.signed(
                    by: stranger, name: "at-\(host)", incarnation: 1, addresses: [PeerAddress(host: host, port: 7946)]))
        }
        let victim = nodes[0]
        func received() -> Double { SecurityTests.metric(victim, "dm_gossip_packets_in_total") }
        Self.send(
            Packet(sender: NodeKey(Curve25519.Signing.PrivateKey()).id, message: .gossip, items: items), to: victim)
        // The next tick pings each new member at its address; then the node must still hear its peer.
        usleep(1_000_000)
        let before = received()
        try #require(before >= 0)
        #expect(eventually(10) { received() >= before + 5 }, "no datagram since: \(victim.tailOfLog(1500))")
        #expect(!victim.tailOfLog(20_000).contains("UDP socket closed"), "\(victim.tailOfLog(1500))")
        usleep(6_000_000)  // the confirmation pings are sent again 5 s later
        #expect(!victim.tailOfLog(20_000).contains("UDP socket closed"), "\(victim.tailOfLog(1500))")
        #expect(victim.memberState("node1") == "alive")
    }

    @Test func thousandsOfFakeMembersDoNotSlowReplication() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try TestKey(dir: dir, name: "owner")
        let nodes = try ClusterTests.cluster(3, key: key) { _ in ["config:app": [key.base64], "big": [key.base64]] }
        defer { nodes.forEach { $0.cleanUp() } }
        let everyone = ["node0", "node1", "node2"]
        #expect(eventually { nodes.allSatisfy { node in everyone.allSatisfy { node.memberState($0) == "alive" } } })
        let sender = try Target(nodes[0])
        // 4,000 members with real keys and valid signatures, at addresses where nobody answers,
        // in 200 datagrams to every node.
        var fakes: [GossipItem] = []
        for number in 0..<4000 {
            let fake = NodeKey(Curve25519.Signing.PrivateKey())
            fakes.append(
                .alive(
                    .signed(
                        by: fake, name: "fake\(number)", incarnation: 1,
                        addresses: [PeerAddress(host: "127.1.\(number / 200).\(number % 200 + 1)", port: 7946)])))
        }
        for chunk in stride(from: 0, to: fakes.count, by: 20) {
            let packet = Packet(sender: sender.id, message: .gossip, items: Array(fakes[chunk..<chunk + 20]))
            for node in nodes { Self.send(packet, to: node) }
        }
        // Replication among the real members goes on at once, small and large files alike
        // (push/pull and fetches only ever pick members that answered a probe).
        let bytes = Array("among the fakes".utf8)
        #expect(try HTTP.put(nodes[0], try key.sign("config:app", bytes, at: nowNanoseconds()), bytes).status == 201)
        let big = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        #expect(try HTTP.put(nodes[2], try key.sign("big", big, at: nowNanoseconds()), big).status == 201)
        for node in nodes {
            #expect(
                eventually(15) { ClusterTests.content(of: node, "config:app") == bytes },
                Comment(rawValue: node.address))
            #expect(eventually(15) { ClusterTests.content(of: node, "big") == big }, Comment(rawValue: node.address))
        }
        // No fake is listed as a member, and the real ones are all alive.
        for node in nodes {
            #expect(SecurityTests.names(seenBy: node) == Set(everyone))
            #expect(
                eventually(10) { everyone.allSatisfy { node.memberState($0) == "alive" } },
                "\(everyone.map { node.memberState($0) ?? "?" }) at \(node.address)")
        }
        #expect(SecurityTests.metric(nodes[1], "dm_gossip_packets_dropped_total{reason=\"claim_new_member_rate\"}") > 0)
        // Unanswered, they are forgotten within a minute (the next upload still flies).
        #expect(
            eventually(90) {
                SecurityTests.metric(nodes[1], "dm_gossip_packets_dropped_total{reason=\"claim_unconfirmed\"}") >= 256
            })
    }

    @Test func forgedAcksDoNotHideADeadNode() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try TestKey(dir: dir, name: "owner")
        let nodes = try ClusterTests.cluster(3, key: key) { _ in ["config:app": [key.base64]] }
        defer { nodes.forEach { $0.cleanUp() } }
        let everyone = ["node0", "node1", "node2"]
        #expect(eventually { nodes.allSatisfy { node in everyone.allSatisfy { node.memberState($0) == "alive" } } })
        let dead = try Target(nodes[2])
        nodes[2].stop(signal: SIGKILL)
        // From the dead node's own address and port, acks for every small sequence number (what
        // sequential probe numbers would be), to both survivors, until they declare it dead.
        let forger = Thread {
            let deadline = Date().addingTimeInterval(60)
            var sequence: UInt32 = 0
            while Date() < deadline
                && !(nodes[0].memberState("node2") == "dead" && nodes[1].memberState("node2") == "dead")
            {
                for _ in 0..<200 {
                    sequence = (sequence + 1) % 5000
                    let ack = Packet(
                        sender: dead.id,
                        message: .ack(sequence: sequence, responder: dead.id, clock: nowNanoseconds()))
                    for node in nodes.prefix(2) {
                        Self.send(ack, to: node, from: nodes[2].address, port: 7946)
                    }
                }
                usleep(10_000)
            }
        }
        forger.start()
        #expect(eventually(60) { nodes[0].memberState("node2") == "dead" && nodes[1].memberState("node2") == "dead" })
        let deadline = Date().addingTimeInterval(10)
        while forger.isExecuting && Date() < deadline { usleep(10_000) }
    }

    @Test func junkFromAPeersAddressDoesNotSilenceItAndDatagramsOpenOnlyWhereSent() throws {
        let secrets = try SecurityTests.Secrets()
        defer { try? FileManager.default.removeItem(atPath: secrets.dir) }
        let key = try TestKey(dir: secrets.dir, name: "owner")
        var nodes: [Daemon] = []
        defer { nodes.forEach { $0.cleanUp() } }
        for index in 0..<3 {
            nodes.append(
                try SecurityTests.node(
                    "node\(index)", bootstrap: nodes.first,
                    encryption: secrets.encryption(rings: ["ring1"], identity: nil),
                    files: ["config:app": [key.base64]]))
        }
        for node in nodes { try node.start() }
        let everyone = ["node0", "node1", "node2"]
        #expect(eventually { nodes.allSatisfy { node in everyone.allSatisfy { node.memberState($0) == "alive" } } })
        // Sealed-looking junk, each with a new salt, "from" node1's address, aimed at node0 for 8 s:
        // far over the allowance of new senders per address.
        let peer = nodes[1].address
        let target = nodes[0].address
        let flooder = Thread {
            var rng = SystemRandomNumberGenerator()
            let end = Date().addingTimeInterval(8)
            while Date() < end {
                for _ in 0..<100 {
                    let junk = (0..<Int.random(in: 60...200, using: &rng)).map { _ in
                        UInt8.random(in: 0...255, using: &rng)
                    }
                    UDP.send([Seal.sealedPacketMarker] + junk, to: target, port: 7946, from: peer)
                }
                usleep(5_000)
            }
        }
        flooder.start()
        var states: [String] = []
        for round in 0..<4 {
            let bytes = Array("during the spoofed flood \(round)".utf8)
            #expect(
                try HTTP.put(nodes[1], try key.sign("config:app", bytes, at: nowNanoseconds()), bytes).status == 201)
            #expect(
                eventually(10) { ClusterTests.content(of: nodes[0], "config:app") == bytes },
                Comment(rawValue: "round \(round)"))
            states.append(nodes[0].memberState("node1") ?? "?")
            usleep(1_000_000)
        }
        let deadline = Date().addingTimeInterval(20)
        while flooder.isExecuting && Date() < deadline { usleep(10_000) }
        #expect(states.allSatisfy { $0 == "alive" }, "node0 saw node1 as \(states)")
        #expect(
            SecurityTests.metric(nodes[0], "dm_gossip_packets_dropped_total{reason=\"rate_limited\"}") > 0)
        // A datagram sealed with the keyring for node0 opens there once: replayed, or sent to
        // node2, it is dropped.
        let ring = try KeyringFile.read(path: secrets.dir + "/ring1")
        let node0 = try Target(nodes[0])
        let sender = try Target(nodes[1])
        var sealer = PacketSealer(ringKey: ring, salt: [UInt8](repeating: 0x3C, count: Seal.saltLength))
        let sealed = sealer.seal(WireCodec.encode(Packet(sender: sender.id, message: .gossip)), for: node0.id)
        func dropped(_ node: Daemon, _ reason: String) -> Double {
            SecurityTests.metric(node, "dm_gossip_packets_dropped_total{reason=\"\(reason)\"}")
        }
        let replaysBefore = dropped(nodes[0], "replay")
        let authBefore = dropped(nodes[2], "auth")
        for _ in 0..<3 { UDP.send(sealed, to: nodes[0].address, port: 7946, from: "127.0.0.251") }
        UDP.send(sealed, to: nodes[2].address, port: 7946, from: "127.0.0.251")
        #expect(eventually(10) { dropped(nodes[0], "replay") >= replaysBefore + 2 })
        #expect(eventually(10) { dropped(nodes[2], "auth") >= authBefore + 1 })
    }

    @Test func aPeerVersionWithANegativeOrExtremeTimestampIsRefusedAndHarmless() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try TestKey(dir: dir, name: "owner")
        let nodes = try ClusterTests.cluster(2, key: key) { _ in ["config:app": [key.base64]] }
        defer { nodes.forEach { $0.cleanUp() } }
        #expect(eventually { nodes[0].memberState("node1") == "alive" && nodes[1].memberState("node0") == "alive" })
        let sender = try Target(nodes[1])
        let content = Array("from the past".utf8)
        for timestamp in [Int64(-5), Int64.min, Int64.min + 1] {
            for validFor in [UInt64(0), UInt64.max, UInt64(Int64.max)] {
                let version = try key.sign("config:app", content, at: timestamp, validFor: validFor)
                let packet = Packet(sender: sender.id, message: .gossip, items: [.file(version, inline: content)])
                Self.send(packet, to: nodes[0])
            }
        }
        let future = try key.sign("config:app", content, at: .max)
        Self.send(Packet(sender: sender.id, message: .gossip, items: [.file(future, inline: content)]), to: nodes[0])
        usleep(1_000_000)
        #expect(Self.allRunning(nodes), "\(nodes[0].tailOfLog(800))")
        #expect(nodes[0].get("/v1/files/config:app")?.status == 404)
        // The same rules as the API, which refuses them too.
        let viaAPI = try key.sign("config:app", content, at: -5)
        #expect(try HTTP.put(nodes[0], viaAPI, content).status == 400)
        let bytes = Array("now".utf8)
        #expect(try HTTP.put(nodes[1], try key.sign("config:app", bytes, at: nowNanoseconds()), bytes).status == 201)
        #expect(eventually(30) { ClusterTests.content(of: nodes[0], "config:app") == bytes })
    }

    /// Made-up holding claims and refusals in a member's name, 64 a datagram, for a name the node
    /// asked about: each would cost a signature check; the node checks at most a bounded number a
    /// second, shows none of them, and still learns what the member really holds and refused.
    @Test func madeUpClaimsAndRefusalsAreNeitherBelievedNorCheckedWithoutBound() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try TestKey(dir: dir, name: "owner")
        let nodes = try ClusterTests.cluster(2, key: key, files: { _ in ["zone": [key.base64]] }) { index in
            index == 1 ? "max_file_size = \"1KiB\"" : ""
        }
        defer { nodes.forEach { $0.cleanUp() } }
        #expect(eventually { ClusterTests.allAlive(nodes) })
        let member = try Target(nodes[1])
        let zone = try FileName("zone")
        func status() -> String {
            (try? nodes[0].cli(["file", "status", "zone", "--url", nodes[0].url, "--json"]))?.stdout ?? ""
        }
        _ = status()  // node0 asks about the name, so claims about it are taken up
        for batch in 0..<60 {
            let items = (0..<64).map { index -> GossipItem in
                let timestamp = Int64(1_000_000 + batch * 64 + index)
                let prefix = [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: 16)
                let signature = [UInt8](repeating: 7, count: 64)
                return index % 2 == 0
                    ? .holding(
                        Holding(
                            holder: member.id, name: zone, timestamp: timestamp, signaturePrefix: prefix,
                            signature: signature))
                    : .refusal(
                        RefusalClaim(
                            holder: member.id, name: zone, timestamp: timestamp, signaturePrefix: prefix,
                            reasonCode: 4, limit: 0, signature: signature))
            }
            Self.send(Packet(sender: member.id, message: .gossip, items: items), to: nodes[0])
            usleep(2_000)
        }
        #expect(
            eventually(30) {
                SecurityTests.metric(nodes[0], "dm_gossip_packets_dropped_total{reason=\"claim_over_check_budget\"}")
                    >= 1
            })
        #expect(SecurityTests.metric(nodes[0], "dm_gossip_packets_dropped_total{reason=\"claim_bad_signature\"}") >= 1)
        #expect(Self.allRunning(nodes), "\(nodes[0].tailOfLog(800))")
        let shown =
            (try? JSONSerialization.jsonObject(with: Data(status().utf8)) as? [String: Any])?["members"]
            as? [[String: Any]] ?? []
        let claimed = shown.first { $0["name"] as? String == "node1" }
        #expect(claimed != nil && claimed?["refused"] == nil && claimed?["timestamp"] == nil, "\(shown)")
        // The member's real refusal still gets through.
        try String(repeating: "z", count: 4096).write(toFile: dir + "/zone", atomically: true, encoding: .utf8)
        let update = try nodes[0].cli([
            "file", "update", dir + "/zone", "--url", nodes[0].url, "--key", key.path, "--wait", "all", "--timeout",
            "120s",
        ])
        #expect(
            update.stderr.contains("node1 refused it: the content is larger than its max_file_size"), "\(update.stderr)"
        )
    }

    @Test func aCASignedCertificateWithoutTheNodeProfileIsNotAdmitted() throws {
        let secrets = try SecurityTests.Secrets()
        defer { try? FileManager.default.removeItem(atPath: secrets.dir) }
        let key = try TestKey(dir: secrets.dir, name: "owner")
        let files = ["config:app": [key.base64]]
        // A certificate the CA signed for a key, as an operator might make with openssl: a CA
        // certificate, not a node certificate.
        let dir = secrets.dir
        try secrets.cli([
            "generate", "node-key", "--private-key-path", "\(dir)/rogue.key", "--public-key-path", "\(dir)/rogue.pub",
        ])
        let extensions = "\(dir)/ca-ext.cnf"
        try "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,digitalSignature\n".write(
            toFile: extensions, atomically: true, encoding: .utf8)
        // openssl wants the CA as a certificate: a self-signed one for the same CA key (only the
        // key's signature is checked by data-mesher).
        let caCert = try runProcess(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-new", "-key", "\(dir)/ca.key", "-subj", "/CN=ca", "-days", "30", "-out",
                "\(dir)/ca.pem",
            ])
        #expect(caCert.status == 0, "\(caCert.stderr)")
        let csr = try runProcess(
            "/usr/bin/openssl",
            ["req", "-new", "-key", "\(dir)/rogue.key", "-subj", "/CN=rogue", "-out", "\(dir)/rogue.csr"])
        #expect(csr.status == 0, "\(csr.stderr)")
        let signed = try runProcess(
            "/usr/bin/openssl",
            [
                "x509", "-req", "-in", "\(dir)/rogue.csr", "-CA", "\(dir)/ca.pem", "-CAkey", "\(dir)/ca.key",
                "-CAcreateserial", "-days", "30", "-extfile", extensions, "-out", "\(dir)/rogue.cert",
            ])
        #expect(signed.status == 0, "\(signed.stderr)")
        let good = try secrets.identity("good")
        var nodes: [Daemon] = []
        defer { nodes.forEach { $0.cleanUp() } }
        nodes.append(
            try SecurityTests.node(
                "node0", bootstrap: nil, encryption: secrets.encryption(rings: ["ring1"], identity: good),
                files: files))
        nodes.append(
            try SecurityTests.node(
                "rogue", bootstrap: nodes[0],
                encryption: secrets.encryption(
                    rings: ["ring1"], identity: ("\(dir)/rogue.key", "\(dir)/rogue.cert")),
                files: files))
        try nodes[0].start()
        if FileManager.default.fileExists(atPath: "\(dir)/rogue.cert") {
            try nodes[1].start()
            #expect(
                eventually(20) { nodes[0].tailOfLog(20_000).contains("not a node certificate") },
                "\(nodes[0].tailOfLog())")
            #expect(SecurityTests.names(seenBy: nodes[0]) == ["node0"])
        } else {
            Issue.record("openssl did not make the rogue certificate: \(signed.stderr)")
        }
    }
}

/// A keyring holder without a certificate sits between two certified nodes (node A dials it as
/// its bootstrap node, and it dials node B) and swaps in its own ephemeral keys both ways, so it
/// could read and change the session if sessions were not bound to identities. It opens A's
/// proof (it did the key exchange with A) and passes it on to B under the keys it shares with B:
/// B refuses it, because A signed a transcript that holds the relay's key, not B's view of it.
@Suite struct RelayTests {
    static func listen(on host: String) throws -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, host, &address.sin_addr)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, Glibc.listen(fd, 4) == 0 else { throw HarnessError("cannot listen on \(host)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    static func readExactly(_ fd: Int32, _ count: Int) -> [UInt8]? {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: count)
        while out.count < count {
            let got = recv(fd, &buffer, count - out.count, 0)
            guard got > 0 else { return nil }
            out += buffer.prefix(got)
        }
        return out
    }

    static func readRecord(_ fd: Int32) -> (prefix: [UInt8], body: [UInt8])? {
        guard let prefix = readExactly(fd, 4) else { return nil }
        let length = prefix.reduce(0) { $0 << 8 | Int($1) }
        guard length <= 64 * 1024, let body = readExactly(fd, length) else { return nil }
        return (prefix, body)
    }

    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    }

    @Test func aRelayWithTheKeyringButNoCertificateCannotJoinTwoNodesSession() throws {
        let secrets = try SecurityTests.Secrets()
        defer { try? FileManager.default.removeItem(atPath: secrets.dir) }
        let key = try TestKey(dir: secrets.dir, name: "owner")
        let files = ["config:app": [key.base64]]
        let b = try SecurityTests.node(
            "nodeB", bootstrap: nil,
            encryption: secrets.encryption(rings: ["ring1"], identity: try secrets.identity("nodeB")), files: files)
        defer { b.cleanUp() }
        try b.start()
        let relayHost = "127.0.0.248"
        let (listener, relayPort) = try Self.listen(on: relayHost)
        defer { close(listener) }
        let a = try Daemon(
            files: files,
            cluster: "bootstrap_nodes = [\"\(relayHost):\(relayPort)\"]\n" + SecurityTests.timing
                + secrets.encryption(rings: ["ring1"], identity: try secrets.identity("nodeA")),
            name: "nodeA")
        defer { a.cleanUp() }
        let ring = try KeyringFile.read(path: secrets.dir + "/ring1")
        try a.start()
        // The relay: one connection from A, one to B, its own ephemeral key on each side.
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let fromA = accept(listener, nil, nil)
        try #require(fromA >= 0, "A never dialed the relay")
        defer { close(fromA) }
        setsockopt(fromA, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let toB = try #require(ClusterSocketTests.connect(to: b.address, port: 7946, from: relayHost, timeout: 20))
        defer { close(toB) }
        let preambleOfA = try StreamHandshake.preamble(
            try #require(Self.readExactly(fromA, StreamHandshake.preambleLength)))
        let towardA = Curve25519.KeyAgreement.PrivateKey()
        let towardB = Curve25519.KeyAgreement.PrivateKey()
        let relayToA = StreamHandshake.Preamble(
            flags: preambleOfA.flags, ephemeral: Array(towardA.publicKey.rawRepresentation))
        let relayToB = StreamHandshake.Preamble(
            flags: preambleOfA.flags, ephemeral: Array(towardB.publicKey.rawRepresentation))
        Self.sendAll(fromA, relayToA.encoded)
        Self.sendAll(toB, relayToB.encoded)
        let preambleOfB = try StreamHandshake.preamble(
            try #require(Self.readExactly(toB, StreamHandshake.preambleLength)))
        // Both legs' keys: the relay holds the keyring, and did each key exchange itself.
        let legA = StreamHandshake.sessionKeys(
            sharedSecret: try #require(StreamHandshake.sharedSecret(towardA, theirs: preambleOfA.ephemeral)),
            ringKey: ring, transcript: StreamHandshake.transcriptHash(initiator: preambleOfA, responder: relayToA))
        let legB = StreamHandshake.sessionKeys(
            sharedSecret: try #require(StreamHandshake.sharedSecret(towardB, theirs: preambleOfB.ephemeral)),
            ringKey: ring, transcript: StreamHandshake.transcriptHash(initiator: relayToB, responder: preambleOfB))
        // A's proof opens on the relay's leg with A ...
        let record = try #require(Self.readRecord(fromA))
        var openA = StreamCipher(key: legA.initiatorToResponder)
        let proofOfA = try openA.open(prefix: record.prefix, record: record.body)
        #expect(try StreamHandshake.proof(proofOfA).nodeID != b.nodeIDFromLog)
        // ... and is passed on to B, sealed correctly for B's leg.
        var sealB = StreamCipher(key: legB.initiatorToResponder)
        Self.sendAll(toB, sealB.seal(proofOfA))
        // B refuses: A signed the transcript with the relay's key, not the one B sees.
        #expect(Self.readRecord(toB) == nil, "B answered the relayed proof")
        #expect(
            eventually(10) { b.tailOfLog(50_000).contains("handshake is not signed by the peer's node key") },
            "\(b.tailOfLog())")
        #expect(SecurityTests.names(seenBy: b) == ["nodeB"])
        #expect(SecurityTests.names(seenBy: a) == ["nodeA"])
    }
}

extension Daemon {
    /// The node ID this daemon logged at start (nil before).
    var nodeIDFromLog: NodeID? {
        let text = tailOfLog(200_000)
        guard let range = text.range(of: "dm.node_id=") else { return nil }
        return NodeID(hex: String(text[range.upperBound...].prefix(32)))
    }
}
