import DataMesherCore
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The bytes that all of a node's cluster streams may hold at once for sealed records and sync
/// frames of more than `unbudgeted` bytes that have not arrived whole. A record is opened, and a
/// frame decoded, only once all of it is in memory, and a sender may withhold the last bytes: with
/// a share of its own per stream, 256 streams could hold 16 MiB each (4 GiB). A stream that finds
/// the budget spent is closed; its sender may try again later.
final class ReceiveBudget: Sendable {
    /// Records and frames up to this size take no share: a content record (64 KiB and its
    /// prefix and tag) passes free, and 256 streams hold at most 32 MiB of such.
    static let unbudgeted = PartialContent.chunkSize + 64
    /// Room for a record and a frame of the largest sizes at once (32 MiB): a stream holds one
    /// of them at a time, so two of the largest can arrive together.
    static let defaultTotal = 4 + StreamCipher.maxRecord + SyncCodec.maxFrame

    let total: Int
    private let used = NIOLockedValueBox(0)

    init(total: Int = ReceiveBudget.defaultTotal) { self.total = total }

    /// The bytes to hold for something of `length` bytes: 0 when it is small, else `length`, if
    /// that much is left; nil when it is not.
    func take(_ length: Int) -> Int? {
        guard length > Self.unbudgeted else { return 0 }
        return used.withLockedValue { used in
            guard length <= total - used else { return nil }
            used += length
            return length
        }
    }

    func give(_ share: Int) {
        guard share > 0 else { return }
        used.withLockedValue { $0 -= share }
    }

    var inUse: Int { used.withLockedValue { $0 } }
}

/// A stream needed a share of the `ReceiveBudget` that was not left.
struct ReceiveBudgetSpent: Error, CustomStringConvertible {
    let length: Int
    var description: String {
        "the receive budget of all cluster streams is spent: no room for \(length) more bytes now"
    }
}

/// The bytes of a TCP stream after its preamble: as they come, or opened record by record when
/// the stream is sealed (`StreamCipher`).
struct ChunkSource {
    var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    /// Received and not yet handed on (plain) or not yet opened (sealed).
    var raw = ByteBuffer()
    var cipher: StreamCipher?
    let metrics: NodeMetrics?
    let budget: ReceiveBudget

    init(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>, metrics: NodeMetrics?, budget: ReceiveBudget) {
        iterator = inbound.makeAsyncIterator()
        self.metrics = metrics
        self.budget = budget
    }

    /// A share of the budget for something of `length` bytes (`give` it back once it is handed
    /// on); throws when none is left.
    func reserve(_ length: Int) throws -> Int {
        guard let share = budget.take(length) else {
            metrics?.refusedStream("receive_budget")
            throw ReceiveBudgetSpent(length: length)
        }
        return share
    }

    mutating func nextChunk() async throws -> ByteBuffer? {
        let chunk = try await iterator.next()
        if let chunk { metrics?.tcpBytes(in: chunk.readableBytes) }
        return chunk
    }

    mutating func fillRaw(_ count: Int) async throws -> Bool {
        while raw.readableBytes < count {
            guard var chunk = try await nextChunk() else { return false }
            raw.writeBuffer(&chunk)
        }
        return true
    }

    /// Exactly `count` bytes as they arrived (the preamble).
    mutating func readRaw(_ count: Int) async throws -> [UInt8] {
        guard try await fillRaw(count) else { throw WireError.truncated }
        return raw.readBytes(length: count) ?? []
    }

    /// The next sealed record's length prefix and body, refused when longer than `limit`; nil at
    /// a clean end of stream.
    mutating func readRecord(limit: Int = StreamCipher.maxRecord) async throws -> (prefix: [UInt8], record: [UInt8])? {
        guard try await fillRaw(4) else {
            if raw.readableBytes == 0 { return nil }
            throw WireError.truncated
        }
        let prefix = raw.getBytes(at: raw.readerIndex, length: 4) ?? []
        let length = try StreamCipher.recordLength(prefix, limit: limit)
        let share = try reserve(4 + length)
        defer { budget.give(share) }
        guard try await fillRaw(4 + length) else { throw WireError.truncated }
        raw.moveReaderIndex(forwardBy: 4)
        return (prefix, raw.readBytes(length: length) ?? [])
    }

    /// The next plain chunk; nil at a clean end of stream.
    mutating func next() async throws -> ByteBuffer? {
        guard var cipher else {
            if raw.readableBytes > 0 {
                defer { raw = ByteBuffer() }
                return raw
            }
            return try await nextChunk()
        }
        guard let (prefix, record) = try await readRecord() else { return nil }
        let plain = try cipher.open(prefix: prefix, record: record)
        self.cipher = cipher
        return ByteBuffer(bytes: plain)
    }
}

