import DataMesherCore
import DataMesherStore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Counters of what arrived from the network and was dropped.
public struct ClusterCounters: Sendable, Equatable, Codable {
    public var packetsIn = 0
    public var packetsOut = 0
    public var bytesIn = 0
    public var bytesOut = 0
    public var packetsDropped = 0
    public var syncs = 0
    public var fetches = 0
    /// Bytes read from and written to cluster TCP streams.
    public var tcpBytesIn = 0
    public var tcpBytesOut = 0
    /// This node's clock minus the median of its confirmed peers' clocks (ns); nil until a peer
    /// answered a direct probe.
    public var clockOffsetNanoseconds: Int64?
}

extension NetworkShell: Service {}

/// The SwiftNIO shell around the pure `ClusterCore`: it owns the sockets and the timer, feeds the
/// core packets and ticks, and carries out its directives (send, store/fetch, sync).
public actor NetworkShell {
    let node: Replica
    var core: ClusterCore
    var rng = SystemRandomNumberGenerator()
    let logger: Logger
    let port: Int
    let bindAddresses: [String]
    /// One outbox per UDP socket, drained by that socket's only writer.
    var outboxes: [Outbox] = []
    /// Destinations of sends that closed a UDP socket, or that have no route, and until when
    /// nothing goes to them.
    var unsendable: [SocketAddress: Int64] = [:]
    /// One line a minute about this node's key heard from elsewhere (it repeats every gossip
    /// round while two processes share the key).
    let ownKeyLogBudget = LogBudget(perWindow: 1, window: 60_000_000_000)
    /// Destinations the kernel had a route to, and until when that is taken as still true.
    var routed: [SocketAddress: Int64] = [:]
    /// Work the shell starts (push/pulls, fetches, identity checks, disk writes): run in a task
    /// group of `run()`, so that it ends with the service group.
    let jobs: AsyncStream<@Sendable () async -> Void>
    let jobQueue: AsyncStream<@Sendable () async -> Void>.Continuation
    /// Bound by `bind()` before the service group starts, so a busy address stops the daemon
    /// with one line before anything runs.
    var udpChannels: [DatagramSocket] = []
    var tcpServers: [NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>] = []
    /// Inbound TCP streams open now from strangers and from members' hosts (each capped in total
    /// and per host, so strangers cannot take the members' slots), and outgoing ones.
    let inboundFromStrangers: StreamCounter
    let inboundFromMembers: StreamCounter
    let outgoing: StreamCounter
    /// What all streams may hold of records and frames not yet received whole.
    let receiveBudget = ReceiveBudget()
    /// Big versions being sent now, one upload each (`Fetcher.exclusiveUploadSize`).
    let uploads = StreamCounter(total: .max, perSource: 1)
    /// Big versions being received now, by name, served while they arrive.
    let partials = NIOLockedValueBox<[FileName: PartialContent]>([:])
    /// The hosts of the members listed now, read by the accept loop.
    let memberHosts = NIOLockedValueBox<Set<String>>([])
    let snapshot: NIOLockedValueBox<(members: [MemberInfo], counters: ClusterCounters)>
    var counters = ClusterCounters()
    var lastClockWarning: Int64 = .min
    /// The `membershipVersion` of the member list last published (nil: never).
    var publishedMembership: UInt64?
    var publishedAt: Int64 = .min
    var rememberedAt: Int64 = .min
    var membersToRemember = false
    let group = MultiThreadedEventLoopGroup.singleton

    // Encryption and admission (docs/PROTOCOL.md, "Encryption" and "Node identities").
    let security: ClusterSecurity
    let me: NodeID
    var sealer: PacketSealer?
    var opener: PacketOpener?
    var trials = TrialLimiter()
    /// Who proved their node ID at which address, and the announcements held until they do.
    var admission: Admission
    /// From accept to a completed handshake, at most (memberlist's TCPTimeout).
    static let handshakeTimeout: Int64 = 10
    /// An accepted stream on which nothing was read or written for this long is closed: a peer
    /// that went quiet keeps neither a stream slot nor what it sent of a record (a fetcher
    /// leaves a holder that stalls for 30 s). One that trickles meets the `PaceFloor`.
    static let streamIdleTimeout: Int64 = 60
    /// A stream this node opened on which nothing arrived for this long is closed: the peer it
    /// waits for (a fetch's holder that sends no content, a push/pull's callee) is left, and the
    /// fetcher asks another holder.
    static let dialedStreamSilence: Int64 = 30
    /// The "refused cluster connection" lines (`noteRefused`) a flood of junk connections may write.
    let refusedStreamLogBudget = LogBudget()

    /// What to fetch from whom, on which stream (the core's `Fetcher`; ContentFetch.swift runs
    /// its streams).
    var fetcher = Fetcher()

    public init(
        node: Replica, bindAddresses: [String], settings: CoreSettings, security: ClusterSecurity,
        budget: DescriptorBudget, logger: Logger
    ) {
        self.node = node
        (jobs, jobQueue) = AsyncStream.makeStream(of: (@Sendable () async -> Void).self)
        inboundFromStrangers = StreamCounter(
            total: budget.inboundStreams, perSource: budget.inboundStreamsPerSource)
        inboundFromMembers = StreamCounter(
            total: budget.inboundStreams, perSource: budget.inboundStreamsPerSource)
        outgoing = StreamCounter(total: budget.outgoingStreams, perSource: budget.outgoingStreams)
        self.logger = logger
        self.port = Int(node.config.cluster.port)
        self.bindAddresses = bindAddresses
        self.security = security
        let now = WallClock.now()
        let addresses = bindAddresses.map { PeerAddress(host: $0, port: node.config.cluster.port) }
        self.me = security.nodeKey.id
        admission = Admission(me: security.nodeKey.id)
        if let ringKey = security.ring.first {
            var rng = SystemRandomNumberGenerator()
            sealer = PacketSealer(
                ringKey: ringKey, salt: (0..<Seal.saltLength).map { _ in UInt8.random(in: 0...255, using: &rng) })
            opener = PacketOpener(ring: security.ring)
        }
        // The members known when it last ran are tried too, so a node restarted while its
        // bootstrap nodes are down still finds the others (as Serf's snapshot does).
        let remembered = KnownMembers.read(stateDir: node.config.stateDir).filter {
            !node.config.cluster.bootstrapNodes.contains($0)
        }
        var core = ClusterCore(
            key: security.nodeKey, name: node.nodeName, addresses: addresses,
            // Seconds since the epoch: a restarted node always outbids what others remember.
            incarnation: UInt64(max(0, now / 1_000_000_000)), settings: settings, policy: node.policy,
            bootstrap: node.config.cluster.bootstrapNodes + remembered, now: now)
        // A version whose content went missing is not held: peers that have it send it again.
        core.load(
            node.store.list().filter { $0.state != .missing }.map(\.version), lost: node.store.missing())
        self.core = core
        snapshot = node.clusterSnapshot
    }

    // MARK: Running

    /// Binds UDP and TCP on every address. A failure closes what was bound and says which
    /// address in one line.
    public func bind() async throws {
        do {
            for address in bindAddresses {
                udpChannels.append(try await bindDatagrams(address))
                let tcp = try await ServerBootstrap(group: group)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .bind(host: address, port: port) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try GuardedStream.wrap(
                                channel, idle: IdleStateHandler(allTimeout: .seconds(Self.streamIdleTimeout)),
                                logger: self.logger)
                        }
                    }
                tcpServers.append(tcp)
            }
        } catch {
            await closeAll()
            let address = PeerAddress(
                host: bindAddresses[min(udpChannels.count, bindAddresses.count - 1)], port: UInt16(port))
            throw ClusterBindError(
                description: "cluster.port: cannot bind \(address) (UDP and TCP): \(ClusterBindError.reason(error))")
        }
    }

    /// Closes every bound channel (each async channel must be finished, not only dropped).
    func closeAll() async {
        for udp in udpChannels { try? await udp.channel.executeThenClose { _, _ in } }
        for tcp in tcpServers { try? await tcp.executeThenClose { _, _ in } }
        udpChannels = []
        tcpServers = []
    }

    /// Runs until cancelled or shut down gracefully (binding first if `bind()` was not called).
    public func run() async throws {
        if udpChannels.isEmpty { try await bind() }
        for address in bindAddresses {
            logger.info("cluster listening on \(PeerAddress(host: address, port: UInt16(port))) (UDP and TCP)")
        }
        let udpChannels = self.udpChannels
        let tcpServers = self.tcpServers
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (udp, address) in zip(udpChannels, bindAddresses) {
                group.addTask { await self.runDatagrams(udp, boundTo: address) }
            }
            let jobs = self.jobs
            group.addTask {
                await withDiscardingTaskGroup { running in
                    for await job in jobs { running.addTask { await job() } }
                }
            }
            for server in tcpServers {
                group.addTask {
                    try await server.executeThenClose { connections in
                        try await withThrowingDiscardingTaskGroup { connectionGroup in
                            for try await connection in connections {
                                let host = connection.channel.remoteAddress?.ipAddress ?? ""
                                let counter =
                                    self.memberHosts.withLockedValue { $0.contains(host) }
                                    ? self.inboundFromMembers : self.inboundFromStrangers
                                guard counter.enter(host) == nil else {
                                    // Over the cap: closed at once, before any handshake work.
                                    try? await connection.executeThenClose { _, _ in }
                                    self.node.metrics.refusedStream("inbound_limit")
                                    continue
                                }
                                connectionGroup.addTask {
                                    await self.serve(connection)
                                    counter.leave(host)
                                }
                            }
                        }
                    }
                }
            }
            group.addTask { try await self.timerLoop() }
            // Ends on graceful shutdown or cancellation; the sockets and jobs end with the group.
            try await gracefulShutdown()
            await self.leave()
            self.jobQueue.finish()
            group.cancelAll()
        }
    }

    /// The outbox of the socket bound to `outbox.address`, in place of its last one.
    func setOutbox(_ outbox: Outbox) {
        if let index = outboxes.firstIndex(where: { $0.address == outbox.address }) {
            outboxes[index] = outbox
        } else {
            outboxes.append(outbox)
        }
    }

    /// Runs `work` in the shell's job group (it ends with the service group).
    nonisolated func spawn(_ work: @escaping @Sendable () async -> Void) { jobQueue.yield(work) }

    func timerLoop() async throws {
        while !Task.isCancelled {
            let wait = max(2_000_000, min(core.nextDeadline - WallClock.now(), 1_000_000_000))
            try await Task.sleep(for: .nanoseconds(wait))
            handle(.tick)
        }
    }

    /// Says goodbye and waits (at most a second) until the datagrams that say so have left.
    func leave() async {
        handle(.leave)
        let outboxes = self.outboxes
        self.outboxes = []
        for outbox in outboxes { outbox.queue.finish() }
        _ = try? await withTimeout(seconds: 1) {
            for outbox in outboxes { _ = await outbox.writer.value }
        }
        logger.info("left the cluster")
    }
}
