import Crypto
import DataMesherCore
import Foundation

/// The `dm-sim` run: a cluster joins, files and updates spread under loss, latency, an optional
/// partition and crashes, and the invariants are checked as it runs and at the end.
public struct Scenario {
    public struct Options: Sendable {
        public var nodes = 50
        public var loss = 0.0
        public var latencyMin: Int64 = 1_000_000
        public var latencyMax: Int64 = 10_000_000
        public var partition = false
        public var crashes = 0
        public var files = 5
        public var updates = 20
        public var seed: UInt64 = 1
        /// Share of nodes not configured for the name `restricted` (they must never hold it).
        public var unconfiguredShare = 0.1
        /// Forged versions (bad signatures) injected into random nodes.
        public var forgeries = 3
        /// Probability that a push/pull frame or a content fetch is cut with its stream, and
        /// that a push/pull peer stalls 5 s before a frame (`Simulation.Options`).
        public var streamCut = 0.0
        public var streamStall = 0.0
        /// Each node's clock is off by up to ± this (ns); at most the policy's `maxClockSkew`.
        public var clockSkew: Int64 = 0
        /// This many random nodes have a full disk for 30 s of the active phase.
        public var fullDisks = 0
        /// Node identities required (every node runs `Admission`); implied by `expiredCertificates`.
        public var identities = false
        /// This many random nodes have an expired certificate: nobody may admit them.
        public var expiredCertificates = 0
        /// This many random nodes have a keyring of their own: nobody may hear them.
        public var foreignKeyrings = 0
        public var settings = CoreSettings()
        public init() {}
    }

    public struct Report: Sendable {
        public var converged = true
        public var violations: [String] = []
        public var rounds: [Double] = []
        public var falseDead = 0
        /// (simulated seconds since the start, observer, declared dead) for each false death.
        public var falseDeaths: [(Double, NodeID, NodeID)] = []
        public var bytesPerNodePerSecond = 0.0
        /// The longest time from a node being told to store a version to the outcome (s).
        public var longestFetch = 0.0
        public var simulatedSeconds = 0.0
        public var updatesMeasured = 0

        /// The nearest-rank percentile of `rounds` (p in 0...1).
        public func percentile(_ p: Double) -> Double {
            guard !rounds.isEmpty else { return .nan }
            let sorted = rounds.sorted()
            let rank = Int((p * Double(sorted.count)).rounded(.up))
            return sorted[min(sorted.count - 1, max(0, rank - 1))]
        }
    }

    /// A node told to store a version learns the outcome within this (ns).
    public static let fetchBound: Int64 = 30_000_000_000

    let options: Options
    let key: Curve25519.Signing.PrivateKey
    let signer: SignerKey
    let names: [FileName]
    let restricted: FileName

    public init(_ options: Options) {
        self.options = options
        // The signing key comes from the seed too, so the run is reproducible bit for bit.
        var rng = SplitMix64(state: options.seed ^ 0x5EED_5EED)
        let raw = (0..<32).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        key = (try? Curve25519.Signing.PrivateKey(rawRepresentation: raw)) ?? Curve25519.Signing.PrivateKey()
        guard let signer = try? SignerKey(bytes: Array(key.publicKey.rawRepresentation)),
            let restricted = try? FileName("restricted")
        else { preconditionFailure("a generated key and a literal name are always valid") }
        self.signer = signer
        self.restricted = restricted
        names = (0..<max(1, options.files)).compactMap { try? FileName("files/\($0)") }
    }

    func sign(_ name: FileName, content: [UInt8], at time: Int64, tombstone: Bool) -> FileVersion {
        do {
            return try FileVersion.sign(
                kind: tombstone ? .tombstone : .content, networkID: "", name: name, timestamp: time, validFor: 0,
                contentSHA256: Array(SHA256.hash(data: tombstone ? [] : content)),
                contentLength: tombstone ? 0 : UInt64(content.count), key: key)
        } catch {
            preconditionFailure("signing with a valid key cannot fail: \(error)")
        }
    }

