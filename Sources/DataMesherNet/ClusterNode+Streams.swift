import DataMesherCore
import DataMesherStore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Cluster TCP streams: serving and dialing, and the push/pull exchange (docs/PROTOCOL.md).
extension ClusterNode {
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
                        try await self.answerFetches(first: name, session: &session)
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
        guard outgoing.enter() else { throw OutgoingStreamLimit(limit: outgoing.total) }
        defer { outgoing.leave() }
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
}
