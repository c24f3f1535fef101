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

public struct MemberRecord: Sendable, Equatable {
    public var announcement: MemberAnnouncement
    public var state: MemberState
    /// When the state last changed (ns, the node's clock).
    public var since: Int64
    /// Where packets from it last came from; used when it announced no reachable address.
    public var lastSource: PeerAddress?

    public init(announcement: MemberAnnouncement, state: MemberState, since: Int64, lastSource: PeerAddress?) {
        self.announcement = announcement
        self.state = state
        self.since = since
        self.lastSource = lastSource
    }

    public var id: NodeID { announcement.id }
    public var address: PeerAddress? { announcement.firstAddress ?? lastSource }
}

/// What the shell feeds the core. Time always comes with it, as `now` to `handle`.
public enum MeshInput: Sendable {
    /// Timers: call at `nextDeadline` (or earlier; nothing happens before a deadline).
    case tick
    case packet(Packet, from: PeerAddress)
    /// A version accepted through the local API and stored: spread it.
    case localVersion(FileVersion, inline: [UInt8]?)
    /// A version from a peer that the shell stored after `.store`: relay it.
    case stored(FileVersion, inline: [UInt8]?)
    /// The shell could not store a version it was told to (fetch failed, refused).
    case storeFailed(FileVersion)
    /// The store forgot a name (tombstone retention passed).
    case forgotten(FileName)
    /// A member list received through a push/pull exchange.
    case remoteState([MemberRecord])
    /// Graceful leave: tell the others, then stop probing.
    case leave
}

/// What the core asks the shell to do.
public enum MeshDirective: Sendable, Equatable {
    case send(Packet, to: PeerAddress)
    /// Store this version: with `inline` content directly, otherwise fetch it over TCP from `from`.
    case store(FileVersion, inline: [UInt8]?, from: PeerAddress)
    /// Run a push/pull exchange over TCP (`join`: with a bootstrap address).
    case sync(with: PeerAddress, join: Bool)
    case memberChanged(MemberRecord, previous: MemberState?)
    /// A version from the wire was refused; logged by the shell.
    case refused(FileName, Refusal, from: NodeID)
}

/// The cluster protocol as a pure state machine: SWIM membership with the Lifeguard
/// refinements (local health awareness, nacks, suspicion that shortens with independent
/// confirmations), piggybacked and eagerly pushed broadcasts, and the file index that
/// anti-entropy compares. No sockets, no clocks, no global randomness: time and a random
/// generator come with every call.
public struct Mesh: Sendable {
    public let settings: MeshSettings
    public let policy: FilePolicy
    public private(set) var me: MemberAnnouncement
    public private(set) var members: [NodeID: MemberRecord] = [:]
    /// IDs of alive and suspect members, sorted; kept current by `setRecord`/`removeRecord`.
    var liveIDs: [NodeID] = []
    /// Grows with every change others could see in the member list (a member's record, this
    /// node's incarnation or departure), so a shell republishes the list only when it moved.
    public private(set) var membershipVersion: UInt64 = 0
    /// Members declared dead lately, who still get gossip for `gossipToTheDead`.
    var recentlyDead: [NodeID] = []
    /// Dead and departed members, the only ones reaping looks at.
    var departed: Set<NodeID> = []
    /// Each member's incarnation and state, for the common check "is this news?" without
    /// copying its record (kept with `members` by `setRecord`/`removeRecord`).
    var known: [NodeID: Known] = [:]

    struct Known: Sendable {
        var incarnation: UInt64
        var state: MemberState
    }
    public private(set) var files = FileIndex()
    public let bootstrap: [PeerAddress]

