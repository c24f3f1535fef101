import DataMesherCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A problem with `dm.toml`; the message names the key and what is wrong with it.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public let key: String?
    public let problem: String

    public init(key: String?, _ problem: String) {
        self.key = key
        self.problem = problem
    }

    public var description: String {
        if let key { return "config key \(key): \(problem)" }
        return "config: \(problem)"
    }
}

/// Reads `dm.toml` into a `NodeConfig`, refusing unknown keys, wrong types and bad values.
public enum ConfigLoader {
    /// The largest config file accepted; a real one is a few KiB.
    public static let maxConfigBytes = 4 << 20

    public static func load(path: String) throws(ConfigError) -> NodeConfig {
        let text: String
        do {
            text = try readText(path: path, limit: maxConfigBytes)
        } catch {
            throw ConfigError(key: nil, "cannot read \(path): \(error)")
        }
        return try parse(text)
    }

    public static func parse(_ text: String) throws(ConfigError) -> NodeConfig {
        guard !text.utf8.contains(0) else { throw ConfigError(key: nil, "the file contains a NUL byte") }
        let root: TOMLTable
        do { root = try TOMLParser.parse(text) } catch { throw ConfigError(key: nil, "not valid TOML at \(error)") }
        var config = NodeConfig()
        let top = Section(table: root, path: "")
        try top.onlyKeys([
            "log_level", "state_dir", "node_name", "max_file_size", "max_clock_skew", "tombstone_retention", "cluster",
            "http", "files", "disk_reserve",
        ])
        if let level = try top.string("log_level") {
            guard let parsed = NodeConfig.LogLevel(rawValue: level) else {
                throw top.error("log_level", "\"\(level)\" is not one of fatal, error, warn, info, debug")
            }
            config.logLevel = parsed
        }
        if let dir = try top.string("state_dir") {
            guard dir.hasPrefix("/") || dir.hasPrefix(".") || !dir.isEmpty else {
                throw top.error("state_dir", "is empty")
            }
            config.stateDir = dir
        }
        if let name = try top.string("node_name") {
            guard !name.isEmpty, name.utf8.count <= 255,
                !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f })
            else { throw top.error("node_name", "must be 1-255 bytes without control characters") }
            config.nodeName = name
        }
        if let size = try top.string("max_file_size") {
            do { config.maxFileSize = try ByteSize.parse(size) } catch {
                throw top.error("max_file_size", error.description)
            }
            guard config.maxFileSize > 0 else { throw top.error("max_file_size", "must be larger than 0") }
        }
        if let size = try top.string("disk_reserve") {
            do { config.diskReserve = try ByteSize.parse(size) } catch {
                throw top.error("disk_reserve", error.description)
            }
        }
        if let value = try top.duration("max_clock_skew") { config.maxClockSkew = value }
        if let value = try top.duration("tombstone_retention") { config.tombstoneRetention = value }

        if let cluster = try top.section("cluster") {
            try cluster.onlyKeys([
                "port", "interfaces", "bootstrap_nodes", "join_interval", "push_pull_interval", "network_id",
                "max_members", "encryption",
            ])
            if let port = try cluster.port("port") { config.cluster.port = port }
            if let interfaces = try cluster.bindTargets("interfaces") { config.cluster.interfaces = interfaces }
            if let nodes = try cluster.strings("bootstrap_nodes") {
                config.cluster.bootstrapNodes = try nodes.enumerated().map { index, text throws(ConfigError) in
                    guard let address = PeerAddress.parse(text),
                        !address.host.contains(":") || IPLiteral.isIPv6(address.host)
                    else {
                        throw cluster.error(
                            "bootstrap_nodes[\(index)]",
                            "\"\(text)\" is not host:port, [ipv6]:port or name:port with a port 1-65535")
                    }
                    return address
                }
            }
            if let value = try cluster.duration("join_interval", nonZero: true) { config.cluster.joinInterval = value }
            if let value = try cluster.duration("push_pull_interval", nonZero: true) {
                config.cluster.pushPullInterval = value
            }
            if let value = try cluster.count("max_members", range: 2...65_536) { config.cluster.maxMembers = value }
            if let network = try cluster.string("network_id") {
                guard network.utf8.count <= 255 else { throw cluster.error("network_id", "is longer than 255 bytes") }
                config.cluster.networkID = network
            }
            if let encryption = try cluster.section("encryption") {
                try encryption.onlyKeys([
                    "enable", "keyring", "identity_key", "identity_cert", "certificate_authorities",
                ])
                var parsed = EncryptionConfig()
                parsed.enable = try encryption.bool("enable") ?? false
                parsed.keyring = try encryption.strings("keyring") ?? []
                parsed.identityKey = try encryption.string("identity_key")
                parsed.identityCert = try encryption.string("identity_cert")
                parsed.certificateAuthorities = try encryption.strings("certificate_authorities") ?? []
                if parsed.enable && parsed.keyring.isEmpty {
                    throw encryption.error("keyring", "must name at least one key file when enable = true")
                }
                let identityParts = [parsed.identityKey, parsed.identityCert].compactMap { $0 }.count
                if identityParts == 1 || (identityParts == 2 && parsed.certificateAuthorities.isEmpty) {
                    throw encryption.error(
                        "identity_key", "identity_key, identity_cert and certificate_authorities must be set together")
                }
                if identityParts == 2 && !parsed.enable {
                    throw encryption.error(
                        "identity_key", "node identities need encrypted traffic: set enable = true and a keyring")
                }
                config.cluster.encryption = parsed
            }
        }

        if let http = try top.section("http") {
            try http.onlyKeys([
                "port", "interfaces", "header_timeout", "idle_timeout", "max_connections_per_source",
                "max_concurrent_uploads",
            ])
            if let port = try http.port("port") { config.http.port = port }
            if let value = try http.duration("header_timeout", nonZero: true) { config.http.headerTimeout = value }
            if let value = try http.duration("idle_timeout", nonZero: true) { config.http.idleTimeout = value }
            if let value = try http.count("max_connections_per_source", range: 1...1_000_000) {
                config.http.maxConnectionsPerSource = value
            }
            if let value = try http.count("max_concurrent_uploads", range: 1...100_000) {
                config.http.maxConcurrentUploads = value
            }
            if let interfaces = try http.bindTargets("interfaces") {
                guard !interfaces.isEmpty else {
                    throw http.error("interfaces", "must list at least one interface or address")
                }
                config.http.interfaces = interfaces
            }
        }

        if let files = try top.section("files") {
            for key in files.table.keys.sorted() {
                let name: FileName
                do { name = try FileName(key) } catch {
                    throw files.error("\"\(key)\"", error.description)
                }
                guard let list = try files.strings(key) else { continue }
                guard !list.isEmpty else { throw files.error("\"\(key)\"", "lists no public keys") }
                config.files[name] = try list.enumerated().map { index, text throws(ConfigError) in
                    do { return try SignerKey(base64: text) } catch {
                        throw files.error("\"\(key)\"[\(index)]", "\(error): \"\(text.prefix(60))\"")
                    }
                }
            }
            // Names are stored as paths under files/: on a case-insensitive file system `x/A` and
            // `x/a` would be one file, so names that differ only by case are refused here, and a
            // name cannot be both a file and a folder on disk (`a` and `a/b`, nor `A` and `a/b`).
            var byFolded = [String: String]()
            for name in config.files.keys.map(\.value).sorted() {
                let folded = ConfigLoader.foldCase(name)
                if let other = byFolded[folded] {
                    throw ConfigError(
                        key: "files.\"\(name)\"",
                        "differs from files.\"\(other)\" only by case; names must differ by more than case")
                }
                byFolded[folded] = name
            }
            for name in config.files.keys.map(\.value).sorted() {
                var prefix = ""
                for segment in name.split(separator: "/").dropLast() {
                    prefix += prefix.isEmpty ? String(segment) : "/" + segment
                    if let other = byFolded[ConfigLoader.foldCase(prefix)] {
                        throw ConfigError(
                            key: "files.\"\(name)\"",
                            "conflicts with files.\"\(other)\": a name cannot also be a folder of another")
                    }
                }
            }
        }
        return config
    }
}

