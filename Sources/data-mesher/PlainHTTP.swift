import DataMesherCore
import DataMesherStore
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHTTP1

#if canImport(Glibc)
    import Glibc
    private let streamSocket = Int32(SOCK_STREAM.rawValue)
#else
    import Darwin
    private let streamSocket = SOCK_STREAM
#endif

/// HTTP/1.1 requests and their replies over plain TCP: how the CLI talks to a node at an
/// `http://` URL, except to follow its event stream (`watch`). The bytes go over a blocking
/// socket on the calling thread;
/// swift-nio's HTTP/1 codec (`addHTTPClientHandlers`, llhttp) runs in an `EmbeddedChannel`, so no
/// event loop thread is started and no reply hops between threads. AsyncHTTPClient (its
/// connection pool, request state machines and streaming bridges) and then NIO's event loop
/// cost more CPU at first use than anything else in a short `file update` of 1 KiB
/// (bench/README.md, section 7). A file's content goes from the page cache to the socket with
/// `sendfile`, read by no one in between; fetched content (`download`) is received straight into
/// buffers of its own. `https://` URLs still go through AsyncHTTPClient.
///
/// A connection the node keeps open (HTTP/1.1 keep-alive) carries the next request too, so a
/// `file update` asks for the network ID and uploads on one connection. Should the node have
/// closed a kept connection meanwhile, the request is sent once more on a new one, provided no
/// byte of a reply had arrived.
struct PlainHTTP: Sendable {
    let host: String
    let port: Int
    /// The URL's path, put in front of every request's path ("" for none).
    let pathPrefix: String
    /// What the `Host` header says.
    let authority: String
    /// The connection the last reply left open, for the next request.
    let kept = KeptConnection()

    final class KeptConnection: Sendable {
        private let socket = NIOLockedValueBox<Int32?>(nil)

        func take() -> Int32? {
            socket.withLockedValue { socket in
                defer { socket = nil }
                return socket
            }
        }

        /// Keeps `fd` for the next request (closing one kept before, if any).
        func keep(_ fd: Int32) {
            let previous = socket.withLockedValue { socket in
                defer { socket = fd }
                return socket
            }
            if let previous { close(previous) }
        }
    }

    /// How long connecting may take, per address of the host.
    static let connectTimeoutMilliseconds: Int32 = 3000
    /// How long a send or a receive may wait for the node.
    static let ioTimeoutSeconds = 120

    /// A failure to reach the node or to get its whole reply, as a short phrase.
    struct TransportError: Error, CustomStringConvertible {
        let description: String
    }

    /// What a request carries.
    enum Body: Sendable {
        case bytes(ByteBuffer)
        /// All of an open file, counted on `progress` as it is sent.
        case file(ContentReader, progress: ProgressBar?)
        /// All of an open file, then its 64-byte signature (`DM-Signature: after-body`), made
        /// while the file is sent.
        case fileThenSignature(ContentReader, progress: ProgressBar?, signer: SignerWhileSending)

        var length: Int {
            switch self {
            case .bytes(let bytes): bytes.readableBytes
            case .file(let file, _): file.length
            case .fileThenSignature(let file, _, _): file.length + FileVersion.signatureLength
            }
        }
    }

    /// Nil unless `baseURL` is `http://HOST[:PORT][/PATH]` (HOST a name, an IPv4 address or a
    /// bracketed IPv6 address, without user information).
    init?(baseURL: String) {
        guard baseURL.hasPrefix("http://") else { return nil }
        let rest = baseURL.dropFirst("http://".count)
        let authority = rest.prefix { $0 != "/" }
        pathPrefix = String(rest.dropFirst(authority.count))
        guard !authority.isEmpty, !authority.contains("@"),
            let (host, port) = Self.hostAndPort(authority), !host.isEmpty
        else { return nil }
        self.port = port ?? 80
        self.host = String(host)
        self.authority = String(authority)
    }

