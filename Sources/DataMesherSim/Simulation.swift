import DataMesherCore

/// Many copies of the real protocol core (`ClusterCore`) on a simulated network and clock. One seed
/// drives every random choice (latency, loss, crashes, the cores' own randomness), events are
/// ordered by (time, sequence), and nothing reads a real clock: a run replays bit for bit.
public struct Simulation {
    public struct Options: Sendable {
        public var nodes = 10
        public var loss = 0.0
        public var latencyMin: Int64 = 1_000_000
        public var latencyMax: Int64 = 5_000_000
        public var seed: UInt64 = 1
        public var settings = CoreSettings()
        public var policy = FilePolicy(allowedSigners: [:])
        /// Probability that a TCP frame (push/pull) or a content fetch is lost with its stream:
        /// the exchange or the fetch ends there, as when a connection is cut halfway.
        public var streamCut = 0.0
        /// Probability that a peer stalls `stallTime` before a push/pull frame goes on.
        public var streamStall = 0.0
        public var stallTime: Int64 = 5_000_000_000
        /// Each node's clock is off by a random amount in ±`clockSkew` (ns), for the whole run.
        public var clockSkew: Int64 = 0
        /// Node identities: every node runs the core's `Admission` (as the shell does with
        /// `[cluster] identity`), and a member counts only once it proved its ID at its address.
        public var identities = false
        public init() {}
    }

    /// What happens at a scheduled instant; nodes by index into `order`.
    enum Event {
        /// A datagram in flight, as its bytes (smaller than the decoded packet).
        case deliver([UInt8], to: Int, from: Int)
        case tick(Int)
        case stored(Int, FileVersion, inline: [UInt8]?)
        /// A push/pull frame for one side (0 the caller, 1 the callee) of an exchange.
        case frame(exchange: Int, side: Int, SyncMessage)
        case action(Int)
        /// Node `peer` proved its ID to node `prover`'s dial at `address` (identities).
        case proved(Int, peer: Int, at: PeerAddress)
        /// The answer to request `request` of node `node`'s fetch stream `stream` (to `peer`, nil
        /// when it could not be dialed) arrives; `epoch` tells streams of a restarted node apart.
        case fetchReply(node: Int, epoch: Int, stream: Int, peer: Int?, request: Int, [Fetcher.Request])
    }

    /// A push/pull under way: the two nodes and the core's `PushPull` of each side.
    struct Exchange {
        var nodes: [Int]
        var sides: [PushPull]
    }

    public let options: Options
    /// The cores, by node index; mutated in place (copying a core out and back would copy its
    /// member table on every event).
    var cores: [ClusterCore] = []
    var indexOf: [NodeID: Int] = [:]
    public let order: [NodeID]
    public private(set) var now: Int64 = 1_800_000_000_000_000_000
    public let start: Int64
    public var rng: SplitMix64
    /// Nodes that are stopped (`crash`, `restart`).
    public private(set) var down: Set<NodeID> = []
    /// Which side of a partition each node is on; nodes on different sides cannot talk.
    public var side: [NodeID: Int] = [:] {
        didSet {
            sideAt = order.map { side[$0, default: 0] }
        }
    }
    /// `down` and `side` by node index, for the per-packet reachability check.
    var isDown: [Bool]
    var sideAt: [Int]
    /// Each node's clock minus the simulation's (ns), from `Options.clockSkew`.
    public private(set) var clockOffsets: [Int64]
    /// Nodes whose disk is full: every version they are told to store fails.
    public var diskFull: Set<NodeID> = [] {
        didSet { diskFullAt = order.map { diskFull.contains($0) } }
    }
    var diskFullAt: [Bool]
    /// Nodes whose certificate expired: every handshake with them is refused, so they prove
    /// nothing (with `Options.identities`).
    public var expiredCertificate: Set<NodeID> = [] {
        didSet { certificateValidAt = order.map { !expiredCertificate.contains($0) } }
    }
    var certificateValidAt: [Bool]
    /// Nodes with a keyring of their own: nobody can open what they seal and they open nothing
    /// of the others', datagrams or streams.
    public var foreignKeyring: Set<NodeID> = [] {
        didSet { ringAt = order.map { foreignKeyring.contains($0) ? 1 : 0 } }
    }
    var ringAt: [Int]
    /// Each node's `Admission` (with `Options.identities`); the shell's state, lost on restart.
    var admissions: [Admission] = []
    /// Each node's fetcher (the core's), and how often the node was booted.
    var fetchers: [Fetcher] = []
    var epochs: [Int] = []
    /// Each node's `<state_dir>/members`: the addresses of the members it saw alive when it
    /// went down (written only when there are some), tried with its bootstrap at the next start.
    var remembered: [Int: [PeerAddress]] = [:]
    /// Versions each node was told to store (`.store`) and has not been told the outcome of,
    /// with when: every fetch must end, stored or failed, within a bound.
    var fetchesUnderWay: [FetchKey: Int64] = [:]
    /// The longest time from `.store` to its outcome so far (ns).
    public private(set) var longestFetch: Int64 = 0

