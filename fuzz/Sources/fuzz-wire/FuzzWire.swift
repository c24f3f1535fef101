// The UDP gossip packet decoder (`WireCodec.decode`, wire version 2), fed whole datagrams, and
// the decoded packet handed to a `ClusterCore` that knows three members.
//
// Invariants of a packet that decodes:
// - the encoding is canonical: `encode(decode(bytes)) == bytes`, and that encoding decodes to
//   the same value;
// - it is self-delimiting: the input minus its last byte, or plus one byte, does not decode;
// - every item the decoder checked (without building it) reads back;
// - every field is within the limits the decoder promises (items, addresses, hosts, names, ports);
// - an `alive` item carries a 32-byte node key and a 64-byte signature; `isAuthentic` runs, and
//   when it says yes the ID is the key's and the same claim at another incarnation is not
//   authentic; `suspect`/`dead` items carry a 64-byte signature;
// - each file version carries a valid file name, and checking its signature does not trap;
// - the core handles the packet without trapping, takes only authentic announcements, and a
//   member it had alive turns suspect, dead or left only for an accusation in the packet that its
//   accuser signed over the v2 accusation message at the incarnation the member signed (left:
//   the member itself, dead). The accuser must be this node or a member it had confirmed before
//   the packet: a key announced in the same packet is unconfirmed, and keys cost nothing to make
//   (issue 13: "members earn trust before they cost anything").
import Crypto
import DataMesherCore
import FuzzSupport

#if canImport(Glibc)
    import Glibc
#endif

let verifier = Ed25519Verifier()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWire(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = fuzzInput(data, size)
    let packet: Packet
    do { packet = try WireCodec.decode(input) } catch { return 0 }

    let encoded = WireCodec.encode(packet)
    invariant(encoded == input, "re-encoding changed the packet: \(dump(input)) -> \(dump(encoded))")
    let again = try? WireCodec.decode(encoded)
    invariant(again == packet, "the re-encoded packet decodes differently: \(dump(encoded))")
    invariant(
        (try? WireCodec.decode(Array(input.dropLast()))) == nil, "a truncated packet decodes: \(dump(input))")
    invariant((try? WireCodec.decode(input + [0])) == nil, "a packet with a trailing byte decodes: \(dump(input))")

    let items = packet.items
    invariant(items.count <= WireCodec.maxItems, "\(items.count) items")
    invariant(items.count == packet.itemCount, "\(packet.itemCount) items checked, \(items.count) readable")
    if case .pingRequest(_, _, let address) = packet.message { checkAddress(address) }
    var authentic: [MemberAnnouncement] = []
    for item in items {
        invariant(WireCodec.encodedSize(item) == WireCodec.encode(item).count, "encodedSize of \(item)")
        switch item {
        case .alive(let member):
            invariant(item.subject == .member(member.id), "subject of an alive item")
            invariant(member.name.utf8.count <= WireCodec.maxNodeNameLength, "node name too long")
            invariant(member.addresses.count <= WireCodec.maxAddresses, "\(member.addresses.count) addresses")
            invariant(member.publicKey.count == 32, "node key of \(member.publicKey.count) bytes")
            invariant(member.signature.count == 64, "member signature of \(member.signature.count) bytes")
            member.addresses.forEach(checkAddress)
            if member.isAuthentic(verifier) {
                invariant(NodeID(publicKey: member.publicKey) == member.id, "authentic, but the ID is not the key's")
                var other = member
                other.incarnation &+= 1
                invariant(!other.isAuthentic(verifier), "the signature also covers incarnation \(other.incarnation)")
                authentic.append(member)
            }
        case .suspect(let accusation), .dead(let accusation):
            invariant(item.subject == .member(accusation.id), "subject of an accusation")
            invariant(accusation.signature.count == 64, "accusation signature of \(accusation.signature.count) bytes")
        case .file(let version, let inline):
            invariant((try? FileName(version.name.value)) == version.name, "invalid name \(quote(version.name.value))")
            invariant(version.networkID.utf8.count <= WireCodec.maxNetworkIDLength, "network id too long")
            invariant(version.signature.count == FileVersion.signatureLength, "signature length")
            invariant(version.contentSHA256.count == 32, "hash length")
            invariant((inline?.count ?? 0) <= WireCodec.maxInlineContent, "inline content too long")
            _ = version.expiresAt
            _ = VersionSummary(version)
            _ = version.hasValidSignature
        case .holding(let holding):
            invariant(item.subject == .holding(holding.holder, holding.name), "subject of a holding")
            invariant(holding.signature.count == 64, "holding signature of \(holding.signature.count) bytes")
            invariant(
                holding.signaturePrefix.count == (holding.timestamp == Holding.nothing ? 0 : 16),
                "holding signature prefix of \(holding.signaturePrefix.count) bytes")
        case .holdingQuery(let name):
            invariant(item.subject == .holdingQuery(name), "subject of a holding query")
            invariant((try? FileName(name.value)) == name, "invalid name \(quote(name.value))")
        case .refusal(let claim):
            invariant(item.subject == .refusal(claim.holder, claim.name), "subject of a refusal")
            invariant(claim.signature.count == 64, "refusal signature of \(claim.signature.count) bytes")
            invariant(
                claim.signaturePrefix.count == 16, "refusal signature prefix of \(claim.signaturePrefix.count) bytes")
            invariant((try? FileName(claim.name.value)) == claim.name, "invalid name \(quote(claim.name.value))")
            _ = claim.explanation
        }
    }
    checkMesh(packet, items: items, authentic: authentic, input: input)
    return 0
}

