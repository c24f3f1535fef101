import DataMesherCore
import DataMesherSim
import Testing

/// `Admission` one input at a time: what passes, what is held, what is dialed, what a proof
/// releases.
@Suite struct AdmissionTests {
    typealias Fixture = MembershipTrustTests.Fixture
    static let second = MembershipTrustTests.second
    static let start = MembershipTrustTests.start

    @Test func aSenderNotProvedAtItsSourceIsDroppedAndItsSourceDialedAtMostEvery2s() {
        let a = Fixture.key(1)
        let b = Fixture.key(2)
        var admission = Admission(me: a.id)
        let ping = Packet(sender: b.id, message: .ping(sequence: 1, target: a.id))
        let source = Fixture.address(b)
        var result = admission.admit(ping, from: source, now: Self.start)
        #expect(result.packet == nil && result.dial == [source])
        result = admission.admit(ping, from: source, now: Self.start + Self.second)
        #expect(result.packet == nil && result.dial.isEmpty)
        result = admission.admit(ping, from: source, now: Self.start + 2 * Self.second)
        #expect(result.dial == [source])
        // Proved there: it passes from there, not from elsewhere, and not once the certificate ended.
        let proof = admission.proved(b.id, at: source, until: Self.start + 60 * Self.second, now: Self.start)
        #expect(proof.new && proof.released == nil)
        #expect(!admission.proved(b.id, at: source, until: Self.start + 60 * Self.second, now: Self.start).new)
        #expect(admission.admit(ping, from: source, now: Self.start).packet == ping)
        #expect(admission.admit(ping, from: PeerAddress(host: "192.0.2.1", port: 7946), now: Self.start).packet == nil)
        #expect(admission.admit(ping, from: source, now: Self.start + 60 * Self.second).packet == nil)
    }

    @Test func announcementsOfMembersNotProvedAreHeldUntilTheyProveWhereTheySaidTheyAre() {
        let a = Fixture.key(1)
        let b = Fixture.key(2)
        let c = Fixture.key(3)
        var admission = Admission(me: a.id)
        let until = Self.start + 3600 * Self.second
        _ = admission.proved(b.id, at: Fixture.address(b), until: until, now: Self.start)
        let aboutC = MemberAnnouncement.signed(by: c, name: "c", incarnation: 7, addresses: [Fixture.address(c)])
        let gossip = Packet(
            sender: b.id, message: .gossip,
            items: [.alive(aboutC), .suspect(Accusation.signed(id: c.id, incarnation: 7, dead: false, by: b))])
        let result = admission.admit(gossip, from: Fixture.address(b), now: Self.start)
        // The accusation passes (the core checks it), c's announcement waits, c's address is dialed.
        #expect(result.packet?.items.count == 1)
        #expect(result.dial == [Fixture.address(c)])
        #expect(admission.held[c.id]?.announcement == aboutC)
        // c proving its ID at another address releases nothing; at its own, the announcement.
        let elsewhere = admission.proved(
            c.id, at: PeerAddress(host: "192.0.2.9", port: 1), until: until, now: Self.start)
        #expect(elsewhere.released == nil)
        let there = admission.proved(c.id, at: Fixture.address(c), until: until, now: Self.start)
        #expect(there.released?.announcement == aboutC)
        #expect(admission.held[c.id] == nil)
        // A member list: proved members pass, the others are held and dialed.
        let d = Fixture.key(4)
        let records = [b, d].map { key in
            MemberRecord(
                announcement: .signed(by: key, name: "n", incarnation: 1, addresses: [Fixture.address(key)]),
                state: .alive, since: 0, lastSource: nil)
        }
        let state = admission.admit(state: records, now: Self.start)
        #expect(state.passed.map(\.id) == [b.id])
        #expect(state.dial == [Fixture.address(d)])
        #expect(admission.held[d.id] != nil)
    }

    @Test func heldAnnouncementsAreCapped() {
        let a = Fixture.key(1)
        var admission = Admission(me: a.id)
        var records: [MemberRecord] = []
        for index in 0..<(Admission.maxHeld + 50) {
            var seed = [UInt8](repeating: 9, count: 32)
            seed[0] = UInt8(index % 256)
            seed[1] = UInt8(index / 256)
            guard let key = NodeKey(seed: seed) else { continue }
            let address = PeerAddress(host: "10.1.\(index / 256).\(index % 256)", port: 7946)
            records.append(
                MemberRecord(
                    announcement: .signed(by: key, name: "n", incarnation: 1, addresses: [address]), state: .alive,
                    since: 0, lastSource: nil))
        }
        _ = admission.admit(state: records, now: Self.start)
        #expect(admission.held.count == Admission.maxHeld)
    }
}