    public func run() -> Report {
        var simOptions = Simulation.Options()
        simOptions.nodes = options.nodes
        simOptions.loss = options.loss
        simOptions.streamCut = options.streamCut
        simOptions.streamStall = options.streamStall
        simOptions.clockSkew = min(options.clockSkew, FilePolicy(allowedSigners: [:]).maxClockSkew)
        simOptions.identities = options.identities || options.expiredCertificates > 0
        simOptions.latencyMin = options.latencyMin
        simOptions.latencyMax = max(options.latencyMin, options.latencyMax)
        simOptions.seed = options.seed
        simOptions.settings = options.settings
        var allowed: [FileName: Set<SignerKey>] = [:]
        for name in names + [restricted] { allowed[name] = [signer] }
        simOptions.policy = FilePolicy(allowedSigners: allowed)
        var sim = Simulation(simOptions)
        // Some nodes are not configured for `restricted`.
        var restrictedPolicy = simOptions.policy
        restrictedPolicy.allowedSigners[restricted] = nil
        var unconfigured: Set<NodeID> = []
        for id in sim.order.dropFirst() where sim.rng.chance(options.unconfiguredShare) { unconfigured.insert(id) }
        for id in unconfigured.sorted() { sim.reconfigure(id, policy: restrictedPolicy) }
        // Nodes that must stay outside: an expired certificate, or a keyring of their own.
        var outsiders = Array(sim.order.dropFirst())
        var expired: Set<NodeID> = []
        var foreign: Set<NodeID> = []
        for _ in 0..<min(options.expiredCertificates, outsiders.count) {
            expired.insert(outsiders.remove(at: Int(sim.rng.next() % UInt64(outsiders.count))))
        }
        for _ in 0..<min(options.foreignKeyrings, outsiders.count) {
            foreign.insert(outsiders.remove(at: Int(sim.rng.next() % UInt64(outsiders.count))))
        }
        sim.expiredCertificate = expired
        sim.foreignKeyring = foreign
        let isolated = expired.union(foreign)

        let second: Int64 = 1_000_000_000
        let round = Double(options.settings.gossipInterval)
        let warmup = 10 * second + Int64(options.nodes) * 20_000_000
        let active = max(60 * second, Int64(options.updates) * second / 2)
        // Cut and stalled streams fail some push/pulls; more of them are given to repair the rest.
        // The interval is the one the cores use at this size (it grows beyond 32 members): with
        // the unscaled one, 1000 nodes (180 s apart) settled for less than one exchange each.
        let exchanges = 3 + Int64((20 * options.streamCut).rounded(.up) + (10 * options.streamStall).rounded(.up))
        let settle = exchanges * options.settings.pushPullInterval(members: options.nodes) + 30 * second
        let begin = sim.now

        var report = Report()
        // Every issued version, by name; and when each node first stored each version.
        var issued: [FileName: [FileVersion]] = [:]
        var acceptedAt: [[UInt8]: Int64] = [:]
        var lastStore: [[UInt8]: (count: Int, time: Int64)] = [:]
        let order = sim.order
        let measured = !options.partition && options.crashes == 0

        // The observers see the simulation through this box, refreshed every slice of the run.
        var reachability = ReachabilityBox()
        sim.onStored = { _, version, time in
            let entry = lastStore[version.signature] ?? (0, 0)
            lastStore[version.signature] = (entry.count + 1, max(entry.time, time))
        }
        // A suspicion can outlive its cause by its longest timeout (stretched by poor health).
        let settings = options.settings
        let window =
            settings.probeInterval
            * Int64(
                Double(settings.suspicionMult * settings.suspicionMaxTimeoutMult) * max(1, log10(Double(options.nodes)))
                    + Double(2 * settings.awarenessMaxMultiplier))
        sim.onDirective = { id, directive, time in
            // A false death: declared dead although both nodes were up and could reach each
            // other for the whole time a suspicion could have lasted.
            if case .memberChanged(let record, _) = directive, record.state == .dead,
                reachability.undisturbed(record.id, id, since: time - window)
            {
                report.falseDead += 1
                report.falseDeaths.append((Double(time - begin) / 1e9, id, record.id))
            }
        }

        func issue(_ name: FileName, at node: NodeID, tombstone: Bool, sim: inout Simulation) {
            let content = Array("\(name) @\(sim.now) from \(node)".utf8)
            let version = sign(name, content: content, at: sim.now, tombstone: tombstone)
            issued[name, default: []].append(version)
            acceptedAt[version.signature] = sim.now
            sim.accept(
                version, at: node,
                inline: tombstone ? [] : (content.count <= WireCodec.maxInlineContent ? content : nil))
        }

        // Initial files, then updates (10% of them deletions) at random times and places.
        sim.at(begin + warmup) { sim in
            let origins = order.filter { !isolated.contains($0) }
            for name in names + [restricted] {
                let origin = origins[Int(sim.rng.next() % UInt64(origins.count))]
                if unconfigured.contains(origin) && name == restricted { continue }
                issue(name, at: origin, tombstone: false, sim: &sim)
            }
        }
        for _ in 0..<options.updates {
            let time = begin + warmup + 5 * second + Int64(sim.rng.next() % UInt64(active))
            sim.at(time) { sim in
                let name = names[Int(sim.rng.next() % UInt64(names.count))]
                let candidates = order.filter { !sim.down.contains($0) && !isolated.contains($0) }
                guard !candidates.isEmpty else { return }
                let origin = candidates[Int(sim.rng.next() % UInt64(candidates.count))]
                issue(name, at: origin, tombstone: sim.rng.chance(0.1), sim: &sim)
            }
        }
        // Forged versions: never stored anywhere.
        for number in 0..<options.forgeries {
            let time = begin + warmup + Int64(sim.rng.next() % UInt64(active))
            sim.at(time) { sim in
                let name = names[number % names.count]
                var forged = sign(name, content: Array("forged".utf8), at: sim.now + 1, tombstone: false)
                forged.signature[0] ^= 0xFF
                let target = order[Int(sim.rng.next() % UInt64(order.count))]
                guard let liar = NodeID(bytes: [UInt8](repeating: 0xEE, count: 16)) else { return }
                sim.feed(
                    target,
                    .packet(
                        Packet(sender: liar, message: .gossip, items: [.file(forged, inline: Array("forged".utf8))]),
                        from: PeerAddress(host: "10.255.255.255", port: 7946)))
            }
        }
        // A partition: two halves, for a while in the middle of the active phase.
        if options.partition {
            let startCut = begin + warmup + active / 4
            let endCut = begin + warmup + active * 3 / 5
            sim.at(startCut) { sim in
                for id in order where sim.rng.chance(0.5) { sim.side[id] = 1 }
            }
            sim.at(endCut) { sim in sim.side.removeAll() }
        }
        // Crashes: K random nodes go down and come back 5–20 s later.
        for _ in 0..<options.crashes {
            let time = begin + warmup + Int64(sim.rng.next() % UInt64(active))
            let downFor = 5 * second + Int64(sim.rng.next() % UInt64(15 * second))
            sim.at(time) { sim in
                let candidates = order.dropFirst().filter { !sim.down.contains($0) }
                guard !candidates.isEmpty else { return }
                let victim = candidates[Int(sim.rng.next() % UInt64(candidates.count))]
                sim.crash(victim)
                sim.at(sim.now + downFor) { sim in sim.restart(victim) }
            }
        }

        // Full disks: every version those nodes are told to store fails for 30 s, then they catch up.
        for _ in 0..<options.fullDisks {
            let time = begin + warmup + Int64(sim.rng.next() % UInt64(max(1, active - 30 * second)))
            sim.at(time) { sim in
                let candidates = order.dropFirst().filter { !sim.diskFull.contains($0) }
                guard !candidates.isEmpty else { return }
                let victim = candidates[Int(sim.rng.next() % UInt64(candidates.count))]
                sim.diskFull.insert(victim)
                sim.at(sim.now + 30 * second) { sim in sim.diskFull.remove(victim) }
            }
        }

        // Run in slices so the reachability box the observer reads stays current.
        let end = begin + warmup + active + settle
        while sim.now < end {
            reachability.update(from: sim)
            sim.run(until: min(end, sim.now + options.settings.gossipInterval))
        }
        report.simulatedSeconds = Double(sim.now - begin) / 1e9
        report.longestFetch = Double(sim.longestFetch) / 1e9
        // Every fetch ends (stored, refused or failed, to be retried) within a bound.
        let overdue = sim.overdueFetches(bound: Scenario.fetchBound)
        if overdue > 0 {
            report.violations.append("\(overdue) fetches did not end within \(Scenario.fetchBound / second) s")
        }
        report.bytesPerNodePerSecond = Double(sim.bytesSent) / Double(options.nodes) / report.simulatedSeconds

        // Invariants at the end.
        let live = order.filter { !sim.down.contains($0) && !isolated.contains($0) }
        // Nobody admits a node that did not prove its ID, or hears one with a foreign keyring;
        // and every member a node knows proved its ID at its address (with identities).
        for id in live {
            guard let core = sim.core(id) else { continue }
            for (member, record) in core.members.sorted(by: { $0.key < $1.key }) {
                if isolated.contains(member) {
                    report.violations.append(
                        "\(id) knows \(member), which has \(expired.contains(member) ? "an expired certificate" : "a foreign keyring")"
                    )
                } else if !sim.isAdmitted(member, at: record.announcement.addresses.first, by: id) {
                    report.violations.append("\(id) knows \(member), which did not prove its ID at its address")
                }
            }
        }
        for id in isolated.sorted() where !sim.down.contains(id) {
            if let core = sim.core(id), core.members.values.contains(where: \.confirmed) {
                report.violations.append("\(id) is outside (certificate or keyring) but confirmed a member")
            }
        }
        for (name, versions) in issued.sorted(by: { $0.key < $1.key }) {
            guard let first = versions.first else { continue }
            let newest = versions.dropFirst().reduce(first) { VersionOrder.isNewer($1, than: $0) ? $1 : $0 }
            for id in live {
                let held = sim.core(id)?.files[name]
                if name == restricted && unconfigured.contains(id) {
                    if held != nil { report.violations.append("\(id) holds \(name) without being configured for it") }
                    continue
                }
                if held != newest {
                    report.converged = false
                    report.violations.append(
                        "\(id) holds \(held.map { "\($0.timestamp)" } ?? "nothing") for \(name), newest is \(newest.timestamp)"
                    )
                }
            }
            // Propagation in gossip rounds, for versions that reached every configured node.
            if measured {
                let expected = live.filter { !(name == restricted && unconfigured.contains($0)) }.count
                for version in versions {
                    if let store = lastStore[version.signature], store.count >= expected - 1,
                        let accepted = acceptedAt[version.signature]
                    {
                        report.rounds.append(Double(store.time - accepted) / round)
                        report.updatesMeasured += 1
                    }
                }
            }
        }
        for id in live {
            guard let core = sim.core(id) else { continue }
            let held = core.files.versions.values.sorted { $0.name < $1.name }
            for version in held where !sim.signatures.isValid(version) {
                report.violations.append("\(id) holds an unsigned version of \(version.name)")
            }
            // Without loss every member must be seen alive; with loss a suspicion may be under
            // way at the final instant (it is refuted in time), but nobody may be dead or unknown.
            for other in live where other != id {
                let state = sim.state(of: other, seenBy: id)
                if state == .alive || (options.loss > 0 && state == .suspect) { continue }
                report.converged = false
                report.violations.append(
                    "\(id) sees \(other) as \(sim.state(of: other, seenBy: id).map { $0.name } ?? "unknown")")
            }
        }
        if options.loss == 0 && report.falseDead > 0 {
            report.violations.append("\(report.falseDead) reachable nodes were declared dead without packet loss")
        }
        return report
    }
}

