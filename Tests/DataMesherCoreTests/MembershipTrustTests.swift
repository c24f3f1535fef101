@preconcurrency import Crypto
import DataMesherCore
import DataMesherSim
import Testing

/// The core driven one input at a time, in the style of swift-cluster-membership's
/// `SWIMInstanceTests`: every forged, replayed or implausible membership claim that reached a
/// node before wire version 2 is fed to a bare `ClusterCore`, and the test checks what it did.
@Suite struct MembershipTrustTests {
    static let start: Int64 = 1_800_000_000_000_000_000
    static let second: Int64 = 1_000_000_000

    /// A node under test (`a`) and members it can meet, each with its own key and address.
    struct Fixture {
        var core: ClusterCore
        var now = MembershipTrustTests.start
        var rng = SplitMix64(state: 11)
        let a = Self.key(1)
        let b = Self.key(2)
        let c = Self.key(3)
        let mallory = Self.key(9)

        static func key(_ number: UInt8) -> NodeKey {
            NodeKey(seed: [UInt8](repeating: number, count: 32))!
        }

        static func address(_ key: NodeKey) -> PeerAddress {
            PeerAddress(host: "10.0.0.\(key.publicKey[0] % 200 + 1)", port: 7946)
        }

        init(
            settings: CoreSettings = CoreSettings(), incarnation: UInt64 = 100,
            policy: FilePolicy = FilePolicy(allowedSigners: [:])
        ) {
            let a = Self.key(1)
            core = ClusterCore(
                key: a, name: "a", addresses: [Self.address(a)], incarnation: incarnation, settings: settings,
                policy: policy, bootstrap: [], now: MembershipTrustTests.start)
        }

        func announcement(_ key: NodeKey, incarnation: UInt64 = 100, address: PeerAddress? = nil)
            -> MemberAnnouncement
        {
            .signed(by: key, name: "n", incarnation: incarnation, addresses: [address ?? Self.address(key)])
        }

        @discardableResult
        mutating func feed(_ input: CoreInput) -> [CoreDirective] { core.handle(input, now: now, rng: &rng) }

        /// A datagram from `sender` (at its own address unless `from` says otherwise).
        @discardableResult
        mutating func receive(
            _ message: Packet.Message = .gossip, items: [GossipItem], sender: NodeKey, from: PeerAddress? = nil
        ) -> [CoreDirective] {
            feed(.packet(Packet(sender: sender.id, message: message, items: items), from: from ?? Self.address(sender)))
        }

        /// Makes `member` known and confirmed: announced, pinged, and answering that ping.
        mutating func meet(_ member: NodeKey, incarnation: UInt64 = 100) {
            receive(items: [.alive(announcement(member, incarnation: incarnation))], sender: member)
            let pings = feed(.tick).compactMap { directive -> UInt32? in
                guard case .send(let packet, _, let node) = directive, node == member.id,
                    case .ping(let sequence, _) = packet.message
                else { return nil }
                return sequence
            }
            guard let sequence = pings.first else { return }
            receive(.ack(sequence: sequence, responder: member.id, clock: now), items: [], sender: member)
        }

        func state(_ key: NodeKey) -> MemberState? { core.members[key.id]?.state }
    }

    static func signedAccusation(_ about: NodeKey, incarnation: UInt64, dead: Bool, by accuser: NodeKey)
        -> GossipItem
    {
        let accusation = Accusation.signed(id: about.id, incarnation: incarnation, dead: dead, by: accuser)
        return dead ? .dead(accusation) : .suspect(accusation)
    }

    static func forged(_ about: NodeKey, incarnation: UInt64, from: NodeID, dead: Bool) -> GossipItem {
        let accusation = Accusation(
            id: about.id, incarnation: incarnation, from: from, signature: [UInt8](repeating: 0x5A, count: 64))
        return dead ? .dead(accusation) : .suspect(accusation)
    }

