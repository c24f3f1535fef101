import Crypto
import DataMesherCore
import DataMesherHTTP
import DataMesherNet
import DataMesherStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

/// Routes driven in memory (no socket) over a node with a temporary state dir.
struct RouterFixture: @unchecked Sendable {  // immutable after init; the key is only read
    let dir = NSTemporaryDirectory() + "dm-http-" + UUID().uuidString
    let key = Curve25519.Signing.PrivateKey()
    let node: Replica

    init(maxFileSize: UInt64 = 1024) throws {
        var config = NodeConfig()
        config.stateDir = dir
        config.maxFileSize = maxFileSize
        config.files = [try FileName("dns/cnames"): [try SignerKey(bytes: Array(key.publicKey.rawRepresentation))]]
        let logger = Logger(label: "test")
        let store = try FileStore(stateDir: dir, policy: config.filePolicy, now: WallClock.now(), logger: logger)
        node = Replica(
            config: config, store: store, nodeName: "t", nodeID: String(repeating: "0", count: 32),
            clusterAddresses: [],
            logger: logger)
    }

    func app() -> some ApplicationProtocol { Application(router: API(node: node).router()) }

    func headers(_ name: String, _ content: String, at timestamp: Int64, tombstone: Bool = false) throws -> HTTPFields {
        try headers(name, bytes: Array(content.utf8), at: timestamp, tombstone: tombstone)
    }

    func headers(_ name: String, bytes: [UInt8], at timestamp: Int64, tombstone: Bool = false) throws -> HTTPFields {
        let version = try FileVersion.sign(
            kind: tombstone ? .tombstone : .content, networkID: "", name: try FileName(name), timestamp: timestamp,
            validFor: 0, contentSHA256: Array(SHA256.hash(data: bytes)), contentLength: UInt64(bytes.count), key: key)
        return [
            HTTPField.Name("DM-Signer")!: version.signer.base64,
            HTTPField.Name("DM-Signature")!: Base64.encode(version.signature),
            HTTPField.Name("DM-Timestamp")!: String(timestamp),
        ]
    }

    /// The headers of an upload whose signature follows the content (`DM-Signature: after-body`),
    /// and its body: the content, then the signature.
    func signedAfter(_ name: String, bytes: [UInt8], at timestamp: Int64) throws -> (HTTPFields, ByteBuffer) {
        var fields = try headers(name, bytes: bytes, at: timestamp)
        let signature = Base64.decode(fields[HTTPField.Name("DM-Signature")!] ?? "") ?? []
        fields[HTTPField.Name("DM-Signature")!] = API.signatureAfterBody
        return (fields, ByteBuffer(bytes: bytes + signature))
    }

    func remove() { try? FileManager.default.removeItem(atPath: dir) }
}

