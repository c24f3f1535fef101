// The small text decoders, all fed the same input: FileName, DurationFormat, ByteSize,
// PeerAddress, Base64 and Hex (as text), plus Base64/Hex encoding of the raw bytes.
//
// Each is checked against an independent reading of its rules (SPEC §4, §5) and for round trips:
// - FileName accepts exactly the names the SPEC allows, and keeps the text as given;
// - DurationFormat's value matches a plain re-computation of the text (to rounding), refuses
//   only what is malformed or too large, and `parse(describe(v))` gives back v (as far as
//   `describe` keeps it: whole seconds from 1s, whole ms below);
// - ByteSize matches number × unit, and a plain number of bytes reads as itself;
// - PeerAddress: the parsed address prints as text that parses to the same address;
// - Base64 is canonical both ways: `encode(decode(s)) == s` and `decode(encode(b)) == b`;
// - Hex: `decode` accepts exactly even-length hex, and `encode(decode(s))` is `s` in lower case.
import DataMesherCore
import FuzzSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNames(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = fuzzInput(data, size)
    checkEncodings(input)
    // Text reaches these decoders from TOML strings, headers and URLs, all valid UTF-8.
    guard let text = String(validating: input, as: UTF8.self) else { return 0 }
    checkFileName(text)
    checkDuration(text)
    checkByteSize(text)
    checkPeerAddress(text)
    checkBase64(text)
    checkHex(text)
    return 0
}

// MARK: FileName

func checkFileName(_ text: String) {
    let name = try? FileName(text)
    let allowed = referenceNameIsValid(text)
    invariant((name != nil) == allowed, "FileName(\(quote(text))) is \(name == nil ? "refused" : "accepted")")
    if let name { invariant(name.value == text, "FileName changed \(quote(text)) to \(quote(name.value))") }
}

/// SPEC §5, read independently: segments joined by '/'; each 1-255 bytes of A-Z a-z 0-9 . _ : -
/// not starting with '.'; at most 1024 bytes in all.
func referenceNameIsValid(_ text: String) -> Bool {
    let bytes = Array(text.utf8)
    guard !bytes.isEmpty, bytes.count <= 1024 else { return false }
    let segments = bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
    return segments.allSatisfy { segment in
        guard let first = segment.first, segment.count <= 255, first != UInt8(ascii: ".") else { return false }
        return segment.allSatisfy { byte in
            let char = Character(Unicode.Scalar(byte))
            return (char.isASCII && (char.isLetter || char.isNumber)) || "._:-".contains(char)
        }
    }
}

// MARK: Durations

let nanosecondsPerUnit: [String: Double] = [
    "ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9, "d": 86400e9,
]

/// The duration a text means, computed in floating point, read as `<digits>[.<1-9 digits>]<unit>`
/// repeated (a bare "0" is also allowed). `total` sums the well-formed segments before the first
/// malformed one, if any. The parser checks the unit, then whether the whole part times the unit
/// overflows, and only then the fraction; so for a segment that is malformed only in its fraction,
/// `reached` also counts its whole part, and "too large" is a fair answer when that overflows.
func referenceDuration(_ text: String) -> (total: Double, malformed: Bool, reached: Double) {
    if text == "0" { return (0, false, 0) }
    var characters = Substring(text)
    guard !characters.isEmpty else { return (0, true, 0) }
    var total = 0.0
    while let first = characters.first {
        guard first.isASCII, first.isWholeNumber else { return (total, true, total) }
        let whole = characters.prefix { $0.isASCII && $0.isWholeNumber }
        characters = characters.dropFirst(whole.count)
        var fraction: Substring? = nil
        if characters.first == "." {
            characters = characters.dropFirst()
            fraction = characters.prefix { $0.isASCII && $0.isWholeNumber }
            characters = characters.dropFirst(fraction?.count ?? 0)
        }
        let unit = characters.prefix { !($0.isASCII && ($0.isWholeNumber || $0 == ".")) }
        characters = characters.dropFirst(unit.count)
        guard let scale = nanosecondsPerUnit[String(unit)], let wholeValue = Double(whole) else {
            return (total, true, total)
        }
        if let fraction, !(1...9).contains(fraction.count) { return (total, true, total + wholeValue * scale) }
        total += Double(whole + "." + (fraction ?? "") + "0")! * scale
    }
    return (total, false, total)
}

func checkDuration(_ text: String) {
    let reference = referenceDuration(text)
    let limit = Double(Int64.max)
    do {
        let value = try DurationFormat.parse(text)
        invariant(!reference.malformed, "DurationFormat accepted the malformed \(quote(text)) as \(value)")
        invariant(value <= UInt64(Int64.max), "duration \(quote(text)) is \(value) ns, above Int64.max")
        // Each segment may lose less than 1 ns to truncation; the reference, 1e-15 of its size.
        let tolerance = reference.total * 1e-12 + Double(text.utf8.count)
        invariant(
            abs(Double(value) - reference.total) <= tolerance,
            "DurationFormat.parse(\(quote(text))) = \(value) ns, but the text means about \(reference.total) ns")
        checkDescribe(Int64(value))
    } catch .badDuration {
        // A whole part beyond 64 bits is also refused as malformed.
        invariant(
            reference.malformed || reference.reached >= 1.8e19,
            "DurationFormat refused \(quote(text)) (about \(reference.total) ns) as malformed")
    } catch .durationTooLarge {
        invariant(
            reference.reached > limit * 0.999_999,
            "DurationFormat refused \(quote(text)) (about \(reference.reached) ns) as too large")
    } catch {
        broken("DurationFormat threw \(error) for \(quote(text))")
    }
}

