import ArgumentParser
import DataMesherCore
import DataMesherKeys
import DataMesherNet
import DataMesherStore
import Foundation

struct CertificateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certificate",
        abstract: "Issue and check node identity certificates (X.509, signed by a CA key).",
        subcommands: [CertificateSign.self, CertificateVerify.self]
    )
}

struct CertificateSign: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign",
        abstract: "Sign a node's public key with the CA key, writing an X.509 certificate (PEM).",
        discussion: "`openssl x509 -in CERT -noout -text` shows what was issued."
    )

    @Option(help: "The CA's private key (PKCS#8 PEM, from `generate ca`).")
    var caKey: String

    @Option(help: "The node's public (or private) identity key (PEM, from `generate node-key`).")
    var nodeKey: String

    @Option(help: "Where to write the certificate.")
    var output: String

    @Option(help: "The node name in the certificate (default: the node key file's name without extension).")
    var name: String?

    @Option(help: "How long the certificate is valid, e.g. 2160h (90 days) or 30m.")
    var validity: String = "2160h"

    @Flag(help: "Replace an existing certificate file.")
    var force = false

    func run() async throws {
        try await reportingErrors {
            let seconds: TimeInterval
            do { seconds = TimeInterval(try DurationFormat.parse(validity)) / 1e9 } catch {
                throw CLIError("--validity: \(error)")
            }
            guard seconds > 0 else { throw CLIError("--validity must be longer than zero") }
            try refuseToReplace([output], force: force)
            let ca = try KeyFile.readPrivateKey(path: caKey)
            let node = try KeyFile.readPublicKey(path: nodeKey)
            let subject = name ?? URL(fileURLWithPath: nodeKey).deletingPathExtension().lastPathComponent
            guard !subject.isEmpty, subject.utf8.count <= 64 else {
                throw CLIError("--name must be 1 to 64 bytes long")
            }
            let certificate = try NodeCertificate.issue(
                caKey: ca, nodeKey: node, name: subject, now: WallClock.date(), validity: seconds)
            try DiskIO.writeFileAtomically(output, bytes: Array(try certificate.pem().utf8), mode: 0o644)
            print("\(output): \(subject), valid until \(certificate.notValidAfter)")
        }
    }
}

struct CertificateVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check that a certificate is signed by the CA and valid now; prints its subject and validity."
    )

    @Option(help: "The CA's public key (SPKI PEM); may be given more than once.")
    var ca: [String]

    @Argument(help: "The certificate (PEM).")
    var certificate: String

    func run() async throws {
        try await reportingErrors {
            guard !ca.isEmpty else { throw CLIError("give the CA's public key with --ca") }
            let authorities = try ca.map { try KeyFile.readPublicKey(path: $0) }
            let parsed = try KeyFile.readCertificate(path: certificate)
            let key: String
            do {
                key = Base64.encode(
                    Array(try parsed.verify(authorities: authorities, now: WallClock.date()).rawRepresentation))
            } catch { throw CLIError("\(certificate): \(error)") }
            print(
                "\(certificate): valid; node \(parsed.name), key \(key), "
                    + "from \(parsed.notValidBefore) until \(parsed.notValidAfter)")
        }
    }
}
