/// The rules a version must pass before any node stores or relays it (SPEC §1, §5).
/// Pure: the caller supplies the current time and the version it holds now.
public struct FilePolicy: Sendable, Equatable {
    /// `[files]`: for each configured name, the keys allowed to sign it.
    public var allowedSigners: [FileName: Set<SignerKey>]
    /// Signed into every file; a version made for another network fails its signature check.
    public var networkID: String
    /// Versions further than this in the future are refused for now (ns).
    public var maxClockSkew: Int64
    /// Content larger than this is refused (bytes).
    public var maxFileSize: UInt64
    /// How long a tombstone (or an expired version) is remembered (ns).
    public var tombstoneRetention: Int64

    public init(
        allowedSigners: [FileName: Set<SignerKey>], networkID: String = "", maxClockSkew: Int64 = 600 * 1_000_000_000,
        maxFileSize: UInt64 = 4 << 30, tombstoneRetention: Int64 = 720 * 3600 * 1_000_000_000
    ) {
        self.allowedSigners = allowedSigners
        self.networkID = networkID
        self.maxClockSkew = maxClockSkew
        self.maxFileSize = maxFileSize
        self.tombstoneRetention = tombstoneRetention
    }

    /// Checks that may run before the content has arrived: name, signer, size, clock skew.
    public func precheck(
        name: FileName, signer: SignerKey, contentLength: UInt64?, timestamp: Int64, validFor: UInt64, now: Int64
    ) -> Refusal? {
        guard let signers = allowedSigners[name] else { return .nameNotConfigured(name) }
        guard signers.contains(signer) else { return .signerNotAllowed(name, signer) }
        if let contentLength, contentLength > maxFileSize { return .tooLarge(name, contentLength, limit: maxFileSize) }
        if timestamp < 0 { return .negativeTimestamp(name, timestamp) }
        if timestamp > now {
            let ahead = FilePolicy.distance(from: now, to: timestamp)
            if ahead > maxClockSkew { return .inFuture(name, aheadBy: ahead, limit: maxClockSkew) }
        }
        if validFor > 0 {
            let (end, overflow) = timestamp.addingReportingOverflow(Int64(clamping: validFor))
            if !overflow && end <= now { return .expired(name) }
        }
        return nil
    }

    /// `later - earlier` for `later >= earlier`, saturated at `Int64.max` instead of trapping.
    public static func distance(from earlier: Int64, to later: Int64) -> Int64 {
        let (difference, overflow) = later.subtractingReportingOverflow(earlier)
        return overflow ? Int64.max : difference
    }

    /// `instant + duration`, saturated at the ends of `Int64` instead of trapping or wrapping.
    public static func saturatingAdd(_ instant: Int64, _ duration: Int64) -> Int64 {
        let (sum, overflow) = instant.addingReportingOverflow(duration)
        if !overflow { return sum }
        return duration > 0 ? Int64.max : Int64.min
    }

    /// Every rule, with the content's hash and length known: the version may replace `current` iff nil.
    /// `verifier` checks the signature (the simulator gives its shared verdicts).
    /// `highWater`: the newest version this node ever accepted for the name, when the version
    /// itself is no longer held (its tombstone or expiry record was forgotten).
    public func evaluate(
        _ version: FileVersion, current: FileVersion?, now: Int64, verifier: any SignatureVerifier = Ed25519Verifier(),
        highWater: HighWater? = nil
    ) -> Refusal? {
        if let refusal = precheck(
            name: version.name, signer: version.signer, contentLength: version.contentLength,
            timestamp: version.timestamp, validFor: version.validFor, now: now)
        {
            return refusal
        }
        if version.isTombstone && (version.contentLength != 0 || version.contentSHA256 != FileVersion.emptySHA256) {
            return .malformedTombstone(version.name)
        }
        let signed = verifier.isValid(version)
        if version.networkID != networkID || !signed { return .badSignature(version.name) }
        if version.isTombstone, now > version.timestamp,
            FilePolicy.distance(from: version.timestamp, to: now) > tombstoneRetention
        {
            return .stale(version.name, held: current?.timestamp)
        }
        if let highWater, !highWater.isOlder(than: version) {
            return .stale(version.name, held: highWater.timestamp)
        }
        return checkOrder(version, current: current)
    }

    /// Newest wins: refuses a version not strictly newer than the one held.
    public func checkOrder(_ version: FileVersion, current: FileVersion?) -> Refusal? {
        if let current, !VersionOrder.isNewer(version, than: current) {
            return .stale(version.name, held: current.timestamp)
        }
        return nil
    }

