@preconcurrency import Crypto
import DataMesherSim
import Testing

@testable import DataMesherCore

/// SWIM and Lifeguard, one input at a time (as swift-cluster-membership's `SWIMInstanceTests`):
/// ping-request relay, nack, local health awareness, leave, reaping and gossip to the dead.
@Suite struct SWIMStepTests {
    typealias Fixture = MembershipTrustTests.Fixture
    static let second = MembershipTrustTests.second

    static func sent(_ directives: [CoreDirective]) -> [(packet: Packet, to: PeerAddress, node: NodeID)] {
        CoreStepTests.sent(directives)
    }

    @Test func aPingRequestIsRelayedAndOnlyTheTargetsAckGoesBack() throws {
        var node = Fixture()
        node.meet(node.b)
        node.meet(node.c)
        let requested = Self.sent(
            node.receive(
                .pingRequest(sequence: 77, target: node.b.id, address: Fixture.address(node.b)), items: [],
                sender: node.c))
        let relayed = try #require(requested.first)
        #expect(requested.count == 1 && relayed.node == node.b.id && relayed.to == Fixture.address(node.b))
        guard case .ping(let sequence, let target) = relayed.packet.message else {
            Issue.record("not a ping: \(relayed.packet.message)")
            return
        }
        #expect(target == node.b.id && sequence != 77)
        // An ack naming b but sent by c is not b's answer; b's own is relayed to c under c's sequence.
        #expect(
            Self.sent(
                node.receive(.ack(sequence: sequence, responder: node.b.id, clock: 5), items: [], sender: node.c)
            ).isEmpty)
        let answered = Self.sent(
            node.receive(.ack(sequence: sequence, responder: node.b.id, clock: 5), items: [], sender: node.b))
        #expect(answered.count == 1)
        #expect(answered.first?.node == node.c.id && answered.first?.to == Fixture.address(node.c))
        #expect(answered.first?.packet.message == .ack(sequence: 77, responder: node.b.id, clock: 5))
        // Once only.
        #expect(
            Self.sent(node.receive(.ack(sequence: sequence, responder: node.b.id, clock: 5), items: [], sender: node.b))
                .isEmpty)
    }

    @Test func aRelayThatHearsNothingSendsANackAtTheProbeTimeout() {
        var node = Fixture()
        node.meet(node.b)
        node.meet(node.c)
        node.receive(
            .pingRequest(sequence: 78, target: node.b.id, address: Fixture.address(node.b)), items: [], sender: node.c)
        node.now += node.core.settings.probeTimeout
        let nacks = Self.sent(node.feed(.tick)).filter { $0.packet.message == .nack(sequence: 78) }
        #expect(nacks.count == 1 && nacks.first?.node == node.c.id)
        #expect(Self.sent(node.feed(.tick)).filter { $0.packet.message == .nack(sequence: 78) }.isEmpty)
    }

    /// Ticks `node` every 100 ms (for at most a minute) until a tick sends something `wanted`
    /// picks; returns what it picked.
    static func tickUntil<T>(
        _ node: inout Fixture, _ wanted: (ClusterCore, [(packet: Packet, to: PeerAddress, node: NodeID)]) -> T?
    ) -> T? {
        tickUntil(directives: &node) { core, directives in wanted(core, sent(directives)) }
    }

    /// `tickUntil`, with every directive of each tick.
    static func tickUntil<T>(directives node: inout Fixture, _ wanted: (ClusterCore, [CoreDirective]) -> T?) -> T? {
        for _ in 0..<600 {
            node.now += 100_000_000
            let directives = node.feed(.tick)
            if let found = wanted(node.core, directives) { return found }
        }
        return nil
    }

    /// The direct probe ping among `sends`, if any.
    static func probePing(_ sends: [(packet: Packet, to: PeerAddress, node: NodeID)]) -> (NodeID, UInt32)? {
        for sent in sends {
            if case .ping(let sequence, let target) = sent.packet.message, target == sent.node {
                return (target, sequence)
            }
        }
        return nil
    }

    /// The members asked to ping for the probe `sequence` among `sends` (nil: none asked).
    static func helpers(_ sends: [(packet: Packet, to: PeerAddress, node: NodeID)], of sequence: UInt32) -> [NodeID]? {
        let asked = sends.filter {
            if case .pingRequest(sequence, _, _) = $0.packet.message { return true } else { return false }
        }
        return asked.isEmpty ? nil : asked.map(\.node)
    }

    @Test func missingNacksRaiseAwarenessAndAnsweredProbesLowerIt() {
        var node = Fixture()
        let members = [node.b, node.c, node.mallory]
        for member in members { node.meet(member) }
        func key(_ id: NodeID) -> NodeKey { members.first { $0.id == id } ?? node.mallory }
        #expect(node.core.awareness == 0)
        // Every helper nacks: the target is unreachable, not this node, so health stays.
        guard let (target, sequence) = Self.tickUntil(&node, { Self.probePing($1) }),
            let helpers = Self.tickUntil(&node, { Self.helpers($1, of: sequence) })
        else {
            Issue.record("no first probe with helpers")
            return
        }
        #expect(helpers.count == 2)
        for helper in helpers { node.receive(.nack(sequence: sequence), items: [], sender: key(helper)) }
        // The probe ends with the target suspected; the next one may start in the same tick.
        var next = Self.tickUntil(&node) { core, sends in
            core.probe?.sequence != sequence ? Optional(Self.probePing(sends)) : nil
        }
        #expect(node.core.awareness == 0)
        #expect(node.core.members[target]?.state == .suspect)
        // The next probe gets neither an ack nor a nack: this node may be the problem.
        guard let (_, secondSequence) = next ?? Self.tickUntil(&node, { Self.probePing($1) }),
            let secondHelpers = Self.tickUntil(&node, { Self.helpers($1, of: secondSequence) })
        else {
            Issue.record("no second probe with helpers")
            return
        }
        next = Self.tickUntil(&node) { core, sends in
            core.probe?.sequence != secondSequence ? Optional(Self.probePing(sends)) : nil
        }
        let raised = node.core.awareness
        #expect(raised == secondHelpers.count)
        // An answered probe brings it down by one.
        guard let (third, thirdSequence) = next ?? Self.tickUntil(&node, { Self.probePing($1) }) else {
            Issue.record("no third probe")
            return
        }
        node.receive(.ack(sequence: thirdSequence, responder: third, clock: node.now), items: [], sender: key(third))
        #expect(node.core.awareness == raised - 1)
    }

    /// memberlist's TCP fallback: a probe whose ping goes unanswered also asks for a stream to
    /// the target, and a target whose key the stream's handshake proved is not suspected, even
    /// when no datagram ever comes back. Only that probe's answer, from that target, counts.
    @Test func aTargetThatAnswersOverAStreamIsNotSuspected() {
        var node = Fixture()
        let members = [node.b, node.c, node.mallory]
        for member in members { node.meet(member) }
        let asked = Self.tickUntil(directives: &node) { _, directives in
            directives.lazy.compactMap { directive in
                if case .streamPing(let sequence, let address, let target, let timeout) = directive {
                    (sequence: sequence, address: address, node: target, timeout: timeout)
                } else {
                    nil
                }
            }.first
        }
        guard let asked, let probe = node.core.probe, let target = members.first(where: { $0.id == asked.node })
        else {
            Issue.record("no stream ping")
            return
        }
        #expect(probe.indirectSent && asked.sequence == probe.sequence && asked.node == probe.target)
        #expect(asked.address == Fixture.address(target))
        #expect(asked.timeout == probe.endAt - node.now && asked.timeout > 0)
        let other = members.first { $0.id != target.id } ?? node.mallory
        node.feed(.streamPingAnswered(sequence: asked.sequence &+ 1, by: target.id))
        node.feed(.streamPingAnswered(sequence: asked.sequence, by: other.id))
        #expect(node.core.probe?.streamAnswered == false)
        node.feed(.streamPingAnswered(sequence: asked.sequence, by: target.id))
        #expect(node.core.probe?.streamAnswered == true)
        // No ack and no nack comes: the probe ends, the awareness rises as for any unanswered
        // probe, the target stays alive, and the core says it answered only over a stream.
        var said: [NodeID] = []
        _ = Self.tickUntil(directives: &node) { core, directives in
            for case .answeredOnlyOverStream(let record) in directives { said.append(record.id) }
            return core.probe?.sequence != asked.sequence ? true : nil
        }
        #expect(said == [target.id])
        #expect(node.core.members[target.id]?.state == .alive)
        #expect(node.core.suspicions[target.id] == nil)
        #expect(node.core.awareness == probe.expectedNacks)
    }

    /// A member suspected by another, then missed by this node's own probe: this node's
    /// accusation is one more independent confirmation (the suspicion's deadline comes closer)
    /// and it is gossiped, so the others count it too (memberlist's suspectNode).
    @Test func anOwnFailedProbeConfirmsASuspicionHeardFromAnother() {
        var node = Fixture()
        let members = [node.b, node.c, node.mallory]
        for member in members { node.meet(member) }
        // Wait for a probe, then have c accuse its target before the probe ends.
        guard let (target, sequence) = Self.tickUntil(&node, { Self.probePing($1) }),
            let accused = members.first(where: { $0.id == target }),
            let accuser = members.first(where: { $0.id != target })
        else {
            Issue.record("no probe")
            return
        }
        let incarnation = node.core.members[target]?.announcement.incarnation ?? 0
        node.receive(
            items: [MembershipTrustTests.signedAccusation(accused, incarnation: incarnation, dead: false, by: accuser)],
            sender: accuser)
        #expect(node.core.members[target]?.state == .suspect)
        let heard = node.core.suspicions[target]?.deadline ?? 0
        #expect(node.core.suspicions[target]?.confirmations == [accuser.id])
        // Nobody answers this node's probe (nor the helpers): it ends, and this node accuses too,
        // and gossips its accusation (at the latest in the gossip round after).
        let me = node.a.id
        func carriesOwnAccusation(_ sends: [(packet: Packet, to: PeerAddress, node: NodeID)]) -> Bool {
            sends.contains { sent in
                sent.packet.items.contains {
                    if case .suspect(let accusation) = $0 {
                        accusation.id == target && accusation.from == me
                    } else {
                        false
                    }
                }
            }
        }
        var gossiped = false
        _ = Self.tickUntil(&node) { core, sends in
            gossiped = gossiped || carriesOwnAccusation(sends)
            return core.probe?.sequence != sequence ? true : nil
        }
        #expect(node.core.suspicions[target]?.confirmations == [accuser.id, node.a.id])
        #expect((node.core.suspicions[target]?.deadline ?? .max) < heard)
        if !gossiped {
            gossiped = Self.tickUntil(&node) { _, sends in carriesOwnAccusation(sends) ? true : nil } ?? false
        }
        #expect(gossiped == true)
    }

    @Test func aLeavingNodeSaysSoSignedAndStopsProbing() {
        var node = Fixture()
        node.meet(node.b)
        node.meet(node.c)
        let goodbyes = Self.sent(node.feed(.leave))
        #expect(Set(goodbyes.map(\.node)) == [node.b.id, node.c.id])
        let own = Accusation.signed(id: node.a.id, incarnation: 100, dead: true, by: node.a)
        #expect(goodbyes.allSatisfy { $0.packet.items.contains(.dead(own)) })
        for _ in 0..<5 {
            node.now += 2 * Self.second
            let pings = Self.sent(node.feed(.tick)).filter {
                if case .ping = $0.packet.message { return true } else { return false }
            }
            #expect(pings.isEmpty)
        }
    }

    @Test func aDeadMemberIsGossipedToForAWhileThenReaped() {
        var settings = CoreSettings()
        settings.deadReap = 200 * Self.second
        var node = Fixture(settings: settings)
        node.meet(node.b)
        node.meet(node.c)
        node.receive(
            items: [MembershipTrustTests.signedAccusation(node.b, incarnation: 100, dead: true, by: node.c)],
            sender: node.c)
        #expect(node.state(node.b) == .dead)
        // Gossip to the dead: within `gossipToTheDead` some rounds also go to b, afterwards none.
        let deadAt = node.now
        var toTheDead = 0
        var afterwards = 0
        for _ in 0..<400 {
            node.now += node.core.settings.gossipInterval
            // Something to gossip every round.
            node.core.queue.enqueue(.alive(node.core.me))
            let targets = Set(Self.sent(node.feed(.tick)).filter { $0.packet.message == .gossip }.map(\.node))
            guard targets.contains(node.b.id) else { continue }
            if node.now - deadAt <= node.core.settings.gossipToTheDead { toTheDead += 1 } else { afterwards += 1 }
        }
        #expect(toTheDead > 0)
        #expect(afterwards == 0)
        #expect(node.core.members[node.b.id] != nil)
        // Reaped once `deadReap` passed: forgotten, so a new claim of b is a new member again.
        node.now = deadAt + 200 * Self.second + 2 * Self.second
        node.feed(.tick)
        #expect(node.core.members[node.b.id] == nil)
        #expect(node.core.members[node.c.id] != nil)
    }

    /// dm-sim --nodes 1000 --loss 0.10 --seed 1: every core started at once ran its push/pulls
    /// in the same instant, at 30 s and then a scaled interval (180 s) later, with none anywhere
    /// in the cluster in between; a node that missed a member's gossip in the join storm stayed
    /// without it to the end of the run. Like memberlist, the first push/pull comes at a random
    /// point of the first interval, so cores started together do not stay in step.
    @Test func anAccuserStillSuspectingARefutedIncarnationIsToldTheCurrentOneDirectly() {
        var node = Fixture(incarnation: 100)
        node.meet(node.b)
        node.meet(node.c)
        // b suspects a at 100; a refutes (incarnation 101).
        node.receive(
            items: [MembershipTrustTests.signedAccusation(node.a, incarnation: 100, dead: false, by: node.b)],
            sender: node.c)
        let refuted = node.core.me.incarnation
        #expect(refuted > 100)
        // b's reminder (sent by b itself) still names 100: a's current announcement goes to b.
        let reminder = MembershipTrustTests.signedAccusation(node.a, incarnation: 100, dead: false, by: node.b)
        let answer = Self.sent(node.receive(items: [.alive(node.announcement(node.b)), reminder], sender: node.b))
        #expect(answer.count == 1 && answer.first?.node == node.b.id && answer.first?.to == Fixture.address(node.b))
        #expect(answer.first?.packet.items == [.alive(node.core.me)])
        #expect(node.core.me.incarnation == refuted)
        // The same stale accusation relayed by another member is not answered (the accuser
        // would hear once per relay).
        #expect(Self.sent(node.receive(items: [reminder], sender: node.c)).isEmpty)
    }

    @Test func coresStartedTogetherStaggerTheirFirstPushPull() {
        let interval = CoreSettings().pushPullInterval
        var firsts: Set<Int64> = []
        for seed: UInt64 in 1...4 {
            var node = Fixture()
            node.rng = SplitMix64(state: seed)
            node.meet(node.b)
            var at: Int64?
            for _ in 0..<Int(interval / 100_000_000) + 1 {
                node.now += 100_000_000
                let synced = node.feed(.tick).contains {
                    if case .sync(_, join: false) = $0 { return true } else { return false }
                }
                if synced {
                    at = node.now
                    break
                }
            }
            guard let at else {
                Issue.record("no push/pull within the first interval (seed \(seed))")
                continue
            }
            #expect(at > MembershipTrustTests.start && at <= MembershipTrustTests.start + interval)
            firsts.insert(at)
        }
        #expect(firsts.count > 1, "every core ran its first push/pull at the same instant: \(firsts)")
    }
}
