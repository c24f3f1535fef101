// The TCP sync frame decoder, read the way the node reads a stream: a 5-byte header
// (`SyncCodec.header`), then exactly the announced payload (`SyncCodec.decode`). Bytes after
// the frame are the next frame (or fetched content) and are ignored here.
//
// Invariants of a frame that decodes:
// - the encoding is canonical: `encode(message)` is exactly the header plus payload that were
//   read, and it decodes to the same message;
// - the message's type is the header's type;
// - the payload is self-delimiting: one byte less or more does not decode;
// - fixed-size fields have their sizes, names are valid, members are within the limits and carry
//   a 32-byte node key and a 64-byte signature;
// - a member list (hello, reply) handed to a `ClusterCore` that knows three members
//   (`.remoteState`) does not trap; the core takes only authentic announcements, and a member
//   it had alive turns suspect only for a record of the list that reports it failed with the
//   member's own authentic claim at the incarnation the core knows (push/pull is never an
//   accusation of its own: it never makes a member dead or left).
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
    case .fetchBusy:
        break
    }
    return 0
}

func checkMembers(_ members: [MemberRecord]) {
    invariant(members.count <= SyncCodec.maxMembers, "\(members.count) members")
    for member in members {
        invariant(member.announcement.publicKey.count == 32, "node key of \(member.announcement.publicKey.count) bytes")
        invariant(
            member.announcement.signature.count == 64, "signature of \(member.announcement.signature.count) bytes")
        invariant(member.announcement.name.utf8.count <= WireCodec.maxNodeNameLength, "node name too long")
        invariant(member.announcement.addresses.count <= WireCodec.maxAddresses, "too many addresses")
        for address in member.announcement.addresses {
            invariant(!address.host.isEmpty && address.port > 0, "empty address")
            invariant(address.host.utf8.count <= WireCodec.maxHostLength, "host too long")
        }
    }

    let before = Cluster.core
    var core = before
    var rng = FuzzRandom(state: UInt64(members.count))
    _ = core.handle(.remoteState(members), now: Cluster.start + 1_000_000, rng: &rng)
    let verifier = Ed25519Verifier()
    Cluster.checkMembership(before: before, after: core, "a member list of \(members.count)") { id, state in
        guard state == .suspect, let known = before.members[id] else { return false }
        return members.contains {
            $0.id == id && $0.state != .alive && $0.announcement.incarnation == known.announcement.incarnation
                && $0.announcement.isAuthentic(verifier)
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
    // b and c are members the core knows (at incarnation 100), mallory is not.
    func record(_ key: NodeKey, _ incarnation: UInt64, _ state: MemberState, _ addresses: [PeerAddress])
        -> MemberRecord
    {
        MemberRecord(
            announcement: .signed(
                by: key, name: "n\(key.publicKey[0])", incarnation: incarnation, addresses: addresses),
            state: state, since: 0, lastSource: nil)
    }
    let members = [
        record(Cluster.b, 101, .alive, [Cluster.address(Cluster.b)]),
        record(Cluster.c, 100, .suspect, [Cluster.address(Cluster.c), PeerAddress(host: "fd00::3", port: 7946)]),
        record(Cluster.mallory, 1, .alive, [PeerAddress(host: "10.9.9.9", port: 7946)]),
    ]
    let failed = [
        record(Cluster.b, 100, .dead, [Cluster.address(Cluster.b)]),
        record(Cluster.c, 100, .left, [Cluster.address(Cluster.c)]),
        record(Cluster.mallory, 1, .dead, []),
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
        ("reply-failed", .reply(members: failed, root: root, buckets: nil), []),
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
        ("fetch-busy", .fetchBusy, []),
    ]
    return messages.map { ($0.0, SyncCodec.encode($0.1) + $0.2) }
}
