import Crypto
import DataMesherCore
import Dispatch
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What a node holds for one name.
public struct StoredFile: Sendable, Equatable {
    public enum State: String, Sendable, Codable {
        /// The content is at `files/NAME`.
        case content
        /// Deleted by a signed tombstone.
        case tombstone
        /// Past `timestamp + valid_for`; the content was removed.
        case expired
        /// The content was found damaged (or gone) behind the daemon's back: the record is kept
        /// so nothing older comes back, and exactly this version may be stored again.
        case missing
    }

    public var version: FileVersion
    public var state: State

    public init(version: FileVersion, state: State) {
        self.version = version
        self.state = state
    }

    public var isServed: Bool { state == .content }
}

/// Outcome of a commit attempt.
public enum CommitResult: Sendable, Equatable {
    case stored(StoredFile)
    case refused(Refusal)
}

/// Something the store did on its own (startup scan, expiry), for the log.
public enum StoreEvent: Sendable, Equatable, CustomStringConvertible {
    case droppedDamaged(FileName)
    case markedMissing(FileName)
    case dropped(FileName, because: DropReason)
    case rolledBack(FileName)
    case removedOrphan(String)
    case droppedDamagedRecords(Int)
    case adoptedLegacyRecords(Int)
    case expired(FileName)
    case forgot(FileName)
    /// The records file needs a rewrite (damaged lines) that a full disk refused at start; the
    /// node starts anyway and rewrites it at the next change once there is room.
    case recordsNotRewritten(String)

    /// Why a held version was dropped at start or by the background check.
    public enum DropReason: Sendable, Equatable {
        /// The name is no longer in `[files]`.
        case nameNotConfigured
        /// Its signer is no longer listed for the name.
        case signerNotConfigured(SignerKey)
        /// It was signed for another `network_id`.
        case otherNetwork(String)
        /// Its record is damaged: the signature does not verify, or the replaced version it names is another name's.
        case damaged
    }

    /// A short label for the log's `dm.event` (the message is `description`).
    public var kind: String {
        switch self {
        case .droppedDamaged: return "dropped_damaged"
        case .markedMissing: return "marked_missing"
        case .dropped(_, because: .damaged): return "dropped_damaged_record"
        case .dropped: return "dropped_unconfigured"
        case .rolledBack: return "rolled_back"
        case .removedOrphan: return "removed_orphan"
        case .droppedDamagedRecords: return "dropped_damaged_records"
        case .adoptedLegacyRecords: return "adopted_legacy_records"
        case .expired: return "expired"
        case .forgot: return "forgot"
        case .recordsNotRewritten: return "records_not_rewritten"
        }
    }

    public var description: String {
        switch self {
        case .droppedDamaged(let name): return "dropped \"\(name)\": content does not match its signed hash"
        case .markedMissing(let name):
            return
                "content of \"\(name)\" is damaged or gone: record kept, content marked missing until this version is fetched again"
        case .dropped(let name, because: let reason):
            let why: String
            switch reason {
            case .nameNotConfigured: why = "the name is no longer in [files]"
            case .signerNotConfigured(let signer):
                why =
                    "its signer \(signer.base64) is no longer listed for it in [files] (sign the name with a listed key before removing the old one)"
            case .otherNetwork(let network): why = "it was signed for network_id \"\(network)\", not this node's"
            case .damaged: why = "its record is damaged (the signature does not verify)"
            }
            return "dropped \"\(name)\" and its content: \(why)"
        case .rolledBack(let name): return "rolled back an unacknowledged update of \"\(name)\""
        case .removedOrphan(let path): return "removed \(path): no signed version refers to it"
        case .droppedDamagedRecords(let count):
            return "dropped \(count) damaged line(s) of the records file; names left without a record are fetched again"
        case .adoptedLegacyRecords(let count):
            return "moved \(count) record(s) from meta/ (written by an older data-mesher) into the records file"
        case .expired(let name): return "\"\(name)\" expired (valid_for passed); content removed"
        case .forgot(let name): return "forgot the tombstone of \"\(name)\" (tombstone_retention passed)"
        case .recordsNotRewritten(let error):
            return
                "the records file holds damaged lines and could not be rewritten (\(error)); it is rewritten at the next change once there is room"
        }
    }
}

