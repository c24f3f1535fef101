import Crypto
import DataMesherCore
import Foundation
import Testing

@testable import DataMesherStore

/// The records file: one appended line per change, read back last-line-wins, damage dropped,
/// compacted when it outgrows its records, and meta/ of an older data-mesher adopted.
@Suite struct RecordLogTests {
    static func record(_ fixture: StoreFixture, _ name: String, at timestamp: Int64) throws -> MetaRecord {
        MetaRecord(current: StoredFile(version: try fixture.version(name, name, at: timestamp), state: .content))
    }

    @Test func damagedAndTornLinesAreDroppedAndTheGoodOnesHold() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        try fixture.put(store, "a", "alpha", at: fixture.now - 20)
        try fixture.put(store, "b", "bravo", at: fixture.now - 20)
        // A newer record for "a" whose checksum does not match, a line of zeros, and a torn
        // last line (a crash in the middle of an append that was never acknowledged).
        var forged = RecordLog.line(.record(try Self.record(fixture, "a", at: fixture.now - 10)))
        forged[0] = forged[0] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        try fixture.write(String(decoding: forged, as: UTF8.self), into: "records", atEnd: true)
        try fixture.write(String(repeating: "\0", count: 40) + "\n", into: "records", atEnd: true)
        let torn = RecordLog.line(.record(try Self.record(fixture, "b", at: fixture.now - 5)))
        try fixture.write(String(decoding: torn.dropLast(9), as: UTF8.self), into: "records", atEnd: true)

