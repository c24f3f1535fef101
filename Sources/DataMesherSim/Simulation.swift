import DataMesherCore

/// Many copies of the real protocol core (`Mesh`) on a simulated network and clock. One seed
/// drives every random choice (latency, loss, crashes, the cores' own randomness), events are
/// ordered by (time, sequence), and nothing reads a real clock: a run replays bit for bit.
public struct Simulation {
    public struct Options: Sendable {
        public var nodes = 10
        public var loss = 0.0
        public var latencyMin: Int64 = 1_000_000
        public var latencyMax: Int64 = 5_000_000
        public var seed: UInt64 = 1
        public var settings = MeshSettings()
        public var policy = FilePolicy(allowedSigners: [:])
        public init() {}
    }

    public enum Event {
        case deliver(Packet, to: NodeID, from: NodeID)
        case tick(NodeID)
        case stored(NodeID, FileVersion, inline: [UInt8]?)
        case action(Int)
    }

    struct Scheduled {
        var time: Int64
        var sequence: UInt64
        var event: Event
    }

    public let options: Options
    /// The cores, by node index; mutated in place (copying a core out and back would copy its
    /// member table on every event).
    var cores: [Mesh] = []
    var indexOf: [NodeID: Int] = [:]
    public let order: [NodeID]
    public private(set) var now: Int64 = 1_800_000_000_000_000_000
    public let start: Int64
    public var rng: SplitMix64
    public var down: Set<NodeID> = []
    /// Which side of a partition each node is on; nodes on different sides cannot talk.
    public var side: [NodeID: Int] = [:]
    public private(set) var bytesSent = 0
    public private(set) var packetsSent = 0
    /// Nodes whose `[files]` differ from `options.policy`.
    var policies: [NodeID: FilePolicy] = [:]
    var addressOf: [NodeID: PeerAddress] = [:]
    var idAt: [PeerAddress: NodeID] = [:]
    var queue = EventHeap()
    var sequence: UInt64 = 0
    var scheduledTick: [NodeID: Int64] = [:]
    var actions: [Int: (inout Simulation) -> Void] = [:]
    var nextAction = 0
    /// Observers of what the cores do: (node, directive, time).
    public var onDirective: ((NodeID, MeshDirective, Int64) -> Void)?
    /// Observers of versions a node stored: (node, version, time).
    public var onStored: ((NodeID, FileVersion, Int64) -> Void)?

    public init(_ options: Options) {
        self.options = options
        rng = SplitMix64(state: options.seed)
        start = now
        var order: [NodeID] = []
        for index in 0..<options.nodes {
            // Readable IDs: the first 4 bytes (the 8 hex digits a NodeID prints) are the index.
            var bytes = [UInt8](repeating: 0, count: 16)
            for byte in 0..<4 { bytes[byte] = UInt8(truncatingIfNeeded: index >> (8 * (3 - byte))) }
            bytes[15] = 1
            guard let id = NodeID(bytes: bytes) else { preconditionFailure("16 bytes make a node ID") }
            order.append(id)
            let address = PeerAddress(host: "10.\(index / 65536 % 256).\(index / 256 % 256).\(index % 256)", port: 7946)
            addressOf[id] = address
            idAt[address] = id
        }
        self.order = order
        for (index, id) in order.enumerated() { indexOf[id] = index }
        for id in order { boot(id) }
    }

    /// Every core by ID (a copy; for inspection, not for hot loops).
    public var nodes: [NodeID: Mesh] {
        Dictionary(uniqueKeysWithValues: zip(order, cores))
    }

    public func mesh(_ id: NodeID) -> Mesh? { indexOf[id].map { cores[$0] } }