/// Reads exact byte counts from a TCP stream, for SyncCodec frames and the raw content after a
/// fetch reply. Every read is bounded by the frame limit.
struct FrameReader {
    var source: ChunkSource
    var pending = ByteBuffer()

    init(_ source: ChunkSource, pending: ByteBuffer = ByteBuffer()) {
        self.source = source
        self.pending = pending
    }

    /// Makes sure at least `count` bytes are buffered; false at end of stream.
    mutating func fill(_ count: Int) async throws -> Bool {
        while pending.readableBytes < count {
            guard var chunk = try await source.next() else { return false }
            pending.writeBuffer(&chunk)
        }
        return true
    }

    mutating func read(_ count: Int) async throws -> [UInt8] {
        guard try await fill(count) else { throw WireError.truncated }
        return pending.readBytes(length: count) ?? []
    }

    /// The next frame, or nil when the peer closed the stream cleanly before one began.
    mutating func frame() async throws -> SyncMessage? {
        guard try await fill(SyncCodec.headerLength) else {
            if pending.readableBytes == 0 { return nil }
            throw WireError.truncated
        }
        let (type, length) = try SyncCodec.header(pending.readBytes(length: SyncCodec.headerLength) ?? [])
        let share = try source.reserve(length)
        defer { source.budget.give(share) }
        return try SyncCodec.decode(type: type, payload: try await read(length))
    }

    /// A length-prefixed blob (u32 length) of at most `limit` bytes.
    mutating func blob(limit: Int) async throws -> [UInt8] {
        let prefix = try await read(4)
        let length = prefix.reduce(0) { $0 << 8 | Int($1) }
        guard length <= limit else { throw WireError.tooLong(field: "handshake", length: length, limit: limit) }
        return try await read(length)
    }

    /// Hands the raw content that follows a fetch reply to `sink`, chunk by chunk.
    mutating func stream(_ length: UInt64, into sink: (ByteBuffer) async throws -> Void) async throws {
        var remaining = length
        while remaining > 0 {
            if pending.readableBytes == 0 {
                guard let chunk = try await source.next() else { throw WireError.truncated }
                pending = chunk
            }
            let take = Int(min(UInt64(pending.readableBytes), remaining))
            if let slice = pending.readSlice(length: take) { try await sink(slice) }
            remaining -= UInt64(take)
        }
    }
}

/// Writes to a TCP stream, sealing each write as one record when the stream is encrypted.
final class StreamWriter: Sendable {
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    let cipher: NIOLockedValueBox<StreamCipher?>
    let metrics: NodeMetrics?

    init(_ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, cipher: StreamCipher?, metrics: NodeMetrics?) {
        self.outbound = outbound
        self.cipher = NIOLockedValueBox(cipher)
        self.metrics = metrics
    }

    func write(_ bytes: [UInt8]) async throws { try await write(ByteBuffer(bytes: bytes)) }

    /// Sealed, the buffer's bytes are encrypted from where they are into one buffer holding the
    /// whole record (no intermediate arrays: a transfer's content goes through here).
    func write(_ buffer: ByteBuffer) async throws {
        let sealed: ByteBuffer? = cipher.withLockedValue { cipher in
            guard cipher != nil else { return nil }
            var record = ByteBuffer()
            record.reserveCapacity(buffer.readableBytes + 4 + Seal.tagLength)
            buffer.withUnsafeReadableBytes { plain in
                cipher?.seal(plain) { prefix, ciphertext, tag in
                    record.writeBytes(prefix)
                    record.writeBytes(ciphertext)
                    record.writeBytes(tag)
                }
            }
            return record
        }
        let out = sealed ?? buffer
        metrics?.tcpBytes(out: out.readableBytes)
        try await outbound.write(out)
    }

    func send(_ message: SyncMessage) async throws { try await write(SyncCodec.encode(message)) }
}

/// The pipeline every cluster stream gets (both ends): closed once `idle` reports a timeout, or
/// when it falls below the `PaceFloor`.
enum GuardedStream {
    /// Adds `idle`, `CloseWhenIdle` and a `PaceFloor` to `channel` and wraps it (on the channel's
    /// event loop, as a bootstrap's initializer runs).
    static func wrap(
        _ channel: any Channel, idle: IdleStateHandler, logger: Logger
    ) throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        try channel.pipeline.syncOperations.addHandlers(idle, CloseWhenIdle(), PaceFloor(logger: logger))
        return try NIOAsyncChannel(wrappingChannelSynchronously: channel)
    }
}

