import NIOCore
import NIOHTTP1
import NIOPosix

/// One HTTP/1.1 request and its reply over plain TCP with swift-nio's HTTP/1 codec
/// (`addHTTPClientHandlers`, llhttp), one connection per request: how the CLI talks to a node at
/// an `http://` URL whenever the request's body is in memory, which is every request but the
/// upload of a file over 64 KiB. AsyncHTTPClient (its connection pool, request state machines
/// and streaming bridges) cost more CPU at first use than anything else in a short `file update`
/// of 1 KiB: each generic type it instantiates at run time has its conformances looked up by a
/// scan of the binary's ~10,600 conformance records (bench/README.md, section 7). `https://`
/// URLs and streamed bodies still go through AsyncHTTPClient.
struct PlainHTTP: Sendable {
    let host: String
    let port: Int
    /// The URL's path, put in front of every request's path ("" for none).
    let pathPrefix: String
    /// What the `Host` header says.
    let authority: String

    /// Nil unless `baseURL` is `http://HOST[:PORT][/PATH]` (HOST a name, an IPv4 address or a
    /// bracketed IPv6 address, without user information).
    init?(baseURL: String) {
        guard baseURL.hasPrefix("http://") else { return nil }
        let rest = baseURL.dropFirst("http://".count)
        let authority = rest.prefix { $0 != "/" }
        pathPrefix = String(rest.dropFirst(authority.count))
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        var host = Substring(authority)
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
        guard !host.isEmpty else { return nil }
        if let portText {
            guard let port = Int(portText), (1...65535).contains(port) else { return nil }
            self.port = port
        } else {
            port = 80
        }
        self.host = String(host)
        self.authority = String(authority)
    }

    /// Sends the request and collects the reply (at most `limit` bytes of body).
    func exchange(_ method: HTTPMethod, _ path: String, headers: [(String, String)], body: ByteBuffer?, limit: Int)
        async throws -> APIClient.Reply
    {
        let group = APIClient.eventLoops
        let reply = group.next().makePromise(of: APIClient.Reply.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(3))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(ReplyCollector(reply: reply, limit: limit))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            reply.fail(error)  // nobody waits on it; completes it all the same
            throw error
        }
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: pathPrefix + path)
        head.headers.add(name: "Host", value: authority)
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        if let body {
            head.headers.add(name: "Content-Length", value: String(body.readableBytes))
        } else if method == .PUT || method == .POST {
            head.headers.add(name: "Content-Length", value: "0")
        }
        head.headers.add(name: "Connection", value: "close")
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        defer { channel.close(promise: nil) }
        return try await reply.futureResult.get()
    }
}

/// Collects one HTTP reply and completes the promise with it: when its end arrives, or with an
/// error when the connection fails or closes first.
final class ReplyCollector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    struct ClosedEarly: Error, CustomStringConvertible {
        var description: String { "the connection closed before the whole reply arrived" }
    }

    let reply: EventLoopPromise<APIClient.Reply>
    let limit: Int
    var head: HTTPResponseHead?
    var body: [UInt8] = []
    var done = false

    init(reply: EventLoopPromise<APIClient.Reply>, limit: Int) {
        self.reply = reply
        self.limit = limit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body(let chunk):
            body += chunk.readableBytesView
            if body.count > limit {
                finish(.failure(CLIError("the server's reply is larger than \(limit) bytes")), context: context)
            }
        case .end:
            guard let head else { return finish(.failure(ClosedEarly()), context: context) }
            finish(
                .success(APIClient.Reply(status: Int(head.status.code), headers: head.headers, body: body)),
                context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(.failure(error), context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(.failure(ClosedEarly()), context: context)
        context.fireChannelInactive()
    }

    func finish(_ result: Result<APIClient.Reply, any Error>, context: ChannelHandlerContext) {
        guard !done else { return }
        done = true
        reply.completeWith(result)
        context.close(promise: nil)
    }
}
