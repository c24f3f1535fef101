import Crypto
import DataMesherCore
import DataMesherKeys
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Where the built `data-mesher` binary is: beside the test bundle, or `$DM_BIN`.
enum Binary {
    static let path: String = {
        if let override = ProcessInfo.processInfo.environment["DM_BIN"] { return override }
        let bundleDir = Bundle.main.bundleURL.deletingLastPathComponent()
        for candidate in [bundleDir, bundleDir.deletingLastPathComponent(), Bundle.main.bundleURL] {
            let path = candidate.appendingPathComponent("data-mesher").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        let fromSource = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/data-mesher").path
        return fromSource
    }()
}

/// A distinct loopback address per daemon, so tests running side by side never share a port.
enum LoopbackAddress {
    static let counter = Counter()

    static func next() -> String {
        let n = counter.next()
        let pid = Int(getpid())
        return "127.\(100 + (pid >> 8) % 100).\(pid % 250 + 1).\(n % 250 + 1)"
    }
}

final class Counter: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var value = 0
    func next() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value
    }
}

/// A key pair on disk, as the CLI would use it.
struct TestKey: @unchecked Sendable {  // immutable after init; signing does not mutate the key
    let key = Curve25519.Signing.PrivateKey()
    let path: String
    var base64: String { Base64.encode(key.publicKey.rawRepresentation) }
    var signer: SignerKey { try! SignerKey(bytes: Array(key.publicKey.rawRepresentation)) }

    init(dir: String, name: String) throws {
        path = dir + "/" + name + ".pem"
        try KeyPEM.encodePrivateKey(key).write(toFile: path, atomically: true, encoding: .utf8)
    }

    func sign(
        _ name: String, _ content: [UInt8], at timestamp: Int64, validFor: UInt64 = 0, network: String = "",
        tombstone: Bool = false
    ) throws -> FileVersion {
        try FileVersion.sign(
            kind: tombstone ? .tombstone : .content, networkID: network, name: try FileName(name), timestamp: timestamp,
            validFor: validFor, contentSHA256: Array(SHA256.hash(data: content)), contentLength: UInt64(content.count),
            key: key)
    }
}

func nowNanoseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1e9) }

/// One `data-mesher server` process on its own loopback address and state dir.
final class Daemon: @unchecked Sendable {  // mutated only from the owning test
    let dir: String
    let address: String
    let port = 7331
    var process: Process?
    /// The open-files limit (soft and hard) the daemon starts under; nil: the test's own.
    var fileLimit: Int?
    var logPath: String { dir + "/daemon.log" }
    var configPath: String { dir + "/dm.toml" }
    var stateDir: String { dir + "/state" }
    var url: String { "http://\(address):\(port)" }

    /// `extra` goes at the top level, `cluster` into [cluster], `http` into [http].
    init(
        files: [String: [String]], extra: String = "", cluster: String = "", http: String = "", name: String = "test",
        address: String = LoopbackAddress.next()
    ) throws {
        dir = NSTemporaryDirectory() + "dm-proc-" + UUID().uuidString
        self.address = address
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var toml = """
            state_dir = "\(dir)/state"
            node_name = "\(name)"
            log_level = "debug"
            \(extra)
            [http]
            port = \(port)
            interfaces = ["\(self.address)"]
            \(http)
            [cluster]
            interfaces = ["\(self.address)"]
            \(cluster)
            [files]

            """
        for (name, keys) in files.sorted(by: { $0.key < $1.key }) {
            toml += "\"\(name)\" = [" + keys.map { "\"\($0)\"" }.joined(separator: ", ") + "]\n"
        }
        try toml.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Starts the daemon and waits (bounded) until its API answers.
    func start() throws {
        let process = Process()
        let arguments = ["server", "--config", configPath]
        process.executableURL = URL(fileURLWithPath: Binary.path)
        process.arguments = arguments
        if let fileLimit {
            // The shell sets the limit and becomes the daemon (same PID).
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit -n \(fileLimit) && exec \"$0\" \"$@\"", Binary.path] + arguments
        }
        if !FileManager.default.fileExists(atPath: logPath) {
            FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if !process.isRunning { throw HarnessError("daemon exited at start: \(tailOfLog())") }
            if let reply = try? HTTP.request(address, port, method: "GET", path: "/v1/info"), reply.status == 200 {
                return
            }
            usleep(50_000)
        }
        throw HarnessError("daemon did not answer within 60 s: \(tailOfLog())")
    }

    /// Sends `signal` and waits (bounded) for the process to end.
    func stop(signal: Int32 = SIGTERM) {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    func tailOfLog(_ characters: Int = 2000) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return String(text.suffix(characters))
    }

    func cleanUp() {
        stop(signal: SIGKILL)
        try? FileManager.default.removeItem(atPath: dir)
    }