    struct FetchKey: Hashable {
        var node: Int
        var name: FileName
        var timestamp: Int64
    }
    public internal(set) var bytesSent = 0
    public private(set) var packetsSent = 0
    /// Nodes whose `[files]` differ from `options.policy`.
    var policies: [NodeID: FilePolicy] = [:]
    /// Each node's key, by index.
    var keys: [NodeKey] = []
    var addresses: [PeerAddress] = []
    var idAt: [PeerAddress: Int] = [:]
    var queue = EventHeap()
    var sequence: UInt64 = 0
    /// The time of each node's pending tick event, if one is scheduled.
    var scheduledTick: [Int64?]
    var actions: [Int: (inout Simulation) -> Void] = [:]
    var nextAction = 0
    /// Signature verdicts shared by every core and by the store checks of this harness: each
    /// version is verified once, not once per node (the verdict depends on the version only).
    public let signatures = SignatureCache()
    /// Each node's member list as push/pull sends it, kept until its `membershipVersion` moves.
    var memberLists: [MemberList?]
    var exchanges: [Int: Exchange] = [:]
    var nextExchange = 0
    /// Observers of what the cores do: (node, directive, time).
    public var onDirective: ((NodeID, CoreDirective, Int64) -> Void)?
    /// Observers of versions a node stored: (node, version, time).
    public var onStored: ((NodeID, FileVersion, Int64) -> Void)?

    /// A node's member list as the peer decodes it from a push/pull (no `since`, no source). It
    /// changes only when the core's `membershipVersion` moves, so it is built once per change,
    /// not per exchange.
    struct MemberList {
        var membershipVersion: UInt64
        var records: [MemberRecord]
    }

    public init(_ options: Options) {
        self.options = options
        rng = SplitMix64(state: options.seed)
        start = now
        var order: [NodeID] = []
        for index in 0..<options.nodes {
            // Each node's key from its index: the same node has the same ID in every run.
            let key = Simulation.nodeKey(index + 1)
            keys.append(key)
            order.append(key.id)
            let address = Simulation.nodeAddress(index)
            addresses.append(address)
            idAt[address] = index
        }
        self.order = order
        isDown = Array(repeating: false, count: order.count)
        sideAt = Array(repeating: 0, count: order.count)
        diskFullAt = Array(repeating: false, count: order.count)
        certificateValidAt = Array(repeating: true, count: order.count)
        ringAt = Array(repeating: 0, count: order.count)
        var offsets: [Int64] = []
        for _ in order.indices {
            let skew = max(0, options.clockSkew)
            offsets.append(skew == 0 ? 0 : Int64(rng.next() % UInt64(2 * skew + 1)) - skew)
        }
        clockOffsets = offsets
        scheduledTick = Array(repeating: nil, count: order.count)
        memberLists = Array(repeating: nil, count: order.count)
        for (index, id) in order.enumerated() { indexOf[id] = index }
        for index in order.indices { boot(index) }
    }

    /// Node `number`'s key, made from the number (so it is the same in every run).
    static func nodeKey(_ number: Int) -> NodeKey {
        var seed = [UInt8](repeating: 0, count: 32)
        for byte in 0..<8 { seed[24 + byte] = UInt8(truncatingIfNeeded: number >> (8 * (7 - byte))) }
        guard let key = NodeKey(seed: seed) else { preconditionFailure("32 bytes make a node key") }
        return key
    }

