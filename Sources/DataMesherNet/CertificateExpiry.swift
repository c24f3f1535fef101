import DataMesherCore
import Foundation
import Logging
import ServiceLifecycle

/// When this node's own certificate (`cluster.encryption.identity_cert`) stops being valid, for
/// `/v1/info`, `/metrics`, the status page and the warning in the log.
public struct CertificateExpiry: Sendable, Equatable {
    public let notValidAfter: Date

    public init(notValidAfter: Date) { self.notValidAfter = notValidAfter }

    /// Whole seconds from `now` to the end of validity; negative once it has expired.
    public func secondsLeft(now: Date) -> Int64 {
        let seconds = notValidAfter.timeIntervalSince(now).rounded(.down)
        guard seconds.isFinite else { return seconds < 0 ? Int64.min : Int64.max }
        return Int64(max(Double(Int64.min), min(Double(Int64.max), seconds)))
    }

    /// RFC 3339 in UTC, e.g. 2026-02-26T12:00:00Z.
    public var rfc3339: String {
        // Whole seconds since 1970, rounded down and kept within Int64 as `secondsLeft` does.
        RFC3339.utc(seconds: secondsLeft(now: Date(timeIntervalSince1970: 0)))
    }

    /// How long before the end of validity the log starts warning (once a day).
    public static let warnBefore: TimeInterval = 14 * 24 * 3600

    /// The line to log at `now`, if one is due: a warning within 14 days of the end, an error
    /// once it has passed; nil before that.
    public func logLine(now: Date) -> (level: Logger.Level, message: String)? {
        let left = secondsLeft(now: now)
        if left <= 0 {
            return (
                .error,
                "this node's certificate expired at \(rfc3339); its peers refuse its streams until it is renewed"
            )
        }
        guard Double(left) <= Self.warnBefore else { return nil }
        let days = Double(left) / 86400
        return (
            .warning,
            "this node's certificate expires at \(rfc3339) (in \(String(format: "%.1f", days)) days); renew it (docs/DEPLOY.md)"
        )
    }
}

/// Logs `CertificateExpiry.logLine` at start and then once a day while one is due, and at the
/// moment the certificate ends (peers refuse the node from then on; its own log would otherwise
/// show only handshakes ending, for up to a day).
public struct CertificateExpiryWarningService: Service {
    let expiry: CertificateExpiry
    let logger: Logger
    let interval: Duration
    let clock: @Sendable () -> Date
    /// Waits one interval; throws to stop the service (tests pass one that counts).
    let wait: @Sendable (Duration) async throws -> Void

    public init(
        expiry: CertificateExpiry, logger: Logger, interval: Duration = .seconds(86400),
        clock: @escaping @Sendable () -> Date = WallClock.date,
        wait: @escaping @Sendable (Duration) async throws -> Void = CertificateExpiryWarningService.steppedSleep
    ) {
        self.expiry = expiry
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self.wait = wait
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let now = clock()
            if let line = expiry.logLine(now: now) {
                logger.log(level: line.level, "\(line.message)")
            }
            do { try await wait(Self.nextWait(left: expiry.secondsLeft(now: now), interval: interval)) } catch {
                return
            }
        }
    }

    /// One interval, or until a second after the end of validity when that comes sooner.
    static func nextWait(left: Int64, interval: Duration) -> Duration {
        guard left >= 0, left < Int64.max, Duration.seconds(left + 1) < interval else { return interval }
        return .seconds(left + 1)
    }

    /// Sleeps `interval` in steps of at most a second, so a graceful shutdown (SIGTERM) or a
    /// cancellation ends it within one step (ending early, without an error, on shutdown).
    @Sendable public static func steppedSleep(_ interval: Duration) async throws {
        var slept = Duration.zero
        while slept < interval && !Task.isShuttingDownGracefully {
            let step = min(interval - slept, .seconds(1))
            try await Task.sleep(for: step)
            slept += step
        }
    }
}
