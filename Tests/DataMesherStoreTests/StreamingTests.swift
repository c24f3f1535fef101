import Crypto
import DataMesherCore
import Foundation
import NIOCore
import Testing

@testable import DataMesherStore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The pieces big files stream through: `writev` of many buffers, batches written behind the
/// network, read-ahead for sending, and hashing in the same pass as writing.
@Suite struct StreamingTests {
    /// Deterministic bytes that differ from piece to piece.
    static func bytes(_ count: Int, seed: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed &* 7 &+ ($0 >> 8)) }
    }

    static func temporaryPath() -> String { NSTemporaryDirectory() + "dm-stream-" + UUID().uuidString }

    /// Buffers of many sizes (empty, tiny, larger than a socket read), some with bytes already
    /// consumed at the front, and more of them than one `writev` takes.
    static func pieces() -> (buffers: [ByteBuffer], expected: [UInt8]) {
        var buffers: [ByteBuffer] = []
        var expected: [UInt8] = []
        let sizes = [0, 1, 7, 4096, 16 << 10, 70_000, 3]
        for index in 0..<150 {
            let bytes = bytes(sizes[index % sizes.count], seed: index)
            var buffer = ByteBuffer(bytes: [9, 9, 9] + bytes)
            buffer.moveReaderIndex(forwardBy: 3)
            buffers.append(buffer)
            expected += bytes
        }
        return (buffers, expected)
    }

    @Test func writeAllWritesEveryBufferInOrder() throws {
        let (buffers, expected) = Self.pieces()
        let path = Self.temporaryPath()
        defer { unlink(path) }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        try DiskIO.writeAll(fd: fd, buffers, path: path)
        close(fd)
        #expect(try DiskIO.readFile(path, limit: 1 << 26) == expected)
    }

    @Test func anUploadHashesWhatItWritesInBatches() async throws {
        let directory = Self.temporaryPath()
        try DiskIO.makeDirectories(directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (buffers, expected) = Self.pieces()
        let upload = try Upload(directory: directory)
        defer { upload.discard() }
        try await upload.write(Array(buffers[0..<60]), run: { try $0() })
        try await upload.write(Array(buffers[60..<100]), run: { try $0() })  // then raw bytes, as a fetch writes them
        let rest = buffers[100...].reduce(into: [UInt8]()) { $0 += $1.readableBytesView }
        try rest.withUnsafeBytes { try upload.write($0) }
        let digest = try upload.finish()
        #expect(digest.length == UInt64(expected.count))
        #expect(digest.sha256 == Array(SHA256.hash(data: expected)))
        #expect(try DiskIO.readFile(upload.path, limit: 1 << 26) == expected)
    }

    actor Batches {
        var written: [[ByteBuffer]] = []
        func add(_ batch: [ByteBuffer]) { written.append(batch) }
    }

    @Test func batchesKeepTheOrderAndStayBounded() async throws {
        let batchSize = 64 << 10
        let batches = Batches()
        var writer = BatchWriter(batchSize: batchSize) { await batches.add($0) }
        var expected: [UInt8] = []
        let sizes = [1, 100, 16 << 10, 40_000, 200_000, 5, 16 << 10 - 1]
        for index in 0..<400 {
            let bytes = Self.bytes(sizes[index % sizes.count], seed: index)
            expected += bytes
            try await writer.append(ByteBuffer(bytes: bytes))
        }
        try await writer.finish()
        let written = await batches.written
        #expect(written.flatMap { $0.flatMap { Array($0.readableBytesView) } } == expected)
        for batch in written {
            let bytes = batch.reduce(0) { $0 + $1.readableBytes }
            #expect(bytes < batchSize + (sizes.max() ?? 0))
            // Small pieces are copied together: at most one small run between two large chunks.
            #expect(batch.count <= 2 * (batchSize / BatchWriter.copyBelow) + 2)
        }
        #expect(written.count > 10)
    }

    @Test func anAbandonedBatchWriterWaitsForItsWriteAndWritesNoMore() async throws {
        let batches = Batches()
        var writer = BatchWriter(batchSize: 1024) { await batches.add($0) }
        try await writer.append(ByteBuffer(bytes: Self.bytes(2048, seed: 1)))
        try await writer.append(ByteBuffer(bytes: Self.bytes(100, seed: 2)))
        await writer.abandon()
        #expect(await batches.written.count == 1)
    }

    @Test func readAheadReadsTheWholeFileAndNoticesWhenItShrank() async throws {
        let path = Self.temporaryPath()
        defer { unlink(path) }
        let content = Self.bytes((5 << 20) / 2 + 123, seed: 3)
        try DiskIO.writeFileAtomically(path, bytes: content)
        let run: ReadAhead.Runner = { try $0() }

        let file = ContentReader(fd: open(path, O_RDONLY | O_CLOEXEC), length: content.count)
        var chunks = ReadAhead(file: file, chunkSize: 1 << 20, run: run)
        var read: [UInt8] = []
        var count = 0
        for _ in 0..<10 {
            guard let chunk = try await chunks.next() else { break }
            read += chunk.readableBytesView
            count += 1
        }
        #expect(read == content)
        #expect(count == 3)

        // A reader that believes the file is longer than it is (it shrank after it was opened).
        let longer = ContentReader(fd: open(path, O_RDONLY | O_CLOEXEC), length: content.count + 10)
        var short = ReadAhead(file: longer, chunkSize: 1 << 20, run: run)
        await #expect(throws: ContentReader.Shrank.self) {
            for _ in 0..<10 { guard try await short.next() != nil else { break } }
        }
    }
}
