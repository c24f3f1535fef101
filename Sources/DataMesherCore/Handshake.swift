@preconcurrency import Crypto

/// The stream handshake, version 2 (docs/PROTOCOL.md, "Stream handshake"; docs/SECURITY.md):
/// an authenticated key exchange in the spirit of Noise XX with a pre-shared key.
///
/// 1. Both sides send a preamble: magic "DMS" 2, flags, an ephemeral X25519 public key.
/// 2. Both compute the transcript hash h = SHA-256(label ‖ initiator preamble ‖ responder
///    preamble) and the X25519 shared secret of the two ephemerals; the session keys (one per
///    direction) are HKDF-SHA256 of (shared secret ‖ keyring key), salted with h. Without a
///    keyring the keyring key is empty: the stream is still encrypted, with forward secrecy.
/// 3. Each side sends, as its first sealed record, a proof: its node key, its certificate (DER,
///    empty without node identities) and its node key's signature over h and its role. The
///    initiator proves first; the responder finds which keyring key the initiator used by
///    opening that record, then answers with its own proof.
///
/// So a session key is known only to the two ends (ephemeral Diffie-Hellman), a keyring holder
/// in the middle cannot complete it (it cannot sign for either node key over a transcript that
/// holds its own ephemerals), and each side learns the node ID the other proved.
public enum StreamHandshake {
    /// "DMS" and the protocol version (`WireCodec.version`, one number for UDP and TCP).
    public static let magic: [UInt8] = [0x44, 0x4D, 0x53, WireCodec.version]
    public static let preambleLength = 4 + 1 + 32
    public static let flagSealed: UInt8 = 1
    public static let flagIdentity: UInt8 = 2
    /// A proof: node key, certificate length, certificate (at most 16 KiB), signature.
    public static let maxProofLength = 32 + 2 + maxCertificateLength + 64
    public static let maxCertificateLength = 16 * 1024
    static let transcriptLabel: [UInt8] = Array("data-mesher/stream/v2".utf8) + [0]
    static let proofLabel: [UInt8] = Array("data-mesher/stream-proof/v2".utf8) + [0]

    public struct Preamble: Sendable, Equatable {
        public var flags: UInt8
        /// The sender's ephemeral X25519 public key, 32 bytes.
        public var ephemeral: [UInt8]

        public init(flags: UInt8, ephemeral: [UInt8]) {
            self.flags = flags
            self.ephemeral = ephemeral
        }

        public var encoded: [UInt8] { StreamHandshake.magic + [flags] + ephemeral }
    }

    /// Reads a preamble (exactly `preambleLength` bytes).
    public static func preamble(_ bytes: [UInt8]) throws(HandshakeError) -> Preamble {
        guard bytes.count == preambleLength else { throw .malformed("preamble of \(bytes.count) bytes") }
        guard bytes.prefix(3).elementsEqual(magic.prefix(3)) else { throw .notDataMesher }
        guard bytes[3] == magic[3] else { throw .version(bytes[3]) }
        guard bytes[4] & ~(flagSealed | flagIdentity) == 0 else { throw .malformed("unknown flags \(bytes[4])") }
        return Preamble(flags: bytes[4], ephemeral: Array(bytes[5...]))
    }

