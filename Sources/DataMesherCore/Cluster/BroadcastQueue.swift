/// Gossip waiting to be sent, each item a limited number of times (memberlist's
/// TransmitLimitedQueue): the least-sent items go first (newest first among equals), and a
/// newer item about the same subject (a member, a file name) replaces the older one.
///
/// Items sit in tiers by how often they were sent; a tier is a stack, newest on top. Taking
/// walks the tiers from the least-sent up and stops when the packet is full, so its cost is
/// what it takes (plus skipped stale entries), not the length of the queue.
///
/// Items are kept encoded, as they go on the wire: taking copies bytes into the packet and
/// touches no item value. Each item's bytes live in one shared arena (compacted when most of
/// it is stale) and its slot says where; a ticket names a slot and the enqueue it stands for,
/// so a ticket whose slot was replaced or freed since is stale. With a thousand cores in one
/// process the queues do not stay in the cache, so what taking reads per ticket is kept small
/// and in one place.
public struct BroadcastQueue: Sendable {
    struct Meta: Sendable {
        /// The enqueue this slot holds; 0 when free (enqueues count from 1).
        var order: UInt64
        /// Where the item's encoding is in `arena`, and its length.
        var offset: Int32
        var size: Int32
        var transmits: Int32
    }

    struct Ticket: Sendable {
        var slot: Int
        var order: UInt64
    }

    var meta: [Meta] = []
    /// What each slot is about (nil when free), to find a slot again when its item is replaced.
    var subjects: [GossipSubject?] = []
    /// Slots are not reused: a new item takes the next one, so tickets of items queued one
    /// after the other name neighbouring slots, and a walk reads `meta` front to back instead
    /// of all over it. `compact` renumbers the live ones when most are free.
    var freeCount = 0
    var slotOf: [GossipSubject: Int] = [:]
    /// The encodings of the queued items (and of replaced or dropped ones, `garbage` bytes).
    var arena: [UInt8] = []
    var garbage = 0
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
        let bytes = WireCodec.encode(item)
        // A newer item about the same subject replaces the queued one (whose ticket goes stale).
        if let held = slotOf[subject] { release(held) }
        let slot = meta.count
        meta.append(Meta(order: counter, offset: Int32(arena.count), size: Int32(bytes.count), transmits: 0))
        subjects.append(subject)
        slotOf[subject] = slot
        count(bytes.count, by: 1)
        arena += bytes
        place(Ticket(slot: slot, order: counter), tier: 0)
        if (freeCount > 64 && freeCount > slotOf.count) || (garbage > 1 << 16 && garbage * 2 > arena.count) {
            compact()
        }
    }

    /// Renumbers the live slots in the order their tickets sit in the tiers, drops stale
    /// tickets, and copies the live encodings into a fresh arena in that order.
    mutating func compact() {
        var freshMeta: [Meta] = []
        var freshSubjects: [GossipSubject?] = []
        var freshArena: [UInt8] = []
        freshMeta.reserveCapacity(slotOf.count)
        freshSubjects.reserveCapacity(slotOf.count)
        freshArena.reserveCapacity(arena.count - garbage)
        for tier in tiers.indices {
            var kept: [Ticket] = []
            kept.reserveCapacity(tiers[tier].count)
            for ticket in tiers[tier] where meta[ticket.slot].order == ticket.order {
                var entry = meta[ticket.slot]
                let start = Int(entry.offset)
                entry.offset = Int32(freshArena.count)
                freshArena += arena[start..<start + Int(entry.size)]
                kept.append(Ticket(slot: freshMeta.count, order: ticket.order))
                if let subject = subjects[ticket.slot] { slotOf[subject] = freshMeta.count }
                freshMeta.append(entry)
                freshSubjects.append(subjects[ticket.slot])
            }
            tiers[tier] = kept
            if tier < 64 && kept.isEmpty { occupied &= ~(1 << UInt64(tier)) }
        }
        meta = freshMeta
        subjects = freshSubjects
        arena = freshArena
        garbage = 0
        freeCount = 0
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
        garbage += Int(meta[slot].size)
        if let subject = subjects[slot] { slotOf[subject] = nil }
        subjects[slot] = nil
        meta[slot].order = 0
        freeCount += 1
    }

    /// Items that fit in `budget` bytes; each is counted as sent once and dropped when it has
    /// been sent `limit` times.
    public mutating func take(budget: Int, limit: Int) -> [GossipItem] {
        var encoded: [UInt8] = []
        let count = take(budget: budget, limit: limit, encodingInto: &encoded)
        return WireCodec.decodeItems(WireReader(encoded), count: count)
    }

    /// `take`, appending the items' wire encoding to `encoded`; returns how many were taken.
    mutating func take(budget: Int, limit: Int, encodingInto encoded: inout [UInt8]) -> Int {
        // Nothing queued: every ticket left is stale.
        guard !slotOf.isEmpty else { return 0 }
        var used = 0
        var taken = 0
        promoted.removeAll(keepingCapacity: true)
        var tier = 0
        // Walks each tier from the top (newest) down, as a stack popped and refilled would be:
        // taken and stale tickets are dropped, skipped ones stay where they are.
        walk: while tier < tiers.count && taken < WireCodec.maxItems && used < budget {
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
                dropped.append(index)
                used += size
                taken += 1
                let start = Int(check.offset)
                encoded += arena[start..<start + size]
                if Int(check.transmits) + 1 >= limit {
                    release(slot)
                } else {
                    meta[slot].transmits += 1
                    promoted.append((ticket, tier + 1))
                }
                if taken >= WireCodec.maxItems || used >= budget { break }
            }
            if !dropped.isEmpty { remove(dropped, from: tier, above: lowest) }
            if tier < 64 && tiers[tier].isEmpty { occupied &= ~(1 << UInt64(tier)) }
            if budget - used < smallest { break walk }
            tier += 1
        }
        for (ticket, next) in promoted { place(ticket, tier: next) }
        if slotOf.isEmpty && meta.count > 64 { releaseStorage() }
        return taken
    }

    /// Empty again: gives back what the last burst of news took (a join queues an announcement
    /// per member, and a queue sized for it would stay with the core). Orders keep counting.
    mutating func releaseStorage() {
        let counter = counter
        self = BroadcastQueue()
        self.counter = counter
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
