/// The gossip wire format, version 2 (docs/PROTOCOL.md). Hand-written, big-endian, and every
/// length is checked against a fixed limit before anything is allocated.

/// A member's identity: 16 bytes derived from its ED25519 node key (`NodeID(publicKey:)`).
///
/// Held as two big-endian words rather than an array: IDs are dictionary keys and sort keys
/// in every hot path of the core, and two words hash, compare and copy without touching the heap.
public struct NodeID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public static let length = 16
    /// Bytes 0–7 and 8–15, big-endian, so comparing (high, low) orders IDs like their bytes.
    let high: UInt64
    let low: UInt64

    init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == NodeID.length else { return nil }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for index in 0..<8 {
            high = high << 8 | UInt64(bytes[index])
            low = low << 8 | UInt64(bytes[index + 8])
        }
        self.init(high: high, low: low)
    }

    public init?(hex: String) {
        guard let bytes = Hex.decode(hex) else { return nil }
        self.init(bytes: bytes)
    }

    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(NodeID.length)
        out.appendBigEndian(high)
        out.appendBigEndian(low)
        return out
    }

    public var hex: String { Hex.encode(bytes) }
    public var description: String { String(hex.prefix(8)) }
    public static func < (lhs: NodeID, rhs: NodeID) -> Bool {
        lhs.high != rhs.high ? lhs.high < rhs.high : lhs.low < rhs.low
    }
}

/// What a member says about itself: how to reach it and what it is called, signed with its node
/// key (`MemberAnnouncement.signed(by:…)`, checked by `isAuthentic`).
///
/// Compact, because a core keeps one per member and a simulator keeps a thousand cores: the
/// incarnation is inline, and everything else (ID, name, addresses, key, signature) sits in one
/// immutable `Body` that every copy shares, so copying an announcement or a member record retains
/// one object, and a simulator can share one body among every core that knows the member
/// (`SignatureVerifier.authentic`). The key and signature are held inline in the body: a key of another
/// length than 32 bytes, or a signature of another length than 64, is held as absent (empty),
/// which every receiver refuses as unsigned, as it refuses a wrong length.
public struct MemberAnnouncement: Sendable, Equatable {
    public var incarnation: UInt64
    private(set) var body: Body

    final class Body: Sendable {
        let id: NodeID
        let name: String
        let firstAddress: PeerAddress?
        let moreAddresses: [PeerAddress]
        let key: Key?
        let signature: Signature?

        init(
            id: NodeID, name: String, firstAddress: PeerAddress?, moreAddresses: [PeerAddress], key: Key?,
            signature: Signature?
        ) {
            self.id = id
            self.name = name
            self.firstAddress = firstAddress
            self.moreAddresses = firstAddress == nil ? [] : moreAddresses
            self.key = key
            self.signature = signature
        }

        func with(
            id: NodeID? = nil, name: String? = nil, addresses: [PeerAddress]? = nil, key: Key?? = nil,
            signature: Signature?? = nil
        ) -> Body {
            Body(
                id: id ?? self.id, name: name ?? self.name, firstAddress: addresses.map { $0.first } ?? firstAddress,
                moreAddresses: addresses.map { Array($0.dropFirst()) } ?? moreAddresses, key: key ?? self.key,
                signature: signature ?? self.signature)
        }

        func hasSameContent(as other: Body) -> Bool {
            self === other
                || (id == other.id && name == other.name && firstAddress == other.firstAddress
                    && moreAddresses == other.moreAddresses
                    && key == other.key && signature == other.signature)
        }
    }

    /// An ED25519 public key's 32 bytes, inline.
    struct Key: Sendable, Equatable {
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

        init?(_ bytes: some Collection<UInt8>) {
            guard bytes.count == 32 else { return nil }
            withUnsafeMutableBytes(of: &words) { $0.copyBytes(from: bytes) }
        }

        var bytes: [UInt8] { withUnsafeBytes(of: words) { Array($0) } }

        static func == (lhs: Key, rhs: Key) -> Bool {
            withUnsafeBytes(of: lhs.words) { left in withUnsafeBytes(of: rhs.words) { left.elementsEqual($0) } }
        }
    }

    /// An ED25519 signature's 64 bytes, inline.
    struct Signature: Sendable, Equatable {
        var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)

        init?(_ bytes: some Collection<UInt8>) {
            guard bytes.count == 64 else { return nil }
            withUnsafeMutableBytes(of: &words) { $0.copyBytes(from: bytes) }
        }

