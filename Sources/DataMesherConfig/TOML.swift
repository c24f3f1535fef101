/// A strict TOML 1.0 reader for `dm.toml`.
///
/// We first used TOMLKit, but its bundled toml++ aborts the process on some malformed input
/// (assertions found by our decoder fuzz test: a table header such as `[::1]`, a damaged time
/// value). A daemon must refuse a bad config with a message, never crash, so the config is read
/// by this small parser instead: every value type of TOML 1.0, bounded nesting, and every error
/// with its line number.
public enum TOMLValue: Equatable, Sendable {
    case string(String)
    case integer(Int64)
    case float(Double)
    case boolean(Bool)
    case datetime(String)
    case array([TOMLValue])
    case table(TOMLTable)

    /// The TOML type name used in error messages.
    public var typeName: String {
        switch self {
        case .string: return "string"
        case .integer: return "integer"
        case .float: return "float"
        case .boolean: return "boolean"
        case .datetime: return "date-time"
        case .array: return "array"
        case .table: return "table"
        }
    }
}

extension TOMLValue {
    /// Changes this table, or the last table of this array of tables, in place. Each value is
    /// taken out of its holder before it changes (a `guard case`, not a `switch`, whose subject
    /// would hold a second reference and force a copy).
    mutating func modifyLastTable(_ change: (inout TOMLTable) -> Void) {
        if case .table(var inner) = self {
            self = .boolean(false)
            change(&inner)
            self = .table(inner)
        } else if case .array(var items) = self {
            self = .boolean(false)
            guard let last = items.indices.last, case .table(var inner) = items[last] else {
                self = .array(items)
                return
            }
            items[last] = .boolean(false)
            change(&inner)
            items[last] = .table(inner)
            self = .array(items)
        }
    }
}

/// A table: keys in document order and their values.
public struct TOMLTable: Equatable, Sendable {
    public private(set) var keys: [String] = []
    var values: [String: TOMLValue] = [:]

    public init() {}

    public subscript(key: String) -> TOMLValue? { values[key] }

    mutating func set(_ key: String, _ value: TOMLValue) {
        if values[key] == nil { keys.append(key) }
        values[key] = value
    }
}

public struct TOMLError: Error, Sendable, Equatable, CustomStringConvertible {
    public let line: Int
    public let message: String
    public var description: String { "line \(line): \(message)" }
}

public struct TOMLParser {
    static let maxDepth = 32

    var bytes: [UInt8]
    var position = 0
    var line = 1
    /// The document as nested tables; the current table is addressed by `currentPath`.
    var root = TOMLTable()
    var currentPath: [String] = []
    /// Tables defined by a header or by dotted keys, so a second definition is refused.
    var definedTables: Set<[String]> = []
    /// Tables that were written inline (`a = { … }`) or are static arrays; they cannot be extended.
    var sealed: Set<[String]> = []

    public static func parse(_ text: String) throws(TOMLError) -> TOMLTable {
        var parser = TOMLParser(bytes: Array(text.utf8))
        try parser.parseDocument()
        return parser.root
    }

    // MARK: Document structure

