import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An open file read at offsets, in chunks, off the cooperative pool. It owns the descriptor
/// and closes it when the last reference goes, whatever happens to the reader of the chunks:
/// an HTTP response, a TCP transfer, an upload from the CLI.
public final class ContentReader: Sendable {
    public let fd: Int32
    public let length: Int

    public init(fd: Int32, length: Int) {
        self.fd = fd
        self.length = length
    }

    deinit { close(fd) }

    /// A read found the end of the file before the length it had when it was opened.
    public struct Shrank: Error, CustomStringConvertible {
        public init() {}
        public var description: String { "the file shrank while it was being read" }
    }

    /// `count` bytes at `offset` (blocking; call from a thread pool): fewer only at the end of
    /// the file (or on a read error), none there.
    public func read(at offset: Int, upTo count: Int) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { pointer in
            DiskIO.readAll(
                fd: fd, at: UInt64(clamping: offset), into: UnsafeMutableRawBufferPointer(rebasing: pointer[..<count])
            )
            .count
        }
        return buffer
    }
}
