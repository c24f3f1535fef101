import Testing

@testable import DataMesherCore

/// The fetcher driven one input at a time, its steps checked frame by frame: what opens which
/// stream, what waits, what a stream's end fails, and what a full disk holds back.
@Suite struct FetcherTests {
    let signer = Signer()
    static let peer = PeerAddress(host: "10.0.0.2", port: 7946)
    static let other = PeerAddress(host: "10.0.0.3", port: 7946)
    static let now: Int64 = 1_800_000_000_000_000_000

    func version(_ name: String, at timestamp: Int64 = now) throws -> FileVersion {
        try signer.version(name, at: timestamp, content: "content of \(name)")
    }

    /// A version big enough to be sent to one member at a time (`Fetcher.exclusiveUploadSize`).
    func bigVersion() throws -> FileVersion {
        try FileVersion.sign(
            kind: .content, networkID: "", name: try FileName("big"), timestamp: Self.now, validFor: 0,
            contentSHA256: Array(repeating: 7, count: 32), contentLength: Fetcher.exclusiveUploadSize, key: signer.key)
    }

    /// `version` offered by `peer`, asked at once, then by `other`, only remembered as a second
    /// holder: the stream to `peer`.
    static func offeredByTwoHolders(
        _ version: FileVersion, to fetcher: inout Fetcher
    ) throws -> (id: Int, to: PeerAddress, names: [String]) {
        let first = try #require(opened(fetcher.offered(version, inline: nil, from: peer, now: now)).first)
        #expect(fetcher.offered(version, inline: nil, from: other, now: now).isEmpty)
        return first
    }

    var policy: FilePolicy {
        get throws {
            var signers: [FileName: Set<SignerKey>] = [:]
            for index in 0..<600 { signers[try FileName("f\(index)"), default: []].insert(signer.public_) }
            return FilePolicy(allowedSigners: signers)
        }
    }

    static func opened(_ steps: [Fetcher.Step]) -> [(id: Int, to: PeerAddress, names: [String])] {
        steps.compactMap {
            guard case .open(let id, let address, let requests) = $0 else { return nil }
            return (id, address, requests.map(\.name.value))
        }
    }

    @Test func gossipOpensAStreamAndItsEndFailsWhatWasNotAnswered() throws {
        var fetcher = Fetcher()
        let version = try version("f1")
        let steps = fetcher.offered(version, inline: nil, from: Self.peer, now: Self.now)
        let opened = Self.opened(steps)
        #expect(opened.count == 1 && opened.first?.to == Self.peer && opened.first?.names == ["f1"])
        #expect(fetcher.fetchingNames == [try FileName("f1")])
        let id = try #require(opened.first?.id)
        // The stream is cut before its answer: the core hears that the version was not stored.
        #expect(fetcher.ended(id, now: Self.now) == [.failed(version)])
        #expect(fetcher.fetchingNames.isEmpty && fetcher.openStreams == 0)
        #expect(fetcher.ended(id, now: Self.now).isEmpty)
    }

