import Crypto
import DataMesherCore
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The metadata records of every name, in one append-only file, `<state_dir>/records`.
///
/// Each line is `<checksum> <json>`: the first 16 hex digits of the SHA-256 of the JSON, a space,
/// then either a `MetaRecord` or `{"removed":"NAME"}`. The last good line for a name holds; a
/// line whose checksum fails, or that does not decode, is dropped (a torn last line is one that
/// was never acknowledged).
///
/// `write` appends a line and returns once it is durable. Appends of concurrent callers share
/// their `fdatasync` (group commit): a caller waits for the first sync that begins after its
/// line was written, which one of the waiting callers runs for all of them. So an upload costs
/// one `write` and a share of one sync here, instead of a new file, its fsync, a rename and a
/// share of a directory fsync.
///
/// When the file has grown to twice what its live records need (and past `compactFrom`), the
/// next append first rewrites it with one line per name (temporary file, fsync, rename, fsync
/// of the folder). So does an append after a write or sync of this file failed, since the file's
/// end is then unknown. Only where each name's last line lies is kept in memory (the records
/// themselves are in `FileStore`'s index); a rewrite copies those lines from the file.
final class RecordLog: @unchecked Sendable {  // every mutable field is guarded by `mutex`
    enum Line: Equatable {
        case record(MetaRecord)
        case removed(FileName)
    }

    /// Where a line lies in the file, newline included.
    struct Position {
        var offset: UInt64
        var length: Int
    }

    /// What `read` found in the file.
    struct Contents {
        var records: [FileName: MetaRecord] = [:]
        var positions: [FileName: Position] = [:]
        /// Lines dropped: a bad checksum, undecodable JSON, too long, or an unfinished last line.
        var damagedLines = 0
        /// Bytes in the file.
        var size: UInt64 = 0
    }

    static let fileName = "records"
    /// The longest line read back; longer lines are dropped as damaged.
    static let lineLimit = 64 * 1024
    /// Below this size the file is never compacted.
    static let compactFrom: UInt64 = 1 << 20

    let path: String
    let directory: String

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var fd: Int32
    private var size: UInt64
    /// Where the last line of every name that has a record lies: what a rewrite keeps.
    private var live: [FileName: Position] = [:]
    private var liveBytes: UInt64 = 0
    /// The records read when the file was opened, until `takeLoaded` hands them over.
    private var loaded: [FileName: MetaRecord]
    /// Lines appended, and how many of them are known to be on disk.
    private var appended: UInt64 = 0
    private var durable: UInt64 = 0
    private var syncing = false
    /// The file must be rewritten before the next append (a write or sync failed, or it was
    /// loaded with damaged lines).
    private var needsRewrite: Bool
    /// Syncs that failed: the lines they covered, and the error (the last few only).
    private var failures: [(lines: ClosedRange<UInt64>, code: Int32)] = []

