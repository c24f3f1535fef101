import DataMesherCore
import Foundation
import Testing

@Suite struct RFC3339Tests {
    /// Foundation's formatter. Before the Gregorian reform (1582-10-15) it counts Julian dates,
    /// where RFC 3339 extends the Gregorian calendar back (as `knownInstants` checks for year 1).
    static func foundation(_ seconds: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }

    @Test func knownInstants() {
        #expect(RFC3339.utc(seconds: 0) == "1970-01-01T00:00:00Z")
        #expect(RFC3339.utc(seconds: -1) == "1969-12-31T23:59:59Z")
        #expect(RFC3339.utc(seconds: 951_782_400) == "2000-02-29T00:00:00Z")
        #expect(RFC3339.utc(seconds: 1_772_107_200) == "2026-02-26T12:00:00Z")
        #expect(RFC3339.utc(seconds: 253_402_300_799) == "9999-12-31T23:59:59Z")
        #expect(RFC3339.utc(seconds: -62_135_596_800) == "0001-01-01T00:00:00Z")
        #expect(RFC3339.utc(nanoseconds: 1_999_999_999) == "1970-01-01T00:00:01Z")
        #expect(RFC3339.utc(nanoseconds: -1) == "1969-12-31T23:59:59Z")
        #expect(RFC3339.utc(nanoseconds: Int64.max) == "2262-04-11T23:47:16Z")
        #expect(RFC3339.utc(nanoseconds: Int64.min) == "1677-09-21T00:12:43Z")
    }

    @Test func agreesWithFoundationFromYear1583To9999() {
        var rng = SystemRandomNumberGenerator()
        let first: Int64 = -12_212_553_600  // 1583-01-01
        let last: Int64 = 253_402_300_799  // 9999-12-31T23:59:59
        var samples: [Int64] = [first, last, 0, -1, 86399, 86400, 951_868_799, 4_107_542_400]
        for _ in 0..<5000 { samples.append(Int64.random(in: first...last, using: &rng)) }
        for seconds in samples {
            #expect(RFC3339.utc(seconds: seconds) == Self.foundation(seconds), "\(seconds)")
        }
    }

    @Test func neverTrapsOnAnyInt64() {
        for value in [Int64.min, Int64.min + 1, -86_400, Int64.max - 1, Int64.max] {
            #expect(!RFC3339.utc(seconds: value).isEmpty)
            #expect(!RFC3339.utc(nanoseconds: value).isEmpty)
        }
    }
}
