import DataMesherCore
import DataMesherNet
import DataMesherStore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A refusal with the status code the SPEC names (§6) and a reason for the JSON body.
struct APIError: Error {
    let status: HTTPResponse.Status
    let message: String

    init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }

    init(_ refusal: Refusal) {
        switch refusal {
        case .nameNotConfigured, .signerNotAllowed, .badSignature, .contentMismatch: status = .forbidden
        case .stale, .inFuture, .expired: status = .conflict
        case .malformedTombstone, .negativeTimestamp: status = .badRequest
        case .tooLarge: status = .contentTooLarge
        }
        message = refusal.description
    }

    var response: Response { jsonResponse(status, ErrorJSON(error: message)) }

    static let insufficientStorage = HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage")
}

func jsonResponse<T: Encodable>(_ status: HTTPResponse.Status, _ value: T, headers: HTTPFields = [:]) -> Response {
    var headers = headers
    headers[.contentType] = "application/json"
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: JSON.encode(value))))
}

/// Header names of the signed-upload protocol.
enum DMHeader {
    static let signer = named("DM-Signer")
    static let signature = named("DM-Signature")
    static let timestamp = named("DM-Timestamp")
    static let validFor = named("DM-Valid-For")
    static let sha256 = named("DM-SHA256")

    static func named(_ text: String) -> HTTPField.Name {
        guard let name = HTTPField.Name(text) else { preconditionFailure("invalid header name \(text)") }
        return name
    }
}

/// The HTTP API (SPEC §6) over one node.
public struct API: Sendable {
    let node: Replica
    /// Uploads receiving their bodies now, capped by `[http] max_concurrent_uploads`, and one
    /// source to half of them.
    let uploads: StreamCounter
    static let filesPrefix = "/v1/files/"
    /// Uploads with a Content-Length up to this are gathered in memory and stored with one trip
    /// to the disk pool (`putSmallFile`); larger ones are streamed to disk in batches.
    static let smallUpload: UInt64 = 64 << 10
    /// Bytes gathered before one write to disk.
    static let writeBatch = BatchWriter.defaultBatchSize
    /// Bytes of a file read at once for a GET (two such chunks per response at most).
    static let readChunk = 1 << 20

    public init(node: Replica) {
        self.node = node
        let slots = node.config.http.maxConcurrentUploads
        self.uploads = StreamCounter(total: slots, perSource: max(1, slots / 2))
    }

