import DataMesherCore
import DataMesherStore
import Logging

/// A name to fetch, with the version gossip announced for it (nil when a push/pull found it).
struct FetchRequest: Sendable {
    let name: FileName
    let expected: FileVersion?
}

/// Why a fetch stream was ended by this side before every request was answered.
struct FetchStopped: Error, CustomStringConvertible {
    let description: String
}

/// Content transfer over cluster streams (docs/PROTOCOL.md, "Fetch"): a stream carries up to
/// `maxFetchesPerStream` fetch requests, sent at once and answered in order, so that a node
/// missing thousands of versions pays one handshake per few hundred of them, not one per file.
extension NetworkShell {
    /// Fetch requests on one stream, at most; a responder closes the stream after answering them.
    static let maxFetchesPerStream = 256
    /// The encoded requests of one stream, at most: they are written before any answer is read,
    /// so they must fit the sockets' buffers whatever the answers do meanwhile.
    static let maxRequestBytesPerStream = 32 * 1024
    /// Streams fetching from one peer at once after a push/pull.
    static let fetchStreamsPerPeer = 4
    /// A version refused after its reply arrived has its content read and dropped up to this
    /// size; a larger one ends the stream instead (its other requests are retried later).
    static let maxSkippedContent: UInt64 = 1 << 20
    static let firstDiskBackoff: Int64 = 5_000_000_000
    static let maxDiskBackoff: Int64 = 600_000_000_000

    // MARK: Serving

    /// Answers `first` and the fetch requests that follow it on the stream, in order.
    nonisolated func answerFetches(first: FileName, session: inout StreamSession) async throws {
        var name = first
        for answered in 1...Self.maxFetchesPerStream {
            try await answerFetch(name, writer: session.writer)
            guard answered < Self.maxFetchesPerStream, let next = try await session.reader.frame() else { return }
            guard case .fetch(let nextName) = next else { throw WireError.invalid("fetch stream") }
            name = nextName
        }
    }

    nonisolated func answerFetch(_ name: FileName, writer: StreamWriter) async throws {
        let store = node.store
        guard let (stored, file) = try await Blocking.run({ try store.openContent(name) }) else {
            // Tombstones and expired versions travel without content.
            let held = store.current(name)?.version
            try await writer.send(.fetchReply(held?.isTombstone == true ? held : nil))
            return
        }
        try await writer.send(.fetchReply(stored.version))
        var offset = 0
        let length = Int(stored.version.contentLength)
        while offset < length {
            let start = offset
            let chunk = try await Blocking.run { file.read(at: start, upTo: min(1 << 18, length - start)) }
            guard chunk.readableBytes > 0 else { throw WireError.truncated }
            offset += chunk.readableBytes
            try await writer.write(chunk)
        }
    }

    // MARK: Fetching

    /// Fetches what a push/pull found newer at `address`: configured names not already being
    /// fetched nor waiting for disk space, on up to `fetchStreamsPerPeer` streams at once.
    func fetchAll(_ summaries: [VersionSummary], from address: PeerAddress) {
        let now = WallClock.now()
        let requests = summaries.filter {
            node.policy.allowedSigners[$0.name] != nil && !fetching.contains($0.name)
                && !isBackingOff($0.name, timestamp: $0.timestamp, now: now)
        }.map { FetchRequest(name: $0.name, expected: nil) }
        guard !requests.isEmpty else { return }
        fetching.formUnion(requests.map(\.name))
        let streams = Self.streams(for: requests)
        spawn {
            await withTaskGroup(of: Void.self) { group in
                for (index, batch) in streams.enumerated() {
                    if index >= Self.fetchStreamsPerPeer { await group.next() }
                    group.addTask {
                        await self.fetch(batch, from: address)
                        await self.doneFetching(batch)
                    }
                }
            }
        }
    }

    /// Splits requests into the streams that carry them.
    static func streams(for requests: [FetchRequest]) -> [[FetchRequest]] {
        var streams: [[FetchRequest]] = []
        var current: [FetchRequest] = []
        var bytes = 0
        for request in requests {
            let size = SyncCodec.headerLength + 2 + request.name.value.utf8.count
            if !current.isEmpty && (current.count == maxFetchesPerStream || bytes + size > maxRequestBytesPerStream) {
                streams.append(current)
                current = []
                bytes = 0
            }
            current.append(request)
            bytes += size
        }
        if !current.isEmpty { streams.append(current) }
        return streams
    }

    func doneFetching(_ requests: [FetchRequest]) {
        for request in requests { fetching.remove(request.name) }
    }

    /// Stores a version announced by gossip: inline content directly, or fetched over TCP.
    nonisolated func store(_ version: FileVersion, inline: [UInt8]?, from source: PeerAddress?) async {
        if await isBackingOff(version.name, timestamp: version.timestamp, now: WallClock.now()) {
            await handle(.storeFailed(version))
            return
        }
        if version.isTombstone || inline != nil {
            await commit(version, content: inline ?? [], peer: source.map { "\($0)" } ?? "gossip")
        } else if let source {
            await fetch([FetchRequest(name: version.name, expected: version)], from: source)
        } else {
            await handle(.storeFailed(version))
        }
    }

