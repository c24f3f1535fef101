import Crypto
import DataMesherCore
import Foundation
import Testing

@Suite struct WireTests {
    static let a = NodeID(bytes: [UInt8](repeating: 1, count: 16))!
    static let b = NodeID(bytes: [UInt8](repeating: 2, count: 16))!

    static func version() throws -> FileVersion {
        try Signer().version("dns/cnames", at: 1_800_000_000_000_000_000, content: "zone", validFor: 5)
    }

    @Test func everyMessageAndItemRoundTrips() throws {
        let announcement = MemberAnnouncement(
            id: Self.b, name: "beta", incarnation: 7,
            addresses: [PeerAddress(host: "127.0.0.2", port: 7946), PeerAddress(host: "fd00::2", port: 7946)])
        let items: [GossipItem] = [
            .alive(announcement), .suspect(Self.b, incarnation: 3, from: Self.a),
            .dead(Self.b, incarnation: 4, from: Self.b),
            .file(try Self.version(), inline: Array("zone".utf8)), .file(try Self.version(), inline: nil),
        ]
        let messages: [Packet.Message] = [
            .ping(sequence: 1, target: Self.b),
            .pingRequest(sequence: 2, target: Self.b, address: announcement.addresses[1]),
            .ack(sequence: 3), .nack(sequence: 4), .gossip,
        ]
        for message in messages {
            let packet = Packet(sender: Self.a, message: message, items: items)
            #expect(try WireCodec.decode(WireCodec.encode(packet)) == packet)
        }
    }

