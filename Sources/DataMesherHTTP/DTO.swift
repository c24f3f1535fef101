import DataMesherCore
import DataMesherNet
import DataMesherStore
import Foundation

/// One entry of `GET /v1/files` (and the answer to an upload or a deletion).
public struct FileEntryJSON: Codable, Sendable, Equatable {
    public var name: String
    public var size: UInt64
    public var sha256: String
    public var timestamp: Int64
    public var signer: String
    public var valid_for: UInt64
    public var deleted: Bool
    public var expired: Bool
    /// Present (true) only when the record is kept but its content is missing (damaged on
    /// disk) until the version is fetched again.
    public var missing: Bool?

    public init(_ stored: StoredFile) {
        let version = stored.version
        name = version.name.value
        size = version.contentLength
        sha256 = Hex.encode(version.contentSHA256)
        timestamp = version.timestamp
        signer = version.signer.base64
        valid_for = version.validFor
        deleted = stored.state == .tombstone
        expired = stored.state == .expired
        missing = stored.state == .missing ? true : nil
    }
}

extension FileEntryJSON {
    /// The entry's JSON, as `JSON.encode(self)` writes it, without `JSONEncoder`'s cost (the
    /// answer to every upload).
    public func encoded() -> [UInt8] {
        var object = JSONObjectWriter(escapingSlashes: false)
        object.add("deleted", deleted)
        object.add("expired", expired)
        if let missing { object.add("missing", missing) }
        object.add("name", name)
        object.add("sha256", sha256)
        object.add("signer", signer)
        object.add("size", size)
        object.add("timestamp", timestamp)
        object.add("valid_for", valid_for)
        return object.finished()
    }
}

public struct InfoJSON: Codable, Sendable, Equatable {
    public struct Counts: Codable, Sendable, Equatable {
        public var files: Int
        public var bytes: UInt64
        public var tombstones: Int
        public var expired: Int
        public var members: Int
    }

    public var version: String
    public var node_name: String
    public var node_id: String
    public var network_id: String
    public var counts: Counts
    /// Gossip and transfer counters (packets in/out/dropped, syncs, fetches).
    public var cluster: ClusterCounters
    /// This node's clock minus the median of its peers' clocks (s); absent until a peer answered.
    public var clock_offset_seconds: Double?
    /// The file names this node is configured for (`[files]`), sorted.
    public var files_configured: [String]
    /// This node's own certificate: when it ends (RFC 3339, UTC) and the seconds left until
    /// then (negative once it has ended). Left out when the node has no certificate.
    public var certificate_expires_at: String?
    public var certificate_expires_in_seconds: Int64?
    /// What this node's API takes beyond the basic upload, for a client to choose how to send
    /// (`Feature`); absent from older nodes.
    public var api_features: [String]?

    public enum Feature {
        /// `PUT` with `DM-Signature: after-body`: the signature is the body's last 64 bytes.
        public static let signatureAfterBody = "signature-after-body"
    }
}

/// `GET /v1/status/{name}`: the version this node holds, and what each member says it holds.
public struct FileStatusJSON: Codable, Sendable, Equatable {
    public struct Member: Codable, Sendable, Equatable {
        public var id: String
        public var name: String
        public var state: String
        /// It said it is configured for the name (or it is this node).
        public var configured: Bool
        /// The timestamp of the version it holds (absent: none, or not heard of).
        public var timestamp: Int64?
        /// It holds exactly the version this node holds.
        public var current: Bool
        /// Alive or suspect: a member that may still take a version.
        public var isLive: Bool { state == "alive" || state == "suspect" }
        /// The newer version it refused, and why (absent: it told of none, or it holds a version
        /// as new since).
        public var refused: Refused? = nil
    }

    /// A member's refusal of a version newer than the one it holds.
    public struct Refused: Codable, Sendable, Equatable {
        public var timestamp: Int64
        /// A short code: `signer_not_allowed`, `other_network`, `in_future`, `expired`,
        /// `too_large`, `negative_timestamp`, `malformed_tombstone`, `no_room` (or a number from
        /// a newer member).
        public var reason: String
        /// Why, in words, as the member would put it.
        public var message: String
        /// The number behind the reason: its `max_clock_skew` in nanoseconds (`in_future`), its
        /// `max_file_size` in bytes (`too_large`), the bytes free on its disk (`no_room`).
        public var limit: UInt64?
        /// It refuses the version for as long as its settings stay as they are; false for
        /// `no_room` and `in_future`, which can pass (it tries again).
        public var lasting: Bool
        /// It is the version this node holds.
        public var current: Bool
    }

    public var name: String
    /// The version this node holds (absent: none).
    public var timestamp: Int64?
    public var sha256: String?
    /// What this node holds of that version: `content`, `tombstone` (a deletion), `expired` or
    /// `missing` (damaged on disk, fetched again); absent with the version.
    public var state: String?
    public var members: [Member]
}

public struct ErrorJSON: Codable, Sendable, Equatable {
    public var error: String
}

/// The version of this build of data-mesher.
public enum DataMesherVersion {
    public static let string = "0.1.0"
}

enum JSON {
    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // The DTOs hold only strings, integers and booleans: encoding cannot fail.
        return Array((try? encoder.encode(value)) ?? Data("{}".utf8))
    }
}