extension ConfigLoader {
    /// ASCII lower case: file names are ASCII only (SPEC §5).
    static func foldCase(_ name: String) -> String {
        String(
            decoding: name.utf8.map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") ? $0 + 32 : $0 },
            as: UTF8.self)
    }
}

/// One table of the document, with typed accessors that name the full key in errors.
struct Section {
    let table: TOMLTable
    let path: String

    func fullKey(_ key: String) -> String { path.isEmpty ? key : path + "." + key }
    func error(_ key: String, _ problem: String) -> ConfigError { ConfigError(key: fullKey(key), problem) }

    func onlyKeys(_ allowed: Set<String>) throws(ConfigError) {
        for key in table.keys.sorted() where !allowed.contains(key) {
            throw ConfigError(
                key: fullKey(key), "unknown key (known here: \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    func wrongType(_ key: String, _ expected: String, _ value: TOMLValue) -> ConfigError {
        error(key, "must be \(withArticle(expected)), not \(withArticle(value.typeName))")
    }

    func string(_ key: String) throws(ConfigError) -> String? {
        guard let value = table[key] else { return nil }
        guard case .string(let text) = value else { throw wrongType(key, "string", value) }
        return text
    }

    func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let value = table[key] else { return nil }
        guard case .boolean(let flag) = value else { throw wrongType(key, "boolean", value) }
        return flag
    }

    func section(_ key: String) throws(ConfigError) -> Section? {
        guard let value = table[key] else { return nil }
        guard case .table(let inner) = value else { throw wrongType(key, "table", value) }
        return Section(table: inner, path: fullKey(key))
    }

    func strings(_ key: String) throws(ConfigError) -> [String]? {
        guard let value = table[key] else { return nil }
        guard case .array(let items) = value else { throw wrongType(key, "array", value) }
        var out = [String]()
        for (index, element) in items.enumerated() {
            guard case .string(let text) = element else {
                throw wrongType("\(key)[\(index)]", "string", element)
            }
            out.append(text)
        }
        return out
    }

    func port(_ key: String) throws(ConfigError) -> UInt16? {
        guard let raw = table[key] else { return nil }
        guard case .integer(let value) = raw else { throw wrongType(key, "integer", raw) }
        guard let port = UInt16(exactly: value), port > 0 else { throw error(key, "\(value) is not a port (1-65535)") }
        return port
    }

    func count(_ key: String, range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let raw = table[key] else { return nil }
        guard case .integer(let value) = raw else { throw wrongType(key, "integer", raw) }
        guard let count = Int(exactly: value), range.contains(count) else {
            throw error(key, "\(value) is out of range (\(range.lowerBound)-\(range.upperBound))")
        }
        return count
    }

    func duration(_ key: String, nonZero: Bool = false) throws(ConfigError) -> UInt64? {
        guard let text = try string(key) else { return nil }
        let parsed: UInt64
        do { parsed = try DurationFormat.parse(text) } catch { throw self.error(key, error.description) }
        if nonZero && parsed == 0 { throw self.error(key, "must be longer than 0") }
        return parsed
    }

    func bindTargets(_ key: String) throws(ConfigError) -> [BindTarget]? {
        guard let list = try strings(key) else { return nil }
        return try list.enumerated().map { index, text throws(ConfigError) in
            if IPLiteral.isIPv4(text) || IPLiteral.isIPv6(text) { return .address(text) }
            let looksLikeAddress = text.contains(":") || (!text.isEmpty && text.allSatisfy { $0.isNumber || $0 == "." })
            guard !looksLikeAddress, !text.isEmpty, text.utf8.count < 16,
                text.allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != "/" })
            else {
                throw error("\(key)[\(index)]", "\"\(text)\" is neither an interface name nor an IP address")
            }
            return .interface(text)
        }
    }
}

