import Crypto
import DataMesherCore
import DataMesherStore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import DataMesherNet

/// `Replica.lookOverIfDue`: once a minute of the node's clock, the first a minute after the
/// start, content changed behind the node's back is marked missing without anyone reading it.
@Suite struct LookOverTests {
    @Test func aDamagedFileIsMarkedMissingAtTheFirstLookOverThatIsDue() async throws {
        let dir = NSTemporaryDirectory() + "dm-lookover-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = Curve25519.Signing.PrivateKey()
        let name = try FileName("zone")
        var config = NodeConfig()
        config.stateDir = dir
        config.files = [name: [try SignerKey(bytes: Array(key.publicKey.rawRepresentation))]]
        let start = WallClock.now()
        let clock = NIOLockedValueBox(start)
        let logger = Logger(label: "test")
        let store = try FileStore(stateDir: dir, policy: config.filePolicy, now: start, logger: logger)
        let node = Replica(
            config: config, store: store, nodeName: "t", nodeID: String(repeating: "0", count: 32),
            clusterAddresses: [], logger: logger, wallClock: { clock.withLockedValue { $0 } })
        let content = Array("zone".utf8)
        let version = try FileVersion.sign(
            kind: .content, networkID: "", name: name, timestamp: start - 1_000, validFor: 0,
            contentSHA256: Array(SHA256.hash(data: content)), contentLength: UInt64(content.count), key: key)
        guard case .stored = try await node.submit(version, bytes: ByteBuffer(bytes: content)) else {
            Issue.record("the version was not stored")
            return
        }
        let handle = try #require(FileHandle(forWritingAtPath: dir + "/files/zone"))
        handle.write(Data("ZONE".utf8))
        try handle.close()
        for (elapsed, state) in [(0, "content"), (59, "content"), (60, "missing")] {
            clock.withLockedValue { $0 = start + Int64(elapsed) * 1_000_000_000 }
            await node.lookOverIfDue()
            #expect(store.current(name)?.state.rawValue == state, "after \(elapsed) s")
        }
    }
}
