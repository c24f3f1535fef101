/// One push/pull exchange (docs/PROTOCOL.md, "Push/pull"), on either side, as a pure state
/// machine. Its driver opens the stream, feeds it each frame that arrives (nil once the stream
/// ended) together with this node's current member list and file index, and carries out the
/// steps it returns in order. The network shell drives it over a TCP stream, the simulator over
/// its simulated network: both run this code, and neither has an exchange of its own.
public struct PushPull: Sendable, Equatable {
    public enum Role: Sendable, Equatable {
        /// Opened the stream, to `dialed`.
        case caller(dialed: PeerAddress)
        /// Accepted it.
        case callee
    }

    public enum Step: Sendable, Equatable {
        /// Send this frame to the peer.
        case send(SyncMessage)
        /// Merge the peer's member list (the shell first holds back members it has not admitted).
        case merge([MemberRecord])
        /// Fetch these versions, which the peer holds newer, from the peer's own address.
        case fetch([VersionSummary], from: PeerAddress)
        /// The exchange is over: close the stream.
        case finish
    }

    enum Stage: Sendable, Equatable {
        case opening
        case awaitingHello
        case awaitingReply
        /// The caller sent its summaries of these buckets; the callee waits for them.
        case awaitingSummaries
        case done
    }

    public let role: Role
    var stage: Stage
    /// Where the peer's versions are fetched: the first address of its own member record, or
    /// (for a caller) the address it dialed.
    public private(set) var peerAddress: PeerAddress?

    public init(_ role: Role) {
        self.role = role
        switch role {
        case .caller(let dialed):
            stage = .opening
            peerAddress = dialed
        case .callee:
            stage = .awaitingHello
        }
    }

    public var isDone: Bool { stage == .done }

    /// The caller's first frame: its member list (itself first) and root digest.
    public mutating func open(join: Bool, members: [MemberRecord], files: FileIndex) -> [Step] {
        guard stage == .opening else { return [] }
        stage = .awaitingReply
        return [.send(.hello(join: join, members: members, root: files.rootDigest))]
    }

    /// The next frame from the peer, or nil when the stream ended; `members` is this node's
    /// member list (needed to answer a hello). An unexpected frame ends the exchange with an error.
    public mutating func receive(_ message: SyncMessage?, members: [MemberRecord], files: FileIndex) throws(WireError)
        -> [Step]
    {
        guard let message else {
            stage = .done
            return [.finish]
        }
        switch (stage, message) {
        case (.awaitingHello, .hello(_, let theirs, let root)):
            // The answer is built before their members are merged: echoing those back is useless.
            let differs = root != files.rootDigest
            let reply = SyncMessage.reply(
                members: members, root: files.rootDigest, buckets: differs ? files.bucketDigests : nil)
            peerAddress = theirs.first?.announcement.addresses.first
            stage = differs ? .awaitingSummaries : .done
            return [.merge(theirs), .send(reply)] + (differs ? [] : [.finish])
        case (.awaitingReply, .reply(let theirs, _, let buckets)):
            if let address = theirs.first?.announcement.addresses.first { peerAddress = address }
            guard let buckets else {
                stage = .done
                return [.merge(theirs), .finish]
            }
            let differing = files.differingBuckets(buckets)
            stage = .awaitingSummaries
            return [
                .merge(theirs), .send(.summaries(buckets: differing, versions: files.summaries(inBuckets: differing))),
            ]
        case (.awaitingSummaries, .summaries(let buckets, let theirs)):
            stage = .done
            var steps: [Step] = []
            if role == .callee {
                steps.append(.send(.summaries(buckets: buckets, versions: files.summaries(inBuckets: buckets))))
            }
            let newer = files.newerElsewhere(theirs)
            if let peerAddress, !newer.isEmpty { steps.append(.fetch(newer, from: peerAddress)) }
            return steps + [.finish]
        default:
            stage = .done
            throw .invalid("push/pull frame \(message.type) out of turn")
        }
    }
}
