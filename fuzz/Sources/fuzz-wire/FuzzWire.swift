// The UDP gossip packet decoder (`WireCodec.decode`), fed whole datagrams.
//
// Invariants of a packet that decodes:
// - the encoding is canonical: `encode(decode(bytes)) == bytes`, and that encoding decodes to
//   the same value;
// - it is self-delimiting: the input minus its last byte, or plus one byte, does not decode;
// - every field is within the limits the decoder promises (items, addresses, hosts, names, ports);
// - each file version carries a valid file name, and checking its signature does not trap.
import Crypto
import DataMesherCore
import FuzzSupport

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

    invariant(packet.items.count <= WireCodec.maxItems, "\(packet.items.count) items")
    if case .pingRequest(_, _, let address) = packet.message { checkAddress(address) }
    for item in packet.items {
        _ = item.subject
        switch item {
        case .alive(let member):
            invariant(member.name.utf8.count <= WireCodec.maxNodeNameLength, "node name too long")
            invariant(member.addresses.count <= WireCodec.maxAddresses, "\(member.addresses.count) addresses")
            member.addresses.forEach(checkAddress)
        case .suspect, .dead:
            break
        case .file(let version, let inline):
            invariant((try? FileName(version.name.value)) == version.name, "invalid name \(quote(version.name.value))")
            invariant(version.networkID.utf8.count <= WireCodec.maxNetworkIDLength, "network id too long")
            invariant(version.signature.count == FileVersion.signatureLength, "signature length")
            invariant(version.contentSHA256.count == 32, "hash length")
            invariant((inline?.count ?? 0) <= WireCodec.maxInlineContent, "inline content too long")
            _ = version.expiresAt
            _ = VersionSummary(version)
            _ = version.hasValidSignature
        }
    }
    return 0
}

func checkAddress(_ address: PeerAddress) {
    invariant(!address.host.isEmpty && address.port > 0, "address \(address) is empty or has port 0")
    invariant(address.host.utf8.count <= WireCodec.maxHostLength, "host \(quote(address.host)) too long")
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    Seeds.writeIfAsked(makeSeeds)
    return 0
}

/// Real packets of every message and item kind, made with the encoder.
func makeSeeds() throws -> [(name: String, bytes: [UInt8])] {
    let alpha = NodeID(bytes: [UInt8](repeating: 0xA1, count: 16))!
    let beta = NodeID(bytes: [UInt8](repeating: 0xB2, count: 16))!
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
    let member = MemberAnnouncement(
        id: alpha, name: "node1", incarnation: 3,
        addresses: [PeerAddress(host: "127.0.0.11", port: 7946), PeerAddress(host: "fd00::1", port: 7946)])
    let packets: [(String, Packet)] = [
        ("ping", Packet(sender: alpha, message: .ping(sequence: 1, target: beta))),
        (
            "ping-request",
            Packet(
                sender: alpha,
                message: .pingRequest(sequence: 2, target: beta, address: PeerAddress(host: "127.0.0.12", port: 7946)))
        ),
        ("ack", Packet(sender: beta, message: .ack(sequence: 1))),
        ("nack", Packet(sender: beta, message: .nack(sequence: 2))),
        ("gossip-empty", Packet(sender: alpha, message: .gossip)),
        ("ping-alive", Packet(sender: alpha, message: .ping(sequence: 4, target: beta), items: [.alive(member)])),
        (
            "ack-suspect-dead",
            Packet(
                sender: beta, message: .ack(sequence: 4),
                items: [.suspect(alpha, incarnation: 3, from: beta), .dead(beta, incarnation: 1, from: beta)])
        ),
        ("gossip-file-inline", Packet(sender: alpha, message: .gossip, items: [.file(small, inline: content)])),
        (
            "gossip-files",
            Packet(
                sender: alpha, message: .gossip,
                items: [.file(large, inline: nil), .file(tombstone, inline: []), .alive(member)])
        ),
    ]
    return packets.map { ($0.0, WireCodec.encode($0.1)) }
}
