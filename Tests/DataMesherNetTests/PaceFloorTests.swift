import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import DataMesherNet

/// `PaceFloor`: a cluster stream must move a minimum of bytes in every window, or it is closed.
/// Time is the embedded event loop's, moved by hand.
@Suite struct PaceFloorTests {
    static let window: TimeAmount = .seconds(30)

    /// A connected channel whose pipeline is `floor` alone.
    static func stream(_ floor: PaceFloor) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handlers: [floor])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    static func bytes(_ count: Int) -> ByteBuffer { ByteBuffer(repeating: 7, count: count) }

    @Test func aStreamThatKeepsThePaceStaysOpen() throws {
        let channel = try Self.stream(PaceFloor(pace: PaceWindow(window: Self.window, minimumBytes: 1000)))
        // Received and sent bytes count together; five windows in a row.
        for _ in 0..<5 {
            try channel.writeInbound(Self.bytes(600))
            try channel.writeOutbound(Self.bytes(400))
            channel.embeddedEventLoop.advanceTime(by: Self.window)
            #expect(channel.isActive)
        }
        _ = try channel.finish(acceptAlreadyClosed: false)
    }

    @Test func aStreamThatTricklesIsClosedAtTheEndOfTheWindow() throws {
        let channel = try Self.stream(PaceFloor(pace: PaceWindow(window: Self.window, minimumBytes: 1000)))
        for _ in 0..<3 {
            try channel.writeInbound(Self.bytes(333))
            channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        }
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(3))
        #expect(!channel.isActive)
    }

    @Test func bytesOfAnEarlierWindowDoNotCarryOver() throws {
        let channel = try Self.stream(PaceFloor(pace: PaceWindow(window: Self.window, minimumBytes: 1000)))
        try channel.writeOutbound(Self.bytes(1 << 20))
        channel.embeddedEventLoop.advanceTime(by: Self.window)
        #expect(channel.isActive)
        try channel.writeOutbound(Self.bytes(999))
        channel.embeddedEventLoop.advanceTime(by: Self.window)
        #expect(!channel.isActive)
    }

    @Test func aQuietStreamIsClosedAfterOneWindow() throws {
        let channel = try Self.stream(PaceFloor())
        channel.embeddedEventLoop.advanceTime(by: PaceWindow.defaultWindow - .seconds(1))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
    }

    /// Both kinds of cluster stream (accepted and dialed) are set up by `GuardedStream.wrap`,
    /// which puts a floor of the default pace in the pipeline.
    @Test func clusterStreamsHaveAFloor() throws {
        let channel = EmbeddedChannel()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        _ = try GuardedStream.wrap(
            channel, idle: IdleStateHandler(allTimeout: .seconds(60)), logger: Logger(label: "test"))
        let floor = try channel.pipeline.syncOperations.handler(type: PaceFloor.self)
        #expect(floor.pace.window == PaceWindow.defaultWindow)
        #expect(floor.pace.minimumBytes == PaceWindow.defaultMinimumBytes)
    }
}