/// The files a node holds, on disk under `stateDir` (SPEC §7):
///
///     files/NAME              current content, 0640, replaced atomically
///     records                 one line per change of a name's record: the signed version (and the
///                             one before it, until the content is in place); `RecordLog`
///     tmp/                    uploads being received
///     marks/<sha256(NAME)>    high-water mark (timestamp, signature) of a forgotten record
///     lock                    flock'd by the running daemon (StateDirLock)
///     node_id                 this node's identity
///
/// Commit order: record (naming what it replaces: a version in any state, or nothing) appended
/// to `records` -> content fsynced in tmp/ -> record synced -> content renamed into place ->
/// directory fsynced -> acknowledged. A crash before the rename leaves at most a record whose
/// replaced version (or absence) matches what is on disk; the startup scan rolls it back, so a
/// restarted node holds exactly the last acknowledged version, deletion or absence.
///
/// All methods block on disk I/O; call them off the cooperative thread pool.
public final class FileStore: Sendable {
    public let stateDir: String
    let logger: Logger
    public let filesDir: String
    /// Where data-mesher before the records file kept one record per name; moved into it at start.
    let legacyMetaDir: String
    let tmpDir: String
    let marksDir: String
    let records: RecordLog
    let index = NIOLockedValueBox<[FileName: StoredFile]>([:])
    /// For names whose record was forgotten (tombstone_retention): the newest version ever
    /// accepted, so an older one is refused for as long as the name is configured.
    let marks = NIOLockedValueBox<[FileName: HighWater]>([:])
    /// What the startup scan took on trust, for `verify`: records whose signature is not
    /// checked yet, and content trusted by its size, mtime and inode.
    let unverified = NIOLockedValueBox<(signatures: Set<FileName>, contents: Set<FileName>)>(([], []))
    /// How each content file looked when its bytes were last found to match their version (at
    /// its commit, by a hash at start or by `verify`, or while served): one that looks otherwise
    /// when opened is hashed while it is served (`ContentCheck`).
    let verifiedContent = NIOLockedValueBox<[FileName: ContentIdentity]>([:])
    /// Commits and reads of one name are serialized by the stripe its name hashes to.
    let stripes: [NIOLock] = (0..<64).map { _ in NIOLock() }

    /// Replaced or removed content of at least this many bytes is freed on another thread
    /// (`retire`); freeing less costs less than handing it over.
    static let retireFrom: UInt64 = 1 << 20
    /// Content from this size on is flushed before the commit takes its name's stripe lock;
    /// smaller content is flushed under it, while the records file syncs the new record.
    static let flushOutsideLockFrom: UInt64 = 1 << 20

    /// The folders under the state directory the daemon writes into (made at start); `files`,
    /// `tmp` and `marks` are `filesDir`, `tmpDir` and `marksDir`.
    public static let writtenFolders = ["files", "tmp", "marks"]

    /// Opens (creating if needed) the state directory and checks everything it holds.
    public init(stateDir: String, policy: FilePolicy, now: Int64, logger: Logger) throws {
        self.stateDir = stateDir
        self.logger = logger
        filesDir = stateDir + "/files"
        legacyMetaDir = stateDir + "/meta"
        tmpDir = stateDir + "/tmp"
        marksDir = stateDir + "/marks"
        for dir in [stateDir] + Self.writtenFolders.map({ stateDir + "/" + $0 }) {
            try DiskIO.makeDirectories(dir)
            // Found now, not at the first upload (a folder made by another user, read-only).
            guard access(dir, W_OK | X_OK) == 0 else { throw DiskError("write into", dir) }
        }
        records = try RecordLog(directory: stateDir)
        for event in try scan(policy: policy, now: now) {
            logger.warning("\(event.description)", metadata: ["dm.event": "\(event.kind)"])
        }
    }

