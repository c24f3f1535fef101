import Crypto
import DataMesherCore
import Foundation
import Logging
import Testing

@testable import DataMesherStore

/// A state dir, a key and a policy, with helpers to commit versions like the node does.
struct StoreFixture {
    let dir: String
    let key = Curve25519.Signing.PrivateKey()
    let now: Int64 = 1_800_000_000 * 1_000_000_000
    var policy: FilePolicy

    init() throws {
        dir = NSTemporaryDirectory() + "dm-store-" + UUID().uuidString
        let signer = try SignerKey(bytes: Array(key.publicKey.rawRepresentation))
        policy = FilePolicy(
            allowedSigners: [
                try FileName("a"): [signer], try FileName("dns/zone"): [signer], try FileName("b"): [signer],
            ])
    }

    func open(at time: Int64? = nil) throws -> FileStore {
        try FileStore(stateDir: dir, policy: policy, now: time ?? now, logger: Logger(label: "test"))
    }

    func version(_ name: String, _ content: String, at timestamp: Int64, validFor: UInt64 = 0, tombstone: Bool = false)
        throws -> FileVersion
    {
        let bytes = Array(content.utf8)
        return try FileVersion.sign(
            kind: tombstone ? .tombstone : .content, networkID: "", name: try FileName(name), timestamp: timestamp,
            validFor: validFor, contentSHA256: Array(SHA256.hash(data: bytes)), contentLength: UInt64(bytes.count),
            key: key)
    }

    @discardableResult
    func put(_ store: FileStore, _ name: String, _ content: String, at timestamp: Int64, validFor: UInt64 = 0) throws
        -> CommitResult
    {
        let version = try version(name, content, at: timestamp, validFor: validFor)
        let upload = try store.makeUpload()
        defer { upload.discard() }
        try Array(content.utf8).withUnsafeBytes { try upload.write($0) }
        try upload.finish()
        return try store.commit(version, content: upload) { policy.evaluate(version, current: $0, now: now) }
    }

    @discardableResult
    func delete(_ store: FileStore, _ name: String, at timestamp: Int64) throws -> CommitResult {
        let version = try version(name, "", at: timestamp, tombstone: true)
        return try store.commit(version, content: nil) { policy.evaluate(version, current: $0, now: now) }
    }

    func content(_ name: String) -> String? {
        (try? String(contentsOfFile: dir + "/files/" + name, encoding: .utf8))
    }

    /// Writes `text` over the start of `path` (in the state dir), or after its end, in place: the
    /// same inode, as damage behind the daemon's back would.
    func write(_ text: String, into path: String, atEnd: Bool = false) throws {
        let handle = try #require(FileHandle(forWritingAtPath: dir + "/" + path))
        if atEnd { try handle.seekToEnd() }
        handle.write(Data(text.utf8))
        try handle.close()
    }

    func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: dir + "/" + path)[.posixPermissions] as? Int) ?? -1
    }

    func remove() { try? FileManager.default.removeItem(atPath: dir) }
}

