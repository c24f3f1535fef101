/// A validated file name (SPEC §5): segments joined by `/`; a segment is 1–255 bytes of
/// `A-Z a-z 0-9 . _ : -` that does not start with `.`; at most 1024 bytes in all.
public struct FileName: Sendable, Hashable, Comparable, CustomStringConvertible {
    public static let maxLength = 1024
    public static let maxSegmentLength = 255

    public let value: String

    public init(_ value: String) throws(FileNameError) {
        try FileName.validate(value)
        self.value = value
    }

    public var description: String { value }

    public static func < (lhs: FileName, rhs: FileName) -> Bool {
        lhs.value.utf8.lexicographicallyPrecedes(rhs.value.utf8)
    }

    static func validate(_ value: String) throws(FileNameError) {
        let bytes = Array(value.utf8)
        if bytes.isEmpty { throw .empty }
        if bytes.count > maxLength { throw .tooLong(length: bytes.count) }
        var segmentStart = 0
        for index in 0...bytes.count {
            if index == bytes.count || bytes[index] == UInt8(ascii: "/") {
                let length = index - segmentStart
                if length == 0 { throw .emptySegment(name: printable(value)) }
                if length > maxSegmentLength { throw .segmentTooLong(length: length) }
                if bytes[segmentStart] == UInt8(ascii: ".") { throw .segmentStartsWithDot(name: printable(value)) }
                segmentStart = index + 1
                continue
            }
            if !isAllowed(bytes[index]) {
                throw .invalidCharacter(name: printable(value), byte: bytes[index])
            }
        }
    }

    static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"),
            UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    /// A name quoted for error messages: control and non-ASCII bytes escaped, length capped.
    static func printable(_ value: String) -> String {
        var out = ""
        for byte in value.utf8.prefix(80) {
            if byte >= 0x20 && byte < 0x7f {
                out.append(Character(Unicode.Scalar(byte)))
            } else {
                out += "\\x" + hexByte(byte)
            }
        }
        if value.utf8.count > 80 { out += "…" }
        return "\"" + out + "\""
    }
}

public enum FileNameError: Error, Sendable, Equatable, CustomStringConvertible {
    case empty
    case tooLong(length: Int)
    case emptySegment(name: String)
    case segmentTooLong(length: Int)
    case segmentStartsWithDot(name: String)
    case invalidCharacter(name: String, byte: UInt8)

    public var description: String {
        switch self {
        case .empty: return "file name is empty"
        case .tooLong(let length): return "file name is \(length) bytes long; at most \(FileName.maxLength) are allowed"
        case .emptySegment(let name): return "file name \(name) has an empty segment (leading, trailing or double '/')"
        case .segmentTooLong(let length):
            return
                "a segment of the file name is \(length) bytes long; at most \(FileName.maxSegmentLength) are allowed"
        case .segmentStartsWithDot(let name): return "file name \(name) has a segment that starts with '.'"
        case .invalidCharacter(let name, let byte):
            return "file name \(name) contains byte 0x\(hexByte(byte)); only A-Z a-z 0-9 . _ : - and / are allowed"
        }
    }
}