@Suite struct RouterTests {
    @Test func aSmallUploadIsStoredRefusedAndAnsweredLikeALargeOne() async throws {
        let fixture = try RouterFixture()
        defer { fixture.remove() }
        let now = WallClock.now()
        let name = try FileName("dns/cnames")
        try await fixture.app().test(.router) { client in
            // The test client sends a Content-Length with every body (its own: it replaces one
            // given here), so these take the small-upload path; LargeFileRouteTests streams.
            try await client.execute(
                uri: "/v1/files/dns/cnames", method: .put, headers: try fixture.headers("dns/cnames", "zone", at: now),
                body: ByteBuffer(string: "zone")
            ) { response in #expect(response.status == .created) }
            var headers = try fixture.headers("dns/cnames", "zone 2", at: now + 1)
            headers[.contentLength] = "6"
            try await client.execute(
                uri: "/v1/files/dns/cnames", method: .put, headers: headers, body: ByteBuffer(string: "zone 2")
            ) { response in
                #expect(response.status == .created)
                let entry = try JSONDecoder().decode(FileEntryJSON.self, from: Data(buffer: response.body))
                #expect(entry.size == 6 && entry.timestamp == now + 1)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                #expect(Array(buffer: response.body) == Array(try encoder.encode(entry)))
                #expect(response.headers[.contentType] == "application/json")
                #expect(response.headers[HTTPField.Name("DM-Timestamp")!] == String(now + 1))
            }
            // A stale one and one whose body is not what was signed are refused, and nothing
            // changes.
            headers = try fixture.headers("dns/cnames", "old", at: now)
            headers[.contentLength] = "3"
            try await client.execute(
                uri: "/v1/files/dns/cnames", method: .put, headers: headers, body: ByteBuffer(string: "old")
            ) { response in #expect(response.status == .conflict) }
            headers = try fixture.headers("dns/cnames", "signed", at: now + 3)
            headers[.contentLength] = "6"
            try await client.execute(
                uri: "/v1/files/dns/cnames", method: .put, headers: headers, body: ByteBuffer(string: "forged")
            ) { response in #expect(response.status == .forbidden) }
            try await client.execute(uri: "/v1/files/dns/cnames", method: .get) { response in
                #expect(String(buffer: response.body) == "zone 2")
            }
        }
        #expect(fixture.node.store.current(name)?.version.timestamp == now + 1)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: fixture.dir + "/tmp")
        #expect(leftovers.isEmpty, "no temporary upload is left behind: \(leftovers)")
    }

    @Test func theHandWrittenEntryIsWhatJSONEncoderWrites() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let key = Curve25519.Signing.PrivateKey()
        let version = try FileVersion.sign(
            kind: .content, networkID: "n/et", name: try FileName("dns/cnames"), timestamp: 17, validFor: 3,
            contentSHA256: Array(repeating: 0xAB, count: 32), contentLength: 9, key: key)
        for state in [StoredFile.State.content, .tombstone, .expired, .missing] {
            var entry = FileEntryJSON(StoredFile(version: version, state: state))
            #expect(entry.encoded() == Array(try encoder.encode(entry)))
            for name in ["a/b", "quote\"back\\slash", "\u{0}\u{8}\u{9}\u{a}\u{c}\u{d}\u{1f}\u{7f}", "é 日本 🙂"] {
                entry.name = name
                entry.timestamp = -entry.timestamp
                #expect(entry.encoded() == Array(try encoder.encode(entry)), "\(name)")
            }
        }
    }

    @Test func uploadListGetDelete() async throws {
        let fixture = try RouterFixture()
        defer { fixture.remove() }
        let now = WallClock.now()
        try await fixture.app().test(.router) { client in
            try await client.execute(uri: "/v1/files", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "[]")
            }
            try await client.execute(
                uri: "/v1/files/dns/cnames", method: .put, headers: try fixture.headers("dns/cnames", "zone", at: now),
                body: ByteBuffer(string: "zone")
            ) { response in
                #expect(response.status == .created)
                let entry = try JSONDecoder().decode(FileEntryJSON.self, from: Data(buffer: response.body))
                #expect(entry.name == "dns/cnames" && entry.size == 4 && !entry.deleted)
            }
            try await client.execute(uri: "/v1/files/dns/cnames", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "zone")
                #expect(response.headers[HTTPField.Name("DM-Timestamp")!] == String(now))
                #expect(
                    response.headers[HTTPField.Name("DM-SHA256")!] == Hex.encode(SHA256.hash(data: Data("zone".utf8))))
            }
            try await client.execute(
                uri: "/v1/files/dns/cnames", method: .delete,
                headers: try fixture.headers("dns/cnames", "", at: now + 1, tombstone: true)
            ) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/v1/files/dns/cnames", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(String(buffer: response.body).contains("deleted"))
            }
            try await client.execute(uri: "/v1/members", method: .get) { response in
                let members = try JSONDecoder().decode([MemberInfo].self, from: Data(buffer: response.body))
                #expect(members.count == 1 && members[0].state == .alive)
            }
            try await client.execute(uri: "/v1/info", method: .get) { response in
                let info = try JSONDecoder().decode(InfoJSON.self, from: Data(buffer: response.body))
                #expect(info.counts.tombstones == 1 && info.counts.files == 0)
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(response.status == .ok)
                #expect(text.contains("dm_versions_accepted_total 2"), "\(text)")
                #expect(text.contains("dm_tombstones 1") && text.contains("dm_files 0"), "\(text)")
                #expect(text.contains("dm_members{state=\"alive\"} 1"), "\(text)")
            }
        }
    }

    /// With `DM-Signature: after-body` the body's last 64 bytes are the signature: taken when
    /// it signs the content before it, refused like any bad signature when not, and refused as
    /// malformed when the body cannot hold one or for a deletion.
    @Test func aSignatureAfterTheBodyIsCheckedLikeOneInTheHeaders() async throws {
        let fixture = try RouterFixture()
        defer { fixture.remove() }
        let now = WallClock.now()
        let name = try FileName("dns/cnames")
        try await fixture.app().test(.router) { client in
            let (headers, body) = try fixture.signedAfter("dns/cnames", bytes: Array("zone".utf8), at: now)
            try await client.execute(uri: "/v1/files/dns/cnames", method: .put, headers: headers, body: body) {
                response in
                #expect(response.status == .created)
                let entry = try JSONDecoder().decode(FileEntryJSON.self, from: Data(buffer: response.body))
                #expect(entry.size == 4 && entry.timestamp == now)
            }
            // The same version again is not newer; an older one is stale before its body counts.
            try await client.execute(uri: "/v1/files/dns/cnames", method: .put, headers: headers, body: body) {
                response in #expect(response.status == .conflict)
            }
            let (older, olderBody) = try fixture.signedAfter("dns/cnames", bytes: Array("old".utf8), at: now - 1)
            try await client.execute(uri: "/v1/files/dns/cnames", method: .put, headers: older, body: olderBody) {
                response in #expect(response.status == .conflict)
            }
            var (forged, forgedBody) = try fixture.signedAfter("dns/cnames", bytes: Array("zone 2".utf8), at: now + 1)
            forgedBody.setInteger(UInt8(ascii: "Z"), at: 0)
            try await client.execute(uri: "/v1/files/dns/cnames", method: .put, headers: forged, body: forgedBody) {
                response in #expect(response.status == .forbidden)
            }
            forgedBody = ByteBuffer(bytes: Array("zone 2".utf8) + [UInt8](repeating: 0, count: 64))
            try await client.execute(uri: "/v1/files/dns/cnames", method: .put, headers: forged, body: forgedBody) {
                response in #expect(response.status == .forbidden)
            }
            forgedBody = ByteBuffer(string: "short")
            try await client.execute(uri: "/v1/files/dns/cnames", method: .put, headers: forged, body: forgedBody) {
                response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("64-byte signature after it"))
            }
            var deletion = try fixture.headers("dns/cnames", "", at: now + 2, tombstone: true)
            deletion[HTTPField.Name("DM-Signature")!] = API.signatureAfterBody
            try await client.execute(uri: "/v1/files/dns/cnames", method: .delete, headers: deletion) { response in
                #expect(response.status == .badRequest)
            }
            try await client.execute(uri: "/v1/files/dns/cnames", method: .get) { response in
                #expect(String(buffer: response.body) == "zone")
            }
            try await client.execute(uri: "/v1/info", method: .get) { response in
                let info = try JSONDecoder().decode(InfoJSON.self, from: Data(buffer: response.body))
                #expect(info.api_features == [InfoJSON.Feature.signatureAfterBody])
            }
        }
        #expect(fixture.node.store.current(name)?.version.timestamp == now)
        #expect(DiskIO.listDirectory(fixture.dir + "/tmp").isEmpty)
    }

    @Test func refusalsAreJSONWithTheSpecStatus() async throws {
        let fixture = try RouterFixture()
        defer { fixture.remove() }
        let now = WallClock.now()
        try await fixture.app().test(.router) { client in
            try await client.execute(uri: "/nowhere", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(String(buffer: response.body).contains("\"error\""))
            }
            try await client.execute(
                uri: "/v1/files/dns/cnames", method: .put, headers: try fixture.headers("dns/cnames", "zone", at: now),
                body: ByteBuffer(string: "zonE")
            ) { response in
                #expect(response.status == .forbidden)
            }
            let big = String(repeating: "x", count: 2000)
            try await client.execute(
                uri: "/v1/files/dns/cnames", method: .put, headers: try fixture.headers("dns/cnames", big, at: now),
                body: ByteBuffer(string: big)
            ) { response in
                #expect(response.status == .contentTooLarge)
            }
            try await client.execute(
                uri: "/v1/files/%2e%2e%2fsecret", method: .put,
                headers: try fixture.headers("dns/cnames", "z", at: now),
                body: ByteBuffer(string: "z")
            ) { response in
                #expect(response.status == .badRequest)
            }
        }
        #expect(fixture.node.store.list().isEmpty)
        try await fixture.app().test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(text.contains("dm_versions_refused_total{reason=\"bad_signature\"} 1"), "\(text)")
                #expect(text.contains("dm_versions_refused_total{reason=\"too_large\"} 1"), "\(text)")
                #expect(!text.contains("dm_versions_accepted_total 1"))
            }
        }
    }
}

