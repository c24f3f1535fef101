import DataMesherCore

/// One copy of each member's announcement for all the cores of a simulation. Every datagram is
/// decoded on its own, as on the wire, so each receiver would keep its own copy of the same
/// announcement; a thousand cores that know a thousand members would hold a million. Passing
/// each decoded packet through here first swaps every announcement for the one already held
/// with the same content (`MemberAnnouncement.sharingBody(with:)`), so the cores' member records
/// share it. The cores decide exactly as before: the shared announcement says the same.
struct SharedAnnouncements {
    /// The latest announcement seen of each member.
    var latest: [NodeID: MemberAnnouncement] = [:]

    /// `packet` with its announcements replaced by the held ones where they say the same.
    mutating func share(_ packet: Packet) -> Packet {
        guard packet.items.contains(where: { if case .alive = $0 { true } else { false } }) else { return packet }
        var shared = packet
        shared.items = packet.items.map { item in
            guard case .alive(let announcement) = item else { return item }
            return .alive(share(announcement))
        }
        return shared
    }

    mutating func share(_ announcement: MemberAnnouncement) -> MemberAnnouncement {
        guard let held = latest[announcement.id], held.incarnation >= announcement.incarnation else {
            latest[announcement.id] = announcement
            return announcement
        }
        return announcement.sharingBody(with: held)
    }
}
