/// The validated content of `dm.toml` (SPEC §4). Loading and key-by-key validation live in
/// DataMesherConfig; this is the model every other module reads.
public struct NodeConfig: Sendable, Equatable {
    public enum LogLevel: String, Sendable, CaseIterable {
        case fatal, error, warn, info, debug
    }

    /// Log level; default `info`.
    public var logLevel: LogLevel = .info
    /// Where files, metadata and the node ID live; default `/var/lib/data-mesher`.
    public var stateDir: String = "/var/lib/data-mesher"
    /// A label for people; default: the host name.
    public var nodeName: String? = nil
    /// Largest accepted content in bytes; default 4 GiB.
    public var maxFileSize: UInt64 = 4 << 30
    /// Versions further in the future are refused for now (ns); default 10m.
    public var maxClockSkew: UInt64 = 600 * 1_000_000_000
    /// How long a deletion is remembered (ns); default 720h.
    public var tombstoneRetention: UInt64 = 720 * 3_600 * 1_000_000_000
    /// Free space kept on the state_dir's file system: an upload whose length would eat into
    /// it is refused (507) before its body is read; default 64 MiB.
    public var diskReserve: UInt64 = 64 << 20
    public var cluster = ClusterConfig()
    public var http = HTTPConfig()
    /// `[files]`: name -> keys allowed to sign it.
    public var files: [FileName: [SignerKey]] = [:]

    public init() {}

    public var filePolicy: FilePolicy {
        FilePolicy(
            allowedSigners: files.mapValues { Set($0) }, networkID: cluster.networkID,
            maxClockSkew: Int64(clamping: maxClockSkew), maxFileSize: maxFileSize,
            tombstoneRetention: Int64(clamping: tombstoneRetention))
    }
}

public struct ClusterConfig: Sendable, Equatable {
    /// UDP and TCP port for gossip and transfers; default 7946.
    public var port: UInt16 = 7946
    /// Interfaces (names or literal addresses) to bind; empty = all.
    public var interfaces: [BindTarget] = []
    public var bootstrapNodes: [PeerAddress] = []
    /// Retry joining this often while no peer is known (ns); default 30s.
    public var joinInterval: UInt64 = 30 * 1_000_000_000
    /// Anti-entropy with one random peer this often (ns); default 30s.
    public var pushPullInterval: UInt64 = 30 * 1_000_000_000
    /// Signed into every file; default "".
    public var networkID: String = ""
    /// Members of the cluster as this node sees it, itself included, at most; default 4096.
    public var maxMembers: Int = 4096
    public var encryption: EncryptionConfig? = nil

    public init() {}
}

public struct EncryptionConfig: Sendable, Equatable {
    public var enable: Bool = false
    /// Files holding base64 32-byte keys; the first one is used to send.
    public var keyring: [String] = []
    public var identityKey: String? = nil
    public var identityCert: String? = nil
    public var certificateAuthorities: [String] = []

    public init() {}
}

public struct HTTPConfig: Sendable, Equatable {
    /// Port of the local API; default 7331.
    public var port: UInt16 = 7331
    /// Interfaces (names or literal addresses) to bind; default `["lo"]`.
    public var interfaces: [BindTarget] = [.interface("lo")]
    /// A new connection that has not sent a complete request head by then is closed (ns); default 10s.
    public var headerTimeout: UInt64 = 10 * 1_000_000_000
    /// A keep-alive connection with no request for this long is closed (ns); default 60s.
    public var idleTimeout: UInt64 = 60 * 1_000_000_000
    /// Open connections from one source address; more are closed at once; default 64.
    public var maxConnectionsPerSource: Int = 64
    /// Uploads (PUT) whose bodies are received at once; more answer 503; default 16.
    public var maxConcurrentUploads: Int = 16

    public init() {}
}

/// An entry of an `interfaces` list: an interface name, or a literal IP address.
public enum BindTarget: Sendable, Hashable, CustomStringConvertible {
    case interface(String)
    case address(String)

    public var description: String {
        switch self {
        case .interface(let name): return name
        case .address(let address): return address
        }
    }
}

/// A bootstrap node: `host:port`, `[v6]:port` or `dns.name:port`.
public struct PeerAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Parses the textual form; the host is checked for shape (a literal is checked fully by the caller).
    public static func parse(_ text: String) -> PeerAddress? {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            guard after.hasPrefix(":") else { return nil }
            portText = after.dropFirst()
            guard host.contains(":"),
                host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." || $0 == "%" }) || host.contains("%")
            else { return nil }
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            guard isHostName(host) else { return nil }
        }
        guard !host.isEmpty, let port = UInt16(portText), port > 0 else { return nil }
        return PeerAddress(host: String(host), port: port)
    }

    static func isHostName(_ host: Substring) -> Bool {
        guard !host.isEmpty, host.utf8.count <= 253 else { return false }
        return host.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && label.utf8.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
        }
    }
}