func checkAddress(_ address: PeerAddress) {
    invariant(!address.host.isEmpty && address.port > 0, "address \(address) is empty or has port 0")
    invariant(address.host.utf8.count <= WireCodec.maxHostLength, "host \(quote(address.host)) too long")
}

/// Hands the packet to the core of `Cluster` (from the sender's address when it is a known
/// member) and checks what it did to its members.
func checkMesh(_ packet: Packet, items: [GossipItem], authentic: [MemberAnnouncement], input: [UInt8]) {
    let before = Cluster.core
    var core = before
    var rng = FuzzRandom(state: UInt64(input.count))
    let from =
        Cluster.known.first { $0.id == packet.sender }.map(Cluster.address)
        ?? PeerAddress(host: "10.9.9.9", port: 7946)
    _ = core.handle(.packet(packet, from: from), now: Cluster.start + 1_000_000, rng: &rng)

    /// The key of an accuser whose word counts: this node or a confirmed member.
    func key(of id: NodeID) -> [UInt8]? {
        if id == Cluster.a.id { return Cluster.a.publicKey }
        guard let record = before.members[id], record.confirmed else { return nil }
        return record.announcement.publicKey
    }
    Cluster.checkMembership(before: before, after: core, "packet \(dump(input))") { id, state in
        let incarnations = Set(
            [before.members[id]?.announcement.incarnation].compactMap { $0 }
                + authentic.filter { $0.id == id }.map(\.incarnation))
        return items.contains { item in
            let accusation: Accusation
            let dead: Bool
            switch item {
            case .suspect(let claim): (accusation, dead) = (claim, false)
            case .dead(let claim): (accusation, dead) = (claim, true)
            default: return false
            }
            guard accusation.id == id, incarnations.contains(accusation.incarnation) else { return false }
            if state == .left && !(dead && accusation.from == id) { return false }
            guard let key = key(of: accusation.from) else { return false }
            return verifier.isValidSignature(
                accusation.signature, of: Cluster.accusationMessage(accusation, dead: dead), by: key)
        }
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    Seeds.writeIfAsked(makeSeeds)
    // The fixture: `a` knows `b` and `c` as confirmed, alive members.
    for member in [Cluster.b, Cluster.c] {
        let record = Cluster.core.members[member.id]
        invariant(record?.state == .alive && record?.confirmed == true, "the core fixture did not meet \(member.id)")
    }
    // The accusation message written here is the one the core signs.
    let accusation = Accusation.signed(id: Cluster.c.id, incarnation: 100, dead: false, by: Cluster.b)
    invariant(
        verifier.isValidSignature(
            accusation.signature, of: Cluster.accusationMessage(accusation, dead: false), by: Cluster.b.publicKey),
        "Accusation.signed does not sign the accusation message written in FuzzSupport")
    return 0
}

/// Real packets of every message and item kind, made with the encoder and the fixed node keys of
/// `Cluster` (b and c are members the core knows, mallory is not).
func makeSeeds() throws -> [(name: String, bytes: [UInt8])] {
    let (a, b, c, mallory) = (Cluster.a, Cluster.b, Cluster.c, Cluster.mallory)
    let key = Seeds.key(7)
    let content = Array("hello from data-mesher\n".utf8)
    let small = try FileVersion.sign(
        kind: .content, networkID: "", name: FileName("config:app"), timestamp: 1_700_000_000_000_000_000,
        validFor: 0, contentSHA256: Array(SHA256.hash(data: content)), contentLength: UInt64(content.count), key: key)
    let large = try FileVersion.sign(
        kind: .content, networkID: "prod", name: FileName("dns/zones/example.org"),
        timestamp: 1_700_000_000_000_000_001, validFor: 3_600_000_000_000,
        contentSHA256: [UInt8](repeating: 9, count: 32),
        contentLength: 1 << 20, key: key)
    let tombstone = try FileVersion.sign(
        kind: .tombstone, networkID: "", name: FileName("old/file"), timestamp: 1_700_000_000_000_000_002, validFor: 0,
        contentSHA256: FileVersion.emptySHA256, contentLength: 0, key: key)
    let bAlive = MemberAnnouncement.signed(
        by: b, name: "n2", incarnation: 101,
        addresses: [Cluster.address(b), PeerAddress(host: "fd00::2", port: 7946)])
    let malloryAlive = MemberAnnouncement.signed(
        by: mallory, name: "mallory", incarnation: 1, addresses: [Cluster.address(mallory)])
    let suspectC = Accusation.signed(id: c.id, incarnation: 100, dead: false, by: b)
    let deadC = Accusation.signed(id: c.id, incarnation: 100, dead: true, by: b)
    let cLeft = Accusation.signed(id: c.id, incarnation: 100, dead: true, by: c)
    let suspectA = Accusation.signed(id: a.id, incarnation: 100, dead: false, by: b)
    let forged = Accusation(id: c.id, incarnation: 100, from: b.id, signature: [UInt8](repeating: 0x5A, count: 64))
    let packets: [(String, Packet)] = [
        ("ping", Packet(sender: b.id, message: .ping(sequence: 1, target: a.id))),
        (
            "ping-request",
            Packet(
                sender: b.id,
                message: .pingRequest(sequence: 2, target: c.id, address: Cluster.address(c)))
        ),
        ("ack", Packet(sender: c.id, message: .ack(sequence: 1, responder: c.id, clock: Cluster.start))),
        ("ack-relayed", Packet(sender: b.id, message: .ack(sequence: 0x8000_0001, responder: c.id, clock: -1))),
        ("nack", Packet(sender: b.id, message: .nack(sequence: 2))),
        ("gossip-empty", Packet(sender: b.id, message: .gossip)),
        ("ping-alive", Packet(sender: b.id, message: .ping(sequence: 4, target: a.id), items: [.alive(bAlive)])),
        ("alive-stranger", Packet(sender: mallory.id, message: .gossip, items: [.alive(malloryAlive)])),
        (
            "suspect-dead",
            Packet(
                sender: b.id, message: .ack(sequence: 4, responder: b.id, clock: Cluster.start),
                items: [.suspect(suspectC), .dead(deadC), .suspect(suspectA)])
        ),
        ("left", Packet(sender: c.id, message: .gossip, items: [.dead(cLeft)])),
        (
            "accusations-refused",
            Packet(
                sender: mallory.id, message: .gossip,
                items: [.alive(malloryAlive), .suspect(forged)])
        ),
        ("gossip-file-inline", Packet(sender: b.id, message: .gossip, items: [.file(small, inline: content)])),
        (
            "gossip-files",
            Packet(
                sender: b.id, message: .gossip,
                items: [.file(large, inline: nil), .file(tombstone, inline: []), .alive(bAlive)])
        ),
        (
            "holdings-refusal",
            Packet(
                sender: b.id, message: .gossip,
                items: [
                    .holdingQuery(small.name), .holding(.signed(small.name, version: small, by: b)),
                    .refusal(
                        RefusalClaim(
                            refusing: large, for: .tooLarge(large.name, large.contentLength, limit: 1), holder: b.id)!
                            .signed(by: b)),
                ])
        ),
    ]
    if getenv("DM_FUZZ_REPRODUCERS") != nil {
        // The finding of 2026-11-28 (docs/FUZZING.md): a key announced in the same datagram
        // accuses a confirmed member, which turns suspect or dead.
        let reproducers: [(String, Packet)] = [
            (
                "unconfirmed-accuser-suspect",
                Packet(
                    sender: mallory.id, message: .gossip,
                    items: [
                        .alive(malloryAlive),
                        .suspect(Accusation.signed(id: b.id, incarnation: 100, dead: false, by: mallory)),
                    ])
            ),
            (
                "unconfirmed-accuser-dead",
                Packet(
                    sender: mallory.id, message: .gossip,
                    items: [
                        .alive(malloryAlive),
                        .dead(Accusation.signed(id: b.id, incarnation: 100, dead: true, by: mallory)),
                    ])
            ),
        ]
        return reproducers.map { ($0.0, WireCodec.encode($0.1)) }
    }
    return packets.map { ($0.0, WireCodec.encode($0.1)) }
}
