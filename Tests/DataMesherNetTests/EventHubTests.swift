import DataMesherCore
import Testing

@testable import DataMesherNet

/// `EventHub`: the `/v1/events` subscribers and what each may hold.
@Suite struct EventHubTests {
    static func event(_ number: Int) -> NodeEvent {
        NodeEvent(kind: .refused, time: Int64(number), reason: "event \(number)")
    }

    @Test func subscribersAreCappedAndASlotIsFreedWhenOneGoesAway() async throws {
        let hub = EventHub()
        var streams: [AsyncStream<NodeEvent>] = []
        for index in 0..<EventHub.maxSubscribers {
            streams.append(try #require(hub.subscribe(source: "198.51.100.\(index)")))
        }
        #expect(hub.subscribe(source: "203.0.113.1") == nil)
        // One subscriber leaves (its HTTP response ends, and with it the stream's iteration).
        let leaving = streams.removeLast()
        let reader = Task { for await _ in leaving {} }
        reader.cancel()
        await reader.value
        var again: AsyncStream<NodeEvent>?
        for _ in 0..<500 where again == nil {
            again = hub.subscribe(source: "203.0.113.1")
            if again == nil { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(again != nil)
    }

    @Test func oneSourceTakesAtMostItsShareOfTheSubscriptions() throws {
        let hub = EventHub()
        var streams: [AsyncStream<NodeEvent>] = []
        for _ in 0..<EventHub.maxSubscribersPerSource {
            streams.append(try #require(hub.subscribe(source: "192.0.2.1")))
        }
        #expect(hub.subscribe(source: "192.0.2.1") == nil)
        streams.append(try #require(hub.subscribe(source: "192.0.2.2")))
    }

    @Test func aSubscriberThatDoesNotReadKeepsOnlyTheNewestOfItsBacklog() async throws {
        let hub = EventHub()
        let stream = try #require(hub.subscribe())
        let published = EventHub.backlog * 3
        for number in 0..<published { hub.publish(Self.event(number)) }
        var received: [Int64] = []
        for await event in stream {
            received.append(event.time)
            if received.count == EventHub.backlog { break }
        }
        #expect(received.first == Int64(published - EventHub.backlog))
        #expect(received.last == Int64(published - 1))
    }
}
