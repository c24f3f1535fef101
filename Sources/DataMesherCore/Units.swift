/// Durations (`30s`, `500ms`, `10m`, `2160h`, `1h30m`) and byte sizes (`4GiB`, `512KiB`, `100`).
public enum DurationFormat {
    static let units: [(String, UInt64)] = [
        ("ns", 1), ("us", 1_000), ("µs", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000),
        ("m", 60_000_000_000), ("h", 3_600_000_000_000), ("d", 86_400_000_000_000),
    ]

    /// Parses a duration into nanoseconds. A bare `0` is allowed; any other number needs a unit.
    public static func parse(_ text: String) throws(UnitError) -> UInt64 {
        if text == "0" { return 0 }
        var rest = Substring(text)
        guard !rest.isEmpty else { throw .badDuration(text) }
        var total: UInt64 = 0
        while !rest.isEmpty {
            let digits = rest.prefix(while: { $0.isASCII && ($0.isNumber || $0 == ".") })
            guard !digits.isEmpty, digits.first != ".", digits.filter({ $0 == "." }).count <= 1 else {
                throw .badDuration(text)
            }
            rest = rest.dropFirst(digits.count)
            let unitText = rest.prefix(while: { !($0.isASCII && ($0.isNumber || $0 == ".")) })
            rest = rest.dropFirst(unitText.count)
            guard let unit = units.first(where: { $0.0 == unitText })?.1 else { throw .badDuration(text) }
            let parts = digits.split(separator: ".", omittingEmptySubsequences: false)
            guard let whole = UInt64(parts[0]) else { throw .badDuration(text) }
            var value = whole.multipliedReportingOverflow(by: unit)
            guard !value.overflow else { throw .durationTooLarge(text) }
            if parts.count == 2 {
                guard !parts[1].isEmpty, parts[1].count <= 9, let fraction = UInt64(parts[1]) else {
                    throw .badDuration(text)
                }
                var scale: UInt64 = 1
                for _ in 0..<parts[1].count { scale *= 10 }
                let extra = Double(fraction) / Double(scale) * Double(unit)
                value = value.partialValue.addingReportingOverflow(UInt64(extra))
            }
            guard !value.overflow else { throw .durationTooLarge(text) }
            let sum = total.addingReportingOverflow(value.partialValue)
            guard !sum.overflow, sum.partialValue <= UInt64(Int64.max) else { throw .durationTooLarge(text) }
            total = sum.partialValue
        }
        return total
    }

    /// A compact human form of a duration in nanoseconds: `10m`, `1h0m5s`, `250ms`.
    public static func describe(_ nanoseconds: Int64) -> String {
        if nanoseconds < 0 { return "-" + describe(nanoseconds == .min ? .max : -nanoseconds) }
        if nanoseconds < 1_000_000 { return "\(nanoseconds)ns" }
        if nanoseconds < 1_000_000_000 { return "\(nanoseconds / 1_000_000)ms" }
        var seconds = nanoseconds / 1_000_000_000
        let hours = seconds / 3600
        seconds %= 3600
        let minutes = seconds / 60
        seconds %= 60
        var out = ""
        if hours > 0 { out += "\(hours)h" }
        if minutes > 0 { out += "\(minutes)m" }
        if seconds > 0 || out.isEmpty { out += "\(seconds)s" }
        return out
    }
}

public enum ByteSize {
    static let units: [(String, UInt64)] = [
        ("B", 1), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
        ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000),
    ]

    /// Parses `4GiB`, `512 KiB`, `100B` or a plain number of bytes.
    public static func parse(_ text: String) throws(UnitError) -> UInt64 {
        let trimmed = trimSpaces(Substring(text))
        let digits = trimmed.prefix(while: { $0.isASCII && $0.isNumber })
        guard !digits.isEmpty, let number = UInt64(digits) else { throw .badSize(text) }
        let unitText = trimSpaces(trimmed.dropFirst(digits.count))
        if unitText.isEmpty { return number }
        guard let unit = units.first(where: { $0.0 == unitText })?.1 else { throw .badSize(text) }
        let (value, overflow) = number.multipliedReportingOverflow(by: unit)
        guard !overflow else { throw .badSize(text) }
        return value
    }
}

public enum UnitError: Error, Sendable, Equatable, CustomStringConvertible {
    case badDuration(String)
    case durationTooLarge(String)
    case badSize(String)

    public var description: String {
        switch self {
        case .badDuration(let text):
            return "\"\(text)\" is not a duration; write it like 30s, 500ms, 10m, 2160h or 1h30m"
        case .durationTooLarge(let text): return "duration \"\(text)\" is too large"
        case .badSize(let text): return "\"\(text)\" is not a size; write it like 4GiB, 512MiB, 64KiB or 100B"
        }
    }
}

func trimSpaces(_ text: Substring) -> Substring {
    let start = text.firstIndex(where: { $0 != " " && $0 != "\t" }) ?? text.endIndex
    guard let last = text.lastIndex(where: { $0 != " " && $0 != "\t" }) else { return text[start..<start] }
    return text[start...last]
}
