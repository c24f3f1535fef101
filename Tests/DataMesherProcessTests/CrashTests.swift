import DataMesherCore
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The versions a writer has sent, as it saw them.
final class UploadLog: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var acknowledged: [String: Int] = [:]
    private var inFlight: [String: Int] = [:]
    private var stopped = false

    func begin(_ name: String, _ index: Int) { locked { inFlight[name] = index } }
    func acknowledge(_ name: String, _ index: Int) { locked { acknowledged[name] = index } }
    func stop() { locked { stopped = true } }
    var isStopped: Bool { locked { stopped } }
    func state(_ name: String) -> (acknowledged: Int?, inFlight: Int?) {
        locked { (acknowledged[name], inFlight[name]) }
    }

    private func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }
}

@Suite struct CrashTests {
    /// Deterministic content for version `index` of `name`; sizes vary from 1 KiB to ~600 KiB.
    static func content(_ name: String, _ index: Int) -> [UInt8] {
        let header = Array("\(name) version \(index)\n".utf8)
        let size = 1024 + (index * 7919) % (600 * 1024)
        var bytes = header
        bytes.reserveCapacity(size)
        var state = UInt64(index) &* 0x9E37_79B9_7F4A_7C15 | 1
        while bytes.count < size {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            bytes.append(UInt8(truncatingIfNeeded: state))
        }
        return bytes
    }

    @Test func sigkillDuringUploadsNeverTearsAFileAndKeepsTheLastAcknowledgedVersion() throws {
        try Self.killDuringUploads(names: ["config:app", "dns/zone"], cycles: 15)
    }

    /// Twelve writers at once, each on its own name: their commits share the records file's syncs
    /// and the directory fsyncs (group commit), and still none is acknowledged before it is on disk.
    @Test func sigkillDuringGroupCommitsLosesNoAcknowledgedVersion() throws {
        try Self.killDuringUploads(names: (0..<12).map { "group/w\($0)" }, cycles: 6)
    }

    /// Every third change a deletion: an upload killed before its rename must give back the
    /// acknowledged deletion (or the name's absence), not a version marked missing (an attacking
    /// helper found this).
    @Test func sigkillBetweenDeletionsAndUploadsKeepsTheAcknowledgedDeletion() throws {
        try Self.killDuringUploads(names: (0..<12).map { "mixed/w\($0)" }, cycles: 6, deleteEvery: 3)
    }

