import Crypto
import DataMesherCore
import Foundation
import SwiftASN1

/// ED25519 keys as PEM: private keys as PKCS#8 (`BEGIN PRIVATE KEY`, what `openssl genpkey
/// -algorithm ed25519` writes) and public keys as SPKI (`BEGIN PUBLIC KEY`, what `openssl pkey
/// -pubout` writes), RFC 8410.
public enum KeyPEM {
    static let ed25519OID: ASN1ObjectIdentifier = [1, 3, 101, 112]
    static let privateKeyLabel = "PRIVATE KEY"
    static let publicKeyLabel = "PUBLIC KEY"

    public static func encodePrivateKey(_ key: Curve25519.Signing.PrivateKey) throws -> String {
        var inner = DER.Serializer()
        try inner.serialize(ASN1OctetString(contentBytes: ArraySlice(key.rawRepresentation)))
        var serializer = DER.Serializer()
        try serializer.appendConstructedNode(identifier: .sequence) { body in
            try body.serialize(0)
            try body.appendConstructedNode(identifier: .sequence) { algorithm in
                try algorithm.serialize(ed25519OID)
            }
            try body.serialize(ASN1OctetString(contentBytes: ArraySlice(inner.serializedBytes)))
        }
        return PEMDocument(type: privateKeyLabel, derBytes: serializer.serializedBytes).pemString + "\n"
    }

    public static func encodePublicKey(_ key: Curve25519.Signing.PublicKey) throws -> String {
        var serializer = DER.Serializer()
        try serializer.appendConstructedNode(identifier: .sequence) { body in
            try body.appendConstructedNode(identifier: .sequence) { algorithm in
                try algorithm.serialize(ed25519OID)
            }
            try body.serialize(ASN1BitString(bytes: ArraySlice(key.rawRepresentation)))
        }
        return PEMDocument(type: publicKeyLabel, derBytes: serializer.serializedBytes).pemString + "\n"
    }

    public static func decodePrivateKey(pem: String) throws(KeyFileError) -> Curve25519.Signing.PrivateKey {
        let document = try document(pem, expecting: privateKeyLabel)
        do {
            let raw: [UInt8] = try DER.sequence(DER.parse(document.derBytes), identifier: .sequence) { nodes in
                let version = try Int(derEncoded: &nodes)
                guard version == 0 || version == 1 else {
                    throw KeyFileError.notED25519("unsupported PKCS#8 version \(version)")
                }
                try checkAlgorithm(&nodes)
                let wrapped = try ASN1OctetString(derEncoded: &nodes)
                let inner = try ASN1OctetString(derEncoded: Array(wrapped.bytes))
                // Optional attributes [0] and public key [1] may follow (PKCS#8 v2); they are not needed.
                while nodes.next() != nil {}
                return Array(inner.bytes)
            }
            guard raw.count == 32 else {
                throw KeyFileError.notED25519("private key has \(raw.count) bytes, expected 32")
            }
            return try Curve25519.Signing.PrivateKey(rawRepresentation: raw)
        } catch let error as KeyFileError {
            throw error
        } catch {
            throw .notED25519("not a PKCS#8 ED25519 private key (\(String(describing: error).prefix(120)))")
        }
    }

    public static func decodePublicKey(pem: String) throws(KeyFileError) -> Curve25519.Signing.PublicKey {
        let document = try document(pem, expecting: publicKeyLabel)
        do {
            let raw: [UInt8] = try DER.sequence(DER.parse(document.derBytes), identifier: .sequence) { nodes in
                try checkAlgorithm(&nodes)
                let bits = try ASN1BitString(derEncoded: &nodes)
                guard bits.paddingBits == 0 else { throw KeyFileError.notED25519("public key bit string is padded") }
                return Array(bits.bytes)
            }
            guard raw.count == 32 else {
                throw KeyFileError.notED25519("public key has \(raw.count) bytes, expected 32")
            }
            return try Curve25519.Signing.PublicKey(rawRepresentation: raw)
        } catch let error as KeyFileError {
            throw error
        } catch {
            throw .notED25519("not an SPKI ED25519 public key (\(String(describing: error).prefix(120)))")
        }
    }

