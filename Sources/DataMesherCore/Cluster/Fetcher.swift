/// Which contents to fetch, from whom, on which stream, and what to tell the core when a fetch
/// ends without storing (docs/PROTOCOL.md, "Fetch"). Pure: the network shell opens the streams it
/// asks for and reports each answer, the simulator plays the same streams over its network.
///
/// Versions come from two places: gossip (the core's `.store` directive: one version, offered by
/// one member) and push/pull (`PushPull.Step.fetch`: every configured name the peer holds newer).
/// A stream carries up to `maxRequestsPerStream` requests, answered in order, so a node missing
/// thousands of versions pays one handshake per few hundred; at most `streamsPerPeer` streams to
/// one peer are open at once, the rest wait their turn. A push/pull does not ask for a name
/// already being fetched, and a gossip offer of a name a push/pull is fetching waits for that
/// answer. A version that did not fit on disk is not fetched again before its back-off ends
/// (5 s, doubling up to 10 min, per version).
///
/// Every member that offered a name's newest version is remembered as a holder. A holder that
/// is busy (it sends a big version to one member at a time, and declines the others meanwhile),
/// vanishes, holds no such version after all (it lost it, or its own transfer of it failed), or
/// sends content that does not match (the last two are forgotten as holders) is not the end of
/// the fetch: the request goes to the next holder not asked yet. When all of them were, a big
/// version is asked for again after `retryDelay` from the holders left that are still live
/// members, the first on (an offer meanwhile goes on at once), and any other offer fails, to be
/// taken up again at the next offer; so does a big version no holder is left of. A retry also
/// asks up to `probesPerRetry` live members that never offered it, a different few each time: a
/// member receiving it serves it while it arrives, and the one at the end of a chain of such
/// transfers is free, but its offer (gossiped once it started receiving) may not have reached
/// this node. So a big version crosses the cluster from every
/// member that holds it or is receiving it (`exclusiveUploadSize`), instead of being sent by its
/// origin to every member.
public struct Fetcher: Sendable {
    /// Requests on one stream, at most; a responder closes the stream after answering them.
    public static let maxRequestsPerStream = 256
    /// The encoded requests of one stream, at most: they are written before any answer is read,
    /// so they must fit the sockets' buffers whatever the answers do meanwhile.
    public static let maxRequestBytesPerStream = 32 * 1024
    /// Streams open to one peer at once.
    public static let streamsPerPeer = 4
    /// A version at least this big is sent to one member at a time by each holder; the others
    /// asking meanwhile are told it is busy, and ask another holder.
    public static let exclusiveUploadSize: UInt64 = 4 << 20
    /// Holders remembered per name, and names with holders, at most.
    static let maxHolders = 32
    static let maxHeldNames = 4096
    /// A big version every holder declined is asked for again after this long (ns), at most
    /// `maxRetries` times in a row, before its offer fails.
    public static let retryDelay: Int64 = 1_000_000_000
    static let maxRetries = 60
    /// Members that never offered a declined big version, asked at each retry after its holders.
    public static let probesPerRetry = 4
    static let firstBackoff: Int64 = 5_000_000_000
    static let maxBackoff: Int64 = 600_000_000_000

    /// A name to fetch, with the version gossip offered for it (nil when a push/pull found it).
    public struct Request: Sendable, Equatable {
        public let name: FileName
        public let expected: FileVersion?

        public init(name: FileName, expected: FileVersion?) {
            self.name = name
            self.expected = expected
        }

        /// Whether a reply naming `offered` answers this request: not when it is older than the
        /// version gossip offered (a member asked without having offered it may hold only an
        /// older one), which counts as no version.
        public func accepts(_ offered: FileVersion) -> Bool {
            expected.map { !VersionOrder.isNewer($0, than: offered) } ?? true
        }
    }

    /// How one request ended.
    public enum Outcome: Sendable, Equatable {
        /// This version was stored (the shell told the core).
        case stored(FileVersion)
        /// Nothing was stored: the version offered was refused.
        case notStored
        /// The peer is sending this big version to another member (`exclusiveUploadSize`).
        /// Another holder is asked next, and this one again at the next retry.
        case busy
        /// The peer holds no version, or only one older than the version offered: it is no
        /// longer asked for that version, and another holder is asked next.
        case notHeld
        /// The content sent did not match the version's signed hash or length: the peer is no
        /// longer asked for this version, and another holder is asked next.
        case corrupt
        /// The offered version did not fit on disk: it waits before it is fetched again.
        case noSpace(FileVersion)
    }

