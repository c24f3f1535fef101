import ArgumentParser
import Crypto
import DataMesherCore
import DataMesherKeys
import DataMesherStore
import Foundation

struct GenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate signing keys, the cluster keyring key, and the CA and node identity keys.",
        subcommands: [
            GenerateKeypair.self, GenerateSigningKey.self, GenerateKeyringKey.self, GenerateCA.self,
            GenerateNodeKey.self,
        ]
    )
}

struct KeyPairPaths: ParsableArguments {
    @Option(help: "Where to write the private key (PKCS#8 PEM, mode 0600).")
    var privateKeyPath: String

    @Option(help: "Where to write the public key (SPKI PEM).")
    var publicKeyPath: String

    @Flag(help: "Replace existing key files.")
    var force = false

    func write() throws {
        try refuseToReplace([privateKeyPath, publicKeyPath], force: force)
        let key = Curve25519.Signing.PrivateKey()
        try DiskIO.writeFileAtomically(privateKeyPath, bytes: Array(try KeyPEM.encodePrivateKey(key).utf8), mode: 0o600)
        try DiskIO.writeFileAtomically(
            publicKeyPath, bytes: Array(try KeyPEM.encodePublicKey(key.publicKey).utf8), mode: 0o644)
        print(Base64.encode(key.publicKey.rawRepresentation))
    }
}

struct GenerateKeypair: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keypair",
        abstract: "Generate an ED25519 signing key pair; prints the public key for [files]."
    )
    @OptionGroup var paths: KeyPairPaths

    func run() async throws { try await reportingErrors { try paths.write() } }
}

struct GenerateSigningKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "signing-key",
        abstract: "Same as `generate keypair`."
    )
    @OptionGroup var paths: KeyPairPaths

    func run() async throws { try await reportingErrors { try paths.write() } }
}

struct GenerateCA: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ca",
        abstract: "Generate the ED25519 key pair of a certificate authority for node identities.",
        discussion: """
            The public key goes into every node's `certificate_authorities`; keep the private key offline
            and sign node keys with `data-mesher certificate sign`.
            """
    )
    @OptionGroup var paths: KeyPairPaths

    func run() async throws { try await reportingErrors { try paths.write() } }
}

struct GenerateNodeKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node-key",
        abstract: "Generate a node's ED25519 identity key pair (`identity_key`; sign its public key with the CA)."
    )
    @OptionGroup var paths: KeyPairPaths

    func run() async throws { try await reportingErrors { try paths.write() } }
}

struct GenerateKeyringKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keyring-key",
        abstract: "Generate a pre-shared cluster key for `[cluster.encryption] keyring` (base64 of 32 random bytes).",
        discussion: "The same as `openssl rand -base64 32`; the file is written with mode 0600."
    )
    @Option(help: "Where to write the key.")
    var output: String

    @Flag(help: "Replace an existing file.")
    var force = false

    func run() async throws {
        try await reportingErrors {
            try refuseToReplace([output], force: force)
            try DiskIO.writeFileAtomically(output, bytes: Array(KeyringFile.generate().utf8), mode: 0o600)
        }
    }
}

struct KeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key",
        abstract: "Inspect keys (make one with `data-mesher generate keypair`).",
        subcommands: [KeyPublic.self]
    )
}

struct KeyPublic: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "public",
        abstract: "Print the base64 public key (for [files]) of a private or public PEM key file."
    )
    @Argument(help: "A PKCS#8 private key or SPKI public key in PEM.")
    var keyFile: String

    func run() async throws {
        try await reportingErrors {
            print(Base64.encode(try KeyFile.readPublicKey(path: keyFile).rawRepresentation))
        }
    }
}

/// Key and certificate files are never replaced by accident.
func refuseToReplace(_ paths: [String], force: Bool) throws {
    for path in paths where !force && FileManager.default.fileExists(atPath: path) {
        throw CLIError("\(path) already exists; pass --force to replace it")
    }
}
