import AsyncHTTPClient
import DataMesherHTTP
import DataMesherStore
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// Talks to a node's HTTP API; every failure becomes a one-sentence `CLIError`.
struct APIClient {
    let baseURL: String
    /// For an `http://` URL: requests whose body is in memory go this way (`PlainHTTP`).
    let plain: PlainHTTP?

    init(url: String) throws {
        var base = url
        while base.hasSuffix("/") { base.removeLast() }
        guard base.hasPrefix("http://") || base.hasPrefix("https://"), base.count > 8 else {
            throw CLIError("--url \(url) is not an http:// or https:// URL")
        }
        guard Self.portIsValid(base) else {
            throw CLIError("--url \(url): the port must be a number from 1 to 65535")
        }
        baseURL = base
        plain = PlainHTTP(baseURL: base)
    }

    /// Whether the URL's port, if it names one, is a number from 1 to 65535 (the HTTP library
    /// would trap on a larger one).
    static func portIsValid(_ url: String) -> Bool {
        guard let scheme = url.range(of: "://") else { return false }
        let authority = url[scheme.upperBound...].prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        let hostAndPort = authority.split(separator: "@", omittingEmptySubsequences: false).last ?? authority
        return PlainHTTP.hostAndPort(hostAndPort) != nil
    }

    struct Reply {
        let status: Int
        let headers: HTTPHeaders
        let body: [UInt8]
    }

    /// Sends one request and collects a (small) reply.
    func send(
        _ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: PlainHTTP.Body? = nil,
        limit: Int = 64 << 20
    ) async throws -> Reply {
        if let plain {
            return try await reportingTransportErrors {
                try plain.exchange(method, path, headers: headers, body: body, limit: limit)
            }
        }
        let body: HTTPClientRequest.Body? =
            switch body {
            case .bytes(let bytes): .bytes(bytes)
            case .file(let file, let progress):
                .stream(FileChunks(file: file, progress: progress), length: .known(Int64(file.length)))
            case .fileThenSignature:
                throw CLIError("a signature after the body is only sent to an http:// node")
            case nil: nil
            }
        return try await withClient { client in
            let response = try await client.execute(
                request(method, path, headers: headers, body: body), timeout: .hours(24))
            var collected = [UInt8]()
            for try await chunk in response.body {
                collected += chunk.readableBytesView
                if collected.count > limit { throw CLIError("the server's reply is larger than \(limit) bytes") }
            }
            return Reply(status: Int(response.status.code), headers: response.headers, body: collected)
        }
    }

    /// The event loop AsyncHTTPClient's connections run on: one thread is plenty for the CLI's one
    /// connection at a time, and a second one would only cost its start-up. Lives as long as the
    /// process.
    static let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    static func makeHTTPClient() -> HTTPClient {
        // A node is local or on the LAN: fail fast when nothing listens, instead of retrying.
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(3))
        return HTTPClient(eventLoopGroupProvider: .shared(eventLoops), configuration: configuration)
    }

    /// Runs `body`, turning a transport error into a sentence (a `CLIError`, and a local file's
    /// `DiskError` such as a full stdout, pass unchanged).
    func reportingTransportErrors<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let error as CLIError { throw error } catch let error as DiskError {
            throw error
        } catch {
            throw CLIError("cannot reach data-mesher at \(baseURL): \(Self.transportMessage(error))")
        }
    }

    func request(_ method: HTTPMethod, _ path: String, headers: [(String, String)], body: HTTPClientRequest.Body?)
        -> HTTPClientRequest
    {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = body
        return request
    }

    /// Runs `body` with a client that is shut down afterwards, mapping transport errors to sentences.
    func withClient<T>(_ body: (HTTPClient) async throws -> T) async throws -> T {
        let client = Self.makeHTTPClient()
        do {
            let result = try await reportingTransportErrors { try await body(client) }
            try? await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    static func transportMessage(_ error: any Error) -> String {
        let text = String(describing: error)
        if text.contains("connectionRefused") || text.contains("Connection refused") { return "connection refused" }
        if text.contains("connectTimeout") { return "connection timed out" }
        if let error = error as? HTTPClientError { return error.description }
        if let error = error as? PlainHTTP.TransportError { return error.description }
        return text.prefix(200).description
    }

    /// The `error` of a JSON error reply, or the raw text.
    static func reason(_ reply: Reply) -> String {
        if let decoded = try? JSONDecoder().decode(ErrorJSON.self, from: Data(reply.body)) { return decoded.error }
        let text = String(decoding: reply.body.prefix(300), as: UTF8.self)
        return text.isEmpty ? "HTTP \(reply.status)" : text
    }

    func decode<T: Decodable>(_ type: T.Type, _ reply: Reply) throws -> T {
        guard reply.status == 200 else { throw CLIError("the node answered \(reply.status): \(Self.reason(reply))") }
        do { return try JSONDecoder().decode(type, from: Data(reply.body)) } catch {
            throw CLIError("the node's answer is not the expected JSON")
        }
    }
}

/// A file read in 1 MiB chunks off the cooperative pool, one chunk ahead of the sending, as a
/// request body.
struct FileChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let file: ContentReader
    var progress: ProgressBar? = nil

    struct AsyncIterator: AsyncIteratorProtocol {
        var chunks: ReadAhead
        let progress: ProgressBar?

        mutating func next() async throws -> ByteBuffer? {
            do {
                guard let chunk = try await chunks.next() else { return nil }
                progress?.advance(by: chunk.readableBytes)
                return chunk
            } catch is ContentReader.Shrank {
                throw CLIError.fileChangedWhileUploading
            }
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(
            chunks: ReadAhead(file: file) { try await NIOThreadPool.singleton.runIfActive($0) }, progress: progress)
    }
}