    /// Whether a held version is past its `valid_for` at `now`.
    public func isExpired(_ version: FileVersion, now: Int64) -> Bool {
        guard let end = version.expiresAt else { return false }
        return end <= now
    }

    /// Whether a held tombstone or expired version may be forgotten at `now`.
    public func mayForget(_ version: FileVersion, now: Int64) -> Bool {
        let since: Int64
        if version.isTombstone {
            since = version.timestamp
        } else if let end = version.expiresAt, end <= now {
            since = end
        } else {
            return false
        }
        return now > since && FilePolicy.distance(from: since, to: now) > tombstoneRetention
    }
}

/// The newest version ever accepted for a name, kept after the version itself is forgotten, so
/// an older signed version cannot come back (issue 14.5).
public struct HighWater: Sendable, Equatable {
    public var timestamp: Int64
    public var signature: [UInt8]

    public init(timestamp: Int64, signature: [UInt8]) {
        self.timestamp = timestamp
        self.signature = signature
    }

    public init(_ version: FileVersion) { self.init(timestamp: version.timestamp, signature: version.signature) }

    /// True when `version` comes after this mark in the version order.
    public func isOlder(than version: FileVersion) -> Bool {
        isOlder(timestamp: version.timestamp, signature: version.signature)
    }

    public func isOlder(timestamp: Int64, signature: [UInt8]) -> Bool {
        if timestamp != self.timestamp { return timestamp > self.timestamp }
        return self.signature.lexicographicallyPrecedes(signature)
    }
}

/// Why a version was refused. Only the HTTP layer maps these to status codes.
public enum Refusal: Error, Sendable, Equatable, CustomStringConvertible {
    case nameNotConfigured(FileName)
    case signerNotAllowed(FileName, SignerKey)
    case badSignature(FileName)
    case malformedTombstone(FileName)
    case stale(FileName, held: Int64?)
    case inFuture(FileName, aheadBy: Int64, limit: Int64)
    case expired(FileName)
    /// The content's size, or nil when an upload without a length went past the limit before its end.
    case tooLarge(FileName, UInt64?, limit: UInt64)
    case contentMismatch(FileName)
    case negativeTimestamp(FileName, Int64)

    public var description: String {
        switch self {
        case .nameNotConfigured(let name): return "file name \"\(name)\" is not configured on this node"
        case .signerNotAllowed(let name, let signer):
            return "key \(signer) is not allowed to sign \"\(name)\""
        case .badSignature(let name):
            return "signature for \"\(name)\" does not verify (wrong key, network id, or altered content)"
        case .malformedTombstone(let name): return "a tombstone for \"\(name)\" must sign empty content"
        case .stale(let name, let held):
            if let held {
                return
                    "stale: \"\(name)\" already holds a version as new or newer (timestamp \(held), \(RFC3339.utc(nanoseconds: held)))"
            }
            return "stale: the deletion of \"\(name)\" is older than tombstone_retention"
        case .inFuture(let name, let ahead, let limit):
            return
                "timestamp of \"\(name)\" is \(DurationFormat.describe(ahead)) in the future, beyond max_clock_skew \(DurationFormat.describe(limit)); offer it again later"
        case .expired(let name): return "version of \"\(name)\" has already expired (timestamp + valid_for is past)"
        case .tooLarge(let name, let size?, let limit):
            return "content of \"\(name)\" is \(size) bytes; max_file_size is \(limit) bytes"
        case .tooLarge(let name, nil, let limit):
            return "content of \"\(name)\" is more than max_file_size (\(limit) bytes)"
        case .contentMismatch(let name):
            return "content of \"\(name)\" does not match the signed length and hash"
        case .negativeTimestamp(let name, let timestamp):
            return "timestamp of \"\(name)\" is \(timestamp): it must be nanoseconds since the Unix epoch, not negative"
        }
    }

    /// A short machine-friendly reason, for counters and logs.
    public var reason: String {
        switch self {
        case .nameNotConfigured: return "name_not_configured"
        case .signerNotAllowed: return "signer_not_allowed"
        case .badSignature: return "bad_signature"
        case .malformedTombstone: return "malformed_tombstone"
        case .stale: return "stale"
        case .inFuture: return "in_future"
        case .expired: return "expired"
        case .tooLarge: return "too_large"
        case .contentMismatch: return "content_mismatch"
        case .negativeTimestamp: return "negative_timestamp"
        }
    }
}
