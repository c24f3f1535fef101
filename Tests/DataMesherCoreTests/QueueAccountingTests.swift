import DataMesherSim
import Testing

@testable import DataMesherCore

/// The broadcast queue keeps a count of queued items per encoded size, and the smallest size, so
/// taking can stop when nothing fits. Recounted from the live items after every step, they must
/// agree (an item's size was once counted twice on enqueue and released once, so `smallest`
/// drifted below every real item).
@Suite struct QueueAccountingTests {
    static func recount(_ queue: BroadcastQueue) -> [Int: Int] {
        var sizes: [Int: Int] = [:]
        for slot in queue.slotOf.values { sizes[Int(queue.meta[slot].size), default: 0] += 1 }
        return sizes
    }

    @Test func sizeCountsMatchTheQueuedItemsAfterEveryStep() {
        var rng = SplitMix64(state: 5)
        var queue = BroadcastQueue()
        let ids = (0..<12).map { number in NodeID(publicKey: [UInt8(number)]) }
        for step in 0..<5_000 {
            if rng.next() % 3 != 0 {
                let id = ids[Int(rng.next() % UInt64(ids.count))]
                let name = String(repeating: "n", count: Int(rng.next() % 20))
                queue.enqueue(
                    .alive(
                        MemberAnnouncement(
                            id: id, name: name, incarnation: rng.next() % 9,
                            addresses: [PeerAddress(host: "10.0.0.1", port: 7946)],
                            publicKey: [UInt8](repeating: 1, count: 32), signature: [UInt8](repeating: 2, count: 64))))
            } else {
                _ = queue.take(budget: 100 + Int(rng.next() % 1300), limit: 1 + Int(rng.next() % 4))
            }
            let expected = Self.recount(queue)
            #expect(queue.sizes == expected, "step \(step)")
            #expect(queue.smallest == (expected.keys.min() ?? Int.max), "step \(step)")
            if queue.sizes != expected { return }
        }
    }
}
