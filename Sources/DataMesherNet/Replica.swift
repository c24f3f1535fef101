import DataMesherCore
import DataMesherStore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// One member as shown by `/v1/members`.
public struct MemberInfo: Sendable, Equatable, Codable {
    public enum State: String, Sendable, Codable { case alive, suspect, dead, left }
    public var id: String
    public var name: String
    public var addresses: [String]
    public var state: State
    public var incarnation: UInt64
    /// Its clock minus this node's (s), from the last direct probe it answered.
    public var clock_offset_seconds: Double?
    /// When its certificate expires (RFC 3339), with node identities.
    public var certificate_expires_at: String?

    public init(id: String, name: String, addresses: [String], state: State, incarnation: UInt64) {
        self.id = id
        self.name = name
        self.addresses = addresses
        self.state = state
        self.incarnation = incarnation
    }
}

/// A node: the local file store behind the acceptance rules of the core.
///
/// Today it serves the local API alone; the gossip layer (membership, broadcast, anti-entropy)
/// attaches here: accepted versions go out through `onAccepted`, and versions from peers come
/// in through the same `submit` path, so every node checks every signature itself.
public final class Replica: Sendable {
    public let config: NodeConfig
    public let policy: FilePolicy
    public let store: FileStore
    public let nodeName: String
    /// The node ID (hex), derived from the node key.
    public let nodeID: String
    public let clusterAddresses: [String]
    let wallClock: @Sendable () -> Int64
    let logger: Logger
    /// The "refused version" lines (`noteRefusal`) a flood of bad uploads may write.
    private let refusalLogBudget = LogBudget()
    /// Versions from peers refused and logged already (name, timestamp, reason); forgotten all at
    /// once when it is full.
    let loggedPeerRefusals = NIOLockedValueBox(Set<String>())
    /// Members and network counters, published by the cluster layer when it runs.
    let holdingsSnapshot = NIOLockedValueBox<[FileName: HoldingsView]>([:])
    let clusterSnapshot = NIOLockedValueBox<(members: [MemberInfo], counters: ClusterCounters)>(([], ClusterCounters()))
    /// Called with every version accepted through the local API, and every forgotten name.
    let listeners = NIOLockedValueBox<[any ReplicaListener]>([])
    public let metrics = NodeMetrics()
    /// What `GET /v1/events` streams.
    public let events = EventHub()
    /// When this node's own certificate ends, if it has one (`/v1/info`, `/metrics`).
    public let certificateExpiry: CertificateExpiry?

    public init(
        config: NodeConfig, store: FileStore, nodeName: String, nodeID: String, clusterAddresses: [String],
        logger: Logger,
        wallClock: @escaping @Sendable () -> Int64 = WallClock.now, certificateExpiry: CertificateExpiry? = nil
    ) {
        self.certificateExpiry = certificateExpiry
        self.config = config
        self.policy = config.filePolicy
        self.store = store
        self.nodeName = nodeName
        self.nodeID = nodeID
        self.clusterAddresses = clusterAddresses
        self.logger = logger
        self.wallClock = wallClock
    }

    public var now: Int64 { wallClock() }

    /// The checks that can run on an upload's headers alone, before its body is read.
    /// A refusal is counted and logged here, like every refusal. `signature` is nil when it
    /// comes after the body: a version of the same timestamp as the newest held one then passes
    /// here, and the commit, which knows the signature, decides.
    public func precheck(
        name: FileName, signer: SignerKey, contentLength: UInt64?, timestamp: Int64, validFor: UInt64,
        signature: [UInt8]?, origin: String? = nil
    ) -> Refusal? {
        var refusal = policy.precheck(
            name: name, signer: signer, contentLength: contentLength, timestamp: timestamp, validFor: validFor, now: now
        )
        if refusal == nil, let held = store.current(name), held.state == .missing, held.version.timestamp == timestamp,
            signature == nil || held.version.signature == signature
        {
            // The version whose content went missing is welcome again.
        } else if refusal == nil, let mark = store.highWater(name),
            signature.map({ !mark.isOlder(timestamp: timestamp, signature: $0) }) ?? (timestamp < mark.timestamp)
        {
            refusal = .stale(name, held: mark.timestamp)
        }
        if let refusal { noteRefusal(refusal, name: name, timestamp: timestamp, origin: origin) }
        return refusal
    }

