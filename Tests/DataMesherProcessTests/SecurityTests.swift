import DataMesherCore
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Encrypted, certificate-checked clusters of real daemons: strangers stay out, keys rotate
/// without losing updates, floods from one address do not starve the real traffic.
@Suite struct SecurityTests {
    /// Keys and certificates made with the CLI, as an operator would.
    struct Secrets {
        let dir: String

        init() throws {
            dir = try ClusterTests.keyDir()
            try cli(["generate", "ca", "--private-key-path", "\(dir)/ca.key", "--public-key-path", "\(dir)/ca.pub"])
            try cli([
                "generate", "ca", "--private-key-path", "\(dir)/other-ca.key", "--public-key-path",
                "\(dir)/other-ca.pub",
            ])
            for ring in ["ring1", "ring2", "stranger"] {
                try cli(["generate", "keyring-key", "--output", "\(dir)/\(ring)"])
            }
        }

        func cli(_ arguments: [String]) throws {
            let result = try runProcess(Binary.path, arguments)
            guard result.status == 0 else {
                throw HarnessError("data-mesher \(arguments.joined(separator: " ")): \(result.stderr)")
            }
        }

        /// A node identity: key pair and a certificate from `ca` valid for `validity`.
        func identity(_ name: String, ca: String = "ca", validity: String = "2160h") throws -> (
            key: String, cert: String
        ) {
            let key = "\(dir)/\(name).key"
            let cert = "\(dir)/\(name).cert"
            try cli([
                "generate", "node-key", "--private-key-path", key, "--public-key-path", "\(dir)/\(name).pub", "--force",
            ])
            try cli([
                "certificate", "sign", "--ca-key", "\(dir)/\(ca).key", "--node-key", "\(dir)/\(name).pub", "--output",
                cert,
                "--name", name, "--validity", validity, "--force",
            ])
            return (key, cert)
        }

        /// The `[cluster.encryption]` section.
        func encryption(rings: [String], identity: (key: String, cert: String)?) -> String {
            var text =
                "[cluster.encryption]\nenable = true\nkeyring = ["
                + rings.map { "\"\(dir)/\($0)\"" }.joined(separator: ", ") + "]\n"
            if let identity {
                text += "identity_key = \"\(identity.key)\"\nidentity_cert = \"\(identity.cert)\"\n"
                text += "certificate_authorities = [\"\(dir)/ca.pub\"]\n"
            }
            return text
        }
    }

    static let timing = "push_pull_interval = \"2s\"\njoin_interval = \"1s\"\n"

    static func node(
        _ name: String, bootstrap: Daemon?, encryption: String, files: [String: [String]]
    ) throws -> Daemon {
        let seed = bootstrap.map { "bootstrap_nodes = [\"\($0.address):7946\"]\n" } ?? ""
        return try Daemon(files: files, cluster: seed + timing + encryption, name: name)
    }

    static func names(seenBy node: Daemon) -> Set<String> {
        guard let reply = node.get("/v1/members"),
            let list = try? JSONSerialization.jsonObject(with: Data(reply.body)) as? [[String: Any]]
        else { return [] }
        return Set(list.compactMap { $0["name"] as? String })
    }