    mutating func parseDocument() throws(TOMLError) {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }
        while true {
            skipWhitespace()
            guard let byte = peek() else { return }
            switch byte {
            case UInt8(ascii: "#"): try skipComment()
            case UInt8(ascii: "\n"): advanceLine()
            case UInt8(ascii: "\r"): try expectNewline()
            case UInt8(ascii: "["): try parseTableHeader()
            default:
                let key = try parseKey()
                skipWhitespace()
                try expect(UInt8(ascii: "="), "expected '=' after a key")
                skipWhitespace()
                let value = try parseValue(depth: 0)
                try insert(path: currentPath, key: key, value: value)
                try endOfLine()
            }
        }
    }

    mutating func parseTableHeader() throws(TOMLError) {
        position += 1
        let isArray = peek() == UInt8(ascii: "[")
        if isArray { position += 1 }
        skipWhitespace()
        let path = try parseKey()
        skipWhitespace()
        try expect(UInt8(ascii: "]"), "expected ']' to close the table header")
        if isArray { try expect(UInt8(ascii: "]"), "expected ']]' to close the array-of-tables header") }
        if isArray {
            try appendArrayTable(path)
        } else {
            guard !definedTables.contains(path) else {
                throw error("table [\(path.joined(separator: "."))] is defined twice")
            }
            try ensureTable(path)
            definedTables.insert(path)
            currentPath = path
        }
        try endOfLine()
    }

    // MARK: Building the tree

    mutating func insert(path: [String], key: [String], value: TOMLValue) throws(TOMLError) {
        let tablePath = path + key.dropLast()
        try ensureTable(tablePath)
        for index in path.count..<tablePath.count { definedTables.insert(Array(tablePath[...index])) }
        let last = key[key.count - 1]
        var failure: String?
        modifyTable(at: tablePath) { table in
            if table[last] != nil {
                failure = "key \((tablePath + [last]).joined(separator: ".")) is defined twice"
            } else {
                table.set(last, value)
            }
        }
        if let failure { throw error(failure) }
        switch value {
        case .table, .array: sealed.insert(tablePath + [last])
        default: break
        }
    }

    /// Makes sure every table along `path` exists (creating implicit ones).
    mutating func ensureTable(_ path: [String]) throws(TOMLError) {
        var prefix: [String] = []
        for component in path {
            let parent = prefix
            prefix.append(component)
            if sealed.contains(prefix) { throw error("table \(prefix.joined(separator: ".")) cannot be extended") }
            var failure: String?
            modifyTable(at: parent) { table in
                switch table[component] {
                case nil: table.set(component, .table(TOMLTable()))
                case .table: break
                case .array(let items)
                where items.last.map({ if case .table = $0 { return true } else { return false } }) == true:
                    break
                default: failure = "\(prefix.joined(separator: ".")) is already a value, not a table"
                }
            }
            if let failure { throw error(failure) }
        }
    }

    mutating func appendArrayTable(_ path: [String]) throws(TOMLError) {
        if sealed.contains(path) { throw error("\(path.joined(separator: ".")) cannot be extended") }
        try ensureTable(Array(path.dropLast()))
        let last = path[path.count - 1]
        var failure: String?
        modifyTable(at: Array(path.dropLast())) { table in
            switch table[last] {
            case nil: table.set(last, .array([.table(TOMLTable())]))
            case .array(var items)
            where !items.isEmpty && items.allSatisfy({ if case .table = $0 { true } else { false } }):
                items.append(.table(TOMLTable()))
                table.set(last, .array(items))
            default: failure = "\(path.joined(separator: ".")) is not an array of tables"
            }
        }
        if let failure { throw error(failure) }
        currentPath = path
        definedTables = definedTables.filter { !$0.starts(with: path) || $0 == path }
    }

    /// Applies `change` to the table at `path`; a path through an array of tables means its last table.
    mutating func modifyTable(at path: [String], _ change: (inout TOMLTable) -> Void) {
        TOMLParser.modify(&root, path[...], change)
    }

    static func modify(_ table: inout TOMLTable, _ path: ArraySlice<String>, _ change: (inout TOMLTable) -> Void) {
        guard let first = path.first else {
            change(&table)
            return
        }
        // The value is taken out of its parent while it changes, so it has one owner and is
        // changed in place; leaving it in would copy the whole table on every key (quadratic
        // for a [files] table of 20,000 names).
        guard var value = table.values.removeValue(forKey: first) else { return }
        value.modifyLastTable { inner in modify(&inner, path.dropFirst(), change) }
        table.values[first] = value
    }

    // MARK: Keys

    mutating func parseKey() throws(TOMLError) -> [String] {
        var parts: [String] = []
        while true {
            skipWhitespace()
            guard let byte = peek() else { throw error("expected a key") }
            if byte == UInt8(ascii: "\"") {
                parts.append(try parseBasicString())
            } else if byte == UInt8(ascii: "'") {
                parts.append(try parseLiteralString())
            } else {
                let start = position
                while let char = peek(), isBareKeyByte(char) { position += 1 }
                guard position > start else { throw error("expected a key, found \(describeByte(byte))") }
                parts.append(String(decoding: bytes[start..<position], as: UTF8.self))
            }
            skipWhitespace()
            guard peek() == UInt8(ascii: ".") else { return parts }
            position += 1
            guard parts.count < TOMLParser.maxDepth else { throw error("key has too many parts") }
        }
    }

    func isBareKeyByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    // MARK: Values

    mutating func parseValue(depth: Int) throws(TOMLError) -> TOMLValue {
        guard depth < TOMLParser.maxDepth else { throw error("values are nested too deeply") }
        guard let byte = peek() else { throw error("expected a value") }
        switch byte {
        case UInt8(ascii: "\""):
            if bytes[position...].starts(with: Array("\"\"\"".utf8)) { return .string(try parseMultilineBasicString()) }
            return .string(try parseBasicString())
        case UInt8(ascii: "'"):
            if bytes[position...].starts(with: Array("'''".utf8)) { return .string(try parseMultilineLiteralString()) }
            return .string(try parseLiteralString())
        case UInt8(ascii: "["): return try parseArray(depth: depth)
        case UInt8(ascii: "{"): return try parseInlineTable(depth: depth)
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            if consume("true") { return .boolean(true) }
            if consume("false") { return .boolean(false) }
            throw error("expected a value, found \(describeByte(byte))")
        default:
            return try parseNumberOrDate()
        }
    }

    mutating func parseArray(depth: Int) throws(TOMLError) -> TOMLValue {
        position += 1
        var items: [TOMLValue] = []
        while true {
            try skipWhitespaceCommentsAndNewlines()
            if peek() == UInt8(ascii: "]") {
                position += 1
                return .array(items)
            }
            items.append(try parseValue(depth: depth + 1))
            try skipWhitespaceCommentsAndNewlines()
            if peek() == UInt8(ascii: ",") {
                position += 1
                continue
            }
            try expect(UInt8(ascii: "]"), "expected ',' or ']' in an array")
            return .array(items)
        }
    }

    mutating func parseInlineTable(depth: Int) throws(TOMLError) -> TOMLValue {
        position += 1
        var table = TOMLTable()
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            position += 1
            return .table(table)
        }
        while true {
            skipWhitespace()
            let key = try parseKey()
            skipWhitespace()
            try expect(UInt8(ascii: "="), "expected '=' after a key")
            skipWhitespace()
            let value = try parseValue(depth: depth + 1)
            guard key.count == 1 else { throw error("dotted keys are not supported inside inline tables") }
            guard table[key[0]] == nil else { throw error("key \(key[0]) is defined twice") }
            table.set(key[0], value)
            skipWhitespace()
            if peek() == UInt8(ascii: ",") {
                position += 1
                continue
            }
            try expect(UInt8(ascii: "}"), "expected ',' or '}' in an inline table")
            return .table(table)
        }
    }

    mutating func parseNumberOrDate() throws(TOMLError) -> TOMLValue {
        let start = position
        while let byte = peek(),
            isBareKeyByte(byte) || byte == UInt8(ascii: "+") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: ":")
        {
            position += 1
        }
        // A date-time may have one space between date and time.
        if position - start == 10, peek() == UInt8(ascii: " "), position + 1 < bytes.count,
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[position + 1])
        {
            position += 1
            while let byte = peek(),
                isBareKeyByte(byte) || byte == UInt8(ascii: "+") || byte == UInt8(ascii: ".")
                    || byte == UInt8(ascii: ":")
            {
                position += 1
            }
        }
        let text = String(decoding: bytes[start..<position], as: UTF8.self)
        guard !text.isEmpty else { throw error("expected a value, found \(describeByte(bytes[start]))") }
        if let integer = TOMLParser.integer(text) { return .integer(integer) }
        if let float = TOMLParser.float(text) { return .float(float) }
        if TOMLParser.isDateTime(text) { return .datetime(text) }
        throw error("\"\(text.prefix(40))\" is not a valid value (strings need quotes)")
    }

    static func integer(_ text: String) -> Int64? {
        var body = Substring(text)
        var negative = false
        if body.first == "+" || body.first == "-" {
            negative = body.first == "-"
            body = body.dropFirst()
        }
        var radix = 10
        if body.hasPrefix("0x") || body.hasPrefix("0o") || body.hasPrefix("0b") {
            guard text.first != "+" && text.first != "-" else { return nil }
            radix = body.hasPrefix("0x") ? 16 : body.hasPrefix("0o") ? 8 : 2
            body = body.dropFirst(2)
        } else if body.count > 1 && body.first == "0" {
            return nil
        }
        guard !body.isEmpty, body.first != "_", body.last != "_", !body.contains("__") else { return nil }
        let digits = body.filter { $0 != "_" }
        guard digits.allSatisfy({ $0.isHexDigit }), let magnitude = UInt64(digits, radix: radix) else { return nil }
        if negative { return magnitude <= UInt64(Int64.max) + 1 ? Int64(truncatingIfNeeded: 0 &- magnitude) : nil }
        return magnitude <= UInt64(Int64.max) ? Int64(magnitude) : nil
    }

    static func float(_ text: String) -> Double? {
        switch text {
        case "inf", "+inf": return .infinity
        case "-inf": return -.infinity
        case "nan", "+nan", "-nan": return .nan
        default: break
        }
        guard text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }),
            text.allSatisfy({ $0.isNumber || "+-._eE".contains($0) }), !text.contains("__"), !text.hasPrefix("."),
            !text.hasSuffix("."), !text.contains("._"), !text.contains("_.")
        else { return nil }
        return Double(text.filter { $0 != "_" })
    }

    static func isDateTime(_ text: String) -> Bool {
        let chars = Array(text.utf8)
        func digits(_ range: Range<Int>) -> Bool {
            range.upperBound <= chars.count && chars[range].allSatisfy { (48...57).contains($0) }
        }
        // Local time: HH:MM:SS[.frac]
        if chars.count >= 8, digits(0..<2), chars[2] == UInt8(ascii: ":"), digits(3..<5), chars[5] == UInt8(ascii: ":")
        {
            return digits(6..<8) && (chars.count == 8 || (chars[8] == UInt8(ascii: ".") && digits(9..<chars.count)))
        }
        guard chars.count >= 10, digits(0..<4), chars[4] == UInt8(ascii: "-"), digits(5..<7),
            chars[7] == UInt8(ascii: "-"), digits(8..<10)
        else { return false }
        if chars.count == 10 { return true }
        guard [UInt8(ascii: "T"), UInt8(ascii: "t"), UInt8(ascii: " ")].contains(chars[10]) else { return false }
        let rest = Array(chars[11...])
        return rest.count >= 8 && rest.allSatisfy { (48...58).contains($0) || "+-.Zz".utf8.contains($0) }
    }

    // MARK: Strings

    mutating func parseBasicString() throws(TOMLError) -> String {
        position += 1
        var out = [UInt8]()
        while true {
            guard let byte = peek() else { throw error("unterminated string") }
            position += 1
            switch byte {
            case UInt8(ascii: "\""):
                return try text(out)
            case UInt8(ascii: "\\"):
                try parseEscape(into: &out)
            case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                throw error("unterminated string (a newline inside \"…\"; use \"\"\"…\"\"\" for several lines)")
            default:
                guard byte >= 0x20 || byte == UInt8(ascii: "\t"), byte != 0x7f else {
                    throw error("control character \(describeByte(byte)) inside a string")
                }
                out.append(byte)
            }
        }
    }

    /// Skips the opening delimiter and a newline right after it (which is not content).
    mutating func openMultiline() {
        position += 3
        if peek() == UInt8(ascii: "\n") {
            advanceLine()
        } else if bytes[position...].starts(with: [13, 10]) {
            position += 1
            advanceLine()
        }
    }

    /// At three `quote`s: consumes them, plus up to two more, which belong to the content.
    mutating func closeMultiline(_ quote: UInt8, into out: inout [UInt8]) -> Bool {
        guard bytes[position...].starts(with: [quote, quote, quote]) else { return false }
        position += 3
        var extra = 0
        while peek() == quote, extra < 2 {
            out.append(quote)
            position += 1
            extra += 1
        }
        return true
    }

    mutating func parseMultilineBasicString() throws(TOMLError) -> String {
        openMultiline()
        var out = [UInt8]()
        while true {
            guard let byte = peek() else { throw error("unterminated multi-line string") }
            if closeMultiline(UInt8(ascii: "\""), into: &out) { return try text(out) }
            position += 1
            if byte == UInt8(ascii: "\\") {
                // A line-ending backslash trims the newline and following whitespace.
                var lookahead = position
                while lookahead < bytes.count, bytes[lookahead] == 32 || bytes[lookahead] == 9 { lookahead += 1 }
                if lookahead < bytes.count, bytes[lookahead] == 10 || bytes[lookahead] == 13 {
                    position = lookahead
                    while let next = peek(), next == 32 || next == 9 || next == 10 || next == 13 {
                        if next == 10 { line += 1 }
                        position += 1
                    }
                    continue
                }
                try parseEscape(into: &out)
            } else if byte == 10 {
                line += 1
                out.append(byte)
            } else {
                guard byte >= 0x20 || byte == 9 || byte == 13, byte != 0x7f else {
                    throw error("control character \(describeByte(byte)) inside a string")
                }
                out.append(byte)
            }
        }
    }

    mutating func parseEscape(into out: inout [UInt8]) throws(TOMLError) {
        guard let escape = peek() else { throw error("unterminated string") }
        position += 1
        switch escape {
        case UInt8(ascii: "b"): out.append(8)
        case UInt8(ascii: "t"): out.append(9)
        case UInt8(ascii: "n"): out.append(10)
        case UInt8(ascii: "f"): out.append(12)
        case UInt8(ascii: "r"): out.append(13)
        case UInt8(ascii: "\""): out.append(34)
        case UInt8(ascii: "\\"): out.append(92)
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let count = escape == UInt8(ascii: "u") ? 4 : 8
            guard position + count <= bytes.count,
                let value = UInt32(String(decoding: bytes[position..<position + count], as: UTF8.self), radix: 16),
                let scalar = Unicode.Scalar(value)
            else { throw error("invalid \\u escape") }
            position += count
            out += Array(String(Character(scalar)).utf8)
        default:
            throw error("invalid escape \\\(describeByte(escape)) in a string")
        }
    }

    mutating func parseLiteralString() throws(TOMLError) -> String {
        position += 1
        let start = position
        while true {
            guard let byte = peek() else { throw error("unterminated string") }
            if byte == UInt8(ascii: "'") {
                let value = try text(Array(bytes[start..<position]))
                position += 1
                return value
            }
            guard byte >= 0x20 || byte == 9, byte != 0x7f else {
                throw error("unterminated or invalid literal string (control character \(describeByte(byte)))")
            }
            position += 1
        }
    }

    mutating func parseMultilineLiteralString() throws(TOMLError) -> String {
        openMultiline()
        var out = [UInt8]()
        while true {
            guard let byte = peek() else { throw error("unterminated multi-line string") }
            if closeMultiline(UInt8(ascii: "'"), into: &out) { return try text(out) }
            if byte == 10 { line += 1 }
            guard byte >= 0x20 || byte == 9 || byte == 10 || byte == 13, byte != 0x7f else {
                throw error("control character \(describeByte(byte)) inside a string")
            }
            out.append(byte)
            position += 1
        }
    }

    func text(_ bytes: [UInt8]) throws(TOMLError) -> String {
        guard let string = String(validating: bytes, as: UTF8.self) else { throw error("string is not valid UTF-8") }
        return string
    }

    // MARK: Whitespace, comments and lines

    func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }

    mutating func consume(_ word: String) -> Bool {
        let literal = Array(word.utf8)
        guard bytes[position...].starts(with: literal) else { return false }
        let end = position + literal.count
        if end < bytes.count, isBareKeyByte(bytes[end]) { return false }
        position = end
        return true
    }

    mutating func expect(_ byte: UInt8, _ message: String) throws(TOMLError) {
        guard peek() == byte else {
            throw error(message + (peek().map { ", found \(describeByte($0))" } ?? ", found the end of the file"))
        }
        position += 1
    }

    mutating func skipWhitespace() {
        while let byte = peek(), byte == 32 || byte == 9 { position += 1 }
    }

    mutating func skipComment() throws(TOMLError) {
        while let byte = peek(), byte != 10 {
            if byte == 13 && position + 1 < bytes.count && bytes[position + 1] == 10 { break }
            guard byte >= 0x20 || byte == 9, byte != 0x7f else {
                throw error("control character \(describeByte(byte)) in a comment")
            }
            position += 1
        }
    }

    mutating func skipWhitespaceCommentsAndNewlines() throws(TOMLError) {
        while true {
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: "#"): try skipComment()
            case 10: advanceLine()
            case 13: try expectNewline()
            default: return
            }
        }
    }

    mutating func advanceLine() {
        position += 1
        line += 1
    }

    mutating func expectNewline() throws(TOMLError) {
        guard bytes[position...].starts(with: [13, 10]) else {
            throw error("a carriage return must be followed by a newline")
        }
        position += 2
        line += 1
    }

    /// After a key/value or a header only whitespace and a comment may follow on the line.
    mutating func endOfLine() throws(TOMLError) {
        skipWhitespace()
        switch peek() {
        case nil: return
        case UInt8(ascii: "#"): try skipComment()
        case 10, 13: return
        case let byte?: throw error("expected the end of the line, found \(describeByte(byte))")
        }
    }

    func error(_ message: String) -> TOMLError { TOMLError(line: line, message: message) }

    func describeByte(_ byte: UInt8) -> String {
        if byte >= 0x21 && byte < 0x7f { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "byte 0x" + String(byte, radix: 16)
    }
}
