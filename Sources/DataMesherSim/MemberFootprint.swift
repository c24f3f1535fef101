import DataMesherCore

#if canImport(Glibc)
    import Glibc
#endif

/// How many bytes one member costs a `ClusterCore`, as a simulator holding many cores pays it
/// (each announcement held once, by the cores' shared `SignatureCache`) and as a daemon's one core pays it:
/// cores meet `members` nodes the way the daemon does (each announcement decoded from its own
/// datagram, relayed by one member, then pinged and acked), gossip until the news
/// is spread and dropped, and stay alive. The process's resident memory is read after a first
/// core (which warms the allocator up) and after `cores` more (`/proc/self/statm`); the growth
/// divided by their member entries is what each entry keeps: its record and announcement, the
/// lookup tables, the probe order. Resident memory also counts allocator slack, so this is an
/// upper bound.
public enum MemberFootprint {
    public struct Report: Sendable {
        public var members: Int
        public var cores: Int
        /// Resident bytes per member entry of a settled core, announcements shared among the
        /// cores as the simulator shares them.
        public var bytesPerMember: Double
        /// The same for cores that each decoded their own announcements, as a daemon's one core.
        public var bytesPerMemberAlone: Double
    }

    /// nil where resident memory cannot be read (no `/proc`) or a core failed to meet everyone.
    public static func measure(members count: Int, cores: Int = 4) -> Report? {
        #if os(Linux)
            guard count >= 1, cores >= 1 else { return nil }
            // Every member's announcement as the datagram that carries it (made before measuring).
            var datagrams: [[UInt8]] = []
            var keys: [NodeID: Int] = [:]
            for index in 1...count {
                let member = Simulation.nodeKey(index)
                keys[member.id] = index
                let announcement = MemberAnnouncement.signed(
                    by: member, name: "node-\(index)", incarnation: 1_800_000_000,
                    addresses: [Simulation.nodeAddress(index)])
                datagrams.append(
                    WireCodec.encode(Packet(sender: member.id, message: .gossip, items: [.alive(announcement)])))
            }
            // The first pass's cores stay alive through the second, so their memory is not reused.
            guard let (shared, sharingCores) = growth(datagrams, keys, cores: cores, sharing: true),
                let (alone, aloneCores) = growth(datagrams, keys, cores: cores, sharing: false)
            else { return nil }
            withExtendedLifetime((sharingCores, aloneCores)) {}
            let entries = Double(cores * count)
            return Report(
                members: count, cores: cores, bytesPerMember: Double(shared) / entries,
                bytesPerMemberAlone: Double(alone) / entries)
        #else
            return nil
        #endif
    }

    /// How much resident memory `cores` more settled cores take, after a first one; and the cores.
    static func growth(
        _ datagrams: [[UInt8]], _ keys: [NodeID: Int], cores: Int, sharing: Bool
    ) -> (Int, [ClusterCore])? {
        var kept: [ClusterCore] = []
        // The simulator's verifier holds one copy of each announcement for all its cores; a
        // daemon's core verifies and keeps its own.
        let shared = SignatureCache()
        guard let first = settledCore(datagrams, keys, sharing ? shared : Ed25519Verifier()) else { return nil }
        kept.append(first)
        let before = residentBytes()
        for _ in 0..<cores {
            guard let core = settledCore(datagrams, keys, sharing ? shared : Ed25519Verifier()) else { return nil }
            kept.append(core)
        }
        return (residentBytes() - before, kept)
    }

    /// A core that met every member in `datagrams` and gossiped until its news was all sent.
    static func settledCore(
        _ datagrams: [[UInt8]], _ keys: [NodeID: Int], _ verifier: any SignatureVerifier
    ) -> ClusterCore? {
        let start: Int64 = 1_800_000_000_000_000_000
        var rng = SplitMix64(state: 7)
        var settings = CoreSettings()
        settings.maxMembers = datagrams.count + 2
        settings.maxUnconfirmed = datagrams.count + 1
        settings.newMembersPerSource = datagrams.count + 1
        var core = ClusterCore(
            key: Simulation.nodeKey(0), name: "node-0", addresses: [Simulation.nodeAddress(0)],
            incarnation: 1_800_000_000, settings: settings,
            policy: FilePolicy(allowedSigners: [:]), bootstrap: [], now: start)
        core.verifier = verifier
        for datagram in datagrams {
            guard let packet = try? WireCodec.decode(datagram) else { return nil }
            _ = core.handle(.packet(packet, from: Simulation.nodeAddress(1)), now: start, rng: &rng)
        }
        // Confirm them all: answer the ping each one is sent.
        answerPings(core.handle(.tick, now: start, rng: &rng), of: &core, keys, now: start, rng: &rng)
        guard core.members.values.filter(\.confirmed).count == datagrams.count else { return nil }
        // Gossip until every announcement was sent its share of times and dropped (the queue of
        // news a settled core holds is empty), at most a simulated day; every member answers its
        // probes, so all stay alive.
        var now = start
        var ticks = 0
        while core.queuedGossip > 0 && ticks < 432_000 {
            now += 200_000_000
            ticks += 1
            answerPings(core.handle(.tick, now: now, rng: &rng), of: &core, keys, now: now, rng: &rng)
        }
        let alive = core.members.values.filter { $0.confirmed && $0.state == .alive }.count
        return core.queuedGossip == 0 && alive == datagrams.count ? core : nil
    }

    /// Each member acks the pings `directives` send it, at once.
    static func answerPings(
        _ directives: [CoreDirective], of core: inout ClusterCore, _ keys: [NodeID: Int], now: Int64,
        rng: inout SplitMix64
    ) {
        for directive in directives {
            guard case .send(let packet, _, let node) = directive, case .ping(let sequence, _) = packet.message,
                let index = keys[node]
            else { continue }
            let ack = Packet(sender: node, message: .ack(sequence: sequence, responder: node, clock: now))
            _ = core.handle(.packet(ack, from: Simulation.nodeAddress(index)), now: now, rng: &rng)
        }
    }

    /// Resident bytes of this process (the second field of `/proc/self/statm`, in pages).
    /// Free heap pages are handed back first (glibc's `malloc_trim`, looked up at run time), so
    /// memory freed by earlier work and reused later does not hide what the cores keep.
    static func residentBytes() -> Int {
        #if os(Linux)
            typealias Trim = @convention(c) (Int) -> Int32
            if let trim = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") {
                _ = unsafeBitCast(trim, to: Trim.self)(0)
            }
            let descriptor = open("/proc/self/statm", O_RDONLY)
            guard descriptor >= 0 else { return 0 }
            defer { close(descriptor) }
            var buffer = [UInt8](repeating: 0, count: 256)
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            guard count > 0 else { return 0 }
            let fields = buffer.prefix(count).split(separator: UInt8(ascii: " "))
            guard fields.count > 1, let pages = Int(String(decoding: fields[1], as: UTF8.self)) else { return 0 }
            return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
        #else
            return 0
        #endif
    }
}
