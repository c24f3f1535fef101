@preconcurrency import Crypto
import DataMesherCore
import DataMesherKeys
import Foundation
import NIOCore

/// A peer that proved on this stream that it holds the node key of `id` (and, with node
/// identities, a certificate from a listed CA for that key and ID).
struct VerifiedPeer: Sendable {
    let id: NodeID
    /// The certificate's name ("" without node identities).
    let name: String
    /// When its certificate expires (nil without node identities).
    let validUntil: Date?
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

/// An opened TCP stream after the handshake of `StreamHandshake` (docs/PROTOCOL.md, "Stream
/// handshake"): ephemeral X25519 on both sides, the keyring key mixed into the session keys, each
/// side's node key signing the transcript. Everything after the preambles is sealed records.
struct StreamSession {
    var reader: FrameReader
    let writer: StreamWriter
    let peer: VerifiedPeer

    /// A sealed proof record: the proof and the AES-GCM tag.
    static let maxProofRecord = StreamHandshake.maxProofLength + Seal.tagLength

    static func open(
        inbound: NIOAsyncChannelInboundStream<ByteBuffer>, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        initiator: Bool, security: ClusterSecurity, metrics: NodeMetrics? = nil, budget: ReceiveBudget
    ) async throws -> StreamSession {
        let ephemeral = Curve25519.KeyAgreement.PrivateKey()
        let flags =
            (security.encrypts ? StreamHandshake.flagSealed : 0)
            | (security.identity != nil ? StreamHandshake.flagIdentity : 0)
        let mine = StreamHandshake.Preamble(flags: flags, ephemeral: Array(ephemeral.publicKey.rawRepresentation))
        try await outbound.write(ByteBuffer(bytes: mine.encoded))
        metrics?.tcpBytes(out: StreamHandshake.preambleLength)

        var source = ChunkSource(inbound, metrics: metrics, budget: budget)
        let theirs: StreamHandshake.Preamble
        do {
            theirs = try StreamHandshake.preamble(try await source.readRaw(StreamHandshake.preambleLength))
        } catch let error as HandshakeError {
            switch error {
            case .notDataMesher: throw HandshakeRefusal("not_data_mesher", error.description)
            case .version: throw HandshakeRefusal("version", error.description)
            case .malformed: throw HandshakeRefusal("malformed", error.description)
            }
        }
        if security.encrypts != (theirs.flags & StreamHandshake.flagSealed != 0) {
            throw HandshakeRefusal(
                "encryption_mismatch",
                security.encrypts
                    ? "peer does not encrypt (no [cluster.encryption] keyring)"
                    : "peer encrypts, and this node has no keyring")
        }
        if (security.identity != nil) != (theirs.flags & StreamHandshake.flagIdentity != 0) {
            throw HandshakeRefusal(
                "no_certificate",
                security.identity != nil
                    ? "peer has no node certificate" : "peer requires node certificates, and this node has none")
        }
        guard let secret = StreamHandshake.sharedSecret(ephemeral, theirs: theirs.ephemeral) else {
            throw HandshakeRefusal("malformed", "peer's ephemeral key is not a usable X25519 key")
        }
        let transcript = StreamHandshake.transcriptHash(
            initiator: initiator ? mine : theirs, responder: initiator ? theirs : mine)
        let myProof = StreamHandshake.Proof(
            key: security.nodeKey, certificate: security.identity?.certificate.der ?? [], transcript: transcript,
            initiator: initiator)

        let writer: StreamWriter
        let peer: VerifiedPeer
        if initiator {
            let keys = StreamHandshake.sessionKeys(
                sharedSecret: secret, ringKey: security.ring.first, transcript: transcript)
            writer = StreamWriter(outbound, cipher: StreamCipher(key: keys.initiatorToResponder), metrics: metrics)
            var receive = StreamCipher(key: keys.responderToInitiator)
            try await writer.write(myProof.encoded)
            guard let (prefix, record) = try await source.readRecord(limit: maxProofRecord) else {
                throw HandshakeRefusal("truncated", "stream ended during the handshake")
            }
            let plain: [UInt8]
            do { plain = try receive.open(prefix: prefix, record: record) } catch {
                throw HandshakeRefusal("auth", "peer's proof does not open under this session's keys")
            }
            source.cipher = receive
            peer = try verify(plain, transcript: transcript, initiator: false, security: security)
        } else {
            // The initiator seals under the first key of its ring: find which of ours opens its
            // proof, and answer under the same key.
            guard let (prefix, record) = try await source.readRecord(limit: maxProofRecord) else {
                throw HandshakeRefusal("truncated", "stream ended during the handshake")
            }
            let candidates: [SymmetricKey?] = security.ring.isEmpty ? [nil] : security.ring
            var opened: (plain: [UInt8], keys: (SymmetricKey, SymmetricKey), cipher: StreamCipher)?
            for ringKey in candidates {
                let keys = StreamHandshake.sessionKeys(sharedSecret: secret, ringKey: ringKey, transcript: transcript)
                var cipher = StreamCipher(key: keys.initiatorToResponder)
                if let plain = try? cipher.open(prefix: prefix, record: record) {
                    opened = (plain, (keys.initiatorToResponder, keys.responderToInitiator), cipher)
                    break
                }
            }
            guard let opened else {
                throw HandshakeRefusal("auth", "stream is not sealed with a key of this keyring")
            }
            source.cipher = opened.cipher
            peer = try verify(opened.plain, transcript: transcript, initiator: true, security: security)
            writer = StreamWriter(outbound, cipher: StreamCipher(key: opened.keys.1), metrics: metrics)
            try await writer.write(myProof.encoded)
        }
        metrics?.openedStream(initiator: initiator)
        return StreamSession(reader: FrameReader(source), writer: writer, peer: peer)
    }

    /// Checks a peer's proof: its node key signed this transcript in its role, and, with node
    /// identities, a listed CA certified that key with the node profile and the key's node ID.
    static func verify(_ bytes: [UInt8], transcript: [UInt8], initiator: Bool, security: ClusterSecurity) throws
        -> VerifiedPeer
    {
        let proof: StreamHandshake.Proof
        do { proof = try StreamHandshake.proof(bytes) } catch {
            throw HandshakeRefusal("malformed_identity", error.description)
        }
        guard proof.isValid(transcript: transcript, initiator: initiator, verifier: Ed25519Verifier()) else {
            throw HandshakeRefusal("identity_signature", "handshake is not signed by the peer's node key")
        }
        let id = proof.nodeID
        guard let identity = security.identity else { return VerifiedPeer(id: id, name: "", validUntil: nil) }
        let certificate: NodeCertificate
        do { certificate = try NodeCertificate(der: proof.certificate) } catch {
            throw HandshakeRefusal("certificate", "\(error)")
        }
        let key: Curve25519.Signing.PublicKey
        do { key = try certificate.verify(authorities: identity.authorities, now: WallClock.date(), nodeID: id) } catch
        {
            throw HandshakeRefusal("certificate", "\(error) (certificate of \"\(certificate.name)\")")
        }
        guard Array(key.rawRepresentation) == proof.nodeKey else {
            throw HandshakeRefusal(
                "certificate",
                "certificate of \"\(certificate.name)\" is not for the node key that signed the handshake")
        }
        return VerifiedPeer(id: id, name: certificate.name, validUntil: certificate.notValidAfter)
    }
}