    @Test func aForgedDeathAtTheLastIncarnationNeitherTrapsNorEvicts() {
        var node = Fixture()
        node.meet(node.b)
        #expect(node.state(node.b) == .alive && node.core.members[node.b.id]?.confirmed == true)
        // About a member, "from" the member itself (a leave) and from another: unsigned, refused.
        for from in [node.b.id, node.c.id, node.a.id] {
            node.receive(items: [Self.forged(node.b, incarnation: .max, from: from, dead: true)], sender: node.mallory)
            node.receive(items: [Self.forged(node.b, incarnation: 100, from: from, dead: true)], sender: node.mallory)
        }
        #expect(node.state(node.b) == .alive)
        // About the node itself, at the incarnation that used to trap the refutation.
        let before = node.core.me.incarnation
        node.receive(items: [Self.forged(node.a, incarnation: .max, from: node.b.id, dead: true)], sender: node.b)
        node.receive(items: [Self.forged(node.a, incarnation: .max, from: node.b.id, dead: false)], sender: node.b)
        #expect(node.core.me.incarnation == before)
        // Even a correctly signed accusation at an absurd incarnation is not refuted to the end of the counter.
        node.receive(
            items: [Self.signedAccusation(node.a, incarnation: .max, dead: true, by: node.b)], sender: node.b)
        #expect(node.core.me.incarnation == before)
    }

    @Test func aSignedAccusationAtTheCurrentIncarnationIsRefutedOnceWithASignedClaim() throws {
        var node = Fixture()
        node.meet(node.b)
        let before = node.core.me.incarnation
        node.receive(
            items: [Self.signedAccusation(node.a, incarnation: before, dead: false, by: node.b)], sender: node.b)
        #expect(node.core.me.incarnation == before + 1)
        #expect(node.core.me.isAuthentic(Ed25519Verifier()))
        // The refutation travels as a signed claim.
        node.now += 10 * Self.second
        let sent = node.feed(.tick).flatMap { directive -> [GossipItem] in
            guard case .send(let packet, _, _) = directive else { return [] }
            return packet.items
        }
        #expect(sent.contains(.alive(node.core.me)))
    }

    /// Found by an attacking helper: an accusation from a key announced in the same datagram,
    /// just under the plausibility bound, was refuted to it, where every later refutation is
    /// refused as implausible, so the node stayed dead for as long as the stranger kept at it.
    @Test func accusationsAboveTheIncarnationThisNodeSignedAreNotFollowed() {
        var node = Fixture()
        node.meet(node.b)
        let fresh = node.mallory
        let ceiling = ClusterCore.maxPlausibleIncarnation(now: node.now)
        for accuser in [fresh, node.b] {
            for dead in [false, true] {
                node.receive(
                    items: [
                        .alive(node.announcement(fresh)),
                        Self.signedAccusation(node.a, incarnation: ceiling - 5, dead: dead, by: accuser),
                        Self.signedAccusation(node.a, incarnation: 101, dead: dead, by: accuser),
                    ], sender: accuser)
            }
        }
        #expect(node.core.me.incarnation == 100)
        // At the incarnation it signed, each accusation costs one step, and a stranger's does not
        // make this node think itself slow (Lifeguard awareness, which stretches its probes).
        node.receive(
            items: [Self.signedAccusation(node.a, incarnation: 100, dead: false, by: fresh)], sender: fresh)
        #expect(node.core.me.incarnation == 101)
        #expect(node.core.awareness == 0)
        node.receive(
            items: [Self.signedAccusation(node.a, incarnation: 101, dead: false, by: node.b)], sender: node.b)
        #expect(node.core.me.incarnation == 102)
        #expect(node.core.awareness == 1)
    }

