@preconcurrency import Crypto
import DataMesherCore
import NIOCore
import NIOPosix
import Testing

@testable import DataMesherNet

/// `StreamSession.open`, the shell's side of the stream handshake, between two real sockets on
/// loopback: what each side proves, what each learns, and what a mismatch refuses.
@Suite struct StreamHandshakeTests {
    static func security(ring: [SymmetricKey] = []) -> ClusterSecurity {
        ClusterSecurity(ring: ring, identity: nil, nodeKey: NodeKey(Curve25519.Signing.PrivateKey()))
    }

    /// What one side ended with: the peer's proven ID and the frame it read, or why it failed.
    enum Outcome: Sendable {
        case opened(peer: NodeID, frame: SyncMessage?)
        case failed(any Error)

        var peer: NodeID? { if case .opened(let peer, _) = self { peer } else { nil } }
        var frame: SyncMessage? { if case .opened(_, let frame) = self { frame } else { nil } }
        var refusal: HandshakeRefusal? { if case .failed(let error) = self { error as? HandshakeRefusal } else { nil } }
    }

    /// Accepts one connection on 127.0.0.1 and runs the responder on it while the initiator
    /// dials; the initiator sends `frame`, the responder echoes what it reads. Bounded: 20 s.
    static func handshake(initiator: ClusterSecurity, responder: ClusterSecurity, frame: SyncMessage) async throws
        -> (initiator: Outcome, responder: Outcome)
    {
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
        let port = try #require(server.channel.localAddress?.port)
        return try await withTimeout(seconds: 20) {
            async let responded: Outcome = server.executeThenClose { connections in
                for try await connection in connections {
                    do {
                        return try await connection.executeThenClose { inbound, outbound in
                            var session = try await StreamSession.open(
                                inbound: inbound, outbound: outbound, initiator: false, security: responder,
                                budget: ReceiveBudget())
                            let read = try await session.reader.frame()
                            if let read { try await session.writer.send(read) }
                            return .opened(peer: session.peer.id, frame: read)
                        }
                    } catch {
                        return .failed(error)
                    }
                }
                return .failed(TimeoutError())
            }
            let client = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
            let initiated: Outcome
            do {
                initiated = try await client.executeThenClose { inbound, outbound in
                    var session = try await StreamSession.open(
                        inbound: inbound, outbound: outbound, initiator: true, security: initiator,
                        budget: ReceiveBudget())
                    try await session.writer.send(frame)
                    return .opened(peer: session.peer.id, frame: try await session.reader.frame())
                }
            } catch {
                initiated = .failed(error)
            }
            return (initiated, try await responded)
        }
    }

    @Test(arguments: [false, true])
    func bothSidesLearnTheOthersProvenIDAndFramesPassSealed(keyring: Bool) async throws {
        let ring = keyring ? [SymmetricKey(size: .bits256)] : []
        let (a, b) = (Self.security(ring: ring), Self.security(ring: ring))
        let frame = SyncMessage.fetch(try FileName("zone/example"))
        let (initiator, responder) = try await Self.handshake(initiator: a, responder: b, frame: frame)
        #expect(initiator.peer == b.nodeKey.id)
        #expect(responder.peer == a.nodeKey.id)
        #expect(responder.frame == frame && initiator.frame == frame)
    }

    @Test func aKeyringOnOneSideOnlyIsRefusedByBoth() async throws {
        let sealed = Self.security(ring: [SymmetricKey(size: .bits256)])
        let (initiator, responder) = try await Self.handshake(
            initiator: Self.security(), responder: sealed, frame: .fetch(try FileName("a")))
        #expect(initiator.refusal?.label == "encryption_mismatch")
        #expect(responder.refusal?.label == "encryption_mismatch")
        #expect(responder.peer == nil && responder.frame == nil)
    }

    @Test func differentKeyringsLearnNothingOfEachOther() async throws {
        let (initiator, responder) = try await Self.handshake(
            initiator: Self.security(ring: [SymmetricKey(size: .bits256)]),
            responder: Self.security(ring: [SymmetricKey(size: .bits256)]), frame: .fetch(try FileName("a")))
        #expect(initiator.peer == nil && responder.peer == nil)
        #expect(responder.frame == nil)
    }
}
