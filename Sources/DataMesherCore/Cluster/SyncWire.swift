/// TCP messages: push/pull anti-entropy and content transfer (hello and reply carry
/// `WireCodec.version`). Every message
/// is a frame: type u8, payload length u32, payload. A fetch reply frame is followed by the
/// raw content, exactly `contentLength` bytes.
public enum SyncMessage: Sendable, Equatable {
    /// Opens a push/pull: the caller's member list (itself first) and its root digest.
    case hello(join: Bool, members: [MemberRecord], root: [UInt8])
    /// The answer: the callee's member list and root; bucket digests only if the roots differ.
    case reply(members: [MemberRecord], root: [UInt8], buckets: [[UInt8]]?)
    /// The versions one side holds in the buckets that differ.
    case summaries(buckets: [Int], versions: [VersionSummary])
    /// Asks for the content of a name.
    case fetch(FileName)
    /// The version held for the requested name (nil: none, or only a lost one); its content
    /// follows the frame.
    case fetchReply(FileVersion?)
    /// The requested name's version is big and being sent to another member now
    /// (`Fetcher.exclusiveUploadSize`): ask another holder, or again later.
    case fetchBusy

    public var type: UInt8 {
        switch self {
        case .hello: return 1
        case .reply: return 2
        case .summaries: return 3
        case .fetch: return 4
        case .fetchReply, .fetchBusy: return 5
        }
    }
}

public enum SyncCodec {
    public static let maxFrame = 16 << 20
    public static let maxMembers = 4096
    public static let maxSummaries = 200_000
    public static let headerLength = 5

    public static func encode(_ message: SyncMessage) -> [UInt8] {
        var body = WireWriter()
        switch message {
        case .hello(let join, let members, let root):
            body.u8(WireCodec.version)
            body.u8(join ? 1 : 0)
            encodeMembers(members, into: &body)
            body.bytes(root)
        case .reply(let members, let root, let buckets):
            body.u8(WireCodec.version)
            encodeMembers(members, into: &body)
            body.bytes(root)
            if let buckets {
                body.u8(1)
                for bucket in buckets { body.bytes(bucket) }
            } else {
                body.u8(0)
            }
        case .summaries(let buckets, let versions):
            body.u16(UInt16(buckets.count))
            for bucket in buckets { body.u8(UInt8(bucket)) }
            body.u32(UInt32(versions.count))
            for summary in versions {
                let name = Array(summary.name.value.utf8)
                body.u16(UInt16(name.count))
                body.bytes(name)
                body.i64(summary.timestamp)
                body.bytes(summary.signaturePrefix)
            }
        case .fetch(let name):
            let bytes = Array(name.value.utf8)
            body.u16(UInt16(bytes.count))
            body.bytes(bytes)
        case .fetchReply(let version):
            if let version {
                body.u8(1)
                WireCodec.encode(version, into: &body)
            } else {
                body.u8(0)
            }
        case .fetchBusy:
            body.u8(2)
        }
        var frame = WireWriter()
        frame.u8(message.type)
        frame.u32(UInt32(body.buffer.count))
        frame.bytes(body.buffer)
        return frame.buffer
    }

    /// `encode(message).count` for the push/pull openings (`hello`, `reply`), computed without
    /// encoding their member lists; other messages are encoded to count them.
    public static func encodedSize(_ message: SyncMessage) -> Int {
        switch message {
        case .hello(_, let members, let root):
            return headerLength + 2 + membersSize(members) + root.count
        case .reply(let members, let root, let buckets):
            return headerLength + 1 + membersSize(members) + root.count + 1
                + (buckets.map { $0.reduce(0) { $0 + $1.count } } ?? 0)
        case .summaries, .fetch, .fetchReply, .fetchBusy:
            return encode(message).count
        }
    }

    static func membersSize(_ members: [MemberRecord]) -> Int {
        var size = 2
        for index in members.indices.prefix(maxMembers) {
            size += 1 + WireCodec.encodedSize(members[index].announcement)
        }
        return size
    }

