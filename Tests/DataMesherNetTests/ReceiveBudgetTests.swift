import DataMesherCore
import NIOCore
import NIOEmbedded
import Testing

@testable import DataMesherNet

/// `ReceiveBudget`: what the cluster streams may hold at once of records and frames that have
/// not arrived whole. Streams are driven by hand (`makeTestingStream`), without sockets.
@Suite struct ReceiveBudgetTests {
    /// A record's length prefix as it goes on the wire (u32, big-endian).
    static func prefix(_ length: Int) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(length))
        return buffer
    }

    /// Waits (at most 5 s) until `budget` holds `bytes`.
    static func waitUntil(_ budget: ReceiveBudget, holds bytes: Int) async throws {
        for _ in 0..<500 where budget.inUse != bytes { try await Task.sleep(for: .milliseconds(10)) }
        #expect(budget.inUse == bytes)
    }

    @Test func smallRecordsAndFramesTakeNoShare() {
        let budget = ReceiveBudget(total: 0)
        #expect(budget.take(ReceiveBudget.unbudgeted) == 0)
        #expect(budget.take(ReceiveBudget.unbudgeted + 1) == nil)
        #expect(budget.inUse == 0)
    }

    @Test func aRecordHeldBackByItsSenderLeavesNoRoomForAnotherUntilItArrives() async throws {
        let length = 1 << 20
        let budget = ReceiveBudget(total: length + length / 2)
        let (first, firstInput) = NIOAsyncChannelInboundStream<ByteBuffer>.makeTestingStream()
        let (second, secondInput) = NIOAsyncChannelInboundStream<ByteBuffer>.makeTestingStream()

        // The first sender announces a 1 MiB record and sends all but its last byte.
        firstInput.yield(Self.prefix(length))
        firstInput.yield(ByteBuffer(repeating: 7, count: length - 1))
        let reading = Task {
            var source = ChunkSource(first, metrics: nil, budget: budget)
            return try await source.readRecord()?.record.count
        }
        try await Self.waitUntil(budget, holds: 4 + length)

        // A second stream's record of the same size finds no room and is refused at once.
        secondInput.yield(Self.prefix(length))
        var other = ChunkSource(second, metrics: nil, budget: budget)
        await #expect(throws: ReceiveBudgetSpent.self) { _ = try await other.readRecord() }

        // The last byte arrives: the record is handed on and its share given back.
        firstInput.yield(ByteBuffer(bytes: [7]))
        #expect(try await reading.value == length)
        #expect(budget.inUse == 0)
        firstInput.finish()
        secondInput.finish()
    }

    @Test func aStreamThatEndsInsideARecordGivesItsShareBack() async throws {
        let budget = ReceiveBudget(total: 4 << 20)
        let (stream, input) = NIOAsyncChannelInboundStream<ByteBuffer>.makeTestingStream()
        input.yield(Self.prefix(1 << 20))
        input.yield(ByteBuffer(repeating: 1, count: 1000))
        let reading = Task {
            var source = ChunkSource(stream, metrics: nil, budget: budget)
            _ = try await source.readRecord()
        }
        try await Self.waitUntil(budget, holds: 4 + (1 << 20))
        input.finish()
        await #expect(throws: WireError.truncated) { try await reading.value }
        #expect(budget.inUse == 0)
    }

    /// A frame's length is budgeted too: small records (which take no share) could otherwise
    /// build one frame of up to 16 MiB in memory.
    @Test func aLargeFrameNeedsAShareWhateverItsRecords() async throws {
        let budget = ReceiveBudget(total: 1 << 20)
        let (stream, input) = NIOAsyncChannelInboundStream<ByteBuffer>.makeTestingStream()
        var header = ByteBuffer()
        header.writeInteger(UInt8(1))  // hello
        header.writeInteger(UInt32(2 << 20))
        input.yield(header)
        var reader = FrameReader(ChunkSource(stream, metrics: nil, budget: budget))
        await #expect(throws: ReceiveBudgetSpent.self) { _ = try await reader.frame() }
        #expect(budget.inUse == 0)
        input.finish()
    }

    /// An accepted stream's pipeline starts with an `IdleStateHandler` and `CloseWhenIdle`: the
    /// handler's event closes the channel; other events pass on.
    @Test func anIdleStreamIsClosed() throws {
        let channel = EmbeddedChannel(handlers: [CloseWhenIdle()])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(channel.isActive)
        channel.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.all)
        #expect(!channel.isActive)
    }
}