    public enum Step: Sendable, Equatable {
        /// Open stream `id` to `address`, send every request at once, and report each answer in
        /// order (`answered`), then its end (`ended`).
        case open(id: Int, to: PeerAddress, requests: [Request])
        /// Store this version with this content (inline or a tombstone's none) without a stream.
        case commit(FileVersion, content: [UInt8], from: PeerAddress?)
        /// A version gossip offered was not stored: tell the core, so another offer is taken up.
        case failed(FileVersion)
        /// No room for `version`: not fetched again for `delay` (ns).
        case backingOff(FileVersion, delay: Int64)
        /// Call `woke(now:)` after `after` (ns): a declined big version is asked for again.
        case wake(after: Int64)
    }

    struct Stream: Sendable {
        var address: PeerAddress
        var requests: [Request]
        var answered = 0
    }

    struct Backoff: Sendable {
        var timestamp: Int64
        var until: Int64
        var delay: Int64
    }

    var streams: [Int: Stream] = [:]
    /// Streams waiting for one of the peer's open streams to end, in order.
    var waiting: [PeerAddress: [[Request]]] = [:]
    var openCount: [PeerAddress: Int] = [:]
    var nextID = 0
    /// Names with a request under way (counted: gossip and push/pull may both fetch one), so a
    /// push/pull does not ask for them again.
    var fetching: [FileName: Int] = [:]
    var backoffs: [FileName: Backoff] = [:]
    /// Names with a push/pull's request under way (counted), and the gossip offers waiting on
    /// them, settled when those requests end.
    var pulling: [FileName: Int] = [:]
    var waitingOffers: [FileName: FileVersion] = [:]
    /// The members that offered each name's newest version, in the order they offered it.
    var holders: [FileName: Holders] = [:]

    struct Holders: Sendable {
        var version: FileVersion
        var addresses: [PeerAddress] = []
        /// Asked for it since it was last offered or retried.
        var asked: [PeerAddress] = []
        /// A request for it is under way.
        var requested = false
        /// Every holder declined it: asked again from then on.
        var retryAt: Int64?
        var retriesLeft = Fetcher.maxRetries
        /// Members that did not offer it, asked after the holders in this retry.
        var probes: [PeerAddress] = []
    }

    public init() {}

    /// Names being fetched.
    public var fetchingNames: Set<FileName> { Set(fetching.keys) }
    /// Streams open now.
    public var openStreams: Int { streams.count }

    // MARK: Inputs

    /// Gossip offered `version` (the core's `.store` directive), from `source` if it is fetched.
    public mutating func offered(
        _ version: FileVersion, inline: [UInt8]?, from source: PeerAddress?, now: Int64
    ) -> [Step] {
        if isBackingOff(version.name, timestamp: version.timestamp, now: now) { return [.failed(version)] }
        if version.isTombstone || inline != nil { return [.commit(version, content: inline ?? [], from: source)] }
        guard let source else { return [.failed(version)] }
        let name = version.name
        remember(version, heldBy: source)
        // A push/pull's request for the name is under way (the peer answers with what it holds
        // then, likely this version): its answer settles this offer too, instead of a second
        // transfer of the same content.
        if pulling[name] != nil {
            if waitingOffers[name] == version { return [] }
            // A newer offer replaces a waiting one (the core took it up instead).
            let replaced = waitingOffers.updateValue(version, forKey: name)
            return replaced.map { [.failed($0)] } ?? []
        }
        let request = Request(name: name, expected: version)
        guard var entry = holders[name], entry.version == version else { return enqueue([[request]], to: source) }
        // The core passes on every member offering the version it fetches: one holder more.
        if entry.requested { return [] }
        // A new attempt starts with the member offering it (a waiting one goes on at once).
        if entry.retryAt == nil {
            entry.retriesLeft = Self.maxRetries
            entry.probes = []
        }
        entry.retryAt = nil
        entry.asked = [source]
        entry.requested = true
        holders[name] = entry
        return enqueue([[request]], to: source)
    }

    /// A push/pull found these newer at `address`: fetch the names `policy` is configured for
    /// that are not already under way nor backing off.
    public mutating func wanted(
        _ summaries: [VersionSummary], from address: PeerAddress, policy: FilePolicy, now: Int64
    ) -> [Step] {
        var requests: [Request] = []
        var seen: Set<FileName> = []
        for summary in summaries
        where policy.allowedSigners[summary.name] != nil && fetching[summary.name] == nil
            && !isBackingOff(summary.name, timestamp: summary.timestamp, now: now) && seen.insert(summary.name).inserted
        {
            requests.append(Request(name: summary.name, expected: nil))
        }
        guard !requests.isEmpty else { return [] }
        return enqueue(Self.batches(requests), to: address)
    }

