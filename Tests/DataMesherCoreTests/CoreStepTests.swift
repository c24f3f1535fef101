@preconcurrency import Crypto
import DataMesherCore
import DataMesherSim
import Testing

/// The core driven one input at a time (as swift-cluster-membership's `SWIMInstanceTests` drive
/// `SWIM.Instance`), checking the directives of each step.
@Suite struct CoreStepTests {
    typealias Fixture = MembershipTrustTests.Fixture
    static let second = MembershipTrustTests.second

    static func sent(_ directives: [CoreDirective]) -> [(packet: Packet, to: PeerAddress, node: NodeID)] {
        directives.compactMap { directive in
            guard case .send(let packet, let address, let node) = directive else { return nil }
            return (packet, address, node)
        }
    }

    /// A node configured for `name` (signed by `signer`) that has met members b and c.
    static func meetingBAndC(configuredFor name: FileName, signedBy signer: Signer) -> Fixture {
        var node = Fixture(policy: FilePolicy(allowedSigners: [name: [signer.public_]]))
        node.meet(node.b)
        node.meet(node.c)
        return node
    }

    // MARK: Holding queries

    @Test func holdingQueriesGoToLiveMembersAndOnlySignedAnswersToThemCount() throws {
        let zone = try FileName("zone")
        let signer = Signer()
        var node = Self.meetingBAndC(configuredFor: zone, signedBy: signer)
        let queries = Self.sent(node.feed(.askHoldings(zone)))
        #expect(Set(queries.map(\.node)) == [node.b.id, node.c.id])
        #expect(queries.allSatisfy { $0.packet.items == [.holdingQuery(zone)] })
        #expect(queries.allSatisfy { $0.to == Fixture.address($0.node == node.b.id ? node.b : node.c) })
        // This node's own claim is there at once: configured, holding nothing.
        #expect(node.core.holdings[zone]?[node.a.id]?.timestamp == Holding.nothing)
        // Asked again at once: no second round of datagrams.
        #expect(Self.sent(node.feed(.askHoldings(zone))).isEmpty)

        let version = try signer.version("zone", at: MembershipTrustTests.start)
        node.receive(items: [.holding(.signed(zone, version: version, by: node.b))], sender: node.b)
        #expect(node.core.holdings[zone]?[node.b.id]?.holds(version) == true)
        #expect(node.core.holdingAnswers[zone] == [node.b.id])
        // A claim in b's name signed by c, a stranger's claim, and a claim about a name nobody
        // asked about change nothing.
        let newer = try signer.version("zone", at: MembershipTrustTests.start + 1)
        var forged = Holding.signed(zone, version: newer, by: node.c)
        forged.holder = node.b.id
        let dropped = node.receive(items: [.holding(forged)], sender: node.c)
        #expect(dropped == [.droppedClaim(reason: "bad_signature")])
        node.receive(items: [.holding(.signed(zone, version: nil, by: node.mallory))], sender: node.mallory)
        node.receive(items: [.holding(.signed(try FileName("other"), version: nil, by: node.c))], sender: node.c)
        #expect(node.core.holdings[zone]?.count == 2)
        #expect(node.core.holdings[try FileName("other")] == nil)
        // An older claim does not replace a newer one; the same claim again counts as an answer.
        node.receive(items: [.holding(.signed(zone, version: nil, by: node.b))], sender: node.b)
        #expect(node.core.holdings[zone]?[node.b.id]?.holds(version) == true)
        #expect(node.core.takeChangedHoldings() == [zone])
        #expect(node.core.takeChangedHoldings().isEmpty)
    }

    @Test func aNodeAnswersConfirmedMembersAtTheirOwnAddressOnly() throws {
        let zone = try FileName("zone")
        let signer = Signer()
        var node = Fixture(policy: FilePolicy(allowedSigners: [zone: [signer.public_]]))
        node.meet(node.b)
        let elsewhere = PeerAddress(host: "192.0.2.7", port: 9)
        let answers = Self.sent(node.receive(items: [.holdingQuery(zone)], sender: node.b, from: elsewhere))
        #expect(answers.count == 1)
        let answer = try #require(answers.first)
        #expect(answer.to == Fixture.address(node.b) && answer.node == node.b.id)
        guard case .holding(let claim)? = answer.packet.items.first else {
            Issue.record("the answer holds no claim: \(answer.packet.items)")
            return
        }
        #expect(claim == .signed(zone, version: nil, by: node.a))
        // Strangers, members announced but not confirmed, and names this node is not configured
        // for get no answer.
        #expect(Self.sent(node.receive(items: [.holdingQuery(zone)], sender: node.mallory)).isEmpty)
        node.receive(items: [.alive(node.announcement(node.c))], sender: node.c)
        #expect(Self.sent(node.receive(items: [.holdingQuery(zone)], sender: node.c)).isEmpty)
        #expect(Self.sent(node.receive(items: [.holdingQuery(try FileName("other"))], sender: node.b)).isEmpty)
    }

