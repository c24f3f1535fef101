@preconcurrency import Crypto

extension NodeID {
    /// The domain separator of node IDs: an ID is the first 16 bytes of
    /// SHA-256("data-mesher/node-id/v1" 0x00 ‖ the node key's 32 raw bytes).
    static let derivationLabel: [UInt8] = Array("data-mesher/node-id/v1".utf8) + [0]

    /// The ID of the member whose ED25519 node key is `publicKey` (32 raw bytes). A member is its
    /// key: nobody can claim an ID without holding the key it was derived from.
    public init(publicKey: [UInt8]) {
        var hasher = SHA256()
        hasher.update(data: NodeID.derivationLabel)
        hasher.update(data: publicKey)
        let digest = Array(hasher.finalize())
        var high: UInt64 = 0
        var low: UInt64 = 0
        for index in 0..<8 {
            high = high << 8 | UInt64(digest[index])
            low = low << 8 | UInt64(digest[index + 8])
        }
        self.init(high: high, low: low)
    }
}

/// This node's ED25519 node key: it signs the node's claims about itself (alive, addresses,
/// incarnation, leave), its accusations (suspect, dead) and its stream handshakes. The node ID is
/// derived from its public half.
public struct NodeKey: Sendable {
    public let privateKey: Curve25519.Signing.PrivateKey
    /// The 32 raw bytes of the public key.
    public let publicKey: [UInt8]
    public let id: NodeID

    public init(_ privateKey: Curve25519.Signing.PrivateKey) {
        self.privateKey = privateKey
        publicKey = Array(privateKey.publicKey.rawRepresentation)
        id = NodeID(publicKey: publicKey)
    }

    /// A key from 32 seed bytes (the simulator's deterministic keys); nil for another length.
    public init?(seed: [UInt8]) {
        guard let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed) else { return nil }
        self.init(key)
    }

    /// An ED25519 signature over `message` (64 bytes). Signing with a valid key does not fail;
    /// should the library ever report a failure, the empty signature is refused by every verifier.
    public func sign(_ message: [UInt8]) -> [UInt8] {
        (try? privateKey.signature(for: message)).map { Array($0) } ?? []
    }
}

/// Decides whether a signature is valid. The daemon verifies directly; a simulator running many
/// cores in one process hands them a verifier that remembers verdicts.
public protocol SignatureVerifier: Sendable {
    func isValidSignature(_ signature: [UInt8], of message: [UInt8], by publicKey: [UInt8]) -> Bool
    /// Whether a version's signature verifies (`FileVersion.hasValidSignature`).
    func isValid(_ version: FileVersion) -> Bool
    /// `announcement` if it is authentic (`MemberAnnouncement.isAuthentic`), else nil. A verifier
    /// may hand back an equal announcement it checked before, so that the cores of a simulator
    /// keep one copy of each.
    func authentic(_ announcement: MemberAnnouncement) -> MemberAnnouncement?
}

extension SignatureVerifier {
    public func isValid(_ version: FileVersion) -> Bool { version.hasValidSignature }

    public func authentic(_ announcement: MemberAnnouncement) -> MemberAnnouncement? {
        announcement.isAuthentic(self) ? announcement : nil
    }
}

/// Plain ED25519 verification.
public struct Ed25519Verifier: SignatureVerifier {
    public init() {}

    public func isValidSignature(_ signature: [UInt8], of message: [UInt8], by publicKey: [UInt8]) -> Bool {
        guard signature.count == 64, let key = try? Curve25519.Signing.PublicKey(rawRepresentation: publicKey)
        else { return false }
        return key.isValidSignature(signature, for: message)
    }
}

/// What nodes sign about members. Each message starts with its own label, so a signature over
/// one kind of claim can never be taken for another.
public enum MemberClaims {
    static let aliveLabel: [UInt8] = Array("data-mesher/alive/v2".utf8) + [0]
    static let suspectLabel: [UInt8] = Array("data-mesher/suspect/v2".utf8) + [0]
    static let deadLabel: [UInt8] = Array("data-mesher/dead/v2".utf8) + [0]

    /// A member's claim about itself: ID, incarnation, name, addresses (as on the wire).
    static func aliveMessage(_ member: MemberAnnouncement) -> [UInt8] {
        var out = WireWriter()
        out.bytes(aliveLabel)
        WireCodec.encodeClaim(member, into: &out)
        return out.buffer
    }

    /// An accusation: `from` says `id` at `incarnation` is suspect (or dead; `from == id`: left).
    static func accusationMessage(_ accusation: Accusation, dead: Bool) -> [UInt8] {
        var out = WireWriter()
        out.bytes(dead ? deadLabel : suspectLabel)
        out.nodeID(accusation.id)
        out.u64(accusation.incarnation)
        out.nodeID(accusation.from)
        return out.buffer
    }
}

/// `from` says member `id`, at the incarnation `incarnation` that `id` itself signed, is suspect
/// or dead, and signed that with its own node key. `from == id` on a dead claim: `id` left.
public struct Accusation: Sendable, Equatable {
    public var id: NodeID
    public var incarnation: UInt64
    public var from: NodeID
    public var signature: [UInt8]