    // MARK: Reading

    public func current(_ name: FileName) -> StoredFile? { index.withLockedValue { $0[name] } }

    /// The newest version ever accepted for `name`: the one held, or the mark left when its
    /// record was forgotten. A version not newer than this is refused.
    public func highWater(_ name: FileName) -> HighWater? {
        if let held = current(name) { return HighWater(held.version) }
        return marks.withLockedValue { $0[name] }
    }

    /// Versions whose record is kept but whose content is missing (damaged on disk): the
    /// cluster should fetch exactly these versions again; `commit` accepts them.
    public func missing() -> [FileVersion] { list().filter { $0.state == .missing }.map(\.version) }

    /// Everything held, sorted by name.
    public func list() -> [StoredFile] {
        index.withLockedValue { Array($0.values) }.sorted { $0.version.name < $1.version.name }
    }

    public func contentPath(_ name: FileName) -> String { filesDir + "/" + name.value }

    /// Opens the current content for reading: the descriptor stays valid even if a newer
    /// version replaces the file meanwhile. Nil when the name holds no content, and when its file
    /// is gone, not a regular file, or not the version's length (cut short or grown behind the
    /// daemon's back): that content is marked missing, and `events` says so. The reader's last
    /// bytes are not returned when the content fails its signed hash (`ContentCheck`: hashed as
    /// it is read when its file changed since it was last verified, or when it changes while it
    /// is read); the content is then marked missing and `damaged` is told so (on the reading
    /// thread).
    public func openContent(
        _ name: FileName, events: inout [StoreEvent], damaged: @escaping @Sendable (StoreEvent) -> Void = { _ in }
    ) throws -> (StoredFile, ContentReader)? {
        try stripe(name).withLock { () throws -> (StoredFile, ContentReader)? in
            guard let stored = current(name), stored.isServed else { return nil }
            guard let (fd, opened) = try openContentFile(of: stored.version) else {
                events.append(try markMissing(stored))
                return nil
            }
            let version = stored.version
            let check = ContentCheck(
                expected: version.contentSHA256, opened: opened,
                trusted: verifiedContent.withLockedValue({ $0[name] }) == opened,
                verified: { self.trust(version, as: $0) },
                damaged: { if let event = self.markDamaged(version) { damaged(event) } })
            return (stored, ContentReader(fd: fd, length: Int(version.contentLength), check: check))
        }
    }

    /// Served content of `version` matched its hash: its file, looking as `identity`, is trusted
    /// from now on, if the name still holds that version.
    func trust(_ version: FileVersion, as identity: ContentIdentity) {
        stripe(version.name).withLock {
            guard current(version.name) == StoredFile(version: version, state: .content) else { return }
            verifiedContent.withLockedValue { $0[version.name] = identity }
        }
    }

    /// Served content of `version` did not match its hash: marked missing, if the name still
    /// holds that version. Nil when it does not, or the record could not be written.
    func markDamaged(_ version: FileVersion) -> StoreEvent? {
        let held = StoredFile(version: version, state: .content)
        return stripe(version.name).withLock { () -> StoreEvent? in
            guard current(version.name) == held else { return nil }
            return try? markMissing(held)
        }
    }

    /// Keeps `held`'s record, marked missing, and removes its content, so that the version can
    /// be fetched again and nothing older comes back meanwhile. Called under the name's lock.
    /// Throws only when the record cannot be written, and then changes nothing.
    private func markMissing(_ held: StoredFile) throws -> StoreEvent {
        let name = held.version.name
        let missing = StoredFile(version: held.version, state: .missing)
        try writeRecord(MetaRecord(current: missing))
        // Missing from here on, also should what is on disk resist removal (it is not served,
        // and the next start removes it).
        index.withLockedValue { $0[name] = missing }
        verifiedContent.withLockedValue { $0[name] = nil }
        do { try removeContent(name) } catch {
            logger.warning("cannot remove the damaged content of \(name) now: \(error)")
        }
        return .markedMissing(name)
    }