    /// The router with every route; refusals become JSON `{"error": …}`.
    public func router() -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        router.middlewares.add(JSONErrorMiddleware(node: node))
        router.get("/v1/files") { _, _ in listFiles() }
        router.get("/v1/files/**") { request, _ in try await getFile(request) }
        router.head("/v1/files/**") { request, _ in try await getFile(request, headOnly: true) }
        router.put("/v1/files/**") { request, context in try await putFile(request, from: context.source) }
        router.delete("/v1/files/**") { request, _ in try await deleteFile(request) }
        router.get("/v1/members") { _, _ in jsonResponse(.ok, node.members()) }
        router.get("/v1/status/**") { request, _ in try await fileStatus(request) }
        router.get("/v1/info") { _, _ in jsonResponse(.ok, info()) }
        router.get("/v1/events") { request, context in try events(request, from: context.source) }
        router.get("/") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(string: StatusPage.html)))
        }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(
                    byteBuffer: ByteBuffer(
                        bytes: node.metrics.render(
                            store: node.store, members: node.members(),
                            certificateSecondsLeft: node.certificateExpiry?.secondsLeft(now: WallClock.date())))))
        }
        return router
    }

    /// Seconds between `: keepalive` comments on an idle event stream.
    static let keepaliveInterval: Duration = .seconds(15)

    /// Server-sent events: `: connected`, then each event as it happens (after up to `?recent=N`
    /// of the latest), with a keepalive comment when idle. Ends when the client goes away or the
    /// node shuts down.
    func events(_ request: Request, from source: String) throws -> Response {
        var recent = 0
        if let text = request.uri.queryParameters.get("recent") {
            guard let value = Int(text), (0...EventHub.kept).contains(value) else {
                throw APIError(.badRequest, "recent must be a number from 0 to \(EventHub.kept)")
            }
            recent = value
        }
        guard let events = node.events.subscribe(recent: recent, source: source) else {
            throw APIError(
                .serviceUnavailable,
                "\(EventHub.maxSubscribers) event subscribers are connected already (\(EventHub.maxSubscribersPerSource) from one address at most); try again later"
            )
        }
        // A few lines only: the backlog is the hub's, so a reader that does not keep up holds
        // one bounded queue of events.
        let (lines, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(16))
        let forward = Task {
            for await event in events { continuation.yield(event.serverSentEvent) }
            continuation.finish()
        }
        let keepalive = Task {
            while !Task.isCancelled {
                try await Task.sleep(for: Self.keepaliveInterval)
                continuation.yield(": keepalive\n\n")
            }
        }
        continuation.onTermination = { _ in
            forward.cancel()
            keepalive.cancel()
        }
        let body = ResponseBody { writer in
            defer { continuation.finish() }
            // A client that hangs up ends the stream at once, not at the next write that fails
            // (up to a keepalive later), so its subscriber slot is free again.
            try await request.body.consumeWithInboundCloseHandler { _ in
                try await writer.write(ByteBuffer(string: ": connected\n\n"))
                for await line in lines.cancelOnGracefulShutdown() {
                    try await writer.write(ByteBuffer(string: line))
                }
            } onInboundClosed: {
                continuation.finish()
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: body)
    }

    /// Which version of a name each member says it holds (`file status`, `file update --wait`).
    func fileStatus(_ request: Request) async throws -> Response {
        let name = try Self.fileName(fromPath: request.uri.path, prefix: "/v1/status/")
        guard node.policy.allowedSigners[name] != nil else {
            throw APIError(.notFound, "\"\(name)\" is not configured on this node")
        }
        let held = node.store.current(name)
        let view = await node.holdings(of: name)
        let members = node.members().map { member in
            let claim = view.claims[member.id]
            // A refusal counts while the member holds nothing as new as the version it refused.
            var refusal = view.refusals[member.id]
            if let claim, let refused = refusal, claim.timestamp >= refused.timestamp { refusal = nil }
            return FileStatusJSON.Member(
                id: member.id, name: member.name, state: member.state.rawValue,
                configured: claim != nil || member.id == node.nodeID,
                timestamp: claim.flatMap { $0.timestamp == Holding.nothing ? nil : $0.timestamp },
                current: held.map { claim?.holds($0.version) == true } ?? false,
                refused: refusal.map { refusal in
                    FileStatusJSON.Refused(
                        timestamp: refusal.timestamp, reason: refusal.reason?.label ?? "\(refusal.reasonCode)",
                        message: refusal.explanation,
                        limit: refusal.hasLimit ? refusal.limit : nil, lasting: refusal.isLasting,
                        current: held.map { refusal.refuses($0.version) } ?? false)
                })
        }
        return jsonResponse(
            .ok,
            FileStatusJSON(
                name: name.value, timestamp: held?.version.timestamp,
                sha256: held.map { Hex.encode($0.version.contentSHA256) }, state: held?.state.rawValue,
                members: members))
    }

    func listFiles() -> Response {
        jsonResponse(.ok, node.store.list().map(FileEntryJSON.init))
    }

    func info() -> InfoJSON {
        let all = node.store.list()
        let served = all.filter(\.isServed)
        return InfoJSON(
            version: DataMesherVersion.string, node_name: node.nodeName, node_id: node.nodeID,
            network_id: node.config.cluster.networkID,
            counts: .init(
                files: served.count, bytes: served.reduce(0) { $0 + $1.version.contentLength },
                tombstones: all.filter { $0.state == .tombstone }.count,
                expired: all.filter { $0.state == .expired }.count, members: node.members().count),
            cluster: node.clusterCounters,
            clock_offset_seconds: node.clusterCounters.clockOffsetNanoseconds.map { Double($0) / 1e9 },
            files_configured: node.policy.allowedSigners.keys.map(\.value).sorted(),
            certificate_expires_at: node.certificateExpiry?.rfc3339,
            certificate_expires_in_seconds: node.certificateExpiry?.secondsLeft(now: WallClock.date()),
            api_features: [InfoJSON.Feature.signatureAfterBody])
    }

    // MARK: Reading a file

    func getFile(_ request: Request, headOnly: Bool = false) async throws -> Response {
        let name = try Self.fileName(fromPath: request.uri.path)
        let store = node.store
        guard let (stored, file) = try await node.openContent(name) else {
            if let held = store.current(name) {
                if held.state == .missing {
                    throw APIError(
                        .notFound, "the content of \"\(name)\" was damaged on this node; it waits to be fetched again")
                }
                throw APIError(.notFound, "\"\(name)\" was \(held.state == .tombstone ? "deleted" : "expired")")
            }
            throw APIError(.notFound, "\"\(name)\" is not held on this node")
        }
        var headers = Self.versionHeaders(stored.version)
        headers[.contentType] = "application/octet-stream"
        let length = Int(stored.version.contentLength)
        headers[.contentLength] = String(length)
        if headOnly { return Response(status: .ok, headers: headers) }
        let body = ResponseBody(contentLength: length) { writer in
            // The next chunk is read on the thread pool while this one is sent.
            var chunks = ReadAhead(file: file, chunkSize: Self.readChunk) { try await Blocking.run($0) }
            for _ in 0...(length / Self.readChunk) {  // one more pass than chunks, to see the end
                guard let chunk = try await chunks.next() else { break }
                try await writer.write(chunk)
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    static func versionHeaders(_ version: FileVersion) -> HTTPFields {
        var headers = HTTPFields()
        headers[DMHeader.signer] = version.signer.base64
        headers[DMHeader.signature] = Base64.encode(version.signature)
        headers[DMHeader.timestamp] = String(version.timestamp)
        headers[DMHeader.validFor] = String(version.validFor)
        headers[DMHeader.sha256] = Hex.encode(version.contentSHA256)
        return headers
    }

    // MARK: Uploading and deleting

    struct SignedHeaders {
        let signer: SignerKey
        /// Nil with `DM-Signature: after-body`: the body's last 64 bytes are the signature.
        let signature: [UInt8]?
        let timestamp: Int64
        let validFor: UInt64
    }

    /// The value of `DM-Signature` that says the signature comes after the content, as the
    /// body's last 64 bytes (counted in its Content-Length): a client can then send a big file
    /// while it hashes it, instead of hashing it first.
    public static let signatureAfterBody = "after-body"

    func putFile(_ request: Request, from source: String) async throws -> Response {
        let name = try Self.fileName(fromPath: request.uri.path)
        let signed = try Self.signedHeaders(request.headers)
        let bodyLength = try Self.contentLength(request.headers)
        var body = try UploadBody(bodyLength: bodyLength, signatureAfter: signed.signature == nil)
        let declaredLength = body.contentLength
        if let refusal = node.precheck(
            name: name, signer: signed.signer, contentLength: declaredLength, timestamp: signed.timestamp,
            validFor: signed.validFor, signature: signed.signature)
        {
            throw APIError(refusal)
        }
        if let full = uploads.enter(source) {
            throw APIError(
                .serviceUnavailable,
                full == .source
                    ? "too many uploads in progress from \(source) (\(uploads.perSource), half of max_concurrent_uploads); try again shortly"
                    : "too many uploads in progress (max_concurrent_uploads \(uploads.total)); try again shortly")
        }
        defer { uploads.leave(source) }
        let store = node.store
        if let declaredLength, let problem = node.spaceProblem(forUpload: declaredLength) {
            throw APIError(APIError.insufficientStorage, problem)
        }
        let limit = node.policy.maxFileSize
        if let declaredLength, declaredLength <= Self.smallUpload {
            return try await putSmallFile(name: name, signed: signed, body: body, request, limit: limit)
        }
        let upload = try await Blocking.run { try store.makeUpload() }
        defer { upload.discard() }
        // Each batch is written and hashed (on two threads of the pool) while the next one arrives.
        var batches = BatchWriter(batchSize: Self.writeBatch) { batch in
            try await upload.write(batch) { try await Blocking.run($0) }
        }
        do {
            for try await chunk in request.body {
                let content = try body.content(of: chunk)
                guard body.contentReceived <= limit else { throw tooLarge(name, limit: limit, signed: signed) }
                try await batches.append(content)
            }
            try await batches.finish()
        } catch {
            await batches.abandon()
            throw error
        }
        let digest = try upload.finish()
        let version = uploaded(
            name, signed: signed, sha256: digest.sha256, length: digest.length, signature: try body.signature(signed))
        return try await commit(version, content: upload, status: .created)
    }

    /// An upload whose Content-Length is at most `smallUpload` bytes: the body is gathered in
    /// memory and hashed here, then written, fsynced and committed in one trip to the disk pool
    /// (`Replica.submit(_:bytes:)`). The same checks and the same durable commit as a large
    /// upload, without a thread hop for each step.
    func putSmallFile(name: FileName, signed: SignedHeaders, body: UploadBody, _ request: Request, limit: UInt64)
        async throws -> Response
    {
        var body = body
        var bytes = ByteBuffer()
        bytes.reserveCapacity(Int(body.contentLength ?? 0))
        for try await chunk in request.body {
            var content = try body.content(of: chunk)
            guard body.contentReceived <= limit else { throw tooLarge(name, limit: limit, signed: signed) }
            bytes.writeBuffer(&content)
        }
        let version = uploaded(
            name, signed: signed, sha256: Upload.sha256(of: bytes), length: UInt64(bytes.readableBytes),
            signature: try body.signature(signed))
        return try answer(try await node.submit(version, bytes: bytes), status: .created)
    }

    /// The version an upload signs, for content of this hash and length.
    func uploaded(_ name: FileName, signed: SignedHeaders, sha256: [UInt8], length: UInt64, signature: [UInt8])
        -> FileVersion
    {
        FileVersion(
            kind: .content, networkID: node.config.cluster.networkID, name: name, timestamp: signed.timestamp,
            validFor: signed.validFor, contentSHA256: sha256, contentLength: length, signer: signed.signer,
            signature: signature)
    }

    /// An upload's body went over the size limit before its end: refused, counted and logged like
    /// any refusal.
    func tooLarge(_ name: FileName, limit: UInt64, signed: SignedHeaders) -> APIError {
        let refusal = Refusal.tooLarge(name, nil, limit: limit)
        node.noteRefusal(refusal, name: name, timestamp: signed.timestamp, origin: nil)
        return APIError(refusal)
    }

    func deleteFile(_ request: Request) async throws -> Response {
        let name = try Self.fileName(fromPath: request.uri.path)
        let signed = try Self.signedHeaders(request.headers)
        guard let signature = signed.signature else {
            throw APIError(.badRequest, "a deletion has an empty body, so its DM-Signature cannot come after it")
        }
        if let length = try Self.contentLength(request.headers), length != 0 {
            throw APIError(.badRequest, "a deletion has an empty body")
        }
        if let refusal = node.precheck(
            name: name, signer: signed.signer, contentLength: 0, timestamp: signed.timestamp, validFor: signed.validFor,
            signature: signature)
        {
            throw APIError(refusal)
        }
        for try await chunk in request.body where chunk.readableBytes > 0 {
            throw APIError(.badRequest, "a deletion has an empty body")
        }
        let version = FileVersion(
            kind: .tombstone, networkID: node.config.cluster.networkID, name: name, timestamp: signed.timestamp,
            validFor: signed.validFor, contentSHA256: FileVersion.emptySHA256, contentLength: 0, signer: signed.signer,
            signature: signature)
        return try await commit(version, content: nil, status: .ok)
    }

    func commit(_ version: FileVersion, content: Upload?, status: HTTPResponse.Status) async throws -> Response {
        try answer(try await node.submit(version, content: content), status: status)
    }

    func answer(_ result: CommitResult, status: HTTPResponse.Status) throws -> Response {
        switch result {
        case .stored(let stored):
            var headers = Self.versionHeaders(stored.version)
            headers[.contentType] = "application/json"
            return Response(
                status: status, headers: headers,
                body: .init(byteBuffer: ByteBuffer(bytes: FileEntryJSON(stored).encoded())))
        case .refused(let refusal):
            throw APIError(refusal)
        }
    }

    // MARK: Parsing requests

    /// The file name in a `/v1/files/NAME` path: percent-decoded once, then held to the name rules.
    static func fileName(fromPath path: String, prefix: String = filesPrefix) throws -> FileName {
        guard path.hasPrefix(prefix) else { throw APIError(.badRequest, "file name is missing") }
        let encoded = path.dropFirst(prefix.count)
        guard let decoded = percentDecode(encoded) else {
            throw APIError(.badRequest, "file name has a malformed percent-encoding")
        }
        do { return try FileName(decoded) } catch { throw APIError(.badRequest, error.description) }
    }

    static func percentDecode(_ text: Substring) -> String? {
        var bytes = [UInt8]()
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next(), let low = iterator.next(),
                    let value = Hex.decode(String(decoding: [high, low], as: UTF8.self))
                else { return nil }
                bytes += value
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    static func single(_ headers: HTTPFields, _ name: HTTPField.Name, required: Bool) throws -> String? {
        let values = headers[values: name]
        guard values.count <= 1 else { throw APIError(.badRequest, "header \(name) is given more than once") }
        guard let value = values.first else {
            if required { throw APIError(.badRequest, "header \(name) is missing") }
            return nil
        }
        return value
    }

    static func signedHeaders(_ headers: HTTPFields) throws -> SignedHeaders {
        let signerText = try single(headers, DMHeader.signer, required: true) ?? ""
        let signer: SignerKey
        do { signer = try SignerKey(base64: signerText) } catch {
            throw APIError(.badRequest, "header DM-Signer: \(error)")
        }
        let signatureText = try single(headers, DMHeader.signature, required: true) ?? ""
        var signature: [UInt8]? = nil
        if signatureText != signatureAfterBody {
            guard let decoded = Base64.decode(signatureText), decoded.count == FileVersion.signatureLength else {
                throw APIError(
                    .badRequest,
                    "header DM-Signature must be the base64 of a 64-byte ED25519 signature, or \"\(signatureAfterBody)\""
                )
            }
            signature = decoded
        }
        let timestampText = try single(headers, DMHeader.timestamp, required: true) ?? ""
        guard let timestamp = Int64(timestampText), timestamp >= 0 else {
            throw APIError(
                .badRequest, "header DM-Timestamp must be nanoseconds since the Unix epoch (a decimal integer)")
        }
        var validFor: UInt64 = 0
        if let text = try single(headers, DMHeader.validFor, required: false) {
            guard let parsed = UInt64(text) else {
                throw APIError(.badRequest, "header DM-Valid-For must be a number of nanoseconds (a decimal integer)")
            }
            validFor = parsed
        }
        return SignedHeaders(signer: signer, signature: signature, timestamp: timestamp, validFor: validFor)
    }

    static func contentLength(_ headers: HTTPFields) throws -> UInt64? {
        guard let text = try single(headers, HTTPField.Name.contentLength, required: false) else { return nil }
        guard let length = UInt64(text) else { throw APIError(.badRequest, "header Content-Length is not a number") }
        return length
    }
}

/// An upload's body as it arrives: its content, then, with `DM-Signature: after-body`, the
/// 64-byte signature that ends it. Holds the body to its Content-Length.
struct UploadBody {
    /// The Content-Length; nil when the request has none (chunked).
    let bodyLength: UInt64?
    /// How many of the body's last bytes are the signature: 64 with `after-body`, else 0.
    let signatureLength: UInt64
    private(set) var contentReceived: UInt64 = 0
    private var signatureAfter: [UInt8] = []

    init(bodyLength: UInt64?, signatureAfter: Bool) throws {
        self.bodyLength = bodyLength
        signatureLength = signatureAfter ? UInt64(FileVersion.signatureLength) : 0
        if signatureAfter, (bodyLength ?? 0) < signatureLength {
            throw APIError(
                .badRequest,
                "with DM-Signature: \(API.signatureAfterBody), Content-Length must count the content and the"
                    + " \(signatureLength)-byte signature after it")
        }
    }

    /// The content's length: the Content-Length less the signature after it; nil without one.
    var contentLength: UInt64? { bodyLength.map { $0 - signatureLength } }

    /// The part of `chunk` that is content; the rest is kept as the signature.
    mutating func content(of chunk: ByteBuffer) throws -> ByteBuffer {
        let received = contentReceived.addingSaturated(UInt64(signatureAfter.count + chunk.readableBytes))
        if let bodyLength, received > bodyLength {
            throw APIError(.badRequest, "body has more than \(bodyLength) bytes but Content-Length said \(bodyLength)")
        }
        let contentPart = Int(min(UInt64(chunk.readableBytes), (contentLength ?? .max) - contentReceived))
        contentReceived += UInt64(contentPart)
        signatureAfter += chunk.readableBytesView.dropFirst(contentPart)
        return chunk.getSlice(at: chunk.readerIndex, length: contentPart) ?? ByteBuffer()
    }

    /// Once the body has ended: the version's signature (the header's, or the one after the
    /// content), if the body had its Content-Length.
    func signature(_ signed: API.SignedHeaders) throws -> [UInt8] {
        let received = contentReceived + UInt64(signatureAfter.count)
        if let bodyLength, received != bodyLength {
            throw APIError(.badRequest, "body has \(received) bytes but Content-Length said \(bodyLength)")
        }
        return signed.signature ?? signatureAfter
    }
}

/// Turns every error into a JSON `{"error": …}` with the right status; never leaks a trace.
struct JSONErrorMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let node: Replica

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return error.response
        } catch let error as DiskError where error.isDiskFull {
            // Nothing held was changed (the store commits by rename); the upload's temporary
            // file is gone again, so the next upload works once space is free.
            node.noteDiskFull(error, path: request.uri.path)
            return jsonResponse(APIError.insufficientStorage, ErrorJSON(error: "disk full: \(error)"))
        } catch  where error is HTTPParserError || error is IOError || error is ChannelError {
            // A malformed request, or a client that went away or reset the connection mid-body:
            // its doing, and anyone can do it, so not a line at error level each time.
            context.logger.debug("request ended early: \(error)")
            return jsonResponse(.badRequest, ErrorJSON(error: "malformed or incomplete request"))
        } catch let error as HTTPError {
            let message = error.body ?? (error.status == .notFound ? "no such endpoint" : error.status.reasonPhrase)
            return jsonResponse(error.status, ErrorJSON(error: message))
        } catch {
            context.logger.error("request failed: \(error)")
            return jsonResponse(.internalServerError, ErrorJSON(error: "internal error; see the node's log"))
        }
    }
}

/// The request context of the API's routes: Hummingbird's, and the client's address (upload
/// slots and event subscriptions are capped per source too).
public struct APIRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    /// The client's IP address, as the per-source caps count it.
    var source: String { remoteAddress?.ipAddress ?? "unknown" }
}