        var bytes: [UInt8] { withUnsafeBytes(of: words) { Array($0) } }

        static func == (lhs: Signature, rhs: Signature) -> Bool {
            withUnsafeBytes(of: lhs.words) { left in withUnsafeBytes(of: rhs.words) { left.elementsEqual($0) } }
        }
    }

    public var id: NodeID {
        get { body.id }
        set { body = body.with(id: newValue) }
    }

    public var name: String {
        get { body.name }
        set { body = body.with(name: newValue) }
    }

    /// The first address: nearly every member announces one.
    public var firstAddress: PeerAddress? { body.firstAddress }
    /// The addresses after the first.
    var moreAddresses: [PeerAddress] { body.moreAddresses }

    public var addresses: [PeerAddress] {
        get {
            guard let firstAddress = body.firstAddress else { return [] }
            return body.moreAddresses.isEmpty ? [firstAddress] : [firstAddress] + body.moreAddresses
        }
        set { body = body.with(addresses: newValue) }
    }

    /// The member's ED25519 node key, 32 bytes (empty when absent); `id` is derived from it.
    public var publicKey: [UInt8] {
        get { body.key?.bytes ?? [] }
        set { body = body.with(key: .some(Key(newValue))) }
    }

    /// The node key's signature over the claim (`MemberClaims.aliveMessage`), 64 bytes (empty
    /// when absent).
    public var signature: [UInt8] {
        get { body.signature?.bytes ?? [] }
        set { body = body.with(signature: .some(Signature(newValue))) }
    }

    /// An announcement as given; unsigned unless `publicKey` and `signature` are (receivers refuse
    /// unsigned ones).
    public init(
        id: NodeID, name: String, incarnation: UInt64, addresses: [PeerAddress], publicKey: [UInt8] = [],
        signature: [UInt8] = []
    ) {
        self.init(
            id: id, name: name, incarnation: incarnation, firstAddress: addresses.first,
            moreAddresses: Array(addresses.dropFirst()), publicKey: publicKey, signature: signature)
    }

    init(
        id: NodeID, name: String, incarnation: UInt64, firstAddress: PeerAddress?, moreAddresses: [PeerAddress],
        publicKey: [UInt8], signature: [UInt8]
    ) {
        self.incarnation = incarnation
        self.body = Body(
            id: id, name: name, firstAddress: firstAddress, moreAddresses: moreAddresses, key: Key(publicKey),
            signature: Signature(signature))
    }

    init(incarnation: UInt64, body: Body) {
        self.incarnation = incarnation
        self.body = body
    }

    public static func == (lhs: MemberAnnouncement, rhs: MemberAnnouncement) -> Bool {
        lhs.incarnation == rhs.incarnation && lhs.body.hasSameContent(as: rhs.body)
    }
}

/// Piggybacked news: membership changes and file versions. Every one is signed: a member's
/// claims about itself by its node key, accusations by the accuser's, versions by a file key.
public enum GossipItem: Sendable, Equatable {
    case alive(MemberAnnouncement)
    case suspect(Accusation)
    /// `from == id` means the member left on purpose.
    case dead(Accusation)
    /// A signed version; small contents travel inline.
    case file(FileVersion, inline: [UInt8]?)
    /// A member's signed claim of which version of a name it holds: the answer to a
    /// `holdingQuery`, sent to the member that asked.
    case holding(Holding)
    /// Which version of this name do you hold? Sent directly to each live member.
    case holdingQuery(FileName)
    /// A member's signed word that it refused a version newer than the one it holds, and why:
    /// sent beside its `holding`, in a datagram of its own.
    case refusal(RefusalClaim)

    /// Items about the same subject replace each other in the broadcast queue.
    public var subject: GossipSubject {
        switch self {
        case .alive(let member): return .member(member.id)
        case .suspect(let accusation), .dead(let accusation): return .member(accusation.id)
        case .file(let version, _): return .file(version.name)
        case .holding(let holding): return .holding(holding.holder, holding.name)
        case .holdingQuery(let name): return .holdingQuery(name)
        case .refusal(let claim): return .refusal(claim.holder, claim.name)
        }
    }
}

/// What a gossip item is about: a member or a file name.
public enum GossipSubject: Sendable, Hashable {
    case member(NodeID)
    case file(FileName)
    case holding(NodeID, FileName)
    case holdingQuery(FileName)
    case refusal(NodeID, FileName)
}