    // MARK: Writing

    /// A new temporary file in tmp/ for an upload.
    public func makeUpload() throws -> Upload { try Upload(directory: tmpDir) }

    /// Stores `version` if `check` (given the version held now) does not refuse it.
    /// `content` must be finished and match the version's hash and length; nil for a tombstone.
    public func commit(_ version: FileVersion, content: Upload?, check: (FileVersion?) -> Refusal?) throws
        -> CommitResult
    {
        let name = version.name
        if !version.isTombstone {
            guard let content, let digest = content.digest, digest.sha256 == version.contentSHA256,
                digest.length == version.contentLength
            else { return .refused(.contentMismatch(name)) }
            // A big file's flush can take seconds: not under the stripe lock, which reads take too;
            // and not at all for content whose signature fails (the check below refuses it).
            if digest.length >= Self.flushOutsideLockFrom && version.hasValidSignature {
                try content.makeDurable()
            }
        }
        return try stripe(name).withLock { () throws -> CommitResult in
            let held = current(name)
            // A record whose content went missing takes exactly its own version back.
            let refetch = held?.state == .missing && held?.version == version
            if let refusal = check(refetch ? nil : held?.version) { return .refused(refusal) }
            if held == nil, let mark = marks.withLockedValue({ $0[name] }), !mark.isOlder(than: version) {
                return .refused(.stale(name, held: mark.timestamp))
            }
            let stored = StoredFile(version: version, state: version.isTombstone ? .tombstone : .content)
            let replaced: MetaRecord.Replaced = held.map { .held($0) } ?? .nothing
            let replacedLength = held?.state == .content ? held?.version.contentLength ?? 0 : 0
            let stat = content?.stamp(modifiedAt: version.timestamp)
            // Large content replaced or removed below is freed when its last descriptor closes,
            // on another thread; small content is freed by the rename or unlink itself, at once.
            let retired = replacedLength < Self.retireFrom ? -1 : open(contentPath(name), O_RDONLY | O_CLOEXEC)
            defer { Self.retire(retired) }
            // The record goes first and may reach the disk before the content: until the rename,
            // what is on disk is still what it names as replaced. Its sync and the content's flush
            // overlap when other commits are syncing the records file meanwhile.
            let line = try records.appendRecord(MetaRecord(current: stored, replaced: replaced, stat: stat))
            do {
                try content?.makeDurable()
                try records.sync(through: line)
                if let content {
                    try DiskIO.makeDirectories(DiskIO.parent(of: contentPath(name)))
                    try content.moveInto(contentPath(name))
                } else {
                    try removeContent(name)
                }
                // Checked against its hash on its way in: trusted as it now looks.
                let placed = content == nil ? nil : ContentIdentity(path: contentPath(name))
                verifiedContent.withLockedValue { $0[name] = placed }
            } catch {
                // The content did not reach the disk or did not move (a full disk can refuse its
                // flush, the new folder or the directory entry): put the record back as it was,
                // so what is held stays what is served.
                // Should this fail too, the startup scan rolls the record back.
                if let held {
                    try? writeRecord(MetaRecord(current: held))
                } else {
                    try? removeRecord(name)
                }
                throw error
            }
            index.withLockedValue { $0[name] = stored }
            return .stored(stored)
        }
    }

    /// Checks what the startup scan took on trust, one name at a time under its stripe lock: a
    /// record whose signature fails is dropped; content trusted by its stat but not matching its
    /// signed hash is marked missing. Run once in the background after the node serves.
    public func verify() -> [StoreEvent] {
        let (signatures, contents) = unverified.withLockedValue { $0 }
        var events = [StoreEvent]()
        for name in signatures.union(contents).sorted() {
            // One name that cannot be checked does not keep the others' events from the cluster.
            do { try verify(name, events: &events) } catch {
                logger.warning("cannot check what the start took on trust for \(name): \(error)")
            }
        }
        return events
    }

