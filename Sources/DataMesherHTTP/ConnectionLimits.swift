import DataMesherNet
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTPTypes

/// The `[http]` limits that keep strangers from exhausting the API (issue 14.1): a header
/// timeout, the keep-alive idle timeout (Hummingbird's own), and a cap on open connections per
/// source address.
public struct HTTPLimits: Sendable {
    public var headerTimeout: TimeAmount
    public var idleTimeout: TimeAmount
    public var maxConnectionsPerSource: Int

    public init(headerTimeout: TimeAmount, idleTimeout: TimeAmount, maxConnectionsPerSource: Int) {
        self.headerTimeout = headerTimeout
        self.idleTimeout = idleTimeout
        self.maxConnectionsPerSource = maxConnectionsPerSource
    }

    /// The Hummingbird HTTP/1 server with these limits; `counter` is shared by every listener of
    /// one node so that the cap holds across its addresses.
    public func server(counter: SourceConnectionCounter) -> HTTPServerBuilder {
        let headerTimeout = self.headerTimeout
        let bodyTimeout = self.idleTimeout
        return .http1(
            configuration: .init(
                additionalChannelHandlers: [
                    SourceLimitHandler(counter: counter),
                    ReadTimeoutHandler(headerTimeout: headerTimeout, bodyTimeout: bodyTimeout),
                ],
                idleTimeout: idleTimeout))
    }
}

/// Open connections per source address and in total, shared by the listeners of one node.
public final class SourceConnectionCounter: Sendable {
    let open: StreamCounter
    let logger: Logger
    let refusedTotal = NIOLockedValueBox<UInt64>(0)

    /// `limit` connections from one source, `total` from all of them (`DescriptorBudget`).
    public init(limit: Int, total: Int = .max, logger: Logger) {
        open = StreamCounter(total: total, perSource: limit)
        self.logger = logger
    }

    /// Counts a new connection from `source`; false (and not counted) when the source, or the
    /// node, is at its cap.
    func admit(_ source: String) -> Bool {
        guard let full = open.enter(source) else { return true }
        let refusal =
            full == .source
            ? "source at max_connections_per_source (\(open.perSource))"
            : "\(open.total) connections open, the node's cap"
        let total = refusedTotal.withLockedValue { total -> UInt64 in
            total += 1
            return total
        }
        // One line for the first refusal and then every 1000th, so a flood does not flood the log.
        if total % 1000 == 1 {
            logger.warning(
                "refused HTTP connection: \(refusal)",
                metadata: ["dm.peer": "\(source)", "dm.refused_total": "\(total)"])
        }
        return false
    }

    func release(_ source: String) { open.leave(source) }

    /// Connections closed at once because their source or the node was at its cap, since start.
    public var refused: UInt64 { refusedTotal.withLockedValue { $0 } }

    /// Open connections from `source` now.
    public func count(_ source: String) -> Int { open.count(source) }
}

/// Closes a connection at once when its source address, or the node, is at its cap.
final class SourceLimitHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    let counter: SourceConnectionCounter
    var source: String?
    var refused = false

    init(counter: SourceConnectionCounter) { self.counter = counter }

    func handlerAdded(context: ChannelHandlerContext) {
        let address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        if counter.admit(address) {
            source = address
        } else {
            refused = true
            // The pipeline is set up before the channel is registered; closing it then may not
            // reach the socket, so a refused connection is closed once it is active.
            if context.channel.isActive { context.close(promise: nil) }
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        if refused {
            context.close(promise: nil)
            return
        }
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if let source { counter.release(source) }
        source = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // A refused connection is closing; nothing it sent reaches the routes.
        if refused { return }
        context.fireChannelRead(data)
    }
}

/// Closes a connection that stalls while the server waits on it: no complete first request
/// head `headerTimeout` after it was accepted (silent or slow clients), no body bytes for
/// `bodyTimeout` while a request's body is being received, or a body that falls below the
/// cluster streams' pace (`PaceWindow`: 256 KiB in 30 s, windows counted from the request's
/// head). An upload holds one of the `max_concurrent_uploads` slots until its body is in (its
/// signature can only be checked then), so without the last two a client sending nothing, or a
/// byte now and then, could hold every slot for as long as it liked. Between requests on a
/// kept-alive connection Hummingbird's idle timeout applies.
final class ReadTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    let headerTimeout: TimeAmount
    let bodyTimeout: TimeAmount
    let bodyPace = PaceWindow()
    var timer: Scheduled<Void>?

    init(headerTimeout: TimeAmount, bodyTimeout: TimeAmount) {
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) { arm(context, headerTimeout) }

    func handlerRemoved(context: ChannelHandlerContext) { disarm() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            arm(context, bodyTimeout)
            // The first window starts with the head of a request that has a body (an upload takes
            // its slot then); one without watches nothing.
            if Self.hasBody(request) { watchPace(context) }
        case .body(let bytes):
            arm(context, bodyTimeout)
            if !bodyPace.isRunning { watchPace(context) }
            bodyPace.count(bytes.readableBytes)
        case .end: disarm()
        }
        context.fireChannelRead(data)
    }

    func arm(_ context: ChannelHandlerContext, _ timeout: TimeAmount) {
        timer?.cancel()
        let channel = context.channel
        timer = context.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
    }

    /// Whether a body follows the head: a `Content-Length` above 0, or a `Transfer-Encoding`.
    static func hasBody(_ request: HTTPRequest) -> Bool {
        if request.headerFields[.transferEncoding] != nil { return true }
        return request.headerFields[.contentLength].map { $0 != "0" } ?? false
    }

    func watchPace(_ context: ChannelHandlerContext) {
        bodyPace.start(context) { context.close(promise: nil) }
    }

    func disarm() {
        timer?.cancel()
        timer = nil
        bodyPace.stop()
    }
}
