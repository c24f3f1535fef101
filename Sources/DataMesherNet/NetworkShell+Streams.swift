import DataMesherCore
import DataMesherStore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Cluster TCP streams: serving and dialing, and the push/pull exchange (docs/PROTOCOL.md).
extension NetworkShell {
    // MARK: TCP: serving

    nonisolated func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        let remote = connection.channel.remoteAddress.flatMap(PeerAddress.init)
        // No total deadline: the pipeline closes a stream that goes quiet or falls below the
        // pace floor (`GuardedStream.wrap`), so a transfer over a slow link may take as long as it needs.
        do {
            try await connection.executeThenClose { inbound, outbound in
                // A stranger gets `handshakeTimeout` to prove itself, and room for a proof only.
                let channel = connection.channel
                let deadline = channel.eventLoop.scheduleTask(in: .seconds(Self.handshakeTimeout)) {
                    channel.close(promise: nil)
                }
                var session = try await StreamSession.open(
                    inbound: inbound, outbound: outbound, initiator: false, security: self.security,
                    metrics: self.node.metrics, budget: self.receiveBudget)
                deadline.cancel()
                guard let first = try await session.reader.frame() else { return }
                switch first {
                case .hello:
                    await self.countSync()
                    let (exchange, steps) = try await self.advance(PushPull(.callee), with: first)
                    try await self.run(exchange, from: steps, on: &session)
                case .fetch(let name):
                    try await self.answerFetches(first: name, session: &session)
                default:
                    throw WireError.invalid("first message")
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
        // Anyone who can reach the cluster port can make refusals: the log gets a bounded share.
        var metadata: Logger.Metadata = ["dm.peer": "\(peer)", "dm.reason": "\(refusal.description)"]
        guard refusedStreamLogBudget.admit(now: WallClock.now(), noting: &metadata) else { return }
        logger.warning("refused cluster connection", metadata: metadata)
    }

    func countSync() {
        counters.syncs += 1
        node.metrics.syncs.increment()
    }

    // MARK: TCP: calling

    /// Connects from the node's own bound address of the same family (firewall rules on
    /// multi-homed machines rely on the source), or from whatever the kernel picks when it has none.
    nonisolated func connect(_ address: PeerAddress, within connectTimeout: TimeAmount = .seconds(5)) async throws
        -> NIOAsyncChannel<ByteBuffer, ByteBuffer>
    {
        var bootstrap = ClientBootstrap(group: group).connectTimeout(connectTimeout)
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
                    try GuardedStream.wrap(
                        channel, idle: IdleStateHandler(readTimeout: .seconds(Self.dialedStreamSilence)),
                        logger: self.logger)
                }
            }
    }

    /// Opens a stream to `address` (handshake included: a peer proving its identity is admitted
    /// at that host) and runs `body` on it, all within `timeout` seconds when one is given (a
    /// fetch has none: its stream is closed when it goes quiet or falls below the pace floor).
    nonisolated func dial<T: Sendable>(
        _ address: PeerAddress, timeout: Int64?, connectTimeout: TimeAmount = .seconds(5),
        _ body: @escaping @Sendable (inout StreamSession) async throws -> T
    ) async throws -> T {
        guard outgoing.enter() == nil else { throw OutgoingStreamLimit(limit: outgoing.total) }
        defer { outgoing.leave() }
        let channel = try await connect(address, within: connectTimeout)
        do {
            let run: @Sendable () async throws -> T = {
                try await channel.executeThenClose { inbound, outbound in
                    var session = try await StreamSession.open(
                        inbound: inbound, outbound: outbound, initiator: true, security: self.security,
                        metrics: self.node.metrics, budget: self.receiveBudget)
                    await self.admitted(session.peer, at: address)
                    return try await body(&session)
                }
            }
            guard let timeout else { return try await run() }
            return try await withTimeout(seconds: timeout, run)
        } catch let refusal as HandshakeRefusal {
            noteRefused(refusal, peer: "\(address)")
            throw refusal
        }
    }

    /// A probe's fallback (`CoreDirective.streamPing`): the stream's handshake proves the
    /// peer's node key, and nothing more is sent.
    nonisolated func streamPing(_ sequence: UInt32, to address: PeerAddress, node: NodeID, timeout: Int64) async {
        let nanoseconds = max(1, timeout)
        let peer = try? await dial(
            address, timeout: (nanoseconds + 999_999_999) / 1_000_000_000, connectTimeout: .nanoseconds(nanoseconds)
        ) { session in session.peer.id }
        guard peer == node else { return }
        await handle(.streamPingAnswered(sequence: sequence, by: node))
    }

    /// Push/pull (`PushPull`, docs/PROTOCOL.md): member lists both ways, then the summaries of
    /// the buckets that differ, and each side fetches what the other has newer.
    nonisolated func sync(with address: PeerAddress, join: Bool) async {
        do {
            let (exchange, steps) = await openPushPull(to: address, join: join)
            try await dial(address, timeout: 30) { session in
                try await self.run(exchange, from: steps, on: &session)
            }
            if join { logger.info("joined through \(address)") }
        } catch {
            logger.debug("sync with \(address) failed: \(error)")
        }
    }

    func openPushPull(to address: PeerAddress, join: Bool) -> (PushPull, [PushPull.Step]) {
        countSync()
        var exchange = PushPull(.caller(dialed: address))
        let steps = exchange.open(join: join, members: core.localState, files: core.files)
        return (exchange, steps)
    }

    /// Feeds an exchange the next frame, with this node's members and files as they are now.
    func advance(_ exchange: PushPull, with message: SyncMessage?) throws(WireError) -> (PushPull, [PushPull.Step]) {
        var exchange = exchange
        var members: [MemberRecord] = []
        if case .hello? = message { members = core.localState }
        let steps = try exchange.receive(message, members: members, files: core.files)
        return (exchange, steps)
    }

    /// Carries out an exchange's steps, reading the peer's frames, until it is done.
    nonisolated func run(_ exchange: PushPull, from steps: [PushPull.Step], on session: inout StreamSession)
        async throws
    {
        var (exchange, steps) = (exchange, steps)
        // An exchange is at most three frames each way; the bound only guards against a bug.
        for _ in 0..<8 {
            for step in steps {
                switch step {
                case .send(let message): try await session.writer.send(message)
                case .merge(let members): await receiveState(members)
                case .fetch(let wanted, let address): await fetchAll(wanted, from: address)
                case .finish: return
                }
            }
            (exchange, steps) = try await advance(exchange, with: try await session.reader.frame())
        }
        throw WireError.invalid("push/pull did not end")
    }
}