    /// Reads a frame header: the type and the payload length, refusing lengths over the limit.
    public static func header(_ bytes: [UInt8]) throws(WireError) -> (type: UInt8, length: Int) {
        var reader = WireReader(bytes)
        let type = try reader.u8()
        let length = Int(try reader.u32())
        guard (1...5).contains(type) else { throw .unknownMessage(type) }
        guard length <= maxFrame else { throw .tooLong(field: "frame", length: length, limit: maxFrame) }
        return (type, length)
    }

    public static func decode(type: UInt8, payload: [UInt8]) throws(WireError) -> SyncMessage {
        var reader = WireReader(payload)
        let message: SyncMessage
        switch type {
        case 1:
            try checkVersion(&reader)
            let join = try reader.u8()
            guard join <= 1 else { throw .invalid("join flag") }
            message = .hello(join: join == 1, members: try decodeMembers(&reader), root: try reader.bytes(16))
        case 2:
            try checkVersion(&reader)
            let members = try decodeMembers(&reader)
            let root = try reader.bytes(16)
            let hasBuckets = try reader.u8()
            guard hasBuckets <= 1 else { throw .invalid("bucket flag") }
            var buckets: [[UInt8]]? = nil
            if hasBuckets == 1 {
                buckets = []
                for _ in 0..<FileIndex.bucketCount { buckets?.append(try reader.bytes(8)) }
            }
            message = .reply(members: members, root: root, buckets: buckets)
        case 3:
            let bucketCount = Int(try reader.u16())
            guard bucketCount <= FileIndex.bucketCount else {
                throw .tooLong(field: "buckets", length: bucketCount, limit: FileIndex.bucketCount)
            }
            var buckets: [Int] = []
            for _ in 0..<bucketCount { buckets.append(Int(try reader.u8())) }
            let count = Int(try reader.u32())
            guard count <= maxSummaries else { throw .tooLong(field: "summaries", length: count, limit: maxSummaries) }
            var versions: [VersionSummary] = []
            for _ in 0..<count {
                let name = try decodeName(&reader)
                versions.append(
                    VersionSummary(
                        name: name, timestamp: try reader.i64(),
                        signaturePrefix: try reader.bytes(VersionSummary.signaturePrefixLength)))
            }
            message = .summaries(buckets: buckets, versions: versions)
        case 4:
            message = .fetch(try decodeName(&reader))
        case 5:
            switch try reader.u8() {
            case 0: message = .fetchReply(nil)
            case 1: message = .fetchReply(try WireCodec.decodeVersion(&reader))
            case 2: message = .fetchBusy
            default: throw .invalid("found flag")
            }
        default:
            throw .unknownMessage(type)
        }
        guard reader.remaining == 0 else { throw .trailingBytes(reader.remaining) }
        return message
    }

    static func checkVersion(_ reader: inout WireReader) throws(WireError) {
        let version = try reader.u8()
        guard version == WireCodec.version else { throw .unsupportedVersion(version) }
    }

    static func decodeName(_ reader: inout WireReader) throws(WireError) -> FileName {
        let length = Int(try reader.u16())
        guard length <= FileName.maxLength else {
            throw .tooLong(field: "file name", length: length, limit: FileName.maxLength)
        }
        guard let text = String(validating: try reader.bytes(length), as: UTF8.self), let name = try? FileName(text)
        else {
            throw .invalid("file name")
        }
        return name
    }

    static func encodeMembers(_ members: [MemberRecord], into out: inout WireWriter) {
        let list = members.prefix(maxMembers)
        out.u16(UInt16(list.count))
        for record in list {
            out.u8(record.state.rawValue)
            WireCodec.encode(.alive(record.announcement), into: &out)
        }
    }

    static func decodeMembers(_ reader: inout WireReader) throws(WireError) -> [MemberRecord] {
        let count = Int(try reader.u16())
        guard count <= maxMembers else { throw .tooLong(field: "members", length: count, limit: maxMembers) }
        var out: [MemberRecord] = []
        for _ in 0..<count {
            let stateByte = try reader.u8()
            guard let state = MemberState(rawValue: stateByte) else { throw .invalid("member state \(stateByte)") }
            guard case .alive(let announcement) = try WireCodec.decodeItem(&reader) else {
                throw .invalid("member record")
            }
            out.append(MemberRecord(announcement: announcement, state: state, since: 0, lastSource: nil))
        }
        return out
    }
}