    private func verify(_ name: FileName, events: inout [StoreEvent]) throws {
        try stripe(name).withLock { () throws in
            let pending = unverified.withLockedValue { ($0.signatures.contains(name), $0.contents.contains(name)) }
            unverified.withLockedValue {
                $0.signatures.remove(name)
                $0.contents.remove(name)
            }
            guard let held = current(name) else { return }
            if pending.0 && !held.version.hasValidSignature {
                try removeRecord(name)
                try removeContent(name)
                index.withLockedValue { $0[name] = nil }
                events.append(.dropped(name, because: .damaged))
                return
            }
            guard pending.1, held.state == .content else { return }
            if let identity = try hashedIdentity(of: held.version) {
                verifiedContent.withLockedValue { $0[name] = identity }
                return
            }
            events.append(try markMissing(held))
        }
    }

    /// Looks at each held file that was verified (at its commit, at start or when served) with
    /// one `lstat`: one that changed since is hashed under its name's lock, trusted again when it
    /// still matches its signed hash, and marked missing otherwise (gone, another size or
    /// content), so the cluster fetches the version again. Content nobody reads is so mended
    /// without a restart. Names not verified since the start are `verify`'s.
    public func lookOver() -> [StoreEvent] {
        let verified = verifiedContent.withLockedValue { $0 }
        var events = [StoreEvent]()
        for (name, identity) in verified where ContentIdentity(path: contentPath(name)) != identity {
            // A read error (say, no descriptor left) says nothing of the content, and a record
            // that cannot be written changes nothing: the next look-over tries again.
            do { try lookOver(name, events: &events) } catch {
                logger.warning("cannot look at the content of \(name) now: \(error)")
            }
        }
        return events
    }

    private func lookOver(_ name: FileName, events: inout [StoreEvent]) throws {
        try stripe(name).withLock { () throws in
            guard let held = current(name), held.state == .content,
                let known = verifiedContent.withLockedValue({ $0[name] })
            else { return }
            if ContentIdentity(path: contentPath(name)) == known { return }  // replaced by a commit meanwhile
            if let identity = try hashedIdentity(of: held.version) {
                verifiedContent.withLockedValue { $0[name] = identity }
                return
            }
            events.append(try markMissing(held))
        }
    }

    /// `version`'s content file, open for reading, and how it looks; nil when it is not a
    /// regular file of the version's length (gone, cut short or grown, or a folder, a symbolic
    /// link, which is not followed, or a FIFO, which is not waited on). The caller closes it.
    private func openContentFile(of version: FileVersion) throws -> (fd: Int32, identity: ContentIdentity)? {
        let path = contentPath(version.name)
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else {
            guard [ENOENT, ENOTDIR, ELOOP].contains(errno) else { throw DiskError("open", path) }
            return nil
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let error = DiskError("stat", path)
            close(fd)
            throw error
        }
        guard info.st_mode & S_IFMT == S_IFREG, UInt64(clamping: info.st_size) == version.contentLength else {
            close(fd)
            return nil
        }
        return (fd, ContentIdentity(info))
    }

    /// How `version`'s content file looks, if it is a regular file (`openContentFile`) whose
    /// bytes match the version's hash and length; nil if not. Throws when it cannot be read.
    private func hashedIdentity(of version: FileVersion) throws -> ContentIdentity? {
        guard let (fd, opened) = try openContentFile(of: version) else { return nil }
        defer { close(fd) }
        let path = contentPath(version.name)
        let onDisk = try DiskIO.hash(fd: fd, path: path)
        guard onDisk.sha256 == version.contentSHA256, onDisk.length == version.contentLength else { return nil }
        guard let after = ContentIdentity(fd: fd) else { throw DiskError("stat", path) }
        return after == opened ? opened : nil  // changed while hashed: not trusted
    }