    @Test func inlineContentAndTombstonesAreCommittedWithoutAStream() throws {
        var fetcher = Fetcher()
        let version = try version("f1")
        #expect(
            fetcher.offered(version, inline: [1, 2], from: nil, now: Self.now) == [
                .commit(version, content: [1, 2], from: nil)
            ])
        // Without a source to fetch from, the offer fails at once.
        #expect(fetcher.offered(version, inline: nil, from: nil, now: Self.now) == [.failed(version)])
        #expect(fetcher.openStreams == 0)
    }

    @Test func answersAreTakenInOrderAndOnlyUnstoredOffersFail() throws {
        var fetcher = Fetcher()
        let first = try version("f1")
        let second = try version("f2")
        let one = try #require(Self.opened(fetcher.offered(first, inline: nil, from: Self.peer, now: Self.now)).first)
        let two = try #require(Self.opened(fetcher.offered(second, inline: nil, from: Self.peer, now: Self.now)).first)
        #expect(one.id != two.id)
        #expect(fetcher.answered(one.id, .stored(first), now: Self.now).isEmpty)
        #expect(fetcher.answered(two.id, .notStored, now: Self.now) == [.failed(second)])
        // A stream answers each request once; more answers than requests are ignored.
        #expect(fetcher.answered(two.id, .notStored, now: Self.now).isEmpty)
        #expect(fetcher.ended(one.id, now: Self.now).isEmpty && fetcher.ended(two.id, now: Self.now).isEmpty)
    }

    @Test func pushPullBatchesConfiguredNamesAndLimitsStreamsPerPeer() throws {
        var fetcher = Fetcher()
        let policy = try policy
        // 1,200 names newer at the peer (600 of them not configured here): 600 requests, 256 a
        // stream, so three streams, all open at once (at most four per peer).
        var summaries: [VersionSummary] = []
        for index in 0..<1_200 {
            let version = try version(index < 600 ? "f\(index)" : "g\(index)")
            summaries.append(VersionSummary(version))
        }
        let steps = fetcher.wanted(summaries, from: Self.peer, policy: policy, now: Self.now)
        let opened = Self.opened(steps)
        #expect(opened.map(\.names.count) == [256, 256, 88])
        #expect(fetcher.fetchingNames.count == 600)
        // Asked again while they are under way: nothing new.
        #expect(fetcher.wanted(summaries, from: Self.peer, policy: policy, now: Self.now).isEmpty)
        // Two more gossip offers to the same peer: the fourth stream opens, the fifth waits for
        // one to end; a stream to another peer does not wait.
        let a = try version("h1")
        let b = try version("h2")
        #expect(Self.opened(fetcher.offered(a, inline: nil, from: Self.peer, now: Self.now)).count == 1)
        #expect(fetcher.offered(b, inline: nil, from: Self.peer, now: Self.now).isEmpty)
        #expect(
            Self.opened(fetcher.offered(try version("h3"), inline: nil, from: Self.other, now: Self.now)).count == 1)
        // Another member offering a version already asked for is only one more holder of it.
        #expect(fetcher.offered(b, inline: nil, from: Self.other, now: Self.now).isEmpty)
        #expect(fetcher.holders[b.name]?.addresses == [Self.peer, Self.other])
        // The first stream ends with nothing answered: push/pull requests fail silently (the
        // next push/pull asks again), and the waiting stream opens.
        let waiting = Self.opened(fetcher.ended(opened[0].id, now: Self.now))
        #expect(waiting.count == 1 && waiting.first?.names == ["h2"] && waiting.first?.to == Self.peer)
    }

    @Test func aFullDiskHoldsAVersionBackWithADoublingWait() throws {
        var fetcher = Fetcher()
        let policy = try policy
        let version = try version("f1")
        let id = try #require(
            Self.opened(fetcher.offered(version, inline: nil, from: Self.peer, now: Self.now)).first?.id)
        #expect(
            fetcher.answered(id, .noSpace(version), now: Self.now) == [
                .backingOff(version, delay: 5_000_000_000), .failed(version),
            ])
        _ = fetcher.ended(id, now: Self.now)
        // Within the wait, neither gossip nor push/pull fetches it again.
        let soon = Self.now + 1_000_000_000
        #expect(fetcher.offered(version, inline: nil, from: Self.peer, now: soon) == [.failed(version)])
        #expect(fetcher.wanted([VersionSummary(version)], from: Self.peer, policy: policy, now: soon).isEmpty)
        // After it, it is fetched again; full again, the wait doubles.
        let later = Self.now + 6_000_000_000
        let again = try #require(Self.opened(fetcher.offered(version, inline: nil, from: Self.peer, now: later)).first)
        #expect(
            fetcher.answered(again.id, .noSpace(version), now: later) == [
                .backingOff(version, delay: 10_000_000_000), .failed(version),
            ])
        _ = fetcher.ended(again.id, now: Self.now)
        // A newer version of the name is not held back, and storing it ends the wait.
        let newer = try self.version("f1", at: Self.now + 1)
        let third = try #require(Self.opened(fetcher.offered(newer, inline: nil, from: Self.peer, now: later)).first)
        #expect(fetcher.answered(third.id, .stored(newer), now: later).isEmpty)
        #expect(fetcher.backoffs.isEmpty)
    }

    /// A gossip offer of a name a push/pull is already fetching waits for that answer instead of
    /// starting a second transfer; it is settled by a stored version at least as new, and fails
    /// (so the core takes up the next offer) when the push/pull's request ends without one.
    @Test func aGossipOfferWaitsForThePushPullFetchOfItsName() throws {
        var fetcher = Fetcher()
        let policy = try policy
        let version = try version("f1")
        let pull = try #require(
            Self.opened(fetcher.wanted([VersionSummary(version)], from: Self.other, policy: policy, now: Self.now))
                .first)
        #expect(fetcher.offered(version, inline: nil, from: Self.peer, now: Self.now).isEmpty)
        #expect(fetcher.openStreams == 1)
        #expect(fetcher.answered(pull.id, .stored(version), now: Self.now).isEmpty)
        #expect(fetcher.ended(pull.id, now: Self.now).isEmpty)

        // The push/pull's stream is cut: the waiting offer fails; a newer offer replaces an older
        // waiting one, which fails at once.
        let newer = try self.version("f1", at: Self.now + 1)
        let newest = try self.version("f1", at: Self.now + 2)
        let second = try #require(
            Self.opened(fetcher.wanted([VersionSummary(newer)], from: Self.other, policy: policy, now: Self.now)).first)
        #expect(fetcher.offered(newer, inline: nil, from: Self.peer, now: Self.now).isEmpty)
        #expect(fetcher.offered(newest, inline: nil, from: Self.peer, now: Self.now) == [.failed(newer)])
        #expect(fetcher.ended(second.id, now: Self.now) == [.failed(newest)])
        #expect(fetcher.fetchingNames.isEmpty && fetcher.openStreams == 0)
        // An answer older than the waiting offer does not settle it.
        let third = try #require(
            Self.opened(fetcher.wanted([VersionSummary(newest)], from: Self.other, policy: policy, now: Self.now)).first
        )
        #expect(fetcher.offered(newest, inline: nil, from: Self.peer, now: Self.now).isEmpty)
        #expect(fetcher.answered(third.id, .stored(newer), now: Self.now) == [.failed(newest)])
    }

    @Test func aHolderThatDeclinesOrVanishesHandsTheRequestToTheNextHolder() throws {
        var fetcher = Fetcher()
        let version = try version("big")
        let third = PeerAddress(host: "10.0.0.4", port: 7946)
        func offer(from holder: PeerAddress) throws -> Int {
            let opened = Self.opened(fetcher.offered(version, inline: nil, from: holder, now: Self.now))
            #expect(opened.map(\.to) == [holder])
            return try #require(opened.first?.id)
        }
        // The only holder declines (it is sending the version to another member): the offer fails.
        let first = try offer(from: Self.peer)
        #expect(fetcher.answered(first, .busy, now: Self.now) == [.failed(version)])
        #expect(fetcher.ended(first, now: Self.now).isEmpty && fetcher.fetchingNames.isEmpty)

        // A second holder offers it and declines too: the first one is asked again, on a stream
        // of its own; when it declines as well, the offer fails.
        let second = try offer(from: Self.other)
        let retry = Self.opened(fetcher.answered(second, .busy, now: Self.now))
        #expect(retry.map(\.to) == [Self.peer] && retry.map(\.names) == [["big"]])
        #expect(fetcher.fetchingNames == [version.name])
        let retryID = try #require(retry.first?.id)
        #expect(fetcher.answered(retryID, .busy, now: Self.now) == [.failed(version)])
        #expect(fetcher.ended(second, now: Self.now).isEmpty && fetcher.ended(retryID, now: Self.now).isEmpty)
        #expect(fetcher.fetchingNames.isEmpty && fetcher.openStreams == 0)

        // A third holder vanishes before answering: the request goes to the earliest holder,
        // which sends it; stored, the holders are forgotten.
        let fourth = try offer(from: third)
        let moved = Self.opened(fetcher.ended(fourth, now: Self.now))
        #expect(moved.map(\.to) == [Self.peer])
        let movedID = try #require(moved.first?.id)
        #expect(fetcher.answered(movedID, .stored(version), now: Self.now).isEmpty)
        #expect(fetcher.ended(movedID, now: Self.now).isEmpty && fetcher.fetchingNames.isEmpty)
        #expect(fetcher.holders.isEmpty)
    }

    @Test func holdersAreKeptForTheNewestVersionOnly() throws {
        var fetcher = Fetcher()
        let old = try version("f1")
        let new = try version("f1", at: Self.now + 1)
        let first = try #require(Self.opened(fetcher.offered(new, inline: nil, from: Self.peer, now: Self.now)).first)
        _ = fetcher.ended(first.id, now: Self.now)
        // An older version's holder is not a holder of the newer one.
        fetcher.remember(old, heldBy: Self.other)
        #expect(fetcher.holders[new.name]?.version == new && fetcher.holders[new.name]?.addresses == [Self.peer])
        // A full table forgets a name to make room; each name keeps its newest holders only.
        for index in 0..<(Fetcher.maxHeldNames + 10) {
            fetcher.remember(try version("h\(index)"), heldBy: Self.other)
        }
        #expect(fetcher.holders.count <= Fetcher.maxHeldNames)
        for index in 0..<(Fetcher.maxHolders + 5) {
            fetcher.remember(new, heldBy: PeerAddress(host: "10.1.0.\(index)", port: 7946))
        }
        #expect(fetcher.holders[new.name]?.addresses.count == Fetcher.maxHolders)
    }

    @Test func aBigVersionEveryHolderDeclinedIsAskedForAgainAfterAWait() throws {
        var fetcher = Fetcher()
        let third = PeerAddress(host: "10.0.0.4", port: 7946)
        let big = try bigVersion()
        let delay = Fetcher.retryDelay
        // Both holders decline (each is sending it to another member): no failure, a wait.
        let first = try Self.offeredByTwoHolders(big, to: &fetcher)
        let second = try #require(Self.opened(fetcher.answered(first.id, .busy, now: Self.now)).first)
        #expect(second.to == Self.other)
        #expect(fetcher.answered(second.id, .busy, now: Self.now) == [.wake(after: delay)])
        #expect(fetcher.fetchingNames.isEmpty)
        // Asked again once the wait is over, from the first holder on.
        let members = [Self.peer, Self.other]
        #expect(fetcher.woke(now: Self.now + delay - 1, members: members).isEmpty)
        var now = Self.now + delay
        let again = try #require(Self.opened(fetcher.woke(now: now, members: members)).first)
        #expect(again.to == Self.peer && fetcher.woke(now: now, members: members).isEmpty)
        let next = try #require(Self.opened(fetcher.answered(again.id, .busy, now: now)).first)
        #expect(fetcher.answered(next.id, .busy, now: now) == [.wake(after: delay)])
        // A member offering it meanwhile is asked at once, and sends it.
        let offered = try #require(Self.opened(fetcher.offered(big, inline: nil, from: third, now: now)).first)
        #expect(offered.to == third)
        #expect(fetcher.answered(offered.id, .stored(big), now: now).isEmpty)
        #expect(fetcher.holders.isEmpty && fetcher.fetchingNames.isEmpty)

        // Declined everywhere `maxRetries` times in a row, the offer fails.
        let stream = try #require(Self.opened(fetcher.offered(big, inline: nil, from: Self.peer, now: now)).first)
        var steps = fetcher.answered(stream.id, .busy, now: now)
        #expect(fetcher.ended(stream.id, now: now).isEmpty)
        for _ in 0..<Fetcher.maxRetries {
            #expect(steps == [.wake(after: delay)])
            now += delay
            let retry = try #require(Self.opened(fetcher.woke(now: now, members: [Self.peer])).first)
            steps = fetcher.answered(retry.id, .busy, now: now)
            #expect(fetcher.ended(retry.id, now: now).isEmpty)
        }
        #expect(steps == [.failed(big)])
    }

    /// The member at the end of a chain of transfers is free, but its offer may not have come
    /// here: after the holders, each retry asks a few members that never offered the version,
    /// different ones each time.
    @Test func aRetryAlsoAsksAFewMembersThatNeverOfferedIt() throws {
        var fetcher = Fetcher()
        let big = try bigVersion()
        let members = [Self.peer] + (10..<16).map { PeerAddress(host: "10.0.0.\($0)", port: 7946) }
        let first = try #require(Self.opened(fetcher.offered(big, inline: nil, from: Self.peer, now: Self.now)).first)
        #expect(fetcher.answered(first.id, .busy, now: Self.now) == [.wake(after: Fetcher.retryDelay)])
        var now = Self.now + Fetcher.retryDelay
        // The holder first, then probesPerRetry members that are not holders, one at a time.
        var asked = [try #require(Self.opened(fetcher.woke(now: now, members: members)).first)]
        for _ in 0..<Fetcher.probesPerRetry {
            let last = try #require(asked.last)
            asked.append(try #require(Self.opened(fetcher.answered(last.id, .busy, now: now)).first))
        }
        #expect(asked.map(\.to) == [Self.peer] + members[1...Fetcher.probesPerRetry])
        #expect(
            fetcher.answered(try #require(asked.last).id, .busy, now: now) == [.wake(after: Fetcher.retryDelay)])
        // The next retry asks the next few (going round the list).
        now += Fetcher.retryDelay
        var retry = try #require(Self.opened(fetcher.woke(now: now, members: members)).first)
        #expect(retry.to == Self.peer)
        retry = try #require(Self.opened(fetcher.answered(retry.id, .busy, now: now)).first)
        #expect(retry.to == members[Fetcher.probesPerRetry + 1])
        // A probe that is receiving it sends it.
        #expect(fetcher.answered(retry.id, .stored(big), now: now).isEmpty)
        #expect(fetcher.holders.isEmpty && fetcher.fetchingNames.isEmpty)
    }

    @Test func aHolderThatSentCorruptContentIsNotAskedAgain() throws {
        var fetcher = Fetcher()
        let big = try bigVersion()
        let first = try Self.offeredByTwoHolders(big, to: &fetcher)
        // The content did not match its signed hash: the next holder is asked, and the bad one
        // is no longer a holder.
        let next = try #require(Self.opened(fetcher.answered(first.id, .corrupt, now: Self.now)).first)
        #expect(next.to == Self.other && fetcher.holders[big.name]?.addresses == [Self.other])
        #expect(fetcher.answered(next.id, .busy, now: Self.now) == [.wake(after: Fetcher.retryDelay)])
        let retry = Self.opened(fetcher.woke(now: Self.now + Fetcher.retryDelay, members: [Self.other]))
        #expect(retry.map(\.to) == [Self.other])
        // The last holder sends corrupt content too: none is left, and the offer fails.
        let last = try #require(retry.first?.id)
        #expect(fetcher.answered(last, .corrupt, now: Self.now + Fetcher.retryDelay) == [.failed(big)])
    }

    /// A holder that answers with no version, or an older one, lost it (or its own transfer of it
    /// failed): it is not asked again, and once no holder is left the offer fails at once
    /// instead of being retried for a minute.
    @Test func aHolderWithoutTheVersionIsForgottenAndTheOfferEndsWithTheLastOne() throws {
        var fetcher = Fetcher()
        let big = try bigVersion()
        let members = [Self.other] + (10..<12).map { PeerAddress(host: "10.0.0.\($0)", port: 7946) }
        let first = try Self.offeredByTwoHolders(big, to: &fetcher)
        let next = try #require(Self.opened(fetcher.answered(first.id, .notHeld, now: Self.now)).first)
        #expect(next.to == Self.other && fetcher.holders[big.name]?.addresses == [Self.other])
        #expect(fetcher.answered(next.id, .busy, now: Self.now) == [.wake(after: Fetcher.retryDelay)])
        // The retry asks the busy holder only, then members that never offered it; a probe
        // without it is just passed over.
        let now = Self.now + Fetcher.retryDelay
        let retry = try #require(Self.opened(fetcher.woke(now: now, members: members)).first)
        #expect(retry.to == Self.other)
        let probe = try #require(Self.opened(fetcher.answered(retry.id, .notHeld, now: now)).first)
        #expect(probe.to == members[1] && fetcher.holders[big.name]?.addresses == [])
        let lastProbe = try #require(Self.opened(fetcher.answered(probe.id, .notHeld, now: now)).first)
        #expect(lastProbe.to == members[2])
        #expect(fetcher.answered(lastProbe.id, .notHeld, now: now) == [.failed(big)])
        #expect(fetcher.fetchingNames.isEmpty && fetcher.holders.isEmpty)
        #expect(fetcher.woke(now: now + Fetcher.retryDelay, members: members).isEmpty)
    }

    /// A holder whose address refuses the connection (its node is down) is not asked again for
    /// the version: the next holder is, and with none left the offer fails at once instead of
    /// retrying the dead one until it is declared dead. A stream that merely ended (cut, timed
    /// out) keeps its holder for the retry.
    @Test func aHolderThatRefusesTheConnectionIsForgotten() throws {
        var fetcher = Fetcher()
        let big = try bigVersion()
        let first = try Self.offeredByTwoHolders(big, to: &fetcher)
        let next = try #require(Self.opened(fetcher.ended(first.id, now: Self.now, unreachable: true)).first)
        #expect(next.to == Self.other && fetcher.holders[big.name]?.addresses == [Self.other])
        #expect(fetcher.ended(next.id, now: Self.now, unreachable: true) == [.failed(big)])
        #expect(fetcher.holders.isEmpty && fetcher.fetchingNames.isEmpty)

        var kept = Fetcher()
        let cut = try Self.offeredByTwoHolders(big, to: &kept)
        let other = try #require(Self.opened(kept.ended(cut.id, now: Self.now)).first)
        #expect(kept.ended(other.id, now: Self.now) == [.wake(after: Fetcher.retryDelay)])
        #expect(kept.holders[big.name]?.addresses.count == 2)
    }

    /// A holder that died or left while every holder was busy is not asked again: the retry
    /// goes to the live ones, and with none left the offer fails instead of dialing the dead
    /// for a minute.
    @Test func aRetryForgetsHoldersThatAreNoLongerLiveMembers() throws {
        var fetcher = Fetcher()
        let big = try bigVersion()
        let first = try Self.offeredByTwoHolders(big, to: &fetcher)
        let second = try #require(Self.opened(fetcher.answered(first.id, .busy, now: Self.now)).first)
        #expect(fetcher.answered(second.id, .busy, now: Self.now) == [.wake(after: Fetcher.retryDelay)])
        // The first holder is dead by the retry: the other is asked, and only it.
        var now = Self.now + Fetcher.retryDelay
        let retry = try #require(Self.opened(fetcher.woke(now: now, members: [Self.other])).first)
        #expect(retry.to == Self.other && fetcher.holders[big.name]?.addresses == [Self.other])
        #expect(fetcher.answered(retry.id, .busy, now: now) == [.wake(after: Fetcher.retryDelay)])
        // Then it is gone too: the offer fails, and nothing is left to retry.
        now += Fetcher.retryDelay
        #expect(fetcher.woke(now: now, members: []) == [.failed(big)])
        #expect(fetcher.holders.isEmpty && fetcher.woke(now: now + Fetcher.retryDelay, members: []).isEmpty)
    }
}