public enum MessageKind: UInt8, Sendable {
    case ping = 1, pingRequest = 2, ack = 3, nack = 4, gossip = 5
}

/// One UDP datagram: a message and the gossip riding on it.
public struct Packet: Sendable, Equatable {
    public enum Message: Sendable, Equatable {
        /// Are you alive? `target` lets a restarted node at the same address answer honestly.
        case ping(sequence: UInt32, target: NodeID)
        /// Please ping `target` at `address` for me and relay the answer.
        case pingRequest(sequence: UInt32, target: NodeID, address: PeerAddress)
        /// `responder`: the member that was pinged (the sender, or the target of a relayed ping);
        /// `clock`: the responder's wall clock when it answered (ns), for clock-offset estimates.
        case ack(sequence: UInt32, responder: NodeID, clock: Int64)
        /// Sent by an intermediary that could not reach the target (Lifeguard).
        case nack(sequence: UInt32)
        case gossip
    }

    public var sender: NodeID
    public var message: Message
    /// The items' wire encoding, one after the other, from `itemsStart` on: the datagram a
    /// packet was decoded from, or what `ClusterCore.compose` took from its broadcast queue
    /// (which keeps every item encoded). A receiver reads an item only when it is news, and a
    /// sender copies the bytes instead of encoding every item for every packet.
    private(set) var wire: [UInt8]
    private(set) var itemsStart: Int
    /// How many items ride on the packet, without decoding them.
    public private(set) var itemCount: Int

    /// The gossip riding on the packet, decoded (at most `WireCodec.maxItems` are kept).
    public var items: [GossipItem] {
        get { WireCodec.decodeItems(itemReader, count: itemCount) }
        set {
            var out = WireWriter()
            for item in newValue.prefix(WireCodec.maxItems) { WireCodec.encode(item, into: &out) }
            wire = out.buffer
            itemsStart = 0
            itemCount = min(newValue.count, WireCodec.maxItems)
        }
    }

    /// A reader at the first item.
    var itemReader: WireReader { WireReader(wire, at: itemsStart) }

    /// The items' encoding.
    var encodedItems: ArraySlice<UInt8> { wire[itemsStart...] }

    public init(sender: NodeID, message: Message, items: [GossipItem] = []) {
        self.init(sender: sender, message: message, encodedItems: [], count: 0)
        if !items.isEmpty { self.items = items }
    }

    /// Items already encoded: `count` of them from `start` on in `wire`, which `WireCodec`
    /// has checked (or the core encoded).
    init(sender: NodeID, message: Message, encodedItems wire: [UInt8], from start: Int = 0, count: Int) {
        self.sender = sender
        self.message = message
        self.wire = wire
        self.itemsStart = start
        self.itemCount = count
    }

    /// Packets are equal when they say the same: the encoding of an item is canonical.
    public static func == (lhs: Packet, rhs: Packet) -> Bool {
        lhs.sender == rhs.sender && lhs.message == rhs.message && lhs.itemCount == rhs.itemCount
            && lhs.encodedItems.elementsEqual(rhs.encodedItems)
    }
}

public enum WireError: Error, Sendable, Equatable, CustomStringConvertible {
    case truncated
    case badMagic
    case unsupportedVersion(UInt8)
    case unknownMessage(UInt8)
    case unknownItem(UInt8)
    case tooLong(field: String, length: Int, limit: Int)
    case invalid(String)
    case trailingBytes(Int)

    public var description: String {
        switch self {
        case .truncated: return "packet is truncated"
        case .badMagic: return "not a data-mesher packet"
        case .unsupportedVersion(let version):
            return "wire version \(version) is not supported (this node speaks \(WireCodec.version))"
        case .unknownMessage(let type): return "unknown message type \(type)"
        case .unknownItem(let type): return "unknown gossip item type \(type)"
        case .tooLong(let field, let length, let limit): return "\(field) is \(length) long, limit \(limit)"
        case .invalid(let what): return "invalid \(what)"
        case .trailingBytes(let count): return "\(count) unexpected bytes after the packet"
        }
    }

    /// A short reason for counters.
    public var reason: String {
        switch self {
        case .truncated: return "truncated"
        case .badMagic: return "bad_magic"
        case .unsupportedVersion: return "version"
        case .unknownMessage, .unknownItem: return "unknown_type"
        case .tooLong: return "too_long"
        case .invalid: return "invalid"
        case .trailingBytes: return "trailing"
        }
    }
}

