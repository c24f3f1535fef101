// X.509 node certificates (docs/PROTOCOL.md, "Node identities") through DataMesherKeys'
// `NodeCertificate`: `NodeCertificate(pem:)` (what `identity_cert` files hold),
// `NodeCertificate(der:)` (what a peer sends in its identity proof), and
// `verify(authorities:now:)`. The input is tried both as PEM text and as DER. Underneath,
// swift-certificates' `PEMDocument` and `Certificate(derEncoded:)` are checked as well.
//
// The handshake proof that carries the certificate (node key, certificate DER, signature) is
// split by `StreamHandshake.proof` in DataMesherCore and fuzzed by fuzz-handshake.
//
// Invariants:
// - `NodeCertificate(der:)` accepts exactly the DER that swift-certificates parses, up to 16 KiB,
//   and keeps the bytes; the certificate serializes back to exactly those bytes, which decode to
//   an equal certificate; `pem()` reads back to the same DER;
// - `NodeCertificate(pem:)` agrees with PEMDocument + label CERTIFICATE + `NodeCertificate(der:)`,
//   and with swift-certificates' own `Certificate(pemEncoded:)`; `PEMDocument.pemString` round trip;
// - unforgeability: a certificate that `verify` accepts under the test CA's key has the exact
//   to-be-signed bytes of a certificate that CA issued (the seeds): other content that verifies
//   would mean the check skips signed bytes; `verify` returns the certificate's own key, refuses
//   without authorities, and refuses before and after the validity period;
// - node profile: a certificate that verifies names its key's node ID
//   (`urn:data-mesher:node:<hex>`), is not a CA and allows digital signatures; `verify(nodeID:)`
//   accepts that ID and refuses another. The test CA also issued a certificate without the node
//   ID (node2), which must never verify.
import Crypto
import DataMesherCore
import DataMesherKeys
import Foundation
import FuzzSupport
import SwiftASN1
import X509

/// The largest DER certificate data-mesher accepts (NodeCertificate.maxDERBytes).
let maxCertificateBytes = 16 * 1024

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCert(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = fuzzInput(data, size)
    let parsed = try? Certificate(derEncoded: input)
    let node = try? NodeCertificate(der: input)
    invariant(
        (node != nil) == (parsed != nil && input.count <= maxCertificateBytes),
        "NodeCertificate(der:) \(node == nil ? "refused" : "accepted") \(input.count) bytes that swift-certificates "
            + "\(parsed == nil ? "refuses" : "parses")")
    if let node { check(node, der: input) }

    guard let text = String(validating: input, as: UTF8.self) else { return 0 }
    let document = try? PEMDocument(pemString: text)
    if let document {
        let again = try? PEMDocument(pemString: document.pemString)
        invariant(again == document, "a PEM document does not survive pemString:\n\(document.pemString)")
    }
    let fromPEM = try? NodeCertificate(pem: text)
    var expected: [UInt8]? = nil
    if let document, document.discriminator == "CERTIFICATE", document.derBytes.count <= maxCertificateBytes,
        (try? Certificate(derEncoded: document.derBytes)) != nil
    {
        expected = document.derBytes
    }
    invariant(fromPEM?.der == expected, "NodeCertificate(pem:) disagrees with PEMDocument + DER for:\n\(text)")
    if let fromPEM {
        invariant(
            (try? Certificate(pemEncoded: text)) == fromPEM.certificate, "Certificate(pemEncoded:) disagrees")
        check(fromPEM, der: fromPEM.der)
    }
    return 0
}