@Suite struct StoreTests {
    @Test func storesReplacesAndDeletes() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        guard case .stored = try fixture.put(store, "dns/zone", "v1", at: fixture.now - 10) else {
            Issue.record("not stored")
            return
        }
        #expect(fixture.content("dns/zone") == "v1")
        try fixture.put(store, "dns/zone", "v2", at: fixture.now - 5)
        #expect(fixture.content("dns/zone") == "v2")
        let stale = try fixture.put(store, "dns/zone", "old", at: fixture.now - 7)
        #expect(stale == .refused(.stale(try FileName("dns/zone"), held: fixture.now - 5)))
        #expect(fixture.content("dns/zone") == "v2")
        try fixture.delete(store, "dns/zone", at: fixture.now - 1)
        #expect(fixture.content("dns/zone") == nil)
        #expect(!FileManager.default.fileExists(atPath: fixture.dir + "/files/dns"), "empty folder is removed")
        #expect(store.current(try FileName("dns/zone"))?.state == .tombstone)
        let older = try fixture.put(store, "dns/zone", "older", at: fixture.now - 2)
        #expect(older == .refused(.stale(try FileName("dns/zone"), held: fixture.now - 1)))
        #expect(fixture.content("dns/zone") == nil, "a tombstone beats older content")
    }

    @Test func contentThatDoesNotMatchItsVersionIsRefused() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let version = try fixture.version("a", "signed", at: fixture.now)
        let upload = try store.makeUpload()
        try Array("tampered".utf8).withUnsafeBytes { try upload.write($0) }
        try upload.finish()
        let result = try store.commit(version, content: upload) { _ in nil }
        #expect(result == .refused(.contentMismatch(try FileName("a"))))
        upload.discard()
        #expect(fixture.content("a") == nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.dir + "/tmp").isEmpty)
    }

    @Test func permissionsAreGroupReadable() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        try fixture.put(store, "dns/zone", "zone", at: fixture.now)
        #expect(try fixture.mode("files/dns/zone") == 0o640)
        #expect(try fixture.mode("files/dns") == 0o750)
        #expect(try fixture.mode("files") == 0o750)
        #expect(try fixture.mode("") == 0o750)
    }

    @Test func stateSurvivesReopen() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let first = try fixture.open()
        try fixture.put(first, "a", "kept", at: fixture.now - 3)
        try fixture.put(first, "b", "gone", at: fixture.now - 3)
        try fixture.delete(first, "b", at: fixture.now - 2)
        let second = try fixture.open()
        #expect(second.current(try FileName("a"))?.version == first.current(try FileName("a"))?.version)
        #expect(second.current(try FileName("b"))?.state == .tombstone)
        #expect(fixture.content("a") == "kept")
    }

    @Test func damagedContentIsDroppedOnStart() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        try fixture.put(store, "a", "original", at: fixture.now)
        try fixture.put(store, "b", "untouched", at: fixture.now)
        try "evil".write(toFile: fixture.dir + "/files/a", atomically: false, encoding: .utf8)
        let reopened = try fixture.open()
        // The record stays (so nothing older comes back), its content is marked missing.
        #expect(reopened.current(try FileName("a"))?.state == .missing)
        #expect(fixture.content("a") == nil)
        #expect(fixture.content("b") == "untouched")
    }

    /// A crash after the record is written but before the content rename leaves a record of an
    /// unacknowledged version and the old content on disk: the scan restores the old version.
    @Test func crashBetweenRenamesRollsBack() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        try fixture.put(store, "a", "acknowledged", at: fixture.now - 10)
        let acknowledged = try #require(store.current(try FileName("a")))
        let unacknowledged = try fixture.version("a", "in flight", at: fixture.now - 5)
        try store.writeRecord(
            MetaRecord(current: StoredFile(version: unacknowledged, state: .content), replaced: .held(acknowledged)))
        try "half written upload".write(toFile: fixture.dir + "/tmp/upload-x", atomically: false, encoding: .utf8)
        let reopened = try fixture.open()
        #expect(reopened.current(try FileName("a")) == acknowledged)
        #expect(fixture.content("a") == "acknowledged")
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.dir + "/tmp").isEmpty)
    }

    /// Found by an attacking helper (SIGKILL right after a delete and an upload of the same
    /// name): the record of an update goes to disk before its content is in place, so it must
    /// say what it replaces also when that is a deletion, or nothing at all.
    @Test func crashBeforeAnUpdateOfADeletedOrNewNameRollsBack() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let name = try FileName("a")
        try fixture.put(store, "a", "content", at: fixture.now - 10)
        try fixture.delete(store, "a", at: fixture.now - 8)
        let deletion = try #require(store.current(name))
        try #require(deletion.state == .tombstone)
        // An upload replacing the deletion, and the first version of "b": recorded, not renamed.
        let update = try fixture.version("a", "unacknowledged", at: fixture.now - 5)
        try store.writeRecord(
            MetaRecord(current: StoredFile(version: update, state: .content), replaced: .held(deletion)))
        let first = try fixture.version("b", "unacknowledged", at: fixture.now - 5)
        try store.writeRecord(MetaRecord(current: StoredFile(version: first, state: .content), replaced: .nothing))
        let reopened = try fixture.open()
        #expect(reopened.current(name) == deletion)
        #expect(reopened.current(try FileName("b")) == nil)
        #expect(fixture.content("a") == nil && fixture.content("b") == nil)
        // The deletion still beats older content, and "b" takes its first version again.
        let older = try fixture.put(reopened, "a", "older", at: fixture.now - 9)
        #expect(older == .refused(.stale(name, held: fixture.now - 8)))
        try fixture.put(reopened, "b", "again", at: fixture.now - 5)
        #expect(fixture.content("b") == "again")
    }

    @Test func unconfiguredNamesAndOrphansAreRemovedOnStart() throws {
        var fixture = try StoreFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        try fixture.put(store, "b", "was allowed", at: fixture.now)
        try "stray".write(toFile: fixture.dir + "/files/stray", atomically: false, encoding: .utf8)
        fixture.policy.allowedSigners[try FileName("b")] = nil
        let reopened = try fixture.open()
        #expect(reopened.list().isEmpty)
        #expect(fixture.content("b") == nil)
        #expect(fixture.content("stray") == nil)
    }

    @Test func validForExpiresAndTombstonesAreForgotten() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let second: Int64 = 1_000_000_000
        try fixture.put(store, "a", "short-lived", at: fixture.now, validFor: UInt64(60 * second))
        try fixture.put(store, "b", "deleted soon", at: fixture.now - 10)
        try fixture.delete(store, "b", at: fixture.now - 5)
        #expect(store.nextSweepDue(policy: fixture.policy) == fixture.now + 60 * second)
        #expect(try store.sweep(policy: fixture.policy, now: fixture.now + 59 * second).isEmpty)
        let events = try store.sweep(policy: fixture.policy, now: fixture.now + 60 * second)
        #expect(events == [.expired(try FileName("a"))])
        #expect(fixture.content("a") == nil)
        #expect(store.current(try FileName("a"))?.state == .expired)
        let later = fixture.now + fixture.policy.tombstoneRetention + 61 * second
        let forgotten = try store.sweep(policy: fixture.policy, now: later)
        #expect(Set(forgotten.map(\.description)).count == 2)
        #expect(store.list().isEmpty)
        #expect(store.records.names.isEmpty)
        #expect(try fixture.open(at: later).list().isEmpty)
    }
}