    /// h: what both sides sign, and the salt of the session keys.
    public static func transcriptHash(initiator: Preamble, responder: Preamble) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: transcriptLabel)
        hasher.update(data: initiator.encoded)
        hasher.update(data: responder.encoded)
        return Array(hasher.finalize())
    }

    /// The two direction keys of a session, from the X25519 shared secret and the keyring key
    /// (nil: no keyring).
    public static func sessionKeys(sharedSecret: [UInt8], ringKey: SymmetricKey?, transcript: [UInt8])
        -> (initiatorToResponder: SymmetricKey, responderToInitiator: SymmetricKey)
    {
        var material = sharedSecret
        if let ringKey { ringKey.withUnsafeBytes { material += $0 } }
        let input = SymmetricKey(data: material)
        func key(_ info: String) -> SymmetricKey {
            HKDF<SHA256>.deriveKey(
                inputKeyMaterial: input, salt: transcript, info: Array(info.utf8), outputByteCount: 32)
        }
        return (key("data-mesher stream v2 initiator"), key("data-mesher stream v2 responder"))
    }

    /// The ephemeral X25519 agreement; nil for a public key that is not one (or a low-order point).
    public static func sharedSecret(_ mine: Curve25519.KeyAgreement.PrivateKey, theirs: [UInt8]) -> [UInt8]? {
        guard let key = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: theirs),
            let secret = try? mine.sharedSecretFromKeyAgreement(with: key)
        else { return nil }
        let bytes = secret.withUnsafeBytes { Array($0) }
        // An all-zero secret means a low-order point was sent: refuse it.
        guard bytes.contains(where: { $0 != 0 }) else { return nil }
        return bytes
    }

    /// What a node signs to prove it holds its node key on this stream, in its role.
    public static func proofMessage(transcript: [UInt8], initiator: Bool) -> [UInt8] {
        proofLabel + transcript + [initiator ? 1 : 2]
    }

    /// A node's proof on a stream: its node key, its certificate (empty without node
    /// identities), its signature over `proofMessage`.
    public struct Proof: Sendable, Equatable {
        public var nodeKey: [UInt8]
        public var certificate: [UInt8]
        public var signature: [UInt8]

        public init(nodeKey: [UInt8], certificate: [UInt8], signature: [UInt8]) {
            self.nodeKey = nodeKey
            self.certificate = certificate
            self.signature = signature
        }

        /// This node's proof on a stream with transcript `transcript`.
        public init(key: NodeKey, certificate: [UInt8], transcript: [UInt8], initiator: Bool) {
            self.init(
                nodeKey: key.publicKey, certificate: certificate,
                signature: key.sign(StreamHandshake.proofMessage(transcript: transcript, initiator: initiator)))
        }

        public var nodeID: NodeID { NodeID(publicKey: nodeKey) }

        public var encoded: [UInt8] {
            var out = WireWriter()
            out.bytes(nodeKey)
            out.u16(UInt16(truncatingIfNeeded: certificate.count))
            out.bytes(certificate)
            out.bytes(signature)
            return out.buffer
        }

        /// True when the node key signed `transcript` in the role `initiator`.
        public func isValid(transcript: [UInt8], initiator: Bool, verifier: any SignatureVerifier) -> Bool {
            verifier.isValidSignature(
                signature, of: StreamHandshake.proofMessage(transcript: transcript, initiator: initiator), by: nodeKey)
        }
    }

    public static func proof(_ bytes: [UInt8]) throws(HandshakeError) -> Proof {
        guard bytes.count <= maxProofLength else { throw .malformed("proof of \(bytes.count) bytes") }
        var reader = WireReader(bytes)
        do {
            let nodeKey = try reader.bytes(32)
            let certificateLength = Int(try reader.u16())
            guard certificateLength <= maxCertificateLength else {
                throw HandshakeError.malformed("certificate length")
            }
            let certificate = try reader.bytes(certificateLength)
            let signature = try reader.bytes(64)
            guard reader.remaining == 0 else { throw HandshakeError.malformed("bytes after the proof") }
            return Proof(nodeKey: nodeKey, certificate: certificate, signature: signature)
        } catch let error as HandshakeError {
            throw error
        } catch {
            throw .malformed("truncated proof")
        }
    }
}

public enum HandshakeError: Error, Sendable, Equatable, CustomStringConvertible {
    case notDataMesher
    case version(UInt8)
    case malformed(String)

    public var description: String {
        switch self {
        case .notDataMesher: return "not a data-mesher stream"
        case .version(let version):
            return "stream version \(version) is not supported (this node speaks \(WireCodec.version))"
        case .malformed(let what): return "malformed handshake: \(what)"
        }
    }
}