    @Test func truncationsAndGarbageAreRefused() throws {
        let packet = Packet(
            sender: Self.a, message: .ping(sequence: 9, target: Self.b),
            items: [.file(try Self.version(), inline: [1, 2, 3, 4])])
        let bytes = WireCodec.encode(packet)
        for length in 0..<bytes.count {
            #expect(throws: WireError.self) { try WireCodec.decode(Array(bytes.prefix(length))) }
        }
        #expect(throws: WireError.trailingBytes(1)) { try WireCodec.decode(bytes + [0]) }
        var wrongVersion = bytes
        wrongVersion[2] = 9
        #expect(throws: WireError.unsupportedVersion(9)) { try WireCodec.decode(wrongVersion) }
        var rng = SplitMix64(state: 42)
        for _ in 0..<20_000 {
            var mutated = bytes
            for _ in 0...Int(rng.next() % 4) {
                mutated[Int(rng.next() % UInt64(mutated.count))] = UInt8(truncatingIfNeeded: rng.next())
            }
            _ = try? WireCodec.decode(mutated)
            let random = (0..<Int(rng.next() % 200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = try? WireCodec.decode(WireCodec.magic + [1] + random)
        }
    }
}

/// Many `Mesh` cores on a simulated network with a simulated clock: every packet is
/// delivered after `latency` unless dropped, and stores complete instantly.
struct SimulatedCluster {
    var nodes: [NodeID: Mesh] = [:]
    var order: [NodeID] = []
    var addressOf: [NodeID: PeerAddress] = [:]
    var idAt: [PeerAddress: NodeID] = [:]
    var now: Int64 = 1_800_000_000_000_000_000
    var rng = SplitMix64(state: 7)
    var inFlight: [(at: Int64, to: PeerAddress, packet: Packet, from: PeerAddress)] = []
    var down: Set<NodeID> = []
    /// Pairs that cannot reach each other (a partition), in both directions.
    var cut: Set<[NodeID]> = []

    func blocked(_ a: NodeID, _ b: NodeID) -> Bool { cut.contains([a, b]) || cut.contains([b, a]) }
    var events: [(NodeID, MeshDirective)] = []
    let latency: Int64 = 1_000_000

    init(size: Int, policy: FilePolicy, settings: MeshSettings = MeshSettings()) {
        for index in 0..<size {
            let id = NodeID(bytes: [UInt8](repeating: UInt8(index + 1), count: 16))!
            let address = PeerAddress(host: "10.0.0.\(index + 1)", port: 7946)
            let bootstrap = index == 0 ? [] : [PeerAddress(host: "10.0.0.1", port: 7946)]
            let me = MemberAnnouncement(id: id, name: "n\(index)", incarnation: 1, addresses: [address])
            nodes[id] = Mesh(me: me, settings: settings, policy: policy, bootstrap: bootstrap, now: now)
            order.append(id)
            addressOf[id] = address
            idAt[address] = id
        }
    }

    mutating func feed(_ id: NodeID, _ input: MeshInput) {
        guard !down.contains(id), var mesh = nodes[id] else { return }
        let directives = mesh.handle(input, now: now, rng: &rng)
        nodes[id] = mesh
        for directive in directives { execute(directive, by: id) }
    }

    mutating func execute(_ directive: MeshDirective, by id: NodeID) {
        events.append((id, directive))
        switch directive {
        case .send(let packet, let to):
            // Through the real codec, as on the wire.
            let decoded = try! WireCodec.decode(WireCodec.encode(packet))
            inFlight.append((now + latency, to, decoded, addressOf[id]!))
        case .store(let version, let inline, _):
            feed(id, .stored(version, inline: inline))
        case .sync(let address, _):
            // A push/pull exchange: both sides learn the other's member list.
            guard let peer = idAt[address], !down.contains(peer), !blocked(id, peer), let mine = nodes[id]?.localState,
                let theirs = nodes[peer]?.localState
            else { return }
            feed(peer, .remoteState(mine))
            feed(id, .remoteState(theirs))
            // The digest exchange of docs/PROTOCOL.md, then each side takes what the other has newer.
            guard let a = nodes[id]?.files, let b = nodes[peer]?.files, a.rootDigest != b.rootDigest else { return }
            let buckets = a.differingBuckets(b.bucketDigests)
            for summary in a.newerElsewhere(b.summaries(inBuckets: buckets)) {
                if let version = b[summary.name] { feed(id, .stored(version, inline: nil)) }
            }
            for summary in b.newerElsewhere(a.summaries(inBuckets: buckets)) {
                if let version = a[summary.name] { feed(peer, .stored(version, inline: nil)) }
            }
        case .memberChanged, .refused:
            break
        }
    }

    /// Runs the cluster for `duration` of simulated time.
    mutating func run(for duration: Int64) {
        let end = now + duration
        var steps = 0
        while now < end {
            steps += 1
            // A core whose deadline never moves past `now` would spin here forever.
            precondition(steps < 2_000_000, "simulation stalled at \(now): a deadline does not advance")
            let nextPacket = inFlight.map(\.at).min() ?? Int64.max
            let nextTimer =
                order.filter { !down.contains($0) }.compactMap { nodes[$0]?.nextDeadline }.min() ?? Int64.max
            let next = min(nextPacket, nextTimer, end)
            now = max(now, next)
            let due = inFlight.filter { $0.at <= now }
            inFlight.removeAll { $0.at <= now }
            for delivery in due {
                guard let target = idAt[delivery.to], let source = idAt[delivery.from], !down.contains(target),
                    !down.contains(source), !blocked(source, target)
                else { continue }
                feed(target, .packet(delivery.packet, from: delivery.from))
            }
            for id in order where (nodes[id]?.nextDeadline ?? .max) <= now { feed(id, .tick) }
        }
    }

    func state(of id: NodeID, seenBy observer: NodeID) -> MemberState? { nodes[observer]?.members[id]?.state }
}

@Suite struct MeshTests {
    static let second: Int64 = 1_000_000_000

    @Test func nodesJoinAndSeeEachOtherAlive() {
        var cluster = SimulatedCluster(size: 5, policy: FilePolicy(allowedSigners: [:]))
        cluster.run(for: 5 * Self.second)
        for observer in cluster.order {
            for other in cluster.order where other != observer {
                #expect(cluster.state(of: other, seenBy: observer) == .alive, "\(observer) sees \(other)")
            }
        }
    }

    @Test func aSilentNodeIsSuspectedThenDeclaredDeadByAll() {
        var cluster = SimulatedCluster(size: 5, policy: FilePolicy(allowedSigners: [:]))
        cluster.run(for: 5 * Self.second)
        let victim = cluster.order[4]
        cluster.down.insert(victim)
        cluster.run(for: 40 * Self.second)
        for observer in cluster.order where observer != victim {
            #expect(cluster.state(of: victim, seenBy: observer) == .dead, "\(observer)")
        }
        // Nobody else was declared dead.
        for observer in cluster.order where observer != victim {
            for other in cluster.order where other != victim && other != observer {
                #expect(cluster.state(of: other, seenBy: observer) == .alive)
            }
        }
    }

    @Test func aFalseSuspicionIsRefuted() {
        var cluster = SimulatedCluster(size: 4, policy: FilePolicy(allowedSigners: [:]))
        cluster.run(for: 5 * Self.second)
        let accused = cluster.order[2]
        let incarnation = cluster.nodes[accused]!.me.incarnation
        let accuser = cluster.order[0]
        let packet = Packet(
            sender: accuser, message: .gossip, items: [.suspect(accused, incarnation: incarnation, from: accuser)])
        cluster.feed(accused, .packet(packet, from: cluster.addressOf[accuser]!))
        cluster.feed(cluster.order[1], .packet(packet, from: cluster.addressOf[accuser]!))
        cluster.run(for: 10 * Self.second)
        #expect(cluster.nodes[accused]!.me.incarnation > incarnation)
        for observer in cluster.order where observer != accused {
            #expect(cluster.state(of: accused, seenBy: observer) == .alive)
        }
    }

    @Test func aHealedPartitionMergesAndConvergesToTheNewestVersion() throws {
        let signer = Signer()
        let name = try FileName("config:app")
        var settings = MeshSettings()
        settings.joinInterval = 2 * Self.second
        settings.pushPullInterval = 5 * Self.second
        var cluster = SimulatedCluster(
            size: 6, policy: FilePolicy(allowedSigners: [name: [signer.public_]]), settings: settings)
        cluster.run(for: 5 * Self.second)
        let left = Array(cluster.order.prefix(3))
        let right = Array(cluster.order.suffix(3))
        for a in left { for b in right { cluster.cut.insert([a, b]) } }
        cluster.run(for: 60 * Self.second)
        for a in left { for b in right { #expect(cluster.state(of: b, seenBy: a) == .dead) } }
        // Both sides write; the right side writes later, so its version is the newest.
        let older = try signer.version("config:app", at: cluster.now, content: "left side")
        cluster.feed(left[0], .localVersion(older, inline: Array("left side".utf8)))
        cluster.run(for: Self.second)
        let newer = try signer.version("config:app", at: cluster.now, content: "right side")
        cluster.feed(right[0], .localVersion(newer, inline: Array("right side".utf8)))
        cluster.run(for: 5 * Self.second)
        #expect(cluster.nodes[left[1]]!.files[name] == older)
        cluster.cut.removeAll()
        cluster.run(for: 30 * Self.second)
        for observer in cluster.order {
            for other in cluster.order where other != observer {
                #expect(cluster.state(of: other, seenBy: observer) == .alive, "\(observer) sees \(other)")
            }
            // Push/pull repairs what gossip missed; in the simulator stores are instant, so the
            // winner is visible in the index.
            #expect(cluster.nodes[observer]!.files[name] == newer, "\(observer)")
        }
    }

    @Test func aVersionReachesEveryConfiguredNodeAndSkipsOthers() throws {
        let signer = Signer()
        let name = try FileName("config:app")
        let policy = FilePolicy(allowedSigners: [name: [signer.public_]])
        var cluster = SimulatedCluster(size: 6, policy: policy)
        cluster.run(for: 5 * Self.second)
        let version = try signer.version("config:app", at: cluster.now, content: "hello")
        cluster.feed(cluster.order[3], .localVersion(version, inline: Array("hello".utf8)))
        cluster.run(for: 3 * Self.second)
        for id in cluster.order {
            #expect(cluster.nodes[id]!.files[name] == version, "node \(id)")
        }
        // A tombstone replaces it everywhere.
        let tombstone = try signer.version("config:app", at: cluster.now, tombstone: true)
        cluster.feed(cluster.order[0], .localVersion(tombstone, inline: []))
        cluster.run(for: 3 * Self.second)
        for id in cluster.order { #expect(cluster.nodes[id]!.files[name] == tombstone) }
    }

    @Test(arguments: [(0, 30.0), (1, 16.0), (2, 7.81), (3, 2.0), (4, 2.0)])
    func suspicionTimeoutShrinksWithConfirmations(confirmations: Int, seconds: Double) {
        // memberlist's suspicion_test.go for k = 3, min 2 s, max 30 s (its table shows these minus the time elapsed).
        let timeout = Mesh.suspicionTimeout(
            confirmations: confirmations, expected: 3, minimum: 2 * Self.second, maximum: 30 * Self.second)
        #expect(abs(Double(timeout) / 1e9 - seconds) < 0.1, "\(confirmations): \(Double(timeout) / 1e9)")
    }
}

@Suite struct AntiEntropyTests {
    static func index(_ count: Int, signer: Signer, skip: Int? = nil, newer: Int? = nil) throws -> FileIndex {
        var index = FileIndex()
        for number in 0..<count where number != skip {
            let timestamp: Int64 = 1_800_000_000_000_000_000 + Int64(number) + (number == newer ? 1_000 : 0)
            index.set(try signer.version("files/\(number)", at: timestamp, content: "content \(number)"))
        }
        return index
    }

    @Test func agreeingNodesWith10kFilesExchangeAFewHundredBytes() throws {
        let signer = Signer()
        let a = try Self.index(10_000, signer: signer)
        let b = try Self.index(10_000, signer: signer)
        #expect(a.rootDigest == b.rootDigest)
        let members = [
            MemberRecord(
                announcement: MemberAnnouncement(
                    id: WireTests.a, name: "alpha", incarnation: 1,
                    addresses: [PeerAddress(host: "10.0.0.1", port: 7946)]),
                state: .alive, since: 0, lastSource: nil),
            MemberRecord(
                announcement: MemberAnnouncement(
                    id: WireTests.b, name: "beta", incarnation: 1,
                    addresses: [PeerAddress(host: "10.0.0.2", port: 7946)]),
                state: .alive, since: 0, lastSource: nil),
        ]
        let hello = SyncCodec.encode(.hello(join: false, members: members, root: a.rootDigest))
        let reply = SyncCodec.encode(
            .reply(members: members, root: b.rootDigest, buckets: a.rootDigest == b.rootDigest ? nil : b.bucketDigests))
        let exchanged = hello.count + reply.count
        // The full state: every version as the wire encodes it.
        var full = WireWriter()
        for version in a.versions.values { WireCodec.encode(version, into: &full) }
        print("anti-entropy between agreeing nodes: \(exchanged) bytes; full state \(full.buffer.count) bytes")
        #expect(exchanged < 400)
        #expect(Double(exchanged) < 0.01 * Double(full.buffer.count))
    }

    @Test func oneDifferenceCostsOneBucket() throws {
        let signer = Signer()
        let a = try Self.index(10_000, signer: signer)
        let b = try Self.index(10_000, signer: signer, newer: 1234)
        #expect(a.rootDigest != b.rootDigest)
        let differing = a.differingBuckets(b.bucketDigests)
        #expect(differing == [FileIndex.bucket(of: try FileName("files/1234"))])
        let wanted = a.newerElsewhere(b.summaries(inBuckets: differing))
        #expect(wanted.map(\.name.value) == ["files/1234"])
        let summaries = SyncCodec.encode(.summaries(buckets: differing, versions: b.summaries(inBuckets: differing)))
        #expect(summaries.count < 10_000 / 256 * 80)
        // A name missing on one side is wanted by it, not by the other.
        let c = try Self.index(10_000, signer: signer, skip: 42)
        let bucket = c.differingBuckets(a.bucketDigests)
        #expect(c.newerElsewhere(a.summaries(inBuckets: bucket)).map(\.name.value) == ["files/42"])
        #expect(a.newerElsewhere(c.summaries(inBuckets: bucket)).isEmpty)
    }
}
