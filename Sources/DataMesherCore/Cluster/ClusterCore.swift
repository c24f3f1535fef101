import Crypto
import Foundation

/// How a member looks from here.
public enum MemberState: UInt8, Sendable, Equatable {
    case alive = 0, suspect = 1, dead = 2, left = 3

    public var name: String {
        switch self {
        case .alive: return "alive"
        case .suspect: return "suspect"
        case .dead: return "dead"
        case .left: return "left"
        }
    }
}

/// What a core keeps of a member. Small, because a core keeps one per member and a simulator a
/// thousand cores: the announcement is 32 bytes (its body shared), and where the member's acks
/// come from is nearly always its announced address, held as a tag instead of a copy.
public struct MemberRecord: Sendable, Equatable {
    public var announcement: MemberAnnouncement {
        didSet {
            // The tag names the announced address; keep the source if the new announcement moved.
            if case .announced = source, oldValue.firstAddress != announcement.firstAddress {
                source = oldValue.firstAddress.map { .other(SourceAddress(address: $0)) } ?? .none
            }
        }
    }
    /// When the state last changed (ns, the node's clock).
    public var since: Int64
    private var source: Source
    public var state: MemberState
    /// It answered a probe at its address. Until then it is neither probed in turn, nor gossiped
    /// to, nor used for push/pull or fetches, nor relayed to others; unanswered, it is dropped.
    public var confirmed: Bool

    enum Source: Sendable {
        case none
        /// The first address it announced.
        case announced
        case other(SourceAddress)
    }

    final class SourceAddress: Sendable {
        let address: PeerAddress
        init(address: PeerAddress) { self.address = address }
    }

    public init(
        announcement: MemberAnnouncement, state: MemberState, since: Int64, lastSource: PeerAddress?,
        confirmed: Bool = true
    ) {
        self.announcement = announcement
        self.state = state
        self.since = since
        self.source = .none
        self.confirmed = confirmed
        self.lastSource = lastSource
    }

    /// Where its acks last came from; used when it announced no reachable address.
    public var lastSource: PeerAddress? {
        get {
            switch source {
            case .none: return nil
            case .announced: return announcement.firstAddress
            case .other(let other): return other.address
            }
        }
        set {
            guard let newValue else { return source = .none }
            source = newValue == announcement.firstAddress ? .announced : .other(SourceAddress(address: newValue))
        }
    }

    public var id: NodeID { announcement.id }
    public var address: PeerAddress? { announcement.firstAddress ?? lastSource }
    /// Whether `address` is one it announced or the one its acks last came from.
    func isKnown(at address: PeerAddress) -> Bool {
        announcement.addresses.contains(address) || lastSource == address
    }
    /// Confirmed and alive or suspect: probed, gossiped to, used for push/pull and fetches.
    public var isLive: Bool { confirmed && (state == .alive || state == .suspect) }

    public static func == (lhs: MemberRecord, rhs: MemberRecord) -> Bool {
        lhs.announcement == rhs.announcement && lhs.state == rhs.state && lhs.since == rhs.since
            && lhs.confirmed == rhs.confirmed && lhs.lastSource == rhs.lastSource
    }
}

/// What the shell feeds the core. Time always comes with it, as `now` to `handle`.
public enum CoreInput: Sendable {
    /// Timers: call at `nextDeadline` (or earlier; nothing happens before a deadline).
    case tick
    case packet(Packet, from: PeerAddress)
    /// A version accepted through the local API and stored: spread it.
    case localVersion(FileVersion, inline: [UInt8]?)
    /// A version from a peer that the shell stored after `.store`: relay it.
    case stored(FileVersion, inline: [UInt8]?)
    /// The shell could not store a version it was told to (fetch failed, refused).
    case storeFailed(FileVersion)
    /// The shell could not store a version for lack of room on its disk (`free` bytes free):
    /// told to members that ask, as a refusal is.
    case noRoom(FileVersion, free: UInt64)
    /// The shell refused a version it fetched (after a push/pull) or could not commit: told to
    /// members that ask, as a refusal of an offer is.
    case refusedFetched(FileVersion, Refusal)
    /// The content of a big version being fetched (`.store`) started to arrive: this node passes
    /// it on from now on, so its offer is gossiped again for the members still looking for a
    /// holder that is free.
    case receiving(FileVersion)
    /// The store forgot a name (tombstone retention passed).
    case forgotten(FileName)
    /// The store lost this version's content (found damaged): unless a newer version took its
    /// place meanwhile, it is no longer held, so a member that has it sends it again; nothing
    /// older is taken meanwhile (`FileIndex.lost`).
    case lost(FileVersion)
    /// A member list received through a push/pull exchange.
    case remoteState([MemberRecord])
    /// Graceful leave: tell the others, then stop probing.
    case leave
    /// Someone wants to know which members hold which version of a name (`file status`,
    /// `file update --wait`): ask every live member (at most every `holdingQueryInterval`).
    case askHoldings(FileName)
    /// The stream of `.streamPing(sequence, …)` completed its handshake, and the peer proved
    /// it holds the node key of `peer`.
    case streamPingAnswered(sequence: UInt32, by: NodeID)
}

/// What the core asks the shell to do.
public enum CoreDirective: Sendable, Equatable {
    /// Send a datagram to member `node` at `address` (sealing binds it to that receiver).
    case send(Packet, to: PeerAddress, node: NodeID)
    /// Store this version: with `inline` content directly (or a tombstone), otherwise fetch it
    /// over TCP from `from`, the confirmed member that offered it. Repeated for the version
    /// being fetched when another member offers it (the `Fetcher` keeps it as another holder).
    case store(FileVersion, inline: [UInt8]?, from: PeerAddress?)
    /// Run a push/pull exchange over TCP (`join`: with a bootstrap address).
    case sync(with: PeerAddress, join: Bool)
    case memberChanged(MemberRecord, previous: MemberState?)
    /// A version from the wire was refused; logged by the shell.
    case refused(FileVersion, Refusal, from: NodeID)
    /// A membership claim was dropped (unsigned, forged, implausible, over a limit); counted by
    /// the shell under `reason`.
    case droppedClaim(reason: String)
    /// The probe `sequence` of member `node` got no ack to its datagram: open a stream to
    /// `address` and report, within `timeout` ns, whether its handshake proved `node`'s key
    /// (`.streamPingAnswered`). memberlist's TCP fallback: datagrams lost on the way do not
    /// make a reachable member suspect.
    case streamPing(sequence: UInt32, to: PeerAddress, node: NodeID, timeout: Int64)
    /// A probe of `member` ended answered only over a stream: datagrams between this node and
    /// it are being lost (memberlist warns of a network that may be dropping UDP). Logged.
    case answeredOnlyOverStream(MemberRecord)
    /// An announcement signed with this node's own key, newer than its own and not its own, was
    /// heard and outbid: once after a restart with the clock set back, again and again when
    /// another process runs with the same key. Logged.
    case ownKeyElsewhere(MemberAnnouncement)
}

/// The cluster protocol as a pure state machine: SWIM membership with the Lifeguard
/// refinements (local health awareness, nacks, suspicion that shortens with independent
/// confirmations), piggybacked and eagerly pushed broadcasts, and the file index that
/// anti-entropy compares. No sockets, no clocks, no global randomness: time and a random
/// generator come with every call.
///
/// Nothing about membership is believed unproven: a member's claims about itself are signed by
/// the node key its ID is derived from; an accusation (suspect, dead) is signed by its accuser,
/// a known member, and may only name the incarnation the accused itself signed last; a new
/// member is used for nothing until it answered a probe at its address.
public struct ClusterCore: Sendable {
    public let settings: CoreSettings
    public let policy: FilePolicy
    public let key: NodeKey
    public private(set) var me: MemberAnnouncement
    public private(set) var members: [NodeID: MemberRecord] = [:]
    /// IDs of confirmed alive and suspect members, sorted; kept current by `setRecord`/`removeRecord`.
    var liveIDs: [NodeID] = []
    /// Grows with every change others could see in the member list (a member's record, this
    /// node's incarnation or departure), so a shell republishes the list only when it moved.
    public private(set) var membershipVersion: UInt64 = 0
    /// Members declared dead lately, who still get gossip for `gossipToTheDead`.
    var recentlyDead: [NodeID] = []
    /// Dead and departed members, the only ones reaping looks at.
    var departed: Set<NodeID> = []
    /// A member's incarnation and state, for the common check "is this news?".
    struct Known: Sendable {
        var incarnation: UInt64
        var state: MemberState
    }