/// Issue 14.5 and 14.6: nothing older comes back, damaged content keeps its record, and an
/// unchanged file is trusted at start by size, mtime and inode.
@Suite struct HighWaterTests {
    static let second: Int64 = 1_000_000_000

    @Test func anOlderVersionIsRefusedAfterTheTombstoneIsForgottenAndAfterARestart() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let name = try FileName("a")
        try fixture.put(store, "a", "v1", at: fixture.now - 20)
        try fixture.delete(store, "a", at: fixture.now - 10)
        let later = fixture.now + fixture.policy.tombstoneRetention + 60 * Self.second
        #expect(try store.sweep(policy: fixture.policy, now: later) == [.forgot(name)])
        #expect(store.current(name) == nil)
        #expect(store.highWater(name)?.timestamp == fixture.now - 10)

        // v1 was signed and handed out by GET: offered again, it must not come back.
        let replay = try fixture.version("a", "v1", at: fixture.now - 20)
        let upload = try store.makeUpload()
        defer { upload.discard() }
        try Array("v1".utf8).withUnsafeBytes { try upload.write($0) }
        try upload.finish()
        let policy = fixture.policy
        let result = try store.commit(replay, content: upload) { policy.evaluate(replay, current: $0, now: later) }
        #expect(result == .refused(.stale(name, held: fixture.now - 10)))

