import Crypto
import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A failed system call, with the path and the operation in the message.
public struct DiskError: Error, Sendable, CustomStringConvertible {
    public let operation: String
    public let path: String
    public let code: Int32

    public init(_ operation: String, _ path: String, code: Int32 = errno) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    public var description: String { "\(operation) \(path): \(String(cString: strerror(code)))" }

    /// No space left, or over a quota: the disk is full for this node.
    public var isDiskFull: Bool { code == ENOSPC || code == EDQUOT }
}

/// Thin, blocking POSIX helpers: every write that must survive a crash goes through
/// write-to-temporary, fsync, rename, fsync(directory).
public enum DiskIO {
    public static let fileMode: mode_t = 0o640
    public static let directoryMode: mode_t = 0o750

    /// `mkdir -p` with mode 0750 for every folder it creates.
    public static func makeDirectories(_ path: String, mode: mode_t = directoryMode) throws {
        // Usually the folder or its parent exists already: one mkdir (and a stat) then, instead
        // of one of each per component.
        if mkdir(path, mode) == 0 {
            _ = chmod(path, mode)
            return
        }
        if errno == EEXIST {
            var info = stat()
            if stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR { return }
        }
        var partial = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            partial += "/" + component
            if mkdir(partial, mode) == 0 {
                _ = chmod(partial, mode)
                continue
            }
            let code = errno
            guard code == EEXIST else { throw DiskError("mkdir", partial, code: code) }
            var info = stat()
            guard stat(partial, &info) == 0 else { throw DiskError("stat", partial) }
            guard info.st_mode & S_IFMT == S_IFDIR else { throw DiskError("mkdir", partial, code: ENOTDIR) }
        }
    }

    /// Makes the renames into `path` durable (shared with concurrent callers: `GroupSync`).
    public static func fsyncDirectory(_ path: String) throws { try GroupSync.shared.sync(path) }

    /// How often a system call interrupted by a signal is tried again before its caller gives up.
    static let maxInterruptions = 16

    /// `call` (a read or write that returns a count, or -1 with `errno`), tried again when a signal
    /// interrupted it, at most `maxInterruptions` times: its count, or -1 and the error.
    static func retryingInterrupts(_ call: () -> Int) -> (count: Int, code: Int32) {
        for _ in 0...maxInterruptions {
            let count = call()
            if count >= 0 { return (count, 0) }
            let code = errno
            if code != EINTR { return (count, code) }
        }
        return (-1, EINTR)
    }

    /// Fills `buffer` from `fd` at `offset` (`pread`, repeated until it is full): the count read,
    /// short only at the end of the file or on an error, with the error's code (0 for none).
    static func readAll(fd: Int32, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> (
        count: Int, code: Int32
    ) {
        guard let base = buffer.baseAddress else { return (0, 0) }
        var done = 0
        while done < buffer.count {  // every pass reads at least one byte, or returns
            let (count, code) = retryingInterrupts {
                pread(fd, base + done, buffer.count - done, off_t(clamping: offset) + off_t(done))
            }
            if count < 0 { return (done, code) }
            if count == 0 { return (done, 0) }
            done += count
        }
        return (done, 0)
    }

    public static func writeAll(fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String) throws {
        guard let base = buffer.baseAddress else { return }  // nothing to write
        var offset = 0
        while offset < buffer.count {  // every pass writes at least one byte, or throws
            let (written, code) = retryingInterrupts { write(fd, base + offset, buffer.count - offset) }
            if written < 0 { throw DiskError("write", path, code: code) }
            guard written > 0 else { throw DiskError("write", path, code: EIO) }
            offset += written
        }
    }

    /// Replaces `path` atomically with `bytes` (mode `mode`), durable once this returns.
    public static func writeFileAtomically(_ path: String, bytes: [UInt8], mode: mode_t = fileMode) throws {
        let directory = parent(of: path)
        let temporary = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw DiskError("create", temporary) }
        var closed = false
        defer {
            if !closed { close(fd) }
        }
        do {
            _ = fchmod(fd, mode)
            try bytes.withUnsafeBytes { (buffer) throws in try writeAll(fd: fd, buffer, path: temporary) }
            guard fsync(fd) == 0 else { throw DiskError("fsync", temporary) }
            closed = true
            guard close(fd) == 0 else { throw DiskError("close", temporary) }
            guard rename(temporary, path) == 0 else { throw DiskError("rename", temporary) }
        } catch {
            unlink(temporary)
            throw error
        }
        try fsyncDirectory(directory)
    }

    /// Reads a whole (small) file; nil when it does not exist.
    public static func readFile(_ path: String, limit: Int) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw DiskError("open", path)
        }
        defer { close(fd) }
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {  // every pass reads at least one byte (at most limit + 1 in all), or ends
            let (count, code) = retryingInterrupts {
                chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            }
            if count < 0 { throw DiskError("read", path, code: code) }
            if count == 0 { return bytes }
            bytes += chunk[0..<count]
            if bytes.count > limit { throw DiskError("read", path, code: EFBIG) }
        }
    }

    /// SHA-256 and length of the regular file at `path`; nil when nothing is there. It is opened
    /// without following a symbolic link and without waiting on a FIFO: anything other than a
    /// regular file there (a folder, a link, a FIFO) reads as `notAFile`, which matches no
    /// version.
    public static func hashFile(_ path: String) throws -> (sha256: [UInt8], length: UInt64)? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        if fd < 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            if errno == ELOOP { return notAFile }
            throw DiskError("open", path)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw DiskError("stat", path) }
        guard info.st_mode & S_IFMT == S_IFREG else { return notAFile }
        #if os(Linux)
            _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        #endif
        return try hash(fd: fd, path: path)
    }

    /// What `hashFile` says of something that is not a regular file: no hash, no length.
    public static let notAFile: (sha256: [UInt8], length: UInt64) = ([], .max)

    /// SHA-256 and length of the content of open file `fd` (read at offsets from its start, so
    /// another reader of the descriptor is not disturbed); `path` names it in errors.
    public static func hash(fd: Int32, path: String) throws -> (sha256: [UInt8], length: UInt64) {
        var hasher = SHA256()
        var length: UInt64 = 0
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {  // every pass reads at least one byte of the file, or ends
            let (count, code) = retryingInterrupts {
                chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(clamping: length)) }
            }
            if count < 0 { throw DiskError("read", path, code: code) }
            if count == 0 { break }
            chunk.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            length += UInt64(count)
        }
        return (Array(hasher.finalize()), length)
    }

    /// Bytes an unprivileged writer may still use on the file system holding `path`.
    public static func freeBytes(_ path: String) -> UInt64? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        let (bytes, overflow) = UInt64(info.f_bavail).multipliedReportingOverflow(by: UInt64(info.f_frsize))
        return overflow ? UInt64.max : bytes
    }

    public static func isRegularFile(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
    }

    /// Names in a folder (without `.` and `..`); empty when it does not exist.
    public static func listDirectory(_ path: String) -> [(name: String, isDirectory: Bool)] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var out = [(String, Bool)]()
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            var info = stat()
            let isDirectory = lstat(path + "/" + name, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
            out.append((name, isDirectory))
        }
        return out
    }

    public static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Runs a blocking closure off the cooperative pool (on a thread pool) and waits for it.
    public typealias Runner = @Sendable (@escaping @Sendable () throws -> Void) async throws -> Void

    /// Runs `first` and `second` at once, each on a thread of `run`'s pool, and waits for both
    /// (also when one fails, so neither outlives the call).
    public static func bothAtOnce(
        _ run: @escaping Runner, _ first: @escaping @Sendable () throws -> Void,
        _ second: @escaping @Sendable () throws -> Void
    ) async throws {
        let other = Task { try await run(second) }
        do { try await run(first) } catch {
            _ = try? await other.value
            throw error
        }
        try await other.value
    }

    /// Most buffers handed to one `writev`.
    static let maxIOVectors = 64

    /// Writes the readable bytes of every buffer, in order, with one `writev` per 64 buffers
    /// (more only when the kernel takes less at a time).
    public static func writeAll(fd: Int32, _ buffers: [ByteBuffer], path: String) throws {
        var start = 0
        while start < buffers.count {
            let group = buffers[start..<min(start + maxIOVectors, buffers.count)]
            try withIOVectors(group, collected: []) { try writeVectors(fd: fd, $0, path: path) }
            start += group.count
        }
    }

    /// Calls `body` with an iovec for each non-empty buffer, valid while `body` runs.
    static func withIOVectors<R>(
        _ buffers: ArraySlice<ByteBuffer>, collected: [iovec], _ body: ([iovec]) throws -> R
    ) rethrows -> R {
        guard let first = buffers.first else { return try body(collected) }
        return try first.withUnsafeReadableBytes { bytes in
            var collected = collected
            if let base = bytes.baseAddress, bytes.count > 0 {
                collected.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: base), iov_len: bytes.count))
            }
            return try withIOVectors(buffers.dropFirst(), collected: collected, body)
        }
    }

    static func writeVectors(fd: Int32, _ vectors: [iovec], path: String) throws {
        var vectors = vectors[...]
        var remaining = vectors.reduce(0) { $0 + $1.iov_len }
        while remaining > 0 {  // every pass writes at least one byte, or throws
            let (written, code) = retryingInterrupts {
                vectors.withUnsafeBufferPointer { writev(fd, $0.baseAddress, Int32($0.count)) }
            }
            if written < 0 { throw DiskError("write", path, code: code) }
            guard written > 0 else { throw DiskError("write", path, code: EIO) }
            remaining -= written
            var skip = written
            while skip > 0, let first = vectors.first {  // at most vectors.count passes
                if first.iov_len <= skip {
                    skip -= first.iov_len
                    vectors = vectors.dropFirst()
                } else {
                    vectors[vectors.startIndex] = iovec(iov_base: first.iov_base + skip, iov_len: first.iov_len - skip)
                    skip = 0
                }
            }
        }
    }

    /// Asks the kernel to start writing `fd`'s dirty pages in `offset..<offset + length` to disk
    /// now, without waiting for it (Linux `sync_file_range(SYNC_FILE_RANGE_WRITE)`). A large file
    /// then reaches the disk while it is still arriving, and the fsync at the end waits for the
    /// last few MiB instead of all of it. A hint only: durability still comes from fsync. Does
    /// nothing on other systems or when the call fails.
    public static func startWriteback(fd: Int32, offset: UInt64, length: UInt64) {
        #if os(Linux)
            typealias SyncFileRange = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32
            guard let address = UnsafeRawPointer(bitPattern: syncFileRangeAddress) else { return }
            let syncFileRange = unsafeBitCast(address, to: SyncFileRange.self)
            let syncFileRangeWrite: UInt32 = 2  // SYNC_FILE_RANGE_WRITE in <fcntl.h>
            _ = syncFileRange(fd, Int64(clamping: offset), Int64(clamping: length), syncFileRangeWrite)
        #endif
    }

    #if os(Linux)
        /// glibc declares `sync_file_range` only under `_GNU_SOURCE`, which Swift's Glibc module
        /// does not define, so it is looked up once at run time (0 when absent).
        static let syncFileRangeAddress = Int(bitPattern: dlsym(nil, "sync_file_range"))
    #endif
}

/// Starts the writeback of a file written front to back every `interval` bytes
/// (`DiskIO.startWriteback`), so that its final fsync finds little left to write.
public struct WritebackPacer: Sendable {
    public static let interval: UInt64 = 8 << 20
    var started: UInt64 = 0

    public init() {}

    /// Call after the file has grown to `length` bytes.
    public mutating func wrote(upTo length: UInt64, fd: Int32) {
        guard length >= started, length - started >= Self.interval else { return }
        DiskIO.startWriteback(fd: fd, offset: started, length: length - started)
        started = length
    }
}
