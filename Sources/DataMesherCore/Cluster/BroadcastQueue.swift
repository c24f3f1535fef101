/// Gossip waiting to be sent, each item a limited number of times (memberlist's
/// TransmitLimitedQueue): the least-sent items go first (newest first among equals), and a
/// newer item about the same subject (a member, a file name) replaces the older one.
///
/// Items sit in tiers by how often they were sent; a tier is a stack, newest on top. Taking
/// walks the tiers from the least-sent up and stops when the packet is full, so its cost is
/// what it takes (plus skipped stale entries), not the length of the queue.
public struct BroadcastQueue: Sendable {
    struct Entry: Sendable {
        var item: GossipItem
        var size: Int
        var transmits: Int
        var order: UInt64
    }

    struct Ticket: Sendable {
        var subject: String
        var order: UInt64
    }

    var entries: [String: Entry] = [:]
    var tiers: [[Ticket]] = []
    var counter: UInt64 = 0

    public init() {}

    public mutating func enqueue(_ item: GossipItem) {
        counter += 1
        let subject = item.subject
        entries[subject] = Entry(item: item, size: WireCodec.encode(item).count, transmits: 0, order: counter)
        place(Ticket(subject: subject, order: counter), tier: 0)
    }

    mutating func place(_ ticket: Ticket, tier: Int) {
        while tiers.count <= tier { tiers.append([]) }
        tiers[tier].append(ticket)
    }

    /// Items that fit in `budget` bytes; each is counted as sent once and dropped when it has
    /// been sent `limit` times.
    public mutating func take(budget: Int, limit: Int) -> [GossipItem] {
        var used = 0
        var out: [GossipItem] = []
        var promoted: [(Ticket, Int)] = []
        var tier = 0
        while tier < tiers.count && out.count < WireCodec.maxItems && used < budget {
            var skipped: [Ticket] = []
            while let ticket = tiers[tier].popLast() {
                // Stale tickets (replaced or already moved on) are simply dropped.
                guard let entry = entries[ticket.subject], entry.order == ticket.order, entry.transmits == tier else {
                    continue
                }
                if used + entry.size > budget {
                    skipped.append(ticket)
                    if skipped.count > 64 { break }  // nothing small enough is likely below
                    continue
                }
                used += entry.size
                out.append(entry.item)
                if entry.transmits + 1 >= limit {
                    entries[ticket.subject] = nil
                } else {
                    entries[ticket.subject]?.transmits += 1
                    promoted.append((ticket, tier + 1))
                }
                if out.count >= WireCodec.maxItems || used >= budget { break }
            }
            tiers[tier].append(contentsOf: skipped.reversed())
            tier += 1
        }
        for (ticket, next) in promoted { place(ticket, tier: next) }
        return out
    }
}
