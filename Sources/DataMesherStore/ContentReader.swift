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

    /// Up to `count` bytes at `offset` (blocking; call from a thread pool). Empty at the end.
    public func read(at offset: Int, upTo count: Int) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count)
        _ = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { pointer in
            Swift.max(pread(fd, pointer.baseAddress, count, off_t(offset)), 0)
        }
        return buffer
    }
}