        // The same after a restart.
        let reopened = try fixture.open(at: later)
        #expect(reopened.highWater(name)?.timestamp == fixture.now - 10)
        let again = try reopened.makeUpload()
        defer { again.discard() }
        try Array("v1".utf8).withUnsafeBytes { try again.write($0) }
        try again.finish()
        #expect(
            try reopened.commit(replay, content: again) { policy.evaluate(replay, current: $0, now: later) }
                == .refused(.stale(name, held: fixture.now - 10)))

        // A newer version is welcome, and the mark goes when the name is no longer configured.
        let newer = try fixture.version("a", "v2", at: fixture.now - 5)
        let fresh = try reopened.makeUpload()
        defer { fresh.discard() }
        try Array("v2".utf8).withUnsafeBytes { try fresh.write($0) }
        try fresh.finish()
        guard
            case .stored = try reopened.commit(
                newer, content: fresh, check: { policy.evaluate(newer, current: $0, now: later) })
        else {
            Issue.record("newer version refused")
            return
        }
        var unconfigured = fixture
        unconfigured.policy.allowedSigners[name] = nil
        try fixture.delete(reopened, "a", at: fixture.now - 1)
        _ = try reopened.sweep(policy: fixture.policy, now: later + fixture.policy.tombstoneRetention)
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.dir + "/marks").count == 1)
        let dropped = try unconfigured.open(at: later)
        #expect(dropped.highWater(name) == nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.dir + "/marks").isEmpty)
    }

    @Test func damagedContentKeepsItsRecordAndTakesExactlyThatVersionBack() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let name = try FileName("a")
        try fixture.put(store, "a", "original", at: fixture.now - 10)
        let held = try #require(store.current(name))
        // Same size, changed at once: the stat shortcut must still see it (mtime is the signed
        // timestamp, a write behind the daemon's back sets it to now).
        try "evil!!!!".write(toFile: fixture.dir + "/files/a", atomically: false, encoding: .utf8)
        let reopened = try fixture.open()
        #expect(reopened.current(name) == StoredFile(version: held.version, state: .missing))
        #expect(reopened.missing() == [held.version])
        #expect(fixture.content("a") == nil)
        // An older version stays refused; the very same version is taken back.
        #expect(
            try fixture.put(reopened, "a", "older", at: fixture.now - 20)
                == .refused(.stale(name, held: fixture.now - 10)))
        guard case .stored = try fixture.put(reopened, "a", "original", at: fixture.now - 10) else {
            Issue.record("the missing version was not taken back")
            return
        }
        #expect(fixture.content("a") == "original")
        #expect(reopened.current(name)?.state == .content)
    }

    @Test func contentGoneOrChangedInLengthWhileServedIsMarkedMissingWhenOpened() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let (a, b, zone) = (try FileName("a"), try FileName("b"), try FileName("dns/zone"))
        try fixture.put(store, "a", "alpha", at: fixture.now - 10)
        try fixture.put(store, "b", "bravo", at: fixture.now - 10)
        try fixture.put(store, "dns/zone", "zone", at: fixture.now - 10)
        var events = [StoreEvent]()
        #expect(try store.openContent(a, events: &events)?.0.version.name == a)
        #expect(events.isEmpty)
        // Cut short, removed, and replaced by a FIFO (which must not block the open).
        #expect(truncate(fixture.dir + "/files/a", 2) == 0)
        try FileManager.default.removeItem(atPath: fixture.dir + "/files/b")
        try FileManager.default.removeItem(atPath: fixture.dir + "/files/dns/zone")
        #expect(mkfifo(fixture.dir + "/files/dns/zone", 0o600) == 0)
        #expect(try store.openContent(a, events: &events) == nil)
        #expect(try store.openContent(b, events: &events) == nil)
        #expect(try store.openContent(zone, events: &events) == nil)
        #expect(events == [.markedMissing(a), .markedMissing(b), .markedMissing(zone)])
        #expect([a, b, zone].allSatisfy { store.current($0)?.state == .missing })
        #expect(fixture.content("a") == nil && !FileManager.default.fileExists(atPath: fixture.dir + "/files/dns"))
        // Once missing, nothing more to report; the same version is taken back.
        #expect(try store.openContent(a, events: &events) == nil && events.count == 3)
        guard case .stored = try fixture.put(store, "a", "alpha", at: fixture.now - 10) else {
            Issue.record("the missing version was not taken back")
            return
        }
        #expect(try store.openContent(a, events: &events) != nil)
        // Grown behind the daemon's back.
        try fixture.write("++", into: "files/a", atEnd: true)
        #expect(try store.openContent(a, events: &events) == nil && events.last == .markedMissing(a))
        // An empty folder in its place: removed, so the version can be put back.
        guard case .stored = try fixture.put(store, "a", "alpha", at: fixture.now - 10) else {
            Issue.record("the missing version was not taken back")
            return
        }
        try FileManager.default.removeItem(atPath: fixture.dir + "/files/a")
        try FileManager.default.createDirectory(atPath: fixture.dir + "/files/a", withIntermediateDirectories: false)
        #expect(try store.openContent(a, events: &events) == nil && events.last == .markedMissing(a))
        #expect(!FileManager.default.fileExists(atPath: fixture.dir + "/files/a"))
        // What was marked survives a restart.
        #expect(try fixture.open().current(b)?.state == .missing)
    }

    /// Content whose file changed since it was verified (ctime or inode) is hashed as it is read:
    /// the read that would end it throws instead of handing out its last bytes when they do not
    /// complete the signed hash, and the content is marked missing; content that still matches
    /// is trusted from then on. Content trusted when opened is hashed only if its file changed
    /// by the time its last bytes are read.
    /// The periodic look-over finds what changed behind the store's back although nobody read
    /// it: a touched file that still matches is trusted again, damaged, grown and removed ones
    /// are marked missing; untouched files are not hashed at all.
    @Test func theLookOverMarksChangedContentMissingWithoutAReader() throws {
        var fixture = try StoreFixture()
        defer { fixture.remove() }
        let signer = try SignerKey(bytes: Array(fixture.key.publicKey.rawRepresentation))
        for name in ["c", "d", "e", "f", "g", "h"] { fixture.policy.allowedSigners[try FileName(name)] = [signer] }
        let store = try fixture.open()
        for name in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            guard case .stored = try fixture.put(store, name, name == "f" ? "" : "alpha", at: fixture.now - 10) else {
                Issue.record("\(name) was not stored")
                return
            }
        }
        #expect(store.lookOver().isEmpty)
        #expect(chmod(fixture.dir + "/files/a", 0o600) == 0)  // its ctime only
        try fixture.write("ALPHA", into: "files/b")
        try fixture.write("!", into: "files/c", atEnd: true)
        #expect(unlink(fixture.dir + "/files/d") == 0)
        // An empty version's file replaced by a FIFO (not waited on), and a file by a symbolic
        // link to the same bytes (not followed).
        #expect(unlink(fixture.dir + "/files/f") == 0 && mkfifo(fixture.dir + "/files/f", 0o640) == 0)
        try "alpha".write(toFile: fixture.dir + "/elsewhere", atomically: true, encoding: .utf8)
        #expect(
            unlink(fixture.dir + "/files/g") == 0 && symlink(fixture.dir + "/elsewhere", fixture.dir + "/files/g") == 0)
        // A folder with a file in it where a file belongs: marked missing, the folder left as it
        // is, and the other names looked over all the same.
        #expect(unlink(fixture.dir + "/files/h") == 0 && mkdir(fixture.dir + "/files/h", 0o750) == 0)
        try "inner".write(toFile: fixture.dir + "/files/h/inner", atomically: true, encoding: .utf8)
        let events = store.lookOver()
        #expect(events.count == 6, "\(events)")
        for name in ["b", "c", "d", "f", "g", "h"] {
            #expect(events.contains(.markedMissing(try FileName(name))), "\(events)")
        }
        #expect(FileManager.default.fileExists(atPath: fixture.dir + "/files/h/inner"))
        #expect(store.current(try FileName("a"))?.state == .content && fixture.content("a") == "alpha")
        #expect(store.current(try FileName("e"))?.state == .content)
        for name in ["b", "c", "d", "f", "g"] {
            #expect(store.current(try FileName(name))?.state == .missing && fixture.content(name) == nil, "\(name)")
        }
        var none = [StoreEvent]()
        #expect(try store.openContent(try FileName("a"), events: &none)?.1.check?.trusted == true)
        #expect(store.lookOver().isEmpty)
        // A restart with that folder still there, and another held file become such a folder
        // meanwhile: the store opens, both names missing.
        #expect(unlink(fixture.dir + "/files/e") == 0 && mkdir(fixture.dir + "/files/e", 0o750) == 0)
        try "inner".write(toFile: fixture.dir + "/files/e/inner", atomically: true, encoding: .utf8)
        let reopened = try fixture.open()
        #expect(reopened.current(try FileName("h"))?.state == .missing)
        #expect(reopened.current(try FileName("e"))?.state == .missing)
        #expect(reopened.current(try FileName("a"))?.state == .content)
    }

    @Test func contentChangedSinceItWasVerifiedIsHashedWhileReadAndNotServedWhenWrong() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let (a, b) = (try FileName("a"), try FileName("b"))
        try fixture.put(store, "a", "alpha", at: fixture.now - 10)
        try fixture.put(store, "b", "bravo", at: fixture.now - 10)
        final class Reported: @unchecked Sendable {  // `events` only under `lock`
            let lock = NSLock()
            var events = [StoreEvent]()
            func append(_ event: StoreEvent) { lock.withLock { events.append(event) } }
            var all: [StoreEvent] { lock.withLock { events } }
        }
        let reported = Reported()
        var events = [StoreEvent]()
        func open(_ name: FileName) throws -> ContentReader? {
            try store.openContent(name, events: &events) { reported.append($0) }?.1
        }
        // As committed: trusted, read without hashing.
        let committed = try #require(try open(a))
        #expect(committed.check?.trusted == true)
        #expect(String(buffer: try committed.read(at: 0, upTo: 5)) == "alpha")
        // The same bytes written again in place (ctime changes): hashed once, then trusted.
        try fixture.write("alpha", into: "files/a")
        let rewritten = try #require(try open(a))
        #expect(rewritten.check?.trusted == false)
        #expect(String(buffer: try rewritten.read(at: 0, upTo: 3)) == "alp")
        #expect(String(buffer: try rewritten.read(at: 3, upTo: 2)) == "ha")
        #expect(try open(a)?.check?.trusted == true)
        // Trusted when opened, then touched while read: looked at again at the end, still good.
        let touched = try #require(try open(a))
        #expect(String(buffer: try touched.read(at: 0, upTo: 3)) == "alp")
        #expect(chmod(fixture.dir + "/files/a", 0o600) == 0)
        #expect(String(buffer: try touched.read(at: 3, upTo: 2)) == "ha")
        #expect(try open(a)?.check?.trusted == true && reported.all.isEmpty)
        // Trusted when opened, then damaged while read: its last bytes are not handed out.
        let racing = try #require(try open(a))
        #expect(String(buffer: try racing.read(at: 0, upTo: 3)) == "alp")
        try fixture.write("ALP", into: "files/a")
        #expect(throws: ContentCheck.Mismatch.self) { try racing.read(at: 3, upTo: 2) }
        #expect(reported.all == [.markedMissing(a)] && store.current(a)?.state == .missing)
        guard case .stored = try fixture.put(store, "a", "alpha", at: fixture.now - 10) else {
            Issue.record("the missing version was not taken back")
            return
        }
        // Changed bytes of the same length: the first chunk is read, the last is not handed out.
        try fixture.write("BRA", into: "files/b")
        let damaged = try #require(try open(b))
        #expect(String(buffer: try damaged.read(at: 0, upTo: 3)) == "BRA")
        #expect(throws: ContentCheck.Mismatch.self) { try damaged.read(at: 3, upTo: 2) }
        #expect(reported.all == [.markedMissing(a), .markedMissing(b)] && events.isEmpty)
        #expect(store.current(b)?.state == .missing && fixture.content("b") == nil)
        #expect(try open(b) == nil)
        // After a restart, content the start took on trust by its stat is trusted for serving
        // once the background check hashed it.
        let reopened = try fixture.open()
        var again = [StoreEvent]()
        #expect(try reopened.openContent(a, events: &again)?.1.check?.trusted == false)
        #expect(reopened.verify().isEmpty)
        #expect(try reopened.openContent(a, events: &again)?.1.check?.trusted == true)
    }

    @Test func whatTheScanTookOnTrustIsVerifiedInTheBackground() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        try fixture.put(store, "a", "alpha", at: fixture.now - 10)
        try fixture.put(store, "b", "bravo", at: fixture.now - 10)
        // A change that keeps size, inode and mtime: the stat cannot see it.
        let path = fixture.dir + "/files/a"
        let before = try #require(FileStat(path: path))
        try fixture.write("ALPHA", into: "files/a")
        let seconds = before.mtime_ns / 1_000_000_000
        let time = timespec(tv_sec: Int(seconds), tv_nsec: Int(before.mtime_ns - seconds * 1_000_000_000))
        var times = [time, time]
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
        #expect(FileStat(path: path) == before)
        // And a record whose signature was altered on disk.
        var record = try #require(try store.records.record(try FileName("b")))
        record.current.version.signature[0] ^= 1
        try store.writeRecord(record)

        let reopened = try fixture.open()
        #expect(reopened.current(try FileName("a"))?.state == .content)
        #expect(reopened.current(try FileName("b")) != nil)
        let events = reopened.verify()
        #expect(events.contains(.markedMissing(try FileName("a"))))
        #expect(events.contains(.dropped(try FileName("b"), because: .damaged)))
        #expect(reopened.current(try FileName("a"))?.state == .missing)
        #expect(reopened.current(try FileName("b")) == nil)
        #expect(reopened.verify().isEmpty)
    }

    @Test func unchangedFilesAreTrustedByStatAndChangedOnesAreHashed() throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        try fixture.put(store, "a", "alpha", at: fixture.now - 10)
        try fixture.put(store, "b", "bravo", at: fixture.now - 10)
        let record = try #require(try store.records.record(try FileName("a")))
        #expect(record.stat != nil)
        #expect(record.stat?.mtime_ns == fixture.now - 10)
        // Replaced by another file of the same size (new inode): hashed and found damaged.
        try "BRAVO".write(toFile: fixture.dir + "/files/b", atomically: true, encoding: .utf8)
        let reopened = try fixture.open()
        #expect(reopened.current(try FileName("a"))?.state == .content)
        #expect(reopened.current(try FileName("b"))?.state == .missing)
    }
}

