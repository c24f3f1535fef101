import DataMesherCore
import Testing

/// Issue 13.5: a version from anywhere (API or peer) is held to the same rules, and no Int64 or
/// UInt64 the wire can carry makes the arithmetic trap.
@Suite struct ExtremeValueTests {
    static let now: Int64 = 1_700_000_000_000_000_000
    static let skew: Int64 = 600 * 1_000_000_000

    struct Case: CustomStringConvertible, Sendable {
        let timestamp: Int64
        let validFor: UInt64
        let now: Int64
        let tombstone: Bool
        /// The refusal's `reason`, or nil for accepted.
        let expected: String?
        var description: String { "ts \(timestamp) valid_for \(validFor) now \(now) tombstone \(tombstone)" }
    }

    static let cases: [Case] = [
        Case(timestamp: Int64.min, validFor: 0, now: now, tombstone: false, expected: "negative_timestamp"),
        Case(timestamp: Int64.min, validFor: 0, now: 0, tombstone: true, expected: "negative_timestamp"),
        Case(
            timestamp: Int64.min, validFor: UInt64.max, now: Int64.max, tombstone: true, expected: "negative_timestamp"),
        Case(timestamp: -1, validFor: 0, now: now, tombstone: false, expected: "negative_timestamp"),
        Case(timestamp: -1, validFor: UInt64.max, now: Int64.min, tombstone: false, expected: "negative_timestamp"),
        Case(timestamp: 0, validFor: 0, now: now, tombstone: false, expected: nil),
        Case(timestamp: 0, validFor: 0, now: now, tombstone: true, expected: "stale"),  // older than retention
        Case(timestamp: 0, validFor: UInt64.max, now: now, tombstone: false, expected: nil),
        Case(timestamp: 0, validFor: UInt64(Int64.max), now: now, tombstone: false, expected: nil),
        Case(timestamp: 0, validFor: 1, now: now, tombstone: false, expected: "expired"),
        Case(timestamp: 0, validFor: 0, now: Int64.min, tombstone: false, expected: "in_future"),
        Case(timestamp: 1, validFor: 0, now: Int64.min, tombstone: false, expected: "in_future"),
        Case(timestamp: Int64.max, validFor: 0, now: now, tombstone: false, expected: "in_future"),
        Case(timestamp: Int64.max, validFor: 0, now: Int64.min, tombstone: true, expected: "in_future"),
        Case(timestamp: Int64.max, validFor: UInt64.max, now: Int64.max, tombstone: false, expected: nil),
        Case(timestamp: Int64.max, validFor: 0, now: Int64.max, tombstone: true, expected: nil),
        Case(timestamp: Int64.max - 1, validFor: UInt64.max, now: Int64.max, tombstone: false, expected: nil),
        Case(timestamp: now - 10, validFor: 10, now: now, tombstone: false, expected: "expired"),
        Case(timestamp: now - 10, validFor: 11, now: now, tombstone: false, expected: nil),
        Case(timestamp: now + skew, validFor: 0, now: now, tombstone: false, expected: nil),
        Case(timestamp: now + skew + 1, validFor: 0, now: now, tombstone: false, expected: "in_future"),
    ]

    @Test(arguments: cases)
    func evaluateNeverTrapsAndAppliesTheAPIRules(_ test: Case) throws {
        let signer = Signer()
        let version = try signer.version("a", at: test.timestamp, validFor: test.validFor, tombstone: test.tombstone)
        let policy = FilePolicy(allowedSigners: [try FileName("a"): [signer.public_]])
        let refusal = policy.evaluate(version, current: nil, now: test.now)
        #expect(refusal?.reason == test.expected)
        // The header-only check gives the same verdict on everything it can see.
        let early = policy.precheck(
            name: version.name, signer: version.signer, contentLength: version.contentLength,
            timestamp: version.timestamp, validFor: version.validFor, now: test.now)
        if test.expected != "stale" { #expect(early?.reason == test.expected) }
        // And the helpers around held versions do not trap either.
        _ = policy.isExpired(version, now: test.now)
        _ = policy.mayForget(version, now: test.now)
        _ = version.expiresAt
        _ = policy.evaluate(version, current: version, now: test.now)
    }

    @Test(arguments: [Int64.min, -1, 0, 1, Int64.max])
    func heldVersionsAtTheEdgesNeverTrap(_ held: Int64) throws {
        let signer = Signer()
        for validFor: UInt64 in [0, 1, UInt64(Int64.max), UInt64.max] {
            for tombstone in [false, true] {
                let version = try signer.version("a", at: held, validFor: validFor, tombstone: tombstone)
                for now: Int64 in [Int64.min, -1, 0, Self.now, Int64.max] {
                    for retention: Int64 in [0, 1, Int64.max] {
                        let policy = FilePolicy(
                            allowedSigners: [try FileName("a"): [signer.public_]], tombstoneRetention: retention)
                        _ = policy.mayForget(version, now: now)
                        _ = policy.isExpired(version, now: now)
                    }
                }
            }
        }
    }

    @Test func saturatingHelpers() {
        #expect(FilePolicy.distance(from: Int64.min, to: Int64.max) == Int64.max)
        #expect(FilePolicy.distance(from: 5, to: 7) == 2)
        #expect(FilePolicy.saturatingAdd(Int64.max, 1) == Int64.max)
        #expect(FilePolicy.saturatingAdd(Int64.min, -1) == Int64.min)
        #expect(FilePolicy.saturatingAdd(1, 2) == 3)
    }

    @Test func aHighWaterMarkRefusesOlderVersionsOnly() throws {
        let signer = Signer()
        let policy = FilePolicy(allowedSigners: [try FileName("a"): [signer.public_]])
        let mark = HighWater(try signer.version("a", at: Self.now - 1000))
        let older = try signer.version("a", at: Self.now - 2000)
        let newer = try signer.version("a", at: Self.now - 10)
        #expect(policy.evaluate(older, current: nil, now: Self.now, highWater: mark)?.reason == "stale")
        #expect(policy.evaluate(newer, current: nil, now: Self.now, highWater: mark) == nil)
        #expect(policy.evaluate(older, current: nil, now: Self.now) == nil)
    }
}