    /// Fetches `requests` on one stream to `address`: every request is sent at once, and the
    /// answers are read and stored in order. Gossip's versions that were not stored are
    /// reported to the core as failed, so that another offer is taken up.
    nonisolated func fetch(_ requests: [FetchRequest], from address: PeerAddress) async {
        await countFetches(requests.count)
        var answered = 0
        do {
            let outcome: (answered: Int, error: (any Error)?) = try await dial(address, timeout: 600) { session in
                var frames: [UInt8] = []
                for request in requests { frames += SyncCodec.encode(.fetch(request.name)) }
                try await session.writer.write(frames)
                var answered = 0
                do {
                    for request in requests {
                        guard case .fetchReply(let offered)? = try await session.reader.frame() else {
                            throw WireError.invalid("fetch reply")
                        }
                        try await self.receive(offered, for: request, reader: &session.reader, from: address)
                        answered += 1
                    }
                } catch {
                    return (answered, error)
                }
                return (answered, nil)
            }
            answered = outcome.answered
            if let error = outcome.error {
                logger.info("fetch from \(address) stopped after \(answered) of \(requests.count) answers: \(error)")
            }
        } catch {
            logger.info("fetch of \(requests.count) name(s) from \(address) failed: \(error)")
        }
        for request in requests.dropFirst(answered) {
            await notStored(request)
        }
    }

    /// Takes the answer to one fetch request: a version is checked (signature and rules, and
    /// room on disk) before its content is read, then streamed to a temporary file and submitted.
    nonisolated func receive(
        _ offered: FileVersion?, for request: FetchRequest, reader: inout FrameReader, from address: PeerAddress
    ) async throws {
        let name = request.name
        guard let version = offered, version.name == name else {
            if offered != nil { throw WireError.invalid("fetch reply for another name") }
            await notStored(request)
            return
        }
        if version.isTombstone {
            await commit(version, content: [], peer: "\(address)")
            return
        }
        // Refused (and logged) before any content is stored.
        var refused =
            node.precheck(
                name: name, signer: version.signer, contentLength: version.contentLength,
                timestamp: version.timestamp, validFor: version.validFor, signature: version.signature,
                origin: "\(address)") != nil
        // No room: say so, and wait before trying this version again (not at every push/pull).
        if !refused, node.spaceProblem(forUpload: version.contentLength) != nil {
            await backOff(version)
            refused = true
        }
        if refused {
            await notStored(request)
            guard version.contentLength <= Self.maxSkippedContent else {
                throw FetchStopped(description: "refused \(name) with \(version.contentLength) bytes to follow")
            }
            try await reader.stream(version.contentLength) { _ in }
            return
        }
        let store = node.store
        let upload = try await Blocking.run { try store.makeUpload() }
        defer { upload.discard() }
        do {
            try await reader.stream(version.contentLength) { chunk in
                try await Blocking.run { try chunk.withUnsafeReadableBytes { try upload.write($0) } }
            }
            _ = try await Blocking.run { try upload.finish() }
        } catch let error as DiskError where error.isDiskFull {
            node.noteDiskFull(error, path: node.store.stateDir, origin: "\(address)")
            await backOff(version)
            await notStored(request)
            throw error
        }
        await submit(version, upload: upload, peer: "\(address)")
    }

    /// Tells the core that a version gossip announced was not stored, so another offer is taken up.
    func notStored(_ request: FetchRequest) {
        if let expected = request.expected { handle(.storeFailed(expected)) }
    }

    func countFetches(_ count: Int) {
        counters.fetches += count
        node.metrics.fetches.increment(by: count)
    }

    nonisolated func commit(_ version: FileVersion, content: [UInt8], peer: String) async {
        do {
            let store = node.store
            let upload = try await Blocking.run { () throws -> Upload? in
                if version.isTombstone { return nil }
                let upload = try store.makeUpload()
                try content.withUnsafeBytes { try upload.write($0) }
                try upload.finish()
                return upload
            }
            defer { upload?.discard() }
            await submit(version, upload: upload, peer: peer)
        } catch {
            logger.error("storing \(version.name) failed: \(error)")
            await handle(.storeFailed(version))
        }
    }

    /// The same acceptance path as a local upload: every signature is checked here again.
    nonisolated func submit(_ version: FileVersion, upload: Upload?, peer: String) async {
        do {
            switch try await node.submit(version, content: upload, origin: peer) {
            case .stored:
                await storedAfterBackoff(version.name)
                await handle(.stored(version, inline: inlineContent(version)))
            case .refused:
                await handle(.storeFailed(version))
            }
        } catch {
            logger.error("storing \(version.name) failed: \(error)")
            await handle(.storeFailed(version))
        }
    }

    // MARK: Full disk

    func isBackingOff(_ name: FileName, timestamp: Int64, now: Int64) -> Bool {
        guard let backoff = diskBackoff[name], backoff.timestamp == timestamp else { return false }
        return now < backoff.until
    }

    func backOff(_ version: FileVersion) {
        let now = WallClock.now()
        let previous = diskBackoff[version.name].flatMap { $0.timestamp == version.timestamp ? $0.delay : nil }
        let delay = min(previous.map { $0.multipliedSaturated(2) } ?? Self.firstDiskBackoff, Self.maxDiskBackoff)
        diskBackoff[version.name] = (version.timestamp, now.addingSaturated(delay), delay)
        logger.warning(
            "disk full: not fetching \(version.name) again for \(delay / 1_000_000_000) s",
            metadata: ["dm.file": "\(version.name)", "dm.reason": "disk_full"])
    }

    func storedAfterBackoff(_ name: FileName) { diskBackoff[name] = nil }
}
