import DataMesherCore
import DataMesherStore
import Logging
import NIOCore
import NIOPosix

/// Why a fetch stream was ended by this side before every request was answered.
struct FetchStopped: Error, CustomStringConvertible {
    let description: String
}

/// Content transfer over cluster streams (docs/PROTOCOL.md, "Fetch"). What to fetch, from whom
/// and on which stream is the core's `Fetcher`; this runs its streams: it serves requests, and
/// for each `.open` step dials the peer, sends every request at once, and checks, streams to
/// disk and submits each answer in order, reporting each outcome and the stream's end.
extension NetworkShell {
    /// A version refused after its reply arrived has its content read and dropped up to this
    /// size; a larger one ends the stream instead (its other requests are retried later).
    static let maxSkippedContent: UInt64 = 1 << 20

    // MARK: Serving

    /// Answers `first` and the fetch requests that follow it on the stream, in order.
    nonisolated func answerFetches(first: FileName, session: inout StreamSession) async throws {
        var name = first
        for answered in 1...Fetcher.maxRequestsPerStream {
            try await answerFetch(name, writer: session.writer)
            guard answered < Fetcher.maxRequestsPerStream, let next = try await session.reader.frame() else { return }
            guard case .fetch(let nextName) = next else { throw WireError.invalid("fetch stream") }
            name = nextName
        }
    }

    nonisolated func answerFetch(_ name: FileName, writer: StreamWriter) async throws {
        let store = node.store
        // A newer version than the one stored is being received: it is sent as it arrives.
        if let partial = partials.withLockedValue({ $0[name] }),
            store.current(name).map({ VersionOrder.isNewer(partial.version, than: $0.version) }) ?? true
        {
            try await reply(partial.version, writer: writer) { try await partial.send(to: writer) }
            return
        }
        guard let (stored, file) = try await node.openContent(name) else {
            // Tombstones and expired versions travel without content.
            let held = store.current(name)?.version
            try await writer.send(.fetchReply(held?.isTombstone == true ? held : nil))
            return
        }
        let content = PartialContent(held: stored.version, reader: file)
        try await reply(stored.version, writer: writer) { try await content.send(to: writer) }
    }

    /// Sends the reply naming `version`, then its content (`content`). A big version goes to one
    /// member at a time: the others are told this node is busy and ask another holder, which
    /// got it from here or elsewhere (`Fetcher.exclusiveUploadSize`).
    nonisolated func reply(
        _ version: FileVersion, writer: StreamWriter, content: () async throws -> Void
    ) async throws {
        let key = "\(version.name.value)/\(version.timestamp)"
        let exclusive = version.contentLength >= Fetcher.exclusiveUploadSize
        if exclusive {
            guard uploads.enter(key) == nil else {
                logger.debug("declined a fetch of \(version.name): it is being sent to another member")
                try await writer.send(.fetchBusy)
                return
            }
        }
        defer { if exclusive { uploads.leave(key) } }
        try await writer.send(.fetchReply(version))
        try await content()
    }

    // MARK: Fetching

    /// Fetches what a push/pull found newer at `address`.
    func fetchAll(_ summaries: [VersionSummary], from address: PeerAddress) {
        carryOut(fetcher.wanted(summaries, from: address, policy: node.policy, now: WallClock.now()))
    }

    /// Carries out the fetcher's steps.
    func carryOut(_ steps: [Fetcher.Step]) {
        for step in steps {
            switch step {
            case .open(let id, let address, let requests):
                logger.debug("fetching \(requests.count) name(s) from \(address)")
                counters.fetches += requests.count
                node.metrics.fetches.increment(by: requests.count)
                spawn { await self.fetch(requests, on: id, from: address) }
            case .commit(let version, let content, let source):
                spawn { await self.commit(version, content: content, peer: source.map { "\($0)" } ?? "gossip") }
            case .failed(let version):
                handle(.storeFailed(version))
            case .backingOff(let version, let delay):
                logger.warning(
                    "disk full: not fetching \(version.name) again for \(delay / 1_000_000_000) s",
                    metadata: ["dm.file": "\(version.name)", "dm.reason": "disk_full"])
            case .wake(let delay):
                logger.debug("every holder declined a big version: asking again in \(delay / 1_000_000) ms")
                spawn {
                    try? await Task.sleep(for: .nanoseconds(delay))
                    await self.wakeFetcher()
                }
            }
        }
    }