public enum WireCodec {
    public static let magic: [UInt8] = [0x44, 0x4D]  // "DM"
    /// The one version of the cluster protocol, on UDP and TCP alike.
    public static let version: UInt8 = 2
    /// Limits that bound every allocation while decoding.
    public static let maxPacketSize = 65_507
    public static let maxItems = 64
    public static let maxAddresses = 8
    public static let maxHostLength = 64
    public static let maxNodeNameLength = 255
    public static let maxNetworkIDLength = 255
    /// Content up to this size rides inline in a gossip item; larger is fetched over TCP.
    public static let maxInlineContent = 512

    // MARK: Encoding

    public static func encode(_ packet: Packet) -> [UInt8] {
        var out = WireWriter()
        out.reserve(64 + packet.encodedItems.count)
        out.bytes(magic)
        out.u8(version)
        switch packet.message {
        case .ping(let sequence, let target):
            out.u8(MessageKind.ping.rawValue)
            out.nodeID(packet.sender)
            out.u32(sequence)
            out.nodeID(target)
        case .pingRequest(let sequence, let target, let address):
            out.u8(MessageKind.pingRequest.rawValue)
            out.nodeID(packet.sender)
            out.u32(sequence)
            out.nodeID(target)
            out.address(address)
        case .ack(let sequence, let responder, let clock):
            out.u8(MessageKind.ack.rawValue)
            out.nodeID(packet.sender)
            out.u32(sequence)
            out.nodeID(responder)
            out.i64(clock)
        case .nack(let sequence):
            out.u8(MessageKind.nack.rawValue)
            out.nodeID(packet.sender)
            out.u32(sequence)
        case .gossip:
            out.u8(MessageKind.gossip.rawValue)
            out.nodeID(packet.sender)
        }
        out.u8(UInt8(packet.itemCount))
        out.bytes(packet.encodedItems)
        return out.buffer
    }

    /// `encode(item).count`, without encoding.
    public static func encodedSize(_ item: GossipItem) -> Int {
        switch item {
        case .alive(let member):
            return encodedSize(member)
        case .suspect(let accusation), .dead(let accusation):
            return 1 + NodeID.length + 8 + NodeID.length + 1 + accusation.signature.prefix(255).count
        case .file(let version, let inline):
            return 1 + encodedSize(version) + 1 + (inline.map { 2 + $0.count } ?? 0)
        case .holding(let holding):
            return 1 + NodeID.length + 2 + holding.name.value.utf8.count + 8 + 1
                + holding.signaturePrefix.prefix(255).count
                + 1 + holding.signature.prefix(255).count
        case .holdingQuery(let name):
            return 1 + 2 + name.value.utf8.count
        case .refusal(let claim):
            return 1 + NodeID.length + 2 + claim.name.value.utf8.count + 8 + 1 + claim.signaturePrefix.prefix(255).count
                + 1 + 8 + 1 + claim.signature.prefix(255).count
        }
    }

    /// The size of an `alive` item announcing `member`.
    static func encodedSize(_ member: MemberAnnouncement) -> Int {
        var size = 1 + NodeID.length + 8 + 1 + shortStringLength(member.name, limit: maxNodeNameLength) + 1
        if let first = member.firstAddress {
            size += addressLength(first)
            for address in member.moreAddresses.prefix(maxAddresses - 1) { size += addressLength(address) }
        }
        return size + 1 + (member.body.key == nil ? 0 : 32) + 1 + (member.body.signature == nil ? 0 : 64)
    }

    static func encodedSize(_ version: FileVersion) -> Int {
        1 + 1 + min(version.networkID.utf8.count, 255) + 2 + version.name.value.utf8.count + 8 + 8
            + version.contentSHA256.count + 8 + version.signer.bytes.count + version.signature.count
    }

    /// What `WireWriter.shortString(value, limit:)` writes after the length byte.
    static func shortStringLength(_ value: String, limit: Int) -> Int {
        let count = value.utf8.count
        if count <= limit { return min(count, 255) }
        return min(String(value.utf8.prefix(limit))?.utf8.count ?? 0, 255)
    }

    static func addressLength(_ address: PeerAddress) -> Int {
        1 + shortStringLength(address.host, limit: maxHostLength) + 2
    }