    /// An attacking helper's finding: a ping with a forged source got an ack carrying the queued
    /// broadcasts, up to 18 times the ping's size, sent to whoever the source named.
    @Test func onlyAConfirmedMemberAtItsAddressGetsGossipWithItsAck() {
        var node = Fixture()
        node.meet(node.b)
        // Something to gossip.
        node.receive(items: [.alive(node.announcement(node.c))], sender: node.c)
        func ackItems(_ directives: [CoreDirective]) -> Int? {
            CoreStepTests.sent(directives).first { if case .ack = $0.packet.message { true } else { false } }?
                .packet.items.count
        }
        let bystander = PeerAddress(host: "10.9.9.9", port: 7946)
        let stranger = node.receive(
            .ping(sequence: 1, target: node.a.id), items: [], sender: node.mallory, from: bystander)
        #expect(ackItems(stranger) == 0)
        let spoofed = node.receive(.ping(sequence: 2, target: node.a.id), items: [], sender: node.b, from: bystander)
        #expect(ackItems(spoofed) == 0)
        let member = node.receive(.ping(sequence: 3, target: node.a.id), items: [], sender: node.b)
        #expect((ackItems(member) ?? 0) > 0)
    }

    /// A day-2 operations helper started a copy of a node's state_dir elsewhere: the two took
    /// turns being the member, and nothing said so.
    @Test func anAnnouncementSignedWithThisNodesKeyElsewhereIsOutbidAndReported() {
        var node = Fixture()
        node.meet(node.b)
        let copy = node.announcement(node.a, incarnation: 150, address: PeerAddress(host: "10.0.0.99", port: 7946))
        let directives = node.receive(items: [.alive(copy)], sender: node.b)
        #expect(directives.contains(.ownKeyElsewhere(copy)))
        #expect(node.core.me.incarnation == 151)
        // Its own announcement, heard back: nothing to say.
        let echo = node.receive(items: [.alive(node.core.me)], sender: node.b)
        #expect(!echo.contains { if case .ownKeyElsewhere = $0 { true } else { false } })
    }

    @Test func refutationSaturatesInsteadOfTrapping() {
        var node = Fixture(incarnation: UInt64.max - 1)
        node.meet(node.b)
        // The plausibility bound keeps the counter far from its end; a node that starts there anyway
        // (a wrong clock) holds its incarnation rather than trap.
        node.receive(
            items: [Self.signedAccusation(node.a, incarnation: UInt64.max - 1, dead: false, by: node.b)],
            sender: node.b)
        #expect(node.core.me.incarnation == UInt64.max - 1)
        #expect(UInt64.max.addingSaturated(1) == .max && Int64.min.subtractingSaturated(1) == .min)
        #expect(Int64.max.multipliedSaturated(-2) == .min)
    }

    @Test func accusationsCountOnlyAtTheSignedIncarnationAndOnlyFromVerifiedAccusers() {
        var node = Fixture()
        node.meet(node.b)
        node.meet(node.c)
        // A newer incarnation than B signed, or an older one: ignored.
        node.receive(items: [Self.signedAccusation(node.b, incarnation: 101, dead: false, by: node.c)], sender: node.c)
        node.receive(items: [Self.signedAccusation(node.b, incarnation: 99, dead: true, by: node.c)], sender: node.c)
        #expect(node.state(node.b) == .alive)
        // An accuser the node does not know, or one whose signature is forged: ignored.
        node.receive(
            items: [Self.signedAccusation(node.b, incarnation: 100, dead: false, by: node.mallory)],
            sender: node.mallory)
        let forged = node.receive(
            items: [Self.forged(node.b, incarnation: 100, from: node.c.id, dead: false)], sender: node.c)
        #expect(node.state(node.b) == .alive)
        #expect(forged.contains(.droppedClaim(reason: "bad_signature")))
        // A fresh key announced in the same datagram, accusing at once: it is not confirmed, so
        // its accusations count for nothing, and neither do its "independent confirmations".
        let fresh = node.mallory
        node.receive(
            items: [
                .alive(node.announcement(fresh)),
                Self.signedAccusation(node.b, incarnation: 100, dead: false, by: fresh),
                Self.signedAccusation(node.b, incarnation: 100, dead: true, by: fresh),
            ], sender: fresh)
        #expect(node.state(node.b) == .alive)
        // A signed suspicion by C at B's own incarnation counts.
        node.receive(items: [Self.signedAccusation(node.b, incarnation: 100, dead: false, by: node.c)], sender: node.c)
        #expect(node.state(node.b) == .suspect)
        // The same accuser again, or fake "independent" confirmations, do not bring the deadline closer.
        let deadline = node.core.nextDeadline
        for from in [node.c.id, node.a.id, node.mallory.id, node.b.id] {
            node.receive(items: [Self.forged(node.b, incarnation: 100, from: from, dead: false)], sender: node.mallory)
        }
        node.receive(items: [Self.signedAccusation(node.b, incarnation: 100, dead: false, by: node.c)], sender: node.c)
        #expect(node.core.nextDeadline == deadline)
    }

