import DataMesherCore
import DataMesherStore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Feeding the core and carrying out its directives; what the HTTP API sees of it.
extension NetworkShell {
    // MARK: The core

    /// Feeds the core and carries out what it asks.
    func handle(_ input: CoreInput) {
        let directives = core.handle(input, now: WallClock.now(), rng: &rng)
        for directive in directives { execute(directive) }
        publish()
    }

    func execute(_ directive: CoreDirective) {
        switch directive {
        case .send(let packet, let address, let receiver):
            send(WireCodec.encode(packet), to: address, node: receiver)
        case .store(let version, let inline, let source):
            carryOut(fetcher.offered(version, inline: inline, from: source, now: WallClock.now()))
        case .sync(let address, let join):
            spawn { await self.sync(with: address, join: join) }
        case .streamPing(let sequence, let address, let node, let timeout):
            spawn { await self.streamPing(sequence, to: address, node: node, timeout: timeout) }
        case .memberChanged(let record, let previous):
            let metadata: Logger.Metadata = [
                "dm.peer": "\(record.announcement.name)", "dm.peer_id": "\(record.id)",
                "dm.incarnation": "\(record.announcement.incarnation)",
            ]
            var event: NodeEvent.Kind?
            switch record.state {
            case .alive:
                logger.info(previous == nil ? "member joined" : "member alive again", metadata: metadata)
                event = .memberJoined
            case .suspect: logger.info("member suspected", metadata: metadata)
            case .dead:
                logger.warning("member declared dead", metadata: metadata)
                event = .memberFailed
            case .left:
                logger.info("member left", metadata: metadata)
                event = .memberLeft
            }
            if let event {
                node.events.publish(NodeEvent(kind: event, time: WallClock.now(), member: memberInfo(record)))
            }
        case .answeredOnlyOverStream(let record):
            logger.info(
                "member answered over TCP but not over UDP: the network may be dropping datagrams",
                metadata: [
                    "dm.peer": "\(record.announcement.name)", "dm.peer_id": "\(record.id)",
                    "dm.address": "\(record.address.map { "\($0)" } ?? "none")",
                ])
        case .ownKeyElsewhere(let announcement):
            var metadata: Logger.Metadata = [
                "dm.incarnation": "\(announcement.incarnation)",
                "dm.addresses": "\(announcement.addresses.map { "\($0)" }.joined(separator: ","))",
            ]
            if ownKeyLogBudget.admit(now: WallClock.now(), noting: &metadata) {
                logger.warning(
                    "outbid an announcement signed with this node's own key: normal once after a restart with the clock set back; if it repeats, another process runs with this node's key (a copied state_dir or identity_key) and the two take turns being this member",
                    metadata: metadata)
            }
        case .droppedClaim(let reason):
            node.metrics.droppedPacket("claim_" + reason)
            logger.debug("dropped claim", metadata: ["dm.reason": "\(reason)"])
        case .refused(let version, let refusal, let from):
            node.metrics.refused(refusal)
            // Anyone who can send a datagram can make new ones (64 offers of made-up versions per
            // datagram): the same bounded share of the log as the API's refusals.
            node.logRefusal(
                "refused version from peer", of: version.name, timestamp: version.timestamp, reason: refusal.reason,
                fromPeer: true,
                metadata: [
                    "dm.file": "\(version.name)", "dm.timestamp": "\(version.timestamp)",
                    "dm.reason": "\(refusal.reason)", "dm.peer_id": "\(from)",
                ], to: logger)
        }
    }

