import Crypto
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An open file read at offsets, in chunks, off the cooperative pool. It owns the descriptor
/// and closes it when the last reference goes, whatever happens to the reader of the chunks:
/// an HTTP response, a TCP transfer, an upload from the CLI. Stored content is read with a
/// `ContentCheck` (`FileStore.openContent`).
public final class ContentReader: Sendable {
    public let fd: Int32
    public let length: Int
    let check: ContentCheck?

    public init(fd: Int32, length: Int) {
        self.fd = fd
        self.length = length
        self.check = nil
    }

    init(fd: Int32, length: Int, check: ContentCheck) {
        self.fd = fd
        self.length = length
        self.check = check
    }

    deinit { close(fd) }

    /// A read found the end of the file before the length it had when it was opened.
    public struct Shrank: Error, CustomStringConvertible {
        public init() {}
        public var description: String { "the file shrank while it was being read" }
    }

    /// `count` bytes at `offset` (blocking; call from a thread pool): fewer only at the end of
    /// the file (or on a read error), none there. Throws `ContentCheck.Mismatch` instead of
    /// returning the last bytes of checked content whose hash is not its version's.
    public func read(at offset: Int, upTo count: Int) throws -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { pointer in
            DiskIO.readAll(
                fd: fd, at: UInt64(clamping: offset), into: UnsafeMutableRawBufferPointer(rebasing: pointer[..<count])
            )
            .count
        }
        try check?.take(buffer, at: offset, of: length, fd: fd)
        return buffer
    }
}

/// What identifies a file's content on disk without reading it: any write, truncation,
/// `touch` or replacement changes its status-change time or its inode.
public struct ContentIdentity: Sendable, Equatable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var changed: (seconds: Int64, nanoseconds: Int64)

    init(_ info: stat) {
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        #if canImport(Darwin)
            changed = (Int64(info.st_ctimespec.tv_sec), Int64(info.st_ctimespec.tv_nsec))
        #else
            changed = (Int64(info.st_ctim.tv_sec), Int64(info.st_ctim.tv_nsec))
        #endif
    }

    init?(path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        self.init(info)
    }

    /// How the open file `fd` looks now; nil when it cannot be told.
    public init?(fd: Int32) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        self.init(info)
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.device == b.device && a.inode == b.inode && a.size == b.size && a.changed == b.changed
    }
}

/// Keeps stored content that fails its signed SHA-256 from being served whole. Content whose
/// file changed since it was last verified (or never was since the start) is hashed as it is
/// read, and its last bytes are not handed out unless the whole matches; content trusted when it
/// was opened is looked at again once its last bytes are read, and hashed then if the file
/// changed meanwhile. The store then trusts the file as it looked (`verified`), or marks the
/// content missing (`damaged`), so that the cluster fetches the version again and no member is
/// sent it from here meanwhile.
final class ContentCheck: Sendable {
    /// The served content is not what its version signed: it was marked missing.
    struct Mismatch: Error, CustomStringConvertible {
        var description: String { "the content on disk does not match its signed hash" }
    }

    let expected: [UInt8]
    /// How the file looked when it was opened, and whether its content was trusted as such.
    let opened: ContentIdentity
    let trusted: Bool
    let verified: @Sendable (ContentIdentity) -> Void
    let damaged: @Sendable () -> Void

    // The hasher is a value type that is only touched under the box's lock.
    struct Progress: @unchecked Sendable {
        var hasher = SHA256()
        /// Where the next chunk must start (nil once one came out of order).
        var next: Int? = 0
    }

    let progress = NIOLockedValueBox(Progress())

    init(
        expected: [UInt8], opened: ContentIdentity, trusted: Bool,
        verified: @escaping @Sendable (ContentIdentity) -> Void, damaged: @escaping @Sendable () -> Void
    ) {
        self.expected = expected
        self.opened = opened
        self.trusted = trusted
        self.verified = verified
        self.damaged = damaged
    }

    /// Takes the chunk read at `offset` of content `length` bytes long from `fd`. Untrusted
    /// chunks read out of order (none of the daemon's readers does) leave the content as
    /// unverified as it was.
    func take(_ chunk: ByteBuffer, at offset: Int, of length: Int, fd: Int32) throws {
        let end = offset + chunk.readableBytes
        if trusted {
            // Every byte was read before this look: unchanged since the open, all of them were
            // what was verified.
            guard end == length else { return }
            let now = ContentIdentity(fd: fd)
            guard now != opened else { return }
            let onDisk = try? DiskIO.hash(fd: fd, path: "content")
            try settle(onDisk.map { $0.length == UInt64(length) ? $0.sha256 : [] }, as: now)
            return
        }
        let digest = progress.withLockedValue { progress -> [UInt8]? in
            guard progress.next == offset else {
                progress.next = nil
                return nil
            }
            chunk.withUnsafeReadableBytes { progress.hasher.update(bufferPointer: $0) }
            progress.next = end
            return end == length ? Array(progress.hasher.finalize()) : nil
        }
        guard let digest else { return }
        try settle(digest, as: opened)
    }

    /// The content hashed to `digest` (nil: it could not be read): trusted as `identity` from
    /// now on when that is its signed hash, marked missing (and the read fails) when not.
    func settle(_ digest: [UInt8]?, as identity: ContentIdentity?) throws {
        guard let digest, digest == expected else {
            // Unreadable: not served, but not marked missing for it either.
            if digest != nil { damaged() }
            throw Mismatch()
        }
        if let identity { verified(identity) }
    }
}