    func known(_ id: NodeID) -> Known? {
        members[id].map { Known(incarnation: $0.announcement.incarnation, state: $0.state) }
    }

    public private(set) var files = FileIndex()
    public let bootstrap: [PeerAddress]

    var queue = BroadcastQueue()
    /// Lifeguard's local health score: 0 is healthy; each point stretches probe timing.
    public private(set) var awareness = 0
    var probe: Probe?
    var probeOrder: [NodeID] = []
    var relays: [UInt32: Relay] = [:]
    var suspicions: [NodeID: Suspicion] = [:]
    /// At most the earliest deadline of every suspicion and confirmation, so `nextDeadline` does
    /// not walk them after every packet: lowered when one is set, recomputed after each tick (a
    /// stale floor only makes a tick come early, and nothing happens before a deadline).
    var timerFloor: Int64 = .max
    /// Members announced but not confirmed yet: the ping that would confirm them.
    var confirmations: [NodeID: Confirmation] = [:]
    /// New members accepted per announcing source in the current window.
    var newMembersBySource: [String: Int] = [:]
    var newMembersWindowEnd: Int64 = 0
    /// Each confirmed member's clock minus ours (ns), from the last direct probe it answered.
    public private(set) var clockOffsets: [NodeID: Int64] = [:]
    /// Which version of each name each member says it holds (this node's own included), from
    /// their signed answers to this node's holding queries.
    public private(set) var holdings = ClaimsByName<Holding>()
    public static let maxHoldings = 65_536
    /// Names whose claims changed since the shell last took them.
    var changedHoldings: Set<FileName> = []
    /// When each name was last asked about.
    var holdingQueries: [FileName: Int64] = [:]
    /// The members that answered the last query about each name.
    public private(set) var holdingAnswers: [FileName: Set<NodeID>] = [:]
    /// This node's own signed claims, kept until what it holds changes.
    var ownClaims: [FileName: Holding] = [:]
    /// Why members refused a version newer than the one they hold (this node's own included),
    /// from their signed answers to this node's holding queries.
    public private(set) var refusals = ClaimsByName<RefusalClaim>()
    /// The version of each configured name this node refused last, when its signature verified
    /// (signed once it is first told).
    var ownRefusals: [FileName: RefusalClaim] = [:]
    /// Signature checks of refused versions, to keep their refusals (`keepOwnRefusal`).
    var refusalChecks = PerSecondBudget(perSecond: 64)
    /// Signature checks of members' claims and refusals: anyone can send 64 made-up claims a
    /// datagram about a member and a name asked about, each costing a check.
    var claimChecks = PerSecondBudget(perSecond: ClusterCore.maxClaimChecksPerSecond)
    public static let maxClaimChecksPerSecond = 1024
    static let holdingQueryInterval: Int64 = 200_000_000
    /// How many times this node tells a member it suspects so (once a probe interval).
    static let suspicionReminders = 3
    static let maxHoldingQueries = 4096
    /// Versions handed to the shell to store, so duplicates are not fetched twice at once.
    var storing: [FileName: FileVersion] = [:]
    /// Versions relayed on receipt, before they were stored (their content rode along, or is big),
    /// kept when storing fails: a version is relayed early once, however often it is offered
    /// again. (Relayed again after each failed fetch, the offer of a big version no member holds
    /// any more went round the cluster for as long as fetches failed.)
    var relayedEarly: [FileName: FileVersion] = [:]
    var nextProbe: Int64
    var nextGossip: Int64
    var nextPushPull: Int64
    /// The first push/pull was moved to a random point of its interval (at the first tick).
    var pushPullStaggered = false
    var nextJoin: Int64
    var nextReconnect: Int64
    var nextReap: Int64
    public private(set) var leaving = false
    /// Checks versions' and members' signatures; a simulator hands its cores one that remembers
    /// verdicts.
    public var verifier: any SignatureVerifier = Ed25519Verifier()

    struct Probe: Sendable {
        var sequence: UInt32
        var target: NodeID
        var startedAt: Int64
        var timeoutAt: Int64
        var endAt: Int64
        var indirectSent = false
        /// The target proved its key over a stream (`.streamPing`): not suspected even when
        /// no datagram comes back.
        var streamAnswered = false
        /// The members asked to ping the target for us: the only ones whose relayed ack counts.
        var helpers: [NodeID] = []
        var expectedNacks = 0
        var nacks = 0
    }

    struct Relay: Sendable {
        var requester: PeerAddress
        var requesterID: NodeID
        var requesterSequence: UInt32
        var target: NodeID
        var deadline: Int64
    }

    struct Confirmation: Sendable {
        /// The sequence of the last ping sent (nil before the first).
        var sequence: UInt32?
        /// When the next ping goes out.
        var next: Int64
        /// When the member is dropped if it never answered.
        var expires: Int64
    }

    struct Suspicion: Sendable {
        var incarnation: UInt64
        /// This node's own accusation, when its probe started the suspicion: told to the member
        /// itself again at `next`, `left` more times, so that one lost datagram does not leave
        /// it unable to refute.
        var reminder: (accusation: Accusation, next: Int64, left: Int)?
        var start: Int64
        private(set) var confirmations: Set<NodeID>
        var minimum: Int64
        var maximum: Int64
        /// Independent confirmations that bring the timeout down to `minimum`.
        var expected: Int
        /// When the member is declared dead; moves with every new confirmation.
        private(set) var deadline: Int64

        init(incarnation: UInt64, start: Int64, from: NodeID, minimum: Int64, maximum: Int64, expected: Int) {
            self.incarnation = incarnation
            self.start = start
            self.confirmations = [from]
            self.minimum = minimum
            self.maximum = maximum
            self.expected = expected
            self.deadline = 0
            updateDeadline()
        }

        /// Counts `from` as a confirmation; false if it had confirmed before.
        mutating func confirm(_ from: NodeID) -> Bool {
            guard confirmations.insert(from).inserted else { return false }
            updateDeadline()
            return true
        }

        mutating func updateDeadline() {
            deadline = start.addingSaturated(
                ClusterCore.suspicionTimeout(
                    confirmations: confirmations.count - 1, expected: expected, minimum: minimum, maximum: maximum))
        }
    }

    /// memberlist's remainingSuspicionTime: the timeout falls from `maximum` to `minimum` on a
    /// log scale as independent confirmations arrive (the first suspector is not counted).
    public static func suspicionTimeout(confirmations: Int, expected: Int, minimum: Int64, maximum: Int64) -> Int64 {
        let fraction = expected > 0 ? log(Double(max(0, confirmations)) + 1) / log(Double(expected) + 1) : 1
        return Int64(max(Double(minimum), Double(maximum) - Double(maximum - minimum) * min(1, fraction)))
    }

    /// The highest incarnation believed at `now`: a node starts at its start time in seconds and
    /// adds one per refutation, so anything far beyond the clock is forged or corrupt. Keeps the
    /// counter forever out of reach of its end, where a node could no longer refute.
    public static func maxPlausibleIncarnation(now: Int64) -> UInt64 {
        UInt64(max(0, now / 1_000_000_000)) &+ (1 << 40)
    }

    public init(
        key: NodeKey, name: String, addresses: [PeerAddress], incarnation: UInt64, settings: CoreSettings,
        policy: FilePolicy, bootstrap: [PeerAddress], now: Int64
    ) {
        self.key = key
        self.me = MemberAnnouncement.signed(by: key, name: name, incarnation: incarnation, addresses: addresses)
        self.settings = settings
        self.policy = policy
        self.bootstrap = bootstrap.filter { !addresses.contains($0) }
        nextProbe = now.addingSaturated(settings.probeInterval)
        nextGossip = now.addingSaturated(settings.gossipInterval)
        nextPushPull = now.addingSaturated(settings.pushPullInterval)
        nextJoin = now
        nextReconnect = now.addingSaturated(settings.joinInterval)
        nextReap = now.addingSaturated(settings.probeInterval)
    }

    // MARK: Queries

    /// Every change of a member goes through here, so `liveIDs` stays exact.
    mutating func setRecord(_ record: MemberRecord) {
        membershipVersion &+= 1
        let isLive = record.isLive
        var low = 0
        var high = liveIDs.count
        while low < high {
            let middle = (low + high) / 2
            if liveIDs[middle] < record.id { low = middle + 1 } else { high = middle }
        }
        let index = low
        let present = index < liveIDs.count && liveIDs[index] == record.id
        if isLive && !present { liveIDs.insert(record.id, at: index) }
        if !isLive && present { liveIDs.remove(at: index) }
        if record.state == .dead && members[record.id]?.state != .dead { recentlyDead.append(record.id) }
        if record.state == .dead || record.state == .left {
            departed.insert(record.id)
        } else {
            departed.remove(record.id)
        }
        members[record.id] = record
    }