    /// Makes members and counters visible to the HTTP API. The member list is rebuilt only
    /// when the core says it changed; most packets change nothing but the counters.
    func publish() {
        let now = WallClock.now()
        let changed = core.takeChangedHoldings()
        if !changed.isEmpty {
            var views: [FileName: HoldingsView] = [:]
            for name in changed {
                views[name] = HoldingsView(
                    claims: Dictionary(
                        uniqueKeysWithValues: (core.holdings[name] ?? [:]).map { ($0.key.hex, $0.value) }),
                    refusals: Dictionary(
                        uniqueKeysWithValues: (core.refusals[name] ?? [:]).map { ($0.key.hex, $0.value) }),
                    answered: Set((core.holdingAnswers[name] ?? []).map(\.hex)))
            }
            node.holdingsSnapshot.withLockedValue { $0.merge(views) { $1 } }
        }
        let tcp = node.metrics.tcpTotals.withLockedValue { $0 }
        counters.tcpBytesIn = tcp.in
        counters.tcpBytesOut = tcp.out
        noteClockOffset()
        let counters = self.counters
        // Also once a second: clock offsets move without the membership changing.
        if membersToRemember { rememberMembers(now: now) }
        guard core.membershipVersion != publishedMembership || now.subtractingSaturated(publishedAt) > 1_000_000_000
        else {
            snapshot.withLockedValue { $0.counters = counters }
            return
        }
        if publishedMembership != core.membershipVersion {
            membersToRemember = true
            let hosts = Set(core.localState.dropFirst().compactMap { $0.address?.host })
            memberHosts.withLockedValue { $0 = hosts }
        }
        publishedMembership = core.membershipVersion
        publishedAt = now
        let members = core.localState.map(memberInfo)
        snapshot.withLockedValue { $0 = (members, counters) }
    }

    /// Writes the addresses of the confirmed live members to `<state_dir>/members` (at most
    /// every 10 s, once they changed), for the next start.
    func rememberMembers(now: Int64) {
        guard now.subtractingSaturated(rememberedAt) > 10_000_000_000 else { return }
        membersToRemember = false
        rememberedAt = now
        let addresses = core.localState.dropFirst().filter { $0.state == .alive }.compactMap(\.address)
        guard !addresses.isEmpty else { return }
        let stateDir = node.config.stateDir
        let logger = logger
        spawn {
            do { try await Blocking.run { try KnownMembers.write(addresses, stateDir: stateDir) } } catch {
                logger.debug("could not remember the members: \(error)")
            }
        }
    }

    func memberInfo(_ record: MemberRecord) -> MemberInfo {
        var info = MemberInfo(
            id: record.id.hex, name: record.announcement.name,
            addresses: record.announcement.addresses.map(\.description),
            state: MemberInfo.State(rawValue: record.state.name) ?? .dead,
            incarnation: record.announcement.incarnation)
        info.clock_offset_seconds = core.clockOffsets[record.id].map { Double($0) / 1e9 }
        info.certificate_expires_at = admission.admitted[record.id].map { RFC3339.utc(nanoseconds: $0.until) }
        return info
    }

    /// Keeps the clock offset current, and says so (at most every 10 minutes) when it is more
    /// than half of `max_clock_skew`: such a node would refuse correctly-clocked versions as
    /// "in the future", or have its own refused, while it looks alive.
    func noteClockOffset() {
        guard let median = core.medianClockOffset else { return }
        let offset = Int64(0).subtractingSaturated(median)
        counters.clockOffsetNanoseconds = offset
        node.metrics.clockOffset.record(Double(offset) / 1e9)
        let limit = Int64(clamping: node.config.maxClockSkew / 2)
        let now = WallClock.now()
        guard offset.magnitude > UInt64(limit), now.subtractingSaturated(lastClockWarning) > 600_000_000_000 else {
            return
        }
        lastClockWarning = now
        logger.warning(
            "this node's clock differs from its peers' by more than half of max_clock_skew: versions may be refused",
            metadata: ["dm.clock_offset_seconds": "\(Double(offset) / 1e9)"])
    }

    /// A version accepted through the local API.
    public func accepted(_ version: FileVersion) {
        handle(.localVersion(version, inline: inlineContent(version)))
    }

    public func forgotten(_ name: FileName) { handle(.forgotten(name)) }

    public func lost(_ version: FileVersion) { handle(.lost(version)) }

    public func wantsHoldings(of name: FileName) { handle(.askHoldings(name)) }

    nonisolated func inlineContent(_ version: FileVersion) -> [UInt8]? {
        if version.isTombstone { return [] }
        guard version.contentLength <= UInt64(WireCodec.maxInlineContent) else { return nil }
        guard let bytes = try? DiskIO.readFile(node.store.contentPath(version.name), limit: WireCodec.maxInlineContent),
            bytes.count == Int(version.contentLength)
        else { return nil }
        return bytes
    }
}
