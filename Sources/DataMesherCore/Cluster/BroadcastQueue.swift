/// Gossip waiting to be sent, each item a limited number of times (memberlist's
/// TransmitLimitedQueue): the least-sent items go first, and a newer item about the same
/// subject (a member, a file name) replaces the older one.
public struct BroadcastQueue: Sendable {
    struct Entry: Sendable {
        var item: GossipItem
        var size: Int
        var transmits: Int
        var order: UInt64
    }

    var entries: [String: Entry] = [:]
    var counter: UInt64 = 0

    public init() {}

    public var count: Int { entries.count }

    public mutating func enqueue(_ item: GossipItem) {
        counter += 1
        entries[item.subject] = Entry(item: item, size: WireCodec.encode(item).count, transmits: 0, order: counter)
    }

    /// Items that fit in `budget` bytes, fewest transmissions (then newest) first; each is
    /// counted as sent once and dropped when it has been sent `limit` times.
    public mutating func take(budget: Int, limit: Int) -> [GossipItem] {
        guard !entries.isEmpty else { return [] }
        let ordered = entries.sorted { a, b in
            a.value.transmits != b.value.transmits
                ? a.value.transmits < b.value.transmits : a.value.order > b.value.order
        }
        var used = 0
        var out: [GossipItem] = []
        for (subject, entry) in ordered where out.count < WireCodec.maxItems {
            guard used + entry.size <= budget else { continue }
            used += entry.size
            out.append(entry.item)
            if entry.transmits + 1 >= limit {
                entries[subject] = nil
            } else {
                entries[subject]?.transmits += 1
            }
        }
        return out
    }
}