    /// The address of the node at `index`: 10.x.y.z, port 7946.
    static func nodeAddress(_ index: Int) -> PeerAddress {
        PeerAddress(host: "10.\(index / 65536 % 256).\(index / 256 % 256).\(index % 256)", port: 7946)
    }

    /// Every core by ID (a copy; for inspection, not for hot loops).
    public var nodes: [NodeID: ClusterCore] {
        Dictionary(uniqueKeysWithValues: zip(order, cores))
    }

    public func core(_ id: NodeID) -> ClusterCore? { indexOf[id].map { cores[$0] } }

    /// Starts (or restarts) the core of `id`: fresh membership, files kept (they are on disk).
    public mutating func boot(_ id: NodeID, files: [FileVersion] = []) {
        boot(indexOf[id] ?? 0, files: files)
    }

    mutating func boot(_ index: Int, files: [FileVersion] = []) {
        let id = order[index]
        let configured = index == 0 ? [] : [addresses[0]]
        let bootstrap = configured + (remembered[index] ?? []).filter { !configured.contains($0) }
        let local = localNow(index)
        var core = ClusterCore(
            key: keys[index], name: "n\(index)", addresses: [addresses[index]],
            incarnation: UInt64(max(0, local / 1_000_000_000)), settings: options.settings,
            policy: policies[id] ?? options.policy, bootstrap: bootstrap, now: local)
        core.verifier = signatures
        core.load(files)
        if index < cores.count { cores[index] = core } else { cores.append(core) }
        if index < admissions.count {
            admissions[index] = Admission(me: id)
            fetchers[index] = Fetcher()
            epochs[index] += 1
        } else {
            admissions.append(Admission(me: id))
            fetchers.append(Fetcher())
            epochs.append(0)
        }
        memberLists[index] = nil
        scheduledTick[index] = nil
        schedule(tickOf: index)
    }

    public func address(of id: NodeID) -> PeerAddress {
        indexOf[id].map { addresses[$0] } ?? PeerAddress(host: "0.0.0.0", port: 0)
    }

    /// A node's key, to sign claims in its name (tests).
    public func key(of id: NodeID) -> NodeKey? { indexOf[id].map { keys[$0] } }
    public func state(of id: NodeID, seenBy observer: NodeID) -> MemberState? { core(observer)?.members[id]?.state }

    public func reachable(_ a: NodeID, _ b: NodeID) -> Bool {
        guard let indexA = indexOf[a], let indexB = indexOf[b] else { return false }
        return reachable(indexA, indexB)
    }

    func reachable(_ a: Int, _ b: Int) -> Bool { !isDown[a] && !isDown[b] && sideAt[a] == sideAt[b] }

    /// Whether a stream from `caller` to `callee` gets through its handshake: both reachable, the
    /// same keyring, and (with identities) both certificates valid.
    func handshake(_ caller: Int, _ callee: Int) -> Bool {
        reachable(caller, callee) && ringAt[caller] == ringAt[callee]
            && (!options.identities || (certificateValidAt[caller] && certificateValidAt[callee]))
    }

    /// What node `index`'s admission says of the addresses it wants dialed: a dial whose
    /// handshake succeeds proves the node there, two latencies later.
    mutating func dial(_ addresses: [PeerAddress], from index: Int) {
        for address in addresses {
            guard let peer = idAt[address], handshake(index, peer) else { continue }
            push(now + 2 * latency(), .proved(index, peer: peer, at: address))
        }
    }

    /// Node `prover` learned that `peer` holds `address`: announcements held for it go to the core.
    mutating func proved(_ peer: Int, at address: PeerAddress, by prover: Int) {
        guard options.identities, !isDown[prover] else { return }
        let (_, released) = admissions[prover].proved(order[peer], at: address, until: .max, now: localNow(prover))
        if let released { feed(prover, .remoteState([released])) }
    }