    /// Whether this is the first refusal of a peer's version for this reason (remembered).
    private func firstRefusal(of name: FileName, timestamp: Int64, reason: String) -> Bool {
        loggedPeerRefusals.withLockedValue { seen in
            if seen.count >= 4096 { seen.removeAll() }
            return seen.insert("\(name.value)\u{0}\(timestamp)\u{0}\(reason)").inserted
        }
    }

    public func noteRefusal(_ refusal: Refusal, name: FileName, timestamp: Int64, origin: String?) {
        metrics.refused(refusal)
        events.publish(
            NodeEvent(
                kind: .refused, time: now, name: name.value, timestamp: timestamp,
                origin: origin == nil ? "local" : "peer", reason: refusal.description))
        var metadata: Logger.Metadata = [
            "dm.file": "\(name)", "dm.timestamp": "\(timestamp)", "dm.reason": "\(refusal.reason)",
        ]
        if let origin { metadata["dm.peer"] = "\(origin)" }
        // A peer offering what we already hold is routine gossip, not news.
        if origin != nil, case .stale = refusal {
            logger.debug("refused version", metadata: metadata)
        } else {
            logRefusal(
                "refused version", of: name, timestamp: timestamp, reason: refusal.reason, fromPeer: origin != nil,
                metadata: metadata, to: logger)
        }
    }

    /// Logs a refusal at info, within the refusal log budget (anyone who can reach the API or the
    /// cluster port can make refusals: the log gets a bounded share); at debug a peer's version
    /// refused before for the same reason, which every push/pull offers again (one too large for
    /// this node, say).
    func logRefusal(
        _ message: Logger.Message, of name: FileName, timestamp: Int64, reason: String, fromPeer: Bool,
        metadata: Logger.Metadata, to logger: Logger
    ) {
        var metadata = metadata
        if fromPeer && !firstRefusal(of: name, timestamp: timestamp, reason: reason) {
            logger.debug(message, metadata: metadata)
        } else if refusalLogBudget.admit(now: now, noting: &metadata) {
            logger.info(message, metadata: metadata)
        }
    }

    /// Why an upload of `length` bytes cannot be stored now, or nil: refused when it would leave
    /// less than `disk_reserve` free on the state_dir's file system (answered before the body).
    public func spaceProblem(forUpload length: UInt64) -> String? {
        guard let free = DiskIO.freeBytes(store.stateDir) else { return nil }
        let reserve = config.diskReserve
        let (needed, overflow) = length.addingReportingOverflow(reserve)
        guard overflow || needed > free else { return nil }
        metrics.diskFull.increment()
        let reason =
            "disk full: an upload of \(length) bytes would leave less than disk_reserve (\(reserve) bytes) free on \(store.stateDir) (\(free) bytes free)"
        events.publish(NodeEvent(kind: .diskFull, time: now, reason: reason))
        logger.warning("refused upload: disk full", metadata: ["dm.bytes": "\(length)", "dm.free": "\(free)"])
        return reason
    }

    /// A write failed because the disk is full (ENOSPC, EDQUOT): counted, logged and published.
    /// The cluster layer calls it too when storing a fetched version fails that way.
    public func noteDiskFull(_ error: DiskError, path: String, origin: String? = nil) {
        metrics.diskFull.increment()
        let reason = "disk full: \(error)"
        events.publish(
            NodeEvent(kind: .diskFull, time: now, origin: origin == nil ? "local" : "peer", reason: reason))
        var metadata: Logger.Metadata = ["dm.path": "\(path)", "dm.reason": "disk_full"]
        if let origin { metadata["dm.peer"] = "\(origin)" }
        logger.error("write failed, disk full: \(error)", metadata: metadata)
    }

    public func addListener(_ listener: any ReplicaListener) { listeners.withLockedValue { $0.append(listener) } }