@Suite struct LargeFileRouteTests {
    /// A body of several MiB arrives over a socket in many reads: it is written to disk in
    /// batches while the rest arrives, hashed on the way, and served back byte for byte. One
    /// whose bytes differ from what was signed is refused, and nothing of it stays.
    @Test func aLargeUploadStreamsToDiskAndBack() async throws {
        let fixture = try RouterFixture(maxFileSize: 8 << 20)
        defer { fixture.remove() }
        let now = WallClock.now()
        let content = (0..<(5 << 20) + 12_345).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 11) }
        let damaged = content.enumerated().map { $0.offset == 3 << 20 ? $0.element ^ 1 : $0.element }
        let headers = try fixture.headers("dns/cnames", bytes: content, at: now)
        try await fixture.app().test(.live) { client in
            try await client.execute(
                uri: "/v1/files/dns/cnames", method: .put, headers: headers, body: ByteBuffer(bytes: damaged)
            ) { response in
                #expect(response.status == .forbidden)
            }
            #expect(fixture.node.store.list().isEmpty)
            try await client.execute(
                uri: "/v1/files/dns/cnames", method: .put, headers: headers, body: ByteBuffer(bytes: content)
            ) { response in
                #expect(response.status == .created)
            }
            try await client.execute(uri: "/v1/files/dns/cnames", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentLength] == String(content.count))
                #expect(response.body.readableBytes == content.count)
                #expect(Array(response.body.readableBytesView) == content)
            }
        }
        #expect(fixture.node.store.list().count == 1)
        #expect(DiskIO.listDirectory(fixture.dir + "/tmp").isEmpty)
    }

    /// The same over a socket with the signature after the body: the content is streamed to
    /// disk, and the signature, which arrives split from it across reads, is taken from the end.
    @Test func aLargeUploadWithItsSignatureAfterTheBody() async throws {
        let fixture = try RouterFixture(maxFileSize: 8 << 20)
        defer { fixture.remove() }
        let now = WallClock.now()
        let content = (0..<(5 << 20) + 12_345).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ $0 >> 9) }
        let (headers, body) = try fixture.signedAfter("dns/cnames", bytes: content, at: now)
        let damaged = {
            var damaged = body
            damaged.setInteger(
                body.getInteger(at: body.readableBytes - 1, as: UInt8.self)! ^ 1, at: body.readableBytes - 1)
            return damaged
        }()
        try await fixture.app().test(.live) { client in
            try await client.execute(uri: "/v1/files/dns/cnames", method: .put, headers: headers, body: damaged) {
                response in #expect(response.status == .forbidden)
            }
            #expect(fixture.node.store.list().isEmpty)
            try await client.execute(uri: "/v1/files/dns/cnames", method: .put, headers: headers, body: body) {
                response in #expect(response.status == .created)
            }
            try await client.execute(uri: "/v1/files/dns/cnames", method: .get) { response in
                #expect(response.status == .ok)
                #expect(Array(response.body.readableBytesView) == content)
            }
        }
        #expect(fixture.node.store.current(try FileName("dns/cnames"))?.version.contentLength == UInt64(content.count))
        #expect(DiskIO.listDirectory(fixture.dir + "/tmp").isEmpty)
    }
}

@Suite struct InterfaceResolverTests {
    @Test func allAddressesPutLoopbackLast() throws {
        let all = try InterfaceResolver.addresses(for: [], key: "cluster.interfaces")
        let isLoopback = { (address: String) in address.hasPrefix("127.") || address == "::1" }
        #expect(all.contains(where: isLoopback))
        if let first = all.first, all.contains(where: { !isLoopback($0) }) {
            #expect(!isLoopback(first), "\(all)")
        }
    }

    @Test func namesAndLiteralsResolve() throws {
        #expect(try InterfaceResolver.addresses(for: [.address("127.0.0.9")], key: "k") == ["127.0.0.9"])
        #expect(try InterfaceResolver.addresses(for: [.interface("lo")], key: "k").contains("127.0.0.1"))
        #expect(throws: InterfaceResolver.ResolveError.self) {
            try InterfaceResolver.addresses(for: [.interface("nosuch0")], key: "k")
        }
    }
}