        let reopened = try fixture.open()
        #expect(reopened.records.damagedAtOpen == 3)
        #expect(reopened.current(try FileName("a"))?.version.timestamp == fixture.now - 20)
        #expect(reopened.current(try FileName("b"))?.version.timestamp == fixture.now - 20)
        #expect(fixture.content("a") == "alpha" && fixture.content("b") == "bravo")
        // The scan rewrote the file: one line per name, nothing damaged left.
        let text = try String(contentsOfFile: fixture.dir + "/records", encoding: .utf8)
        #expect(text.split(separator: "\n").count == 2)
        #expect(try fixture.open().records.damagedAtOpen == 0)
    }

    @Test func concurrentWritersAllReturnDurableAndTheLastLineWins() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        try FileManager.default.createDirectory(atPath: fixture.dir, withIntermediateDirectories: true)
        let log = try RecordLog(directory: fixture.dir)
        let records = try (0..<64).map { try Self.record(fixture, "n\($0 % 16)", at: fixture.now + Int64($0)) }
        let lock = NSLock()
        nonisolated(unsafe) var failures: [String] = []
        DispatchQueue.concurrentPerform(iterations: 16) { writer in
            // Writer k writes the records of name k in increasing time, so its last one wins.
            for index in stride(from: writer, to: records.count, by: 16) {
                do { try log.write(records[index]) } catch { lock.withLock { failures.append("\(error)") } }
            }
        }
        #expect(failures.isEmpty)
        #expect(try log.record(try FileName("n5")) == records[48 + 5])
        try log.remove(try FileName("n3"))
        let read = try RecordLog(directory: fixture.dir).takeLoaded()
        #expect(read.count == 15)
        for name in 0..<16 where name != 3 {
            #expect(read[try FileName("n\(name)")] == records[48 + name])
        }
    }

    @Test func theFileIsCompactedOnceItOutgrowsItsRecords() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        try FileManager.default.createDirectory(atPath: fixture.dir, withIntermediateDirectories: true)
        let log = try RecordLog(directory: fixture.dir)
        let line = RecordLog.line(.record(try Self.record(fixture, "a", at: fixture.now))).count
        let writes = Int(RecordLog.compactFrom) / line * 3
        var last: MetaRecord? = nil
        for index in 0..<writes {
            let record = try Self.record(fixture, index % 2 == 0 ? "a" : "b", at: fixture.now + Int64(index))
            try log.write(record)
            last = record
        }
        let stats = log.stats
        #expect(stats.names == 2)
        #expect(try log.record(try FileName(writes % 2 == 0 ? "b" : "a")) == last, "read back where it moved to")
        #expect(stats.size < RecordLog.compactFrom + UInt64(line), "rewritten at least once: \(stats)")
        let read = try RecordLog(directory: fixture.dir).takeLoaded()
        #expect(read[try FileName(writes % 2 == 0 ? "b" : "a")] == last)
        #expect(read.count == 2)
    }

    /// A kill in the middle of a rewrite leaves its temporary file beside the records file, which
    /// is still the old one: the next start removes the temporary file and reads the old one.
    @Test func aRewriteCutShortLeavesTheOldFileInPlace() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        try fixture.put(store, "a", "alpha", at: fixture.now - 20)
        let leftover = fixture.dir + "/records.tmp-12345"
        let half = RecordLog.line(.record(try Self.record(fixture, "a", at: fixture.now - 10))).dropLast(20)
        try Data(half).write(to: URL(fileURLWithPath: leftover))

        let reopened = try fixture.open()
        #expect(reopened.current(try FileName("a"))?.version.timestamp == fixture.now - 20)
        #expect(fixture.content("a") == "alpha")
        #expect(!FileManager.default.fileExists(atPath: leftover))
    }

    /// data-mesher before the records file kept one JSON file per name in meta/.
    @Test func recordsInMetaOfAnOlderVersionAreAdopted() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let version = try fixture.version("dns/zone", "zone data", at: fixture.now - 10)
        let record = MetaRecord(current: StoredFile(version: version, state: .content))
        let meta = fixture.dir + "/meta"
        try FileManager.default.createDirectory(atPath: fixture.dir + "/files/dns", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: meta, withIntermediateDirectories: true)
        try "zone data".write(toFile: fixture.dir + "/files/dns/zone", atomically: true, encoding: .utf8)
        let legacyName = Hex.encode(SHA256.hash(data: Array("dns/zone".utf8)))
        try Data(record.encoded()).write(to: URL(fileURLWithPath: meta + "/" + legacyName))
        try Data("not a record".utf8).write(to: URL(fileURLWithPath: meta + "/" + String(repeating: "0", count: 64)))

        let store = try fixture.open()
        #expect(store.current(try FileName("dns/zone")) == StoredFile(version: version, state: .content))
        #expect(fixture.content("dns/zone") == "zone data")
        #expect(!FileManager.default.fileExists(atPath: meta))
        let reopened = try fixture.open()
        #expect(reopened.current(try FileName("dns/zone"))?.state == .content)
    }

    /// Whatever is done to the file's bytes, reading it never fails or traps, and every record
    /// it yields is one that was written.
    @Test func aMangledFileYieldsOnlyRecordsThatWereWritten() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        try FileManager.default.createDirectory(atPath: fixture.dir, withIntermediateDirectories: true)
        let written = try (0..<8).map { try Self.record(fixture, "n\($0 % 3)", at: fixture.now + Int64($0)) }
        var original = [UInt8]()
        for record in written { original += RecordLog.line(.record(record)) }
        original += RecordLog.line(.removed(try FileName("n1")))
        let path = fixture.dir + "/records"
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return state
        }
        for _ in 0..<300 {
            var bytes = original
            for _ in 0...Int(next() % 6) {
                let at = Int(next() % UInt64(bytes.count))
                switch next() % 4 {
                case 0: bytes[at] = UInt8(truncatingIfNeeded: next())
                case 1: bytes.insert(UInt8(ascii: "\n"), at: at)
                case 2: bytes.remove(at: at)
                default: bytes = Array(bytes[..<max(at, 1)])
                }
                if bytes.isEmpty { bytes = [0] }
            }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let fd = open(path, O_RDONLY)
            defer { close(fd) }
            let contents = try RecordLog.read(fd: fd, path: path)
            for record in contents.records.values { #expect(written.contains(record)) }
        }
    }
}