    /// Checks every rule against the version held now and stores the version if it passes.
    /// `origin` is nil for the local API and names the peer for versions from the cluster.
    public func submit(_ version: FileVersion, content: Upload?, origin: String? = nil) async throws -> CommitResult {
        let policy = self.policy
        let now = self.now
        let store = self.store
        let result = try await Blocking.run {
            try store.commit(version, content: content) { held in policy.evaluate(version, current: held, now: now) }
        }
        await note(result, of: version, origin: origin)
        return result
    }

    /// `submit` for content held in memory (a small upload, whose body the caller has gathered
    /// and hashed into `version`): writing it to tmp/, its fsync and the commit run in one trip
    /// to the disk pool instead of one trip per step, which for a small file costs more than
    /// the work. Durable, in the same order, before it returns.
    public func submit(_ version: FileVersion, bytes: ByteBuffer, origin: String? = nil) async throws -> CommitResult {
        let policy = self.policy
        let wallClock = self.wallClock
        let store = self.store
        let result = try await Blocking.run { () throws -> CommitResult in
            let upload = try store.makeUpload()
            defer { upload.discard() }
            try bytes.withUnsafeReadableBytes { try upload.write($0) }
            try upload.finish()
            let now = wallClock()
            return try store.commit(version, content: upload) { held in
                policy.evaluate(version, current: held, now: now)
            }
        }
        await note(result, of: version, origin: origin)
        return result
    }

    /// Counts, publishes and logs what a commit did, and hands a locally accepted version to the
    /// listeners.
    func note(_ result: CommitResult, of version: FileVersion, origin: String?) async {
        var metadata: Logger.Metadata = ["dm.file": "\(version.name)", "dm.timestamp": "\(version.timestamp)"]
        if let origin { metadata["dm.peer"] = "\(origin)" }
        switch result {
        case .stored(let stored):
            metrics.accepted.increment()
            let acceptedAt = self.now
            metrics.propagationDelay(
                nanoseconds: FilePolicy.distance(from: version.timestamp, to: acceptedAt),
                origin: origin == nil ? "local" : "peer")
            events.publish(
                .file(stored.state == .tombstone ? .deleted : .accepted, version, time: acceptedAt, origin: origin))
            logger.info(
                stored.state == .tombstone ? "deleted" : "stored version",
                metadata: metadata.merging(["dm.bytes": "\(version.contentLength)"]) { $1 })
            if origin == nil {
                for listener in listeners.withLockedValue({ $0 }) { await listener.accepted(version) }
            }
        case .refused(let refusal):
            noteRefusal(refusal, name: version.name, timestamp: version.timestamp, origin: origin)
        }
    }

    /// The members this node knows (itself first); only itself when the cluster layer is not running.
    public func members() -> [MemberInfo] {
        let published = clusterSnapshot.withLockedValue { $0.members }
        if !published.isEmpty { return published }
        return [
            MemberInfo(id: nodeID, name: nodeName, addresses: clusterAddresses, state: .alive, incarnation: 0)
        ]
    }

    public var clusterCounters: ClusterCounters { clusterSnapshot.withLockedValue { $0.counters } }

