import DataMesherCore
import DataMesherStore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

extension PeerAddress {
    init?(_ address: SocketAddress) {
        guard let ip = address.ipAddress, let port = address.port, let port16 = UInt16(exactly: port) else {
            return nil
        }
        self.init(host: ip, port: port16)
    }
}

/// The members a node knew when it last ran: `<state_dir>/members`, one `host:port` a line.
enum KnownMembers {
    static let maxEntries = 256

    static func path(_ stateDir: String) -> String { stateDir + "/members" }

    static func read(stateDir: String) -> [PeerAddress] {
        guard let bytes = try? DiskIO.readFile(path(stateDir), limit: 64 * 1024) else { return [] }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").prefix(maxEntries)
            .compactMap { PeerAddress.parse(String($0)) }
    }

    static func write(_ addresses: [PeerAddress], stateDir: String) throws {
        let text = addresses.prefix(maxEntries).map { "\($0)\n" }.joined()
        try DiskIO.writeFileAtomically(path(stateDir), bytes: Array(text.utf8))
    }
}

/// A cluster address that could not be bound, in one line.
public struct ClusterBindError: Error, CustomStringConvertible {
    public let description: String

    static func reason(_ error: Error) -> String {
        if let io = error as? IOError {
            if io.errnoCode == EADDRINUSE { return "address already in use" }
            if io.errnoCode == EADDRNOTAVAIL { return "address not available on this machine" }
            if io.errnoCode == EACCES { return "permission denied" }
        }
        return "\(error)"
    }
}

struct TimeoutError: Error, CustomStringConvertible {
    var description: String { "timed out" }
}

/// Runs `body`, cancelling it after `seconds`.
func withTimeout<T: Sendable>(seconds: Int64, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            throw TimeoutError()
        }
        guard let result = try await group.next() else { throw TimeoutError() }
        group.cancelAll()
        return result
    }
}

/// A UDP socket's queue of datagrams to send, and the one task that writes them.
struct Outbox: Sendable {
    /// The address its socket is bound to.
    let address: String
    let isIPv6: Bool
    let queue: AsyncStream<AddressedEnvelope<ByteBuffer>>.Continuation
    let writer: Task<Void, Never>
}

/// A bound UDP socket, and what its sends that failed said.
struct DatagramSocket: Sendable {
    let channel: DatagramChannel
    let failures: SendFailures
}

/// A datagram the kernel refused to send, and why.
struct SendFailure: Sendable {
    let destination: SocketAddress
    let error: any Error
}

/// Sits on a UDP socket's pipeline and keeps the last send that failed: the async writer
/// does not hear of it, and SwiftNIO closes the socket on most such failures.
final class SendFailures: ChannelOutboundHandler, Sendable {
    typealias OutboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>
    let last = NIOLockedValueBox<SendFailure?>(nil)

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let destination = unwrapOutboundIn(data).remoteAddress
        let promise = promise ?? context.eventLoop.makePromise()
        promise.futureResult.whenFailure { [last] error in
            // The system call's error is what closes the socket. A ChannelError is a send that
            // SwiftNIO got over (no route to the host, too large) or one queued behind the
            // send that closed the socket.
            guard error is IOError else { return }
            last.withLockedValue { $0 = SendFailure(destination: destination, error: error) }
        }
        context.write(data, promise: promise)
    }
}

/// Real time in nanoseconds since the Unix epoch, for signatures and expiry.
public enum WallClock {
    @Sendable public static func now() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
    }

    /// The same clock as a `Date` (for certificates, whose library speaks `Date`).
    @Sendable public static func date() -> Date { Date(timeIntervalSince1970: Double(now()) / 1e9) }
}

/// Runs blocking disk work on a thread pool of its own instead of the cooperative pool. Its
/// threads mostly wait for the disk (fsync), not for a core, so there are more of them than
/// cores (NIO's shared pool has one per core): concurrent uploads and fetches then sync in
/// parallel, which the device answers about as fast as one.
public enum Blocking {
    static let threads = 8
    static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
        return pool
    }()

    public static func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(work)
    }
}

/// Lets through at most `perWindow` log lines of one kind in each window of `window` ns and
/// counts the rest, so a flood of bad input (refused uploads, junk connections) cannot flood
/// the log; the next line let through says how many were left out (`dm.suppressed`).
final class LogBudget: Sendable {
    let perWindow: Int
    let window: Int64
    private let state = NIOLockedValueBox((start: Int64(0), lines: 0, suppressed: 0))

    init(perWindow: Int = 20, window: Int64 = 10_000_000_000) {
        self.perWindow = perWindow
        self.window = window
    }

    /// Nil when this line is to be left out; otherwise the number of lines left out before it.
    func admit(now: Int64) -> Int? {
        state.withLockedValue { state in
            if state.lines == 0 || now.subtractingSaturated(state.start) >= window || now < state.start {
                state.start = now
                state.lines = 0
            }
            guard state.lines < perWindow else {
                state.suppressed += 1
                return nil
            }
            state.lines += 1
            defer { state.suppressed = 0 }
            return state.suppressed
        }
    }

    /// Whether this line is let through; if so, `metadata` gets the count of lines left out
    /// before it, when there were any.
    func admit(now: Int64, noting metadata: inout Logger.Metadata) -> Bool {
        guard let suppressed = admit(now: now) else { return false }
        if suppressed > 0 { metadata["dm.suppressed"] = "\(suppressed)" }
        return true
    }
}
