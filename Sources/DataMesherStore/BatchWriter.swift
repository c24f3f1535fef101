import Crypto
import NIOConcurrencyHelpers
import NIOCore

/// Gathers the chunks of a stream (an upload's body, a fetched file) into batches of about
/// `batchSize` bytes and hands each batch to `write` (which runs it on a thread pool) while the
/// next one is gathered. At most one batch is being written and one gathered, so memory stays
/// at about two batches whatever the size of the whole, and the network side keeps receiving
/// while the disk side writes and hashes.
///
/// Chunks of at least `copyBelow` bytes are kept as they are (no copy; the batch is written with
/// one `writev`); smaller ones are copied together, so a batch never holds many tiny buffers.
public struct BatchWriter: Sendable {
    public static let defaultBatchSize = 1 << 20
    static let copyBelow = 16 << 10

    let batchSize: Int
    let write: @Sendable ([ByteBuffer]) async throws -> Void
    var gathered: [ByteBuffer] = []
    var small = ByteBuffer()
    var gatheredBytes = 0
    var inFlight: Task<Void, any Error>?

    public init(batchSize: Int = defaultBatchSize, write: @escaping @Sendable ([ByteBuffer]) async throws -> Void) {
        self.batchSize = batchSize
        self.write = write
    }

    /// Adds a chunk; once a batch is full, waits for the previous batch's write and starts this one's.
    public mutating func append(_ chunk: ByteBuffer) async throws {
        let count = chunk.readableBytes
        guard count > 0 else { return }
        if count < Self.copyBelow {
            var chunk = chunk
            small.writeBuffer(&chunk)
        } else {
            keepSmall()
            gathered.append(chunk)
        }
        gatheredBytes += count
        if gatheredBytes >= batchSize { try await startWrite() }
    }

    /// Writes what is gathered and waits until every batch is written.
    public mutating func finish() async throws {
        try await startWrite()
        let last = inFlight
        inFlight = nil
        try await last?.value
    }

    /// After an error elsewhere: waits for the write in flight (so nothing touches the file
    /// afterwards) and drops what is gathered.
    public mutating func abandon() async {
        let last = inFlight
        inFlight = nil
        gathered = []
        small = ByteBuffer()
        gatheredBytes = 0
        _ = try? await last?.value
    }

    mutating func keepSmall() {
        guard small.readableBytes > 0 else { return }
        gathered.append(small)
        small = ByteBuffer()
    }

    mutating func startWrite() async throws {
        let previous = inFlight
        inFlight = nil
        try await previous?.value
        keepSmall()
        let batch = gathered
        gathered = []
        gatheredBytes = 0
        guard !batch.isEmpty else { return }
        let write = self.write
        inFlight = Task { try await write(batch) }
    }
}

/// Reads a file front to back in chunks on a thread pool, one chunk ahead of the reader, so the
/// next chunk is read while this one is sent. Holds at most two chunks.
public struct ReadAhead: Sendable {
    public typealias Runner = @Sendable (@escaping @Sendable () throws -> ByteBuffer) async throws -> ByteBuffer

    let file: ContentReader
    let chunkSize: Int
    let run: Runner
    var requested = 0
    var pending: (read: Task<ByteBuffer, any Error>, count: Int)?

    /// `run` runs a blocking read off the cooperative pool (e.g. on NIO's thread pool).
    public init(file: ContentReader, chunkSize: Int = 1 << 20, run: @escaping Runner) {
        self.file = file
        self.chunkSize = max(1, chunkSize)
        self.run = run
    }

    /// The next chunk, nil after the last; throws `ContentReader.Shrank` when the file ends early.
    public mutating func next() async throws -> ByteBuffer? {
        if pending == nil { requestNext() }
        guard let (read, count) = pending else { return nil }
        pending = nil
        let chunk = try await read.value
        guard chunk.readableBytes == count else { throw ContentReader.Shrank() }
        requestNext()
        return chunk
    }

    mutating func requestNext() {
        guard requested < file.length else { return }
        let (file, start, count, run) = (file, requested, min(chunkSize, file.length - requested), run)
        requested += count
        pending = (Task { try await run { try file.read(at: start, upTo: count) } }, count)
    }
}

extension ContentReader {
    /// The SHA-256 of the file's `length` bytes, read in 1 MiB chunks on a thread pool (`run`)
    /// one chunk ahead of the hashing, so reading and hashing overlap. Throws
    /// `ContentReader.Shrank` when the file ends early.
    public func sha256(run: @escaping ReadAhead.Runner) async throws -> [UInt8] {
        let chunkSize = 1 << 20
        var chunks = ReadAhead(file: self, chunkSize: chunkSize, run: run)
        var hasher = SHA256()
        for _ in 0...(length / chunkSize) {  // one more pass than chunks, to see the end
            guard let chunk = try await chunks.next() else { break }
            chunk.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
        }
        return Array(hasher.finalize())
    }
}

/// A SHA-256 fed batch by batch in the order the batches were written, each from whichever pool
/// thread hashes it while another writes it (`Upload`, and the CLI's `file get`).
public final class BatchHasher: Sendable {
    // The hasher is a value type that is only touched under the box's lock.
    struct State: @unchecked Sendable {
        var hasher = SHA256()
        var batches: UInt64 = 0
    }

    let state = NIOLockedValueBox(State())

    public init() {}

    /// Hashes batch number `batch` with `update`; false, hashing nothing, when it is not the next.
    public func hash(batch: UInt64, _ update: (inout SHA256) -> Void) -> Bool {
        state.withLockedValue { state in
            guard state.batches == batch else { return false }
            update(&state.hasher)
            state.batches += 1
            return true
        }
    }

    /// Hashes the readable bytes of `chunks` as batch number `batch` (see `hash(batch:_:)`).
    public func hash(_ chunks: [ByteBuffer], batch: UInt64) -> Bool {
        hash(batch: batch) { hasher in
            for chunk in chunks { chunk.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) } }
        }
    }

    /// The hash of every batch, when exactly `batches` of them were hashed; nil otherwise.
    public func finalize(batches: UInt64) -> [UInt8]? {
        state.withLockedValue { $0.batches == batches ? Array($0.hasher.finalize()) : nil }
    }
}
