import DataMesherCore
import DataMesherStore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

typealias DatagramChannel = NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>

/// Datagrams in and out: the sockets, opening, decoding, admission of proven members, sealing.
extension NetworkShell {
    // MARK: UDP sockets

    nonisolated func bindDatagrams(_ address: String) async throws -> DatagramSocket {
        let failures = SendFailures()
        let channel = try await DatagramBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            // Room for bursts: a datagram the kernel drops is never seen, let alone counted.
            .channelOption(.socketOption(.so_rcvbuf), value: 4 << 20)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
            .bind(host: address, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(failures)
                    return try DatagramChannel(wrappingChannelSynchronously: channel)
                }
            }
        return DatagramSocket(channel: channel, failures: failures)
    }

    /// Receives on the socket bound to `address`, and sends what its outbox holds, until the
    /// shell stops. SwiftNIO closes a UDP socket on most failed sends (a route that is a
    /// blackhole or prohibited, no route to the network, a firewall's refusal): the socket is
    /// bound again, and nothing more is sent to the destination of the failed send for a
    /// minute (`unsendable`), so one member at an address this node cannot send to does not
    /// leave it deaf. What was queued when the socket closed is lost.
    nonisolated func runDatagrams(_ first: DatagramSocket, boundTo address: String) async {
        var socket = first
        while true {
            await serveDatagrams(on: socket.channel, boundTo: address)
            let failure = socket.failures.last.withLockedValue { $0 }
            if let destination = failure?.destination { await markUnsendable(destination) }
            // Rebound at most every 100 ms, and every second when binding fails.
            for attempt in 0... {
                try? await Task.sleep(for: .milliseconds(attempt == 0 ? 100 : 1000))
                if Task.isCancelled { return }
                do {
                    socket = try await bindDatagrams(address)
                    break
                } catch {
                    if attempt == 0 { logger.error("cannot bind the cluster UDP socket again: \(error)") }
                }
            }
            if let failure {
                logger.warning(
                    "cluster UDP socket closed after a failed send; bound again, and nothing goes to that peer for a minute",
                    metadata: [
                        "dm.address": "\(address)", "dm.reason": "\(failure.error)",
                        "dm.peer": "\(PeerAddress(failure.destination).map { "\($0)" } ?? "\(failure.destination)")",
                    ])
            } else {
                logger.warning("cluster UDP socket closed; bound again", metadata: ["dm.address": "\(address)"])
            }
        }
    }

    /// Whether the kernel has a route from `local` to `remote`, asked once a minute per
    /// destination (a connect of a throwaway UDP socket, which sends nothing). SwiftNIO closes
    /// the cluster socket on a send that fails for want of a route, and anyone may announce a
    /// member at such an address: without this, each announcement cost the node its UDP socket
    /// for 100 ms. A destination without a route is `unsendable` for a minute.
    func isRouted(_ remote: SocketAddress, from local: String) -> Bool {
        let now = WallClock.now()
        if let until = routed[remote], until > now { return true }
        if let code = Self.routeProblem(to: remote, from: local) {
            logger.debug(
                "not sending to \(remote): no route (\(String(cString: strerror(code))))",
                metadata: ["dm.reason": "no_route"])
            markUnsendable(remote)
            return false
        }
        if routed.count >= 4096 { routed = routed.filter { $0.value > now } }
        if routed.count >= 4096 { routed.removeAll() }
        routed[remote] = now.addingSaturated(60_000_000_000)
        return true
    }

    /// The errno of connecting a UDP socket bound to `local` to `remote`, or nil when that
    /// works (or cannot be tried: the send will tell).
    static func routeProblem(to remote: SocketAddress, from local: String) -> Int32? {
        #if !os(Linux)
            return nil
        #else
            routeProblemLinux(to: remote, from: local)
        #endif
    }

    #if os(Linux)
        static func routeProblemLinux(to remote: SocketAddress, from local: String) -> Int32? {
            let family = remote.protocol == .inet6 ? AF_INET6 : AF_INET
            let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { return nil }
            defer { close(fd) }
            if let source = try? SocketAddress(ipAddress: local, port: 0), source.protocol == remote.protocol,
                !(source.ipAddress == "0.0.0.0" || source.ipAddress == "::")
            {
                guard source.withSockAddr({ Glibc.bind(fd, $0, socklen_t($1)) }) == 0 else { return nil }
            }
            let connected = remote.withSockAddr { Glibc.connect(fd, $0, socklen_t($1)) }
            return connected == 0 ? nil : errno
        }
    #endif

    /// Nothing is sent to `destination` for a minute (at most 4,096 such destinations).
    func markUnsendable(_ destination: SocketAddress) {
        let now = WallClock.now()
        if unsendable.count >= 4096 { unsendable = unsendable.filter { $0.value > now } }
        if unsendable.count < 4096 { unsendable[destination] = now.addingSaturated(60_000_000_000) }
    }

    /// One socket's life: returns when it closed.
    nonisolated func serveDatagrams(on udp: DatagramChannel, boundTo address: String) async {
        let isIPv6 = udp.channel.localAddress?.protocol == .inet6
        try? await udp.executeThenClose { inbound, outbound in
            let (datagrams, queue) = AsyncStream.makeStream(
                of: AddressedEnvelope<ByteBuffer>.self, bufferingPolicy: .bufferingNewest(4096))
            let writer = Task {
                for await envelope in datagrams { try? await outbound.write(envelope) }
            }
            await self.setOutbox(Outbox(address: address, isIPv6: isIPv6, queue: queue, writer: writer))
            do {
                for try await envelope in inbound { await self.receive(envelope) }
            } catch {}
            // What is queued still leaves (the leave) before the socket closes.
            queue.finish()
            await writer.value
        }
    }

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
        guard Self.isUnicast(remote) else {
            logger.debug("not sending to \(address): not a unicast address")
            return
        }
        if let until = unsendable[remote] {
            guard until <= WallClock.now() else { return }
            unsendable[remote] = nil
        }
        let isIPv6 = remote.protocol == .inet6
        guard let outbox = outboxes.first(where: { $0.isIPv6 == isIPv6 }) else { return }
        guard isRouted(remote, from: outbox.address) else { return }
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

    /// Broadcast, multicast and unspecified addresses: no member answers there, and the kernel
    /// refuses a send to a broadcast address (which SwiftNIO answers by closing the socket).
    static func isUnicast(_ remote: SocketAddress) -> Bool {
        switch remote {
        case .v4(let address):
            let first = UInt32(bigEndian: address.address.sin_addr.s_addr) >> 24
            return first != 0 && first < 224
        case .v6(let address):
            return withUnsafeBytes(of: address.address.sin6_addr) { bytes in
                bytes.first != 0xff && bytes.contains { $0 != 0 }
            }
        case .unixDomainSocket:
            return false
        }
    }
}