/// Group commit of directory fsyncs: every caller returns once an fsync covering its rename
/// ran, and a failure reaches the callers it covered.
@Suite struct GroupSyncTests {
    @Test func concurrentRenamesAreAllSynced() throws {
        let dir = NSTemporaryDirectory() + "dm-groupsync-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let group = GroupSync()
        let callers = 64
        let lock = NSLock()
        nonisolated(unsafe) var failures: [String] = []
        DispatchQueue.concurrentPerform(iterations: callers) { index in
            do {
                try DiskIO.writeFileAtomically(dir + "/f\(index)", bytes: [UInt8(index)])
                try group.sync(dir)
            } catch {
                lock.withLock { failures.append("\(error)") }
            }
        }
        #expect(failures.isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).count == callers)
        #expect(group.trackedDirectories == 0, "the entry of a directory nobody waits on is dropped")
    }

    @Test func aFailingFsyncIsReportedToItsCaller() {
        let group = GroupSync()
        #expect(throws: DiskError.self) { try group.sync("/nonexistent-\(UUID().uuidString)") }
    }
}

@Suite struct MetaRecordJSONTests {
    /// Strings JSON must escape, and ones it must not.
    static let awkward = [
        "", "plain", "a/b", "quote\"back\\slash", "\u{0}\u{1}\u{7}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1f} \u{7f}",
        "é ü 日本 🙂", "</script>",
    ]