    func report(_ id: Int, _ outcome: Fetcher.Outcome) {
        if case .noSpace(let version) = outcome { noteNoRoom(for: version) }
        carryOut(fetcher.answered(id, outcome, now: WallClock.now()))
    }

    /// Tells the core that `version` could not be stored for lack of room, for members that ask
    /// (when the room left can be told).
    func noteNoRoom(for version: FileVersion) {
        guard let free = DiskIO.freeBytes(node.store.stateDir) else { return }
        handle(.noRoom(version, free: free))
    }

    func ended(_ id: Int, unreachable: Bool = false) {
        carryOut(fetcher.ended(id, now: WallClock.now(), unreachable: unreachable))
    }

    func wakeFetcher() {
        carryOut(fetcher.woke(now: WallClock.now(), members: core.liveMemberAddresses))
    }

    /// Runs stream `id` to `address`: every request is sent at once, and the answers are read,
    /// stored and reported in order.
    nonisolated func fetch(_ requests: [Fetcher.Request], on id: Int, from address: PeerAddress) async {
        do {
            let outcome: (answered: Int, error: (any Error)?) = try await dial(address, timeout: nil) { session in
                var frames: [UInt8] = []
                for request in requests { frames += SyncCodec.encode(.fetch(request.name)) }
                try await session.writer.write(frames)
                var answered = 0
                do {
                    for request in requests {
                        switch try await session.reader.frame() {
                        case .fetchReply(let offered)?:
                            try await self.receive(
                                offered, for: request, on: id, reader: &session.reader, from: address)
                        case .fetchBusy?:
                            await self.report(id, .busy)
                        default:
                            throw WireError.invalid("fetch reply")
                        }
                        answered += 1
                    }
                } catch {
                    return (answered, error)
                }
                return (answered, nil)
            }
            if let error = outcome.error {
                logger.info(
                    "fetch from \(address) stopped after \(outcome.answered) of \(requests.count) answers: \(error)")
            }
        } catch {
            logger.info("fetch of \(requests.count) name(s) from \(address) failed: \(error)")
            if Self.refusedConnection(error) {
                await ended(id, unreachable: true)
                return
            }
        }
        await ended(id)
    }

    /// Whether connecting failed because nothing listens at the address (every attempt was
    /// refused): the node there is down, not merely slow.
    static func refusedConnection(_ error: any Error) -> Bool {
        if let error = error as? IOError { return error.errnoCode == ECONNREFUSED }
        guard let error = error as? NIOConnectionError, !error.connectionErrors.isEmpty else { return false }
        return error.connectionErrors.allSatisfy { ($0.error as? IOError)?.errnoCode == ECONNREFUSED }
    }