    /// Expires versions past `valid_for` and forgets tombstones past retention.
    public func sweep(policy: FilePolicy, now: Int64) throws -> [StoreEvent] {
        var events = [StoreEvent]()
        for stored in list() {
            let name = stored.version.name
            try stripe(name).withLock { () throws in
                guard let held = current(name), held.version == stored.version else { return }
                if (held.state == .content || held.state == .missing) && policy.isExpired(held.version, now: now) {
                    let expired = StoredFile(version: held.version, state: .expired)
                    try writeRecord(MetaRecord(current: expired))
                    try removeContent(name)
                    index.withLockedValue { $0[name] = expired }
                    events.append(.expired(name))
                } else if held.state != .content && policy.mayForget(held.version, now: now) {
                    // The record goes; its high-water mark stays (written first, so a crash
                    // in between leaves both, never neither).
                    let mark = HighWater(held.version)
                    try writeMark(name, mark)
                    marks.withLockedValue { $0[name] = mark }
                    try removeRecord(name)
                    index.withLockedValue { $0[name] = nil }
                    events.append(.forgot(name))
                }
            }
        }
        return events
    }

    /// The earliest instant at which `sweep` has something to do, if any.
    public func nextSweepDue(policy: FilePolicy) -> Int64? {
        index.withLockedValue { files in
            files.values.compactMap { stored -> Int64? in
                switch stored.state {
                case .content, .missing: return stored.version.expiresAt
                case .tombstone:
                    return FilePolicy.saturatingAdd(stored.version.timestamp, policy.tombstoneRetention)
                case .expired:
                    return FilePolicy.saturatingAdd(
                        stored.version.expiresAt ?? stored.version.timestamp, policy.tombstoneRetention)
                }
            }.min()
        }
    }

    // MARK: Internals

    func stripe(_ name: FileName) -> NIOLock {
        var hash: UInt32 = 2_166_136_261
        for byte in name.value.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return stripes[Int(hash % UInt32(stripes.count))]
    }

    func markPath(_ name: FileName) -> String { marksDir + "/" + Self.hashedName(name) }

    /// The file name kept for `name` in marks/ (and in meta/ by older versions): its SHA-256, hex.
    static func hashedName(_ name: FileName) -> String { Hex.encode(SHA256.hash(data: Array(name.value.utf8))) }

    func writeMark(_ name: FileName, _ mark: HighWater) throws {
        let text = "\(Base64.encode(mark.signature)) \(mark.timestamp) \(name.value)\n"
        try DiskIO.writeFileAtomically(markPath(name), bytes: Array(text.utf8))
    }