    /// The next unanswered request of stream `id` ended.
    public mutating func answered(_ id: Int, _ outcome: Outcome, now: Int64) -> [Step] {
        guard var stream = streams[id], stream.answered < stream.requests.count else { return [] }
        let request = stream.requests[stream.answered]
        stream.answered += 1
        streams[id] = stream
        var steps: [Step] = []
        var stored: FileVersion? = nil
        switch outcome {
        case .stored(let version):
            backoffs[version.name] = nil
            if let held = holders[version.name], !VersionOrder.isNewer(held.version, than: version) {
                holders[version.name] = nil
            }
            stored = version
        case .notStored:
            if let expected = request.expected { steps.append(.failed(expected)) }
        case .busy:
            if let expected = request.expected { return askNextHolder(request, expected: expected, now: now) }
        case .notHeld, .corrupt:
            if let expected = request.expected {
                forget(stream.address, asHolderOf: expected)
                return askNextHolder(request, expected: expected, now: now)
            }
        case .noSpace(let version):
            steps.append(.backingOff(version, delay: backOff(version, now: now)))
            if let expected = request.expected { steps.append(.failed(expected)) }
        }
        return steps + release(request, stored: stored)
    }

    /// Stream `id` ended (closed, cut, refused, timed out): its unanswered requests were not
    /// stored (a gossip offer's goes to the next holder of its version, if any), and the peer's
    /// next waiting stream opens. `unreachable`: nothing listened at the peer's address (the
    /// connection was refused), so it is no longer asked for those versions, as a holder that
    /// does not have them; should it come back with them, gossip or a push/pull offers them again.
    public mutating func ended(_ id: Int, now: Int64, unreachable: Bool = false) -> [Step] {
        guard let stream = streams.removeValue(forKey: id) else { return [] }
        var steps: [Step] = []
        for request in stream.requests.dropFirst(stream.answered) {
            if let expected = request.expected {
                if unreachable { forget(stream.address, asHolderOf: expected) }
                steps += askNextHolder(request, expected: expected, now: now)
            } else {
                steps += release(request, stored: nil)
            }
        }
        let address = stream.address
        let stillOpen = (openCount[address] ?? 1) - 1
        openCount[address] = stillOpen > 0 ? stillOpen : nil
        if var queued = waiting[address], !queued.isEmpty {
            let next = queued.removeFirst()
            waiting[address] = queued.isEmpty ? nil : queued
            steps.append(open(next, to: address))
        }
        return steps
    }

    // MARK: Inside

    /// `address` is no longer asked for `version` (at a retry either).
    mutating func forget(_ address: PeerAddress, asHolderOf version: FileVersion) {
        guard var entry = holders[version.name], entry.version == version else { return }
        entry.addresses.removeAll { $0 == address }
        entry.probes.removeAll { $0 == address }
        holders[version.name] = entry
    }

    mutating func enqueue(_ batches: [[Request]], to address: PeerAddress) -> [Step] {
        var steps: [Step] = []
        for batch in batches {
            for request in batch {
                fetching[request.name, default: 0] += 1
                if request.expected == nil { pulling[request.name, default: 0] += 1 }
            }
            if (openCount[address] ?? 0) < Self.streamsPerPeer {
                steps.append(open(batch, to: address))
            } else {
                waiting[address, default: []].append(batch)
            }
        }
        return steps
    }

    mutating func open(_ requests: [Request], to address: PeerAddress) -> Step {
        let id = nextID
        nextID &+= 1
        streams[id] = Stream(address: address, requests: requests)
        openCount[address, default: 0] += 1
        return .open(id: id, to: address, requests: requests)
    }

    /// `request` ended (having stored `stored`, if any). A waiting gossip offer is settled by a
    /// stored version at least as new; one still open when the last push/pull request for the
    /// name ends fails, so the core takes up the next offer.
    mutating func release(_ request: Request, stored: FileVersion?) -> [Step] {
        let name = request.name
        fetching[name] = Self.decremented(fetching[name])
        if let expected = request.expected, holders[name]?.version == expected { holders[name]?.requested = false }
        if request.expected == nil { pulling[name] = Self.decremented(pulling[name]) }
        guard let offer = waitingOffers[name] else { return [] }
        if let stored, !VersionOrder.isNewer(offer, than: stored) {
            waitingOffers[name] = nil
            return []
        }
        guard pulling[name] == nil else { return [] }
        waitingOffers[name] = nil
        return [.failed(offer)]
    }

    /// Asks again for the declined big versions whose wait is over, each from its first holder,
    /// then from the others, then from a few of `members` (the live members' addresses) that
    /// are not holders. Holders no longer among `members` (dead or gone) are forgotten first;
    /// with none left, the offer fails.
    public mutating func woke(now: Int64, members: [PeerAddress]) -> [Step] {
        var due: [FileName] = []
        for (name, entry) in holders where (entry.retryAt ?? .max) <= now { due.append(name) }
        var steps: [Step] = []
        for name in due.sorted() {
            guard var entry = holders[name] else { continue }
            entry.retryAt = nil
            entry.addresses.removeAll { !members.contains($0) }
            guard let first = entry.addresses.first else {
                holders[name] = nil
                steps.append(.failed(entry.version))
                continue
            }
            entry.asked = [first]
            entry.requested = true
            // This is retry number `maxRetries - retriesLeft` (counted from 1).
            entry.probes = Self.probes(
                members, excluding: entry.addresses, round: max(0, Self.maxRetries - entry.retriesLeft - 1))
            holders[name] = entry
            steps += enqueue([[Request(name: name, expected: entry.version)]], to: first)
        }
        return steps
    }

