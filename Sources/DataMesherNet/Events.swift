import DataMesherCore
import Foundation
import NIOConcurrencyHelpers

/// One thing that happened on this node, as `GET /v1/events` sends it (docs/PROTOCOL.md, "Events").
public struct NodeEvent: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable {
        case accepted, deleted, expired, refused
        case diskFull = "disk_full"
        case memberJoined = "member_joined"
        case memberLeft = "member_left"
        case memberFailed = "member_failed"
    }

    public var kind: Kind
    /// When it happened on this node, ns since the Unix epoch.
    public var time: Int64
    public var name: String?
    /// The version's signed timestamp (ns).
    public var timestamp: Int64?
    /// "local": through this node's API; "peer": from the cluster.
    public var origin: String?
    public var size: UInt64?
    public var sha256: String?
    public var signer: String?
    public var reason: String?
    public var member: MemberInfo?

    static func file(_ kind: Kind, _ version: FileVersion, time: Int64, origin: String?) -> NodeEvent {
        NodeEvent(
            kind: kind, time: time, name: version.name.value, timestamp: version.timestamp,
            origin: origin == nil ? "local" : "peer", size: version.contentLength,
            sha256: Hex.encode(version.contentSHA256), signer: version.signer.base64)
    }

    /// `event: KIND` and `data: JSON`, ended by a blank line.
    public var serverSentEvent: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let json = (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return "event: \(kind.rawValue)\ndata: \(json)\n\n"
    }
}

/// Fans events out to every `/v1/events` subscriber and keeps the latest ones for newcomers.
/// A subscriber that does not keep up loses the oldest of its backlog, never blocks the node.
/// Subscribers are capped (`maxSubscribers`), and so is each one's backlog: anyone who can reach
/// the API may subscribe and never read, while requests that need no key (refused uploads) make
/// events.
public final class EventHub: Sendable {
    public static let kept = 100
    static let backlog = 256
    public static let maxSubscribers = 64
    public static let maxSubscribersPerSource = 16

    struct State {
        var recent: [NodeEvent] = []
        var subscribers: [UInt64: AsyncStream<NodeEvent>.Continuation] = [:]
        /// Subscribers by the address they came from.
        var bySource: [String: Int] = [:]
        var nextID: UInt64 = 0
    }

    let state = NIOLockedValueBox(State())

    public init() {}

    public func publish(_ event: NodeEvent) {
        let subscribers = state.withLockedValue { state in
            state.recent.append(event)
            if state.recent.count > Self.kept { state.recent.removeFirst(state.recent.count - Self.kept) }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.yield(event) }
    }

    /// A stream of events from now on, after up to `recent` of the latest ones; nil when
    /// `maxSubscribers` are subscribed already, or `maxSubscribersPerSource` from `source`.
    public func subscribe(recent: Int = 0, source: String = "") -> AsyncStream<NodeEvent>? {
        let (stream, continuation) = AsyncStream.makeStream(
            of: NodeEvent.self, bufferingPolicy: .bufferingNewest(Self.backlog))
        let subscribed = state.withLockedValue { state -> UInt64? in
            guard state.subscribers.count < Self.maxSubscribers,
                state.bySource[source, default: 0] < Self.maxSubscribersPerSource
            else { return nil }
            state.bySource[source, default: 0] += 1
            for event in state.recent.suffix(max(0, min(recent, Self.kept))) { continuation.yield(event) }
            state.nextID += 1
            state.subscribers[state.nextID] = continuation
            return state.nextID
        }
        guard let id = subscribed else {
            continuation.finish()
            return nil
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLockedValue { state in
                state.subscribers.removeValue(forKey: id)
                let left = state.bySource[source, default: 1] - 1
                state.bySource[source] = left > 0 ? left : nil
            }
        }
        return stream
    }

}
