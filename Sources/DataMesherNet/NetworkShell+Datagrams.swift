import DataMesherCore
import DataMesherStore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Datagrams in and out: opening, decoding, admission of proven members, sealing.
extension NetworkShell {
    // MARK: UDP

    func receive(_ envelope: AddressedEnvelope<ByteBuffer>) {
        counters.packetsIn += 1
        counters.bytesIn += envelope.data.readableBytes
        node.metrics.packetsIn.increment()
        node.metrics.bytesIn.increment(by: envelope.data.readableBytes)
        guard let source = PeerAddress(envelope.remoteAddress) else { return }
        do {
            var bytes = Array(envelope.data.readableBytesView)
            if var opener {
                // A datagram of a known sender costs one decryption and always gets it; only a new
                // sender (trying every keyring key) is limited, per source and overall.
                if !opener.knowsSender(of: bytes) && !trials.allow(source.host, now: WallClock.now()) {
                    drop(reason: "rate_limited", from: source, log: false)
                    return
                }
                bytes = try opener.open(bytes, receiver: me)
                self.opener = opener
            }
            var packet = try WireCodec.decode(bytes)
            if security.identity != nil {
                guard let admittedPacket = admit(packet, from: source) else { return }
                packet = admittedPacket
            }
            handle(.packet(packet, from: source))
        } catch {
            let reason = (error as? SealError)?.reason ?? (error as? WireError)?.reason ?? "invalid"
            drop(reason: reason, from: source, log: true)
        }
    }

    func drop(reason: String, from source: PeerAddress, log: Bool) {
        counters.packetsDropped += 1
        node.metrics.droppedPacket(reason)
        if log { logger.debug("dropped packet", metadata: ["dm.peer": "\(source)", "dm.reason": "\(reason)"]) }
        publish()
    }

    // MARK: Admission (node identities): `Admission` decides, the shell dials

    /// A packet from a member proved at its source, with announcements of members not proved
    /// yet held back (and their addresses dialed); nil when the sender itself is not admitted.
    func admit(_ packet: Packet, from source: PeerAddress) -> Packet? {
        let (admittedPacket, dial) = admission.admit(packet, from: source, now: WallClock.now())
        for address in dial { verify(address) }
        if admittedPacket == nil { drop(reason: "unadmitted", from: source, log: true) }
        return admittedPacket
    }

    /// Merges a member list from push/pull; with node identities only members proved at their
    /// address pass, the others are held and dialed.
    func receiveState(_ members: [MemberRecord]) {
        guard security.identity != nil else {
            handle(.remoteState(members))
            return
        }
        let (passed, dial) = admission.admit(state: members, now: WallClock.now())
        for address in dial { verify(address) }
        if !passed.isEmpty { handle(.remoteState(passed)) }
    }

    /// Dials `address` to learn who holds it (the handshake proves it; `admitted` hears of it).
    func verify(_ address: PeerAddress) {
        spawn {
            _ = try? await self.dial(address, timeout: 10) { _ in }
        }
    }

    /// A peer proved its node ID (and certificate) on a stream we opened to `address`: admit it
    /// at that address, and let its held announcement through if that is where it said it is.
    func admitted(_ peer: VerifiedPeer, at address: PeerAddress) {
        guard security.identity != nil, let validUntil = peer.validUntil else { return }
        // Certificates may end after 2262, beyond Int64 nanoseconds: clamped, never trapping.
        let nanoseconds = validUntil.timeIntervalSince1970 * 1e9
        let until = nanoseconds >= 9.2e18 ? Int64.max : nanoseconds <= -9.2e18 ? Int64.min : Int64(nanoseconds)
        let (new, released) = admission.proved(peer.id, at: address, until: until, now: WallClock.now())
        if new {
            logger.info(
                "admitted cluster peer",
                metadata: ["dm.peer": "\(peer.name)", "dm.peer_id": "\(peer.id)", "dm.address": "\(address)"])
        }
        if let released { handle(.remoteState([released])) }
    }

    func send(_ bytes: [UInt8], to address: PeerAddress, node receiver: NodeID) {
        guard let remote = try? SocketAddress(ipAddress: address.host, port: Int(address.port)) else {
            logger.debug("cannot send to \(address): not an IP address")
            return
        }
        let isIPv6 = remote.protocol == .inet6
        guard let outbox = outboxes.first(where: { $0.isIPv6 == isIPv6 }) else { return }
        var wire = bytes
        if var sealer {
            wire = sealer.seal(bytes, for: receiver)
            self.sealer = sealer
        }
        counters.packetsOut += 1
        counters.bytesOut += wire.count
        node.metrics.packetsOut.increment()
        node.metrics.bytesOut.increment(by: wire.count)
        let envelope = AddressedEnvelope(remoteAddress: remote, data: ByteBuffer(bytes: wire))
        outbox.queue.yield(envelope)
    }
}