    public init(id: NodeID, incarnation: UInt64, from: NodeID, signature: [UInt8]) {
        self.id = id
        self.incarnation = incarnation
        self.from = from
        self.signature = signature
    }

    /// A signed accusation by `key`'s node.
    public static func signed(id: NodeID, incarnation: UInt64, dead: Bool, by key: NodeKey) -> Accusation {
        var accusation = Accusation(id: id, incarnation: incarnation, from: key.id, signature: [])
        accusation.signature = key.sign(MemberClaims.accusationMessage(accusation, dead: dead))
        return accusation
    }
}

extension MemberAnnouncement {
    /// This node's announcement, signed with its node key.
    public static func signed(
        by key: NodeKey, name: String, incarnation: UInt64, addresses: [PeerAddress]
    ) -> MemberAnnouncement {
        var member = MemberAnnouncement(
            id: key.id, name: name, incarnation: incarnation, addresses: addresses, publicKey: key.publicKey,
            signature: [])
        member.signature = key.sign(MemberClaims.aliveMessage(member))
        return member
    }

    /// True when the key in the announcement is the one its ID was derived from, and that key
    /// signed exactly this announcement.
    public func isAuthentic(_ verifier: any SignatureVerifier) -> Bool {
        publicKey.count == 32 && NodeID(publicKey: publicKey) == id
            && verifier.isValidSignature(signature, of: MemberClaims.aliveMessage(self), by: publicKey)
    }
}

/// A member's signed claim that it holds `version` of `name` (its summary: timestamp and the
/// first 16 bytes of the signature), or, with `timestamp == Holding.nothing`, that it is
/// configured for the name and holds nothing yet. Gossiped when a member stores a version and
/// at its start, so deploy tools can wait until a version has landed everywhere.
public struct Holding: Sendable, Equatable {
    /// The timestamp of "configured, holds nothing".
    public static let nothing = Int64.min
    static let label: [UInt8] = Array("data-mesher/holds/v2".utf8) + [0]

    public var holder: NodeID
    public var name: FileName
    public var timestamp: Int64
    /// The first 16 bytes of the held version's signature (empty for nothing).
    public var signaturePrefix: [UInt8]
    public var signature: [UInt8]

    public init(holder: NodeID, name: FileName, timestamp: Int64, signaturePrefix: [UInt8], signature: [UInt8]) {
        self.holder = holder
        self.name = name
        self.timestamp = timestamp
        self.signaturePrefix = signaturePrefix
        self.signature = signature
    }

    /// `key`'s node says it holds `version` of `name` (nil: nothing).
    public static func signed(_ name: FileName, version: FileVersion?, by key: NodeKey) -> Holding {
        var holding = Holding(
            holder: key.id, name: name, timestamp: version?.timestamp ?? Holding.nothing,
            signaturePrefix: version?.signaturePrefix ?? [],
            signature: [])
        holding.signature = key.sign(holding.signedMessage)
        return holding
    }

    var signedMessage: [UInt8] {
        var out = WireWriter()
        out.bytes(Holding.label)
        writeClaim(into: &out)
        return out.buffer
    }

    /// What it says, as signed after its label and sent before its signature.
    func writeClaim(into out: inout WireWriter) {
        out.claimHead(holder: holder, name: name, timestamp: timestamp, signaturePrefix: signaturePrefix)
    }

    /// Whether this is the claim of holding exactly `version`.
    public func holds(_ version: FileVersion) -> Bool {
        timestamp == version.timestamp
            && signaturePrefix == version.signaturePrefix
    }
}

/// A member's signed word that it refused a version of a name, and why: the answer to a holding
/// query that comes beside its `Holding` when the version it refused last is newer than the one
/// it holds, so `file status` and `file update --wait` can say why a member does not take a
/// version instead of only that it does not hold it. A member says so only of a version whose
/// signature by its signer key verified (any sender could make up the others).
public struct RefusalClaim: Sendable, Equatable {
    /// Why, on the wire: a code a member can explain without the version (`explanation`).
    /// Codes a receiver does not know are kept and shown as numbers.
    public enum Reason: UInt8, Sendable, CaseIterable {
        case signerNotAllowed = 1
        case otherNetwork = 2
        case inFuture = 3
        case expired = 4
        case tooLarge = 5
        case negativeTimestamp = 6
        case malformedTombstone = 7
        /// Not a rule: it could not store the version for lack of room on its disk.
        case noRoom = 8

        /// The reason's name in the HTTP API (as the refusal counters name them).
        public var label: String {
            switch self {
            case .signerNotAllowed: return "signer_not_allowed"
            case .otherNetwork: return "other_network"
            case .inFuture: return "in_future"
            case .expired: return "expired"
            case .tooLarge: return "too_large"
            case .negativeTimestamp: return "negative_timestamp"
            case .malformedTombstone: return "malformed_tombstone"
            case .noRoom: return "no_room"
            }
        }
    }

    static let label: [UInt8] = Array("data-mesher/refused/v1".utf8) + [0]

