// The PEM key decoders: `KeyPEM.decodePrivateKey` (PKCS#8), `KeyPEM.decodePublicKey` (SPKI)
// and `KeyPEM.publicKey(fromEither:)`, on text as `KeyFile` reads it (valid UTF-8).
//
// Invariants of a key that decodes:
// - re-encoding it with `KeyPEM.encode…` and decoding again gives the same key;
// - `publicKey(fromEither:)` of the same text gives the same public key (for a private key: its
//   public key);
// - a decoded private key signs a message that its public key verifies.
//
// Keyring key files (`KeyringFile.read`, base64 of 32 bytes) go through the same target: inputs
// of up to 128 bytes are also written to a temporary file and read as one. A key that reads is
// 32 bytes whose base64 is the file's text without surrounding whitespace.
import Crypto
import DataMesherCore
import DataMesherKeys
import Foundation
import FuzzSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPEM(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = fuzzInput(data, size)
    if input.count <= 128 { checkKeyring(input) }
    guard let text = String(validating: input, as: UTF8.self) else { return 0 }
    let either = try? KeyPEM.publicKey(fromEither: text)

    if let key = try? KeyPEM.decodePrivateKey(pem: text) {
        let raw = key.rawRepresentation
        invariant(raw.count == 32, "private key of \(raw.count) bytes")
        let pem: String
        do { pem = try KeyPEM.encodePrivateKey(key) } catch { broken("cannot encode: \(error)") }
        let again = try? KeyPEM.decodePrivateKey(pem: pem)
        invariant(again?.rawRepresentation == raw, "a private key does not survive encode/decode:\n\(pem)")
        invariant(
            either?.rawRepresentation == key.publicKey.rawRepresentation,
            "publicKey(fromEither:) disagrees with decodePrivateKey for:\n\(text)")
        let message = Array("data-mesher fuzz".utf8)
        let signature = try? key.signature(for: message)
        invariant(
            signature.map { key.publicKey.isValidSignature($0, for: message) } == true,
            "a decoded private key does not sign verifiably")
    }

    if let key = try? KeyPEM.decodePublicKey(pem: text) {
        let raw = key.rawRepresentation
        invariant(raw.count == 32, "public key of \(raw.count) bytes")
        let pem: String
        do { pem = try KeyPEM.encodePublicKey(key) } catch { broken("cannot encode: \(error)") }
        let again = try? KeyPEM.decodePublicKey(pem: pem)
        invariant(again?.rawRepresentation == raw, "a public key does not survive encode/decode:\n\(pem)")
        // fromEither picks the private-key decoder whenever the text mentions a private key block.
        if !text.contains("-----BEGIN PRIVATE KEY-----") {
            invariant(either?.rawRepresentation == raw, "publicKey(fromEither:) disagrees with decodePublicKey")
        }
        invariant((try? SignerKey(bytes: Array(raw)))?.base64 == Base64.encode(raw), "SignerKey of a public key")
    }
    return 0
}

let keyringPath = NSTemporaryDirectory() + "/dm-fuzz-keyring-\(getpid())"

func checkKeyring(_ input: [UInt8]) {
    // Plain stdio: Foundation's createFile writes atomically and is a hundred times slower.
    guard let file = fopen(keyringPath, "wb") else { broken("cannot write \(keyringPath)") }
    let written = input.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
    fclose(file)
    invariant(written == input.count, "short write to \(keyringPath)")
    defer { unlink(keyringPath) }
    guard let key = try? KeyringFile.read(path: keyringPath) else { return }
    let bytes = key.withUnsafeBytes { Array($0) }
    invariant(bytes.count == KeyringFile.keyLength, "keyring key of \(bytes.count) bytes")
    let text = String(decoding: input, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    invariant(Base64.encode(bytes) == text, "keyring file \(dump(input)) reads as key \(Base64.encode(bytes))")
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    Seeds.writeIfAsked(makeSeeds)
    return 0
}

/// Keys written by KeyPEM itself (the openssl-written ones are committed as files).
func makeSeeds() throws -> [(name: String, bytes: [UInt8])] {
    let key = Seeds.key(7)
    return [
        ("keypem-private", Array(try KeyPEM.encodePrivateKey(key).utf8)),
        ("keypem-public", Array(try KeyPEM.encodePublicKey(key.publicKey).utf8)),
        ("keyring-key", Array((Base64.encode([UInt8](repeating: 0x11, count: 32)) + "\n").utf8)),
    ]
}
