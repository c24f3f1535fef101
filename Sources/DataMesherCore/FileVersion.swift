import Crypto

/// What a version is: content or a deletion.
public enum FileKind: UInt8, Sendable, Codable {
    case content = 1
    case tombstone = 2
}

/// A raw ED25519 public key (32 bytes), written as base64 in config and headers.
public struct SignerKey: Sendable, Hashable, Comparable, CustomStringConvertible, Codable {
    public static let length = 32
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws(KeyError) {
        guard bytes.count == SignerKey.length else { throw .wrongLength(bytes.count) }
        self.bytes = bytes
    }

    public init(base64: String) throws(KeyError) {
        guard let bytes = Base64.decode(base64) else { throw .notBase64 }
        try self.init(bytes: bytes)
    }

    public var base64: String { Base64.encode(bytes) }
    public var description: String { base64 }

    public static func < (lhs: SignerKey, rhs: SignerKey) -> Bool { lhs.bytes.lexicographicallyPrecedes(rhs.bytes) }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { try self.init(base64: text) } catch {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(base64)
    }
}

public enum KeyError: Error, Sendable, Equatable, CustomStringConvertible {
    case notBase64
    case wrongLength(Int)

    public var description: String {
        switch self {
        case .notBase64: return "public key is not valid base64"
        case .wrongLength(let count): return "public key has \(count) bytes; an ED25519 key has 32"
        }
    }
}

/// One signed version of a file: everything the signature covers, plus signer and signature.
/// The content itself travels and rests separately; `contentSHA256` binds it.
public struct FileVersion: Sendable, Equatable, Codable {
    public static let signatureLength = 64
    public static let messagePrefix = Array("data-mesher/file/v1".utf8) + [0]

    public var kind: FileKind
    public var networkID: String
    public var name: FileName
    /// Nanoseconds since the Unix epoch, chosen by the signer.
    public var timestamp: Int64
    /// Nanoseconds of validity after `timestamp`; 0 = never expires.
    public var validFor: UInt64
    public var contentSHA256: [UInt8]
    public var contentLength: UInt64
    public var signer: SignerKey
    public var signature: [UInt8]

    public init(
        kind: FileKind, networkID: String, name: FileName, timestamp: Int64, validFor: UInt64,
        contentSHA256: [UInt8], contentLength: UInt64, signer: SignerKey, signature: [UInt8]
    ) {
        self.kind = kind
        self.networkID = networkID
        self.name = name
        self.timestamp = timestamp
        self.validFor = validFor
        self.contentSHA256 = contentSHA256
        self.contentLength = contentLength
        self.signer = signer
        self.signature = signature
    }

    public var isTombstone: Bool { kind == .tombstone }

    /// The instant (ns since epoch) after which this version is gone, or nil if it never expires.
    public var expiresAt: Int64? {
        guard validFor > 0 else { return nil }
        let (sum, overflow) = timestamp.addingReportingOverflow(Int64(clamping: validFor))
        return overflow ? Int64.max : sum
    }

    /// The exact byte string that is signed (SPEC §5).
    public var signedMessage: [UInt8] {
        FileVersion.signedMessage(
            kind: kind, networkID: networkID, name: name, timestamp: timestamp, validFor: validFor,
            contentSHA256: contentSHA256, contentLength: contentLength)
    }

    public static func signedMessage(
        kind: FileKind, networkID: String, name: FileName, timestamp: Int64, validFor: UInt64,
        contentSHA256: [UInt8], contentLength: UInt64
    ) -> [UInt8] {
        let network = Array(networkID.utf8)
        let nameBytes = Array(name.value.utf8)
        var message = messagePrefix
        message.reserveCapacity(messagePrefix.count + 1 + 2 + network.count + 2 + nameBytes.count + 8 + 8 + 32 + 8)
        message.append(kind.rawValue)
        message.appendBigEndian(UInt16(truncatingIfNeeded: network.count))
        message += network
        message.appendBigEndian(UInt16(truncatingIfNeeded: nameBytes.count))
        message += nameBytes
        message.appendBigEndian(timestamp)
        message.appendBigEndian(validFor)
        message += contentSHA256
        message.appendBigEndian(contentLength)
        return message
    }

    /// True when the signature is a valid ED25519 signature by `signer` over `signedMessage`.
    public var hasValidSignature: Bool {
        guard signature.count == FileVersion.signatureLength, contentSHA256.count == 32,
            Array(networkID.utf8).count <= Int(UInt16.max),
            let key = try? Curve25519.Signing.PublicKey(rawRepresentation: signer.bytes)
        else { return false }
        return key.isValidSignature(signature, for: signedMessage)
    }

    /// Signs a version with a private key (used by the CLI and by tests).
    public static func sign(
        kind: FileKind, networkID: String, name: FileName, timestamp: Int64, validFor: UInt64,
        contentSHA256: [UInt8], contentLength: UInt64, key: Curve25519.Signing.PrivateKey
    ) throws -> FileVersion {
        let message = signedMessage(
            kind: kind, networkID: networkID, name: name, timestamp: timestamp, validFor: validFor,
            contentSHA256: contentSHA256, contentLength: contentLength)
        let signature = try key.signature(for: message)
        return FileVersion(
            kind: kind, networkID: networkID, name: name, timestamp: timestamp, validFor: validFor,
            contentSHA256: contentSHA256, contentLength: contentLength,
            signer: try SignerKey(bytes: Array(key.publicKey.rawRepresentation)), signature: Array(signature))
    }

    /// SHA-256 of the empty string: the content hash a tombstone signs.
    public static let emptySHA256: [UInt8] = Array(SHA256.hash(data: [UInt8]()))
}

extension FileName: Codable {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { try self.init(text) } catch {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}