    public static func encode(_ item: GossipItem) -> [UInt8] {
        var out = WireWriter()
        encode(item, into: &out)
        return out.buffer
    }

    static func encode(_ item: GossipItem, into out: inout WireWriter) {
        switch item {
        case .alive(let member):
            out.u8(1)
            encodeClaim(member, into: &out)
            out.inlineBytes(member.body.key?.words)
            out.inlineBytes(member.body.signature?.words)
        case .suspect(let accusation):
            out.u8(2)
            encode(accusation, into: &out)
        case .dead(let accusation):
            out.u8(3)
            encode(accusation, into: &out)
        case .file(let version, let inline):
            out.u8(4)
            encode(version, into: &out)
            if let inline {
                out.u8(1)
                out.u16(UInt16(inline.count))
                out.bytes(inline)
            } else {
                out.u8(0)
            }
        case .holding(let holding):
            out.u8(5)
            holding.writeClaim(into: &out)
            out.shortBytes(holding.signature)
        case .holdingQuery(let name):
            out.u8(6)
            out.u16(UInt16(truncatingIfNeeded: name.value.utf8.count))
            out.utf8(name.value)
        case .refusal(let claim):
            out.u8(7)
            claim.writeClaim(into: &out)
            out.shortBytes(claim.signature)
        }
    }

    /// What a member signs about itself: ID, incarnation, name, addresses.
    static func encodeClaim(_ member: MemberAnnouncement, into out: inout WireWriter) {
        out.nodeID(member.id)
        out.u64(member.incarnation)
        out.shortString(member.name, limit: maxNodeNameLength)
        if let first = member.firstAddress {
            let more = member.moreAddresses.prefix(maxAddresses - 1)
            out.u8(UInt8(1 + more.count))
            out.address(first)
            for address in more { out.address(address) }
        } else {
            out.u8(0)
        }
    }

    static func encode(_ accusation: Accusation, into out: inout WireWriter) {
        out.nodeID(accusation.id)
        out.u64(accusation.incarnation)
        out.nodeID(accusation.from)
        out.shortBytes(accusation.signature)
    }

    public static func encode(_ version: FileVersion, into out: inout WireWriter) {
        out.u8(version.kind.rawValue)
        out.shortString(version.networkID)
        out.u16(UInt16(truncatingIfNeeded: version.name.value.utf8.count))
        out.utf8(version.name.value)
        out.i64(version.timestamp)
        out.u64(version.validFor)
        out.bytes(version.contentSHA256)
        out.u64(version.contentLength)
        out.bytes(version.signer.bytes)
        out.bytes(version.signature)
    }

    // MARK: Decoding

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> Packet {
        guard bytes.count <= maxPacketSize else {
            throw .tooLong(field: "packet", length: bytes.count, limit: maxPacketSize)
        }
        var reader = WireReader(bytes)
        guard reader.remaining >= 2 else { throw .truncated }
        guard try reader.u8() == magic[0], try reader.u8() == magic[1] else { throw .badMagic }
        let wireVersion = try reader.u8()
        guard wireVersion == version else { throw .unsupportedVersion(wireVersion) }
        let type = try reader.u8()
        guard let kind = MessageKind(rawValue: type) else { throw .unknownMessage(type) }
        let sender = try reader.nodeID()
        let message: Packet.Message
        switch kind {
        case .ping: message = .ping(sequence: try reader.u32(), target: try reader.nodeID())
        case .pingRequest:
            message = .pingRequest(
                sequence: try reader.u32(), target: try reader.nodeID(), address: try reader.address())
        case .ack:
            message = .ack(sequence: try reader.u32(), responder: try reader.nodeID(), clock: try reader.i64())
        case .nack: message = .nack(sequence: try reader.u32())
        case .gossip: message = .gossip
        }
        let count = Int(try reader.u8())
        guard count <= maxItems else { throw .tooLong(field: "items", length: count, limit: maxItems) }
        // Checked whole, as `decodeItem` would read them, but kept as bytes: most gossip a node
        // receives is news it has already had, which it can then pass over unread.
        let itemsStart = reader.offset
        for _ in 0..<count { try checkItem(&reader) }
        guard reader.remaining == 0 else { throw .trailingBytes(reader.remaining) }
        return Packet(sender: sender, message: message, encodedItems: bytes, from: itemsStart, count: count)
    }

