import Crypto
import DataMesherCore
import Foundation

/// The pre-shared cluster keys of `[cluster.encryption] keyring`: each file holds the base64 of
/// 32 random bytes (what `openssl rand -base64 32` or `data-mesher generate keyring-key` writes).
/// The first key seals what this node sends; every key is tried on what it receives.
public enum KeyringFile {
    public static let keyLength = 32

    public static func read(path: String) throws(KeyFileError) -> SymmetricKey {
        let text = try KeyFile.readText(path).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let bytes = Base64.decode(text) else {
            throw .invalid(path: path, reason: "not base64 (expected the base64 of 32 random bytes)")
        }
        guard bytes.count == keyLength else {
            throw .invalid(path: path, reason: "holds \(bytes.count) bytes, expected \(keyLength) (AES-256)")
        }
        return SymmetricKey(data: bytes)
    }

    /// A new key file's text: base64 of 32 random bytes and a newline.
    public static func generate() -> String {
        let key = SymmetricKey(size: .bits256)
        return key.withUnsafeBytes { Base64.encode(Array($0)) } + "\n"
    }
}