    /// Writers upload versions of `names` (one writer per name; every `deleteEvery`-th change a
    /// deletion when above 0) while the daemon is SIGKILLed `cycles` times; after each restart
    /// every name holds its last acknowledged version or the one in flight, served untorn, and
    /// none is marked missing.
    static func killDuringUploads(names: [String], cycles: Int, deleteEvery: Int = 0) throws {
        let isDeletion: @Sendable (Int) -> Bool = { index in deleteEvery > 0 && index % deleteEvery == 0 }
        let dir = NSTemporaryDirectory() + "dm-crash-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let owner = try TestKey(dir: dir, name: "owner")
        let daemon = try Daemon(files: Dictionary(uniqueKeysWithValues: names.map { ($0, [owner.base64]) }))
        defer { daemon.cleanUp() }
        let base = nowNanoseconds() - 3_600_000_000_000
        var nextIndex = [String: Int](uniqueKeysWithValues: names.map { ($0, 1) })
        // What each name served after the previous restart: still the last acknowledged version
        // when a cycle's kill comes before any upload of the name is acknowledged.
        var servedBefore = [String: Int]()
        var generator = SystemRandomNumberGenerator()
        var killedMidUpload = 0

        for cycle in 0..<cycles {
            try daemon.start()
            let log = UploadLog()
            var threads: [Thread] = []
            for name in names {
                let first = nextIndex[name]!
                let thread = Thread {
                    var index = first
                    // Bounded: at most 10,000 uploads per writer per cycle.
                    while !log.isStopped && index < first + 10_000 {
                        let deletion = isDeletion(index)
                        let bytes = deletion ? [] : Self.content(name, index)
                        guard
                            let version = try? owner.sign(
                                name, bytes, at: base + Int64(index) * 1000, tombstone: deletion)
                        else { return }
                        log.begin(name, index)
                        let reply =
                            deletion
                            ? try? HTTP.request(
                                daemon.address, daemon.port, method: "DELETE", path: "/v1/files/" + name,
                                headers: HTTP.signed(version))
                            : try? HTTP.put(daemon, version, bytes)
                        guard let reply else { return }
                        if reply.status == (deletion ? 200 : 201) { log.acknowledge(name, index) }
                        index += 1
                    }
                }
                threads.append(thread)
                thread.start()
            }
            usleep(UInt32.random(in: 50_000...400_000, using: &generator))
            daemon.stop(signal: SIGKILL)
            log.stop()
            // Writers end by themselves once the socket is gone; give them a bounded time.
            let deadline = Date().addingTimeInterval(30)
            while threads.contains(where: { $0.isExecuting }) && Date() < deadline { usleep(10_000) }

            try daemon.start()
            let list =
                try JSONSerialization.jsonObject(
                    with: Data(try HTTP.request(daemon.address, daemon.port, method: "GET", path: "/v1/files").body))
                as? [[String: Any]] ?? []
            let held = Dictionary(
                uniqueKeysWithValues: list.compactMap { entry in
                    (entry["name"] as? String).map { ($0, entry) }
                })
            for name in names {
                let (acknowledged, inFlight) = log.state(name)
                #expect(
                    held[name]?["missing"] == nil, "cycle \(cycle): \(name) is marked missing: \(held[name] ?? [:])")
                let reply = try HTTP.request(daemon.address, daemon.port, method: "GET", path: "/v1/files/" + name)
                let served: Int?
                if reply.status == 200 {
                    let firstLine = String(decoding: reply.body.prefix(while: { $0 != 10 }), as: UTF8.self)
                    served = Int(firstLine.split(separator: " ").last ?? "")
                    let index = try #require(served, "cycle \(cycle): unreadable content for \(name)")
                    #expect(reply.body == Self.content(name, index), "cycle \(cycle): \(name) is torn")
                    let onDisk = FileManager.default.contents(atPath: daemon.stateDir + "/files/" + name)
                    #expect(onDisk.map(Array.init) == reply.body, "cycle \(cycle): file on disk differs from served")
                    #expect(reply.header("DM-Timestamp") == String(base + Int64(index) * 1000))
                } else if let entry = held[name], entry["deleted"] as? Bool == true,
                    let timestamp = (entry["timestamp"] as? NSNumber)?.int64Value
                {
                    // A deletion: which one, by its signed timestamp.
                    #expect(reply.status == 404, "cycle \(cycle): \(name) is deleted but answers \(reply.status)")
                    let index = Int((timestamp - base) / 1000)
                    #expect(isDeletion(index), "cycle \(cycle): \(name) holds deletion \(index)")
                    served = index
                } else {
                    served = nil
                }
                // Exactly the last acknowledged version (this cycle's, else the one served after
                // the previous restart), or the one in flight when the node died (its reply may
                // have been lost with the connection).
                let lastAcknowledged = acknowledged ?? servedBefore[name]
                let allowed = Set([lastAcknowledged, inFlight].compactMap { $0 })
                if let served {
                    #expect(
                        allowed.contains(served),
                        "cycle \(cycle): \(name) serves \(served); acked \(String(describing: lastAcknowledged)), in flight \(String(describing: inFlight))"
                    )
                    if served != lastAcknowledged { killedMidUpload += 1 }
                } else {
                    #expect(
                        lastAcknowledged == nil,
                        "cycle \(cycle): \(name) lost acknowledged version \(lastAcknowledged ?? -1)")
                }
                servedBefore[name] = served
                nextIndex[name] = max(inFlight ?? 0, served ?? 0, nextIndex[name]!) + 1
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: daemon.stateDir + "/tmp").isEmpty)
            daemon.stop(signal: SIGKILL)
        }
        // The writers did make progress between kills.
        #expect(names.allSatisfy { nextIndex[$0]! > cycles })
        print(
            "crash test: \(cycles) kills, versions reached \(nextIndex), \(killedMidUpload) kills landed after commit but before the reply"
        )
    }

    @Test func stateSurvivesARestartAndDamageIsNotServed() throws {
        let dir = NSTemporaryDirectory() + "dm-restart-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let owner = try TestKey(dir: dir, name: "owner")
        let daemon = try Daemon(files: ["a": [owner.base64], "b": [owner.base64], "gone": [owner.base64]])
        defer { daemon.cleanUp() }
        try daemon.start()
        let now = nowNanoseconds()
        #expect(
            try HTTP.put(daemon, try owner.sign("a", Array("alpha".utf8), at: now), Array("alpha".utf8)).status == 201)
        #expect(
            try HTTP.put(daemon, try owner.sign("b", Array("bravo".utf8), at: now), Array("bravo".utf8)).status == 201)
        #expect(try HTTP.put(daemon, try owner.sign("gone", Array("x".utf8), at: now), Array("x".utf8)).status == 201)
        let tombstone = try owner.sign("gone", [], at: now + 1, tombstone: true)
        let deleted = try HTTP.request(
            daemon.address, daemon.port, method: "DELETE", path: "/v1/files/gone", headers: HTTP.signed(tombstone))
        #expect(deleted.status == 200)
        let info = try HTTP.request(daemon.address, daemon.port, method: "GET", path: "/v1/info")
        daemon.stop(signal: SIGTERM)
        #expect(daemon.process?.terminationStatus == 0, "graceful shutdown exits 0")
        #expect(daemon.tailOfLog().contains("stopped"))

        // Damage one file behind the daemon's back.
        try "ALPHA".write(toFile: daemon.stateDir + "/files/a", atomically: false, encoding: .utf8)
        try daemon.start()
        let a = try HTTP.request(daemon.address, daemon.port, method: "GET", path: "/v1/files/a")
        #expect(a.status == 404, "damaged file must not be served: \(a.text)")
        let b = try HTTP.request(daemon.address, daemon.port, method: "GET", path: "/v1/files/b")
        #expect(b.status == 200 && b.text == "bravo")
        #expect(b.header("DM-Timestamp") == String(now))
        let gone = try HTTP.request(daemon.address, daemon.port, method: "GET", path: "/v1/files/gone")
        #expect(gone.status == 404 && gone.text.contains("deleted"))
        // The tombstone still refuses the older content after the restart.
        #expect(try HTTP.put(daemon, try owner.sign("gone", Array("x".utf8), at: now), Array("x".utf8)).status == 409)
        let list =
            try JSONSerialization.jsonObject(
                with: Data(
                    try HTTP.request(daemon.address, daemon.port, method: "GET", path: "/v1/files").body))
            as? [[String: Any]]
        // The damaged name keeps its record (so nothing older comes back), marked missing.
        #expect(list?.map { $0["name"] as? String } == ["a", "b", "gone"])
        #expect(list?.first?["missing"] as? Bool == true)
        #expect(list?.dropFirst().allSatisfy { $0["missing"] == nil } == true)
        let infoAfter = try HTTP.request(daemon.address, daemon.port, method: "GET", path: "/v1/info")
        let idBefore =
            (try JSONSerialization.jsonObject(with: Data(info.body)) as? [String: Any])?["node_id"] as? String
        let idAfter =
            (try JSONSerialization.jsonObject(with: Data(infoAfter.body)) as? [String: Any])?["node_id"] as? String
        #expect(idBefore != nil && idBefore == idAfter, "node ID is kept across restarts")
        // A fresh good upload of the damaged name is accepted again.
        #expect(
            try HTTP.put(daemon, try owner.sign("a", Array("again".utf8), at: now + 5), Array("again".utf8)).status
                == 201)
    }
}