    static func metric(_ node: Daemon, _ prefix: String) -> Double {
        guard let text = node.get("/metrics")?.text else { return -1 }
        return text.split(separator: "\n").filter { $0.hasPrefix(prefix) }
            .compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0, +)
    }

    @Test func encryptedNodesReplicateAndStrangersStayOut() throws {
        let secrets = try Secrets()
        defer { try? FileManager.default.removeItem(atPath: secrets.dir) }
        let key = try TestKey(dir: secrets.dir, name: "owner")
        let files = ["config:app": [key.base64], "later": [key.base64]]
        var good: [Daemon] = []
        var strangers: [Daemon] = []
        defer { (good + strangers).forEach { $0.cleanUp() } }
        for index in 0..<3 {
            good.append(
                try Self.node(
                    "node\(index)", bootstrap: good.first,
                    encryption: secrets.encryption(rings: ["ring1"], identity: try secrets.identity("node\(index)")),
                    files: files))
        }
        for node in good { try node.start() }
        let goodNames: Set<String> = ["node0", "node1", "node2"]
        #expect(eventually { good.allSatisfy { Self.names(seenBy: $0) == goodNames } })
        #expect(eventually { good.allSatisfy { node in goodNames.allSatisfy { node.memberState($0) == "alive" } } })

        // Four kinds of stranger, each bootstrapping through node0 and configured for the files.
        let expired = try secrets.identity("expired", validity: "1s")
        sleep(2)
        strangers = [
            try Self.node(
                "wrong-ring", bootstrap: good[0],
                encryption: secrets.encryption(rings: ["stranger"], identity: try secrets.identity("wrong-ring")),
                files: files),
            try Self.node(
                "no-cert", bootstrap: good[0], encryption: secrets.encryption(rings: ["ring1"], identity: nil),
                files: files),
            try Self.node(
                "foreign-ca", bootstrap: good[0],
                encryption: secrets.encryption(
                    rings: ["ring1"], identity: try secrets.identity("foreign-ca", ca: "other-ca")), files: files),
            try Self.node(
                "expired", bootstrap: good[0], encryption: secrets.encryption(rings: ["ring1"], identity: expired),
                files: files),
            try Self.node("plain", bootstrap: good[0], encryption: "", files: files),
        ]
        for node in strangers { try node.start() }

        try "sealed".write(toFile: secrets.dir + "/config:app", atomically: true, encoding: .utf8)
        let upload = try good[1].cli([
            "file", "update", secrets.dir + "/config:app", "--url", good[1].url, "--key", key.path,
        ])
        #expect(upload.status == 0, "\(upload.stderr)")
        for node in good {
            #expect(
                eventually(30) { ClusterTests.content(of: node, "config:app") == Array("sealed".utf8) }, "\(node.dir)")
        }
        // Every stranger has tried to join several times (join_interval 1 s, push/pull 2 s).
        let refusals = [
            "stream is not sealed with a key of this keyring", "peer has no node certificate",
            "not signed by any of the configured certificate authorities", "certificate expired",
            "peer does not encrypt",
        ]
        #expect(
            eventually(30) { refusals.allSatisfy { good[0].tailOfLog(200_000).contains($0) } }, "\(good[0].tailOfLog())"
        )
        sleep(3)
        for node in good {
            #expect(Self.names(seenBy: node) == goodNames, "\(node.dir)")
            // Nobody could make a member look dead.
            #expect(goodNames.allSatisfy { node.memberState($0) == "alive" }, "\(node.dir)")
        }
        for stranger in strangers {
            #expect(Self.names(seenBy: stranger) == [stranger.nameInConfig], "\(stranger.dir)")
            #expect(ClusterTests.content(of: stranger, "config:app") == nil, "\(stranger.dir)")
        }
        #expect(Self.metric(good[0], "dm_cluster_streams_refused_total") >= 4)

        // The three go on working.
        let later = Array("after the strangers".utf8)
        #expect(try HTTP.put(good[2], try key.sign("later", later, at: nowNanoseconds()), later).status == 201)
        for node in good { #expect(eventually(30) { ClusterTests.content(of: node, "later") == later }) }
        for stranger in strangers { #expect(ClusterTests.content(of: stranger, "later") == nil) }
    }

    @Test func keysRotateAcrossARunningClusterWithoutLosingAnUpdate() throws {
        let secrets = try Secrets()
        defer { try? FileManager.default.removeItem(atPath: secrets.dir) }
        let key = try TestKey(dir: secrets.dir, name: "owner")
        let names = (0..<10).map { "update\($0)" }
        let files = Dictionary(uniqueKeysWithValues: names.map { ($0, [key.base64]) })
        var nodes: [Daemon] = []
        defer { nodes.forEach { $0.cleanUp() } }
        for index in 0..<3 {
            nodes.append(
                try Self.node(
                    "node\(index)", bootstrap: nil,
                    encryption: secrets.encryption(rings: ["ring1"], identity: nil),
                    files: files))
        }
        // Every node bootstraps through the others, so any of them can restart and find its way back.
        for node in nodes {
            let others = nodes.filter { $0 !== node }.map { "\"\($0.address):7946\"" }.joined(separator: ", ")
            let text = try String(contentsOfFile: node.configPath, encoding: .utf8)
            try text.replacingOccurrences(
                of: "push_pull_interval", with: "bootstrap_nodes = [\(others)]\npush_pull_interval"
            ).write(toFile: node.configPath, atomically: true, encoding: .utf8)
        }
        for node in nodes { try node.start() }
        let allAlive = { nodes.allSatisfy { node in (0..<3).allSatisfy { node.memberState("node\($0)") == "alive" } } }
        #expect(eventually { allAlive() })

        var uploaded: [String: [UInt8]] = [:]
        var next = 0
        /// One new update on a node that is up; every node must end up with it.
        func update(on node: Daemon) throws {
            let name = names[next]
            let bytes = Array("rotation step \(next)".utf8)
            next += 1
            let reply = try HTTP.put(node, try key.sign(name, bytes, at: nowNanoseconds()), bytes)
            #expect(reply.status == 201, "\(reply.text)")
            uploaded[name] = bytes
        }
        try update(on: nodes[0])
        // The three steps: add the new key everywhere, move it to the front, remove the old one;
        // each step a rolling restart, with an update uploaded while each node is down.
        for ring in [["ring1", "ring2"], ["ring2", "ring1"], ["ring2"]] {
            for (index, node) in nodes.enumerated() {
                node.stop()
                try update(on: nodes[(index + 1) % nodes.count])
                try Self.rewriteEncryption(node, secrets.encryption(rings: ring, identity: nil))
                try node.start()
                #expect(eventually(30) { allAlive() })
            }
        }
        for node in nodes {
            for (name, bytes) in uploaded {
                #expect(eventually(60) { ClusterTests.content(of: node, name) == bytes }, "\(name) on \(node.dir)")
            }
        }
        #expect(uploaded.count == names.count)
        // Only the new key is in use now: a node still on the old key alone is kept out.
        let old = try Self.node(
            "old-key", bootstrap: nodes[0], encryption: secrets.encryption(rings: ["ring1"], identity: nil),
            files: files)
        defer { old.cleanUp() }
        try old.start()
        #expect(
            eventually(30) { nodes[0].tailOfLog(200_000).contains("stream is not sealed with a key of this keyring") })
        #expect(Self.names(seenBy: old) == ["old-key"])
        #expect(Self.names(seenBy: nodes[0]).count == 3)
    }

    static func rewriteEncryption(_ node: Daemon, _ section: String) throws {
        let text = try String(contentsOfFile: node.configPath, encoding: .utf8)
        guard let start = text.range(of: "[cluster.encryption]"), let end = text.range(of: "[files]") else {
            throw HarnessError("no [cluster.encryption] in \(node.configPath)")
        }
        try (text[..<start.lowerBound] + section + text[end.lowerBound...]).write(
            toFile: node.configPath, atomically: true, encoding: .utf8)
    }

    @Test func aJunkFloodFromOneAddressIsMutedAndReplicationGoesOn() throws {
        let secrets = try Secrets()
        defer { try? FileManager.default.removeItem(atPath: secrets.dir) }
        let key = try TestKey(dir: secrets.dir, name: "owner")
        let files = ["config:app": [key.base64]]
        var nodes: [Daemon] = []
        defer { nodes.forEach { $0.cleanUp() } }
        for index in 0..<2 {
            nodes.append(
                try Self.node(
                    "node\(index)", bootstrap: nodes.first,
                    encryption: secrets.encryption(rings: ["ring1"], identity: nil),
                    files: files))
        }
        for node in nodes { try node.start() }
        #expect(eventually { nodes.allSatisfy { Self.names(seenBy: $0).count == 2 } })
        // 20,000 junk datagrams from one loopback address, sent as fast as possible, while
        // versions keep being uploaded on node1 and must reach node0.
        let target = nodes[0].address
        let flooder = Thread {
            var rng = SystemRandomNumberGenerator()
            for _ in 0..<20_000 {
                let junk = (0..<Int.random(in: 1...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng)
                }
                UDP.send([0xD5] + junk, to: target, port: 7946, from: "127.0.0.250")
            }
        }
        flooder.start()
        for round in 0..<5 {
            let bytes = Array("during the flood \(round)".utf8)
            #expect(
                try HTTP.put(nodes[1], try key.sign("config:app", bytes, at: nowNanoseconds()), bytes).status == 201)
            #expect(eventually(30) { ClusterTests.content(of: nodes[0], "config:app") == bytes }, "round \(round)")
        }
        #expect(
            eventually(30) { Self.metric(nodes[0], "dm_gossip_packets_dropped_total{reason=\"rate_limited\"}") > 0 })
        #expect(nodes[0].memberState("node1") == "alive" && nodes[1].memberState("node0") == "alive")
    }
}

extension Daemon {
    /// The node_name in this daemon's config.
    var nameInConfig: String {
        let text = (try? String(contentsOfFile: configPath, encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix("node_name") } ?? ""
        return line.split(separator: "\"").dropFirst().first.map(String.init) ?? ""
    }
}
