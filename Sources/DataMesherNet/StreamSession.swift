@preconcurrency import Crypto
import DataMesherCore
import DataMesherKeys
import Foundation
import NIOCore

/// A peer that proved, on this stream, that it holds the key of a certificate from a listed CA,
/// and which gossip identity (node ID) it speaks for.
struct VerifiedPeer: Sendable {
    let id: NodeID
    let name: String
    let validUntil: Date
}

/// Why a stream was refused during its handshake; logged with the peer's address.
struct HandshakeRefusal: Error, CustomStringConvertible {
    /// A short reason for counters.
    let label: String
    let description: String
    init(_ label: String, _ description: String) {
        self.label = label
        self.description = description
    }
}

/// An opened TCP stream (docs/PROTOCOL.md, "Stream handshake"): both sides send a preamble
/// (magic, version, flags, a random salt); with a keyring everything after it is sealed under
/// keys derived from both salts; with node identities each side then proves its certificate's
/// key by signing both salts and its node ID.
struct StreamSession {
    var reader: FrameReader
    let writer: StreamWriter
    /// Set when node identities are required.
    let peer: VerifiedPeer?

    static let magic: [UInt8] = [0x44, 0x4D, 0x53, 1]  // "DMS", stream version 1
    static let preambleLength = 4 + 1 + Seal.saltLength
    static let flagSealed: UInt8 = 1
    static let flagIdentity: UInt8 = 2
    static let maxIdentityBlob = 16 * 1024 + 128

    static func open(
        inbound: NIOAsyncChannelInboundStream<ByteBuffer>, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        initiator: Bool, security: ClusterSecurity, me: NodeID
    ) async throws -> StreamSession {
        var rng = SystemRandomNumberGenerator()
        let mySalt = (0..<Seal.saltLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let myFlags = (security.encrypts ? flagSealed : 0) | (security.identity != nil ? flagIdentity : 0)
        try await outbound.write(ByteBuffer(bytes: magic + [myFlags] + mySalt))

        var source = ChunkSource(inbound)
        let preamble = try await source.readRaw(preambleLength)
        guard preamble.prefix(3).elementsEqual(magic.prefix(3)) else {
            throw HandshakeRefusal("not_data_mesher", "not a data-mesher stream")
        }
        guard preamble[3] == magic[3] else {
            throw HandshakeRefusal("version", "stream version \(preamble[3]) is not supported")
        }
        let theirFlags = preamble[4]
        let theirSalt = Array(preamble[5...])
        if security.encrypts != (theirFlags & flagSealed != 0) {
            throw HandshakeRefusal(
                "encryption_mismatch",
                security.encrypts
                    ? "peer does not encrypt (no [cluster.encryption] keyring)"
                    : "peer encrypts, and this node has no keyring")
        }
        if (security.identity != nil) != (theirFlags & flagIdentity != 0) {
            throw HandshakeRefusal(
                "no_certificate",
                security.identity != nil
                    ? "peer has no node certificate" : "peer requires node certificates, and this node has none")
        }
        let (initiatorSalt, responderSalt) = initiator ? (mySalt, theirSalt) : (theirSalt, mySalt)

        var sendCipher: StreamCipher?
        var pending = ByteBuffer()
        if security.encrypts {
            if initiator {
                sendCipher = StreamCipher(
                    ringKey: security.ring[0], initiatorSalt: initiatorSalt, responderSalt: responderSalt,
                    fromInitiator: true)
                source.cipher = StreamCipher(
                    ringKey: security.ring[0], initiatorSalt: initiatorSalt, responderSalt: responderSalt,
                    fromInitiator: false)
            } else {
                // The initiator seals with the first key of its ring: find which of ours opens its
                // first record, and answer under the same key.
                guard let (prefix, record) = try await source.readRecord() else { throw WireError.truncated }
                var opened: (plain: [UInt8], key: SymmetricKey, cipher: StreamCipher)?
                for ringKey in security.ring {
                    var cipher = StreamCipher(
                        ringKey: ringKey, initiatorSalt: initiatorSalt, responderSalt: responderSalt,
                        fromInitiator: true)
                    if let plain = try? cipher.open(prefix: prefix, record: record) {
                        opened = (plain, ringKey, cipher)
                        break
                    }
                }
                guard let opened else {
                    throw HandshakeRefusal("auth", "stream is not sealed with a key of this keyring")
                }
                source.cipher = opened.cipher
                pending = ByteBuffer(bytes: opened.plain)
                sendCipher = StreamCipher(
                    ringKey: opened.key, initiatorSalt: initiatorSalt, responderSalt: responderSalt,
                    fromInitiator: false)
            }
        }
        var reader = FrameReader(source, pending: pending)
        let writer = StreamWriter(outbound, cipher: sendCipher)
        guard let identity = security.identity else { return StreamSession(reader: reader, writer: writer, peer: nil) }

        let transcript = { (signerIsInitiator: Bool, id: NodeID) -> [UInt8] in
            Array("data-mesher identity v1".utf8) + initiatorSalt + responderSalt + [signerIsInitiator ? 0 : 1]
                + id.bytes
        }
        let proof = { () throws -> [UInt8] in
            let signature = try identity.key.signature(for: transcript(initiator, me))
            let body = identity.certificate.der + me.bytes + Array(signature)
            let length = UInt32(body.count)
            return [
                UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 8),
                UInt8(truncatingIfNeeded: length),
            ] + body
        }
        if initiator { try await writer.write(try proof()) }
        let blob = try await reader.blob(limit: maxIdentityBlob)
        let peer = try verify(blob, transcript: { transcript(!initiator, $0) }, identity: identity)
        if !initiator { try await writer.write(try proof()) }
        return StreamSession(reader: reader, writer: writer, peer: peer)
    }

    /// Checks a peer's proof: certificate DER, node ID (16 bytes), ED25519 signature (64 bytes).
    static func verify(
        _ blob: [UInt8], transcript: (NodeID) -> [UInt8], identity: ClusterSecurity.Identity
    ) throws -> VerifiedPeer {
        let tail = NodeID.length + 64
        guard blob.count > tail, let id = NodeID(bytes: Array(blob[(blob.count - tail)..<(blob.count - 64)])) else {
            throw HandshakeRefusal("malformed_identity", "malformed identity proof")
        }
        let certificate: NodeCertificate
        do { certificate = try NodeCertificate(der: Array(blob[..<(blob.count - tail)])) } catch {
            throw HandshakeRefusal("certificate", "\(error)")
        }
        let key: Curve25519.Signing.PublicKey
        do { key = try certificate.verify(authorities: identity.authorities, now: Date()) } catch {
            throw HandshakeRefusal("certificate", "\(error) (certificate of \"\(certificate.name)\")")
        }
        guard key.isValidSignature(blob.suffix(64), for: transcript(id)) else {
            throw HandshakeRefusal("identity_signature", "identity proof is not signed by the certificate's key")
        }
        return VerifiedPeer(id: id, name: certificate.name, validUntil: certificate.notValidAfter)
    }
}
