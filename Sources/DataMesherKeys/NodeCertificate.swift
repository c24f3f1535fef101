import Crypto
import DataMesherCore
import Foundation
import SwiftASN1
import X509

/// A node's identity: an X.509 certificate (PEM, readable by `openssl x509 -text`) for the node's
/// ED25519 public key, signed by a CA's ED25519 key (`data-mesher certificate sign`).
public struct NodeCertificate: Sendable {
    public let certificate: Certificate
    /// The certificate in DER, as sent in the identity handshake.
    public let der: [UInt8]

    /// The subject's common name: the node name it was issued for.
    public var name: String {
        for rdn in certificate.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                return String(describing: attribute.value)
            }
        }
        return ""
    }

    public var notValidBefore: Date { certificate.notValidBefore }
    public var notValidAfter: Date { certificate.notValidAfter }

    /// The ED25519 key the certificate vouches for, if it is one.
    public var nodeKey: Curve25519.Signing.PublicKey? { Curve25519.Signing.PublicKey(certificate.publicKey) }

    public init(der: [UInt8]) throws(CertificateError) {
        guard der.count <= Self.maxDERBytes else { throw .malformed("certificate is larger than 16 KiB") }
        do { certificate = try Certificate(derEncoded: der) } catch { throw .malformed("\(error)") }
        self.der = der
    }

    public init(pem: String) throws(CertificateError) {
        let document: PEMDocument
        do { document = try PEMDocument(pemString: pem) } catch { throw .malformed("not a PEM certificate") }
        guard document.discriminator == "CERTIFICATE" else {
            throw .malformed("PEM block is \"\(document.discriminator)\", expected \"CERTIFICATE\"")
        }
        try self.init(der: document.derBytes)
    }

    static let maxDERBytes = 16 * 1024

    /// The subject alternative name that carries a node ID: `urn:data-mesher:node:<32 hex digits>`.
    public static func nodeURI(_ id: NodeID) -> String { "urn:data-mesher:node:" + id.hex }

    /// The node IDs named in the certificate's subject alternative names.
    public var nodeIDs: [NodeID] {
        guard let names = try? certificate.extensions.subjectAlternativeNames else { return [] }
        return names.compactMap { name in
            guard case .uniformResourceIdentifier(let uri) = name, uri.hasPrefix("urn:data-mesher:node:") else {
                return nil
            }
            return NodeID(hex: String(uri.dropFirst("urn:data-mesher:node:".count)))
        }
    }

    /// Issues a certificate for `nodeKey` with the node profile (not a CA, digital signatures
    /// only, the key's node ID as a URI name), named `name`, valid from a minute ago for `validity`.
    public static func issue(
        caKey: Curve25519.Signing.PrivateKey, nodeKey: Curve25519.Signing.PublicKey, name: String, now: Date,
        validity: TimeInterval
    ) throws -> NodeCertificate {
        let subject = try DistinguishedName {
            OrganizationName("data-mesher")
            CommonName(name)
        }
        let issuer = try DistinguishedName {
            OrganizationName("data-mesher")
            CommonName(
                "data-mesher CA \(Hex.encode(Array(SHA256.hash(data: caKey.publicKey.rawRepresentation).prefix(8))))")
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(nodeKey),
            notValidBefore: now.addingTimeInterval(-60), notValidAfter: now.addingTimeInterval(validity),
            issuer: issuer, subject: subject, signatureAlgorithm: .ed25519,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                SubjectAlternativeNames([
                    .uniformResourceIdentifier(
                        nodeURI(NodeID(publicKey: Array(nodeKey.rawRepresentation))))
                ])
            },
            issuerPrivateKey: .init(caKey))
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return try NodeCertificate(der: serializer.serializedBytes)
    }

    /// A node certificate is an end entity that signs, and names its key's node ID.
    func checkNodeProfile(key: Curve25519.Signing.PublicKey) throws(CertificateError) {
        guard let constraints = try? certificate.extensions.basicConstraints,
            constraints == .notCertificateAuthority
        else { throw .notNodeProfile("its basic constraints do not say cA=false") }
        guard let usage = try? certificate.extensions.keyUsage, usage.digitalSignature else {
            throw .notNodeProfile("its key usage does not allow digital signatures")
        }
        let id = NodeID(publicKey: Array(key.rawRepresentation))
        guard nodeIDs.contains(id) else {
            throw .notNodeProfile("it does not name its key's node ID (\(NodeCertificate.nodeURI(id)))")
        }
    }

    public func pem() throws -> String {
        PEMDocument(type: "CERTIFICATE", derBytes: der).pemString + "\n"
    }

    /// Checks that one of `authorities` signed this certificate, that it is valid at `now`, that it
    /// is for an ED25519 key and has the node profile (`cA` false, digitalSignature, the key's node
    /// ID as a subject alternative name; `nodeID`, when given, must be that ID); returns the key.
    public func verify(authorities: [Curve25519.Signing.PublicKey], now: Date, nodeID: NodeID? = nil)
        throws(CertificateError) -> Curve25519.Signing.PublicKey
    {
        guard let key = nodeKey else { throw .notED25519 }
        guard
            authorities.contains(where: {
                Certificate.PublicKey($0).isValidSignature(certificate.signature, for: certificate)
            })
        else { throw .unknownAuthority }
        guard now >= notValidBefore else { throw .notYetValid(notValidBefore) }
        guard now <= notValidAfter else { throw .expired(notValidAfter) }
        try checkNodeProfile(key: key)
        if let nodeID, !nodeIDs.contains(nodeID) { throw .notNodeProfile("it does not name node \(nodeID.hex)") }
        return key
    }
}

public enum CertificateError: Error, Sendable, Equatable, CustomStringConvertible {
    case malformed(String)
    case notED25519
    case unknownAuthority
    case notYetValid(Date)
    case expired(Date)
    case notNodeProfile(String)

    public var description: String {
        switch self {
        case .malformed(let reason): return "malformed certificate: \(reason)"
        case .notED25519: return "certificate is not for an ED25519 key"
        case .unknownAuthority: return "certificate is not signed by any of the configured certificate authorities"
        case .notYetValid(let date): return "certificate is not valid before \(date)"
        case .expired(let date): return "certificate expired at \(date)"
        case .notNodeProfile(let why):
            return "not a node certificate: \(why) (issue one with `data-mesher certificate sign`)"
        }
    }
}

extension KeyFile {
    /// Reads a PEM certificate, with errors that name the file.
    public static func readCertificate(path: String) throws(KeyFileError) -> NodeCertificate {
        let text = try readText(path)
        do { return try NodeCertificate(pem: text) } catch { throw .invalid(path: path, reason: error.description) }
    }
}