/// Closes the channel when an `IdleStateHandler` before it reports a timeout.
final class CloseWhenIdle: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

/// The pace a connection must keep while it is being watched: at least `minimumBytes` in every
/// window of `window`, windows counted from `start`. Cluster streams (`PaceFloor`) and HTTP
/// upload bodies (`ReadTimeoutHandler`) keep the same one. Used on its channel's event loop only.
public final class PaceWindow {
    public static let defaultWindow: TimeAmount = .seconds(30)
    /// 256 KiB in 30 s: about 8.7 KB/s, 70 kbit/s. A connection that has less to move is done
    /// well within one window.
    public static let defaultMinimumBytes = 256 << 10

    public let window: TimeAmount
    public let minimumBytes: Int
    /// Bytes counted in the current window.
    public private(set) var counted = 0
    private var check: Scheduled<Void>?

    public init(window: TimeAmount = PaceWindow.defaultWindow, minimumBytes: Int = PaceWindow.defaultMinimumBytes) {
        self.window = window
        self.minimumBytes = minimumBytes
    }

    /// Started and not stopped since (also once `tooSlow` has run).
    public var isRunning: Bool { check != nil }

    public func count(_ bytes: Int) { counted &+= bytes }

    /// Counts from zero in a new window; at the end of the first window with fewer than
    /// `minimumBytes` (and the channel still active), `tooSlow` runs and the windows end.
    public func start(_ context: ChannelHandlerContext, tooSlow: @escaping () -> Void) {
        stop()
        scheduleCheck(context, tooSlow)
    }

    public func stop() {
        check?.cancel()
        check = nil
        counted = 0
    }

    private func scheduleCheck(_ context: ChannelHandlerContext, _ tooSlow: @escaping () -> Void) {
        check = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: window) {
            guard context.channel.isActive else { return }
            guard self.counted >= self.minimumBytes else { return tooSlow() }
            self.counted = 0
            self.scheduleCheck(context, tooSlow)
        }
    }
}

/// Closes a cluster stream that moves fewer than the pace's minimum (received and sent together)
/// in a window, windows counted from when it became active. The idle timeouts catch a peer that
/// goes quiet; this catches one that trickles bytes (or takes them) just fast enough to pass
/// them, which could otherwise hold a fetch, a stream slot or a big version's one upload for as
/// long as it liked. With it, streams need no fixed total deadline, so a big version crosses a
/// slow link however long its transfer takes at more than the floor (about 70 kbit/s).
final class PaceFloor: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let pace: PaceWindow
    let logger: Logger?

    init(pace: PaceWindow = PaceWindow(), logger: Logger? = nil) {
        self.pace = pace
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) { pace.stop() }

    func channelActive(context: ChannelHandlerContext) {
        if !pace.isRunning { start(context) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        pace.count(unwrapInboundIn(data).readableBytes)
        context.fireChannelRead(data)
    }

    /// Counted when handed to the channel: a stream's writer waits while the channel is not
    /// writable, so writes go on only as fast as the peer takes the bytes.
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        pace.count(unwrapOutboundIn(data).readableBytes)
        context.write(data, promise: promise)
    }

    private func start(_ context: ChannelHandlerContext) {
        pace.start(context) {
            self.noteClosing(context)
            context.close(promise: nil)
        }
    }

    /// The lines that closed streams write, for all streams of the process: strangers can open
    /// many and trickle on each.
    static let logBudget = LogBudget()

    /// A stream that moved nothing went idle (news only when debugging, as the idle timeouts'
    /// closes are); one that trickled is worth a line.
    private func noteClosing(_ context: ChannelHandlerContext) {
        guard let logger else { return }
        let moved = pace.counted
        var metadata: Logger.Metadata = [
            "dm.peer": "\(context.channel.remoteAddress.flatMap(PeerAddress.init).map { "\($0)" } ?? "unknown")"
        ]
        let message: Logger.Message =
            "closed a cluster stream that moved \(moved) bytes in \(pace.window.nanoseconds / 1_000_000_000) s (at least \(pace.minimumBytes) must move)"
        guard moved > 0 else { return logger.debug(message, metadata: metadata) }
        guard Self.logBudget.admit(now: WallClock.now(), noting: &metadata) else { return }
        logger.info(message, metadata: metadata)
    }
}
