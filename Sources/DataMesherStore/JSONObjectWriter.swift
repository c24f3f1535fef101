/// A JSON object written member by member, for the documents the daemon writes on every upload
/// (the metadata record and the answer), where `JSONEncoder` cost tens of microseconds each.
///
/// Members must be added in ascending key order; the result is then byte for byte what
/// `JSONEncoder` writes with `.sortedKeys` (and `.withoutEscapingSlashes` unless
/// `escapingSlashes`), which the tests check against it.
public struct JSONObjectWriter: Sendable {
    var bytes: [UInt8] = [UInt8(ascii: "{")]
    let escapingSlashes: Bool

    public init(escapingSlashes: Bool) {
        self.escapingSlashes = escapingSlashes
        bytes.reserveCapacity(512)
    }

    public mutating func add(_ key: String, _ value: String) {
        member(key)
        append(value)
    }

    public mutating func add<T: BinaryInteger>(_ key: String, _ value: T) {
        member(key)
        bytes += String(value).utf8
    }

    public mutating func add(_ key: String, _ value: Bool) {
        member(key)
        bytes += (value ? "true" : "false").utf8
    }

    public mutating func add(_ key: String, _ value: JSONObjectWriter) {
        member(key)
        bytes += value.finished()
    }

    /// The object's text (UTF-8).
    public func finished() -> [UInt8] { bytes + [UInt8(ascii: "}")] }

    mutating func member(_ key: String) {
        if bytes.count > 1 { bytes.append(UInt8(ascii: ",")) }
        append(key)
        bytes.append(UInt8(ascii: ":"))
    }

    /// A JSON string, escaped as `JSONEncoder` escapes it.
    mutating func append(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                bytes += [UInt8(ascii: "\\"), byte]
            case UInt8(ascii: "/") where escapingSlashes:
                bytes += [UInt8(ascii: "\\"), byte]
            case 0x08: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
            case 0x0C: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
            case 0x0A: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20:
                let digits = Array("0123456789abcdef".utf8)
                bytes += Array("\\u00".utf8) + [digits[Int(byte >> 4)], digits[Int(byte & 0xF)]]
            default:
                bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
