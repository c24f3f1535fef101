/// Admission with node identities (docs/PROTOCOL.md, "Node identities"), as a pure state
/// machine: which members proved their node ID, with a certificate, at which address, and the
/// announcements of members not proved yet, held until they are.
///
/// The network shell (or the simulator) asks it about every packet and every push/pull member
/// list before the core sees them, dials the addresses it names (`dial`), and tells it when a
/// peer proved its ID on a stream to an address (`proved`). A packet from a sender not proved
/// at its source goes nowhere; an announcement of a member not proved at its own address is held
/// back (at most `maxHeld`) and its address dialed; once proved there, the held announcement is
/// released to the core. No clock and no I/O: time comes with every call.
public struct Admission: Sendable {
    public static let maxHeld = 1024
    /// An address is dialed at most this often (ns).
    public static let dialInterval: Int64 = 2_000_000_000

    /// Who proved what: the addresses each member proved its ID at, and when its certificate ends.
    public private(set) var admitted: [NodeID: (addresses: Set<PeerAddress>, until: Int64)] = [:]
    /// Announcements (as member records) of members not proved yet.
    public private(set) var held: [NodeID: MemberRecord] = [:]
    var lastDial: [PeerAddress: Int64] = [:]
    let me: NodeID

    public init(me: NodeID) { self.me = me }

    /// Whether `id` proved its ID at `address` with a certificate still valid at `now`.
    public func isAdmitted(_ id: NodeID, at address: PeerAddress?, now: Int64) -> Bool {
        if id == me { return true }
        guard let address, let entry = admitted[id] else { return false }
        return entry.addresses.contains(address) && entry.until > now
    }

    /// A datagram: nil when its sender has not proved its ID at `source` (the source is then
    /// dialed, at most every `dialInterval`); otherwise the packet without the announcements of
    /// members not proved at their address, which are held and dialed.
    public mutating func admit(_ packet: Packet, from source: PeerAddress, now: Int64) -> (
        packet: Packet?, dial: [PeerAddress]
    ) {
        var dial: [PeerAddress] = []
        guard isAdmitted(packet.sender, at: source, now: now) else {
            if shouldDial(source, now: now) { dial.append(source) }
            return (nil, dial)
        }
        let items = packet.items
        guard items.contains(where: { if case .alive = $0 { return true } else { return false } }) else {
            return (packet, [])
        }
        var admittedPacket = packet
        admittedPacket.items = items.filter { item in
            guard case .alive(let announcement) = item else { return true }
            if isAdmitted(announcement.id, at: announcement.addresses.first, now: now) { return true }
            if let address = hold(MemberRecord(announcement: announcement, state: .alive, since: now, lastSource: nil))
            {
                if shouldDial(address, now: now) { dial.append(address) }
            }
            return false
        }
        return (admittedPacket, dial)
    }

    /// A member list from push/pull: the members proved at their address pass, the others are
    /// held and their addresses dialed.
    public mutating func admit(state records: [MemberRecord], now: Int64) -> (
        passed: [MemberRecord], dial: [PeerAddress]
    ) {
        var passed: [MemberRecord] = []
        var dial: [PeerAddress] = []
        for record in records {
            if isAdmitted(record.id, at: record.address, now: now) {
                passed.append(record)
            } else if let address = hold(record), shouldDial(address, now: now) {
                dial.append(address)
            }
        }
        return (passed, dial)
    }

    /// A peer proved `id` with a certificate valid until `until`, on a stream this node opened to
    /// `address`. Returns whether that is news (a first proof at that address) and the held
    /// announcement it lets through, if that is where the member said it is.
    public mutating func proved(_ id: NodeID, at address: PeerAddress, until: Int64, now: Int64) -> (
        new: Bool, released: MemberRecord?
    ) {
        let new = admitted[id]?.addresses.contains(address) != true
        var entry = admitted[id] ?? (addresses: [], until: until)
        entry.addresses.insert(address)
        entry.until = until
        admitted[id] = entry
        guard let record = held[id], isAdmitted(id, at: record.announcement.addresses.first, now: now) else {
            return (new, nil)
        }
        held[id] = nil
        return (new, record)
    }

    /// Holds a live member's announcement (the newest one) and returns the address to dial.
    mutating func hold(_ record: MemberRecord) -> PeerAddress? {
        guard record.state == .alive || record.state == .suspect, let address = record.announcement.addresses.first
        else { return nil }
        if let previous = held[record.id] {
            if previous.announcement.incarnation <= record.announcement.incarnation { held[record.id] = record }
        } else if held.count < Admission.maxHeld {
            held[record.id] = record
        }
        return address
    }

    mutating func shouldDial(_ address: PeerAddress, now: Int64) -> Bool {
        if let last = lastDial[address], now.subtractingSaturated(last) < Admission.dialInterval { return false }
        if lastDial.count >= Admission.maxHeld { lastDial.removeAll() }
        lastDial[address] = now
        return true
    }
}
