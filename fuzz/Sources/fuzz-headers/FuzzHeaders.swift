// The pieces the HTTP API reads from a signed upload (SPEC §6, docs/PROTOCOL.md): the input is
// up to six lines, taken as the values of DM-Signer, DM-Signature, DM-Timestamp, DM-Valid-For,
// Content-Length and the `/v1/files/NAME` path part, each decoded as the API decodes it:
// `SignerKey(base64:)`, `Base64.decode` (64 bytes), `Int64` (>= 0), `UInt64`, `UInt64`, and
// percent-decoding followed by `FileName`.
//
// TODO(fuzz): when DataMesherCore gets a pure header parser (e.g. `UploadHeaders.parse`), call
// it here instead of the separate pieces.
//
// Invariants:
// - a signer key that decodes has 32 bytes and prints as the very text it came from (the
//   base64 is strict and canonical); likewise a 64-byte signature;
// - integers re-parse from their decimal form to the same value;
// - a name that decodes is a valid FileName whose text is the decoded text, and percent-encoding
//   it (every byte, or only the reserved ones) decodes back to it.
import DataMesherCore
import FuzzSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHeaders(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    // Header values reach the API as text; a field that is not UTF-8 is refused before this.
    guard let text = String(validating: fuzzInput(data, size), as: UTF8.self) else { return 0 }
    let fields = text.split(separator: "\n", maxSplits: 5, omittingEmptySubsequences: false).map(String.init)
    func field(_ index: Int) -> String? { index < fields.count ? fields[index] : nil }

    if let signerText = field(0), let signer = try? SignerKey(base64: signerText) {
        invariant(signer.bytes.count == SignerKey.length, "signer of \(signer.bytes.count) bytes")
        invariant(signer.base64 == signerText, "DM-Signer \(quote(signerText)) prints as \(signer.base64)")
    }
    if let signatureText = field(1), let signature = Base64.decode(signatureText),
        signature.count == FileVersion.signatureLength
    {
        invariant(Base64.encode(signature) == signatureText, "DM-Signature \(quote(signatureText)) is not canonical")
    }
    if let timestampText = field(2), let timestamp = Int64(timestampText), timestamp >= 0 {
        invariant(Int64(String(timestamp)) == timestamp, "DM-Timestamp \(timestamp) does not re-parse")
    }
    if let validForText = field(3), let validFor = UInt64(validForText) {
        invariant(UInt64(String(validFor)) == validFor, "DM-Valid-For \(validFor) does not re-parse")
    }
    if let lengthText = field(4), let length = UInt64(lengthText) {
        invariant(UInt64(String(length)) == length, "Content-Length \(length) does not re-parse")
    }
    if let path = field(5), let decoded = percentDecoded(path), let name = try? FileName(decoded) {
        invariant(name.value == decoded, "FileName changed \(quote(decoded))")
        invariant(percentDecoded(percentEncoded(name.value, all: true)) == name.value, "full percent round trip")
        invariant(percentDecoded(percentEncoded(name.value, all: false)) == name.value, "percent round trip")
        invariant(percentDecoded(name.value) == name.value, "a valid name changes under percent-decoding")
    }
    return 0
}

/// `%XY` becomes the byte 0xXY (either case), other bytes stay; the result must be UTF-8.
/// Written for this target from RFC 3986 §2.1, the way the API decodes a name once.
func percentDecoded(_ text: String) -> String? {
    let input = Array(text.utf8)
    var output: [UInt8] = []
    output.reserveCapacity(input.count)
    var position = input.startIndex
    while position < input.endIndex {
        guard input[position] == UInt8(ascii: "%") else {
            output.append(input[position])
            position += 1
            continue
        }
        guard position + 2 < input.count,
            let byte = Hex.decode(String(decoding: input[position + 1...position + 2], as: UTF8.self))?.first
        else { return nil }
        output.append(byte)
        position += 3
    }
    return String(validating: output, as: UTF8.self)
}

func percentEncoded(_ text: String, all: Bool) -> String {
    var out = ""
    for byte in text.utf8 {
        let plain = byte.isASCIIAlphanumeric || "-._~:/".utf8.contains(byte)
        if plain && !all {
            out.unicodeScalars.append(Unicode.Scalar(byte))
        } else {
            out += "%" + Hex.encode([byte]).uppercased()
        }
    }
    return out
}

extension UInt8 {
    var isASCIIAlphanumeric: Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(self) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(self)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self)
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    Seeds.writeIfAsked(makeSeeds)
    return 0
}

/// The headers of real signed uploads and deletions, one field per line.
func makeSeeds() throws -> [(name: String, bytes: [UInt8])] {
    let key = Seeds.key(7)
    let content = Array("hello\n".utf8)
    var sha = [UInt8](repeating: 0, count: 32)
    sha[0] = 1
    let upload = try FileVersion.sign(
        kind: .content, networkID: "", name: FileName("config:app"), timestamp: 1_700_000_000_123_456_789,
        validFor: 86_400_000_000_000, contentSHA256: sha, contentLength: UInt64(content.count), key: key)
    let deletion = try FileVersion.sign(
        kind: .tombstone, networkID: "", name: FileName("dns/zones/example.org"), timestamp: 1_700_000_000_000_000_000,
        validFor: 0, contentSHA256: FileVersion.emptySHA256, contentLength: 0, key: key)
    func lines(_ version: FileVersion, path: String) -> [UInt8] {
        let fields = [
            version.signer.base64, Base64.encode(version.signature), String(version.timestamp),
            String(version.validFor), String(version.contentLength), path,
        ]
        return Array(fields.joined(separator: "\n").utf8)
    }
    return [
        ("upload", lines(upload, path: "config:app")),
        ("upload-encoded", lines(upload, path: "config%3Aapp")),
        ("delete-nested", lines(deletion, path: "dns%2Fzones/example.org")),
    ]
}