func check(_ node: NodeCertificate, der: [UInt8]) {
    invariant(node.der == der, "NodeCertificate changed its DER")
    var serializer = DER.Serializer()
    do { try serializer.serialize(node.certificate) } catch { broken("cannot serialize: \(error)") }
    invariant(serializer.serializedBytes == der, "re-serializing changed the certificate: \(dump(der))")
    invariant(
        (try? Certificate(derEncoded: serializer.serializedBytes)) == node.certificate,
        "the re-serialized form differs")
    if let pem = try? node.pem() {
        invariant((try? NodeCertificate(pem: pem))?.der == der, "pem() does not read back:\n\(pem)")
    } else {
        broken("pem() failed")
    }

    // What a node reads from a peer's certificate, and what it prints.
    _ = node.name
    _ = node.notValidBefore
    _ = node.notValidAfter
    let extensions = node.certificate.extensions
    _ = try? extensions.basicConstraints
    _ = try? extensions.keyUsage
    _ = try? extensions.extendedKeyUsage
    _ = try? extensions.subjectAlternativeNames
    _ = try? extensions.subjectKeyIdentifier
    _ = try? extensions.authorityKeyIdentifier
    _ = try? extensions.nameConstraints
    for item in extensions { _ = item.critical }
    _ = String(describing: node.certificate)

    invariant((try? node.verify(authorities: [], now: Authority.now)) == nil, "verified without authorities")
    // A self-signed certificate (as openssl req -x509 makes) checked with its own key.
    if let own = node.nodeKey { _ = try? node.verify(authorities: [own], now: Authority.now) }
    guard let key = try? node.verify(authorities: [Authority.key.publicKey], now: Authority.now) else { return }
    invariant(
        Authority.issuedTBS.contains(Array(node.certificate.tbsCertificateBytes)),
        "a certificate the test CA never issued verifies under its key: \(dump(der))")
    invariant(key.rawRepresentation == node.nodeKey?.rawRepresentation, "verify returned another key")
    let id = NodeID(publicKey: Array(key.rawRepresentation))
    if Cluster.debug { print("verified under the test CA: \(node.name), node IDs \(node.nodeIDs.map(\.hex))") }
    invariant(node.nodeIDs.contains(id), "a certificate that does not name its key's node ID verifies: \(dump(der))")
    invariant(
        (try? node.certificate.extensions.basicConstraints) == .notCertificateAuthority,
        "a certificate that may be a CA verifies as a node certificate")
    invariant(
        (try? node.verify(authorities: [Authority.key.publicKey], now: Authority.now, nodeID: id)) != nil,
        "verify refuses the node ID the certificate names")
    invariant(
        (try? node.verify(authorities: [Authority.key.publicKey], now: Authority.now, nodeID: Authority.stranger))
            == nil, "verify accepts a node ID the certificate does not name")
    let before = node.notValidBefore.addingTimeInterval(-1)
    let after = node.notValidAfter.addingTimeInterval(1)
    invariant(
        (try? node.verify(authorities: [Authority.key.publicKey], now: before)) == nil, "verified before its validity")
    invariant(
        (try? node.verify(authorities: [Authority.key.publicKey], now: after)) == nil, "verified after its validity")
}

/// A test CA with a fixed key, and the certificates it issued: the only ones that may verify.
enum Authority {
    static var key: Curve25519.Signing.PrivateKey { Seeds.key(0xCA) }
    static let start = Date(timeIntervalSince1970: 1_700_000_000)
    /// Inside the validity of the issued certificates.
    static let now = start.addingTimeInterval(86_400)
    static let issued: [Certificate] = {
        do { return try issue() } catch { fatalError("cannot issue the test certificates: \(error)") }
    }()
    static let issuedTBS: Set<[UInt8]> = Set(issued.map { Array($0.tbsCertificateBytes) })
    static let stranger = NodeID(publicKey: [UInt8](repeating: 0x5A, count: 32))

    /// Node certificates shaped like `data-mesher certificate sign` makes them, deterministic;
    /// node2's lacks the node ID (the profile before wire v2).
    static func issue() throws -> [Certificate] {
        let issuer = try DistinguishedName {
            OrganizationName("data-mesher")
            CommonName("data-mesher CA fuzz")
        }
        return try (1...2).map { index in
            let nodeKey = Seeds.key(UInt8(index))
            return try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(bytes: [UInt8(index)]),
                publicKey: .init(nodeKey.publicKey), notValidBefore: start,
                notValidAfter: start.addingTimeInterval(365 * 86_400), issuer: issuer,
                subject: try DistinguishedName {
                    OrganizationName("data-mesher")
                    CommonName("node\(index)")
                }, signatureAlgorithm: .ed25519,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                    SubjectAlternativeNames(
                        [.dnsName("node\(index).example")]
                            + (index == 1
                                ? [
                                    .uniformResourceIdentifier(
                                        NodeCertificate.nodeURI(
                                            NodeID(publicKey: Array(nodeKey.publicKey.rawRepresentation))))
                                ] : []))
                }, issuerPrivateKey: .init(key))
        }
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    Seeds.writeIfAsked {
        try Authority.issued.enumerated().flatMap { index, certificate in
            var serializer = DER.Serializer()
            try serializer.serialize(certificate)
            let der = serializer.serializedBytes
            let pem = PEMDocument(type: "CERTIFICATE", derBytes: der).pemString + "\n"
            return [("issued-node\(index + 1).der", der), ("issued-node\(index + 1).pem", Array(pem.utf8))]
        }
    }
    _ = Authority.issuedTBS
    return 0
}