    /// Loads marks/, dropping those of names no longer configured (and damaged ones).
    func loadMarks(policy: FilePolicy, events: inout [StoreEvent]) -> [FileName: HighWater] {
        var loaded = [FileName: HighWater]()
        for entry in DiskIO.listDirectory(marksDir) {
            let path = marksDir + "/" + entry.name
            guard !entry.isDirectory, let bytes = try? DiskIO.readFile(path, limit: 4096) else {
                unlink(path)
                continue
            }
            let parts = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: ["\n"])
                .split(separator: " ", maxSplits: 2).map(String.init)
            guard parts.count == 3, let signature = Base64.decode(parts[0]),
                signature.count == FileVersion.signatureLength, let timestamp = Int64(parts[1]),
                let name = try? FileName(parts[2]), markPath(name) == path, policy.allowedSigners[name] != nil
            else {
                unlink(path)
                events.append(.removedOrphan(path))
                continue
            }
            loaded[name] = HighWater(timestamp: timestamp, signature: signature)
        }
        return loaded
    }

    func writeRecord(_ record: MetaRecord) throws { try records.write(record) }

    func removeRecord(_ name: FileName) throws { try records.remove(name) }

    /// Moves the records an older data-mesher kept in meta/ (one file per name, named by the
    /// SHA-256 of the name) into the records file, then removes meta/. A name the records file
    /// already has keeps that record: it was written later.
    func adoptLegacyRecords(events: inout [StoreEvent]) throws -> [MetaRecord] {
        guard access(legacyMetaDir, F_OK) == 0 else { return [] }
        var adopted = [MetaRecord]()
        var paths = [String]()
        for entry in DiskIO.listDirectory(legacyMetaDir) {
            let path = legacyMetaDir + "/" + entry.name
            paths.append(path)
            guard !entry.isDirectory, let bytes = try? DiskIO.readFile(path, limit: RecordLog.lineLimit),
                let record = MetaRecord.decode(bytes),
                entry.name == Self.hashedName(record.current.version.name)
            else {
                events.append(.removedOrphan(path))
                continue
            }
            adopted.append(record)
        }
        let new = try records.adopt(adopted)
        for path in paths {
            if unlink(path) != 0 { rmdir(path) }
        }
        rmdir(legacyMetaDir)
        try DiskIO.fsyncDirectory(stateDir)
        if !new.isEmpty { events.append(.adoptedLegacyRecords(new.count)) }
        return new
    }

    /// Removes `files/NAME` and then any folders that became empty.
    /// Closes a descriptor of replaced or removed content on another thread. The kernel frees a
    /// file's pages and blocks when its last link and descriptor are gone, which for a large file
    /// takes a while (0.1 s for 512 MiB on the test machine); the commit's caller, and the
    /// answer to an upload, need not wait for it. Nothing about durability depends on it.
    static func retire(_ fd: Int32) {
        guard fd >= 0 else { return }
        DispatchQueue.global(qos: .utility).async { close(fd) }
    }

    func removeContent(_ name: FileName) throws {
        let path = contentPath(name)
        if unlink(path) != 0 {
            guard errno == EISDIR else {
                guard errno == ENOENT || errno == ENOTDIR else { throw DiskError("unlink", path) }
                return
            }
            // A folder where the file belongs (made behind the daemon's back) goes too when it
            // is empty. One with something in it stays: that may be other names' content
            // ("NAME/…"), and until it goes, storing this name fails and says why.
            guard rmdir(path) == 0 else {
                guard errno == ENOTEMPTY || errno == EEXIST else { throw DiskError("rmdir", path) }
                return
            }
        }
        var directory = DiskIO.parent(of: path)
        try DiskIO.fsyncDirectory(directory)
        while directory.count > filesDir.count, rmdir(directory) == 0 {
            directory = DiskIO.parent(of: directory)
        }
    }

    /// What `record` names as replaced by an update that may not be in place, when that can be
    /// held again: same name and network, a signer still configured and a valid signature.
    func restorable(_ record: MetaRecord, policy: FilePolicy) -> StoredFile? {
        guard case .held(let prior)? = record.replaced, prior.version.name == record.current.version.name,
            prior.version.networkID == policy.networkID,
            policy.allowedSigners[prior.version.name]?.contains(prior.version.signer) == true,
            prior.version.hasValidSignature
        else { return nil }
        return prior
    }

    /// Startup: clears tmp/, loads and verifies every record against policy and disk.
    func scan(policy: FilePolicy, now: Int64) throws -> [StoreEvent] {
        var events = [StoreEvent]()
        for entry in DiskIO.listDirectory(tmpDir) { unlink(tmpDir + "/" + entry.name) }
        if records.damagedAtOpen > 0 { events.append(.droppedDamagedRecords(records.damagedAtOpen)) }
        var recorded = records.takeLoaded()
        for record in try adoptLegacyRecords(events: &events) { recorded[record.current.version.name] = record }
        var loaded = [FileName: StoredFile]()
        var trusted = Set<FileName>()
        for (name, record) in recorded.sorted(by: { $0.key < $1.key }) {
            let version = record.current.version
            // Signatures are checked by `verify` once the node serves (this daemon checked each one
            // before it wrote the record; 20,000 checks would hold up the start by seconds).
            let dropReason: StoreEvent.DropReason? =
                if policy.allowedSigners[name] == nil {
                    .nameNotConfigured
                } else if policy.allowedSigners[name]?.contains(version.signer) != true {
                    .signerNotConfigured(version.signer)
                } else if version.networkID != policy.networkID {
                    .otherNetwork(version.networkID)
                } else if record.replacedVersion.map({ $0.name != name }) == true {
                    .damaged
                } else {
                    nil
                }
            if let dropReason {
                try removeRecord(name)
                try removeContent(name)
                events.append(.dropped(name, because: dropReason))
                continue
            }
            switch record.current.state {
            case .content:
                if let remembered = record.stat, remembered.size == version.contentLength,
                    FileStat(path: contentPath(name)) == remembered
                {
                    // Unchanged since it was committed (size, mtime and inode): not re-hashed
                    // now, but by `verify` in the background.
                    loaded[name] = record.current
                    trusted.insert(name)
                    continue
                }
                let identity = ContentIdentity(path: contentPath(name))
                let onDisk = try DiskIO.hashFile(contentPath(name))
                let isCurrent = onDisk.map { $0.sha256 == version.contentSHA256 && $0.length == version.contentLength }
                let prior = isCurrent == true ? nil : restorable(record, policy: policy)
                if isCurrent == true {
                    loaded[name] = record.current
                    verifiedContent.withLockedValue { $0[name] = identity }
                    // Remember what the verified file looks like, so the next start can skip it.
                    if let stat = FileStat(path: contentPath(name)) {
                        try? writeRecord(MetaRecord(current: record.current, stat: stat))
                    }
                } else if let prior, prior.state == .content, let onDisk,
                    onDisk.sha256 == prior.version.contentSHA256, onDisk.length == prior.version.contentLength
                {
                    // Stopped before the update's rename: the file is still the replaced content.
                    try writeRecord(MetaRecord(current: prior, stat: FileStat(path: contentPath(name))))
                    loaded[name] = prior
                    events.append(.rolledBack(name))
                } else if let prior, prior.state != .content, onDisk == nil {
                    // The update replaced a deletion (or an expired or missing version): that holds again.
                    try writeRecord(MetaRecord(current: prior))
                    loaded[name] = prior
                    events.append(.rolledBack(name))
                } else if record.replaced == .nothing, onDisk == nil {
                    // The update was the name's first: the name holds nothing again.
                    try removeRecord(name)
                    events.append(.rolledBack(name))
                } else {
                    let missing = StoredFile(version: version, state: .missing)
                    try writeRecord(MetaRecord(current: missing))
                    try removeContent(name)
                    loaded[name] = missing
                    events.append(.markedMissing(name))
                }
            case .tombstone, .expired, .missing:
                try removeContent(name)
                loaded[name] = record.current
            }
        }
        try removeOrphans(in: filesDir, prefix: "", keep: loaded, events: &events)
        do {
            try records.compactIfNeeded()
        } catch let error as DiskError where error.isDiskFull {
            // What the file holds was read; serving it need not wait for room to rewrite it.
            events.append(.recordsNotRewritten("\(error)"))
        }
        let loadedMarks = loadMarks(policy: policy, events: &events)
        marks.withLockedValue { $0 = loadedMarks }
        index.withLockedValue { $0 = loaded }
        unverified.withLockedValue { $0 = (signatures: Set(loaded.keys), contents: trusted) }
        return events + (try sweep(policy: policy, now: now))
    }

    func removeOrphans(in directory: String, prefix: String, keep: [FileName: StoredFile], events: inout [StoreEvent])
        throws
    {
        for entry in DiskIO.listDirectory(directory) {
            let path = directory + "/" + entry.name
            let relative = prefix.isEmpty ? entry.name : prefix + "/" + entry.name
            if entry.isDirectory {
                try removeOrphans(in: path, prefix: relative, keep: keep, events: &events)
                rmdir(path)  // only succeeds when empty
                continue
            }
            if let name = try? FileName(relative), keep[name]?.isServed == true, DiskIO.isRegularFile(path) { continue }
            unlink(path)
            events.append(.removedOrphan(path))
        }
    }
}

extension String {
    func trimmingCharacters(in set: Set<Character>) -> String {
        var text = Substring(self)
        while let first = text.first, set.contains(first) { text = text.dropFirst() }
        while let last = text.last, set.contains(last) { text = text.dropLast() }
        return String(text)
    }
}
