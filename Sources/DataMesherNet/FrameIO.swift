import DataMesherCore
import NIOCore

/// Reads exact byte counts from a TCP stream of `ByteBuffer`s, for SyncCodec frames and the
/// raw content after a fetch reply. Every read is bounded by the frame limit.
struct FrameReader {
    var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    var pending = ByteBuffer()

    init(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>) { iterator = inbound.makeAsyncIterator() }

    /// Makes sure at least `count` bytes are buffered; false at end of stream.
    mutating func fill(_ count: Int) async throws -> Bool {
        while pending.readableBytes < count {
            guard var chunk = try await iterator.next() else { return false }
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

    /// Hands the raw content that follows a fetch reply to `sink`, chunk by chunk.
    mutating func stream(_ length: UInt64, into sink: (ByteBuffer) async throws -> Void) async throws {
        var remaining = length
        while remaining > 0 {
            if pending.readableBytes == 0 {
                guard let chunk = try await iterator.next() else { throw WireError.truncated }
                pending = chunk
            }
            let take = Int(min(UInt64(pending.readableBytes), remaining))
            if let slice = pending.readSlice(length: take) { try await sink(slice) }
            remaining -= UInt64(take)
        }
    }
}