    /// Starts (or restarts) the core of `id`: fresh membership, files kept (they are on disk).
    public mutating func boot(_ id: NodeID, files: [FileVersion] = []) {
        let index = order.firstIndex(of: id) ?? 0
        let me = MemberAnnouncement(
            id: id, name: "n\(index)", incarnation: UInt64(now / 1_000_000_000), addresses: [addressOf[id]!])
        let bootstrap = index == 0 ? [] : [addressOf[order[0]]!]
        var mesh = Mesh(
            me: me, settings: options.settings, policy: policies[id] ?? options.policy, bootstrap: bootstrap, now: now)
        mesh.load(files)
        if index < cores.count { cores[index] = mesh } else { cores.append(mesh) }
        scheduledTick[id] = nil
        schedule(tickOf: id)
    }

    public func address(of id: NodeID) -> PeerAddress { addressOf[id]! }
    public func state(of id: NodeID, seenBy observer: NodeID) -> MemberState? { mesh(observer)?.members[id]?.state }

    public func reachable(_ a: NodeID, _ b: NodeID) -> Bool {
        !down.contains(a) && !down.contains(b) && side[a, default: 0] == side[b, default: 0]
    }

    // MARK: Events

    mutating func push(_ time: Int64, _ event: Event) {
        sequence += 1
        queue.push(Scheduled(time: time, sequence: sequence, event: event))
    }

    /// Runs `body` at `time` (simulated).
    public mutating func at(_ time: Int64, _ body: @escaping (inout Simulation) -> Void) {
        nextAction += 1
        actions[nextAction] = body
        push(time, .action(nextAction))
    }

    mutating func schedule(tickOf id: NodeID) {
        guard let index = indexOf[id], !down.contains(id) else { return }
        let deadline = max(now, cores[index].nextDeadline)
        if let scheduled = scheduledTick[id], scheduled <= deadline, scheduled >= now { return }
        scheduledTick[id] = deadline
        push(deadline, .tick(id))
    }

    /// Gives `input` to the core of `id` and carries out its directives.
    public mutating func feed(_ id: NodeID, _ input: MeshInput) {
        guard !down.contains(id), let index = indexOf[id] else { return }
        var nodeRNG = SplitMix64(state: rng.next())
        let directives = cores[index].handle(input, now: now, rng: &nodeRNG)
        for directive in directives { execute(directive, by: id) }
        schedule(tickOf: id)
    }

    mutating func execute(_ directive: MeshDirective, by id: NodeID) {
        onDirective?(id, directive, now)
        switch directive {
        case .send(let packet, let address):
            let bytes = WireCodec.encode(packet)
            bytesSent += bytes.count
            packetsSent += 1
            guard let target = idAt[address], !rng.chance(options.loss) else { return }
            // Through the real decoder, as on the wire.
            guard let decoded = try? WireCodec.decode(bytes) else { return }
            push(now + latency(), .deliver(decoded, to: target, from: id))
        case .store(let version, let inline, let address):
            // The shell's path: check every rule again (signature included) before storing.
            guard let index = indexOf[id] else { return }
            if cores[index].policy.evaluate(version, current: cores[index].files[version.name], now: now) != nil {
                feed(id, .storeFailed(version))
                return
            }
            let source = idAt[address]
            if inline == nil && (source == nil || !reachable(id, source!)) {
                feed(id, .storeFailed(version))  // the TCP fetch would fail
                return
            }
            let delay = inline == nil ? 2 * latency() : 0
            push(now + delay, .stored(id, version, inline: inline))
        case .sync(let address, _):
            guard let peer = idAt[address], reachable(id, peer) else { return }
            pushPull(id, peer)
        case .memberChanged, .refused:
            break
        }
    }