    /// What each member (by node ID, hex) says it holds of `name`, and why it refused a newer
    /// version if it did: the cluster layer asks every live member, and this waits until each
    /// has answered, or `wait` has passed (members not configured for the name do not answer).
    public func holdings(of name: FileName, wait: Duration = .milliseconds(300)) async -> HoldingsView {
        for listener in listeners.withLockedValue({ $0 }) { await listener.wantsHoldings(of: name) }
        let live = Set(members().filter { $0.state == .alive || $0.state == .suspect }.map(\.id)).subtracting([nodeID])
        let polls = max(1, Int(wait / .milliseconds(10)))
        for _ in 0..<polls {
            let view = holdingsSnapshot.withLockedValue { $0[name] }
            if let view, live.isSubset(of: view.answered) { return view }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return holdingsSnapshot.withLockedValue { $0[name] } ?? HoldingsView(claims: [:], answered: [])
    }

    /// Checks, once after start, what the startup scan took on trust (record signatures, and
    /// content whose size, mtime and inode were unchanged); logs what it dropped or marked missing.
    public func verifyStore() async {
        let store = self.store
        do {
            let events = try await Blocking.run { store.verify() }
            await lost(events)
            logger.debug("background verification of the store done", metadata: ["dm.problems": "\(events.count)"])
        } catch {
            logger.error("background verification of the store failed: \(error)")
        }
    }

    /// Opens `name`'s content to send it. Content found damaged on the way is marked missing
    /// (`FileStore.openContent`) and given up (`lost`); nil then, as when nothing is held. So is
    /// content found not to match its hash while it is read: the read throws before its last
    /// bytes.
    public func openContent(_ name: FileName) async throws -> (StoredFile, ContentReader)? {
        let store = self.store
        let (opened, events) = try await Blocking.run {
            var events = [StoreEvent]()
            let opened = try store.openContent(name, events: &events) { damaged in
                Task { await self.lost([damaged]) }
            }
            return (opened, events)
        }
        await lost(events)
        return opened
    }

    /// Logs what the store dropped or marked missing while running, and tells the listeners of
    /// each version that is still missing (not replaced meanwhile): the cluster then takes it
    /// again from a member that has it.
    func lost(_ events: [StoreEvent]) async {
        for event in events {
            logger.warning("\(event.description)", metadata: ["dm.event": "\(event.kind)"])
            guard case .markedMissing(let name) = event, let held = store.current(name), held.state == .missing
            else { continue }
            for listener in listeners.withLockedValue({ $0 }) { await listener.lost(held.version) }
        }
    }

    /// How often `lookOver` runs: one `lstat` per held file.
    static let lookOverInterval: Int64 = 60_000_000_000
    private let lastLookOver = NIOLockedValueBox<Int64?>(nil)

    /// Looks over the held files when it is due (`FileStore.lookOver`): content changed behind
    /// the node's back and not matching its hash is marked missing and fetched again.
    public func lookOverIfDue() async {
        let now = self.now
        let due = lastLookOver.withLockedValue { last in
            // The first one an interval after the start, whose own check covers the start.
            guard let previous = last, now.subtractingSaturated(previous) >= Self.lookOverInterval || now < previous
            else {
                if last == nil { last = now }
                return false
            }
            last = now
            return true
        }
        guard due else { return }
        let store = self.store
        do {
            await lost(try await Blocking.run { store.lookOver() })
        } catch {
            logger.error("looking over the held files failed: \(error)")
        }
    }

    /// Expires `valid_for` versions and forgets old tombstones when one is due.
    public func sweepIfDue() async {
        guard let due = store.nextSweepDue(policy: policy), due <= now else { return }
        let store = self.store
        let policy = self.policy
        let now = self.now
        do {
            let events = try await Blocking.run { try store.sweep(policy: policy, now: now) }
            for event in events {
                logger.info("\(event.description)")
                if case .expired(let name) = event {
                    self.events.publish(
                        NodeEvent(
                            kind: .expired, time: now, name: name.value,
                            timestamp: store.current(name)?.version.timestamp))
                }
                if case .forgot(let name) = event {
                    for listener in listeners.withLockedValue({ $0 }) { await listener.forgotten(name) }
                }
            }
        } catch {
            logger.error("expiry sweep failed: \(error)")
        }
    }
}

/// Hears what the replica needs of the cluster: versions accepted through the local API (to
/// spread), names it forgot, versions whose content it lost, and names whose holders someone
/// wants to know.
public protocol ReplicaListener: Sendable {
    func accepted(_ version: FileVersion) async
    func forgotten(_ name: FileName) async
    func lost(_ version: FileVersion) async
    func wantsHoldings(of name: FileName) async
}

extension NetworkShell: ReplicaListener {}

/// What the members said about one name: their claims and refusals (by node ID, hex) and which
/// of them answered the last query.
public struct HoldingsView: Sendable {
    public var claims: [String: Holding]
    public var refusals: [String: RefusalClaim] = [:]
    public var answered: Set<String>
}
