@preconcurrency import Crypto
import DataMesherCore
import Testing

/// `PushPull` driven one frame at a time, both sides, as the shell and the simulator drive it.
@Suite struct PushPullTests {
    static let callerAddress = PeerAddress(host: "10.0.0.1", port: 7946)
    static let calleeAddress = PeerAddress(host: "10.0.0.2", port: 7946)

    static func member(_ name: String, at address: PeerAddress) -> MemberRecord {
        let key = NodeKey(Curve25519.Signing.PrivateKey())
        return MemberRecord(
            announcement: .signed(by: key, name: name, incarnation: 1, addresses: [address]), state: .alive, since: 0,
            lastSource: nil)
    }

    static func files(_ versions: [FileVersion]) -> FileIndex {
        var index = FileIndex()
        index.set(versions)
        return index
    }

    let callerMembers = [Self.member("caller", at: Self.callerAddress)]
    let calleeMembers = [Self.member("callee", at: Self.calleeAddress)]

    /// Carries the frames one side sends to the other; returns the other side's steps.
    func frames(_ steps: [PushPull.Step]) -> [SyncMessage] {
        steps.compactMap { if case .send(let message) = $0 { return message } else { return nil } }
    }

    @Test func nodesThatAgreeExchangeMembersAndOneRootEach() throws {
        let signer = Signer()
        let shared = Self.files([try signer.version("a", at: 100)])
        var caller = PushPull(.caller(dialed: Self.calleeAddress))
        var callee = PushPull(.callee)

        let opening = caller.open(join: true, members: callerMembers, files: shared)
        #expect(opening == [.send(.hello(join: true, members: callerMembers, root: shared.rootDigest))])

        let answer = try callee.receive(frames(opening)[0], members: calleeMembers, files: shared)
        #expect(
            answer == [
                .merge(callerMembers), .send(.reply(members: calleeMembers, root: shared.rootDigest, buckets: nil)),
                .finish,
            ])
        #expect(callee.isDone && callee.peerAddress == Self.callerAddress)

        let end = try caller.receive(frames(answer)[0], members: [], files: shared)
        #expect(end == [.merge(calleeMembers), .finish])
        #expect(caller.isDone && caller.peerAddress == Self.calleeAddress)
    }

    @Test func nodesThatDifferExchangeTheirBucketsSummariesAndFetchWhatIsNewer() throws {
        let signer = Signer()
        let old = try signer.version("a", at: 100)
        let new = try signer.version("a", at: 200)
        let onlyCallee = try signer.version("b", at: 100)
        let onlyCaller = try signer.version("c", at: 100)
        let callerFiles = Self.files([old, onlyCaller])
        let calleeFiles = Self.files([new, onlyCallee])
        var caller = PushPull(.caller(dialed: Self.calleeAddress))
        var callee = PushPull(.callee)

        let hello = frames(caller.open(join: false, members: callerMembers, files: callerFiles))
        let reply = try callee.receive(hello[0], members: calleeMembers, files: calleeFiles)
        #expect(
            frames(reply) == [
                .reply(members: calleeMembers, root: calleeFiles.rootDigest, buckets: calleeFiles.bucketDigests)
            ])
        #expect(!reply.contains(.finish) && !callee.isDone)

        let differing = callerFiles.differingBuckets(calleeFiles.bucketDigests)
        let summaries = try caller.receive(frames(reply)[0], members: [], files: callerFiles)
        #expect(
            summaries == [
                .merge(calleeMembers),
                .send(.summaries(buckets: differing, versions: callerFiles.summaries(inBuckets: differing))),
            ])

        let calleeEnd = try callee.receive(frames(summaries)[0], members: [], files: calleeFiles)
        let calleeSummaries = calleeFiles.summaries(inBuckets: differing)
        #expect(
            calleeEnd == [
                .send(.summaries(buckets: differing, versions: calleeSummaries)),
                .fetch(
                    calleeFiles.newerElsewhere(callerFiles.summaries(inBuckets: differing)), from: Self.callerAddress),
                .finish,
            ])
        // The callee wants the caller's only file; the caller wants the newer `a` and `b`.
        guard case .fetch(let calleeWants, _) = calleeEnd[1] else { return }
        #expect(calleeWants.map(\.name.value) == ["c"])

        let callerEnd = try caller.receive(frames(calleeEnd)[0], members: [], files: callerFiles)
        guard case .fetch(let callerWants, let from) = callerEnd.first else {
            Issue.record("no fetch: \(callerEnd)")
            return
        }
        #expect(Set(callerWants.map(\.name.value)) == ["a", "b"] && from == Self.calleeAddress)
        #expect(callerEnd.last == .finish && caller.isDone)
    }

    @Test func aFrameOutOfTurnEndsTheExchangeWithAnError() throws {
        let files = FileIndex()
        var callee = PushPull(.callee)
        #expect(throws: WireError.self) {
            try callee.receive(.summaries(buckets: [], versions: []), members: [], files: files)
        }
        #expect(callee.isDone)

        var caller = PushPull(.caller(dialed: Self.calleeAddress))
        _ = caller.open(join: false, members: callerMembers, files: files)
        #expect(throws: WireError.self) {
            try caller.receive(.hello(join: false, members: [], root: files.rootDigest), members: [], files: files)
        }
        // Opening twice sends nothing more.
        #expect(caller.open(join: false, members: callerMembers, files: files).isEmpty)
    }

    @Test func aStreamThatEndsEarlyFinishesTheExchangeWithoutFetching() throws {
        var caller = PushPull(.caller(dialed: Self.calleeAddress))
        _ = caller.open(join: false, members: callerMembers, files: FileIndex())
        #expect(try caller.receive(nil, members: [], files: FileIndex()) == [.finish])
        #expect(caller.isDone)
    }

    @Test func aCallerThatGivesNoAddressIsNotFetchedFrom() throws {
        let signer = Signer()
        let callerFiles = Self.files([try signer.version("c", at: 100)])
        var callee = PushPull(.callee)
        _ = try callee.receive(
            .hello(join: false, members: [], root: callerFiles.rootDigest), members: calleeMembers, files: FileIndex())
        let all = Array(0..<FileIndex.bucketCount)
        let end = try callee.receive(
            .summaries(buckets: all, versions: callerFiles.summaries(inBuckets: all)), members: [], files: FileIndex())
        #expect(!end.contains { if case .fetch = $0 { return true } else { return false } })
        #expect(end.last == .finish)
    }
}