    mutating func removeRecord(_ id: NodeID) {
        membershipVersion &+= 1
        changedHoldings.formUnion(holdings.forget(id))
        changedHoldings.formUnion(refusals.forget(id))
        members[id] = nil
        departed.remove(id)
        endConfirmation(id)
        clockOffsets[id] = nil
        liveIDs.removeAll { $0 == id }
    }

    /// Forgets the longest-departed quarter of the departed members (at least one), before their
    /// `deadReap`: one sort for many new members while the table is full.
    mutating func evictDeparted() {
        let oldest = departed.compactMap { members[$0] }.sorted { ($0.since, $0.id) < ($1.since, $1.id) }
        for record in oldest.prefix(max(1, oldest.count / 4)) { removeRecord(record.id) }
    }

    /// The earliest time at which `tick` has work to do.
    public var nextDeadline: Int64 {
        var deadline = min(nextGossip, nextPushPull, nextReap, nextReconnect)
        // The next probe starts only once the current one is over.
        if probe == nil && !leaving { deadline = min(deadline, nextProbe) }
        if liveIDs.isEmpty && !bootstrap.isEmpty { deadline = min(deadline, nextJoin) }
        if let probe { deadline = min(deadline, probe.indirectSent ? probe.endAt : probe.timeoutAt) }
        for relay in relays.values { deadline = min(deadline, relay.deadline) }
        return min(deadline, timerFloor)
    }

    /// Seeds the index with what the store holds at start, and with the versions whose content
    /// it found missing (`FileIndex.lost`).
    public mutating func load(_ versions: [FileVersion], lost: [FileVersion] = []) {
        files.set(versions)
        for version in lost { files.lose(version) }
    }

    /// This node and the confirmed members, as others should see them, for push/pull.
    public var localState: [MemberRecord] {
        // One pass over the table, then an order by ID over that copy: cheaper than sorting the
        // records themselves, and than looking each one up again in a table not in the cache.
        let records = members.values.filter(\.confirmed)
        let order = records.indices.sorted { records[$0].id < records[$1].id }
        var out = [MemberRecord(announcement: me, state: leaving ? .left : .alive, since: 0, lastSource: nil)]
        out.reserveCapacity(records.count + 1)
        for index in order { out.append(records[index]) }
        return out
    }

    /// The addresses of the live members other than this node, in the order of their IDs.
    public var liveMemberAddresses: [PeerAddress] { localState.dropFirst().filter(\.isLive).compactMap(\.address) }

    /// How many members are announced but not confirmed yet.
    public var unconfirmedCount: Int { confirmations.count }
    /// Gossip items waiting in the broadcast queue.
    public var queuedGossip: Int { queue.count }

    /// The median of the confirmed members' clock offsets (their clock minus ours, ns); nil
    /// while no member answered a direct probe.
    public var medianClockOffset: Int64? {
        let offsets = liveIDs.compactMap { clockOffsets[$0] }.sorted()
        guard !offsets.isEmpty else { return nil }
        let middle = offsets.count / 2
        return offsets.count % 2 == 1
            ? offsets[middle] : offsets[middle - 1] / 2 + offsets[middle] / 2
    }

    // MARK: Input

    public mutating func handle(_ input: CoreInput, now: Int64, rng: inout some RandomNumberGenerator)
        -> [CoreDirective]
    {
        // The caller's generator is of a type from another module, so everything below would run
        // as unspecialized generic code; behind one concrete type it is compiled for that type.
        withUnsafeMutablePointer(to: &rng) { generator in
            var random = CoreRandom { generator.pointee.next() }
            return handle(input, now: now, random: &random)
        }
    }

    mutating func handle(_ input: CoreInput, now: Int64, random rng: inout CoreRandom) -> [CoreDirective] {
        var out: [CoreDirective] = []
        switch input {
        case .tick:
            tick(now: now, rng: &rng, into: &out)
            timerFloor = min(
                suspicions.values.lazy.map { min($0.deadline, $0.reminder?.next ?? .max) }.min() ?? .max,
                confirmations.values.lazy.map(\.next).min() ?? .max)
        case .packet(let packet, let source):
            receive(packet, from: source, now: now, rng: &rng, into: &out)
        case .localVersion(let version, let inline):
            files.set(version)
            spread(.file(version, inline: inline), now: now, rng: &rng, into: &out)
        case .stored(let version, let inline):
            storing[version.name] = nil
            let relayed = relayedEarly.removeValue(forKey: version.name) == version
            if let held = files[version.name], !VersionOrder.isNewer(version, than: held) { break }
            files.set(version)
            // Relay at once as well (unless that was done on receipt): spread takes hops ×
            // latency, not hops × gossip rounds.
            if !relayed { spread(.file(version, inline: inline), now: now, rng: &rng, into: &out) }
        case .receiving(let version):
            if storing[version.name] == version { spread(.file(version, inline: nil), now: now, rng: &rng, into: &out) }
        case .storeFailed(let version):
            if storing[version.name] == version { storing[version.name] = nil }
        case .noRoom(let version, let free):
            if policy.allowedSigners[version.name] != nil {
                keepOwnRefusal(RefusalClaim(noRoomFor: version, free: free, holder: me.id), of: version, now: now)
            }
        case .refusedFetched(let version, let refusal):
            if policy.allowedSigners[version.name] != nil,
                let claim = RefusalClaim(refusing: version, for: refusal, holder: me.id)
            {
                keepOwnRefusal(claim, of: version, now: now)
            }
        case .forgotten(let name):
            files.remove(name)
        case .lost(let version):
            files.lose(version)
        case .remoteState(let records):
            // Like memberlist, what is new to us is re-broadcast, also when learned by push/pull:
            // nodes that joined earlier may not know it yet, and gossip alone can miss them.
            for record in records { merge(record, now: now, rng: &rng, into: &out) }
        case .askHoldings(let name):
            askHoldings(name, now: now, into: &out)
        case .streamPingAnswered(let sequence, let peer):
            if var current = probe, current.sequence == sequence, current.target == peer {
                current.streamAnswered = true
                probe = current
            }
        case .leave:
            leaving = true
            membershipVersion &+= 1
            let item = GossipItem.dead(Accusation.signed(id: me.id, incarnation: me.incarnation, dead: true, by: key))
            queue.enqueue(item)
            for (id, address) in pickLive(settings.gossipNodes + 2, rng: &rng) {
                out.append(.send(Packet(sender: me.id, message: .gossip, items: [item]), to: address, node: id))
            }
        }
        return out
    }

    /// Queues an item for piggybacking and pushes it to `gossipNodes` random members now.
    mutating func spread(
        _ item: GossipItem, now: Int64, rng: inout some RandomNumberGenerator, into out: inout [CoreDirective]
    ) {
        let encoded = WireCodec.encode(item)
        for (id, address) in pickLive(settings.gossipNodes, rng: &rng) {
            out.append(.send(compose(.gossip, now: now, first: item, encoded: encoded), to: address, node: id))
        }
        queue.enqueue(item)
        // A second wave soon: a one-shot push with fanout 3 misses about e⁻³ of the members,
        // who would otherwise wait a whole gossip interval.
        nextGossip = min(nextGossip, now.addingSaturated(settings.gossipInterval / 10))
    }

    // MARK: Timers

