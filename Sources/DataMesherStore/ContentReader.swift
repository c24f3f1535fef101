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
        while buffer.readableBytes < count {  // every pass reads at least one byte, or stops
            let filled = buffer.readableBytes
            var result = 0
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count - filled) { pointer in
                result =
                    DiskIO.retryingInterrupts { pread(fd, pointer.baseAddress, count - filled, off_t(offset + filled)) }
                    .count
                return Swift.max(result, 0)
            }
            if result <= 0 { break }
        }
        return buffer
    }
}