    /// The public key of a PEM that holds either a private or a public key.
    public static func publicKey(fromEither pem: String) throws(KeyFileError) -> Curve25519.Signing.PublicKey {
        if pem.contains("-----BEGIN \(privateKeyLabel)-----") { return try decodePrivateKey(pem: pem).publicKey }
        return try decodePublicKey(pem: pem)
    }

    static func checkAlgorithm(_ nodes: inout ASN1NodeCollection.Iterator) throws {
        guard let algorithmNode = nodes.next() else { throw KeyFileError.notED25519("algorithm identifier is missing") }
        try DER.sequence(algorithmNode, identifier: .sequence) { inner in
            let oid = try ASN1ObjectIdentifier(derEncoded: &inner)
            guard oid == ed25519OID else {
                throw KeyFileError.notED25519("key algorithm is \(oid), not ED25519 (1.3.101.112)")
            }
            guard inner.next() == nil else {
                throw KeyFileError.notED25519("ED25519 algorithm identifier has parameters")
            }
        }
    }

    static func document(_ pem: String, expecting label: String) throws(KeyFileError) -> PEMDocument {
        guard pem.contains("-----BEGIN ") else { throw .notPEM }
        let document: PEMDocument
        do { document = try PEMDocument(pemString: pem) } catch { throw .notPEM }
        guard document.discriminator == label else {
            throw .wrongLabel(found: document.discriminator, expected: label)
        }
        return document
    }
}

public enum KeyFileError: Error, Sendable, Equatable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case notPEM
    case wrongLabel(found: String, expected: String)
    case notED25519(String)
    case invalid(path: String, reason: String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): return "cannot read key file \(path): \(reason)"
        case .notPEM: return "not a PEM key (expected a -----BEGIN ...----- block)"
        case .wrongLabel(let found, let expected):
            return "PEM block is \"\(found)\", expected \"\(expected)\""
        case .notED25519(let reason): return reason
        case .invalid(let path, let reason): return "key file \(path) is not usable: \(reason)"
        }
    }
}

/// Reading key files from disk, with errors that name the file.
public enum KeyFile {
    /// Key files are tiny; anything larger is not a key.
    static let maxBytes = 64 * 1024

    public static func readPrivateKey(path: String) throws(KeyFileError) -> Curve25519.Signing.PrivateKey {
        let text = try readText(path)
        do { return try KeyPEM.decodePrivateKey(pem: text) } catch {
            throw .invalid(path: path, reason: error.description)
        }
    }

    /// The public key in a file holding either an SPKI public key or a PKCS#8 private key.
    public static func readPublicKey(path: String) throws(KeyFileError) -> Curve25519.Signing.PublicKey {
        let text = try readText(path)
        do { return try KeyPEM.publicKey(fromEither: text) } catch {
            throw .invalid(path: path, reason: error.description)
        }
    }

    static func readText(_ path: String) throws(KeyFileError) -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw .unreadable(path: path, reason: "no such file")
        }
        guard !isDirectory.boolValue else { throw .unreadable(path: path, reason: "it is a directory") }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw .unreadable(path: path, reason: "permission denied or not a regular file")
        }
        defer { try? handle.close() }
        let data: Data
        do { data = try handle.read(upToCount: maxBytes + 1) ?? Data() } catch {
            throw .unreadable(path: path, reason: "\(error.localizedDescription)")
        }
        guard data.count <= maxBytes else { throw .invalid(path: path, reason: "file is larger than 64 KiB") }
        guard let text = String(data: data, encoding: .utf8) else {
            throw .invalid(path: path, reason: KeyFileError.notPEM.description)
        }
        return text
    }
}