    @Test func theHandWrittenRecordIsWhatJSONEncoderWrites() throws {
        let key = Curve25519.Signing.PrivateKey()
        let signer = try SignerKey(bytes: Array(key.publicKey.rawRepresentation))
        var records: [MetaRecord] = []
        for (index, networkID) in Self.awkward.enumerated() {
            let version = FileVersion(
                kind: index % 3 == 0 ? .tombstone : .content, networkID: networkID, name: try FileName("dns/zone"),
                timestamp: index % 2 == 0 ? 1_800_000_000_000_000_000 + Int64(index) : -5,
                validFor: UInt64(index) << 60,
                contentSHA256: (0..<32).map { UInt8(($0 * 7 + index) & 0xFF) },
                contentLength: UInt64.max - UInt64(index),
                signer: signer, signature: (0..<64).map { UInt8(($0 * 13 + index) & 0xFF) })
            let stat = index % 3 == 1 ? FileStat(size: 1024, mtime_ns: -1, inode: UInt64.max) : nil
            let states: [StoredFile.State] = [.content, .tombstone, .expired, .missing]
            let replaced: [MetaRecord.Replaced?] =
                [nil, .nothing] + states.map { .held(StoredFile(version: version, state: $0)) }
            for state in states {
                records.append(
                    MetaRecord(
                        current: StoredFile(version: version, state: state), replaced: replaced[index % replaced.count],
                        stat: stat))
            }
        }
        for record in records {
            let encoded = record.encoded()
            #expect(encoded == record.encodedByEncoder(), "\(String(decoding: encoded, as: UTF8.self))")
            #expect(MetaRecord.decode(encoded) == record)
        }
    }
}

extension MetaRecord {
    /// The record's JSON written by `JSONEncoder` (the reference `encoded()` is tested against).
    func encodedByEncoder() -> [UInt8] {
        var previousState: String? = nil
        switch replaced {
        case .nothing?: previousState = "none"
        case .held(let held)? where held.state != .content: previousState = held.state.rawValue
        default: break
        }
        let json = RecordJSON(
            format: 1, state: current.state, version: VersionJSON(current.version),
            previous: replacedVersion.map(VersionJSON.init), previous_state: previousState, content_stat: stat)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding plain strings and integers cannot fail.
        return Array((try? encoder.encode(json)) ?? Data())
    }
}
