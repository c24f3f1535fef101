import Crypto
import DataMesherCore
import DataMesherKeys
import Foundation
import Testing

struct Vector: Decodable {
    let kind: String
    let network: String
    let name: String
    let timestamp_ns: Int64
    let valid_for_ns: UInt64
    let content_base64: String
    let message_hex: String
    let signature_base64: String
}

struct VectorFile: Decodable {
    let signer_public_key_base64: String
    let vectors: [Vector]
}

@Suite struct SignatureVectorTests {
    let file: VectorFile
    let key: Curve25519.Signing.PrivateKey

    init() throws {
        file = try JSONDecoder().decode(VectorFile.self, from: TestData.data("signature-vectors.json"))
        key = try KeyPEM.decodePrivateKey(pem: String(decoding: try TestData.data("signer.key"), as: UTF8.self))
    }

    func version(_ vector: Vector) throws -> FileVersion {
        let content = try #require(Base64.decode(vector.content_base64))
        return FileVersion(
            kind: vector.kind == "tombstone" ? .tombstone : .content, networkID: vector.network,
            name: try FileName(vector.name), timestamp: vector.timestamp_ns, validFor: vector.valid_for_ns,
            contentSHA256: Array(SHA256.hash(data: content)), contentLength: UInt64(content.count),
            signer: try SignerKey(base64: file.signer_public_key_base64),
            signature: try #require(Base64.decode(vector.signature_base64)))
    }

    @Test func keyFileMatchesPublicKey() throws {
        #expect(Base64.encode(key.publicKey.rawRepresentation) == file.signer_public_key_base64)
        let pub = try KeyPEM.decodePublicKey(pem: String(decoding: try TestData.data("signer.pub"), as: UTF8.self))
        #expect(pub.rawRepresentation == key.publicKey.rawRepresentation)
    }

    @Test func everyVectorMessageIsByteExact() throws {
        #expect(file.vectors.count == 4)
        for vector in file.vectors {
            #expect(Hex.encode(try version(vector).signedMessage) == vector.message_hex, "\(vector.name)")
        }
    }

    @Test func everyVectorSignatureVerifies() throws {
        for vector in file.vectors {
            #expect(try version(vector).hasValidSignature, "\(vector.name)")
        }
    }

    @Test func signingReproducesEveryVectorSignature() throws {
        for vector in file.vectors {
            let expected = try version(vector)
            let signed = try FileVersion.sign(
                kind: expected.kind, networkID: expected.networkID, name: expected.name, timestamp: expected.timestamp,
                validFor: expected.validFor, contentSHA256: expected.contentSHA256,
                contentLength: expected.contentLength, key: key)
            // ED25519 is deterministic: the same key and message give the same signature.
            #expect(signed.signature == expected.signature, "\(vector.name)")
        }
    }

    @Test func anyChangeBreaksTheSignature() throws {
        let base = try version(file.vectors[2])
        var mutations: [FileVersion] = []
        var copy = base
        copy.timestamp += 1
        mutations.append(copy)
        copy = base
        copy.validFor = 0
        mutations.append(copy)
        copy = base
        copy.networkID = ""
        mutations.append(copy)
        copy = base
        copy.name = try FileName("dns/cnamez")
        mutations.append(copy)
        copy = base
        copy.contentLength += 1
        mutations.append(copy)
        copy = base
        copy.contentSHA256[0] ^= 1
        mutations.append(copy)
        copy = base
        copy.kind = .tombstone
        mutations.append(copy)
        copy = base
        copy.signature[10] ^= 0x80
        mutations.append(copy)
        copy = base
        copy.signer = try SignerKey(bytes: Array(Curve25519.Signing.PrivateKey().publicKey.rawRepresentation))
        mutations.append(copy)
        for mutation in mutations { #expect(!mutation.hasValidSignature) }
        #expect(base.hasValidSignature)
    }
}

@Suite struct OpenSSLInteropTests {
    static let openssl = ["/usr/bin/openssl", "/usr/local/bin/openssl"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    @Test func opensslReadsOurKeysAndVerifiesOurSignatures() throws {
        let openssl = try #require(Self.openssl, "openssl binary is required (.ci/run installs it)")
        let dir = try TempDir()
        defer { dir.remove() }
        let key = Curve25519.Signing.PrivateKey()
        try KeyPEM.encodePrivateKey(key).write(toFile: dir.path + "/k.pem", atomically: true, encoding: .utf8)
        try KeyPEM.encodePublicKey(key.publicKey).write(toFile: dir.path + "/k.pub", atomically: true, encoding: .utf8)
        // openssl derives the same public key from our private key.
        let derived = try run(openssl, ["pkey", "-in", dir.path + "/k.pem", "-pubout"])
        #expect(derived.status == 0, "\(derived.stderr)")
        #expect(derived.stdout == (try KeyPEM.encodePublicKey(key.publicKey)))
        // openssl verifies a signature we made over a signed message.
        let version = try FileVersion.sign(
            kind: .content, networkID: "net", name: try FileName("a/b"), timestamp: 42, validFor: 0,
            contentSHA256: Array(SHA256.hash(data: Data("x".utf8))), contentLength: 1, key: key)
        try Data(version.signedMessage).write(to: URL(fileURLWithPath: dir.path + "/msg"))
        try Data(version.signature).write(to: URL(fileURLWithPath: dir.path + "/sig"))
        let verify = try run(
            openssl,
            [
                "pkeyutl", "-verify", "-pubin", "-inkey", dir.path + "/k.pub", "-rawin", "-in", dir.path + "/msg",
                "-sigfile", dir.path + "/sig",
            ])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
    }

    @Test func weReadOpensslKeysAndVerifyItsSignatures() throws {
        let openssl = try #require(Self.openssl, "openssl binary is required (.ci/run installs it)")
        let dir = try TempDir()
        defer { dir.remove() }
        let generated = try run(openssl, ["genpkey", "-algorithm", "ed25519", "-out", dir.path + "/k.pem"])
        #expect(generated.status == 0, "\(generated.stderr)")
        let exported = try run(openssl, ["pkey", "-in", dir.path + "/k.pem", "-pubout", "-out", dir.path + "/k.pub"])
        #expect(exported.status == 0)
        let key = try KeyFile.readPrivateKey(path: dir.path + "/k.pem")
        let pub = try KeyFile.readPublicKey(path: dir.path + "/k.pub")
        #expect(pub.rawRepresentation == key.publicKey.rawRepresentation)
        #expect(try KeyFile.readPublicKey(path: dir.path + "/k.pem").rawRepresentation == pub.rawRepresentation)
        // A message signed by openssl verifies with our code.
        let message = FileVersion.signedMessage(
            kind: .content, networkID: "", name: try FileName("config:app"), timestamp: 7, validFor: 0,
            contentSHA256: FileVersion.emptySHA256, contentLength: 0)
        try Data(message).write(to: URL(fileURLWithPath: dir.path + "/msg"))
        let signed = try run(
            openssl,
            [
                "pkeyutl", "-sign", "-inkey", dir.path + "/k.pem", "-rawin", "-in", dir.path + "/msg", "-out",
                dir.path + "/sig",
            ])
        #expect(signed.status == 0, "\(signed.stderr)")
        let signature = try Data(contentsOf: URL(fileURLWithPath: dir.path + "/sig"))
        #expect(pub.isValidSignature(signature, for: message))
        // Our encoder writes the same DER as openssl for the same key.
        #expect(try KeyPEM.encodePrivateKey(key) == String(contentsOfFile: dir.path + "/k.pem", encoding: .utf8))
    }

    @Test(arguments: [
        "", "garbage", "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA3g7CXt9PwvaYSqqNvpJt+vUH+l3uFMCIfxV4Dq89TrY=\n-----END PUBLIC KEY-----\n",
        // An EC P-256 key: PKCS#8 but not ED25519.
        "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgYirTZSx+5O8Y6tlG\ncka6W6btJiocdrdolfcukSoTEk+hRANCAAQkvPNu7Pa1GcsWU4v7ptNfqCJVq8Cx\nzo0MUVtbiqnafbPZkXkxS6zG4hfbV9Ih/qFT3mWB28I09HemNxmrfWAo\n-----END PRIVATE KEY-----\n",
    ])
    func garbagePrivateKeysAreRefused(pem: String) {
        #expect(throws: KeyFileError.self) { try KeyPEM.decodePrivateKey(pem: pem) }
    }
}
