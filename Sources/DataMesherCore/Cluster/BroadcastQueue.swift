/// Gossip waiting to be sent, each item a limited number of times (memberlist's
/// TransmitLimitedQueue): the least-sent items go first (newest first among equals), and a
/// newer item about the same subject (a member, a file name) replaces the older one.
///
/// Items sit in tiers by how often they were sent; a tier is a stack, newest on top. Taking
/// walks the tiers from the least-sent up and stops when the packet is full, so its cost is
/// what it takes (plus skipped stale entries), not the length of the queue.
///
/// Items live in slots; a ticket names a slot and the enqueue it stands for, so taking reads
/// arrays only (no hashing), and a ticket whose slot was replaced or freed since is stale.
public struct BroadcastQueue: Sendable {
    struct Slot: Sendable {
        var item: GossipItem?
        var subject: GossipSubject
        /// The item as the wire encodes it.
        var bytes: [UInt8]
        var transmits: Int
        /// The enqueue this slot holds; 0 when free (enqueues count from 1).
        var order: UInt64
    }

    struct Ticket: Sendable {
        var slot: Int
        var order: UInt64
    }

    var slots: [Slot] = []
    var freeSlots: [Int] = []
    var slotOf: [GossipSubject: Int] = [:]
    var tiers: [[Ticket]] = []
    var counter: UInt64 = 0
    /// Tickets moving up a tier during `take`, kept between calls for its capacity.
    var promoted: [(Ticket, Int)] = []

    public init() {}

    /// Items waiting to be sent.
    public var count: Int { slotOf.count }

    public mutating func enqueue(_ item: GossipItem) {
        counter += 1
        let subject = item.subject
        let entry = Slot(item: item, subject: subject, bytes: WireCodec.encode(item), transmits: 0, order: counter)
        let slot: Int
        if let held = slotOf[subject] {
            slot = held
            slots[slot] = entry
        } else if let free = freeSlots.popLast() {
            slot = free
            slots[slot] = entry
            slotOf[subject] = slot
        } else {
            slot = slots.count
            slots.append(entry)
            slotOf[subject] = slot
        }
        place(Ticket(slot: slot, order: counter), tier: 0)
    }

    mutating func place(_ ticket: Ticket, tier: Int) {
        while tiers.count <= tier { tiers.append([]) }
        tiers[tier].append(ticket)
    }

    mutating func release(_ slot: Int) {
        slotOf[slots[slot].subject] = nil
        slots[slot].item = nil
        slots[slot].bytes = []
        slots[slot].order = 0
        freeSlots.append(slot)
    }

    /// Items that fit in `budget` bytes; each is counted as sent once and dropped when it has
    /// been sent `limit` times.
    public mutating func take(budget: Int, limit: Int) -> [GossipItem] {
        var encoded: [UInt8] = []
        return take(budget: budget, limit: limit, encodingInto: &encoded)
    }

    /// `take`, appending the items' wire encoding to `encoded` as well.
    mutating func take(budget: Int, limit: Int, encodingInto encoded: inout [UInt8]) -> [GossipItem] {
        // Nothing queued: every ticket left is stale.
        guard !slotOf.isEmpty else { return [] }
        var used = 0
        var out: [GossipItem] = []
        out.reserveCapacity(min(slotOf.count, WireCodec.maxItems))
        promoted.removeAll(keepingCapacity: true)
        var tier = 0
        while tier < tiers.count && out.count < WireCodec.maxItems && used < budget {
            var skipped: [Ticket] = []
            while let ticket = tiers[tier].popLast() {
                // Stale tickets (replaced or already moved on) are simply dropped.
                let slot = ticket.slot
                guard slots[slot].order == ticket.order, slots[slot].transmits == tier, let item = slots[slot].item
                else { continue }
                let size = slots[slot].bytes.count
                if used + size > budget {
                    skipped.append(ticket)
                    if skipped.count > 64 { break }  // nothing small enough is likely below
                    continue
                }
                used += size
                out.append(item)
                encoded += slots[slot].bytes
                if slots[slot].transmits + 1 >= limit {
                    release(slot)
                } else {
                    slots[slot].transmits += 1
                    promoted.append((ticket, tier + 1))
                }
                if out.count >= WireCodec.maxItems || used >= budget { break }
            }
            if !skipped.isEmpty { tiers[tier].append(contentsOf: skipped.reversed()) }
            tier += 1
        }
        for (ticket, next) in promoted { place(ticket, tier: next) }
        return out
    }
}
