/// RFC 3339 timestamps in UTC, such as `2026-02-26T12:00:00Z`, from calendar arithmetic alone
/// (proleptic Gregorian): no formatter, time zone or locale data to load, and defined for every
/// `Int64`, so a timestamp read from a peer or a signed file can never make it trap.
public enum RFC3339 {
    /// `seconds` since 1970-01-01T00:00:00Z.
    public static func utc(seconds: Int64) -> String {
        let (days, second) = floored(seconds, by: 86400)
        let (year, month, day) = civil(days: days)
        let date = "\(yearText(year))-\(twoDigits(month))-\(twoDigits(day))"
        return date + "T\(twoDigits(second / 3600)):\(twoDigits(second / 60 % 60)):\(twoDigits(second % 60))Z"
    }

    /// `nanoseconds` since 1970-01-01T00:00:00Z, the fraction dropped (rounded down).
    public static func utc(nanoseconds: Int64) -> String {
        utc(seconds: floored(nanoseconds, by: 1_000_000_000).quotient)
    }

    /// Division rounded down, with a remainder in 0..<divisor, also for negative values (before 1970).
    static func floored(_ value: Int64, by divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        let (quotient, remainder) = value.quotientAndRemainder(dividingBy: divisor)
        return remainder < 0 ? (quotient - 1, remainder + divisor) : (quotient, remainder)
    }

    /// Year, month (1-12) and day (1-31) of the day `days` after 1970-01-01: the inverse of the
    /// "days from civil" count, over 400-year eras of 146,097 days (H. Hinnant's algorithm).
    /// `days` is at most |Int64.min / 86400| + 1 here (about 1.1e14), so no step can overflow.
    static func civil(days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let shifted = days + 719_468  // days from 0000-03-01
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097  // 0...146096
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365  // 0...399
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)  // 0...365, from March
        let shiftedMonth = (5 * dayOfYear + 2) / 153  // 0...11, March first
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    static func twoDigits(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }

    /// At least four digits, as RFC 3339 asks; a sign before years before 1 (ISO 8601's form).
    static func yearText(_ year: Int64) -> String {
        let digits = String(year.magnitude)
        return (year < 0 ? "-" : "") + String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