    var queue = BroadcastQueue()
    var sequence: UInt32 = 0
    /// Lifeguard's local health score: 0 is healthy; each point stretches probe timing.
    public private(set) var awareness = 0
    var probe: Probe?
    var probeOrder: [NodeID] = []
    var relays: [UInt32: Relay] = [:]
    var suspicions: [NodeID: Suspicion] = [:]
    /// Versions handed to the shell to store, so duplicates are not fetched twice at once.
    var storing: [FileName: FileVersion] = [:]
    var nextProbe: Int64
    var nextGossip: Int64
    var nextPushPull: Int64
    var nextJoin: Int64
    var nextReconnect: Int64
    var nextReap: Int64
    public private(set) var leaving = false
    /// Shared signature verdicts (a simulator's many cores); nil verifies every offered version.
    public var signatureCache: SignatureCache?

    struct Probe: Sendable {
        var sequence: UInt32
        var target: NodeID
        var timeoutAt: Int64
        var endAt: Int64
        var indirectSent = false
        var expectedNacks = 0
        var nacks = 0
    }

    struct Relay: Sendable {
        var requester: PeerAddress
        var requesterSequence: UInt32
        var deadline: Int64
    }

    struct Suspicion: Sendable {
        var incarnation: UInt64
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
            deadline =
                start
                + Mesh.suspicionTimeout(
                    confirmations: confirmations.count - 1, expected: expected, minimum: minimum, maximum: maximum)
        }
    }

    /// memberlist's remainingSuspicionTime: the timeout falls from `maximum` to `minimum` on a
    /// log scale as independent confirmations arrive (the first suspector is not counted).
    public static func suspicionTimeout(confirmations: Int, expected: Int, minimum: Int64, maximum: Int64) -> Int64 {
        let fraction = expected > 0 ? log(Double(max(0, confirmations)) + 1) / log(Double(expected) + 1) : 1
        return Int64(max(Double(minimum), Double(maximum) - Double(maximum - minimum) * min(1, fraction)))
    }

    public init(
        me: MemberAnnouncement, settings: MeshSettings, policy: FilePolicy, bootstrap: [PeerAddress], now: Int64
    ) {
        self.me = me
        self.settings = settings
        self.policy = policy
        self.bootstrap = bootstrap.filter { !me.addresses.contains($0) }
        nextProbe = now + settings.probeInterval
        nextGossip = now + settings.gossipInterval
        nextPushPull = now + settings.pushPullInterval
        nextJoin = now
        nextReconnect = now + settings.joinInterval
        nextReap = now + settings.probeInterval
    }

    // MARK: Queries

    /// Every change of a member goes through here, so `liveIDs` stays exact.
    mutating func setRecord(_ record: MemberRecord) {
        membershipVersion &+= 1
        let isLive = record.state == .alive || record.state == .suspect
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
        known[record.id] = Known(incarnation: record.announcement.incarnation, state: record.state)
        members[record.id] = record
    }

    mutating func removeRecord(_ id: NodeID) {
        membershipVersion &+= 1
        members[id] = nil
        departed.remove(id)
        known[id] = nil
        liveIDs.removeAll { $0 == id }
    }

    /// The earliest time at which `tick` has work to do.
    public var nextDeadline: Int64 {
        var deadline = min(nextGossip, nextPushPull, nextReap, nextReconnect)
        // The next probe starts only once the current one is over.
        if probe == nil && !leaving { deadline = min(deadline, nextProbe) }
        if liveIDs.isEmpty && !bootstrap.isEmpty { deadline = min(deadline, nextJoin) }
        if let probe { deadline = min(deadline, probe.indirectSent ? probe.endAt : probe.timeoutAt) }
        for relay in relays.values { deadline = min(deadline, relay.deadline) }
        for suspicion in suspicions.values {
            deadline = min(deadline, suspicion.deadline)
        }
        return deadline
    }

    /// Seeds the index with what the store holds at start.
    public mutating func load(_ versions: [FileVersion]) {
        files.set(versions)
    }

    /// This node as others should see it, for push/pull.
    public var localState: [MemberRecord] {
        // One pass over the table, then an order by ID over that copy: cheaper than sorting the
        // records themselves, and than looking each one up again in a table not in the cache.
        let records = Array(members.values)
        let order = records.indices.sorted { records[$0].id < records[$1].id }
        var out = [MemberRecord(announcement: me, state: leaving ? .left : .alive, since: 0, lastSource: nil)]
        out.reserveCapacity(records.count + 1)
        for index in order { out.append(records[index]) }
        return out
    }

    // MARK: Input

    public mutating func handle(_ input: MeshInput, now: Int64, rng: inout some RandomNumberGenerator)
        -> [MeshDirective]
    {
        // The caller's generator is of a type from another module, so everything below would run
        // as unspecialized generic code; behind one concrete type it is compiled for that type.
        withUnsafeMutablePointer(to: &rng) { generator in
            var random = MeshRandom { generator.pointee.next() }
            return handle(input, now: now, random: &random)
        }
    }

    mutating func handle(_ input: MeshInput, now: Int64, random rng: inout MeshRandom) -> [MeshDirective] {
        var out: [MeshDirective] = []
        switch input {
        case .tick:
            tick(now: now, rng: &rng, into: &out)
        case .packet(let packet, let source):
            receive(packet, from: source, now: now, rng: &rng, into: &out)
        case .localVersion(let version, let inline):
            files.set(version)
            spread(.file(version, inline: inline), now: now, rng: &rng, into: &out)
        case .stored(let version, let inline):
            storing[version.name] = nil
            if let held = files[version.name], !VersionOrder.isNewer(version, than: held) { break }
            files.set(version)
            // Relay at once as well: spread takes hops × latency, not hops × gossip rounds.
            spread(.file(version, inline: inline), now: now, rng: &rng, into: &out)
        case .storeFailed(let version):
            if storing[version.name] == version { storing[version.name] = nil }
        case .forgotten(let name):
            files.remove(name)
        case .remoteState(let records):
            // Like memberlist, what is new to us is re-broadcast, also when learned by push/pull:
            // nodes that joined earlier may not know it yet, and gossip alone can miss them.
            for record in records { merge(record, now: now, into: &out) }
        case .leave:
            leaving = true
            membershipVersion &+= 1
            let item = GossipItem.dead(me.id, incarnation: me.incarnation, from: me.id)
            queue.enqueue(item)
            for member in pickLive(settings.gossipNodes + 2, rng: &rng) {
                guard let address = member else { continue }
                out.append(.send(Packet(sender: me.id, message: .gossip, items: [item]), to: address))
            }
        }
        return out
    }

    /// Queues an item for piggybacking and pushes it to `gossipNodes` random members now.
    mutating func spread(
        _ item: GossipItem, now: Int64, rng: inout some RandomNumberGenerator, into out: inout [MeshDirective]
    ) {
        let encoded = WireCodec.encode(item)
        for member in pickLive(settings.gossipNodes, rng: &rng) {
            guard let address = member else { continue }
            out.append(.send(compose(.gossip, now: now, first: item, encoded: encoded), to: address))
        }
        queue.enqueue(item)
        // A second wave soon: a one-shot push with fanout 3 misses about e⁻³ of the members,
        // who would otherwise wait a whole gossip interval.
        nextGossip = min(nextGossip, now + settings.gossipInterval / 10)
    }

    // MARK: Timers

    mutating func tick(now: Int64, rng: inout some RandomNumberGenerator, into out: inout [MeshDirective]) {
        let scale = Int64(awareness + 1)
        // Relays that saw no ack answer their requester with a nack. (What is due is handled in
        // a fixed order: dictionary order differs between processes, and a replay must not.)
        for sequence in Mesh.due(relays, now: now, deadline: { $0.deadline }) {
            guard let relay = relays.removeValue(forKey: sequence) else { continue }
            out.append(
                .send(Packet(sender: me.id, message: .nack(sequence: relay.requesterSequence)), to: relay.requester))
        }
        // The running probe: indirect checks after the timeout, suspicion at the end.
        if var current = probe {
            if !current.indirectSent && current.timeoutAt <= now {
                current.indirectSent = true
                if let target = members[current.target], let address = target.address {
                    let helpers = pickLive(settings.indirectChecks, excluding: current.target, rng: &rng)
                    for helper in helpers {
                        guard let helperAddress = helper else { continue }
                        out.append(
                            .send(
                                Packet(
                                    sender: me.id,
                                    message: .pingRequest(
                                        sequence: current.sequence, target: current.target, address: address)),
                                to: helperAddress))
                    }
                    current.expectedNacks = helpers.count
                }
                probe = current
            }
            if current.indirectSent && current.endAt <= now {
                probe = nil
                // Lifeguard: missing nacks mean our own network may be the problem.
                let delta = current.expectedNacks > 0 ? max(0, current.expectedNacks - current.nacks) : 1
                adjustAwareness(delta)
                if let target = members[current.target], target.state == .alive {
                    suspect(
                        current.target, incarnation: target.announcement.incarnation, from: me.id, now: now, into: &out)
                }
            }
        }
        // Suspicions that ran out: the member is dead.
        for id in Mesh.due(suspicions, now: now, deadline: { $0.deadline }) {
            guard let suspicion = suspicions.removeValue(forKey: id), var record = members[id],
                record.state == .suspect,
                record.announcement.incarnation == suspicion.incarnation
            else { continue }
            let previous = record.state
            record.state = .dead
            record.since = now
            setRecord(record)
            queue.enqueue(.dead(id, incarnation: suspicion.incarnation, from: me.id))
            out.append(.memberChanged(record, previous: previous))
        }
        if probe == nil && nextProbe <= now && !leaving {
            startProbe(now: now, rng: &rng, into: &out)
            nextProbe = now + settings.probeInterval * scale
        }
        if nextGossip <= now {
            nextGossip = now + settings.gossipInterval
            let targets = gossipTargets(now: now, rng: &rng)
            for target in targets {
                let gossip = compose(.gossip, now: now)
                guard gossip.itemCount > 0 else { break }
                guard let address = target else { continue }
                out.append(.send(gossip, to: address))
            }
        }
        if nextPushPull <= now {
            nextPushPull = now + settings.pushPullInterval
            if let peer = pickLive(1, rng: &rng).first, let address = peer {
                out.append(.sync(with: address, join: false))
            }
        }
        if liveIDs.isEmpty && !bootstrap.isEmpty && nextJoin <= now && !leaving {
            nextJoin = now + settings.joinInterval
            for address in bootstrap { out.append(.sync(with: address, join: true)) }
        }
        // Reconnect: a member declared dead may be alive behind a healed partition.
        if nextReconnect <= now && !leaving {
            nextReconnect = now + settings.joinInterval
            let failed = departed.compactMap { members[$0] }.filter { $0.state == .dead }.sorted { $0.id < $1.id }
            if let peer = pick(1, from: failed, rng: &rng).first, let address = peer.address {
                out.append(.sync(with: address, join: false))
            }
        }
        if nextReap <= now {
            nextReap = now + settings.probeInterval
            for id in departed {
                if let record = members[id], now - record.since > settings.deadReap { removeRecord(id) }
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

    mutating func startProbe(now: Int64, rng: inout some RandomNumberGenerator, into out: inout [MeshDirective]) {
        guard !liveIDs.isEmpty else { return }
        // Round-robin over a shuffled order, reshuffled each pass (SWIM's time-bounded completeness).
        func isLive(_ id: NodeID) -> Bool { members[id].map { $0.state == .alive || $0.state == .suspect } ?? false }
        while let last = probeOrder.last, !isLive(last) { probeOrder.removeLast() }
        if probeOrder.isEmpty { probeOrder = liveIDs.shuffled(using: &rng) }
        let target = probeOrder.removeLast()
        guard let record = members[target], let address = record.address else { return }
        sequence &+= 1
        let scale = Int64(awareness + 1)
        probe = Probe(
            sequence: sequence, target: target, timeoutAt: now + settings.probeTimeout * scale,
            endAt: now + settings.probeInterval * scale)
        // Lifeguard's buddy system: a suspect learns of its suspicion from the ping itself and
        // can refute at once, instead of waiting for the gossip to reach it.
        let suspicion: GossipItem? =
            record.state == .suspect ? .suspect(target, incarnation: record.announcement.incarnation, from: me.id) : nil
        let ping = compose(.ping(sequence: sequence, target: target), now: now, first: suspicion, reserving: false)
        out.append(.send(ping, to: address))
    }

    /// `gossipNodes` random live members, and now and then one recently declared dead (so it
    /// can learn it and refute), in proportion to how many of those there are.
    mutating func gossipTargets(now: Int64, rng: inout some RandomNumberGenerator) -> [PeerAddress?] {
        recentlyDead.removeAll { id in
            guard let record = members[id], record.state == .dead else { return true }
            return now - record.since >= settings.gossipToTheDead
        }
        var targets = pickLive(settings.gossipNodes, rng: &rng)
        if !recentlyDead.isEmpty,
            Int.random(in: 0..<(liveIDs.count + recentlyDead.count), using: &rng) < recentlyDead.count
                * settings.gossipNodes,
            let record = members[recentlyDead[Int.random(in: 0..<recentlyDead.count, using: &rng)]]
        {
            targets.append(record.address)
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
        into out: inout [MeshDirective]
    ) {
        guard packet.sender != me.id else { return }
        if let index = members.index(forKey: packet.sender), members.values[index].lastSource != source {
            members.values[index].lastSource = source
        }
        switch packet.message {
        case .ping(let sequence, let target):
            // A ping for another ID is for a node that used to live at this address: stay silent.
            if target == me.id {
                out.append(.send(compose(.ack(sequence: sequence), now: now), to: source))
            }
        case .pingRequest(let requesterSequence, let target, let address):
            sequence &+= 1
            relays[sequence] = Relay(
                requester: source, requesterSequence: requesterSequence, deadline: now + settings.probeTimeout)
            out.append(.send(Packet(sender: me.id, message: .ping(sequence: sequence, target: target)), to: address))
        case .ack(let sequence):
            if let relay = relays.removeValue(forKey: sequence) {
                out.append(
                    .send(Packet(sender: me.id, message: .ack(sequence: relay.requesterSequence)), to: relay.requester))
            } else if let current = probe, current.sequence == sequence {
                probe = nil
                adjustAwareness(-1)
            }
        case .nack(let sequence):
            if var current = probe, current.sequence == sequence {
                current.nacks += 1
                probe = current
            }
        case .gossip:
            break
        }
        let items = packet.items
        for index in items.indices { apply(items[index], from: packet.sender, source: source, now: now, into: &out) }
    }

    mutating func apply(
        _ item: GossipItem, from sender: NodeID, source: PeerAddress, now: Int64, into out: inout [MeshDirective]
    ) {
        switch item {
        case .alive(let announcement):
            alive(announcement, now: now, into: &out)
        case .suspect(let id, let incarnation, let from):
            suspect(id, incarnation: incarnation, from: from, now: now, into: &out)
        case .dead(let id, let incarnation, let from):
            dead(id, incarnation: incarnation, from: from, now: now, into: &out)
        case .file(let version, let inline):
            offer(version, inline: inline, from: sender, source: source, now: now, into: &out)
        }
    }

    /// A version heard from a peer: store it if this node is configured for it and it wins.
    mutating func offer(
        _ version: FileVersion, inline: [UInt8]?, from sender: NodeID, source: PeerAddress, now: Int64,
        into out: inout [MeshDirective]
    ) {
        guard policy.allowedSigners[version.name] != nil else { return }  // neither stored nor relayed
        if let pending = storing[version.name], !VersionOrder.isNewer(version, than: pending) { return }
        // Duplicates are the common case: refuse them before paying for a signature check.
        if let held = files[version.name], !VersionOrder.isNewer(version, than: held) { return }
        if let refusal = policy.evaluate(version, current: files[version.name], now: now, signatures: signatureCache) {
            if case .stale = refusal { return }
            out.append(.refused(version.name, refusal, from: sender))
            return
        }
        if let inline, inline.count != Int(clamping: version.contentLength) {
            out.append(.refused(version.name, .contentMismatch(version.name), from: sender))
            return
        }
        storing[version.name] = version
        out.append(.store(version, inline: inline, from: source))
    }

    // MARK: Membership rules

    mutating func alive(_ announcement: MemberAnnouncement, now: Int64, into out: inout [MeshDirective]) {
        if announcement.id == me.id {
            // Someone claims our ID with a newer incarnation (we restarted): outbid it.
            if announcement.incarnation >= me.incarnation && announcement != me && !leaving {
                refute(announcement.incarnation)
            }
            return
        }
        // Most announcements are old news: look before copying the record.
        if let status = known[announcement.id], announcement.incarnation <= status.incarnation {
            return
        }
        if var record = members[announcement.id] {
            let previous = record.state
            record.announcement = announcement
            record.state = .alive
            if previous != .alive { record.since = now }
            setRecord(record)
            suspicions[announcement.id] = nil
            queue.enqueue(.alive(announcement))
            if previous != .alive { out.append(.memberChanged(record, previous: previous)) }
        } else {
            let record = MemberRecord(announcement: announcement, state: .alive, since: now, lastSource: nil)
            setRecord(record)
            // Not put into the current probe pass: it joins the next shuffled one. Inserting
            // newcomers in a fixed place made every joiner probe the same few nodes first (a
            // herd that, under loss, got them declared dead).
            queue.enqueue(.alive(announcement))
            out.append(.memberChanged(record, previous: nil))
        }
    }

    mutating func suspect(_ id: NodeID, incarnation: UInt64, from: NodeID, now: Int64, into out: inout [MeshDirective])
    {
        if id == me.id {
            if !leaving && incarnation >= me.incarnation { refute(incarnation) }
            return
        }
        // Confirmations of a suspicion and news about the dead are common: decide them without
        // copying the record.
        guard let status = known[id], incarnation >= status.incarnation, status.state != .dead,
            status.state != .left
        else { return }
        if status.state == .suspect {
            // In place: a copy of the suspicion would copy its set of confirmations.
            guard let index = suspicions.index(forKey: id), suspicions.values[index].incarnation == incarnation
            else { return }
            if suspicions.values[index].confirm(from) {
                queue.enqueue(.suspect(id, incarnation: incarnation, from: from))
            }
            return
        }
        guard var record = members[id] else { return }
        switch record.state {
        case .suspect:
            guard var suspicion = suspicions[id], suspicion.incarnation == incarnation else { return }
            if suspicion.confirm(from) {
                suspicions[id] = suspicion
                queue.enqueue(.suspect(id, incarnation: incarnation, from: from))
            }
        case .alive:
            let previous = record.state
            record.state = .suspect
            record.since = now
            record.announcement.incarnation = incarnation
            setRecord(record)
            let live = liveIDs.count + 1
            let minimum = Int64(
                Double(settings.suspicionMult) * max(1, log10(Double(live))) * Double(settings.probeInterval))
            // As memberlist: expect suspicionMult - 2 confirmations, none where too few members could give them.
            let expected = live - 2 < settings.suspicionMult - 2 ? 0 : settings.suspicionMult - 2
            suspicions[id] = Suspicion(
                incarnation: incarnation, start: now, from: from, minimum: minimum,
                maximum: minimum * Int64(settings.suspicionMaxTimeoutMult), expected: expected)
            queue.enqueue(.suspect(id, incarnation: incarnation, from: from))
            out.append(.memberChanged(record, previous: previous))
        case .dead, .left:
            return
        }
    }

    mutating func dead(_ id: NodeID, incarnation: UInt64, from: NodeID, now: Int64, into out: inout [MeshDirective]) {
        if id == me.id {
            if !leaving && incarnation >= me.incarnation { refute(incarnation) }
            return
        }
        guard let status = known[id], incarnation >= status.incarnation, status.state != .dead,
            status.state != .left, var record = members[id]
        else { return }
        let previous = record.state
        record.state = from == id ? .left : .dead
        record.since = now
        record.announcement.incarnation = incarnation
        setRecord(record)
        suspicions[id] = nil
        queue.enqueue(.dead(id, incarnation: incarnation, from: from))
        out.append(.memberChanged(record, previous: previous))
    }

    /// Refutation: a higher incarnation than anything said about us, told to everyone.
    mutating func refute(_ heard: UInt64) {
        me.incarnation = max(me.incarnation, heard) + 1
        membershipVersion &+= 1
        queue.enqueue(.alive(me))
        adjustAwareness(1)
    }

    /// Merges one record of a peer's member list (push/pull) like the gossip it stands for.
    mutating func merge(_ record: MemberRecord, now: Int64, into out: inout [MeshDirective]) {
        let announcement = record.announcement
        switch record.state {
        case .alive:
            alive(announcement, now: now, into: &out)
        case .suspect:
            if known[announcement.id] == nil && announcement.id != me.id {
                alive(announcement, now: now, into: &out)
            }
            suspect(announcement.id, incarnation: announcement.incarnation, from: me.id, now: now, into: &out)
        case .dead, .left:
            if announcement.id == me.id {
                if !leaving && announcement.incarnation >= me.incarnation { refute(announcement.incarnation) }
            } else if known[announcement.id] == nil {
                return  // nothing to learn about a member we never saw
            } else {
                // Push/pull is not an independent observation: treat a remote death as suspicion.
                suspect(announcement.id, incarnation: announcement.incarnation, from: me.id, now: now, into: &out)
            }
        }
    }

    /// Up to `count` distinct random members (a partial Fisher-Yates over the candidates).
    func pick(_ count: Int, from candidates: [MemberRecord], rng: inout some RandomNumberGenerator) -> [MemberRecord] {
        var pool = candidates
        let take = min(count, pool.count)
        for index in 0..<take { pool.swapAt(index, Int.random(in: index..<pool.count, using: &rng)) }
        return Array(pool.prefix(take))
    }

    /// The addresses of up to `count` distinct random live members other than `excluded`,
    /// without copying the member list (a few draws of random indexes; the lists are long,
    /// `count` is small). nil for a member with no address.
    func pickLive(_ count: Int, excluding excluded: NodeID? = nil, rng: inout some RandomNumberGenerator)
        -> [PeerAddress?]
    {
        let available = liveIDs.count - (excluded.map { liveIDs.contains($0) ? 1 : 0 } ?? 0)
        let wanted = min(count, available)
        guard wanted > 0 else { return [] }
        if wanted * 4 > liveIDs.count {
            return pick(wanted, from: liveIDs.filter { $0 != excluded }.compactMap { members[$0] }, rng: &rng)
                .map(\.address)
        }
        var chosen: [Int] = []
        chosen.reserveCapacity(wanted)
        while chosen.count < wanted {
            let index = Int.random(in: 0..<liveIDs.count, using: &rng)
            if liveIDs[index] != excluded && !chosen.contains(index) { chosen.append(index) }
        }
        var addresses: [PeerAddress?] = []
        addresses.reserveCapacity(wanted)
        for index in chosen {
            if let record = members[liveIDs[index]] { addresses.append(record.address) }
        }
        return addresses
    }
}

/// Draws from the generator given to `Mesh.handle`, for the duration of that call.
struct MeshRandom: RandomNumberGenerator {
    let draw: () -> UInt64
    mutating func next() -> UInt64 { draw() }
}