    mutating func tick(now: Int64, rng: inout some RandomNumberGenerator, into out: inout [CoreDirective]) {
        let scale = Int64(awareness + 1)
        // The first push/pull at a random point of its interval (memberlist's stagger): cores
        // started together would otherwise run every push/pull in the same instant, one interval
        // apart, with no anti-entropy anywhere in the cluster in between.
        if !pushPullStaggered {
            pushPullStaggered = true
            if settings.pushPullInterval > 0 {
                let stagger = Int64.random(in: 1...settings.pushPullInterval, using: &rng)
                nextPushPull = min(nextPushPull, now.addingSaturated(stagger))
            }
        }
        // Relays that saw no ack answer their requester with a nack. (What is due is handled in
        // a fixed order: dictionary order differs between processes, and a replay must not.)
        for sequence in ClusterCore.due(relays, now: now, deadline: { $0.deadline }) {
            guard let relay = relays.removeValue(forKey: sequence) else { continue }
            out.append(
                .send(
                    Packet(sender: me.id, message: .nack(sequence: relay.requesterSequence)), to: relay.requester,
                    node: relay.requesterID))
        }
        // The running probe: indirect checks after the timeout, suspicion at the end.
        if var current = probe {
            if !current.indirectSent && current.timeoutAt <= now {
                current.indirectSent = true
                if let target = members[current.target], let address = target.address {
                    let helpers = pickLive(settings.indirectChecks, excluding: current.target, rng: &rng)
                    for (helper, helperAddress) in helpers {
                        out.append(
                            .send(
                                Packet(
                                    sender: me.id,
                                    message: .pingRequest(
                                        sequence: current.sequence, target: current.target, address: address)),
                                to: helperAddress, node: helper))
                    }
                    current.expectedNacks = helpers.count
                    current.helpers = helpers.map(\.0)
                    out.append(
                        .streamPing(
                            sequence: current.sequence, to: address, node: current.target,
                            timeout: current.endAt.subtractingSaturated(now)))
                }
                probe = current
            }
            if current.indirectSent && current.endAt <= now {
                probe = nil
                // Lifeguard: missing nacks mean our own network may be the problem.
                let delta = current.expectedNacks > 0 ? max(0, current.expectedNacks - current.nacks) : 1
                adjustAwareness(delta)
                if let target = members[current.target], current.streamAnswered {
                    // A target that answered over a stream is reachable: the datagrams were lost.
                    out.append(.answeredOnlyOverStream(target))
                } else if let target = members[current.target], target.state == .alive || target.state == .suspect {
                    // Suspected already by others, this node's own failed probe is one more
                    // independent confirmation, and its accusation is gossiped so the others count
                    // it too (as memberlist's suspectNode): without it a suspicion heard quickly
                    // from one accuser would run to its longest timeout.
                    let accusation = Accusation.signed(
                        id: current.target, incarnation: target.announcement.incarnation, dead: false, by: key)
                    suspect(accusation, now: now, into: &out)
                    if target.state == .alive {
                        // Due at once: the reminders below run in this same tick.
                        suspicions[current.target]?.reminder = (accusation, now, ClusterCore.suspicionReminders)
                    }
                }
            }
        }
        // Accusations this node made, told to the accused member itself (Lifeguard's buddy
        // system, direct): gossip reaches it only through members that trust this node already,
        // and an accusation it never hears it cannot refute. This node's announcement rides
        // along, so the member can check the signature even if it has not heard of this node.
        for id in ClusterCore.due(suspicions, now: now, deadline: { $0.reminder?.next ?? .max }) {
            guard let reminder = suspicions[id]?.reminder, let address = members[id]?.address else { continue }
            let items: [GossipItem] = [.alive(me), .suspect(reminder.accusation)]
            out.append(.send(Packet(sender: me.id, message: .gossip, items: items), to: address, node: id))
            let next = now.addingSaturated(settings.probeInterval)
            suspicions[id]?.reminder = reminder.left > 1 ? (reminder.accusation, next, reminder.left - 1) : nil
        }
        // Suspicions that ran out: the member is dead.
        for id in ClusterCore.due(suspicions, now: now, deadline: { $0.deadline }) {
            guard let suspicion = suspicions.removeValue(forKey: id), var record = members[id],
                record.state == .suspect,
                record.announcement.incarnation == suspicion.incarnation
            else { continue }
            let previous = record.state
            record.state = .dead
            record.since = now
            setRecord(record)
            queue.enqueue(.dead(Accusation.signed(id: id, incarnation: suspicion.incarnation, dead: true, by: key)))
            out.append(.memberChanged(record, previous: previous))
        }
        // New members: ping until they answer; drop those that never do.
        for id in ClusterCore.due(confirmations, now: now, deadline: { $0.next }) {
            guard var confirmation = confirmations[id], let record = members[id] else { continue }
            if confirmation.expires <= now {
                removeRecord(id)
                out.append(.droppedClaim(reason: "unconfirmed"))
                continue
            }
            let sequence = UInt32(truncatingIfNeeded: rng.next())
            confirmation.sequence = sequence
            confirmation.next = min(now.addingSaturated(settings.confirmationRetry), confirmation.expires)
            confirmations[id] = confirmation
            if let address = record.address {
                out.append(
                    .send(Packet(sender: me.id, message: .ping(sequence: sequence, target: id)), to: address, node: id))
            }
        }
        if probe == nil && nextProbe <= now && !leaving {
            startProbe(now: now, rng: &rng, into: &out)
            nextProbe = now.addingSaturated(settings.probeInterval * scale)
        }
        if nextGossip <= now {
            nextGossip = now.addingSaturated(settings.gossipInterval)
            let targets = gossipTargets(now: now, rng: &rng)
            for (id, address) in targets {
                let gossip = compose(.gossip, now: now)
                guard gossip.itemCount > 0 else { break }
                out.append(.send(gossip, to: address, node: id))
            }
        }
        if nextPushPull <= now {
            nextPushPull = now.addingSaturated(settings.pushPullInterval(members: liveIDs.count + 1))
            if let (_, address) = pickLive(1, rng: &rng).first {
                out.append(.sync(with: address, join: false))
            }
        }
        if liveIDs.isEmpty && !bootstrap.isEmpty && nextJoin <= now && !leaving {
            nextJoin = now.addingSaturated(settings.joinInterval)
            for address in bootstrap { out.append(.sync(with: address, join: true)) }
        }
        // Reconnect: a member declared dead may be alive behind a healed partition.
        if nextReconnect <= now && !leaving {
            nextReconnect = now.addingSaturated(settings.joinInterval)
            let failed = departed.compactMap { members[$0] }.filter { $0.state == .dead }.sorted { $0.id < $1.id }
            if let peer = pick(1, from: failed, rng: &rng).first, let address = peer.address {
                out.append(.sync(with: address, join: false))
            }
        }
        if nextReap <= now {
            nextReap = now.addingSaturated(settings.probeInterval)
            for id in departed.sorted() {
                if let record = members[id], now.subtractingSaturated(record.since) > settings.deadReap {
                    removeRecord(id)
                }
            }
        }
    }

    /// The keys of `table` whose deadline has come, sorted.
    static func due<Key: Comparable, Value>(_ table: [Key: Value], now: Int64, deadline: (Value) -> Int64) -> [Key] {
        var keys: [Key] = []
        for (key, value) in table where deadline(value) <= now { keys.append(key) }
        if keys.count > 1 { keys.sort() }
        return keys
    }

    mutating func startProbe(now: Int64, rng: inout some RandomNumberGenerator, into out: inout [CoreDirective]) {
        guard !liveIDs.isEmpty else { return }
        // Round-robin over a shuffled order, reshuffled each pass (SWIM's time-bounded completeness).
        while let last = probeOrder.last, members[last]?.isLive != true { probeOrder.removeLast() }
        if probeOrder.isEmpty { probeOrder = liveIDs.shuffled(using: &rng) }
        let target = probeOrder.removeLast()
        guard let record = members[target], let address = record.address else { return }
        // Random, so that an ack cannot be forged by guessing the next number.
        let sequence = UInt32(truncatingIfNeeded: rng.next())
        let scale = Int64(awareness + 1)
        probe = Probe(
            sequence: sequence, target: target, startedAt: now,
            timeoutAt: now.addingSaturated(settings.probeTimeout * scale),
            endAt: now.addingSaturated(settings.probeInterval * scale))
        // Lifeguard's buddy system: a suspect learns of its suspicion from the ping itself and
        // can refute at once, instead of waiting for the gossip to reach it.
        var suspicion: GossipItem? = nil
        if record.state == .suspect {
            suspicion = .suspect(
                Accusation.signed(id: target, incarnation: record.announcement.incarnation, dead: false, by: key))
        }
        let ping = compose(.ping(sequence: sequence, target: target), now: now, first: suspicion, reserving: false)
        out.append(.send(ping, to: address, node: target))
    }

