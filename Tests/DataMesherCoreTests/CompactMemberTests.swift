import Crypto
import DataMesherSim
import Testing

@testable import DataMesherCore

/// Member records are compact (one shared body per announcement, the source address as a tag),
/// and what a burst of news took is given back. These check that nothing is lost on the way.
@Suite struct CompactMemberTests {
    static let key = NodeKey(Curve25519.Signing.PrivateKey())
    static let home = PeerAddress(host: "10.0.0.3", port: 7946)
    static let other = PeerAddress(host: "10.0.9.9", port: 7946)

    static func signed(incarnation: UInt64 = 1, addresses: [PeerAddress] = [home]) -> MemberAnnouncement {
        MemberAnnouncement.signed(by: key, name: "node-3", incarnation: incarnation, addresses: addresses)
    }

    @Test func announcementRoundTripsAndKeepsItsKeyAndSignature() throws {
        let announcement = Self.signed(addresses: [Self.home, Self.other])
        #expect(announcement.publicKey == Self.key.publicKey)
        #expect(announcement.signature.count == 64)
        #expect(announcement.isAuthentic(Ed25519Verifier()))
        let packet = Packet(sender: Self.key.id, message: .gossip, items: [.alive(announcement)])
        let decoded = try WireCodec.decode(WireCodec.encode(packet))
        guard case .alive(let back) = decoded.items.first else {
            Issue.record("no announcement decoded")
            return
        }
        #expect(back == announcement)
        #expect(back.addresses == [Self.home, Self.other])
        #expect(back.isAuthentic(Ed25519Verifier()))
        #expect(WireCodec.encode(.alive(back)).count == WireCodec.encodedSize(back))
    }

    @Test func aKeyOrSignatureOfAnotherLengthIsHeldAsAbsentAndRefused() {
        var announcement = Self.signed()
        announcement.signature = Array(announcement.signature.prefix(63))
        #expect(announcement.signature.isEmpty)
        #expect(!announcement.isAuthentic(Ed25519Verifier()))
        var rekeyed = Self.signed()
        rekeyed.publicKey = Array(repeating: 1, count: 33)
        #expect(rekeyed.publicKey.isEmpty)
        #expect(!rekeyed.isAuthentic(Ed25519Verifier()))
        // A changed field is a new body: the copy it came from is untouched.
        let original = Self.signed()
        var renamed = original
        renamed.name = "other"
        #expect(original.name == "node-3" && renamed.name == "other")
        #expect(!renamed.isAuthentic(Ed25519Verifier()) && original.isAuthentic(Ed25519Verifier()))
    }

    /// The simulator's verifier hands every core the copy it checked first, and only for an
    /// announcement that says exactly the same; anything else is verified on its own.
    @Test func theSimulatorsVerifierSharesOnlyWhatSaysTheSame() throws {
        let cache = SignatureCache()
        let first = Self.signed()
        let copy = try #require(
            WireCodec.decodeItems(WireReader(WireCodec.encode(.alive(first))), count: 1).first.flatMap {
                item -> MemberAnnouncement? in
                if case .alive(let announcement) = item { announcement } else { nil }
            })
        #expect(copy.body !== first.body)
        #expect(cache.authentic(first)?.body === first.body)
        #expect(cache.authentic(copy)?.body === first.body)
        var forged = copy
        forged.name = "forged"
        #expect(cache.authentic(forged) == nil)
        let newer = Self.signed(incarnation: 2)
        #expect(cache.authentic(newer)?.body === newer.body)
        #expect(cache.authentic(copy)?.body === copy.body)
        #expect(Ed25519Verifier().authentic(copy)?.body === copy.body)
        #expect(Ed25519Verifier().authentic(forged) == nil)
    }

    @Test func aRecordKeepsItsSourceWhenTheAnnouncementMoves() {
        var record = MemberRecord(announcement: Self.signed(), state: .alive, since: 0, lastSource: Self.home)
        #expect(record.lastSource == Self.home)
        #expect(record.address == Self.home)
        // A newer announcement with no address: the acks' source is still known.
        record.announcement = Self.signed(incarnation: 2, addresses: [])
        #expect(record.lastSource == Self.home)
        #expect(record.address == Self.home)
        record.lastSource = Self.other
        #expect(record.address == Self.other)
        record.lastSource = nil
        #expect(record.address == nil)
        let tagged = MemberRecord(announcement: Self.signed(), state: .alive, since: 0, lastSource: Self.home)
        let boxed = MemberRecord(announcement: Self.signed(), state: .alive, since: 0, lastSource: Self.other)
        #expect(tagged != boxed)
    }

    @Test func aDrainedQueueGivesItsStorageBack() {
        var queue = BroadcastQueue()
        for index in 1...500 {
            let key = NodeKey(Curve25519.Signing.PrivateKey())
            queue.enqueue(
                .alive(MemberAnnouncement.signed(by: key, name: "n\(index)", incarnation: 1, addresses: [Self.home])))
        }
        var rounds = 0
        while queue.count > 0 && rounds < 10_000 {
            _ = queue.take(budget: 1_400, limit: 3)
            rounds += 1
        }
        #expect(queue.count == 0)
        #expect(queue.meta.capacity == 0 && queue.arena.capacity == 0 && queue.slotOf.capacity == 0)
        queue.enqueue(.alive(Self.signed()))
        #expect(queue.take(budget: 1_400, limit: 3).count == 1)
    }
}