    deinit { if let process, process.isRunning { kill(process.processIdentifier, SIGKILL) } }

    /// GETs a path and returns the reply (nil when the daemon does not answer).
    func get(_ path: String) -> HTTP.Reply? { try? HTTP.request(address, port, method: "GET", path: path) }

    /// The state of the member called `name` as this node sees it.
    func memberState(_ name: String) -> String? {
        guard let reply = get("/v1/members"),
            let list = try? JSONSerialization.jsonObject(with: Data(reply.body)) as? [[String: Any]]
        else { return nil }
        return list.first { $0["name"] as? String == name }?["state"] as? String
    }

    /// Runs the CLI against this daemon.
    func cli(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try runProcess(Binary.path, arguments)
    }

    /// A fingerprint of everything under the state dir: path, mode and content hash.
    func snapshot() -> [String: String] {
        var out = [String: String]()
        guard let enumerator = FileManager.default.enumerator(atPath: stateDir) else { return out }
        while let relative = enumerator.nextObject() as? String {
            let path = stateDir + "/" + relative
            let attributes = (try? FileManager.default.attributesOfItem(atPath: path)) ?? [:]
            let mode = (attributes[.posixPermissions] as? Int).map { String($0, radix: 8) } ?? "?"
            if attributes[.type] as? FileAttributeType == .typeDirectory {
                out[relative] = "dir \(mode)"
            } else {
                let data = FileManager.default.contents(atPath: path) ?? Data()
                out[relative] = "file \(mode) \(Hex.encode(SHA256.hash(data: data)))"
            }
        }
        return out
    }
}

/// Polls `condition` every 100 ms until it holds or `seconds` pass.
func eventually(_ seconds: Double = 60, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(100_000)
    }
    return condition()
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

@discardableResult
func runProcess(_ executable: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let stdoutData = out.fileHandleForReading.readDataToEndOfFile()
    let stderrData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (
        process.terminationStatus, String(decoding: stdoutData, as: UTF8.self),
        String(decoding: stderrData, as: UTF8.self)
    )
}

/// A minimal HTTP/1.1 client over a plain socket, so tests control every byte sent.
enum HTTP {
    struct Reply {
        let status: Int
        let headers: [(String, String)]
        let body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
    }

    static func request(
        _ host: String, _ port: Int, method: String, path: String, headers: [(String, String)] = [], body: [UInt8] = [],
        contentLength: Bool = true
    ) throws -> Reply {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if contentLength && (method == "PUT" || !body.isEmpty) { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        return try raw(host, port, Array(head.utf8) + body)
    }

    /// Sends `bytes` as they are and reads the reply until the server closes.
    static func raw(_ host: String, _ port: Int, _ bytes: [UInt8]) throws -> Reply {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket failed") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw HarnessError("connect to \(host):\(port) failed: errno \(errno)") }
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }  // the server may answer and close before reading everything
            sent += n
        }
        var response = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            response += buffer[0..<n]
            if response.count > 256 << 20 { throw HarnessError("reply too large") }
        }
        return try parse(response)
    }

    static func parse(_ response: [UInt8]) throws -> Reply {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = response.indices.first(where: { response[$0...].starts(with: separator) }) else {
            throw HarnessError("no complete HTTP reply (\(response.count) bytes)")
        }
        let head = String(decoding: response[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = head[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw HarnessError("bad status line \(head[0])")
        }
        var headers = [(String, String)]()
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append(
                (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        var body = Array(response[(end + 4)...])
        if let length = headers.first(where: { $0.0.lowercased() == "content-length" }).flatMap({ Int($0.1) }) {
            body = Array(body.prefix(length))
        } else if headers.contains(where: { $0.0.lowercased() == "transfer-encoding" && $0.1.contains("chunked") }) {
            body = dechunk(body)
        }
        return Reply(status: status, headers: headers, body: body)
    }

    static func dechunk(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        var index = 0
        while index < bytes.count {
            guard let lineEnd = bytes[index...].firstIndex(of: 13) else { break }
            let sizeText = String(decoding: bytes[index..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText, radix: 16), size > 0 else { break }
            let start = lineEnd + 2
            out += bytes[start..<min(start + size, bytes.count)]
            index = start + size + 2
        }
        return out
    }

    /// Signed upload headers for a version.
    static func signed(_ version: FileVersion) -> [(String, String)] {
        [
            ("DM-Signer", version.signer.base64), ("DM-Signature", Base64.encode(version.signature)),
            ("DM-Timestamp", String(version.timestamp)), ("DM-Valid-For", String(version.validFor)),
        ]
    }

    static func put(_ daemon: Daemon, _ version: FileVersion, _ content: [UInt8]) throws -> Reply {
        try request(
            daemon.address, daemon.port, method: "PUT", path: "/v1/files/" + version.name.value,
            headers: signed(version),
            body: content)
    }
}