    /// `request` (of a gossip offer of `expected`) got no version from the member asked: the
    /// next holder not asked yet is. When all were, a big version some holder is left of is
    /// asked for again after `retryDelay` (at most `maxRetries` times in a row), and any other
    /// offer fails.
    mutating func askNextHolder(_ request: Request, expected: FileVersion, now: Int64) -> [Step] {
        let steps = release(request, stored: nil)
        if let next = nextHolder(of: expected) {
            holders[expected.name]?.requested = true
            return steps + enqueue([[request]], to: next)
        }
        guard var entry = holders[expected.name], entry.version == expected else { return steps + [.failed(expected)] }
        guard !entry.addresses.isEmpty, expected.contentLength >= Self.exclusiveUploadSize, entry.retriesLeft > 0 else {
            // No holder left to ask: nothing to remember for it either.
            if entry.addresses.isEmpty { holders[expected.name] = nil }
            return steps + [.failed(expected)]
        }
        entry.retriesLeft -= 1
        entry.retryAt = now.addingSaturated(Self.retryDelay)
        holders[expected.name] = entry
        return steps + [.wake(after: Self.retryDelay)]
    }

    /// `source` offered `version`: a holder of it from now on.
    mutating func remember(_ version: FileVersion, heldBy source: PeerAddress) {
        var entry = holders[version.name] ?? Holders(version: version)
        if entry.version != version {
            guard VersionOrder.isNewer(version, than: entry.version) else { return }
            entry = Holders(version: version)
        }
        if !entry.addresses.contains(source) {
            if entry.addresses.count >= Self.maxHolders { entry.addresses.removeFirst() }
            entry.addresses.append(source)
        }
        if holders[version.name] == nil && holders.count >= Self.maxHeldNames {
            // A name no fetch is under way or waiting for, if there is one.
            let idle = holders.firstIndex { !$0.value.requested && $0.value.retryAt == nil }
            holders.remove(at: idle ?? holders.startIndex)
        }
        holders[version.name] = entry
    }

    /// Up to `probesPerRetry` of `members` that are not `holders`: the `round`-th few, going
    /// round the list, so successive retries ask different members.
    static func probes(_ members: [PeerAddress], excluding holders: [PeerAddress], round: Int) -> [PeerAddress] {
        let others = members.filter { !holders.contains($0) }
        guard !others.isEmpty else { return [] }
        let start = round * probesPerRetry % others.count
        return (0..<min(probesPerRetry, others.count)).map { others[(start + $0) % others.count] }
    }

    /// The next holder of `version` not asked since its last offer or retry (marked asked), then
    /// the next of this retry's probes, if any.
    mutating func nextHolder(of version: FileVersion) -> PeerAddress? {
        guard var entry = holders[version.name], entry.version == version,
            let next = (entry.addresses + entry.probes).first(where: { !entry.asked.contains($0) })
        else { return nil }
        entry.asked.append(next)
        holders[version.name] = entry
        return next
    }

    static func decremented(_ count: Int?) -> Int? {
        let left = (count ?? 1) - 1
        return left > 0 ? left : nil
    }

    func isBackingOff(_ name: FileName, timestamp: Int64, now: Int64) -> Bool {
        guard let backoff = backoffs[name], backoff.timestamp == timestamp else { return false }
        return now < backoff.until
    }

    mutating func backOff(_ version: FileVersion, now: Int64) -> Int64 {
        let previous = backoffs[version.name].flatMap { $0.timestamp == version.timestamp ? $0.delay : nil }
        let delay = min(previous.map { $0.multipliedSaturated(2) } ?? Self.firstBackoff, Self.maxBackoff)
        backoffs[version.name] = Backoff(timestamp: version.timestamp, until: now.addingSaturated(delay), delay: delay)
        return delay
    }

    /// Splits requests into the streams that carry them.
    static func batches(_ requests: [Request]) -> [[Request]] {
        var batches: [[Request]] = []
        var current: [Request] = []
        var bytes = 0
        for request in requests {
            let size = SyncCodec.headerLength + 2 + request.name.value.utf8.count
            if !current.isEmpty && (current.count == maxRequestsPerStream || bytes + size > maxRequestBytesPerStream) {
                batches.append(current)
                current = []
                bytes = 0
            }
            current.append(request)
            bytes += size
        }
        if !current.isEmpty { batches.append(current) }
        return batches
    }
}
