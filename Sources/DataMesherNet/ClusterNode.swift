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

extension ClusterNode: Service {}

/// The SwiftNIO shell around the pure `Mesh`: it owns the sockets and the timer, feeds the
/// core packets and ticks, and carries out its directives (send, store/fetch, sync).
public actor ClusterNode {
    let node: MeshNode
    var mesh: Mesh
    var rng = SystemRandomNumberGenerator()
    let logger: Logger
    let port: Int
    let bindAddresses: [String]
    var udpWriters: [(isIPv6: Bool, writer: NIOAsyncChannelOutboundWriter<AddressedEnvelope<ByteBuffer>>)] = []
    /// Bound by `bind()` before the service group starts, so a busy address stops the daemon
    /// with one line before anything runs.
    var udpChannels: [NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>] = []
    var tcpServers: [NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>] = []
    /// Inbound TCP streams open now, in total and per source host.
    let inbound = InboundStreams(
        total: ClusterNode.maxInboundStreams, perSource: ClusterNode.maxInboundStreamsPerSource)
    let snapshot: NIOLockedValueBox<(members: [MemberInfo], counters: ClusterCounters)>
    var counters = ClusterCounters()
    var lastClockWarning: Int64 = .min
    /// The `membershipVersion` of the member list last published (nil: never).
    var publishedMembership: UInt64?
    var publishedAt: Int64 = .min
    var publishedHoldings: UInt64?
    var rememberedAt: Int64 = .min
    var membersToRemember = false
    let group = MultiThreadedEventLoopGroup.singleton

    // Encryption and admission (docs/PROTOCOL.md, "Encryption" and "Node identities").
    let security: ClusterSecurity
    let me: NodeID
    var sealer: PacketSealer?
    var opener: PacketOpener?
    var trials = TrialLimiter()
    /// Members whose node ID was proved, by certificate, at these addresses (we dialed them there).
    var admitted: [NodeID: (addresses: Set<PeerAddress>, until: Date)] = [:]
    /// Announcements of members not admitted yet, fed to the core once they are.
    var held: [NodeID: MemberRecord] = [:]
    /// When each address was last dialed to check its identity.
    var lastVerification: [PeerAddress: Int64] = [:]
    static let maxHeld = 1024
    static let verificationInterval: Int64 = 2_000_000_000
    /// From accept to a completed handshake, at most (memberlist's TCPTimeout).
    static let handshakeTimeout: Int64 = 10
    /// Inbound streams open at once, in total and from one source host.
    static let maxInboundStreams = 128
    static let maxInboundStreamsPerSource = 16

    public init(
        node: MeshNode, bindAddresses: [String], settings: MeshSettings, security: ClusterSecurity, logger: Logger
    ) {
        self.node = node
        self.logger = logger
        self.port = Int(node.config.cluster.port)
        self.bindAddresses = bindAddresses
        self.security = security
        let now = WallClock.now()
        let addresses = bindAddresses.map { PeerAddress(host: $0, port: node.config.cluster.port) }
        self.me = security.nodeKey.id
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
        var mesh = Mesh(
            key: security.nodeKey, name: node.nodeName, addresses: addresses,
            // Seconds since the epoch: a restarted node always outbids what others remember.
            incarnation: UInt64(max(0, now / 1_000_000_000)), settings: settings, policy: node.policy,
            bootstrap: node.config.cluster.bootstrapNodes + remembered, now: now)
        // A version whose content went missing is not held: peers that have it send it again.
        mesh.load(node.store.list().filter { $0.state != .missing }.map(\.version))
        mesh.announceHoldings(configured: Array(node.policy.allowedSigners.keys))
        self.mesh = mesh
        snapshot = node.clusterSnapshot
    }

    // MARK: Running

    /// Binds UDP and TCP on every address. A failure closes what was bound and says which
    /// address in one line.
    public func bind() async throws {
        do {
            for address in bindAddresses {
                let udp = try await DatagramBootstrap(group: group)
                    .channelOption(.socketOption(.so_reuseaddr), value: 1)
                    // Room for bursts: a datagram the kernel drops is never seen, let alone counted.
                    .channelOption(.socketOption(.so_rcvbuf), value: 4 << 20)
                    .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
                    .bind(host: address, port: port) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>(
                                wrappingChannelSynchronously: channel)
                        }
                    }
                udpChannels.append(udp)
                let tcp = try await ServerBootstrap(group: group)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .bind(host: address, port: port) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
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
        for udp in udpChannels { try? await udp.executeThenClose { _, _ in } }
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
            for udp in udpChannels {
                group.addTask {
                    try await udp.executeThenClose { inbound, outbound in
                        await self.addWriter(outbound, isIPv6: udp.channel.localAddress?.protocol == .inet6)
                        for try await envelope in inbound { await self.receive(envelope) }
                    }
                }
            }
            for server in tcpServers {
                group.addTask {
                    try await server.executeThenClose { connections in
                        try await withThrowingDiscardingTaskGroup { connectionGroup in
                            for try await connection in connections {
                                guard let host = connection.channel.remoteAddress?.ipAddress,
                                    self.inbound.enter(host)
                                else {
                                    // Over the cap: closed at once, before any handshake work.
                                    try? await connection.executeThenClose { _, _ in }
                                    self.node.metrics.refusedStream("inbound_limit")
                                    continue
                                }
                                connectionGroup.addTask {
                                    await self.serve(connection)
                                    self.inbound.leave(host)
                                }
                            }
                        }
                    }
                }
            }
            group.addTask { try await self.timerLoop() }
            // Ends on graceful shutdown or cancellation; the sockets close with the group.
            try await gracefulShutdown()
            await self.leave()
            group.cancelAll()
        }
    }

    func addWriter(_ writer: NIOAsyncChannelOutboundWriter<AddressedEnvelope<ByteBuffer>>, isIPv6: Bool) {
        udpWriters.append((isIPv6, writer))
    }

    func timerLoop() async throws {
        while !Task.isCancelled {
            let wait = max(2_000_000, min(mesh.nextDeadline - WallClock.now(), 1_000_000_000))
            try await Task.sleep(for: .nanoseconds(wait))
            handle(.tick)
        }
    }

    func leave() async {
        handle(.leave)
        try? await Task.sleep(for: .milliseconds(200))
        logger.info("left the cluster")
    }

    // MARK: The core

    /// Feeds the core and carries out what it asks.
    func handle(_ input: MeshInput) {
        let directives = mesh.handle(input, now: WallClock.now(), rng: &rng)
        for directive in directives { execute(directive) }
        publish()
    }

    func execute(_ directive: MeshDirective) {
        switch directive {
        case .send(let packet, let address, let receiver):
            send(WireCodec.encode(packet), to: address, node: receiver)
        case .store(let version, let inline, let source):
            Task { await self.store(version, inline: inline, from: source) }
        case .sync(let address, let join):
            Task { await self.sync(with: address, join: join) }
        case .memberChanged(let record, let previous):
            let metadata: Logger.Metadata = [
                "dm.peer": "\(record.announcement.name)", "dm.peer_id": "\(record.id)",
                "dm.incarnation": "\(record.announcement.incarnation)",
            ]
            var event: NodeEvent.Kind?
            switch record.state {
            case .alive:
                logger.info(previous == nil ? "member joined" : "member alive again", metadata: metadata)
                event = .memberJoined
            case .suspect: logger.info("member suspected", metadata: metadata)
            case .dead:
                logger.warning("member declared dead", metadata: metadata)
                event = .memberFailed
            case .left:
                logger.info("member left", metadata: metadata)
                event = .memberLeft
            }
            if let event {
                node.events.publish(NodeEvent(kind: event, time: WallClock.now(), member: memberInfo(record)))
            }
        case .droppedClaim(let reason):
            node.metrics.droppedPacket("claim_" + reason)
            logger.debug("dropped membership claim", metadata: ["dm.reason": "\(reason)"])
        case .refused(let name, let refusal, let from):
            node.metrics.refused(refusal)
            logger.info(
                "refused version from peer",
                metadata: ["dm.file": "\(name)", "dm.reason": "\(refusal.reason)", "dm.peer_id": "\(from)"])
        }
    }

    /// Makes members and counters visible to the HTTP API. The member list is rebuilt only
    /// when the core says it changed; most packets change nothing but the counters.
    func publish() {
        if mesh.holdingsVersion != publishedHoldings {
            publishedHoldings = mesh.holdingsVersion
            let holdings = mesh.holdings.mapValues { claims in
                Dictionary(uniqueKeysWithValues: claims.map { ($0.key.hex, $0.value) })
            }
            node.holdingsSnapshot.withLockedValue { $0 = holdings }
        }
        let tcp = node.metrics.tcpTotals.withLockedValue { $0 }
        counters.tcpBytesIn = tcp.in
        counters.tcpBytesOut = tcp.out
        noteClockOffset()
        let counters = self.counters
        // Also once a second: clock offsets move without the membership changing.
        let now = WallClock.now()
        if membersToRemember { rememberMembers(now: now) }
        guard mesh.membershipVersion != publishedMembership || now.subtractingSaturated(publishedAt) > 1_000_000_000
        else {
            snapshot.withLockedValue { $0.counters = counters }
            return
        }
        if publishedMembership != mesh.membershipVersion { membersToRemember = true }
        publishedMembership = mesh.membershipVersion
        publishedAt = now
        let members = mesh.localState.map(memberInfo)
        snapshot.withLockedValue { $0 = (members, counters) }
    }

    /// Writes the addresses of the confirmed live members to `<state_dir>/members` (at most
    /// every 10 s, once they changed), for the next start.
    func rememberMembers(now: Int64) {
        guard now.subtractingSaturated(rememberedAt) > 10_000_000_000 else { return }
        membersToRemember = false
        rememberedAt = now
        let addresses = mesh.localState.dropFirst().filter { $0.state == .alive }.compactMap(\.address)
        guard !addresses.isEmpty else { return }
        let stateDir = node.config.stateDir
        let logger = logger
        Task {
            do { try await Blocking.run { try KnownMembers.write(addresses, stateDir: stateDir) } } catch {
                logger.debug("could not remember the members: \(error)")
            }
        }
    }

    func memberInfo(_ record: MemberRecord) -> MemberInfo {
        var info = MemberInfo(
            id: record.id.hex, name: record.announcement.name,
            addresses: record.announcement.addresses.map(\.description),
            state: MemberInfo.State(rawValue: record.state.name) ?? .dead,
            incarnation: record.announcement.incarnation)
        info.clock_offset_seconds = mesh.clockOffsets[record.id].map { Double($0) / 1e9 }
        info.certificate_expires_at = admitted[record.id].map { ISO8601DateFormatter().string(from: $0.until) }
        return info
    }

    /// Keeps the clock offset current, and says so (at most every 10 minutes) when it is more
    /// than half of `max_clock_skew`: such a node would refuse correctly-clocked versions as
    /// "in the future", or have its own refused, while it looks alive.
    func noteClockOffset() {
        guard let median = mesh.medianClockOffset else { return }
        let offset = Int64(0).subtractingSaturated(median)
        counters.clockOffsetNanoseconds = offset
        node.metrics.clockOffset.record(Double(offset) / 1e9)
        let limit = Int64(clamping: node.config.maxClockSkew / 2)
        let now = WallClock.now()
        guard offset.magnitude > UInt64(limit), now.subtractingSaturated(lastClockWarning) > 600_000_000_000 else {
            return
        }
        lastClockWarning = now
        logger.warning(
            "this node's clock differs from its peers' by more than half of max_clock_skew: versions may be refused",
            metadata: ["dm.clock_offset_seconds": "\(Double(offset) / 1e9)"])
    }

    /// A version accepted through the local API.
    public func accepted(_ version: FileVersion) {
        handle(.localVersion(version, inline: inlineContent(version)))
    }

    public func forgotten(_ name: FileName) { handle(.forgotten(name)) }

    nonisolated func inlineContent(_ version: FileVersion) -> [UInt8]? {
        if version.isTombstone { return [] }
        guard version.contentLength <= UInt64(WireCodec.maxInlineContent) else { return nil }
        guard let bytes = try? DiskIO.readFile(node.store.contentPath(version.name), limit: WireCodec.maxInlineContent),
            bytes.count == Int(version.contentLength)
        else { return nil }
        return bytes
    }

    // MARK: UDP

    func receive(_ envelope: AddressedEnvelope<ByteBuffer>) {
        counters.packetsIn += 1
        counters.bytesIn += envelope.data.readableBytes
        node.metrics.packetsIn.increment()
        node.metrics.bytesIn.increment(by: envelope.data.readableBytes)
        guard let source = PeerAddress(envelope.remoteAddress) else { return }
        do {
            var bytes = Array(envelope.data.readableBytesView)
            if var opener {
                // A datagram of a known sender costs one decryption and always gets it; only a new
                // sender (trying every keyring key) is limited, per source and overall.
                if !opener.knowsSender(of: bytes) && !trials.allow(source.host, now: WallClock.now()) {
                    drop(reason: "rate_limited", from: source, log: false)
                    return
                }
                bytes = try opener.open(bytes, receiver: me)
                self.opener = opener
            }
            var packet = try WireCodec.decode(bytes)
            if security.identity != nil {
                guard let admittedPacket = admit(packet, from: source) else { return }
                packet = admittedPacket
            }
            handle(.packet(packet, from: source))
        } catch {
            let reason = (error as? SealError)?.reason ?? (error as? WireError)?.reason ?? "invalid"
            drop(reason: reason, from: source, log: true)
        }
    }

    func drop(reason: String, from source: PeerAddress, log: Bool) {
        counters.packetsDropped += 1
        node.metrics.droppedPacket(reason)
        if log { logger.debug("dropped packet", metadata: ["dm.peer": "\(source)", "dm.reason": "\(reason)"]) }
        publish()
    }

    // MARK: Admission (node identities)

    /// A packet from a member proved at its source host, with announcements of members not proved
    /// yet held back (and their addresses dialed); nil when the sender itself is not admitted.
    func admit(_ packet: Packet, from source: PeerAddress) -> Packet? {
        guard isAdmitted(packet.sender, at: source) else {
            drop(reason: "unadmitted", from: source, log: true)
            verify(source)
            return nil
        }
        var packet = packet
        let now = WallClock.now()
        packet.items = packet.items.filter { item in
            guard case .alive(let announcement) = item else { return true }
            if isAdmitted(announcement.id, at: announcement.addresses.first) { return true }
            hold(MemberRecord(announcement: announcement, state: .alive, since: now, lastSource: nil))
            return false
        }
        return packet
    }

    func isAdmitted(_ id: NodeID, at address: PeerAddress?) -> Bool {
        if id == me { return true }
        guard let address, let entry = admitted[id] else { return false }
        return entry.addresses.contains(address) && entry.until > WallClock.date()
    }

    /// Merges a member list from push/pull; with node identities only members proved at their
    /// address pass, the others are held and dialed.
    func receiveState(_ members: [MemberRecord]) {
        guard security.identity != nil else {
            handle(.remoteState(members))
            return
        }
        var passed: [MemberRecord] = []
        for record in members {
            if isAdmitted(record.id, at: record.address) {
                passed.append(record)
            } else {
                hold(record)
            }
        }
        if !passed.isEmpty { handle(.remoteState(passed)) }
    }

    func hold(_ record: MemberRecord) {
        guard record.state == .alive || record.state == .suspect, let address = record.announcement.addresses.first
        else { return }
        if let previous = held[record.id] {
            if previous.announcement.incarnation <= record.announcement.incarnation { held[record.id] = record }
        } else if held.count < Self.maxHeld {
            held[record.id] = record
        }
        verify(address)
    }

    /// Dials `address` to learn who holds it (at most every 2 s per address).
    func verify(_ address: PeerAddress) {
        let now = WallClock.now()
        if let last = lastVerification[address], now - last < Self.verificationInterval { return }
        if lastVerification.count >= Self.maxHeld { lastVerification.removeAll() }
        lastVerification[address] = now
        Task {
            try? await self.dial(address, timeout: 10) { _ in }
        }
    }

    /// A peer proved its node ID (and certificate) on a stream we opened to `address`: admit it
    /// at that address (host and port), and let its held announcement through if that is where
    /// it said it is.
    func admitted(_ peer: VerifiedPeer, at address: PeerAddress) {
        guard security.identity != nil, let validUntil = peer.validUntil else { return }
        let wasKnown = admitted[peer.id]?.addresses.contains(address) == true
        var entry = admitted[peer.id] ?? (addresses: [], until: validUntil)
        entry.addresses.insert(address)
        entry.until = validUntil
        admitted[peer.id] = entry
        if !wasKnown {
            logger.info(
                "admitted cluster peer",
                metadata: ["dm.peer": "\(peer.name)", "dm.peer_id": "\(peer.id)", "dm.address": "\(address)"])
        }
        if let record = held[peer.id], isAdmitted(peer.id, at: record.announcement.addresses.first) {
            held[peer.id] = nil
            handle(.remoteState([record]))
        }
    }

    func send(_ bytes: [UInt8], to address: PeerAddress, node receiver: NodeID) {
        guard let remote = try? SocketAddress(ipAddress: address.host, port: Int(address.port)) else {
            logger.debug("cannot send to \(address): not an IP address")
            return
        }
        let isIPv6 = remote.protocol == .inet6
        guard let writer = udpWriters.first(where: { $0.isIPv6 == isIPv6 })?.writer else { return }
        var wire = bytes
        if var sealer {
            wire = sealer.seal(bytes, for: receiver)
            self.sealer = sealer
        }
        counters.packetsOut += 1
        counters.bytesOut += wire.count
        node.metrics.packetsOut.increment()
        node.metrics.bytesOut.increment(by: wire.count)
        let envelope = AddressedEnvelope(remoteAddress: remote, data: ByteBuffer(bytes: wire))
        Task { try? await writer.write(envelope) }
    }

    // MARK: TCP: serving

    nonisolated func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        let remote = connection.channel.remoteAddress.flatMap(PeerAddress.init)
        do {
            try await withTimeout(seconds: 300) {
                try await connection.executeThenClose { inbound, outbound in
                    // A stranger gets `handshakeTimeout` to prove itself, and room for a proof only.
                    let channel = connection.channel
                    let deadline = channel.eventLoop.scheduleTask(in: .seconds(Self.handshakeTimeout)) {
                        channel.close(promise: nil)
                    }
                    var session = try await StreamSession.open(
                        inbound: inbound, outbound: outbound, initiator: false, security: self.security,
                        metrics: self.node.metrics)
                    deadline.cancel()
                    guard let first = try await session.reader.frame() else { return }
                    switch first {
                    case .hello(let join, let members, let root):
                        try await self.answerSync(join: join, members: members, root: root, session: &session)
                    case .fetch(let name):
                        try await self.answerFetch(name, writer: session.writer)
                    default:
                        throw WireError.invalid("first message")
                    }
                }
            }
        } catch let refusal as HandshakeRefusal {
            noteRefused(refusal, peer: remote.map { "\($0)" } ?? "unknown")
        } catch {
            logger.debug("TCP session ended: \(error)")
        }
    }

    nonisolated func noteRefused(_ refusal: HandshakeRefusal, peer: String) {
        node.metrics.refusedStream(refusal.label)
        logger.warning(
            "refused cluster connection", metadata: ["dm.peer": "\(peer)", "dm.reason": "\(refusal.description)"])
    }

    nonisolated func answerSync(
        join: Bool, members: [MemberRecord], root: [UInt8], session: inout StreamSession
    ) async throws {
        let reply = await syncReply(members: members, root: root)
        try await session.writer.send(reply)
        guard case .reply(_, _, .some) = reply,
            case .summaries(let buckets, let theirs)? = try await session.reader.frame()
        else {
            return
        }
        let mine = await mesh.files.summaries(inBuckets: buckets)
        try await session.writer.send(.summaries(buckets: buckets, versions: mine))
        // Fetch what the caller has newer, from the caller's own listener.
        if let caller = members.first?.announcement.addresses.first {
            await fetchAll(await mesh.files.newerElsewhere(theirs), from: caller)
        }
    }

    /// Merges the caller's member list and answers with ours (and bucket digests if the roots differ).
    func syncReply(members: [MemberRecord], root: [UInt8]) -> SyncMessage {
        countSync()
        receiveState(members)
        let differs = root != mesh.files.rootDigest
        return .reply(
            members: mesh.localState, root: mesh.files.rootDigest, buckets: differs ? mesh.files.bucketDigests : nil)
    }

    func countSync() {
        counters.syncs += 1
        node.metrics.syncs.increment()
    }

    func countFetch() {
        counters.fetches += 1
        node.metrics.fetches.increment()
    }

    nonisolated func answerFetch(_ name: FileName, writer: StreamWriter) async throws {
        let store = node.store
        guard let (stored, file) = try await Blocking.run({ try store.openContent(name) }) else {
            // Tombstones and expired versions travel without content.
            let held = store.current(name)?.version
            try await writer.send(.fetchReply(held?.isTombstone == true ? held : nil))
            return
        }
        try await writer.send(.fetchReply(stored.version))
        var offset = 0
        let length = Int(stored.version.contentLength)
        while offset < length {
            let start = offset
            let chunk = try await Blocking.run { file.read(at: start, upTo: min(1 << 18, length - start)) }
            guard chunk.readableBytes > 0 else { throw WireError.truncated }
            offset += chunk.readableBytes
            try await writer.write(chunk)
        }
    }

    // MARK: TCP: calling

    /// Connects from the node's own bound address of the same family (firewall rules on
    /// multi-homed machines rely on the source), or from whatever the kernel picks when it has none.
    nonisolated func connect(_ address: PeerAddress) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        var bootstrap = ClientBootstrap(group: group).connectTimeout(.seconds(5))
        if let remote = try? SocketAddress(ipAddress: address.host, port: Int(address.port)),
            let local = bindAddresses.lazy.compactMap({ try? SocketAddress(ipAddress: $0, port: 0) })
                .first(where: { $0.protocol == remote.protocol })
        {
            bootstrap = bootstrap.bind(to: local)
        }
        return
            try await bootstrap
            .connect(host: address.host, port: Int(address.port)) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
    }

    /// Opens a stream to `address` (handshake included: a peer proving its identity is admitted
    /// at that host) and runs `body` on it, all within `timeout` seconds.
    nonisolated func dial<T: Sendable>(
        _ address: PeerAddress, timeout: Int64, _ body: @escaping @Sendable (inout StreamSession) async throws -> T
    ) async throws -> T {
        let channel = try await connect(address)
        do {
            return try await withTimeout(seconds: timeout) {
                try await channel.executeThenClose { inbound, outbound in
                    var session = try await StreamSession.open(
                        inbound: inbound, outbound: outbound, initiator: true, security: self.security,
                        metrics: self.node.metrics)
                    await self.admitted(session.peer, at: address)
                    return try await body(&session)
                }
            }
        } catch let refusal as HandshakeRefusal {
            noteRefused(refusal, peer: "\(address)")
            throw refusal
        }
    }

    /// Push/pull: exchange member lists, then (when the root digests differ) the summaries of
    /// differing buckets, and fetch what the peer has newer.
    nonisolated func sync(with address: PeerAddress, join: Bool) async {
        do {
            await countSync()
            let hello = SyncMessage.hello(join: join, members: await mesh.localState, root: await mesh.files.rootDigest)
            let (wanted, peerAddress) = try await dial(address, timeout: 30) { session in
                try await session.writer.send(hello)
                guard case .reply(let members, _, let buckets)? = try await session.reader.frame() else {
                    throw WireError.invalid("sync reply")
                }
                let peerAddress = members.first?.announcement.addresses.first ?? address
                await self.receiveState(members)
                guard let buckets else { return ([VersionSummary](), peerAddress) }
                let differing = await self.mesh.files.differingBuckets(buckets)
                let mine = await self.mesh.files.summaries(inBuckets: differing)
                try await session.writer.send(.summaries(buckets: differing, versions: mine))
                guard case .summaries(_, let theirs)? = try await session.reader.frame() else {
                    throw WireError.invalid("summaries")
                }
                return (await self.mesh.files.newerElsewhere(theirs), peerAddress)
            }
            if join { logger.info("joined through \(address)") }
            await fetchAll(wanted, from: peerAddress)
        } catch {
            logger.debug("sync with \(address) failed: \(error)")
        }
    }

    func fetchAll(_ summaries: [VersionSummary], from address: PeerAddress) {
        let now = WallClock.now()
        let configured = summaries.filter {
            node.policy.allowedSigners[$0.name] != nil && !isBackingOff($0.name, timestamp: $0.timestamp, now: now)
        }
        guard !configured.isEmpty else { return }
        Task {
            for summary in configured { await self.fetchAndStore(summary.name, from: address) }
        }
    }

    // MARK: Full disk

    /// A version this node could not store for want of space is not fetched again before
    /// `until`; the wait doubles with each failure (5 s up to 10 min), per version, and ends when
    /// the version is stored.
    var diskBackoff: [FileName: (timestamp: Int64, until: Int64, delay: Int64)] = [:]
    static let firstDiskBackoff: Int64 = 5_000_000_000
    static let maxDiskBackoff: Int64 = 600_000_000_000

    func isBackingOff(_ name: FileName, timestamp: Int64, now: Int64) -> Bool {
        guard let backoff = diskBackoff[name], backoff.timestamp == timestamp else { return false }
        return now < backoff.until
    }

    func backOff(_ version: FileVersion) {
        let now = WallClock.now()
        let previous = diskBackoff[version.name].flatMap { $0.timestamp == version.timestamp ? $0.delay : nil }
        let delay = min(previous.map { $0.multipliedSaturated(2) } ?? Self.firstDiskBackoff, Self.maxDiskBackoff)
        diskBackoff[version.name] = (version.timestamp, now.addingSaturated(delay), delay)
        logger.warning(
            "disk full: not fetching \(version.name) again for \(delay / 1_000_000_000) s",
            metadata: ["dm.file": "\(version.name)", "dm.reason": "disk_full"])
    }

    func storedAfterBackoff(_ name: FileName) { diskBackoff[name] = nil }

    /// Stores a version announced by gossip: inline content directly, or fetched over TCP.
    nonisolated func store(_ version: FileVersion, inline: [UInt8]?, from source: PeerAddress?) async {
        if await isBackingOff(version.name, timestamp: version.timestamp, now: WallClock.now()) {
            await handle(.storeFailed(version))
            return
        }
        if version.isTombstone || inline != nil {
            await commit(version, content: inline ?? [], peer: source.map { "\($0)" } ?? "gossip")
        } else if let source {
            await fetchAndStore(version.name, from: source, expected: version)
        } else {
            await handle(.storeFailed(version))
        }
    }

    nonisolated func fetchAndStore(_ name: FileName, from address: PeerAddress, expected: FileVersion? = nil) async {
        await countFetch()
        do {
            try await dial(address, timeout: 600) { session in
                try await session.writer.send(.fetch(name))
                guard case .fetchReply(let offered)? = try await session.reader.frame() else {
                    throw WireError.invalid("fetch reply")
                }
                guard let version = offered, version.name == name else {
                    if let expected { await self.handle(.storeFailed(expected)) }
                    return
                }
                if version.isTombstone {
                    await self.commit(version, content: [], peer: "\(address)")
                    return
                }
                // Refused (and logged) before any content is transferred.
                if self.node.precheck(
                    name: name, signer: version.signer, contentLength: version.contentLength,
                    timestamp: version.timestamp, validFor: version.validFor, signature: version.signature,
                    origin: "\(address)") != nil
                {
                    if let expected { await self.handle(.storeFailed(expected)) }
                    return
                }
                // No room: say so, and wait before trying this version again (not at every push/pull).
                if self.node.spaceProblem(forUpload: version.contentLength) != nil {
                    await self.backOff(version)
                    if let expected { await self.handle(.storeFailed(expected)) }
                    return
                }
                let store = self.node.store
                let upload = try await Blocking.run { try store.makeUpload() }
                defer { upload.discard() }
                try await session.reader.stream(version.contentLength) { chunk in
                    try await Blocking.run { try chunk.withUnsafeReadableBytes { try upload.write($0) } }
                }
                _ = try await Blocking.run { try upload.finish() }
                await self.submit(version, upload: upload, peer: "\(address)")
            }
        } catch let error as DiskError where error.isDiskFull {
            node.noteDiskFull(error, path: node.store.stateDir, origin: "\(address)")
            if let expected {
                await backOff(expected)
                await handle(.storeFailed(expected))
            }
        } catch {
            logger.info("fetch of \(name) from \(address) failed: \(error)")
            if let expected { await handle(.storeFailed(expected)) }
        }
    }

    nonisolated func commit(_ version: FileVersion, content: [UInt8], peer: String) async {
        do {
            let store = node.store
            let upload = try await Blocking.run { () throws -> Upload? in
                if version.isTombstone { return nil }
                let upload = try store.makeUpload()
                try content.withUnsafeBytes { try upload.write($0) }
                try upload.finish()
                return upload
            }
            defer { upload?.discard() }
            await submit(version, upload: upload, peer: peer)
        } catch {
            logger.error("storing \(version.name) failed: \(error)")
            await handle(.storeFailed(version))
        }
    }

    /// The same acceptance path as a local upload: every signature is checked here again.
    nonisolated func submit(_ version: FileVersion, upload: Upload?, peer: String) async {
        do {
            switch try await node.submit(version, content: upload, origin: peer) {
            case .stored:
                await storedAfterBackoff(version.name)
                await handle(.stored(version, inline: inlineContent(version)))
            case .refused:
                await handle(.storeFailed(version))
            }
        } catch {
            logger.error("storing \(version.name) failed: \(error)")
            await handle(.storeFailed(version))
        }
    }
}