    /// A member list from push/pull, through the node's admission first (with identities).
    mutating func merge(_ records: [MemberRecord], into index: Int) {
        guard options.identities else {
            feed(index, .remoteState(records))
            return
        }
        let (passed, wanted) = admissions[index].admit(state: records, now: localNow(index))
        dial(wanted, from: index)
        if !passed.isEmpty { feed(index, .remoteState(passed)) }
    }

    /// Whether node `id`'s admission lets `member` in at `address` (always true without identities).
    public func isAdmitted(_ member: NodeID, at address: PeerAddress?, by id: NodeID) -> Bool {
        guard options.identities, let index = indexOf[id] else { return true }
        return admissions[index].isAdmitted(member, at: address, now: localNow(index))
    }

    /// The time on node `index`'s own clock.
    func localNow(_ index: Int) -> Int64 { now.addingSaturated(clockOffsets[index]) }

    /// Fetches (`.store` directives) not ended after `bound` (ns), on nodes that are up.
    public func overdueFetches(bound: Int64) -> Int {
        fetchesUnderWay.filter { !isDown[$0.key.node] && now.subtractingSaturated($0.value) > bound }.count
    }

    /// Reads a core in place: `cores[index].property` would copy the whole core first when the
    /// property is computed in another module.
    mutating func inspect<T>(_ index: Int, _ body: (inout ClusterCore) -> T) -> T { body(&cores[index]) }

    // MARK: Events

    mutating func push(_ time: Int64, _ event: Event) {
        sequence += 1
        queue.push(time: time, sequence: sequence, event: event)
    }

    /// Runs `body` at `time` (simulated).
    public mutating func at(_ time: Int64, _ body: @escaping (inout Simulation) -> Void) {
        nextAction += 1
        actions[nextAction] = body
        push(time, .action(nextAction))
    }

    mutating func schedule(tickOf index: Int) {
        guard !isDown[index] else { return }
        let deadline = max(now, inspect(index) { $0.nextDeadline }.subtractingSaturated(clockOffsets[index]))
        if let scheduled = scheduledTick[index], scheduled <= deadline, scheduled >= now { return }
        scheduledTick[index] = deadline
        push(deadline, .tick(index))
    }

    /// Gives `input` to the core of `id` and carries out its directives.
    public mutating func feed(_ id: NodeID, _ input: CoreInput) {
        guard let index = indexOf[id] else { return }
        feed(index, input)
    }

    mutating func feed(_ index: Int, _ input: CoreInput) {
        guard !isDown[index] else { return }
        var nodeRNG = SplitMix64(state: rng.next())
        switch input {
        case .stored(let version, _):
            // A fetch also ends by storing a newer version of its name: a peer answers with what
            // it holds when the request arrives.
            for key in fetchesUnderWay.keys
            where key.node == index && key.name == version.name && key.timestamp <= version.timestamp {
                endFetch(key)
            }
        case .storeFailed(let version):
            endFetch(FetchKey(node: index, name: version.name, timestamp: version.timestamp))
        default:
            break
        }
        let directives = cores[index].handle(input, now: localNow(index), rng: &nodeRNG)
        for directive in directives { execute(directive, by: index) }
        schedule(tickOf: index)
    }

    mutating func endFetch(_ key: FetchKey) {
        if let started = fetchesUnderWay.removeValue(forKey: key) {
            longestFetch = max(longestFetch, now.subtractingSaturated(started))
        }
    }