    /// Opens (creating if needed) `<directory>/records` for appending and reads what it holds.
    init(directory: String) throws {
        self.directory = directory
        path = directory + "/" + Self.fileName
        for entry in DiskIO.listDirectory(directory) where entry.name.hasPrefix(Self.fileName + ".tmp-") {
            unlink(directory + "/" + entry.name)
        }
        let existed = access(path, F_OK) == 0
        fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, DiskIO.fileMode)
        guard fd >= 0 else { throw DiskError("open", path) }
        if !existed { try DiskIO.fsyncDirectory(directory) }
        let contents: Contents
        do {
            contents = try Self.read(fd: fd, path: path)
        } catch {
            close(fd)
            throw error
        }
        size = contents.size
        needsRewrite = contents.damagedLines > 0
        damagedAtOpen = contents.damagedLines
        loaded = contents.records
        live = contents.positions
        liveBytes = live.values.reduce(0) { $0 + UInt64($1.length) }
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
    }

    /// Lines dropped when the file was opened (they are gone from it at the next rewrite).
    let damagedAtOpen: Int

    deinit {
        close(fd)
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        changed.deallocate()
    }

    /// The records read when the file was opened (once; empty after).
    func takeLoaded() -> [FileName: MetaRecord] {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        defer { loaded = [:] }
        return loaded
    }

    /// The last record written for `name`, read back from the file.
    func record(_ name: FileName) throws -> MetaRecord? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard let position = live[name] else { return nil }
        guard case .record(let record) = Self.decode(line: try readLine(at: position).dropLast()) else {
            throw DiskError("read", path, code: EIO)
        }
        return record
    }

    /// Names that have a record now.
    var names: Set<FileName> {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return Set(live.keys)
    }

    /// Appends `record` and returns once it is durable.
    func write(_ record: MetaRecord) throws { try append(.record(record)) }

    /// Appends the removal of `name`'s record and returns once it is durable.
    func remove(_ name: FileName) throws { try append(.removed(name)) }

    /// Appends those of `adopted` whose names have no record yet, with one sync for all; returns
    /// them.
    func adopt(_ adopted: [MetaRecord]) throws -> [MetaRecord] {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        let new = adopted.filter { live[$0.current.version.name] == nil }
        for record in new { _ = try appendLine(.record(record)) }
        try waitUntilDurable(appended)
        return new
    }

    /// Rewrites the file now if it holds damaged lines or has outgrown its records.
    func compactIfNeeded() throws {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if needsRewrite || isOversized { try rewrite() }
    }

    /// The file's size, the bytes its live records need, and how many names have one.
    var stats: (size: UInt64, liveBytes: UInt64, names: Int) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return (size, liveBytes, live.count)
    }

    // MARK: Writing

    private var isOversized: Bool { size >= Self.compactFrom && size / 2 > liveBytes }

    private func append(_ line: Line) throws {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        try waitUntilDurable(try appendLine(line))
    }

    /// Appends `record` without waiting for it to be durable; returns its sequence number, for
    /// `sync(through:)`. Lets a caller flush other files while a sync of this one (its own or
    /// another caller's) covers the line.
    func appendRecord(_ record: MetaRecord) throws -> UInt64 {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try appendLine(.record(record))
    }

    /// Returns once line `sequence` (from `appendRecord`) is durable; throws the error of the sync
    /// that covered it.
    func sync(through sequence: UInt64) throws {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        try waitUntilDurable(sequence)
    }

    /// Appends `line` (rewriting the file first if due); returns its sequence number. Called with
    /// `mutex` held.
    private func appendLine(_ line: Line) throws -> UInt64 {
        let bytes = Self.line(line)
        if needsRewrite || isOversized {
            do {
                try rewrite()
            } catch  where !needsRewrite {
                // Only too big: appending stays safe, and the next append tries again.
            }
        }
        let start = size
        do {
            try bytes.withUnsafeBytes { try DiskIO.writeAll(fd: fd, $0, path: path) }
        } catch {
            // Cut the file back to its last whole line, or rewrite it before the next append.
            if ftruncate(fd, off_t(clamping: start)) != 0 { needsRewrite = true }
            throw error
        }
        size += UInt64(bytes.count)
        appended += 1
        switch line {
        case .record(let record):
            let name = record.current.version.name
            liveBytes -= UInt64(live[name]?.length ?? 0)
            live[name] = Position(offset: start, length: bytes.count)
            liveBytes += UInt64(bytes.count)
        case .removed(let name):
            liveBytes -= UInt64(live[name]?.length ?? 0)
            live[name] = nil
        }
        return appended
    }

    /// The bytes of the line at `position`. Called with `mutex` held.
    private func readLine(at position: Position) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: position.length)
        let (count, code) = bytes.withUnsafeMutableBytes { DiskIO.readAll(fd: fd, at: position.offset, into: $0) }
        guard count == position.length else { throw DiskError("read", path, code: code == 0 ? EIO : code) }
        return bytes
    }

    /// Group commit: returns once a sync that began after line `sequence` was written has
    /// completed. Called and returns with `mutex` held.
    private func waitUntilDurable(_ sequence: UInt64) throws {
        while durable < sequence {
            if syncing {
                pthread_cond_wait(changed, mutex)
                continue
            }
            let from = durable + 1
            let through = appended
            let descriptor = fd
            syncing = true
            pthread_mutex_unlock(mutex)
            let code = Self.dataSync(descriptor)
            pthread_mutex_lock(mutex)
            syncing = false
            durable = through
            if code != 0 {
                // What the kernel still holds of the file is unknown after a failed sync.
                needsRewrite = true
                failures.append((from...through, code))
                if failures.count > 64 { failures.removeFirst() }
            }
            pthread_cond_broadcast(changed)
        }
        if let failure = failures.last(where: { $0.lines.contains(sequence) }) {
            throw DiskError("fdatasync", path, code: failure.code)
        }
    }

    /// Writes every live record to a new file and puts it in place. Called with `mutex` held;
    /// waits for a running sync first, since it replaces the descriptor that sync uses.
    private func rewrite() throws {
        while syncing { pthread_cond_wait(changed, mutex) }
        let temporary = path + ".tmp-\(getpid())"
        let newFD = open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, DiskIO.fileMode)
        guard newFD >= 0 else { throw DiskError("create", temporary) }
        var moved = [FileName: Position]()
        var written: UInt64 = 0
        do {
            // In the order of the old file (sequential reads), a batch of up to 1 MiB per write.
            var batch = [UInt8]()
            for (name, position) in live.sorted(by: { $0.value.offset < $1.value.offset }) {
                batch += try readLine(at: position)
                moved[name] = Position(offset: written, length: position.length)
                written += UInt64(position.length)
                if batch.count >= 1 << 20 {
                    try batch.withUnsafeBytes { try DiskIO.writeAll(fd: newFD, $0, path: temporary) }
                    batch.removeAll(keepingCapacity: true)
                }
            }
            try batch.withUnsafeBytes { try DiskIO.writeAll(fd: newFD, $0, path: temporary) }
            guard fsync(newFD) == 0 else { throw DiskError("fsync", temporary) }
            guard rename(temporary, path) == 0 else { throw DiskError("rename", temporary) }
        } catch {
            close(newFD)
            unlink(temporary)
            throw error
        }
        // The new file is in place; from here on it is the one appended to, whatever the folder's
        // sync says (a failure only means the rename may not survive a crash yet).
        close(fd)
        fd = newFD
        size = written
        live = moved
        liveBytes = written
        let folderCode = GroupSync.fsyncDirectory(directory)
        needsRewrite = folderCode != 0
        if folderCode != 0 { throw DiskError("fsync", directory, code: folderCode) }
        // Everything appended so far is in the new file, which is on disk.
        durable = appended
    }

    static func dataSync(_ fd: Int32) -> Int32 {
        #if canImport(Darwin)
            return fsync(fd) == 0 ? 0 : errno
        #else
            return fdatasync(fd) == 0 ? 0 : errno
        #endif
    }

    // MARK: Encoding

    static func line(_ line: Line) -> [UInt8] {
        let json: [UInt8]
        switch line {
        case .record(let record): json = record.encoded()
        case .removed(let name):
            var object = JSONObjectWriter(escapingSlashes: true)
            object.add("removed", name.value)
            json = object.finished()
        }
        return checksum(of: json) + [UInt8(ascii: " ")] + json + [UInt8(ascii: "\n")]
    }

    /// A line's checksum: the first 16 hex digits of its JSON's SHA-256.
    static func checksum(of json: [UInt8]) -> [UInt8] {
        Array(Hex.encode(SHA256.hash(data: json).prefix(8)).utf8)
    }

    struct RemovedJSON: Decodable { var removed: String }

    /// One line without its newline; nil when it is damaged.
    static func decode<Bytes: Collection<UInt8>>(line: Bytes) -> Line? {
        let bytes = Array(line)
        guard bytes.count > 18, bytes[16] == UInt8(ascii: " ") else { return nil }
        let json = Array(bytes[17...])
        guard checksum(of: json).elementsEqual(bytes[0..<16]) else { return nil }
        if let record = MetaRecord.decode(json) { return .record(record) }
        if let removed = try? JSONDecoder().decode(RemovedJSON.self, from: Data(json)),
            let name = try? FileName(removed.removed)
        {
            return .removed(name)
        }
        return nil
    }

    /// Reads every line of the open file from its start, keeping the last record per name.
    static func read(fd: Int32, path: String) throws -> Contents {
        var contents = Contents()
        var pending = [UInt8]()
        var overlong = false
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var offset: off_t = 0
        /// Where the line being gathered starts in the file.
        var lineStart: UInt64 = 0
        func finish(_ line: [UInt8], endingAt end: UInt64) {
            defer { lineStart = end }
            switch decode(line: line) {
            case .record(let record):
                let name = record.current.version.name
                contents.records[name] = record
                contents.positions[name] = Position(offset: lineStart, length: Int(end - lineStart))
            case .removed(let name):
                contents.records[name] = nil
                contents.positions[name] = nil
            case nil: contents.damagedLines += 1
            }
        }
        while true {  // every pass reads at least one byte, or ends
            let (count, code) = DiskIO.retryingInterrupts {
                chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            }
            if count < 0 { throw DiskError("read", path, code: code) }
            if count == 0 { break }
            offset += off_t(count)
            var start = 0
            while let newline = chunk[start..<count].firstIndex(of: UInt8(ascii: "\n")) {
                let end = UInt64(offset) - UInt64(count - newline - 1)
                if overlong {
                    contents.damagedLines += 1
                    overlong = false
                    lineStart = end
                } else {
                    pending += chunk[start..<newline]
                    finish(pending, endingAt: end)
                }
                pending.removeAll(keepingCapacity: true)
                start = newline + 1
            }
            if !overlong {
                pending += chunk[start..<count]
                if pending.count > lineLimit {
                    overlong = true
                    pending.removeAll()
                }
            }
        }
        // An unfinished last line was never acknowledged.
        if overlong || !pending.isEmpty { contents.damagedLines += 1 }
        contents.size = UInt64(offset)
        return contents
    }
}