/// What the death observer needs to know: when each node was last down or cut off, as of the
/// current slice of the run.
struct ReachabilityBox {
    var lastDisturbed: [NodeID: Int64] = [:]

    mutating func update(from sim: Simulation) {
        for id in sim.down { lastDisturbed[id] = sim.now }
        for (id, side) in sim.side where side != 0 { lastDisturbed[id] = sim.now }
        // While a partition lasts, the other side is cut off too.
        if sim.side.values.contains(where: { $0 != 0 }) {
            for id in sim.order { lastDisturbed[id] = sim.now }
        }
    }

    func undisturbed(_ a: NodeID, _ b: NodeID, since: Int64) -> Bool {
        lastDisturbed[a, default: .min] < since && lastDisturbed[b, default: .min] < since
    }
}

extension Simulation {
    /// A version accepted through a node's local API.
    public mutating func accept(_ version: FileVersion, at id: NodeID, inline: [UInt8]?) {
        guard !down.contains(id), let core = core(id), core.policy.allowedSigners[version.name] != nil else { return }
        onStored?(id, version, now)
        feed(id, .localVersion(version, inline: inline))
    }

    /// Gives one node a different `[files]` (for "not configured" checks), kept across restarts.
    public mutating func reconfigure(_ id: NodeID, policy: FilePolicy) {
        policies[id] = policy
        boot(id, files: core(id).map { Array($0.files.versions.values) } ?? [])
    }
}