    /// `gossipNodes` random live members, and now and then one recently declared dead (so it
    /// can learn it and refute), in proportion to how many of those there are.
    mutating func gossipTargets(now: Int64, rng: inout some RandomNumberGenerator) -> [(NodeID, PeerAddress)] {
        let members = self.members
        let window = settings.gossipToTheDead
        recentlyDead.removeAll { id in
            guard let record = members[id], record.state == .dead else { return true }
            return now.subtractingSaturated(record.since) >= window
        }
        var targets = pickLive(settings.gossipNodes, rng: &rng)
        if !recentlyDead.isEmpty,
            Int.random(in: 0..<(liveIDs.count + recentlyDead.count), using: &rng) < recentlyDead.count
                * settings.gossipNodes,
            let record = members[recentlyDead[Int.random(in: 0..<recentlyDead.count, using: &rng)]],
            let address = record.address
        {
            targets.append((record.id, address))
        }
        return targets
    }

    /// A packet of this node: `first` (if any), then queued items up to the gossip budget, less
    /// the room `first` takes if `reserving`. The items' encoding travels with it, so the
    /// codec copies what the queue encoded once instead of encoding every item for every packet.
    mutating func compose(
        _ message: Packet.Message, now: Int64, first: GossipItem? = nil, encoded: [UInt8]? = nil,
        reserving: Bool = true
    ) -> Packet {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(settings.udpPayload)
        if let first { bytes += encoded ?? WireCodec.encode(first) }
        let size = members.count + 1
        var digits = 0
        var n = size
        while n > 0 {
            digits += 1
            n /= 10
        }
        let limit = settings.retransmitMult * max(1, digits)
        let taken = queue.take(
            budget: settings.udpPayload - 64 - (reserving ? bytes.count : 0), limit: limit, encodingInto: &bytes)
        return Packet(sender: me.id, message: message, encodedItems: bytes, count: taken + (first == nil ? 0 : 1))
    }

    mutating func adjustAwareness(_ delta: Int) {
        awareness = min(max(0, awareness + delta), settings.awarenessMaxMultiplier - 1)
    }

    // MARK: Packets

    mutating func receive(
        _ packet: Packet, from source: PeerAddress, now: Int64, rng: inout some RandomNumberGenerator,
        into out: inout [CoreDirective]
    ) {
        guard packet.sender != me.id else { return }
        switch packet.message {
        case .ping(let sequence, let target):
            // A ping for another ID is for a node that used to live at this address: stay silent.
            // Gossip rides only on acks to a confirmed member at an address it is known at: a
            // ping's sender and source are not proven, and a bare ack is barely larger than the
            // ping, so a forged source gets nothing amplified (an ack with broadcasts could be 20
            // times the ping).
            if target == me.id {
                let ack = Packet(sender: me.id, message: .ack(sequence: sequence, responder: me.id, clock: now))
                let known = members[packet.sender].map { $0.confirmed && $0.isKnown(at: source) } ?? false
                out.append(.send(known ? compose(ack.message, now: now) : ack, to: source, node: packet.sender))
            }
        case .pingRequest(let requesterSequence, let target, let address):
            // Only for members we know at that address, and a bounded number at once: a stranger
            // cannot make this node ping whatever it names.
            guard relays.count < settings.maxRelays, target != me.id, let record = members[target],
                record.isKnown(at: address)
            else { break }
            let sequence = UInt32(truncatingIfNeeded: rng.next())
            guard relays[sequence] == nil else { break }
            relays[sequence] = Relay(
                requester: source, requesterID: packet.sender, requesterSequence: requesterSequence, target: target,
                deadline: now.addingSaturated(settings.probeTimeout))
            out.append(
                .send(
                    Packet(sender: me.id, message: .ping(sequence: sequence, target: target)), to: address,
                    node: target))
        case .ack(let sequence, let responder, let clock):
            receiveAck(
                sequence: sequence, responder: responder, clock: clock, sender: packet.sender, source: source,
                now: now, into: &out)
        case .nack(let sequence):
            if var current = probe, current.sequence == sequence, current.helpers.contains(packet.sender) {
                current.nacks += 1
                probe = current
            }
        case .gossip:
            break
        }
        // Items are read one at a time, and an announcement this node already has (most of
        // what gossip brings) is passed over without being built.
        var reader = packet.itemReader
        for _ in 0..<packet.itemCount {
            if let (id, incarnation) = WireCodec.peekAnnouncement(reader), id != me.id,
                let status = known(id), incarnation <= status.incarnation
            {
                guard (try? WireCodec.checkItem(&reader)) != nil else { return }
                continue
            }
            guard let item = try? WireCodec.decodeItem(&reader) else { return }
            apply(item, from: packet.sender, source: source, now: now, rng: &rng, into: &out)
        }
    }

    /// An ack counts only for the member that was pinged, under the random sequence of that ping.
    mutating func receiveAck(
        sequence: UInt32, responder: NodeID, clock: Int64, sender: NodeID, source: PeerAddress, now: Int64,
        into out: inout [CoreDirective]
    ) {
        if let relay = relays[sequence] {
            // Relayed on only when it is the target's own answer.
            guard responder == relay.target, sender == relay.target else { return }
            relays[sequence] = nil
            out.append(
                .send(
                    Packet(
                        sender: me.id,
                        message: .ack(sequence: relay.requesterSequence, responder: responder, clock: clock)),
                    to: relay.requester, node: relay.requesterID))
            return
        }
        if let confirmation = confirmations[responder], confirmation.sequence == sequence, sender == responder {
            confirm(responder, source: source, now: now, into: &out)
            return
        }
        guard let current = probe, current.sequence == sequence, current.target == responder,
            sender == responder || current.helpers.contains(sender)
        else { return }
        probe = nil
        adjustAwareness(-1)
        if sender == responder, members[responder] != nil {
            // Its clock at about the middle of the round trip.
            let middle = current.startedAt.addingSaturated(now.subtractingSaturated(current.startedAt) / 2)
            clockOffsets[responder] = clock.subtractingSaturated(middle)
            if members[responder]?.lastSource != source { members[responder]?.lastSource = source }
        }
    }

    mutating func apply(
        _ item: GossipItem, from sender: NodeID, source: PeerAddress, now: Int64,
        rng: inout some RandomNumberGenerator, into out: inout [CoreDirective]
    ) {
        switch item {
        case .alive(let announcement):
            alive(announcement, source: source.host, now: now, into: &out)
        case .suspect(let accusation):
            if accusation.id == me.id && accusation.incarnation < me.incarnation && accusation.from == sender,
                let accuser = members[sender], accuser.confirmed, let address = accuser.address,
                isAuthentic(accusation, dead: false)
            {
                // The accuser itself still suspects an incarnation this node has refuted already
                // (its reminder or buddy ping): it missed the refutation, which may never reach
                // it by gossip before it declares this node dead. Told directly.
                out.append(
                    .send(Packet(sender: me.id, message: .gossip, items: [.alive(me)]), to: address, node: sender))
                return
            }
            suspect(accusation, now: now, into: &out)
        case .dead(let accusation):
            dead(accusation, now: now, into: &out)
        case .file(let version, let inline):
            offer(version, inline: inline, from: sender, now: now, rng: &rng, into: &out)
        case .holding(let holding):
            receive(holding, now: now, into: &out)
        case .holdingQuery(let name):
            answerHoldingQuery(name, from: sender, into: &out)
        case .refusal(let claim):
            receive(claim, now: now, into: &out)
        }
    }

    // MARK: Holdings

    /// Asks every live member which version of `name` it holds; their signed claims come back
    /// to this node alone. Nothing is gossiped: claims cost only when someone asks, so they do not
    /// grow with members × members × names.
    mutating func askHoldings(_ name: FileName, now: Int64, into out: inout [CoreDirective]) {
        guard policy.allowedSigners[name] != nil else { return }
        record(ownClaim(name))
        if let refusal = ownRefusal(name) {
            record(refusal)
        } else {
            forgetRefusal(of: name, by: me.id)
        }
        if let asked = holdingQueries[name], now.subtractingSaturated(asked) < ClusterCore.holdingQueryInterval {
            return
        }
        if holdingQueries.count >= ClusterCore.maxHoldingQueries {
            holdingQueries = holdingQueries.filter {
                now.subtractingSaturated($0.value) < ClusterCore.holdingQueryInterval
            }
            holdingAnswers = holdingAnswers.filter { holdingQueries[$0.key] != nil }
            guard holdingQueries.count < ClusterCore.maxHoldingQueries else { return }
        }
        holdingQueries[name] = now
        holdingAnswers[name] = []
        changedHoldings.insert(name)
        let query = Packet(sender: me.id, message: .gossip, items: [.holdingQuery(name)])
        for id in liveIDs {
            guard let address = members[id]?.address else { continue }
            out.append(.send(query, to: address, node: id))
        }
    }

