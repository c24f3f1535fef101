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
    /// What a slot holds; read only when its item is taken.
    struct Slot: Sendable {
        var item: GossipItem?
        var subject: GossipSubject
        /// The item as the wire encodes it.
        var bytes: [UInt8]
    }

    /// What taking checks for every ticket, apart from the items and small: in a large
    /// cluster the queues of a thousand cores do not stay in the cache, and every separate
    /// place a check reads costs a miss.
    struct Meta: Sendable {
        /// The enqueue this slot holds; 0 when free (enqueues count from 1).
        var order: UInt64
        var transmits: Int32
        var size: Int32
    }

    struct Ticket: Sendable {
        var slot: Int
        var order: UInt64
    }

    var slots: [Slot] = []
    var meta: [Meta] = []
    var freeSlots: [Int] = []
    var slotOf: [GossipSubject: Int] = [:]
    var tiers: [[Ticket]] = []
    /// Bit t set: tier t (t < 64) may hold tickets; clear bits let taking skip a tier unread.
    var occupied: UInt64 = 0
    var counter: UInt64 = 0
    /// Tickets moving up a tier during `take`, kept between calls for its capacity.
    var promoted: [(Ticket, Int)] = []
    /// Positions in a tier to drop after a walk (taken or stale), also kept for its capacity.
    var dropped: [Int] = []
    /// How many queued items have each encoded size, and the smallest of those sizes: when the
    /// room left in a packet is below it, no queued item fits and taking can stop.
    var sizes: [Int: Int] = [:]
    var smallest = Int.max

    public init() {}

    /// Items waiting to be sent.
    public var count: Int { slotOf.count }

    public mutating func enqueue(_ item: GossipItem) {
        counter += 1
        let subject = item.subject
        let entry = Slot(item: item, subject: subject, bytes: WireCodec.encode(item))
        let entryMeta = Meta(order: counter, transmits: 0, size: Int32(entry.bytes.count))
        let slot: Int
        count(entry.bytes.count, by: 1)
        if let held = slotOf[subject] {
            slot = held
            count(Int(meta[slot].size), by: -1)
            slots[slot] = entry
            meta[slot] = entryMeta
        } else if let free = freeSlots.popLast() {
            slot = free
            slots[slot] = entry
            meta[slot] = entryMeta
            slotOf[subject] = slot
        } else {
            slot = slots.count
            slots.append(entry)
            meta.append(entryMeta)
            slotOf[subject] = slot
        }
        place(Ticket(slot: slot, order: counter), tier: 0)
    }

    mutating func place(_ ticket: Ticket, tier: Int) {
        while tiers.count <= tier { tiers.append([]) }
        tiers[tier].append(ticket)
        if tier < 64 { occupied |= 1 << UInt64(tier) }
    }

    /// Keeps `sizes` and `smallest` current.
    mutating func count(_ size: Int, by delta: Int) {
        let now = sizes[size, default: 0] + delta
        sizes[size] = now == 0 ? nil : now
        if delta > 0 {
            smallest = min(smallest, size)
        } else if now == 0 && size == smallest {
            smallest = sizes.keys.min() ?? Int.max
        }
    }

    mutating func release(_ slot: Int) {
        count(Int(meta[slot].size), by: -1)
        slotOf[slots[slot].subject] = nil
        slots[slot].item = nil
        slots[slot].bytes = []
        meta[slot].order = 0
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
        // Walks each tier from the top (newest) down, as a stack popped and refilled would be:
        // taken and stale tickets are dropped, skipped ones stay where they are.
        walk: while tier < tiers.count && out.count < WireCodec.maxItems && used < budget {
            if tier < 64 ? occupied & (1 << UInt64(tier)) == 0 : tiers[tier].isEmpty {
                tier += 1
                continue
            }
            var index = tiers[tier].count
            var lowest = index
            var skipped = 0
            if !dropped.isEmpty { dropped.removeAll(keepingCapacity: true) }
            while index > 0 {
                // Nothing queued fits in the room left: walking on could only skip.
                if budget - used < smallest { break }
                index -= 1
                lowest = index
                let ticket = tiers[tier][index]
                // Stale tickets (replaced or already moved on) are simply dropped.
                let slot = ticket.slot
                let check = meta[slot]
                guard check.order == ticket.order, check.transmits == tier else {
                    dropped.append(index)
                    continue
                }
                let size = Int(check.size)
                if used + size > budget {
                    skipped += 1
                    if skipped > 64 { break }  // nothing small enough is likely below
                    continue
                }
                guard let item = slots[slot].item else {
                    dropped.append(index)
                    continue
                }
                dropped.append(index)
                used += size
                out.append(item)
                encoded += slots[slot].bytes
                if Int(check.transmits) + 1 >= limit {
                    release(slot)
                } else {
                    meta[slot].transmits += 1
                    promoted.append((ticket, tier + 1))
                }
                if out.count >= WireCodec.maxItems || used >= budget { break }
            }
            if !dropped.isEmpty { remove(dropped, from: tier, above: lowest) }
            if tier < 64 && tiers[tier].isEmpty { occupied &= ~(1 << UInt64(tier)) }
            if budget - used < smallest { break walk }
            tier += 1
        }
        for (ticket, next) in promoted { place(ticket, tier: next) }
        return out
    }

    /// Removes the tickets at `positions` (descending, all at or above `lowest`) from a tier,
    /// keeping the order of the others.
    mutating func remove(_ positions: [Int], from tier: Int, above lowest: Int) {
        guard !positions.isEmpty else { return }
        var next = positions.count - 1
        var write = lowest
        for read in lowest..<tiers[tier].count {
            if next >= 0 && positions[next] == read {
                next -= 1
                continue
            }
            tiers[tier][write] = tiers[tier][read]
            write += 1
        }
        tiers[tier].removeLast(tiers[tier].count - write)
    }
}
