import Crypto
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Content being received into tmp/: written as it arrives, hashed on the way, fsynced by
/// `finish()`, and either moved into place by a commit or removed.
public final class Upload: Sendable {
    public struct Digest: Sendable, Equatable {
        public let sha256: [UInt8]
        public let length: UInt64
    }

    struct State: Sendable {
        var fd: Int32
        var length: UInt64 = 0
        /// Batches written so far; a batch is written and hashed under the same number.
        var batches: UInt64 = 0
        var writeback = WritebackPacer()
        var digest: Digest?
        var placed = false
        /// A write failed: the file and the hash may disagree, so nothing more is taken.
        var failed = false
    }

    public let path: String
    let state: NIOLockedValueBox<State>
    /// Apart from `state`, so that a batch is hashed on one thread while it is written on another.
    let hasher = BatchHasher()

    init(directory: String) throws {
        // One random draw (one getrandom call); tmp/ is emptied at start and O_EXCL refuses a clash.
        path = directory + "/upload-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, DiskIO.fileMode)
        guard fd >= 0 else { throw DiskError("create", path) }
        _ = fchmod(fd, DiskIO.fileMode)
        state = NIOLockedValueBox(State(fd: fd))
    }

    /// The SHA-256 of a buffer's readable bytes (for content gathered in memory).
    public static func sha256(of bytes: ByteBuffer) -> [UInt8] {
        bytes.withUnsafeReadableBytes { Array(SHA256.hash(data: $0)) }
    }

    /// Hash and length, once `finish()` has run.
    public var digest: Digest? { state.withLockedValue { $0.digest } }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        let batch = try append(bytes.count) { fd in try DiskIO.writeAll(fd: fd, bytes, path: path) }
        guard hasher.hash(batch: batch, { $0.update(bufferPointer: bytes) }) else {
            throw DiskError("hash", path, code: EINVAL)
        }
    }

    /// Appends the readable bytes of `chunks` in order (one `writev`, no copy) and hashes them,
    /// the two at once on two threads of `run`'s pool (both only read the buffers). Calls must
    /// not overlap (`BatchWriter` makes one at a time): batches are hashed strictly in the order
    /// they were written, or the upload fails.
    public func write(_ chunks: [ByteBuffer], run: @escaping DiskIO.Runner) async throws {
        let batch = state.withLockedValue { $0.batches }
        let count = chunks.reduce(0) { $0 + $1.readableBytes }
        try await DiskIO.bothAtOnce(
            run,
            {
                let written = try self.append(count) { fd in try DiskIO.writeAll(fd: fd, chunks, path: self.path) }
                guard written == batch else { throw DiskError("write", self.path, code: EINVAL) }
            },
            {
                guard self.hasher.hash(chunks, batch: batch) else { throw DiskError("hash", self.path, code: EINVAL) }
            })
    }

    /// Runs `write` (which writes `count` bytes) with the descriptor, under the lock; returns
    /// the number of the batch it wrote.
    func append(_ count: Int, _ write: (Int32) throws -> Void) throws -> UInt64 {
        try state.withLockedValue { (state) throws -> UInt64 in
            precondition(state.digest == nil, "write after finish")
            guard state.fd >= 0, !state.failed else { throw DiskError("write", path, code: EBADF) }
            do { try write(state.fd) } catch {
                state.failed = true
                throw error
            }
            state.length += UInt64(count)
            state.writeback.wrote(upTo: state.length, fd: state.fd)
            state.batches += 1
            return state.batches - 1
        }
    }

    /// Ends the upload: returns the content's hash and length. The content is not on disk yet:
    /// `makeDurable` (which `moveInto` calls first) flushes it.
    @discardableResult
    public func finish() throws -> Digest {
        try state.withLockedValue { (state) throws -> Digest in
            if let digest = state.digest { return digest }
            guard state.fd >= 0, !state.failed, let sha256 = hasher.finalize(batches: state.batches) else {
                throw DiskError("finish", path, code: EINVAL)
            }
            let digest = Digest(sha256: sha256, length: state.length)
            state.digest = digest
            return digest
        }
    }

    /// Flushes the finished content (and its times) to disk. Safe to call more than once.
    func makeDurable() throws {
        try state.withLockedValue { (state) throws in
            precondition(state.digest != nil, "flush before finish")
            guard state.fd >= 0 else {
                if state.failed { throw DiskError("fsync", path, code: EIO) }
                return
            }
            let code = fsync(state.fd) == 0 ? 0 : errno
            close(state.fd)
            state.fd = -1
            guard code == 0 else {
                state.failed = true
                throw DiskError("fsync", path, code: code)
            }
        }
    }

    /// Sets the finished file's times to `nanoseconds` (the version's signed timestamp) and
    /// returns what it then looks like. A write behind the daemon's back sets the time to "now",
    /// which differs from a signed timestamp even within one tick of the kernel's coarse clock,
    /// so the startup scan sees the change without hashing. Nil when it cannot be done.
    func stamp(modifiedAt nanoseconds: Int64) -> FileStat? {
        let time = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        var times = [time, time]
        guard utimensat(AT_FDCWD, path, &times, 0) == 0 else { return nil }
        return FileStat(path: path)
    }

    /// Flushes the finished content, renames it to `destination` and makes the rename durable.
    func moveInto(_ destination: String) throws {
        try makeDurable()
        try state.withLockedValue { (state) throws in
            guard rename(path, destination) == 0 else { throw DiskError("rename", destination) }
            state.placed = true
        }
        try DiskIO.fsyncDirectory(DiskIO.parent(of: destination))
    }

    /// Removes the temporary file unless it was committed. Safe to call more than once.
    public func discard() {
        state.withLockedValue { state in
            if state.fd >= 0 {
                close(state.fd)
                state.fd = -1
            }
            if !state.placed {
                unlink(path)
                state.placed = true
            }
        }
    }

    deinit { discard() }
}

/// What identifies a file's content cheaply: when size, mtime and inode are what the metadata
/// record remembers, the startup scan trusts the content without hashing it again.
struct FileStat: Sendable, Equatable, Codable {
    var size: UInt64
    var mtime_ns: Int64
    var inode: UInt64

    init(size: UInt64, mtime_ns: Int64, inode: UInt64) {
        self.size = size
        self.mtime_ns = mtime_ns
        self.inode = inode
    }

    init?(path: String) {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        self.init(info)
    }

    init(_ info: stat) {
        size = UInt64(clamping: info.st_size)
        #if canImport(Darwin)
            let seconds = Int64(info.st_mtimespec.tv_sec)
            let nanos = Int64(info.st_mtimespec.tv_nsec)
        #else
            let seconds = Int64(info.st_mtim.tv_sec)
            let nanos = Int64(info.st_mtim.tv_nsec)
        #endif
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        mtime_ns = overflow ? Int64.max : scaled.addingReportingOverflow(nanos).partialValue
        inode = UInt64(info.st_ino)
    }
}