    /// This node's signed claim for `name`, signed again only when what it holds changed.
    mutating func ownClaim(_ name: FileName) -> Holding {
        let held = files[name]
        if let claim = ownClaims[name], held.map(claim.holds) ?? (claim.timestamp == Holding.nothing) {
            return claim
        }
        let claim = Holding.signed(name, version: held, by: key)
        if ownClaims.count >= ClusterCore.maxHoldingQueries { ownClaims = [:] }
        ownClaims[name] = claim
        return claim
    }

    /// A confirmed live member asks which version of `name` this node holds: the answer goes to
    /// the member's own address (never to the packet's source), and only for configured names.
    mutating func answerHoldingQuery(_ name: FileName, from sender: NodeID, into out: inout [CoreDirective]) {
        guard policy.allowedSigners[name] != nil, let member = members[sender], member.isLive,
            let address = member.address
        else { return }
        // The refusal first, in a datagram of its own: the asker counts a member as answered at
        // its claim, so the refusal is there by then; and a node from before refusals were told
        // drops a datagram with an item it does not know, and still gets the claim.
        if let refusal = ownRefusal(name) {
            out.append(
                .send(Packet(sender: me.id, message: .gossip, items: [.refusal(refusal)]), to: address, node: sender))
        }
        let answer = Packet(sender: me.id, message: .gossip, items: [.holding(ownClaim(name))])
        out.append(.send(answer, to: address, node: sender))
    }

    /// This node's signed refusal of a version of `name` newer than the one it holds (signed
    /// once); nil when it refused none, or holds one as new since.
    mutating func ownRefusal(_ name: FileName) -> RefusalClaim? {
        guard var claim = ownRefusals[name] else { return nil }
        if let held = files[name], held.timestamp >= claim.timestamp {
            ownRefusals[name] = nil
            return nil
        }
        if claim.signature.isEmpty {
            claim = claim.signed(by: key)
            ownRefusals[name] = claim
        }
        return claim
    }

    /// Keeps `claim`, this node's refusal of `version` (or its lack of room for it), to tell the
    /// members that ask about its name; only of a version newer than the one held, and only when
    /// the version's signature by its signer key verifies (any sender can make up versions that
    /// fail the rules checked before the signature), within `refusalChecks`. Anyone can also
    /// sign a version with a key of their own (`signerNotAllowed`): such a refusal is kept only
    /// for a timestamp within the clock skew allowed (one far in the future would hide every
    /// later refusal), never hides the refusal of a version a configured key signed (which
    /// nobody else can make), and is replaced by one whatever their timestamps. Otherwise the
    /// newer version's refusal is kept.
    mutating func keepOwnRefusal(_ claim: RefusalClaim, of version: FileVersion, now: Int64) {
        let anyonesKey = claim.reason == .signerNotAllowed
        if let held = files[version.name], held.timestamp >= version.timestamp { return }
        if let kept = ownRefusals[version.name], files[version.name].map({ $0.timestamp < kept.timestamp }) ?? true {
            let keptAnyonesKey = kept.reason == .signerNotAllowed
            if anyonesKey && !keptAnyonesKey { return }
            if anyonesKey == keptAnyonesKey && kept.timestamp >= version.timestamp { return }
        }
        if anyonesKey && version.timestamp > FilePolicy.saturatingAdd(now, policy.maxClockSkew) { return }
        // A signature that fails under this node's own network_id is made up: neither told nor checked.
        if claim.reason == .otherNetwork && version.networkID == policy.networkID { return }
        guard refusalChecks.take(now: now), verifier.isValid(version) else { return }
        ownRefusals[version.name] = claim
    }

    mutating func forgetRefusal(of name: FileName, by id: NodeID) {
        if refusals.remove(name, by: id) { changedHoldings.insert(name) }
    }

    mutating func record(_ claim: RefusalClaim) {
        if refusals.set(claim, name: claim.name, by: claim.holder) { changedHoldings.insert(claim.name) }
    }

    mutating func record(_ holding: Holding) {
        if holdings.set(holding, name: holding.name, by: holding.holder) { changedHoldings.insert(holding.name) }
    }

    /// A member's refusal, beside its answer to a holding query: kept when the member's key
    /// signed it and it is newer than the refusal that member told before and than the version
    /// it says it holds. It is not relayed.
    mutating func receive(_ claim: RefusalClaim, now: Int64, into out: inout [CoreDirective]) {
        guard claim.holder != me.id, holdingAnswers[claim.name] != nil else { return }
        let known = refusals[claim.name]?[claim.holder]
        if known == claim { return }
        if let known, known.timestamp >= claim.timestamp { return }
        if let held = holdings[claim.name]?[claim.holder], held.timestamp >= claim.timestamp { return }
        guard isSigned(claim.signedMessage, with: claim.signature, by: claim.holder, now: now, into: &out) else {
            return
        }
        record(claim)
    }

    /// A member's answer to a holding query: kept when the member's key signed it and it is newer
    /// than what that member said before about the name. It is not relayed.
    mutating func receive(_ holding: Holding, now: Int64, into out: inout [CoreDirective]) {
        guard holding.holder != me.id, holdingAnswers[holding.name] != nil else { return }
        let known = holdings[holding.name]?[holding.holder]
        if known != holding {
            if let known, known.timestamp >= holding.timestamp { return }
            guard isSigned(holding.signedMessage, with: holding.signature, by: holding.holder, now: now, into: &out)
            else { return }
            record(holding)
            // A refusal of a version no newer than the one the member now holds is over.
            if let refused = refusals[holding.name]?[holding.holder], refused.timestamp <= holding.timestamp {
                forgetRefusal(of: holding.name, by: holding.holder)
            }
        }
        if holdingAnswers[holding.name]?.insert(holding.holder).inserted == true {
            changedHoldings.insert(holding.name)
        }
    }

    /// Whether member `id`'s key signed `message`, checked within `claimChecks` (anyone can send
    /// 64 made-up claims a datagram; a member's answer dropped meanwhile comes again with the
    /// next query).
    mutating func isSigned(
        _ message: [UInt8], with signature: [UInt8], by id: NodeID, now: Int64, into out: inout [CoreDirective]
    ) -> Bool {
        guard let key = members[id]?.announcement.publicKey else { return false }
        guard claimChecks.take(now: now) else {
            out.append(.droppedClaim(reason: "over_check_budget"))
            return false
        }
        guard verifier.isValidSignature(signature, of: message, by: key) else {
            out.append(.droppedClaim(reason: "bad_signature"))
            return false
        }
        return true
    }

    /// The names whose claims changed since the last call (for the shell to republish).
    public mutating func takeChangedHoldings() -> Set<FileName> {
        defer { changedHoldings = [] }
        return changedHoldings
    }

    /// A version heard from a peer: store it if this node is configured for it and it wins.
    /// Content that does not ride inline is fetched from the confirmed member that offered it.
    /// A version whose content rides along (or a tombstone) is relayed at once, before it is
    /// stored: everything a receiver checks (signature, rules, content hash) was checked here, so
    /// a hop costs the network, not the disk's fsyncs. So is a big one (`Fetcher.
    /// exclusiveUploadSize`), whose content this node passes on as it arrives.
    mutating func offer(
        _ version: FileVersion, inline: [UInt8]?, from sender: NodeID, now: Int64,
        rng: inout some RandomNumberGenerator, into out: inout [CoreDirective]
    ) {
        guard policy.allowedSigners[version.name] != nil else { return }  // neither stored nor relayed
        if let pending = storing[version.name], !VersionOrder.isNewer(version, than: pending) {
            // Another member offers the version being fetched: the fetcher may ask it instead
            // (`Fetcher`'s holders), if that member is one to fetch from.
            if pending == version, inline == nil, !version.isTombstone, let offerer = fetchSource(sender) {
                out.append(.store(version, inline: nil, from: offerer))
            }
            return
        }
        // Duplicates are the common case: refuse them before paying for a signature check.
        guard files.wants(version) else { return }
        let offerer = fetchSource(sender)
        guard inline != nil || version.isTombstone || offerer != nil else { return }
        if let refusal = policy.evaluate(version, current: files[version.name], now: now, verifier: verifier) {
            if case .stale = refusal { return }
            if let claim = RefusalClaim(refusing: version, for: refusal, holder: me.id) {
                keepOwnRefusal(claim, of: version, now: now)
            }
            out.append(.refused(version, refusal, from: sender))
            return
        }
        if let inline,
            inline.count != Int(clamping: version.contentLength)
                || Array(SHA256.hash(data: inline)) != version.contentSHA256
        {
            out.append(.refused(version, .contentMismatch(version.name), from: sender))
            return
        }
        storing[version.name] = version
        out.append(.store(version, inline: inline, from: offerer))
        // A big version is relayed as its fetch starts, too: this node serves it to the members
        // that ask while it arrives (and declines them when it does not get it after all).
        if inline != nil || version.isTombstone || version.contentLength >= Fetcher.exclusiveUploadSize,
            relayedEarly.updateValue(version, forKey: version.name) != version
        {
            spread(.file(version, inline: inline), now: now, rng: &rng, into: &out)
        }
    }