    mutating func execute(_ directive: CoreDirective, by index: Int) {
        onDirective?(order[index], directive, now)
        switch directive {
        case .send(let packet, let address, _):
            let bytes = WireCodec.encode(packet)
            bytesSent += bytes.count
            packetsSent += 1
            guard let target = idAt[address], !rng.chance(options.loss) else { return }
            push(now + latency(), .deliver(bytes, to: target, from: index))
        case .store(let version, let inline, let address):
            let key = FetchKey(node: index, name: version.name, timestamp: version.timestamp)
            if fetchesUnderWay[key] == nil { fetchesUnderWay[key] = now }
            carryOut(fetchers[index].offered(version, inline: inline, from: address, now: localNow(index)), by: index)
        case .sync(let address, let join):
            guard let peer = idAt[address], handshake(index, peer) else { return }
            // The handshake proved the peer's ID at the address dialed.
            proved(peer, at: address, by: index)
            // The core's own exchange, its frames over the simulated network.
            var caller = PushPull(.caller(dialed: address))
            let steps = caller.open(join: join, members: memberList(index).records, files: cores[index].files)
            let id = nextExchange
            nextExchange += 1
            exchanges[id] = Exchange(nodes: [index, peer], sides: [caller, PushPull(.callee)])
            carryOut(steps, exchange: id, side: 0)
        case .streamPing(let sequence, let address, _, let timeout):
            // A TCP handshake's SYN and SYN-ACK cross the same lossy network as datagrams; when
            // either is lost, its retransmission (a second later) comes after the probe ended.
            guard let peer = idAt[address], handshake(index, peer), !rng.chance(options.loss),
                !rng.chance(options.loss)
            else { return }
            let answer = 2 * latency()
            guard answer <= timeout else { return }
            proved(peer, at: address, by: index)
            let epoch = epochs[index]
            let id = order[peer]
            at(now + answer) { simulation in
                guard !simulation.isDown[index], simulation.epochs[index] == epoch else { return }
                simulation.feed(index, .streamPingAnswered(sequence: sequence, by: id))
            }
        case .memberChanged, .refused, .droppedClaim, .answeredOnlyOverStream, .ownKeyElsewhere:
            break
        }
    }

    /// Node `index`'s member list for a push/pull, built again only when it changed.
    mutating func memberList(_ index: Int) -> MemberList {
        let version = inspect(index) { $0.membershipVersion }
        if let list = memberLists[index], list.membershipVersion == version { return list }
        let records = inspect(index) { $0.localState }.map {
            MemberRecord(announcement: $0.announcement, state: $0.state, since: 0, lastSource: nil)
        }
        let list = MemberList(membershipVersion: version, records: records)
        memberLists[index] = list
        return list
    }

    /// Does what one side of an exchange asks: frames go to the other side after a latency (and
    /// the exchange ends when the peer is out of reach or the stream is cut), member lists are
    /// merged, and newer versions fetched from the peer.
    mutating func carryOut(_ steps: [PushPull.Step], exchange id: Int, side: Int) {
        guard let exchange = exchanges[id] else { return }
        let node = exchange.nodes[side]
        let peer = exchange.nodes[1 - side]
        for step in steps {
            switch step {
            case .send(let message):
                bytesSent += SyncCodec.encodedSize(message)
                guard reachable(node, peer), !rng.chance(options.streamCut) else {
                    exchanges[id] = nil
                    return
                }
                let stall = rng.chance(options.streamStall) ? options.stallTime : 0
                push(now + latency() + stall, .frame(exchange: id, side: 1 - side, message))
            case .merge(let records):
                merge(records, into: node)
            case .fetch(let wanted, let address):
                let policy = cores[node].policy
                carryOut(fetchers[node].wanted(wanted, from: address, policy: policy, now: localNow(node)), by: node)
            case .finish:
                if exchanges[id]?.sides[1 - side].isDone ?? true { exchanges[id] = nil }
                return
            }
        }
    }

    /// A push/pull frame arrives at one side of its exchange.
    mutating func receive(_ message: SyncMessage, exchange id: Int, side: Int) {
        guard var exchange = exchanges[id] else { return }
        let node = exchange.nodes[side]
        guard !isDown[node] else {
            exchanges[id] = nil
            return
        }
        var members: [MemberRecord] = []
        if case .hello = message { members = memberList(node).records }
        guard let steps = try? exchange.sides[side].receive(message, members: members, files: cores[node].files)
        else {
            exchanges[id] = nil
            return
        }
        exchanges[id] = exchange
        carryOut(steps, exchange: id, side: side)
    }

    mutating func latency() -> Int64 {
        let span = UInt64(max(0, options.latencyMax - options.latencyMin))
        return options.latencyMin + Int64(span == 0 ? 0 : rng.next() % (span + 1))
    }