    // MARK: Refusals

    /// The refusal in an answer to a holding query, if the answer holds one.
    static func refusal(in answers: [(packet: Packet, to: PeerAddress, node: NodeID)]) -> RefusalClaim? {
        answers.lazy.compactMap { answer -> RefusalClaim? in
            guard case .refusal(let claim)? = answer.packet.items.first else { return nil }
            return claim
        }.first
    }

    @Test func aNodeTellsWhoAsksWhyItRefusedAVersionNewerThanTheOneItHolds() throws {
        let zone = try FileName("zone")
        let signer = Signer()
        let stranger = Signer()
        var node = Fixture(policy: FilePolicy(allowedSigners: [zone: [signer.public_]], maxFileSize: 4))
        node.meet(node.b)
        // Refused for its size: told, with the limit, signed by this node's key.
        let big = try signer.version("zone", at: MembershipTrustTests.start, content: "too big")
        #expect(
            node.receive(items: [.file(big, inline: Array("too big".utf8))], sender: node.b).contains {
                if case .refused(big, .tooLarge, _) = $0 { return true } else { return false }
            })
        let answers = Self.sent(node.receive(items: [.holdingQuery(zone)], sender: node.b))
        #expect(answers.count == 2)
        #expect(answers.allSatisfy { $0.to == Fixture.address(node.b) && $0.packet.items.count == 1 })
        let claim = try #require(Self.refusal(in: answers))
        #expect(claim.holder == node.a.id && claim.refuses(big) && claim.reason == .tooLarge && claim.limit == 4)
        #expect(
            Ed25519Verifier().isValidSignature(claim.signature, of: claim.signedMessage, by: node.a.publicKey))
        #expect(claim.explanation.contains("max_file_size (4 bytes)"))

        // A version its signature does not prove (a signer not allowed here, and a signature
        // that is not that signer's) is not told: anyone could have sent it.
        var forged = try stranger.version("zone", at: MembershipTrustTests.start + 2, content: "y")
        forged.signature[0] ^= 1
        node.receive(items: [.file(forged, inline: Array("y".utf8))], sender: node.b)
        #expect(Self.refusal(in: Self.sent(node.receive(items: [.holdingQuery(zone)], sender: node.b))) == claim)
        // Anyone can sign with a key of their own: such a version far in the future is not kept
        // (it would hide every later refusal).
        let farAhead = try stranger.version("zone", at: node.now + 3600 * Self.second, content: "y")
        node.receive(items: [.file(farAhead, inline: Array("y".utf8))], sender: node.b)
        #expect(Self.refusal(in: Self.sent(node.receive(items: [.holdingQuery(zone)], sender: node.b))) == claim)
        // Nor does one within the skew replace the refusal of a version an allowed key signed,
        // which nobody else can make (and the other way round, below).
        let decoy = try stranger.version("zone", at: MembershipTrustTests.start + 1, content: "y")
        node.receive(items: [.file(decoy, inline: Array("y".utf8))], sender: node.b)
        #expect(Self.refusal(in: Self.sent(node.receive(items: [.holdingQuery(zone)], sender: node.b))) == claim)
        // Once this node holds a version as new as the refused one, a version of that signer is
        // told as not allowed.
        let fitting = try signer.version("zone", at: MembershipTrustTests.start, content: "fit")
        node.receive(items: [.file(fitting, inline: Array("fit".utf8))], sender: node.b)
        node.feed(.stored(fitting, inline: Array("fit".utf8)))
        let other = try stranger.version("zone", at: MembershipTrustTests.start + 3, content: "y")
        node.receive(items: [.file(other, inline: Array("y".utf8))], sender: node.b)
        let notAllowed = try #require(
            Self.refusal(in: Self.sent(node.receive(items: [.holdingQuery(zone)], sender: node.b))))
        #expect(notAllowed.refuses(other) && notAllowed.reason == .signerNotAllowed)
        // The refusal of a version an allowed key signed replaces it, though older.
        let bigAgain = try signer.version("zone", at: MembershipTrustTests.start + 2, content: "big again")
        node.receive(items: [.file(bigAgain, inline: Array("big again".utf8))], sender: node.b)
        let tooLarge = try #require(
            Self.refusal(in: Self.sent(node.receive(items: [.holdingQuery(zone)], sender: node.b))))
        #expect(tooLarge.refuses(bigAgain) && tooLarge.reason == .tooLarge && tooLarge.isLasting)

        // Once it holds a version as new, it tells no refusal.
        let fits = try signer.version("zone", at: MembershipTrustTests.start + 3, content: "ok")
        node.receive(items: [.file(fits, inline: Array("ok".utf8))], sender: node.b)
        node.feed(.stored(fits, inline: Array("ok".utf8)))
        let after = Self.sent(node.receive(items: [.holdingQuery(zone)], sender: node.b))
        #expect(after.count == 1 && Self.refusal(in: after) == nil)
    }

    @Test func aVersionThatFoundNoRoomIsToldAsRefused() throws {
        let zone = try FileName("zone")
        let signer = Signer()
        var node = Fixture(policy: FilePolicy(allowedSigners: [zone: [signer.public_]]))
        node.meet(node.b)
        let version = try signer.version("zone", at: MembershipTrustTests.start)
        node.feed(.noRoom(version, free: 123))
        let claim = try #require(
            Self.refusal(in: Self.sent(node.receive(items: [.holdingQuery(zone)], sender: node.b))))
        #expect(claim.refuses(version) && claim.reason == .noRoom && claim.limit == 123 && claim.hasLimit)
        #expect(claim.explanation.hasPrefix("its disk has too little room for it (123 bytes free"))
        // Stored once there is room: nothing more to tell.
        node.feed(.stored(version, inline: nil))
        #expect(Self.refusal(in: Self.sent(node.receive(items: [.holdingQuery(zone)], sender: node.b))) == nil)
    }

    @Test func onlyARefusalSignedByTheMemberThatAnsweredIsKept() throws {
        let zone = try FileName("zone")
        let signer = Signer()
        var node = Self.meetingBAndC(configuredFor: zone, signedBy: signer)
        let version = try signer.version("zone", at: MembershipTrustTests.start)
        let told = try #require(RefusalClaim(refusing: version, for: .expired(zone), holder: node.b.id))
        // Not asked about the name: ignored.
        node.receive(items: [.refusal(told.signed(by: node.b))], sender: node.b)
        #expect(node.core.refusals[zone] == nil)
        node.feed(.askHoldings(zone))
        // In b's name, signed by c: dropped.
        var forged = told.signed(by: node.c)
        forged.holder = node.b.id
        #expect(node.receive(items: [.refusal(forged)], sender: node.c) == [.droppedClaim(reason: "bad_signature")])
        #expect(node.core.refusals[zone] == nil)
        node.receive(items: [.refusal(told.signed(by: node.b))], sender: node.b)
        #expect(node.core.refusals[zone]?[node.b.id] == told.signed(by: node.b))
        #expect(node.core.takeChangedHoldings().contains(zone))
        // An older refusal does not replace it.
        var older = told
        older.timestamp -= 1
        node.receive(items: [.refusal(older.signed(by: node.b))], sender: node.b)
        #expect(node.core.refusals[zone]?[node.b.id]?.timestamp == version.timestamp)
        // Once b says it holds a version as new, its refusal is over and forgotten.
        node.receive(items: [.holding(.signed(zone, version: version, by: node.b))], sender: node.b)
        #expect(node.core.refusals[zone] == nil)
        node.receive(items: [.refusal(told.signed(by: node.b))], sender: node.b)
        #expect(node.core.refusals[zone] == nil)
    }

    @Test func madeUpClaimsCostAtMostABoundedNumberOfSignatureChecksASecond() throws {
        let zone = try FileName("zone")
        let signer = Signer()
        var node = Self.meetingBAndC(configuredFor: zone, signedBy: signer)
        node.feed(.askHoldings(zone))
        var reasons: [String: Int] = [:]
        for batch in 0..<20 {
            let forged = (0..<64).map { index -> GossipItem in
                let claim = Holding(
                    holder: node.b.id, name: zone, timestamp: Int64(batch * 64 + index),
                    signaturePrefix: [UInt8](repeating: 1, count: 16), signature: [UInt8](repeating: 7, count: 64))
                return index % 2 == 0
                    ? .holding(claim)
                    : .refusal(
                        RefusalClaim(
                            holder: node.b.id, name: zone, timestamp: claim.timestamp,
                            signaturePrefix: claim.signaturePrefix, reasonCode: 5, limit: 1,
                            signature: claim.signature))
            }
            for directive in node.receive(items: forged, sender: node.b) {
                if case .droppedClaim(let reason) = directive { reasons[reason, default: 0] += 1 }
            }
        }
        #expect(reasons == ["bad_signature": ClusterCore.maxClaimChecksPerSecond, "over_check_budget": 20 * 64 - 1024])
        // A member's answer dropped meanwhile gets through once the second is over.
        let version = try signer.version("zone", at: MembershipTrustTests.start)
        node.receive(items: [.holding(.signed(zone, version: version, by: node.b))], sender: node.b)
        #expect(node.core.holdings[zone]?[node.b.id]?.holds(version) != true)
        node.now += Self.second
        node.receive(items: [.holding(.signed(zone, version: version, by: node.b))], sender: node.b)
        #expect(node.core.holdings[zone]?[node.b.id]?.holds(version) == true)
        // Spent again, then the clock stepped back an hour: a new second starts there, too.
        for _ in 0..<(ClusterCore.maxClaimChecksPerSecond / 64 + 1) {
            let forged = (0..<64).map { index in
                GossipItem.holding(
                    Holding(
                        holder: node.b.id, name: zone, timestamp: version.timestamp + 1 + Int64(index),
                        signaturePrefix: [UInt8](repeating: 1, count: 16),
                        signature: [UInt8](repeating: 7, count: 64)))
            }
            node.receive(items: forged, sender: node.b)
        }
        let newer = try signer.version("zone", at: MembershipTrustTests.start + 1)
        #expect(
            node.receive(items: [.holding(.signed(zone, version: newer, by: node.b))], sender: node.b)
                == [.droppedClaim(reason: "over_check_budget")])
        node.now -= 3600 * Self.second
        node.receive(items: [.holding(.signed(zone, version: newer, by: node.b))], sender: node.b)
        #expect(node.core.holdings[zone]?[node.b.id]?.holds(newer) == true)
    }

    // MARK: Suspicion

    /// Runs one probe of `node` to the end with no answer; returns the member it probed and the
    /// directives of the tick that ended the probe.
    static func failProbe(_ node: inout Fixture) -> (NodeID, [CoreDirective])? {
        node.now += 2 * second
        var target: NodeID?
        for directive in node.feed(.tick) {
            if case .send(let packet, _, let to) = directive, case .ping(_, let pinged) = packet.message, pinged == to {
                target = to
            }
        }
        node.now += 2 * second
        let ended = node.feed(.tick)
        return target.map { ($0, ended) }
    }

    @Test func aSuspicionIsToldToTheSuspectItselfWithTheAccusersAnnouncement() throws {
        var node = Fixture()
        node.meet(node.b)
        node.meet(node.c)
        let (target, ended) = try #require(Self.failProbe(&node))
        #expect(node.core.members[target]?.state == .suspect)
        var reminders = 0
        var directives = ended
        for _ in 0..<6 {
            for sent in Self.sent(directives) where sent.node == target && sent.packet.message == .gossip {
                guard sent.packet.items.count == 2, case .alive(let announcement) = sent.packet.items[0],
                    case .suspect(let accusation) = sent.packet.items[1]
                else { continue }
                #expect(announcement == node.core.me)
                #expect(accusation.id == target && accusation.from == node.a.id)
                #expect(accusation == Accusation.signed(id: target, incarnation: 100, dead: false, by: node.a))
                reminders += 1
            }
            node.now += Self.second
            directives = node.feed(.tick)
        }
        // At once and twice more, a probe interval apart; then no more.
        #expect(reminders == 3)
    }

    @Test func anAccusationFromAMemberOnlyHeardOfIsRefutedButAStrangersIsNot() {
        var node = Fixture()
        // b announced itself but never answered a ping: unconfirmed.
        node.receive(items: [.alive(node.announcement(node.b))], sender: node.b)
        #expect(node.core.members[node.b.id]?.confirmed == false)
        node.receive(
            items: [MembershipTrustTests.signedAccusation(node.a, incarnation: 100, dead: false, by: node.mallory)],
            sender: node.mallory)
        #expect(node.core.me.incarnation == 100)
        node.receive(
            items: [MembershipTrustTests.signedAccusation(node.a, incarnation: 100, dead: false, by: node.b)],
            sender: node.b)
        #expect(node.core.me.incarnation == 101)
        #expect(node.core.me.isAuthentic(Ed25519Verifier()))
    }

    // MARK: Relaying inline versions

    /// A version whose content rides inline is relayed on receipt, before it is stored, once its
    /// signature, rules and content hash are checked; storing it then does not relay it again.
    @Test func inlineVersionsAreRelayedOnReceiptOnceChecked() throws {
        let zone = try FileName("zone")
        let signer = Signer()
        var node = Self.meetingBAndC(configuredFor: zone, signedBy: signer)
        let content = "x"
        let version = try signer.version("zone", at: MembershipTrustTests.start, content: content)
        let directives = node.receive(items: [.file(version, inline: Array(content.utf8))], sender: node.b)
        #expect(directives.contains(.store(version, inline: Array(content.utf8), from: Fixture.address(node.b))))
        let relayed = Self.sent(directives).filter {
            $0.packet.items.contains(.file(version, inline: Array(content.utf8)))
        }
        #expect(!relayed.isEmpty)
        // Stored: not pushed again.
        let stored = node.feed(.stored(version, inline: Array(content.utf8)))
        #expect(
            Self.sent(stored).filter { $0.packet.items.contains { if case .file = $0 { true } else { false } } }.isEmpty
        )
        #expect(node.core.files[zone] == version)

        // Content that does not match its signed hash is refused on receipt: neither stored nor relayed.
        let newer = try signer.version("zone", at: MembershipTrustTests.start + 1, content: "y")
        let forged = node.receive(items: [.file(newer, inline: Array("z".utf8))], sender: node.b)
        #expect(forged == [.refused(newer, .contentMismatch(zone), from: node.b.id)])
    }
    /// A big version is relayed as its fetch starts, once: offered again after that fetch failed
    /// (every holder had lost it), it is fetched again but not relayed again, so the offer of a
    /// version no member holds dies out instead of going round the cluster.
    @Test func aBigVersionIsRelayedEarlyOnceAlsoWhenItsFetchFailed() throws {
        let big = try FileName("big")
        let signer = Signer()
        var node = Self.meetingBAndC(configuredFor: big, signedBy: signer)
        let version = try FileVersion.sign(
            kind: .content, networkID: "", name: big, timestamp: MembershipTrustTests.start, validFor: 0,
            contentSHA256: Array(repeating: 7, count: 32), contentLength: Fetcher.exclusiveUploadSize, key: signer.key)
        func relays(_ directives: [CoreDirective]) -> Int {
            Self.sent(directives).filter { $0.packet.items.contains(.file(version, inline: nil)) }.count
        }
        let first = node.receive(items: [.file(version, inline: nil)], sender: node.b)
        #expect(first.contains(.store(version, inline: nil, from: Fixture.address(node.b))))
        #expect(relays(first) > 0)
        _ = node.feed(.storeFailed(version))
        let again = node.receive(items: [.file(version, inline: nil)], sender: node.c)
        #expect(again.contains(.store(version, inline: nil, from: Fixture.address(node.c))))
        #expect(relays(again) == 0)
    }

    // MARK: Content lost

    /// A version whose content the store lost is no longer held, so a member's offer of it is
    /// taken again, and nothing older is; a lost version that a newer one replaced meanwhile
    /// changes nothing.
    @Test func aLostVersionIsNoLongerHeldUnlessANewerOneTookItsPlace() throws {
        let zone = try FileName("zone")
        let signer = Signer()
        var node = Self.meetingBAndC(configuredFor: zone, signedBy: signer)
        let first = try signer.version("zone", at: MembershipTrustTests.start, content: "x")
        let second = try signer.version("zone", at: MembershipTrustTests.start + 1, content: "y")
        _ = node.feed(.stored(first, inline: Array("x".utf8)))
        _ = node.feed(.stored(second, inline: Array("y".utf8)))
        _ = node.feed(.lost(first))
        #expect(node.core.files[zone] == second && node.core.files.lost.isEmpty)
        let digest = node.core.files.rootDigest
        _ = node.feed(.lost(second))
        #expect(node.core.files[zone] == nil && node.core.files.lost[zone] == second)
        #expect(node.core.files.rootDigest != digest)
        // Push/pull asks a member for the lost version or a newer one, not for an older one.
        #expect(node.core.files.newerElsewhere([VersionSummary(first)]).isEmpty)
        #expect(node.core.files.newerElsewhere([VersionSummary(second)]) == [VersionSummary(second)])
        // Gossip likewise.
        let older = node.receive(items: [.file(first, inline: Array("x".utf8))], sender: node.b)
        #expect(!older.contains { if case .store = $0 { true } else { false } })
        let again = node.receive(items: [.file(second, inline: Array("y".utf8))], sender: node.b)
        #expect(again.contains(.store(second, inline: Array("y".utf8), from: Fixture.address(node.b))))
        _ = node.feed(.stored(second, inline: Array("y".utf8)))
        #expect(node.core.files[zone] == second && node.core.files.lost.isEmpty && node.core.files.rootDigest == digest)
    }
}