    @Test func aForgedAliveCannotMoveOrOutbidAMember() {
        var node = Fixture()
        node.meet(node.b)
        let elsewhere = PeerAddress(host: "10.66.66.66", port: 7946)
        // Mallory's key signing a claim under B's ID: the key does not derive that ID.
        var stolen = MemberAnnouncement.signed(
            by: node.mallory, name: "b", incarnation: .max - 5, addresses: [elsewhere])
        stolen.id = node.b.id
        stolen.signature = node.mallory.sign(stolen.publicKey)
        // B's key and ID, with a signature that does not cover these fields.
        var tampered = node.announcement(node.b, incarnation: 200)
        tampered.addresses = [elsewhere]
        let unsigned = MemberAnnouncement(id: node.b.id, name: "b", incarnation: 300, addresses: [elsewhere])
        for claim in [stolen, tampered, unsigned] {
            node.receive(items: [.alive(claim)], sender: node.mallory, from: elsewhere)
        }
        #expect(node.core.members[node.b.id]?.announcement.addresses == [Fixture.address(node.b)])
        #expect(node.core.members[node.b.id]?.announcement.incarnation == 100)
        // Signed by B but beyond any clock: refused as implausible.
        let far = node.receive(
            items: [.alive(node.announcement(node.b, incarnation: .max - 5, address: elsewhere))], sender: node.b)
        #expect(far.contains(.droppedClaim(reason: "implausible_incarnation")))
        #expect(node.core.members[node.b.id]?.announcement.incarnation == 100)
        // B's own newer claim moves it, as it should.
        node.receive(items: [.alive(node.announcement(node.b, incarnation: 101, address: elsewhere))], sender: node.b)
        #expect(node.core.members[node.b.id]?.announcement.addresses == [elsewhere])
    }

    @Test func acksCountOnlyForTheProbedMemberUnderItsSequence() {
        var node = Fixture()
        node.meet(node.b)
        node.meet(node.c)
        node.now += 2 * Self.second
        var probe: (sequence: UInt32, target: NodeID)?
        for directive in node.feed(.tick) {
            if case .send(let packet, _, let target) = directive, case .ping(let sequence, let pinged) = packet.message,
                pinged == target
            {
                probe = (sequence, target)
            }
        }
        guard let probe else {
            Issue.record("no probe started")
            return
        }
        let target = probe.target == node.b.id ? node.b : node.c
        let other = probe.target == node.b.id ? node.c : node.b
        // The right sequence from the other member, or naming the other member: no.
        node.receive(.ack(sequence: probe.sequence, responder: other.id, clock: node.now), items: [], sender: other)
        node.receive(.ack(sequence: probe.sequence, responder: target.id, clock: node.now), items: [], sender: other)
        node.receive(
            .ack(sequence: probe.sequence &+ 1, responder: target.id, clock: node.now), items: [], sender: target)
        // So the probe runs out, and the target is suspected.
        node.now += 2 * Self.second
        node.feed(.tick)
        #expect(node.state(target) == .suspect)
    }

