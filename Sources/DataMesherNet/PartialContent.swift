import DataMesherCore
import DataMesherStore
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A big version being received into tmp/, served to other members while its bytes arrive
/// (docs/PROTOCOL.md, "Big versions"): a member asking this node for it gets the bytes received
/// so far at once and the rest as they come, so a version crosses a chain of members in about
/// the time of one transfer instead of one transfer per hop. Nothing is trusted more for it:
/// every receiver checks the signature before and the hash and length after, as for any fetch.
/// A held version is sent by the same loop (`init(held:reader:)`), complete from the start.
final class PartialContent: Sendable {
    let version: FileVersion
    /// Its own descriptor on the temporary file, valid after the file is renamed into place.
    let reader: ContentReader
    let progress = NIOLockedValueBox<(received: Int, ended: Bool)>((0, false))
    /// How long a reader waits for the next bytes before it gives up on the transfer.
    static let stallLimit: Duration = .seconds(30)
    /// Content is sent in chunks of this size (a held version's too): below malloc's mmap
    /// threshold (128 KiB), so the buffers of a long transfer are reused from the heap instead
    /// of being mapped, faulted in and zeroed afresh for every chunk (about a tenth of a
    /// relaying node's CPU in `perf` at 256 KiB).
    static let chunkSize = 64 << 10

    init?(_ version: FileVersion, path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        self.version = version
        reader = ContentReader(fd: fd, length: Int(clamping: version.contentLength))
    }

    init(held version: FileVersion, reader: ContentReader) {
        self.version = version
        self.reader = reader
        progress.withLockedValue { $0 = (reader.length, true) }
    }

    func received(_ count: Int) { progress.withLockedValue { $0.received += count } }

    /// The transfer ended: completely when every byte was received, otherwise cut.
    func end() { progress.withLockedValue { $0.ended = true } }

    /// Sends the content to `writer` as it arrives, in chunks of up to `chunkSize` (a smaller
    /// one after 10 ms of waiting for more); throws when the transfer into this node ended before
    /// the last byte, or stalled for `stallLimit`.
    func send(to writer: StreamWriter) async throws {
        let length = reader.length
        let chunkSize = Self.chunkSize
        var offset = 0
        var waited: Duration = .zero
        while offset < length {
            let (received, ended) = progress.withLockedValue { ($0.received, $0.ended) }
            let ready = received - offset
            if ready < min(chunkSize, length - offset) && !ended && (ready == 0 || waited < .milliseconds(10)) {
                guard waited < Self.stallLimit else { throw WireError.truncated }
                try await Task.sleep(for: .milliseconds(2))
                waited += .milliseconds(2)
                continue
            }
            guard ready > 0 else { throw WireError.truncated }  // ended before the last byte
            waited = .zero
            let start = offset
            let count = min(chunkSize, ready)
            let chunk = try await Blocking.run { try self.reader.read(at: start, upTo: count) }
            guard chunk.readableBytes > 0 else { throw WireError.truncated }
            offset += chunk.readableBytes
            try await writer.write(chunk)
        }
    }
}