    /// A TCP push/pull (docs/PROTOCOL.md): member lists both ways, then what differs.
    mutating func pushPull(_ a: NodeID, _ b: NodeID) {
        guard let indexA = indexOf[a], let indexB = indexOf[b] else { return }
        let mine = cores[indexA].localState
        let theirs = cores[indexB].localState
        let filesA = cores[indexA].files
        let filesB = cores[indexB].files
        bytesSent += SyncCodec.encode(.hello(join: false, members: mine, root: filesA.rootDigest)).count
        let differs = filesA.rootDigest != filesB.rootDigest
        bytesSent +=
            SyncCodec.encode(
                .reply(members: theirs, root: filesB.rootDigest, buckets: differs ? filesB.bucketDigests : nil)
            ).count
        feed(b, .remoteState(mine))
        feed(a, .remoteState(theirs))
        guard differs else { return }
        let buckets = filesA.differingBuckets(filesB.bucketDigests)
        let summariesA = filesA.summaries(inBuckets: buckets)
        let summariesB = filesB.summaries(inBuckets: buckets)
        bytesSent += SyncCodec.encode(.summaries(buckets: buckets, versions: summariesA)).count
        bytesSent += SyncCodec.encode(.summaries(buckets: buckets, versions: summariesB)).count
        for summary in filesA.newerElsewhere(summariesB) {
            if let version = filesB[summary.name] { fetch(version, into: a) }
        }
        for summary in filesB.newerElsewhere(summariesA) {
            if let version = filesA[summary.name] { fetch(version, into: b) }
        }
    }

    mutating func fetch(_ version: FileVersion, into id: NodeID) {
        guard let index = indexOf[id], cores[index].policy.allowedSigners[version.name] != nil,
            cores[index].policy.evaluate(version, current: cores[index].files[version.name], now: now) == nil
        else { return }
        bytesSent += Int(version.contentLength) + 200
        push(now + 2 * latency(), .stored(id, version, inline: nil))
    }

    mutating func latency() -> Int64 {
        let span = UInt64(max(0, options.latencyMax - options.latencyMin))
        return options.latencyMin + Int64(span == 0 ? 0 : rng.next() % (span + 1))
    }

    /// Runs events until `end` (simulated time).
    public mutating func run(until end: Int64) {
        var steps = 0
        while let next = queue.peek(), next.time <= end {
            steps += 1
            precondition(steps < 200_000_000, "simulation stalled at \(now)")
            _ = queue.pop()
            now = max(now, next.time)
            switch next.event {
            case .deliver(let packet, let target, let source):
                guard reachable(source, target) else { continue }
                feed(target, .packet(packet, from: addressOf[source]!))
            case .tick(let id):
                guard scheduledTick[id] == next.time else { continue }
                scheduledTick[id] = nil
                feed(id, .tick)
            case .stored(let id, let version, let inline):
                guard !down.contains(id), let index = indexOf[id] else { continue }
                if let held = cores[index].files[version.name], !VersionOrder.isNewer(version, than: held) {
                    feed(id, .storeFailed(version))
                    continue
                }
                onStored?(id, version, now)
                feed(id, .stored(version, inline: inline))
            case .action(let number):
                if let body = actions.removeValue(forKey: number) { body(&self) }
            }
        }
        now = max(now, end)
    }

    public mutating func run(for duration: Int64) { run(until: now + duration) }

    /// Stops a node: its packets are lost until `restart`; its files stay on "disk".
    public mutating func crash(_ id: NodeID) { down.insert(id) }

    public mutating func restart(_ id: NodeID) {
        down.remove(id)
        let files = mesh(id).map { Array($0.files.versions.values) } ?? []
        boot(id, files: files.sorted { $0.name < $1.name })
    }
}

/// A binary min-heap of events by (time, sequence): deterministic order for equal times.
struct EventHeap {
    var items: [Simulation.Scheduled] = []

    func peek() -> Simulation.Scheduled? { items.first }

    static func less(_ a: Simulation.Scheduled, _ b: Simulation.Scheduled) -> Bool {
        a.time != b.time ? a.time < b.time : a.sequence < b.sequence
    }

    mutating func push(_ item: Simulation.Scheduled) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard EventHeap.less(items[child], items[parent]) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Simulation.Scheduled? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < items.count && EventHeap.less(items[left], items[smallest]) { smallest = left }
            if right < items.count && EventHeap.less(items[right], items[smallest]) { smallest = right }
            if smallest == parent { break }
            items.swapAt(parent, smallest)
            parent = smallest
        }
        return top
    }
}
