import Crypto
import DataMesherCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Stops the process when a decoder breaks one of its promises, so libFuzzer keeps the input as
/// a crash (`crash-<sha1>`) exactly as it would for a trap inside the decoder itself.
@inline(__always)
public func invariant(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String, file: StaticString = #fileID,
    line: UInt = #line
) {
    if !condition() { fatalError("fuzz invariant broken: \(message())", file: file, line: line) }
}

/// Stops the process: something that must not happen did.
public func broken(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    fatalError("fuzz invariant broken: \(message)", file: file, line: line)
}

/// The bytes libFuzzer hands to `LLVMFuzzerTestOneInput`.
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// A short printable form of bytes for invariant messages.
public func dump(_ bytes: [UInt8], limit: Int = 256) -> String {
    Hex.encode(bytes.prefix(limit)) + (bytes.count > limit ? "…(\(bytes.count) bytes)" : "")
}

/// A string quoted for invariant messages, with its UTF-8 bytes when it is not plain ASCII.
public func quote(_ text: String) -> String {
    let printable = text.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
    return printable ? "\"\(text)\"" : "\"\(text)\" (utf8 \(dump(Array(text.utf8))))"
}

/// Seeds for the committed corpus, made with the project's own encoders.
public enum Seeds {
    /// A fixed signing key, so that the generated seeds are the same on every run.
    public static func key(_ fill: UInt8) -> Curve25519.Signing.PrivateKey {
        // 32 bytes is always a valid ED25519 seed.
        try! Curve25519.Signing.PrivateKey(rawRepresentation: [UInt8](repeating: fill, count: 32))
    }

    /// When `DM_FUZZ_MAKE_CORPUS` names a directory, writes each seed into it and exits; called
    /// from `LLVMFuzzerInitialize`, before libFuzzer reads any corpus.
    public static func writeIfAsked(_ make: () throws -> [(name: String, bytes: [UInt8])]) {
        guard let raw = getenv("DM_FUZZ_MAKE_CORPUS") else { return }
        let directory = String(cString: raw)
        let seeds: [(name: String, bytes: [UInt8])]
        do { seeds = try make() } catch {
            print("cannot make the seeds: \(error)")
            exit(1)
        }
        for seed in seeds {
            let path = directory + "/" + seed.name
            guard let file = fopen(path, "wb") else {
                print("cannot write \(path)")
                exit(1)
            }
            let written = seed.bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
            fclose(file)
            guard written == seed.bytes.count else {
                print("short write to \(path)")
                exit(1)
            }
        }
        print("wrote \(seeds.count) seeds to \(directory)")
        exit(0)
    }
}