    /// Where to fetch content `sender` offered: its address, if it is a confirmed member that
    /// has not left.
    func fetchSource(_ sender: NodeID) -> PeerAddress? {
        members[sender].flatMap { $0.confirmed && $0.state != .left ? $0.address : nil }
    }

    // MARK: Membership rules

    /// The public key of this node or of a confirmed member, to check an accusation it signed.
    /// An unconfirmed member accuses nobody: otherwise a fresh key announced in the same datagram
    /// could accuse, and each fresh key would count as another independent confirmation.
    func publicKey(of id: NodeID) -> [UInt8]? {
        if id == me.id { return key.publicKey }
        guard let record = members[id], record.confirmed else { return nil }
        return record.announcement.publicKey
    }

    /// Checks an accusation's signature against its accuser's known key (of a confirmed member,
    /// unless `byUnconfirmed`).
    func isAuthentic(_ accusation: Accusation, dead: Bool, byUnconfirmed: Bool = false) -> Bool {
        let accuserKey =
            byUnconfirmed && accusation.from != me.id
            ? members[accusation.from]?.announcement.publicKey : publicKey(of: accusation.from)
        guard let accuserKey else { return false }
        return verifier.isValidSignature(
            accusation.signature, of: MemberClaims.accusationMessage(accusation, dead: dead), by: accuserKey)
    }

    /// A member's signed claim about itself. `source`: the host it was heard from (nil: a
    /// push/pull list), for the limit on new members per source.
    mutating func alive(
        _ announcement: MemberAnnouncement, source: String?, now: Int64, into out: inout [CoreDirective]
    ) {
        if announcement.id == me.id {
            // Our own signed claim with a newer incarnation (we restarted, and the clock went
            // back): outbid it. A forged one does not verify.
            if announcement.incarnation >= me.incarnation && announcement != me && !leaving
                && announcement.incarnation < ClusterCore.maxPlausibleIncarnation(now: now)
                && announcement.isAuthentic(verifier)
            {
                refute(announcement.incarnation)
                out.append(.ownKeyElsewhere(announcement))
            }
            return
        }
        // Most announcements are old news: look before checking a signature.
        if let status = known(announcement.id), announcement.incarnation <= status.incarnation {
            return
        }
        guard announcement.incarnation < ClusterCore.maxPlausibleIncarnation(now: now) else {
            out.append(.droppedClaim(reason: "implausible_incarnation"))
            return
        }
        if var record = members[announcement.id] {
            guard let announcement = verifier.authentic(announcement) else {
                out.append(.droppedClaim(reason: "bad_signature"))
                return
            }
            let previous = record.state
            record.announcement = announcement
            record.state = .alive
            if previous != .alive { record.since = now }
            setRecord(record)
            suspicions[announcement.id] = nil
            guard record.confirmed else { return }
            queue.enqueue(.alive(announcement))
            if previous != .alive { out.append(.memberChanged(record, previous: previous)) }
            return
        }
        // A member not seen before: it costs nothing until it answers a ping at its address. The
        // limits come before the signature check, so a flood costs lookups, not verifications.
        // At `max_members`, records of departed members make room: they are kept only so that
        // stale news of them is recognised, and a stranger could otherwise fill the table with
        // members of its own that leave at once, held for `deadReap` (a day).
        let full = members.count + 1 >= settings.maxMembers
        guard !full || !departed.isEmpty, confirmations.count < settings.maxUnconfirmed else {
            out.append(.droppedClaim(reason: "member_limit"))
            return
        }
        if let source {
            // A clock stepped back starts a new window too.
            if now >= newMembersWindowEnd || newMembersWindowEnd.subtractingSaturated(now) > settings.newMemberWindow {
                newMembersBySource.removeAll(keepingCapacity: true)
                newMembersWindowEnd = now.addingSaturated(settings.newMemberWindow)
            }
            let count = newMembersBySource[source, default: 0]
            guard count < settings.newMembersPerSource else {
                out.append(.droppedClaim(reason: "new_member_rate"))
                return
            }
            newMembersBySource[source] = count + 1
        }
        guard let announcement = verifier.authentic(announcement) else {
            out.append(.droppedClaim(reason: "bad_signature"))
            return
        }
        if full { evictDeparted() }
        let record = MemberRecord(
            announcement: announcement, state: .alive, since: now, lastSource: nil, confirmed: false)
        setRecord(record)
        // Pinged at the next tick (at once), then every `confirmationRetry` until it answers.
        timerFloor = min(timerFloor, now)
        confirmations[announcement.id] = Confirmation(
            sequence: nil, next: now, expires: now.addingSaturated(settings.confirmationTimeout))
    }

    /// Ends `id`'s confirmation. An empty table gives its storage back: a join confirms every
    /// member at once, and a table sized for that would stay with the core.
    mutating func endConfirmation(_ id: NodeID) {
        confirmations[id] = nil
        if confirmations.isEmpty && confirmations.capacity > 64 { confirmations = [:] }
    }

    /// The member answered a ping at its address: from now on it is probed, gossiped to, used for
    /// push/pull and fetches, and its announcement is relayed.
    mutating func confirm(_ id: NodeID, source: PeerAddress, now: Int64, into out: inout [CoreDirective]) {
        endConfirmation(id)
        guard var record = members[id], !record.confirmed else { return }
        record.confirmed = true
        record.lastSource = source
        setRecord(record)
        queue.enqueue(.alive(record.announcement))
        if record.state == .alive { out.append(.memberChanged(record, previous: nil)) }
    }

    mutating func suspect(_ accusation: Accusation, now: Int64, into out: inout [CoreDirective]) {
        let id = accusation.id
        if id == me.id {
            // Refuted even when this node has not confirmed the accuser yet: a refutation only
            // raises this node's incarnation by one, while an accusation it ignored could never
            // be answered, and the accuser, once the others trust it, would have it declared
            // dead. Only the incarnation this node signed last can be accused (others accept no
            // other): one above it was never real, and following it would let a stranger push
            // the incarnation to the plausibility bound, where refutations are refused.
            if !leaving && accusation.incarnation == me.incarnation
                && accusation.incarnation < ClusterCore.maxPlausibleIncarnation(now: now)
                && isAuthentic(accusation, dead: false, byUnconfirmed: true)
            {
                refute(accusation.incarnation, awareness: members[accusation.from]?.confirmed == true)
            }
            return
        }
        // Only the incarnation the member itself signed last can be accused: an older one is
        // stale, a newer one is not known to be real.
        guard let status = known(id), accusation.incarnation == status.incarnation, status.state != .dead,
            status.state != .left, confirmations[id] == nil
        else { return }
        if status.state == .suspect {
            // In place: a copy of the suspicion would copy its set of confirmations.
            guard let index = suspicions.index(forKey: id),
                suspicions.values[index].incarnation == accusation.incarnation,
                !suspicions.values[index].confirmations.contains(accusation.from)
            else { return }
            guard isAuthentic(accusation, dead: false) else {
                out.append(.droppedClaim(reason: "bad_signature"))
                return
            }
            if suspicions.values[index].confirm(accusation.from) {
                timerFloor = min(timerFloor, suspicions.values[index].deadline)
                queue.enqueue(.suspect(accusation))
            }
            return
        }
        guard var record = members[id], record.state == .alive else { return }
        guard isAuthentic(accusation, dead: false) else {
            out.append(.droppedClaim(reason: "bad_signature"))
            return
        }
        let previous = record.state
        record.state = .suspect
        record.since = now
        setRecord(record)
        let live = liveIDs.count + 1
        let minimum = Int64(
            Double(settings.suspicionMult) * max(1, log10(Double(live))) * Double(settings.probeInterval))
        // As memberlist: expect suspicionMult - 2 confirmations, none where too few members could give them.
        let expected = live - 2 < settings.suspicionMult - 2 ? 0 : settings.suspicionMult - 2
        let suspicion = Suspicion(
            incarnation: accusation.incarnation, start: now, from: accusation.from, minimum: minimum,
            maximum: minimum.multipliedSaturated(Int64(settings.suspicionMaxTimeoutMult)), expected: expected)
        suspicions[id] = suspicion
        timerFloor = min(timerFloor, suspicion.deadline)
        queue.enqueue(.suspect(accusation))
        if record.confirmed { out.append(.memberChanged(record, previous: previous)) }
    }