    /// The member that refused (named as in `Holding`).
    public var holder: NodeID
    public var name: FileName
    /// The refused version's timestamp and the first 16 bytes of its signature.
    public var timestamp: Int64
    public var signaturePrefix: [UInt8]
    public var reasonCode: UInt8
    /// The refusing member's limit that the version passed: `max_clock_skew` in nanoseconds
    /// (`inFuture`), `max_file_size` in bytes (`tooLarge`), the bytes free on its disk
    /// (`noRoom`); 0 otherwise.
    public var limit: UInt64
    public var signature: [UInt8]

    public init(
        holder: NodeID, name: FileName, timestamp: Int64, signaturePrefix: [UInt8], reasonCode: UInt8,
        limit: UInt64, signature: [UInt8]
    ) {
        self.holder = holder
        self.name = name
        self.timestamp = timestamp
        self.signaturePrefix = signaturePrefix
        self.reasonCode = reasonCode
        self.limit = limit
        self.signature = signature
    }

    /// The claim (unsigned) that this node refused `version` for `refusal`; nil for refusals that
    /// are not told (a stale version, a name not configured, anything the version's own signature
    /// does not prove: a bad signature, content that does not match).
    public init?(refusing version: FileVersion, for refusal: Refusal, holder: NodeID) {
        let reason: Reason
        var limit: UInt64 = 0
        switch refusal {
        case .signerNotAllowed: reason = .signerNotAllowed
        case .badSignature: reason = .otherNetwork  // told only when the signature verifies
        case .inFuture(_, _, let skew):
            reason = .inFuture
            limit = UInt64(clamping: skew)
        case .expired: reason = .expired
        case .tooLarge(_, _, let maxSize):
            reason = .tooLarge
            limit = maxSize
        case .negativeTimestamp: reason = .negativeTimestamp
        case .malformedTombstone: reason = .malformedTombstone
        case .nameNotConfigured, .stale, .contentMismatch: return nil
        }
        self.init(
            holder: holder, name: version.name, timestamp: version.timestamp,
            signaturePrefix: version.signaturePrefix,
            reasonCode: reason.rawValue, limit: limit, signature: [])
    }

    public var reason: Reason? { Reason(rawValue: reasonCode) }

    /// The claim (unsigned) that this node could not store `version` for lack of room, with
    /// `free` bytes free on its disk.
    public init(noRoomFor version: FileVersion, free: UInt64, holder: NodeID) {
        self.init(
            holder: holder, name: version.name, timestamp: version.timestamp,
            signaturePrefix: version.signaturePrefix,
            reasonCode: Reason.noRoom.rawValue, limit: free, signature: [])
    }

    /// Whether the member refuses the version for as long as its settings stay as they are:
    /// false for a lack of room and a clock behind the version's timestamp, which can pass (it
    /// tries again), and for a reason this build does not know.
    public var isLasting: Bool { reason.map { $0 != .noRoom && $0 != .inFuture } ?? false }

    /// Whether the member's limit that the version passed is told (`limit`).
    public var hasLimit: Bool { reason == .inFuture || reason == .tooLarge || reason == .noRoom }

    /// Whether this is the refusal of exactly `version`.
    public func refuses(_ version: FileVersion) -> Bool {
        timestamp == version.timestamp
            && signaturePrefix == version.signaturePrefix
    }

    /// Why the member refused, as the member would say it ("it ...").
    public var explanation: String {
        switch reason {
        case .signerNotAllowed: return "its configuration does not allow this version's signing key for the name"
        case .otherNetwork:
            return "the version is signed for another network_id than the member's"
        case .inFuture:
            return
                "the timestamp is more than its max_clock_skew (\(DurationFormat.describe(Int64(clamping: limit)))) ahead of its clock: check the clocks of both machines"
        case .expired: return "the version has already expired by its clock (timestamp + valid_for)"
        case .tooLarge: return "the content is larger than its max_file_size (\(limit) bytes)"
        case .negativeTimestamp: return "the timestamp is negative"
        case .malformedTombstone: return "the deletion does not sign empty content"
        case .noRoom:
            return
                "its disk has too little room for it (\(limit) bytes free, less what it keeps free as disk_reserve); it tries again later"
        case nil: return "reason code \(reasonCode), which this version of data-mesher does not know"
        }
    }

    /// Signed by `key`'s node.
    public func signed(by key: NodeKey) -> RefusalClaim {
        var claim = self
        claim.holder = key.id
        claim.signature = key.sign(claim.signedMessage)
        return claim
    }

    /// The bytes its signature signs.
    public var signedMessage: [UInt8] {
        var out = WireWriter()
        out.bytes(RefusalClaim.label)
        writeClaim(into: &out)
        return out.buffer
    }

    /// What it says, as signed after its label and sent before its signature.
    func writeClaim(into out: inout WireWriter) {
        out.claimHead(holder: holder, name: name, timestamp: timestamp, signaturePrefix: signaturePrefix)
        out.u8(reasonCode)
        out.u64(limit)
    }
}