extension PeerAddress {
    init?(_ address: SocketAddress) {
        guard let ip = address.ipAddress, let port = address.port, let port16 = UInt16(exactly: port) else {
            return nil
        }
        self.init(host: ip, port: port16)
    }
}

/// The members a node knew when it last ran: `<state_dir>/members`, one `host:port` a line.
enum KnownMembers {
    static let maxEntries = 256

    static func path(_ stateDir: String) -> String { stateDir + "/members" }

    static func read(stateDir: String) -> [PeerAddress] {
        guard let bytes = try? DiskIO.readFile(path(stateDir), limit: 64 * 1024) else { return [] }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").prefix(maxEntries)
            .compactMap { PeerAddress.parse(String($0)) }
    }

    static func write(_ addresses: [PeerAddress], stateDir: String) throws {
        let text = addresses.prefix(maxEntries).map { "\($0)\n" }.joined()
        try DiskIO.writeFileAtomically(path(stateDir), bytes: Array(text.utf8))
    }
}

/// A cluster address that could not be bound, in one line.
public struct ClusterBindError: Error, CustomStringConvertible {
    public let description: String

    static func reason(_ error: Error) -> String {
        if let io = error as? IOError {
            if io.errnoCode == EADDRINUSE { return "address already in use" }
            if io.errnoCode == EADDRNOTAVAIL { return "address not available on this machine" }
            if io.errnoCode == EACCES { return "permission denied" }
        }
        return "\(error)"
    }
}

/// Inbound TCP streams open now, capped in total and per source host.
final class InboundStreams: Sendable {
    let total: Int
    let perSource: Int
    let open = NIOLockedValueBox<(total: Int, bySource: [String: Int])>((0, [:]))

    init(total: Int, perSource: Int) {
        self.total = total
        self.perSource = perSource
    }

    /// Counts a new stream from `host`; false when a cap is reached (the stream must be closed).
    func enter(_ host: String) -> Bool {
        open.withLockedValue { open in
            let fromHost = open.bySource[host, default: 0]
            guard open.total < total, fromHost < perSource else { return false }
            open.total += 1
            open.bySource[host] = fromHost + 1
            return true
        }
    }

    func leave(_ host: String) {
        open.withLockedValue { open in
            open.total -= 1
            let left = open.bySource[host, default: 1] - 1
            open.bySource[host] = left > 0 ? left : nil
        }
    }
}

struct TimeoutError: Error, CustomStringConvertible {
    var description: String { "timed out" }
}

/// Runs `body`, cancelling it after `seconds`.
func withTimeout<T: Sendable>(seconds: Int64, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            throw TimeoutError()
        }
        guard let result = try await group.next() else { throw TimeoutError() }
        group.cancelAll()
        return result
    }
}