    mutating func dead(_ accusation: Accusation, now: Int64, into out: inout [CoreDirective]) {
        let id = accusation.id
        if id == me.id {
            if !leaving && accusation.from != me.id && accusation.incarnation == me.incarnation
                && accusation.incarnation < ClusterCore.maxPlausibleIncarnation(now: now)
                && isAuthentic(accusation, dead: true)
            {
                refute(accusation.incarnation)
            }
            return
        }
        guard let status = known(id), accusation.incarnation == status.incarnation, status.state != .dead,
            status.state != .left, var record = members[id], record.confirmed
        else { return }
        // A departure is signed by the member itself, a death by its accuser.
        guard isAuthentic(accusation, dead: true) else {
            out.append(.droppedClaim(reason: "bad_signature"))
            return
        }
        let previous = record.state
        record.state = accusation.from == id ? .left : .dead
        record.since = now
        setRecord(record)
        suspicions[id] = nil
        endConfirmation(id)
        queue.enqueue(.dead(accusation))
        if record.confirmed { out.append(.memberChanged(record, previous: previous)) }
    }

    /// Refutation: a higher incarnation than anything said about us, signed and told to everyone.
    /// `awareness`: whether it counts as a sign of this node's own trouble (Lifeguard); not when
    /// a member not confirmed yet, perhaps a stranger, made it, or it could slow the probes down.
    mutating func refute(_ heard: UInt64, awareness: Bool = true) {
        let incarnation = max(me.incarnation, heard).addingSaturated(1)
        guard incarnation > me.incarnation else { return }
        me = MemberAnnouncement.signed(by: key, name: me.name, incarnation: incarnation, addresses: me.addresses)
        membershipVersion &+= 1
        queue.enqueue(.alive(me))
        if awareness { adjustAwareness(1) }
    }

    /// Merges one record of a peer's member list (push/pull) like the gossip it stands for.
    mutating func merge(
        _ record: MemberRecord, now: Int64, rng: inout some RandomNumberGenerator, into out: inout [CoreDirective]
    ) {
        let announcement = record.announcement
        switch record.state {
        case .alive:
            alive(announcement, source: nil, now: now, into: &out)
        case .suspect, .dead, .left:
            if announcement.id == me.id {
                // Our own signed claim at that incarnation, reported as failed: outbid it.
                if !leaving && announcement.incarnation >= me.incarnation
                    && announcement.incarnation < ClusterCore.maxPlausibleIncarnation(now: now)
                    && announcement.isAuthentic(verifier)
                {
                    refute(announcement.incarnation)
                }
                return
            }
            if known(announcement.id) == nil {
                guard record.state == .suspect else { return }  // nothing to learn about a member we never saw
                alive(announcement, source: nil, now: now, into: &out)
            }
            // Push/pull is not an independent observation: a remote failure is our own suspicion,
            // and only at the incarnation the member signed (the record carries that claim).
            guard let status = known(announcement.id), status.incarnation == announcement.incarnation,
                announcement.isAuthentic(verifier)
            else { return }
            suspect(
                Accusation.signed(id: announcement.id, incarnation: announcement.incarnation, dead: false, by: key),
                now: now, into: &out)
        }
    }

    /// Up to `count` distinct random members (a partial Fisher-Yates over the candidates).
    func pick(_ count: Int, from candidates: [MemberRecord], rng: inout some RandomNumberGenerator) -> [MemberRecord] {
        var pool = candidates
        let take = min(count, pool.count)
        for index in 0..<take { pool.swapAt(index, Int.random(in: index..<pool.count, using: &rng)) }
        return Array(pool.prefix(take))
    }

    /// Up to `count` distinct random confirmed live members other than `excluded`, with their
    /// addresses, without copying the member list (a few draws of random indexes; the lists are
    /// long, `count` is small). Members with no address are left out.
    func pickLive(_ count: Int, excluding excluded: NodeID? = nil, rng: inout some RandomNumberGenerator)
        -> [(NodeID, PeerAddress)]
    {
        let available = liveIDs.count - (excluded.map { liveIDs.contains($0) ? 1 : 0 } ?? 0)
        let wanted = min(count, available)
        guard wanted > 0 else { return [] }
        if wanted * 4 > liveIDs.count {
            return pick(wanted, from: liveIDs.filter { $0 != excluded }.compactMap { members[$0] }, rng: &rng)
                .compactMap { record in record.address.map { (record.id, $0) } }
        }
        var chosen: [Int] = []
        chosen.reserveCapacity(wanted)
        while chosen.count < wanted {
            let index = Int.random(in: 0..<liveIDs.count, using: &rng)
            if liveIDs[index] != excluded && !chosen.contains(index) { chosen.append(index) }
        }
        var targets: [(NodeID, PeerAddress)] = []
        targets.reserveCapacity(wanted)
        for index in chosen {
            if let record = members[liveIDs[index]], let address = record.address {
                targets.append((record.id, address))
            }
        }
        return targets
    }
}

/// Draws from the generator given to `ClusterCore.handle`, for the duration of that call.
struct CoreRandom: RandomNumberGenerator {
    let draw: () -> UInt64
    mutating func next() -> UInt64 { draw() }
}

extension FixedWidthInteger {
    /// `self + other`, held at the type's bounds instead of trapping.
    public func addingSaturated(_ other: Self) -> Self {
        let (sum, overflow) = addingReportingOverflow(other)
        guard overflow else { return sum }
        return other < 0 ? .min : .max
    }

    /// `self - other`, held at the type's bounds instead of trapping.
    public func subtractingSaturated(_ other: Self) -> Self {
        let (difference, overflow) = subtractingReportingOverflow(other)
        guard overflow else { return difference }
        return other < 0 ? .max : .min
    }

    /// `self * other`, held at the type's bounds instead of trapping.
    public func multipliedSaturated(_ other: Self) -> Self {
        let (product, overflow) = multipliedReportingOverflow(by: other)
        guard overflow else { return product }
        return (self < 0) != (other < 0) ? .min : .max
    }
}

/// At most `perSecond` of something each second by the caller's clock; a clock stepped back
/// starts a new second, so it never holds the budget spent.
struct PerSecondBudget: Sendable {
    let perSecond: Int
    var since: Int64 = .min
    var spent = 0

    /// Whether one more may happen now; counts it if so.
    mutating func take(now: Int64) -> Bool {
        if now < since || now.subtractingSaturated(since) >= 1_000_000_000 {
            since = now
            spent = 0
        }
        guard spent < perSecond else { return false }
        spent += 1
        return true
    }
}

/// What members said about names: one claim of each member about each name, at most
/// `ClusterCore.maxHoldings` in all.
public struct ClaimsByName<Claim: Sendable & Equatable>: Sendable {
    var byName: [FileName: [NodeID: Claim]] = [:]
    var count = 0

    public subscript(name: FileName) -> [NodeID: Claim]? { byName[name] }

    /// Keeps `claim` as what `member` says about `name`; false when it was kept already or no
    /// room is left.
    mutating func set(_ claim: Claim, name: FileName, by member: NodeID) -> Bool {
        guard let known = byName[name]?[member] else {
            guard count < ClusterCore.maxHoldings else { return false }
            count += 1
            byName[name, default: [:]][member] = claim
            return true
        }
        if known == claim { return false }
        byName[name]?[member] = claim
        return true
    }

    /// Forgets what `member` says about `name`; false when it said nothing.
    mutating func remove(_ name: FileName, by member: NodeID) -> Bool {
        guard byName[name]?.removeValue(forKey: member) != nil else { return false }
        count -= 1
        if byName[name]?.isEmpty == true { byName[name] = nil }
        return true
    }

    /// Forgets everything `member` said; returns the names it spoke of.
    mutating func forget(_ member: NodeID) -> [FileName] {
        let names = byName.keys.filter { byName[$0]?[member] != nil }
        for name in names { _ = remove(name, by: member) }
        return names
    }
}
