import NIOConcurrencyHelpers

/// How the open-files limit is shared (docs/CONFIG.md, "Limits"): inbound cluster streams,
/// outgoing cluster streams and HTTP connections each get a capped slice, and the rest (more
/// than half) stays for the store, event streams and the runtime. A flood of one kind therefore
/// cannot take the descriptors another needs: strangers holding every cluster or HTTP
/// connection they may still leave room for uploads, fetches and the API's other clients.
public struct DescriptorBudget: Sendable, Equatable {
    /// Inbound cluster streams open at once from strangers, in total and from one source address;
    /// members' hosts have as many again of their own, with the same cap per host.
    public let inboundStreams: Int
    public let inboundStreamsPerSource: Int
    /// Cluster streams this node opens (push/pull, fetches, identity checks), at once.
    public let outgoingStreams: Int
    /// HTTP connections open at once, from all sources together.
    public let httpConnections: Int

    public init(openFilesLimit: UInt64) {
        let limit = Int(clamping: openFilesLimit)
        inboundStreams = max(4, min(128, limit / 16))
        inboundStreamsPerSource = min(16, inboundStreams)
        outgoingStreams = max(4, min(64, limit / 16))
        httpConnections = max(8, min(1024, limit / 4))
    }
}

/// Connections open now against a cap in total and one per source host: the cluster's inbound
/// and outgoing streams, and the HTTP API's connections.
public final class StreamCounter: Sendable {
    /// Which cap a refused connection met.
    public enum Full: Sendable, Equatable {
        case source
        case total
    }

    public let total: Int
    public let perSource: Int
    let open = NIOLockedValueBox<(total: Int, bySource: [String: Int])>((0, [:]))

    public init(total: Int, perSource: Int) {
        self.total = total
        self.perSource = perSource
    }

    /// Counts a new connection from `host`; nil, or the cap it met (then nothing is counted and
    /// the connection must not go on).
    public func enter(_ host: String = "") -> Full? {
        open.withLockedValue { open in
            let fromHost = open.bySource[host, default: 0]
            if fromHost >= perSource { return .source }
            if open.total >= total { return .total }
            open.total += 1
            open.bySource[host] = fromHost + 1
            return nil
        }
    }

    public func leave(_ host: String = "") {
        open.withLockedValue { open in
            open.total -= 1
            let left = open.bySource[host, default: 1] - 1
            open.bySource[host] = left > 0 ? left : nil
        }
    }

    /// Connections open now from `host`.
    public func count(_ host: String) -> Int { open.withLockedValue { $0.bySource[host, default: 0] } }
}

/// This node already has `DescriptorBudget.outgoingStreams` streams open; the caller tries later.
struct OutgoingStreamLimit: Error, CustomStringConvertible {
    let limit: Int
    var description: String { "\(limit) outgoing cluster streams are open already" }
}