    /// HOST and PORT of an authority `HOST[:PORT]` (HOST a name, an IPv4 address or a bracketed
    /// IPv6 address, returned without its brackets; PORT nil when not given); nil when a bracket
    /// does not close, something other than `:PORT` follows it, or PORT is not 1-65535.
    static func hostAndPort(_ authority: Substring) -> (host: Substring, port: Int?)? {
        var host = authority
        var portText: Substring? = nil
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let after = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return nil }
                portText = after.dropFirst()
            }
        } else if let colon = host.lastIndex(of: ":") {
            portText = host[host.index(after: colon)...]
            host = host[..<colon]
        }
        guard let portText else { return (host, nil) }
        guard let port = Int(portText), (1...65535).contains(port) else { return nil }
        return (host, port)
    }

    /// Sends the request and collects the reply (at most `limit` bytes of body). Blocks the
    /// calling thread until the reply is complete, the connection fails or a timeout passes.
    func exchange(_ method: HTTPMethod, _ path: String, headers: [(String, String)], body: Body?, limit: Int)
        throws -> APIClient.Reply
    {
        if let socket = kept.take(),
            let reply = try exchange(method, path, headers: headers, body: body, limit: limit, on: socket, reused: true)
        {
            return reply
        }
        let socket = try Self.dial(host: host, port: port)
        guard let reply = try exchange(method, path, headers: headers, body: body, limit: limit, on: socket) else {
            throw TransportError(description: Self.closedEarly)  // only a reused connection answers nil
        }
        return reply
    }

    /// One request on `socket`, which this closes or keeps. Nil when `reused` and the connection
    /// was closed or reset before any byte of a reply arrived: the node closed it while it was
    /// kept.
    func exchange(
        _ method: HTTPMethod, _ path: String, headers: [(String, String)], body: Body?, limit: Int, on socket: Int32,
        reused: Bool = false
    ) throws -> APIClient.Reply? {
        var keep = false
        defer { if keep { kept.keep(socket) } else { close(socket) } }
        let codec = EmbeddedChannel()
        defer { _ = try? codec.finish(acceptAlreadyClosed: true) }
        let sendFailure = try sendRequest(method, path, headers: headers, body: body, codec: codec, on: socket)

        var reply: (head: HTTPResponseHead?, body: [UInt8]) = (nil, [])
        var buffer = ByteBufferAllocator().buffer(capacity: 16 << 10)
        var receivedAny = false
        while true {
            buffer.clear()
            let (received, receiveError) = Self.receive(from: socket, into: &buffer, upTo: 16 << 10)
            if reused && !receivedAny && (received == 0 || receiveError == ECONNRESET || receiveError == EPIPE) {
                return nil
            }
            receivedAny = true
            if received < 0 { throw sendFailure ?? TransportError(description: Self.errorText(receiveError)) }
            try Self.decode(buffer, received: received, with: codec, sendFailure: sendFailure)
            while let part = try codec.readInbound(as: HTTPClientResponsePart.self) {
                switch part {
                case .head(let responseHead):
                    reply.head = responseHead
                case .body(let chunk):
                    reply.body += chunk.readableBytesView
                    if reply.body.count > limit {
                        throw TransportError(description: "the node's reply is larger than \(limit) bytes")
                    }
                case .end:
                    if let responseHead = reply.head {
                        // A request sent whole, and a reply the node does not close after.
                        keep = sendFailure == nil && responseHead.isKeepAlive
                        return APIClient.Reply(
                            status: Int(responseHead.status.code), headers: responseHead.headers, body: reply.body)
                    }
                }
            }
            if received == 0 { throw sendFailure ?? TransportError(description: Self.closedEarly) }
        }
    }

    /// Encodes the request with `codec` (whose HTTP client handlers this adds) and sends it on
    /// `socket`: nil once all of it is sent, else why not. The node may answer and close early
    /// (a refusal); what it said is read all the same.
    func sendRequest(
        _ method: HTTPMethod, _ path: String, headers: [(String, String)], body: Body?, codec: EmbeddedChannel,
        on socket: Int32
    ) throws -> TransportError? {
        try codec.pipeline.syncOperations.addHTTPClientHandlers()
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: pathPrefix + path)
        head.headers.add(name: "Host", value: authority)
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        if let body {
            head.headers.add(name: "Content-Length", value: String(body.length))
        } else if method == .PUT || method == .POST {
            head.headers.add(name: "Content-Length", value: "0")
        }
        try codec.writeOutbound(HTTPClientRequestPart.head(head))
        if case .bytes(let bytes) = body { try codec.writeOutbound(HTTPClientRequestPart.body(.byteBuffer(bytes))) }
        var sendFailure = try Self.sendOutbound(codec, to: socket)
        switch body {
        case .file(let file, let progress)? where sendFailure == nil:
            sendFailure = try Self.sendFile(file, to: socket, progress: progress)
        case .fileThenSignature(let file, let progress, let signer)? where sendFailure == nil:
            sendFailure = try Self.sendFile(file, to: socket, progress: progress)
            if sendFailure == nil {
                let signature = try signer.version().signature
                try codec.writeOutbound(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: signature))))
                sendFailure = try Self.sendOutbound(codec, to: socket)
            }
        default: break
        }
        try codec.writeOutbound(HTTPClientRequestPart.end(nil))
        if sendFailure == nil { sendFailure = try Self.sendOutbound(codec, to: socket) }
        return sendFailure
    }

    /// A GET whose reply may be large (`file get`): a 200's body goes to `content` as it
    /// arrives, in pieces of up to `downloadPiece` bytes, each received straight into a buffer of
    /// its own. Any other reply is collected, up to `limit` bytes, and returned. Always on a new
    /// connection, closed afterwards.
    func download(
        _ path: String, limit: Int, content: (_ head: HTTPResponseHead, _ piece: ByteBuffer) async throws -> Void
    ) async throws -> APIClient.Reply {
        let socket = try Self.dial(host: host, port: port)
        defer { close(socket) }
        let head: HTTPResponseHead
        let length: Int
        let early: [ByteBuffer]
        switch try receiveHead(path, limit: limit, on: socket) {
        case .reply(let reply): return reply
        case .content(let contentHead, let contentLength, let first):
            (head, length, early) = (contentHead, contentLength, first)
        }
        var remaining = length
        for piece in early {
            remaining -= piece.readableBytes
            try await content(head, piece)
        }
        // The rest bypasses the codec: its length is known, so a receive waits for a whole piece.
        while remaining > 0 {
            let want = min(remaining, Self.downloadPiece)
            var buffer = ByteBufferAllocator().buffer(capacity: want)
            let (received, receiveError) = Self.receive(
                from: socket, into: &buffer, upTo: want, flags: Int32(MSG_WAITALL))
            if received < 0 { throw TransportError(description: Self.errorText(receiveError)) }
            if received == 0 {
                // The node cuts a file whose content it finds changed on its disk while sending it.
                throw CLIError(
                    "the node stopped sending after \(length - remaining) of \(length) bytes (a node stops sending"
                        + " a file that no longer matches its signed hash on its disk, and takes that version again"
                        + " from a member that has it)")
            }
            remaining -= received
            try await content(head, buffer)
        }
        return APIClient.Reply(status: Int(head.status.code), headers: head.headers, body: [])
    }

    /// How a download's reply begins.
    enum DownloadStart {
        /// A 200 with its declared length and the first bytes of its body, which came with the head.
        case content(HTTPResponseHead, length: Int, early: [ByteBuffer])
        /// Any other reply, whole.
        case reply(APIClient.Reply)
    }

    /// Sends the GET and reads the reply through the HTTP codec up to the end of its head (all
    /// of it, unless it is a 200), on the calling thread: `EmbeddedChannel` must stay on the
    /// thread that made it.
    func receiveHead(_ path: String, limit: Int, on socket: Int32) throws -> DownloadStart {
        let codec = EmbeddedChannel()
        defer { _ = try? codec.finish(acceptAlreadyClosed: true) }
        let sendFailure = try sendRequest(.GET, path, headers: [], body: nil, codec: codec, on: socket)
        var head: HTTPResponseHead?
        var body = [ByteBuffer]()
        var collected = 0
        var buffer = ByteBufferAllocator().buffer(capacity: 16 << 10)
        while true {
            buffer.clear()
            let (received, receiveError) = Self.receive(from: socket, into: &buffer, upTo: 16 << 10)
            if received < 0 { throw sendFailure ?? TransportError(description: Self.errorText(receiveError)) }
            try Self.decode(buffer, received: received, with: codec, sendFailure: sendFailure)
            var ended = false
            while let part = try codec.readInbound(as: HTTPClientResponsePart.self) {
                switch part {
                case .head(let responseHead): head = responseHead
                case .body(let piece):
                    collected += piece.readableBytes
                    if head?.status != .ok && collected > limit {
                        throw TransportError(description: "the node's reply is larger than \(limit) bytes")
                    }
                    body.append(piece)
                case .end: ended = true
                }
            }
            if let head, head.status == .ok {
                guard let length = head.headers.first(name: "Content-Length").flatMap({ Int($0) }), length >= 0
                else { throw TransportError(description: "the node's reply has no Content-Length") }
                return .content(head, length: length, early: body)
            }
            if let head, ended {
                let bytes = body.reduce(into: [UInt8]()) { $0 += $1.readableBytesView }
                return .reply(APIClient.Reply(status: Int(head.status.code), headers: head.headers, body: bytes))
            }
            if received == 0 { throw sendFailure ?? TransportError(description: Self.closedEarly) }
        }
    }

    /// How much of a downloaded body one receive takes at most.
    static let downloadPiece = 1 << 20

    /// Feeds `received` bytes (0: the node closed the connection) to the HTTP codec.
    static func decode(_ buffer: ByteBuffer, received: Int, with codec: EmbeddedChannel, sendFailure: TransportError?)
        throws
    {
        do {
            if received > 0 {
                try codec.writeInbound(buffer)
            } else {
                // Ends a reply delimited by the connection's end; fails one cut short.
                codec.pipeline.syncOperations.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
                try codec.throwIfErrorCaught()
            }
        } catch {
            throw sendFailure
                ?? TransportError(
                    description: received == 0 ? closedEarly : "the node's reply is not valid HTTP (\(error))")
        }
    }

    static let closedEarly = "the connection closed before the whole reply arrived"

    /// A connected, blocking TCP socket to the first of `host`'s addresses that accepts within
    /// the connect timeout.
    static func dial(host: String, port: Int) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = streamSocket
        var list: UnsafeMutablePointer<addrinfo>? = nil
        let resolved = getaddrinfo(host, String(port), &hints, &list)
        guard resolved == 0, let first = list else {
            throw TransportError(description: "cannot resolve \(host): \(String(cString: gai_strerror(resolved)))")
        }
        defer { freeaddrinfo(first) }
        var failure = TransportError(description: "\(host) has no address")
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let address = next {
            next = address.pointee.ai_next
            do {
                return try dial(address.pointee)
            } catch let error as TransportError {
                failure = error
            }
        }
        throw failure
    }

    static func dial(_ address: addrinfo) throws -> Int32 {
        let fd = socket(address.ai_family, address.ai_socktype, address.ai_protocol)
        guard fd >= 0 else { throw TransportError(description: errorText(errno)) }
        var ok = false
        defer { if !ok { close(fd) } }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        if connect(fd, address.ai_addr, address.ai_addrlen) != 0 {
            guard errno == EINPROGRESS else { throw TransportError(description: errorText(errno)) }
            var waiting = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            var ready: Int32
            repeat { ready = poll(&waiting, 1, connectTimeoutMilliseconds) } while ready < 0 && errno == EINTR
            guard ready > 0 else { throw TransportError(description: "connection timed out") }
            var problem: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &problem, &length)
            guard problem == 0 else { throw TransportError(description: errorText(problem)) }
        }
        _ = fcntl(fd, F_SETFL, flags)
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var timeout = timeval(tv_sec: ioTimeoutSeconds, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        ok = true
        return fd
    }

    /// Sends what the codec encoded so far; nil once all of it is sent, else why not.
    static func sendOutbound(_ codec: EmbeddedChannel, to socket: Int32) throws -> TransportError? {
        while let part = try codec.readOutbound(as: IOData.self) {
            guard case .byteBuffer(let bytes) = part else { continue }  // the encoder writes no file regions
            if let failure = sendAll(bytes, to: socket) { return failure }
        }
        return nil
    }

    /// Sends all of `file` (from the page cache, with `sendfile`); nil once it is sent, else why
    /// not. Stops early when the node answers (or closes) before the end, as it does when it
    /// refuses the upload from its headers. Throws when the file is shorter than it was when
    /// opened.
    static func sendFile(_ file: ContentReader, to socket: Int32, progress: ProgressBar?) throws -> TransportError? {
        // sendfile has no MSG_NOSIGNAL: a node that refuses early and closes must not kill the
        // CLI with SIGPIPE before it reads the refusal.
        signal(SIGPIPE, SIG_IGN)
        let flags = fcntl(socket, F_GETFL)
        _ = fcntl(socket, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(socket, F_SETFL, flags) }
        var offset = 0
        // Passes that sent nothing in a row (a signal, a spurious wake-up); each waits at most
        // the I/O timeout.
        var idlePasses = 0
        while offset < file.length {
            idlePasses += 1
            guard idlePasses <= maxIdlePasses else { return TransportError(description: errorText(ETIMEDOUT)) }
            var ready = pollfd(fd: socket, events: Int16(POLLIN | POLLOUT), revents: 0)
            let polled = poll(&ready, 1, Int32(ioTimeoutSeconds * 1000))
            if polled < 0 && errno == EINTR { continue }
            guard polled > 0 else { return TransportError(description: errorText(polled == 0 ? ETIMEDOUT : errno)) }
            if ready.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                return TransportError(description: "the node answered before the whole file was sent")
            }
            let piece = min(file.length - offset, 4 << 20)
            #if os(Linux)
                var position = off_t(offset)
                let count = sendfile(socket, file.fd, &position, piece)
            #else
                let bytes = try file.read(at: offset, upTo: piece)
                let count = bytes.withUnsafeReadableBytes { send(socket, $0.baseAddress, $0.count, 0) }
            #endif
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return TransportError(description: errorText(errno))
            }
            guard count > 0 else { throw CLIError.fileChangedWhileUploading }
            offset += count
            idlePasses = 0
            progress?.advance(by: count)
        }
        return nil
    }

    /// How many passes of `sendFile` in a row may send nothing before it gives up.
    static let maxIdlePasses = 1000

    /// Nil once all of `bytes` is sent, else why not.
    static func sendAll(_ bytes: ByteBuffer, to socket: Int32) -> TransportError? {
        bytes.withUnsafeReadableBytes { raw in
            var sent = 0
            while sent < raw.count {
                let count = send(socket, raw.baseAddress.map { $0 + sent }, raw.count - sent, Int32(MSG_NOSIGNAL))
                if count > 0 {
                    sent += count
                } else if count < 0 && errno == EINTR {
                    continue
                } else {
                    return TransportError(description: errorText(errno))
                }
            }
            return nil
        }
    }

    /// Receives at most `count` bytes onto the end of `buffer` (again when a signal interrupted
    /// the receive): how many (0: the node closed the connection; -1: an error, with its code).
    static func receive(from socket: Int32, into buffer: inout ByteBuffer, upTo count: Int, flags: Int32 = 0)
        -> (count: Int, code: Int32)
    {
        var result: (count: Int, code: Int32) = (0, 0)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw in
            repeat {
                result.count = recv(socket, raw.baseAddress, count, flags)
            } while result.count < 0 && errno == EINTR
            if result.count < 0 { result.code = errno }
            return max(result.count, 0)
        }
        return result
    }

    static func errorText(_ code: Int32) -> String {
        switch code {
        case ECONNREFUSED: "connection refused"
        case EAGAIN, ETIMEDOUT: "timed out after \(ioTimeoutSeconds) s"
        default: String(cString: strerror(code))
        }
    }
}