    /// `count` items encoded one after the other (as `encode(_:into:)` wrote them).
    static func decodeItems(_ reader: WireReader, count: Int) -> [GossipItem] {
        var reader = reader
        var items: [GossipItem] = []
        items.reserveCapacity(count)
        for _ in 0..<count {
            guard let item = try? decodeItem(&reader) else { break }
            items.append(item)
        }
        return items
    }

    static func decodeItem(_ reader: inout WireReader) throws(WireError) -> GossipItem {
        let type = try reader.u8()
        switch type {
        case 1:
            let claim = try announcementFields(&reader)
            return .alive(
                MemberAnnouncement(
                    incarnation: claim.incarnation,
                    body: .init(
                        id: claim.id, name: claim.name, firstAddress: claim.first, moreAddresses: claim.more,
                        key: claim.key, signature: claim.signature)))
        case 2: return .suspect(try decodeAccusation(&reader))
        case 3: return .dead(try decodeAccusation(&reader))
        case 4:
            let version = try decodeVersion(&reader)
            let hasInline = try reader.u8()
            guard hasInline <= 1 else { throw .invalid("inline flag") }
            var inline: [UInt8]? = nil
            if hasInline == 1 {
                let length = Int(try reader.u16())
                guard length <= maxInlineContent else {
                    throw .tooLong(field: "inline content", length: length, limit: maxInlineContent)
                }
                inline = try reader.bytes(length)
            }
            return .file(version, inline: inline)
        case 5:
            let holder = try reader.nodeID()
            let name = try SyncCodec.decodeName(&reader)
            let timestamp = try reader.i64()
            let prefixLength = timestamp == Holding.nothing ? 0 : VersionSummary.signaturePrefixLength
            let prefix = try reader.shortBytes(exactly: prefixLength, field: "signature prefix")
            let signature = try reader.shortBytes(exactly: 64, field: "holding signature")
            return .holding(
                Holding(holder: holder, name: name, timestamp: timestamp, signaturePrefix: prefix, signature: signature)
            )
        case 6:
            return .holdingQuery(try SyncCodec.decodeName(&reader))
        case 7:
            let holder = try reader.nodeID()
            let name = try SyncCodec.decodeName(&reader)
            let timestamp = try reader.i64()
            let prefix = try reader.shortBytes(exactly: VersionSummary.signaturePrefixLength, field: "signature prefix")
            let reasonCode = try reader.u8()
            let limit = try reader.u64()
            let signature = try reader.shortBytes(exactly: 64, field: "refusal signature")
            return .refusal(
                RefusalClaim(
                    holder: holder, name: name, timestamp: timestamp, signaturePrefix: prefix, reasonCode: reasonCode,
                    limit: limit, signature: signature))
        default:
            throw .unknownItem(type)
        }
    }

    /// An `alive` item after its type: what `decodeItem` builds its announcement from. Nothing
    /// here allocates but a name or host longer than a small string, or a second address.
    static func announcementFields(_ reader: inout WireReader) throws(WireError) -> (
        id: NodeID, incarnation: UInt64, name: String, first: PeerAddress?, more: [PeerAddress],
        key: MemberAnnouncement.Key?, signature: MemberAnnouncement.Signature?
    ) {
        let id = try reader.nodeID()
        let incarnation = try reader.u64()
        let name = try reader.shortString(limit: maxNodeNameLength, field: "node name")
        let count = Int(try reader.u8())
        guard count <= maxAddresses else { throw .tooLong(field: "addresses", length: count, limit: maxAddresses) }
        let first = count > 0 ? try reader.address() : nil
        var more: [PeerAddress] = []
        if count > 1 {
            more.reserveCapacity(count - 1)
            for _ in 1..<count { more.append(try reader.address()) }
        }
        let key = MemberAnnouncement.Key(try reader.shortSlice(exactly: 32, field: "node key"))
        let signature = MemberAnnouncement.Signature(try reader.shortSlice(exactly: 64, field: "member signature"))
        return (id, incarnation, name, first, more, key, signature)
    }

    /// The ID and incarnation of the `alive` item `reader` is at, without moving it; nil for
    /// another item.
    static func peekAnnouncement(_ reader: WireReader) -> (id: NodeID, incarnation: UInt64)? {
        var reader = reader
        guard (try? reader.u8()) == 1, let id = try? reader.nodeID(), let incarnation = try? reader.u64() else {
            return nil
        }
        return (id, incarnation)
    }

