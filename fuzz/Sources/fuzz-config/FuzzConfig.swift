// `ConfigLoader.parse` on a whole dm.toml: the TOML reader and every key's validation.
//
// Invariants:
// - parsing is deterministic (same config or same error twice);
// - TOML round trip: a document that parses, written back out by an independent writer (inline
//   tables and arrays, escaped strings), parses to the same tree, and gives the same config
//   or the same config error;
// - a config that loads holds only values its validation promises: valid file names with at
//   least one key each and no name that is also another's folder, ports 1-65535, bootstrap
//   addresses that print and re-parse to themselves, at least one HTTP interface, a network id
//   of at most 255 bytes, non-zero intervals, a node name without control characters.
import DataMesherConfig
import DataMesherCore
import FuzzSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    // The loader refuses a file that is not UTF-8 before parsing.
    guard let text = String(validating: fuzzInput(data, size), as: UTF8.self) else { return 0 }
    let result = load(text)
    invariant(load(text) == result, "ConfigLoader.parse is not deterministic")
    if case .success(let config) = result { checkConfig(config) }

    guard let tree = try? TOMLParser.parse(text), depth(.table(tree)) < 30 else { return 0 }
    let written = TOMLWriter.document(tree)
    let reread: TOMLTable
    do { reread = try TOMLParser.parse(written) } catch {
        broken("the TOML written back does not parse (\(error)):\n\(written)")
    }
    invariant(same(.table(reread), .table(tree)), "the TOML written back parses differently:\n\(written)")
    let rewritten = load(written)
    invariant(rewritten == result, "config differs after a TOML round trip: \(result) vs \(rewritten)\n\(written)")
    return 0
}

func load(_ text: String) -> Result<NodeConfig, ConfigError> {
    Result { () throws(ConfigError) in try ConfigLoader.parse(text) }
}

func checkConfig(_ config: NodeConfig) {
    if let name = config.nodeName {
        invariant(!name.isEmpty && name.utf8.count <= 255, "node_name \(quote(name))")
        invariant(!name.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f }, "node_name has a control")
    }
    invariant(!config.stateDir.isEmpty, "empty state_dir")
    invariant(config.maxFileSize > 0, "max_file_size 0")
    invariant(config.maxClockSkew <= UInt64(Int64.max), "max_clock_skew above Int64.max")
    invariant(config.tombstoneRetention <= UInt64(Int64.max), "tombstone_retention above Int64.max")
    invariant(config.cluster.port > 0 && config.http.port > 0, "port 0")
    invariant(config.cluster.joinInterval > 0 && config.cluster.pushPullInterval > 0, "interval 0")
    invariant(config.cluster.networkID.utf8.count <= 255, "network_id too long")
    invariant(!config.http.interfaces.isEmpty, "no HTTP interface")
    for address in config.cluster.bootstrapNodes {
        invariant(address.port > 0 && !address.host.isEmpty, "bootstrap node \(address)")
        invariant(PeerAddress.parse(address.description) == address, "bootstrap node \(address) does not re-parse")
    }
    for target in config.cluster.interfaces + config.http.interfaces {
        if case .interface(let name) = target {
            invariant(!name.isEmpty && name.utf8.count < 16 && !name.contains("/"), "interface \(quote(name))")
        }
    }
    if let encryption = config.cluster.encryption {
        invariant(!encryption.enable || !encryption.keyring.isEmpty, "encryption without a keyring")
        let parts = [encryption.identityKey, encryption.identityCert].compactMap { $0 }.count
        invariant(
            parts == 0 || (parts == 2 && !encryption.certificateAuthorities.isEmpty), "partial identity settings")
    }
    let names = Set(config.files.keys.map(\.value))
    for (name, signers) in config.files {
        invariant((try? FileName(name.value)) == name, "invalid file name \(quote(name.value))")
        invariant(!signers.isEmpty, "file \(name) has no signers")
        invariant(signers.allSatisfy { $0.bytes.count == SignerKey.length }, "signer length")
        var prefix = ""
        for segment in name.value.split(separator: "/").dropLast() {
            prefix += prefix.isEmpty ? String(segment) : "/" + segment
            invariant(!names.contains(prefix), "file \(name) is inside file \(prefix)")
        }
    }
    _ = config.filePolicy
}

// MARK: TOML tree helpers

/// Nesting depth of a value: 0 for a scalar.
func depth(_ value: TOMLValue) -> Int {
    switch value {
    case .array(let items): return 1 + (items.map(depth).max() ?? 0)
    case .table(let table): return 1 + (table.keys.compactMap { table[$0] }.map(depth).max() ?? 0)
    default: return 0
    }
}

/// Structural equality in which NaN equals NaN (TOML `nan` is a value like any other).
func same(_ lhs: TOMLValue, _ rhs: TOMLValue) -> Bool {
    switch (lhs, rhs) {
    case (.float(let a), .float(let b)): return a == b || (a.isNaN && b.isNaN)
    case (.array(let a), .array(let b)): return a.count == b.count && zip(a, b).allSatisfy(same)
    case (.table(let a), .table(let b)):
        return a.keys == b.keys
            && a.keys.allSatisfy { key in
                guard let left = a[key], let right = b[key] else { return false }
                return same(left, right)
            }
    default: return lhs == rhs
    }
}

/// Writes a TOML tree back as text: top-level `key = value` lines, everything nested inline.
enum TOMLWriter {
    static func document(_ table: TOMLTable) -> String {
        var out = ""
        for key in table.keys {
            guard let value = table[key] else { continue }
            out += self.key(key) + " = " + self.value(value) + "\n"
        }
        return out
    }

    static func value(_ value: TOMLValue) -> String {
        switch value {
        case .string(let text): return string(text)
        case .integer(let number): return String(number)
        case .float(let number):
            if number.isNaN { return "nan" }
            if number.isInfinite { return number < 0 ? "-inf" : "inf" }
            let text = String(number)
            // Swift writes "1e+20"; TOML needs a digit before any exponent, which it has.
            return text
        case .boolean(let flag): return flag ? "true" : "false"
        case .datetime(let text): return text
        case .array(let items): return "[" + items.map(Self.value).joined(separator: ", ") + "]"
        case .table(let table):
            let pairs = table.keys.compactMap { key in table[key].map { self.key(key) + " = " + Self.value($0) } }
            return "{" + pairs.joined(separator: ", ") + "}"
        }
    }

    static func key(_ key: String) -> String { string(key) }

    /// A basic string: quote, backslash and control characters escaped, everything else as is.
    static func string(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7f {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    Seeds.writeIfAsked { [] }
    return 0
}
