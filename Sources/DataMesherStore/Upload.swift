import Crypto
import NIOConcurrencyHelpers

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

    // The hasher is a value type that is only touched under the box's lock.
    struct State: @unchecked Sendable {
        var fd: Int32
        var hasher = SHA256()
        var length: UInt64 = 0
        var digest: Digest?
        var placed = false
    }

    public let path: String
    let state: NIOLockedValueBox<State>

    init(directory: String) throws {
        var generator = SystemRandomNumberGenerator()
        let suffix = (0..<8).map { _ in String(UInt8.random(in: 0...255, using: &generator), radix: 16) }.joined()
        path = directory + "/upload-" + suffix
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, DiskIO.fileMode)
        guard fd >= 0 else { throw DiskError("create", path) }
        _ = fchmod(fd, DiskIO.fileMode)
        state = NIOLockedValueBox(State(fd: fd))
    }

    /// Hash and length, once `finish()` has run.
    public var digest: Digest? { state.withLockedValue { $0.digest } }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        try state.withLockedValue { (state) throws in
            precondition(state.digest == nil, "write after finish")
            try DiskIO.writeAll(fd: state.fd, bytes, path: path)
            state.hasher.update(bufferPointer: bytes)
            state.length += UInt64(bytes.count)
        }
    }

    /// Flushes the content to disk and returns its hash and length.
    @discardableResult
    public func finish() throws -> Digest {
        try state.withLockedValue { (state) throws -> Digest in
            if let digest = state.digest { return digest }
            guard fsync(state.fd) == 0 else { throw DiskError("fsync", path) }
            close(state.fd)
            state.fd = -1
            let digest = Digest(sha256: Array(state.hasher.finalize()), length: state.length)
            state.digest = digest
            return digest
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

    /// Renames the finished content to `destination` and makes the rename durable.
    func moveInto(_ destination: String) throws {
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
