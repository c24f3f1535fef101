import Crypto
import DataMesherCore
import Foundation
import Testing

@Suite struct FileNameTests {
    @Test(arguments: [
        "a", "config:app", "dns/cnames", "A-Z_a.z:0-9", "x/y/z", "a.", "a..b", String(repeating: "s", count: 255),
        Array(repeating: String(repeating: "n", count: 200), count: 5).joined(separator: "/"),
    ])
    func goodNames(name: String) throws {
        #expect(try FileName(name).value == name)
    }

    @Test(arguments: [
        "", "/", "/etc/passwd", "a/", "/a", "a//b", ".", "..", "../x", "a/../b", "a/./b", ".hidden", "a/.b",
        "a b", "a\0b", "a\nb", "a\tb", "ä", "a\\b", "a%2fb", "a?b", "a#b", "a*b", "~root",
        String(repeating: "s", count: 256), String(repeating: "a/", count: 512) + "a",
    ])
    func badNames(name: String) {
        #expect(throws: FileNameError.self) { try FileName(name) }
    }

    @Test func errorsSayWhatIsWrong() {
        #expect(throws: FileNameError.segmentStartsWithDot(name: "\"../x\"")) { try FileName("../x") }
        #expect(throws: FileNameError.emptySegment(name: "\"a//b\"")) { try FileName("a//b") }
        #expect(throws: FileNameError.invalidCharacter(name: "\"a\\x00b\"", byte: 0)) { try FileName("a\0b") }
        #expect(throws: FileNameError.tooLong(length: 1025)) { try FileName(String(repeating: "a", count: 1025)) }
    }
}

/// Versions signed by a fresh key, for rule tests.
struct Signer {
    let key = Curve25519.Signing.PrivateKey()
    var public_: SignerKey { try! SignerKey(bytes: Array(key.publicKey.rawRepresentation)) }

    func version(
        _ name: String, at timestamp: Int64, content: String = "x", validFor: UInt64 = 0, network: String = "",
        tombstone: Bool = false
    ) throws -> FileVersion {
        let bytes = Array((tombstone ? "" : content).utf8)
        return try FileVersion.sign(
            kind: tombstone ? .tombstone : .content, networkID: network, name: try FileName(name), timestamp: timestamp,
            validFor: validFor, contentSHA256: Array(SHA256.hash(data: bytes)), contentLength: UInt64(bytes.count),
            key: key)
    }
}

@Suite struct VersionOrderTests {
    @Test func laterTimestampWins() throws {
        let signer = Signer()
        let old = try signer.version("a", at: 100)
        let new = try signer.version("a", at: 101)
        #expect(VersionOrder.isNewer(new, than: old))
        #expect(!VersionOrder.isNewer(old, than: new))
        #expect(!VersionOrder.isNewer(old, than: old))
    }

    @Test func tiesGoToTheLargerSignatureOnEveryNode() throws {
        let signer = Signer()
        let one = try signer.version("a", at: 100, content: "one")
        let two = try signer.version("a", at: 100, content: "two")
        let (small, large) = one.signature.lexicographicallyPrecedes(two.signature) ? (one, two) : (two, one)
        #expect(VersionOrder.isNewer(large, than: small))
        #expect(!VersionOrder.isNewer(small, than: large))
        #expect(VersionOrder.isNewer(timestamp: 100, signature: large.signature, than: small))
        #expect(!VersionOrder.isNewer(timestamp: 100, signature: small.signature, than: small))
    }
}

@Suite struct PolicyTests {
    let signer = Signer()
    let second = 1_000_000_000 as Int64
    let now: Int64 = 1_800_000_000 * 1_000_000_000

    var policy: FilePolicy {
        FilePolicy(allowedSigners: [try! FileName("a"): [signer.public_]], networkID: "", maxClockSkew: 600 * second)
    }

    @Test func acceptsAGoodVersion() throws {
        #expect(policy.evaluate(try signer.version("a", at: now), current: nil, now: now) == nil)
    }