    /// Reads past one item, refusing it exactly when `decodeItem` would; the items that ride
    /// on most packets (announcements, accusations) are checked without being built.
    static func checkItem(_ reader: inout WireReader) throws(WireError) {
        var peek = reader
        switch try peek.u8() {
        case 1:
            reader = peek
            _ = try announcementFields(&reader)
        case 2, 3:
            reader = peek
            _ = try accusationFields(&reader)
        default:
            _ = try decodeItem(&reader)
        }
    }

    static func accusationFields(_ reader: inout WireReader) throws(WireError) -> (
        id: NodeID, incarnation: UInt64, from: NodeID, signature: ArraySlice<UInt8>
    ) {
        (
            try reader.nodeID(), try reader.u64(), try reader.nodeID(),
            try reader.shortSlice(exactly: 64, field: "accusation signature")
        )
    }

    static func decodeAccusation(_ reader: inout WireReader) throws(WireError) -> Accusation {
        let fields = try accusationFields(&reader)
        return Accusation(
            id: fields.id, incarnation: fields.incarnation, from: fields.from, signature: Array(fields.signature))
    }

    public static func decodeVersion(_ reader: inout WireReader) throws(WireError) -> FileVersion {
        let kindByte = try reader.u8()
        guard let kind = FileKind(rawValue: kindByte) else { throw .invalid("file kind \(kindByte)") }
        let network = try reader.shortString(limit: maxNetworkIDLength, field: "network id")
        let nameLength = Int(try reader.u16())
        guard nameLength <= FileName.maxLength else {
            throw .tooLong(field: "file name", length: nameLength, limit: FileName.maxLength)
        }
        guard let nameText = try reader.text(nameLength), let name = try? FileName(nameText)
        else { throw .invalid("file name") }
        let timestamp = try reader.i64()
        let validFor = try reader.u64()
        let sha = try reader.bytes(32)
        let length = try reader.u64()
        guard let signer = try? SignerKey(bytes: try reader.bytes(32)) else { throw .invalid("signer") }
        let signature = try reader.bytes(FileVersion.signatureLength)
        return FileVersion(
            kind: kind, networkID: network, name: name, timestamp: timestamp, validFor: validFor, contentSHA256: sha,
            contentLength: length, signer: signer, signature: signature)
    }
}

public struct WireWriter: Sendable {
    public private(set) var buffer: [UInt8] = []
    public init() {}
    public mutating func u8(_ value: UInt8) { buffer.append(value) }
    public mutating func u16(_ value: UInt16) { buffer.appendBigEndian(value) }
    public mutating func u32(_ value: UInt32) { buffer.appendBigEndian(value) }
    public mutating func u64(_ value: UInt64) { buffer.appendBigEndian(value) }
    public mutating func i64(_ value: Int64) { buffer.appendBigEndian(value) }
    public mutating func bytes(_ value: [UInt8]) { buffer += value }
    mutating func bytes(_ value: ArraySlice<UInt8>) { buffer += value }
    public mutating func reserve(_ capacity: Int) { buffer.reserveCapacity(capacity) }
    public mutating func nodeID(_ id: NodeID) {
        u64(id.high)
        u64(id.low)
    }

    /// The UTF-8 bytes of `value`, unprefixed.
    mutating func utf8(_ value: String) {
        var value = value
        value.withUTF8 { buffer.append(contentsOf: $0) }
    }

    /// A string of at most 255 bytes, prefixed with its length.
    public mutating func shortString(_ value: String) {
        if value.utf8.count <= 255 {
            u8(UInt8(value.utf8.count))
            utf8(value)
        } else {
            let bytes = Array(value.utf8.prefix(255))
            u8(UInt8(bytes.count))
            buffer += bytes
        }
    }

    /// `value` cut to `limit` bytes (empty if the cut splits a character), as a short string.
    mutating func shortString(_ value: String, limit: Int) {
        shortString(value.utf8.count <= limit ? value : String(value.utf8.prefix(limit)) ?? "")
    }

    /// At most 255 bytes, prefixed with their count (keys and signatures: fixed lengths that a
    /// reader checks, so a malformed one is refused rather than misread).
    /// The bytes of a fixed-size value (a key or signature held inline), prefixed with their
    /// count; nil writes the count 0.
    mutating func inlineBytes<T>(_ value: T?) {
        guard let value else { return u8(0) }
        withUnsafeBytes(of: value) { bytes in
            u8(UInt8(bytes.count))
            buffer.append(contentsOf: bytes)
        }
    }

