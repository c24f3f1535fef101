import DataMesherCore
import NIOConcurrencyHelpers
import NIOCore

/// The bytes of a TCP stream after its preamble: as they come, or opened record by record when
/// the stream is sealed (`StreamCipher`).
struct ChunkSource {
    var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    /// Received and not yet handed on (plain) or not yet opened (sealed).
    var raw = ByteBuffer()
    var cipher: StreamCipher?
    let metrics: NodeMetrics?

    init(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>, metrics: NodeMetrics?) {
        iterator = inbound.makeAsyncIterator()
        self.metrics = metrics
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
