import DataMesherCore
import DataMesherHTTP
import DataMesherNet
import DataMesherStore
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

/// The node's own certificate end in `/v1/info` and `/metrics`, and the log lines before it.
@Suite struct CertificateExpiryTests {
    func node(dir: String, expiry: CertificateExpiry?) throws -> Replica {
        var config = NodeConfig()
        config.stateDir = dir
        config.files = [
            try FileName("dns/cnames"): [try SignerKey(base64: "azwT+VhTxA+BF73Hwq0uqdXHG8XvHU2BknoVXgmEjww=")],
            try FileName("config:app"): [try SignerKey(base64: "azwT+VhTxA+BF73Hwq0uqdXHG8XvHU2BknoVXgmEjww=")],
        ]
        let logger = Logger(label: "test")
        let store = try FileStore(stateDir: dir, policy: config.filePolicy, now: WallClock.now(), logger: logger)
        return Replica(
            config: config, store: store, nodeName: "t", nodeID: String(repeating: "0", count: 32),
            clusterAddresses: [],
            logger: logger, certificateExpiry: expiry)
    }

    @Test func infoAndMetricsShowTheCertificateEnd() async throws {
        let dir = NSTemporaryDirectory() + "dm-cert-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A whole second, so the RFC 3339 text is exact.
        let started = Date()
        let end = Date(timeIntervalSince1970: (started.timeIntervalSince1970 + 10 * 86400).rounded(.down))
        // What is left can only have shrunk by the time the test took to get there (a loaded
        // machine may take minutes), and a second for the rounding.
        @Sendable func leftSinceStart() -> Double { 10 * 86400 - Date().timeIntervalSince(started) - 2 }
        let node = try node(dir: dir, expiry: CertificateExpiry(notValidAfter: end))
        let app = Application(router: API(node: node).router())
        try await app.test(.router) { client in
            try await client.execute(uri: "/v1/info", method: .get) { response in
                let info = try JSONDecoder().decode(InfoJSON.self, from: Data(buffer: response.body))
                let parsed = ISO8601DateFormatter().date(from: info.certificate_expires_at ?? "")
                #expect(parsed == end, "\(info.certificate_expires_at ?? "nil")")
                #expect(info.certificate_expires_at?.hasSuffix("Z") == true)
                let left = info.certificate_expires_in_seconds ?? 0
                #expect(left <= 10 * 86400 && Double(left) >= leftSinceStart(), "\(left)")
                #expect(info.files_configured == ["config:app", "dns/cnames"])
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                let line = text.split(separator: "\n").first { $0.hasPrefix("dm_certificate_expiry_seconds ") }
                let value = line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? -1
                #expect(value <= 10 * 86400 && value >= leftSinceStart(), "\(line ?? "no line")")
            }
        }
    }

    @Test func aNodeWithoutCertificateHasNoExpiry() async throws {
        let dir = NSTemporaryDirectory() + "dm-cert-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let node = try node(dir: dir, expiry: nil)
        let app = Application(router: API(node: node).router())
        try await app.test(.router) { client in
            try await client.execute(uri: "/v1/info", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(!text.contains("certificate_expires"), "\(text)")
                let info = try JSONDecoder().decode(InfoJSON.self, from: Data(buffer: response.body))
                #expect(info.files_configured == ["config:app", "dns/cnames"])
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(!String(buffer: response.body).contains("dm_certificate_expiry_seconds"))
            }
        }
    }

    @Test func logLinesStartFourteenDaysBefore() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let at = { (days: Double) in CertificateExpiry(notValidAfter: now.addingTimeInterval(days * 86400)) }
        #expect(at(15).logLine(now: now) == nil)
        #expect(at(14.01).logLine(now: now) == nil)
        let soon = at(13.5).logLine(now: now)
        #expect(soon?.level == .warning)
        #expect(soon?.message.contains("expires at 2027-01-") == true, "\(soon?.message ?? "nil")")
        #expect(soon?.message.contains("13.5 days") == true, "\(soon?.message ?? "nil")")
        let gone = at(-1).logLine(now: now)
        #expect(gone?.level == .error)
        #expect(gone?.message.contains("expired at") == true)
    }

    /// The service logs at start and again after each interval while a line is due, and stops
    /// when its wait ends it. The waits are the test's own (no timers: under a loaded machine a
    /// timer-driven loop may not get a turn for many seconds).
    @Test func theServiceRepeatsTheWarning() async throws {
        let lines = Lines()
        var logger = Logger(label: "cert") { _ in CollectingHandler(lines: lines) }
        logger.logLevel = .debug
        let waits = Lines()
        /// Lets the service wait twice, then stops it (as a cancellation would).
        let wait: @Sendable (Duration) async throws -> Void = { interval in
            waits.append("\(interval)")
            if waits.count > 2 { throw CancellationError() }
        }
        let expiry = CertificateExpiry(notValidAfter: Date().addingTimeInterval(3 * 86400))
        try await CertificateExpiryWarningService(
            expiry: expiry, logger: logger, interval: .seconds(86400), wait: wait
        ).run()
        let seen = lines.all
        #expect(seen.count == 3, "\(seen)")
        #expect(waits.all == Array(repeating: "\(Duration.seconds(86400))", count: 3))
        #expect(
            seen.allSatisfy { $0.hasPrefix("warning ") && $0.contains("this node's certificate expires at") }, "\(seen)"
        )
        // Far from the end: nothing at all.
        let quiet = Lines()
        let quietWaits = Lines()
        try await CertificateExpiryWarningService(
            expiry: CertificateExpiry(notValidAfter: Date().addingTimeInterval(90 * 86400)),
            logger: Logger(label: "cert") { _ in CollectingHandler(lines: quiet) },
            wait: { _ in
                quietWaits.append("waited")
                if quietWaits.count > 2 { throw CancellationError() }
            }
        ).run()
        #expect(quiet.all.isEmpty && quietWaits.count == 3)
        // Ending before the next interval: the service wakes a second after the end to say so.
        let ending = Lines()
        let endingWaits = Lines()
        let ends = Date().addingTimeInterval(120)
        nonisolated(unsafe) var clockNow = Date()
        try await CertificateExpiryWarningService(
            expiry: CertificateExpiry(notValidAfter: ends),
            logger: Logger(label: "cert") { _ in CollectingHandler(lines: ending) }, interval: .seconds(86400),
            clock: { clockNow },
            wait: { wait in
                endingWaits.append("\(wait)")
                clockNow = clockNow.addingTimeInterval(Double(wait.components.seconds))
                if endingWaits.count > 1 { throw CancellationError() }
            }
        ).run()
        #expect(
            endingWaits.all.first == "\(Duration.seconds(121))" || endingWaits.all.first == "\(Duration.seconds(120))")
        #expect(ending.all.count == 2 && ending.all.last?.hasPrefix("error ") == true, "\(ending.all)")
        // The real wait ends at once when the task is cancelled.
        let sleeper = Task { try await CertificateExpiryWarningService.steppedSleep(.seconds(86400)) }
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
    }
}

final class Lines: @unchecked Sendable {  // every access holds `lock`
    private let lock = NSLock()
    private var items: [String] = []

    func append(_ line: String) { lock.withLock { items.append(line) } }
    var count: Int { lock.withLock { items.count } }
    var all: [String] { lock.withLock { items } }
}

struct CollectingHandler: LogHandler {
    let lines: Lines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(
        level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
        function: String, line: UInt
    ) {
        lines.append("\(level) \(message)")
    }
}