/// `describe` keeps whole seconds from 1s up, whole milliseconds below, nanoseconds below 1ms.
func checkDescribe(_ value: Int64) {
    let text = DurationFormat.describe(value)
    let kept: Int64
    if value < 1_000_000 {
        kept = value
    } else if value < 1_000_000_000 {
        kept = value / 1_000_000 * 1_000_000
    } else {
        kept = value / 1_000_000_000 * 1_000_000_000
    }
    let back = try? DurationFormat.parse(text)
    invariant(
        back == UInt64(kept), "describe(\(value)) = \(quote(text)) parses as \(back.map(String.init) ?? "an error")")
}

// MARK: Byte sizes

let bytesPerUnit: [String: UInt64] = [
    "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "KB": 1_000, "MB": 1_000_000,
    "GB": 1_000_000_000, "TB": 1_000_000_000_000,
]

func checkByteSize(_ text: String) {
    let value = try? ByteSize.parse(text)
    // Spaces and tabs may surround the number and the unit.
    let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
    var rest = Substring(text).drop(while: isBlank)
    while let last = rest.last, isBlank(last) { rest = rest.dropLast() }
    let digits = rest.prefix { $0.isASCII && $0.isWholeNumber }
    let unit = rest.dropFirst(digits.count).drop(while: isBlank)
    var expected: UInt64? = nil
    if !digits.isEmpty, let number = UInt64(digits), let scale = unit.isEmpty ? 1 : bytesPerUnit[String(unit)] {
        let (product, overflow) = number.multipliedReportingOverflow(by: scale)
        if !overflow { expected = product }
    }
    invariant(
        value == expected,
        "ByteSize.parse(\(quote(text))) = \(String(describing: value)), expected \(String(describing: expected))")
    if let value {
        invariant((try? ByteSize.parse(String(value))) == value, "ByteSize of \(value) as a plain number")
        invariant((try? ByteSize.parse("\(value)B")) == value, "ByteSize of \(value)B")
    }
}

// MARK: Peer addresses

func checkPeerAddress(_ text: String) {
    guard let address = PeerAddress.parse(text) else { return }
    invariant(!address.host.isEmpty && address.port > 0, "PeerAddress.parse(\(quote(text))) = \(address)")
    let again = PeerAddress.parse(address.description)
    invariant(
        again == address,
        "PeerAddress \(quote(text)) prints as \(quote(address.description)), which parses as \(String(describing: again))"
    )
    if !address.host.contains(":") {
        invariant(address.host.utf8.count <= 253, "host name of \(address.host.utf8.count) bytes")
    }
}

// MARK: Base64 and hex

func checkBase64(_ text: String) {
    guard let bytes = Base64.decode(text) else { return }
    let encoded = Base64.encode(bytes)
    invariant(encoded == text, "Base64 \(quote(text)) decodes to \(dump(bytes)), which encodes as \(quote(encoded))")
}

func checkHex(_ text: String) {
    let bytes = Hex.decode(text)
    let utf8 = Array(text.utf8)
    let isHex = utf8.count % 2 == 0 && utf8.allSatisfy { Character(Unicode.Scalar($0)).isHexDigit && $0 < 0x80 }
    invariant((bytes != nil) == isHex, "Hex.decode(\(quote(text))) is \(bytes == nil ? "nil" : "accepted")")
    if let bytes {
        invariant(bytes.count == utf8.count / 2, "Hex.decode length")
        invariant(Hex.encode(bytes) == text.lowercased(), "Hex \(quote(text)) re-encodes as \(Hex.encode(bytes))")
    }
}

func checkEncodings(_ input: [UInt8]) {
    let base64 = Base64.encode(input)
    invariant(base64.utf8.count == (input.count + 2) / 3 * 4, "Base64 length for \(input.count) bytes")
    invariant(Base64.decode(base64) == input, "Base64 round trip of \(dump(input)) via \(quote(base64))")
    let hex = Hex.encode(input)
    invariant(Hex.decode(hex) == input && Hex.decode(hex.uppercased()) == input, "Hex round trip of \(dump(input))")
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    Seeds.writeIfAsked(makeSeeds)
    return 0
}

/// Examples from the SPEC, the README and the tests.
func makeSeeds() throws -> [(name: String, bytes: [UInt8])] {
    let texts: [(String, String)] = [
        ("name-simple", "config:app"), ("name-nested", "dns/zones/example.org"), ("name-dots", "a/b.c/d_e-f:g"),
        ("duration-30s", "30s"), ("duration-500ms", "500ms"), ("duration-2160h", "2160h"),
        ("duration-1h30m", "1h30m"), ("duration-fraction", "1.5h"), ("duration-micro", "250µs"),
        ("duration-zero", "0"), ("duration-days", "7d12h"), ("size-4GiB", "4GiB"), ("size-spaced", " 512 KiB "),
        ("size-plain", "100"), ("size-TB", "2TB"), ("peer-v4", "192.168.1.1:7946"), ("peer-v6", "[2001:db8::1]:7946"),
        ("peer-zone", "[fe80::1%eth1]:7946"), ("peer-dns", "alpha.example:7946"),
        ("base64-key", "azwT+VhTxA+BF73Hwq0uqdXHG8XvHU2BknoVXgmEjww="), ("base64-pad2", "QQ=="),
        ("hex-id", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"), ("hex-upper", "DEADbeef"),
    ]
    return texts.map { ($0.0, Array($0.1.utf8)) }
}