    /// Takes the answer to one fetch request and reports its outcome: a version is checked
    /// (signature and rules, and room on disk) before its content is read, then streamed to a
    /// temporary file and submitted. Throws (ending the stream) when the stream cannot go on.
    nonisolated func receive(
        _ offered: FileVersion?, for request: Fetcher.Request, on id: Int, reader: inout FrameReader,
        from address: PeerAddress
    ) async throws {
        let name = request.name
        guard let version = offered, version.name == name else {
            if offered != nil { throw WireError.invalid("fetch reply for another name") }
            await report(id, .notHeld)
            return
        }
        // Older than the version wanted (a probe's answer, or a holder's that lost it): skipped
        // like one refused.
        guard request.accepts(version) else {
            await report(id, .notHeld)
            try await skip(version, reader: &reader)
            return
        }
        if version.isTombstone {
            let stored = await commit(version, content: [], peer: "\(address)")
            await report(id, stored ? .stored(version) : .notStored)
            return
        }
        // Refused (and logged) before any content is stored; no room: wait before trying this
        // version again (not at every push/pull).
        let refusal = node.precheck(
            name: name, signer: version.signer, contentLength: version.contentLength,
            timestamp: version.timestamp, validFor: version.validFor, signature: version.signature,
            origin: "\(address)")
        if let refusal { await handle(.refusedFetched(version, refusal)) }
        if refusal != nil || node.spaceProblem(forUpload: version.contentLength) != nil {
            await report(id, refusal != nil ? .notStored : .noSpace(version))
            try await skip(version, reader: &reader)
            return
        }
        let store = node.store
        let upload = try await Blocking.run { try store.makeUpload() }
        defer { upload.discard() }
        // A big version is served to other members while it arrives.
        let partial =
            version.contentLength >= Fetcher.exclusiveUploadSize ? PartialContent(version, path: upload.path) : nil
        if let partial {
            partials.withLockedValue { $0[name] = partial }
            await handle(.receiving(version))
        }
        defer {
            if let partial {
                partial.end()
                partials.withLockedValue { if $0[name] === partial { $0[name] = nil } }
            }
        }
        do {
            try await reader.stream(version.contentLength) { chunk in
                let count = chunk.readableBytes
                try await Blocking.run { try chunk.withUnsafeReadableBytes { try upload.write($0) } }
                partial?.received(count)
            }
            try upload.finish()
        } catch let error as DiskError where error.isDiskFull {
            node.noteDiskFull(error, path: node.store.stateDir, origin: "\(address)")
            await report(id, .noSpace(version))
            throw error
        }
        await report(id, await submit(version, upload: upload, peer: "\(address)"))
    }

    /// Reads and drops the content of `version`, which follows on the stream, when it is small;
    /// ends the stream otherwise (its other requests are retried).
    nonisolated func skip(_ version: FileVersion, reader: inout FrameReader) async throws {
        guard version.contentLength <= Self.maxSkippedContent else {
            throw FetchStopped(description: "not taking \(version.name) with \(version.contentLength) bytes to follow")
        }
        try await reader.stream(version.contentLength) { _ in }
    }

    /// Stores a version whose content is at hand; true when it was stored.
    @discardableResult
    nonisolated func commit(_ version: FileVersion, content: [UInt8], peer: String) async -> Bool {
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
            let outcome = await submit(version, upload: upload, peer: peer)
            if case .noSpace = outcome { await noteNoRoom(for: version) }
            return outcome == .stored(version)
        } catch let error as DiskError where error.isDiskFull {
            node.noteDiskFull(error, path: node.store.stateDir, origin: peer)
            await handle(.storeFailed(version))
            await noteNoRoom(for: version)
            return false
        } catch {
            logger.error("storing \(version.name) failed: \(error)")
            await handle(.storeFailed(version))
            return false
        }
    }

    /// The same acceptance path as a local upload: every signature is checked here again. Tells
    /// the core the outcome, and returns it as the fetcher takes it (content that does not match
    /// the version is `corrupt`: a bad source).
    nonisolated func submit(_ version: FileVersion, upload: Upload?, peer: String) async -> Fetcher.Outcome {
        do {
            switch try await node.submit(version, content: upload, origin: peer) {
            case .stored:
                await handle(.stored(version, inline: inlineContent(version)))
                return .stored(version)
            case .refused(let refusal):
                if let held = node.store.current(version.name), held.version == version, held.state != .missing {
                    // Held already (another member sent it first): the core is told it is held,
                    // so it does not ask again.
                    await handle(.stored(version, inline: inlineContent(version)))
                    return .stored(version)
                }
                await handle(.storeFailed(version))
                await handle(.refusedFetched(version, refusal))
                if case .contentMismatch = refusal { return .corrupt }
                return .notStored
            }
        } catch let error as DiskError where error.isDiskFull {
            // The content's flush at the commit can find the disk full too.
            node.noteDiskFull(error, path: node.store.stateDir, origin: peer)
            await handle(.storeFailed(version))
            return .noSpace(version)
        } catch {
            logger.error("storing \(version.name) failed: \(error)")
            await handle(.storeFailed(version))
            return .notStored
        }
    }
}