    @Test func newMembersCostNothingUntilTheyAnswerAndAreDroppedWithinAMinute() {
        var settings = CoreSettings()
        settings.newMembersPerSource = 50
        var node = Fixture(settings: settings)
        node.meet(node.b)
        // Mallory announces 200 members with fresh keys at addresses nobody answers from.
        var fakes: [MemberAnnouncement] = []
        for number in 0..<200 {
            var seed = [UInt8](repeating: 0xEE, count: 32)
            seed[0] = UInt8(number % 256)
            seed[1] = UInt8(number / 256)
            let key = NodeKey(seed: seed)!
            fakes.append(
                .signed(
                    by: key, name: "fake", incarnation: 100,
                    addresses: [PeerAddress(host: "10.9.\(number / 250).\(number % 250)", port: 7946)]))
        }
        var dropped = 0
        for chunk in stride(from: 0, to: fakes.count, by: 10) {
            let out = node.receive(items: fakes[chunk..<chunk + 10].map { .alive($0) }, sender: node.mallory)
            dropped += out.filter { $0 == .droppedClaim(reason: "new_member_rate") }.count
        }
        #expect(dropped == 150)
        #expect(node.core.unconfirmedCount == 50)
        // Push/pull, gossip and probes still go to B only.
        for _ in 0..<30 {
            node.now += Self.second
            for directive in node.feed(.tick) {
                switch directive {
                case .sync(let address, _): #expect(address == Fixture.address(node.b))
                case .send(let packet, _, let target):
                    if case .ping = packet.message { continue }  // confirmation pings go to the fakes
                    #expect(target == node.b.id)
                default: break
                }
            }
            // B keeps answering its probes.
        }
        #expect(node.core.localState.count == 2)
        // A minute later, the unanswered are gone.
        node.now += 40 * Self.second
        node.feed(.tick)
        #expect(node.core.unconfirmedCount == 0)
        #expect(node.core.members.count == 1)
    }

    /// The cap holds; and records of departed members make room at it (an attacking helper filled
    /// `max_members` with members of its own that left at once: their records were kept for a
    /// day, and no new member could join meanwhile).
    @Test func theMemberCapHoldsAndDepartedMembersMakeRoom() {
        var settings = CoreSettings()
        settings.maxMembers = 3
        var node = Fixture(settings: settings)
        node.meet(node.b)
        node.meet(node.c)
        let out = node.receive(items: [.alive(node.announcement(node.mallory))], sender: node.mallory)
        #expect(out.contains(.droppedClaim(reason: "member_limit")))
        #expect(node.core.members[node.mallory.id] == nil)
        // b leaves (signed by itself): its record stays, until a new member needs the room.
        node.receive(items: [Self.signedAccusation(node.b, incarnation: 100, dead: true, by: node.b)], sender: node.b)
        #expect(node.state(node.b) == .left)
        node.receive(items: [.alive(node.announcement(node.mallory))], sender: node.mallory)
        #expect(node.core.members[node.mallory.id] != nil)
        #expect(node.core.members[node.b.id] == nil)
        #expect(node.state(node.c) == .alive)
    }

    @Test func aPingRequestForAStrangerRelaysNothing() {
        var node = Fixture()
        node.meet(node.b)
        let victim = PeerAddress(host: "192.0.2.7", port: 53)
        let out = node.receive(
            .pingRequest(sequence: 1, target: node.mallory.id, address: victim), items: [], sender: node.b)
        #expect(!out.contains { if case .send(_, victim, _) = $0 { return true } else { return false } })
        let moved = node.receive(
            .pingRequest(sequence: 2, target: node.b.id, address: victim), items: [], sender: node.c)
        #expect(!moved.contains { if case .send(_, victim, _) = $0 { return true } else { return false } })
    }
}