    /// What a holding claim and a refusal begin with: the member, the name (u16 length), and
    /// the version's timestamp and signature prefix (u8 length).
    mutating func claimHead(holder: NodeID, name: FileName, timestamp: Int64, signaturePrefix: [UInt8]) {
        nodeID(holder)
        u16(UInt16(truncatingIfNeeded: name.value.utf8.count))
        utf8(name.value)
        i64(timestamp)
        shortBytes(signaturePrefix)
    }

    mutating func shortBytes(_ value: [UInt8]) {
        let bytes = value.prefix(255)
        u8(UInt8(bytes.count))
        buffer += bytes
    }

    mutating func address(_ address: PeerAddress) {
        shortString(address.host, limit: WireCodec.maxHostLength)
        u16(address.port)
    }
}

public struct WireReader: Sendable {
    let data: [UInt8]
    var offset = 0

    public init(_ data: [UInt8]) { self.data = data }

    /// A reader of `data` from `offset` on.
    init(_ data: [UInt8], at offset: Int) {
        self.data = data
        self.offset = min(max(0, offset), data.count)
    }

    public var remaining: Int { data.count - offset }

    public mutating func bytes(_ count: Int) throws(WireError) -> [UInt8] {
        guard count >= 0, count <= remaining else { throw .truncated }
        defer { offset += count }
        return Array(data[offset..<offset + count])
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(WireError) -> T {
        let size = MemoryLayout<T>.size
        guard size <= remaining else { throw .truncated }
        var value: T = 0
        for index in 0..<size { value = value << 8 | T(data[offset + index]) }
        offset += size
        return value
    }

    public mutating func u8() throws(WireError) -> UInt8 { try integer(UInt8.self) }
    public mutating func u16() throws(WireError) -> UInt16 { try integer(UInt16.self) }
    public mutating func u32() throws(WireError) -> UInt32 { try integer(UInt32.self) }
    public mutating func u64() throws(WireError) -> UInt64 { try integer(UInt64.self) }
    public mutating func i64() throws(WireError) -> Int64 { Int64(bitPattern: try integer(UInt64.self)) }

    public mutating func nodeID() throws(WireError) -> NodeID {
        guard NodeID.length <= remaining else { throw .truncated }
        return NodeID(high: try u64(), low: try u64())
    }

    /// The next `count` bytes as UTF-8 text (nil if they are not valid UTF-8).
    mutating func text(_ count: Int) throws(WireError) -> String? {
        guard count >= 0, count <= remaining else { throw .truncated }
        defer { offset += count }
        let start = offset
        return data.withUnsafeBufferPointer { all in
            let bytes = UnsafeBufferPointer(rebasing: all[start..<start + count])
            // Names and hosts are nearly always ASCII, which is valid UTF-8 as it stands; the
            // general validation is much slower.
            if bytes.allSatisfy({ $0 < 0x80 }) { return String(decoding: bytes, as: UTF8.self) }
            return String(validating: bytes, as: UTF8.self)
        }
    }

    public mutating func shortString(limit: Int, field: String) throws(WireError) -> String {
        let length = Int(try u8())
        guard length <= limit else { throw .tooLong(field: field, length: length, limit: limit) }
        guard let text = try text(length) else {
            throw .invalid("\(field) (not UTF-8)")
        }
        return text
    }

    /// A count-prefixed byte string that must be exactly `length` bytes long.
    mutating func shortBytes(exactly length: Int, field: String) throws(WireError) -> [UInt8] {
        Array(try shortSlice(exactly: length, field: field))
    }

    /// Like `shortBytes(exactly:field:)`, without copying the bytes out of the datagram.
    mutating func shortSlice(exactly length: Int, field: String) throws(WireError) -> ArraySlice<UInt8> {
        let count = Int(try u8())
        guard count == length else { throw .invalid("\(field) (\(count) bytes, expected \(length))") }
        guard count <= remaining else { throw .truncated }
        defer { offset += count }
        return data[offset..<offset + count]
    }

    mutating func address() throws(WireError) -> PeerAddress {
        let host = try shortString(limit: WireCodec.maxHostLength, field: "host")
        let port = try u16()
        guard !host.isEmpty, port > 0 else { throw .invalid("address") }
        return PeerAddress(host: host, port: port)
    }
}