func withArticle(_ noun: String) -> String { ("aeiou".contains(noun.first ?? "x") ? "an " : "a ") + noun }

/// IP literal checks via inet_pton.
public enum IPLiteral {
    public static func isIPv4(_ text: String) -> Bool {
        var address = in_addr()
        return inet_pton(AF_INET, text, &address) == 1
    }

    public static func isIPv6(_ text: String) -> Bool {
        var address = in6_addr()
        let plain = text.split(separator: "%", maxSplits: 1).first.map(String.init) ?? text
        return inet_pton(AF_INET6, plain, &address) == 1
    }
}

func readText(path: String, limit: Int) throws -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw POSIXMessage(errno: errno) }
    defer { close(fd) }
    var bytes = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 65536)
    var interruptions = 0
    while true {  // every pass reads at least one byte (at most limit + 1 in all), ends, or counts an EINTR
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 {
            let code = errno
            if code == EINTR && interruptions < 16 {
                interruptions += 1
                continue
            }
            throw POSIXMessage(errno: code)
        }
        if count == 0 { break }
        bytes += chunk[0..<count]
        if bytes.count > limit { throw POSIXMessage(text: "file is larger than \(limit) bytes") }
    }
    guard let text = String(validating: bytes, as: UTF8.self) else { throw POSIXMessage(text: "file is not UTF-8") }
    return text
}

struct POSIXMessage: Error, CustomStringConvertible {
    let description: String
    init(errno code: Int32) { description = String(cString: strerror(code)) }
    init(text: String) { description = text }
}