    @Test func refusesEachBrokenRule() throws {
        let other = Signer()
        let held = try signer.version("a", at: now)
        #expect(
            policy.evaluate(try signer.version("b", at: now), current: nil, now: now)?.reason == "name_not_configured")
        #expect(
            policy.evaluate(try other.version("a", at: now), current: nil, now: now)?.reason == "signer_not_allowed")
        var forged = try other.version("a", at: now)
        forged.signer = signer.public_
        #expect(policy.evaluate(forged, current: nil, now: now)?.reason == "bad_signature")
        #expect(
            policy.evaluate(try signer.version("a", at: now, network: "other"), current: nil, now: now)?.reason
                == "bad_signature")
        #expect(policy.evaluate(held, current: held, now: now)?.reason == "stale")
        #expect(policy.evaluate(try signer.version("a", at: now - 1), current: held, now: now)?.reason == "stale")
        #expect(
            policy.evaluate(try signer.version("a", at: now + 601 * second), current: nil, now: now)?.reason
                == "in_future")
        #expect(policy.evaluate(try signer.version("a", at: now + 599 * second), current: nil, now: now) == nil)
        #expect(
            policy.evaluate(
                try signer.version("a", at: now - 10 * second, validFor: 5 * 1_000_000_000), current: nil, now: now)?
                .reason == "expired")
        var bigPolicy = policy
        bigPolicy.maxFileSize = 0
        #expect(bigPolicy.evaluate(try signer.version("a", at: now), current: nil, now: now)?.reason == "too_large")
    }

    @Test func tombstonesWinOverOlderContentAndLoseToNewer() throws {
        let content = try signer.version("a", at: now - 10)
        let tombstone = try signer.version("a", at: now - 5, tombstone: true)
        #expect(policy.evaluate(tombstone, current: content, now: now) == nil)
        #expect(policy.evaluate(content, current: tombstone, now: now)?.reason == "stale")
        #expect(policy.evaluate(try signer.version("a", at: now), current: tombstone, now: now) == nil)
    }

    @Test func expiryAndRetention() throws {
        let expiring = try signer.version("a", at: now, validFor: UInt64(10 * second))
        #expect(!policy.isExpired(expiring, now: now + 9 * second))
        #expect(policy.isExpired(expiring, now: now + 10 * second))
        #expect(!policy.mayForget(expiring, now: now + 10 * second))
        let tombstone = try signer.version("a", at: now, tombstone: true)
        #expect(!policy.mayForget(tombstone, now: now + policy.tombstoneRetention))
        #expect(policy.mayForget(tombstone, now: now + policy.tombstoneRetention + 1))
        #expect(policy.mayForget(expiring, now: now + 10 * second + policy.tombstoneRetention + 1))
    }
}

@Suite struct UnitTests {
    @Test(
        arguments: [
            ("30s", 30_000_000_000), ("500ms", 500_000_000), ("10m", 600_000_000_000), ("2160h", 7_776_000_000_000_000),
            ("1h30m", 5_400_000_000_000), ("0", 0), ("1.5s", 1_500_000_000), ("250us", 250_000),
            ("7d", 604_800_000_000_000),
        ] as [(String, UInt64)])
    func durations(text: String, nanoseconds: UInt64) throws {
        #expect(try DurationFormat.parse(text) == nanoseconds)
    }

    @Test(arguments: [
        "", "s", "10", "10x", "-5s", "1.s", ".5s", "1..5s", "10 s", "99999999999999999999h", "3000000h",
        "18446744074.5s",
    ])
    func badDurations(text: String) {
        #expect(throws: UnitError.self) { try DurationFormat.parse(text) }
    }

    @Test(
        arguments: [
            ("4GiB", 4 << 30), ("512MiB", 512 << 20), ("64KiB", 64 << 10), ("100B", 100), ("100", 100),
            ("1 MiB", 1 << 20),
            ("2MB", 2_000_000),
        ] as [(String, UInt64)])
    func sizes(text: String, bytes: UInt64) throws {
        #expect(try ByteSize.parse(text) == bytes)
    }

    @Test(arguments: ["", "GiB", "4 GB B", "-1", "1.5GiB", "4gib", "99999999999999999999", "20000000TiB"])
    func badSizes(text: String) {
        #expect(throws: UnitError.self) { try ByteSize.parse(text) }
    }

    @Test func base64RoundTripsAndIsStrict() {
        for length in 0..<70 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
            #expect(Base64.encode(bytes) == Data(bytes).base64EncodedString())
        }
        for bad in ["A", "AA", "AAA", "AA=A", "A===", "====", "AAA*", "AB==", "AAB=", "YQ==YQ=="] {
            #expect(Base64.decode(bad) == nil, "\(bad)")
        }
    }
}