    /// Runs events until `end` (simulated time).
    public mutating func run(until end: Int64) {
        var steps = 0
        while let time = queue.nextTime, time <= end {
            steps += 1
            precondition(steps < 200_000_000, "simulation stalled at \(now)")
            guard let event = queue.pop() else { break }
            now = max(now, time)
            switch event {
            case .deliver(let bytes, let target, let source):
                // Through the real decoder, as on the wire.
                guard reachable(source, target), ringAt[source] == ringAt[target],
                    let packet = try? WireCodec.decode(bytes)
                else { continue }
                guard options.identities else {
                    feed(target, .packet(packet, from: addresses[source]))
                    continue
                }
                let (admitted, wanted) = admissions[target].admit(
                    packet, from: addresses[source], now: localNow(target))
                dial(wanted, from: target)
                if let admitted { feed(target, .packet(admitted, from: addresses[source])) }
            case .proved(let prover, let peer, let address):
                proved(peer, at: address, by: prover)
            case .tick(let index):
                guard scheduledTick[index] == time else { continue }
                scheduledTick[index] = nil
                feed(index, .tick)
            case .stored(let index, let version, let inline):
                guard !isDown[index] else { continue }
                store(version, inline: inline, on: index)
            case .fetchReply(let node, let epoch, let stream, let peer, let request, let requests):
                guard !isDown[node], epochs[node] == epoch else { continue }
                answer(request, of: requests, on: stream, from: peer, to: node)
            case .frame(let exchange, let side, let message):
                receive(message, exchange: exchange, side: side)
            case .action(let number):
                if let body = actions.removeValue(forKey: number) { body(&self) }
            }
        }
        now = max(now, end)
    }

    public mutating func run(for duration: Int64) { run(until: now + duration) }

    /// Stops a node: its packets are lost until `restart`; its files stay on "disk".
    public mutating func crash(_ id: NodeID) {
        guard let index = indexOf[id] else { return }
        down.insert(id)
        isDown[index] = true
        let alive = cores[index].localState.dropFirst().filter { $0.state == .alive }.compactMap(\.address)
        if !alive.isEmpty { remembered[index] = alive }
        fetchesUnderWay = fetchesUnderWay.filter { $0.key.node != index }
    }

    public mutating func restart(_ id: NodeID) {
        guard let index = indexOf[id] else { return }
        down.remove(id)
        isDown[index] = false
        let files = Array(cores[index].files.versions.values)
        boot(index, files: files.sorted { $0.name < $1.name })
    }
}

/// A binary min-heap of events by (time, sequence): deterministic order for equal times. The
/// heap moves small plain keys; the events themselves stay in slots until they are popped.
struct EventHeap {
    struct Key {
        var time: Int64
        var sequence: UInt64
        var slot: Int
    }

    var keys: [Key] = []
    var slots: [Simulation.Event?] = []
    var freeSlots: [Int] = []

    var nextTime: Int64? { keys.first?.time }

    static func less(_ a: Key, _ b: Key) -> Bool {
        a.time != b.time ? a.time < b.time : a.sequence < b.sequence
    }

    mutating func push(time: Int64, sequence: UInt64, event: Simulation.Event) {
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
            slots[slot] = event
        } else {
            slot = slots.count
            slots.append(event)
        }
        let key = Key(time: time, sequence: sequence, slot: slot)
        keys.append(key)
        var child = keys.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard EventHeap.less(key, keys[parent]) else { break }
            keys[child] = keys[parent]
            child = parent
        }
        keys[child] = key
    }

    /// Removes the earliest event.
    mutating func pop() -> Simulation.Event? {
        guard let top = keys.first else { return nil }
        let last = keys.removeLast()
        if !keys.isEmpty {
            // Sift the last key down from the root.
            var parent = 0
            let count = keys.count
            while true {
                let left = 2 * parent + 1
                guard left < count else { break }
                let right = left + 1
                let child = right < count && EventHeap.less(keys[right], keys[left]) ? right : left
                guard EventHeap.less(keys[child], last) else { break }
                keys[parent] = keys[child]
                parent = child
            }
            keys[parent] = last
        }
        // Moved out, not copied: a copy would retain everything a packet holds, only to release it.
        var event: Simulation.Event? = nil
        swap(&event, &slots[top.slot])
        freeSlots.append(top.slot)
        return event
    }
}
