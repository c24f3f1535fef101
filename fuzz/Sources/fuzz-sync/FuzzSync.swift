// The TCP sync frame decoder, read the way the node reads a stream: a 5-byte header
// (`SyncCodec.header`), then exactly the announced payload (`SyncCodec.decode`). Bytes after
// the frame are the next frame (or fetched content) and are ignored here.
//
// Invariants of a frame that decodes:
// - the encoding is canonical: `encode(message)` is exactly the header plus payload that were
//   read, and it decodes to the same message;
// - the message's type is the header's type;
// - the payload is self-delimiting: one byte less or more does not decode;
// - fixed-size fields have their sizes, names are valid, members are within the limits.
import DataMesherCore
import FuzzSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSync(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = fuzzInput(data, size)
    guard input.count >= SyncCodec.headerLength,
        let (type, length) = try? SyncCodec.header(Array(input.prefix(SyncCodec.headerLength)))
    else { return 0 }
    invariant((1...5).contains(type) && length <= SyncCodec.maxFrame, "header accepted type \(type) length \(length)")
    let rest = input.dropFirst(SyncCodec.headerLength)
    // A real stream would wait for the rest of the frame.
    guard rest.count >= length else { return 0 }
    let payload = Array(rest.prefix(length))
    let message: SyncMessage
    do { message = try SyncCodec.decode(type: type, payload: payload) } catch { return 0 }

    invariant(message.type == type, "frame type \(type) decoded as a message of type \(message.type)")
    let frame = Array(input.prefix(SyncCodec.headerLength + length))
    let encoded = SyncCodec.encode(message)
    invariant(encoded == frame, "re-encoding changed the frame: \(dump(frame)) -> \(dump(encoded))")
    let again = try? SyncCodec.decode(type: type, payload: Array(encoded.dropFirst(SyncCodec.headerLength)))
    invariant(again == message, "the re-encoded frame decodes differently: \(dump(encoded))")
    invariant(
        (try? SyncCodec.decode(type: type, payload: Array(payload.dropLast()))) == nil,
        "a truncated payload decodes: \(dump(frame))")
    invariant(
        (try? SyncCodec.decode(type: type, payload: payload + [0])) == nil,
        "a payload with a trailing byte decodes: \(dump(frame))")

    switch message {
    case .hello(_, let members, let root):
        checkMembers(members)
        invariant(root.count == 16, "root of \(root.count) bytes")
    case .reply(let members, let root, let buckets):
        checkMembers(members)
        invariant(root.count == 16, "root of \(root.count) bytes")
        if let buckets {
            invariant(buckets.count == FileIndex.bucketCount, "\(buckets.count) bucket digests")
            invariant(buckets.allSatisfy { $0.count == 8 }, "bucket digest size")
        }
    case .summaries(let buckets, let versions):
        invariant(buckets.count <= FileIndex.bucketCount, "\(buckets.count) buckets")
        invariant(buckets.allSatisfy { (0..<FileIndex.bucketCount).contains($0) }, "bucket number out of range")
        invariant(versions.count <= SyncCodec.maxSummaries, "\(versions.count) summaries")
        for summary in versions {
            invariant((try? FileName(summary.name.value)) == summary.name, "invalid name")
            invariant(summary.signaturePrefix.count == VersionSummary.signaturePrefixLength, "prefix size")
        }
    case .fetch(let name):
        invariant((try? FileName(name.value)) == name, "invalid name \(quote(name.value))")
    case .fetchReply(let version):
        if let version {
            invariant((try? FileName(version.name.value)) == version.name, "invalid name")
            invariant(version.signature.count == FileVersion.signatureLength, "signature length")
            invariant(version.contentSHA256.count == 32, "hash length")
            _ = version.hasValidSignature
        }
    }
    return 0
}

func checkMembers(_ members: [MemberRecord]) {
    invariant(members.count <= SyncCodec.maxMembers, "\(members.count) members")
    for member in members {
        invariant(member.announcement.name.utf8.count <= WireCodec.maxNodeNameLength, "node name too long")
        invariant(member.announcement.addresses.count <= WireCodec.maxAddresses, "too many addresses")
        for address in member.announcement.addresses {
            invariant(!address.host.isEmpty && address.port > 0, "empty address")
            invariant(address.host.utf8.count <= WireCodec.maxHostLength, "host too long")
        }
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    Seeds.writeIfAsked(makeSeeds)
    return 0
}

/// One frame of every message type, made with the encoder. A frame may be followed by more bytes
/// (the content after a fetch reply), which the target ignores.
func makeSeeds() throws -> [(name: String, bytes: [UInt8])] {
    let alpha = NodeID(bytes: [UInt8](repeating: 0xA1, count: 16))!
    let beta = NodeID(bytes: [UInt8](repeating: 0xB2, count: 16))!
    let members = [
        MemberRecord(
            announcement: MemberAnnouncement(
                id: alpha, name: "node1", incarnation: 1, addresses: [PeerAddress(host: "127.0.0.11", port: 7946)]),
            state: .alive, since: 0, lastSource: nil),
        MemberRecord(
            announcement: MemberAnnouncement(
                id: beta, name: "node2", incarnation: 5, addresses: [PeerAddress(host: "fd00::2", port: 7946)]),
            state: .suspect, since: 0, lastSource: nil),
    ]
    let root = [UInt8](repeating: 0x5A, count: 16)
    let content = Array("content of config:app\n".utf8)
    let version = try FileVersion.sign(
        kind: .content, networkID: "", name: FileName("config:app"), timestamp: 1_700_000_000_000_000_000,
        validFor: 0, contentSHA256: [UInt8](repeating: 3, count: 32), contentLength: UInt64(content.count),
        key: Seeds.key(7))
    let buckets = (0..<FileIndex.bucketCount).map { [UInt8](repeating: UInt8($0), count: 8) }
    let messages: [(String, SyncMessage, [UInt8])] = [
        ("hello-join", .hello(join: true, members: members, root: root), []),
        ("hello", .hello(join: false, members: [], root: root), []),
        ("reply-same-root", .reply(members: members, root: root, buckets: nil), []),
        ("reply-buckets", .reply(members: members, root: root, buckets: buckets), []),
        (
            "summaries",
            .summaries(
                buckets: [0, 17, 255],
                versions: [
                    VersionSummary(version),
                    VersionSummary(name: try FileName("a/b"), timestamp: -1, signaturePrefix: Array(0..<16)),
                ]), []
        ),
        ("fetch", .fetch(try FileName("config:app")), []),
        ("fetch-reply", .fetchReply(version), content),
        ("fetch-reply-none", .fetchReply(nil), []),
    ]
    return messages.map { ($0.0, SyncCodec.encode($0.1) + $0.2) }
}
