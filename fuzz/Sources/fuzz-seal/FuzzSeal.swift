// Sealed cluster traffic, wire version 2 (docs/PROTOCOL.md, "sealed datagrams" and "Sealed
// streams"): `PacketOpener.open(_:receiver:)` with its per-sender replay window, and
// `StreamCipher.recordLength` / `StreamCipher.open` for TCP records under session keys from
// `StreamHandshake.sessionKeys`.
//
// The input is a script of up to 64 steps. Datagrams are sealed by a sealer written here from
// the protocol (HKDF-SHA256 with info "data-mesher udp v2", AES-256-GCM, nonce = 4 zero bytes +
// counter, associated data = marker ‖ salt ‖ receiver node ID), under ring keys, a key outside
// the ring, four sender salts, for this node or another one, and any counter (also near 2^64);
// steps deliver new datagrams, replay old ones, deliver tampered copies, or raw bytes. Stream
// steps seal records in both directions of a session whose keys both ends derived from a
// handshake (fixed ephemerals, keyring key as PSK), or in sessions with another keyring key, no
// keyring or another transcript, and deliver them in any order, some tampered.
//
// Invariants:
// - a datagram opens exactly when a model of the protocol says so: sealed for this node's ID,
//   under a ring key (the one that first opened its sender's salt), and its counter above the
//   sender's highest or within the 1024 below it and not seen before; the plain text is what was
//   sealed; `knowsSender` is true exactly for the salts that opened;
// - a refusal has the right reason (not sealed, truncated, replayed, authentication) and leaves
//   the state as it was; raw or tampered bytes never open;
// - both ends of the handshake derive the same session keys, and `PacketSealer` seals exactly
//   like the reference sealer (checked once at start);
// - a stream record opens only if it is the next one of its direction in this session,
//   unaltered; the counter moves only then; `recordLength` reads the 4-byte prefix and keeps to
//   its limit (the default or a proof's size).
@preconcurrency import Crypto
import DataMesherCore
import FuzzSupport

let ringKeys = [
    SymmetricKey(data: [UInt8](repeating: 0x11, count: 32)), SymmetricKey(data: [UInt8](repeating: 0x22, count: 32)),
]
let foreignKey = SymmetricKey(data: [UInt8](repeating: 0x33, count: 32))
let salts: [[UInt8]] = (0..<4).map { index in (0..<16).map { UInt8(index * 16 + $0) } }
let maxSteps = 64
/// The node that opens; datagrams sealed for `other` must not open here.
let me = Cluster.a.id
let receivers = [me, Cluster.b.id]

/// A datagram sealed by the reference sealer below, with what the model needs to know about it.
struct Datagram {
    var bytes: [UInt8]
    var salt: Int
    /// 0 and 1: ring keys; 2: a key outside the ring.
    var key: Int
    /// Index in `receivers`: 0 is this node.
    var receiver: Int
    var counter: UInt64
    var plain: [UInt8]
}

/// The receiver as the protocol describes it.
struct Model {
    struct Sender {
        var key: Int
        var highest: UInt64
        var seen: Set<UInt64>
    }
    var senders: [Int: Sender] = [:]

    func isFresh(_ counter: UInt64, _ sender: Sender) -> Bool {
        counter > sender.highest || (sender.highest - counter < PacketOpener.window && !sender.seen.contains(counter))
    }

    /// The expected outcome of an untampered datagram, and the model updated for it.
    mutating func deliver(_ datagram: Datagram) -> Result<[UInt8], SealError> {
        if var sender = senders[datagram.salt] {
            guard isFresh(datagram.counter, sender) else { return .failure(.replayed) }
            guard datagram.key == sender.key, datagram.receiver == 0 else { return .failure(.authentication) }
            sender.highest = max(sender.highest, datagram.counter)
            sender.seen.insert(datagram.counter)
            senders[datagram.salt] = sender
            return .success(datagram.plain)
        }
        guard datagram.key < ringKeys.count, datagram.receiver == 0 else { return .failure(.authentication) }
        senders[datagram.salt] = Sender(key: datagram.key, highest: datagram.counter, seen: [datagram.counter])
        return .success(datagram.plain)
    }
}

/// Seals like PROTOCOL.md says a sender does, at any counter.
func referenceSeal(_ plain: [UInt8], salt: Int, key: Int, counter: UInt64, receiver: Int) -> [UInt8] {
    let ringKey = key < ringKeys.count ? ringKeys[key] : foreignKey
    let derived = HKDF<SHA256>.deriveKey(
        inputKeyMaterial: ringKey, salt: salts[salt], info: Array("data-mesher udp v2".utf8), outputByteCount: 32)
    var nonce = [UInt8](repeating: 0, count: 4)
    for shift in stride(from: 56, through: 0, by: -8) {
        nonce.append(UInt8(truncatingIfNeeded: counter >> UInt64(shift)))
    }
    let header = [UInt8(0xD5)] + salts[salt]
    let box = try! AES.GCM.seal(
        plain, using: derived, nonce: try! AES.GCM.Nonce(data: nonce),
        authenticating: header + receivers[receiver].bytes)
    return header + nonce + Array(box.ciphertext) + Array(box.tag)
}

struct Script {
    let bytes: [UInt8]
    var position = 0
    mutating func byte() -> UInt8? {
        guard position < bytes.count else { return nil }
        defer { position += 1 }
        return bytes[position]
    }
    mutating func take(_ count: Int) -> [UInt8] {
        let end = min(bytes.count, position + count)
        defer { position = end }
        return Array(bytes[position..<end])
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSeal(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var script = Script(bytes: fuzzInput(data, size))
    var opener = PacketOpener(ring: ringKeys)
    var model = Model()
    var delivered: [Datagram] = []
    var streams = Streams()

    for _ in 0..<maxSteps {
        guard let step = script.byte() else { break }
        switch step % 8 {
        case 0, 1:
            // A new datagram.
            let salt = Int(script.byte() ?? 0) % salts.count
            // 0-2: a ring key, the other ring key, a foreign key, for this node; 3-5: for another.
            let choice = Int(script.byte() ?? 0) % 6
            let (key, receiver) = (choice % 3, choice / 3)
            let mode = script.byte() ?? 0
            let low = UInt64(script.byte() ?? 0) << 8 | UInt64(script.byte() ?? 0)
            let counter: UInt64
            switch mode % 4 {
            case 1: counter = low * 61
            case 2: counter = UInt64.max - low
            default: counter = low
            }
            let plain = script.take(Int(script.byte() ?? 0) % 48)
            let datagram = Datagram(
                bytes: referenceSeal(plain, salt: salt, key: key, counter: counter, receiver: receiver), salt: salt,
                key: key, receiver: receiver, counter: counter, plain: plain)
            deliver(datagram, to: &opener, model: &model)
            delivered.append(datagram)
        case 2:
            // A datagram seen before, again.
            guard !delivered.isEmpty else { continue }
            deliver(delivered[Int(script.byte() ?? 0) % delivered.count], to: &opener, model: &model)
        case 3:
            // A tampered copy: one byte changed, or cut short, or one byte more.
            guard !delivered.isEmpty else { continue }
            var bytes = delivered[Int(script.byte() ?? 0) % delivered.count].bytes
            let position = Int(script.byte() ?? 0) % bytes.count
            let change = script.byte() ?? 1
            switch change % 3 {
            case 0: bytes = Array(bytes.prefix(position))
            case 1: bytes.append(change)
            default: bytes[position] ^= change | 1
            }
            refuse(bytes, to: &opener)
        case 4:
            refuse(script.take(Int(script.byte() ?? 0) % 96), to: &opener)
        default:
            streams.step(&script)
        }
    }
    return 0
}

func deliver(_ datagram: Datagram, to opener: inout PacketOpener, model: inout Model) {
    let expected = model.deliver(datagram)
    let actual = Result { () throws(SealError) in try opener.open(datagram.bytes, receiver: me) }
    invariant(
        actual == expected,
        "datagram salt \(datagram.salt) key \(datagram.key) receiver \(datagram.receiver) counter \(datagram.counter): "
            + "opened as \(actual), the protocol says \(expected)")
    invariant(
        opener.knowsSender(of: datagram.bytes) == (model.senders[datagram.salt] != nil),
        "knowsSender of salt \(datagram.salt) is \(opener.knowsSender(of: datagram.bytes))")
}

/// Bytes that are not a datagram any sender sealed: they must not open.
func refuse(_ bytes: [UInt8], to opener: inout PacketOpener) {
    do {
        let plain = try opener.open(bytes, receiver: me)
        broken("altered or raw bytes opened: \(dump(bytes)) -> \(dump(plain))")
    } catch .notSealed {
        invariant(bytes.first != Seal.sealedPacketMarker, "a datagram with the marker refused as not sealed")
    } catch .truncated {
        invariant(
            bytes.first == Seal.sealedPacketMarker && bytes.count < Seal.packetOverhead,
            "\(bytes.count) bytes refused as truncated")
    } catch {
        invariant(
            bytes.first == Seal.sealedPacketMarker && bytes.count >= Seal.packetOverhead,
            "\(error) for \(bytes.count) bytes starting \(dump(Array(bytes.prefix(1))))")
    }
}

/// A handshake between fixed ephemeral keys, as each end computes it.
struct Session {
    static func ephemeral(_ fill: UInt8) -> Curve25519.KeyAgreement.PrivateKey {
        try! Curve25519.KeyAgreement.PrivateKey(rawRepresentation: [UInt8](repeating: fill, count: 32))
    }
    static let initiator = ephemeral(0x41)
    static let responder = ephemeral(0x42)
    static let flags = StreamHandshake.flagSealed | StreamHandshake.flagIdentity

    /// The keys of one end: `initiatorSide` computes with the initiator's private key.
    static func keys(
        initiatorSide: Bool, ringKey: SymmetricKey?, responderKey: Curve25519.KeyAgreement.PrivateKey = responder
    ) -> (initiatorToResponder: SymmetricKey, responderToInitiator: SymmetricKey) {
        let first = StreamHandshake.Preamble(flags: flags, ephemeral: Array(initiator.publicKey.rawRepresentation))
        let second = StreamHandshake.Preamble(flags: flags, ephemeral: Array(responderKey.publicKey.rawRepresentation))
        let transcript = StreamHandshake.transcriptHash(initiator: first, responder: second)
        let secret =
            initiatorSide
            ? StreamHandshake.sharedSecret(initiator, theirs: second.ephemeral)
            : StreamHandshake.sharedSecret(responderKey, theirs: first.ephemeral)
        guard let secret else { broken("the handshake of two valid ephemerals has no shared secret") }
        return StreamHandshake.sessionKeys(sharedSecret: secret, ringKey: ringKey, transcript: transcript)
    }

    /// This session's keys, as the initiator and as the responder derived them.
    static let initiatorKeys = keys(initiatorSide: true, ringKey: ringKeys[0])
    static let responderKeys = keys(initiatorSide: false, ringKey: ringKeys[0])
    /// Keys of sessions that are not this one: another keyring key, no keyring, another responder
    /// ephemeral (so another transcript and secret).
    static let strangers = [
        keys(initiatorSide: true, ringKey: ringKeys[1]).initiatorToResponder,
        keys(initiatorSide: true, ringKey: nil).initiatorToResponder,
        keys(initiatorSide: true, ringKey: ringKeys[0], responderKey: ephemeral(0x43)).initiatorToResponder,
    ]
}

func same(_ lhs: SymmetricKey, _ rhs: SymmetricKey) -> Bool {
    lhs.withUnsafeBytes { left in rhs.withUnsafeBytes { right in left.elementsEqual(right) } }
}

/// One TCP connection: records sealed in both directions, delivered to the responder's side.
struct Streams {
    var toResponder = StreamCipher(key: Session.initiatorKeys.initiatorToResponder)
    var toInitiator = StreamCipher(key: Session.initiatorKeys.responderToInitiator)
    /// What the responder reads with: the key it derived itself.
    var receiver = StreamCipher(key: Session.responderKeys.initiatorToResponder)
    var records: [(bytes: [UInt8], plain: [UInt8], index: Int?)] = []
    var sealed = 0
    var opened = 0

    mutating func step(_ script: inout Script) {
        let kind = script.byte() ?? 0
        switch kind % 5 {
        case 0:
            let plain = script.take(Int(script.byte() ?? 0) % 64)
            records.append((toResponder.seal(plain), plain, sealed))
            sealed += 1
        case 1:
            // Sealed for the other direction: never opens here.
            let plain = script.take(Int(script.byte() ?? 0) % 16)
            records.append((toInitiator.seal(plain), plain, nil))
        case 2:
            let prefix = script.take(4)
            // The limit after the handshake, or during it (a proof's size).
            let limit =
                (script.byte() ?? 0) % 2 == 0 ? StreamCipher.maxRecord : StreamHandshake.maxProofLength + Seal.tagLength
            if let length = try? StreamCipher.recordLength(prefix, limit: limit) {
                invariant(prefix.count == 4, "length read from \(prefix.count) bytes")
                invariant(
                    length == prefix.reduce(0) { $0 << 8 | Int($1) } && length >= Seal.tagLength && length <= limit,
                    "record length \(length) from \(dump(prefix)) with limit \(limit)")
            }
        case 4:
            // Sealed in another session (keyring key, no keyring, transcript): never opens here.
            var stranger = StreamCipher(key: Session.strangers[Int(script.byte() ?? 0) % Session.strangers.count])
            let plain = script.take(Int(script.byte() ?? 0) % 16)
            // Its counter is that of the next record of this session, so only the key differs.
            for _ in 0..<opened { _ = stranger.seal([]) }
            records.append((stranger.seal(plain), plain, nil))
        default:
            guard !records.isEmpty else { return }
            let record = records[Int(script.byte() ?? 0) % records.count]
            let tamper = script.byte() ?? 0
            var bytes = record.bytes
            if tamper % 4 == 3 { bytes[Int(tamper) % bytes.count] ^= 0x80 }
            let prefix = Array(bytes.prefix(4))
            let length = try? StreamCipher.recordLength(prefix)
            if tamper % 4 != 3 {
                invariant(length == bytes.count - 4, "recordLength \(String(describing: length)) of a real record")
            }
            let result = Result { () throws(SealError) in
                try receiver.open(prefix: prefix, record: Array(bytes.dropFirst(4)))
            }
            let shouldOpen = tamper % 4 != 3 && record.index == opened
            if shouldOpen {
                invariant(result == .success(record.plain), "record \(opened) does not open in order: \(result)")
                opened += 1
            } else {
                invariant(
                    (try? result.get()) == nil,
                    "record \(String(describing: record.index)) opened as record \(opened) (tampered: \(tamper % 4 == 3))"
                )
            }
        }
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    // Both ends of the handshake derive the same keys; the two directions differ.
    invariant(
        same(Session.initiatorKeys.initiatorToResponder, Session.responderKeys.initiatorToResponder)
            && same(Session.initiatorKeys.responderToInitiator, Session.responderKeys.responderToInitiator),
        "the two ends of a handshake derived different session keys")
    invariant(
        !same(Session.initiatorKeys.initiatorToResponder, Session.initiatorKeys.responderToInitiator),
        "both directions of a session have the same key")
    // The project's sealer seals like the reference sealer: counters from 0, for its receiver.
    var sealer = PacketSealer(ringKey: ringKeys[1], salt: salts[2])
    for counter in 0..<3 {
        let plain = Array("datagram \(counter)".utf8)
        let receiver = counter % 2
        invariant(
            sealer.seal(plain, for: receivers[receiver])
                == referenceSeal(plain, salt: 2, key: 1, counter: UInt64(counter), receiver: receiver),
            "PacketSealer and the reference sealer disagree on datagram \(counter)")
    }
    Seeds.writeIfAsked {
        // new(salt, key, mode, counter high, low, length, payload...)
        func new(_ salt: UInt8, _ key: UInt8, _ mode: UInt8, _ counter: UInt16, _ text: String) -> [UInt8] {
            [0, salt, key, mode, UInt8(counter >> 8), UInt8(counter & 0xff), UInt8(text.utf8.count)] + Array(text.utf8)
        }
        let inOrder = (0..<5).flatMap { new(0, 0, 0, UInt16($0), "ping \($0)") }
        let replays = new(1, 1, 0, 7, "a") + new(1, 1, 0, 3, "b") + [2, 0] + [2, 1] + new(1, 1, 0, 3, "c")
        let window = new(2, 0, 0, 0, "x") + new(2, 0, 1, 40, "far") + new(2, 0, 0, 1, "old") + new(2, 0, 0, 2500, "y")
        let top = new(3, 1, 2, 0, "max") + new(3, 1, 2, 5, "below") + new(3, 1, 2, 5, "again")
        let strangers = new(0, 2, 0, 0, "foreign") + new(0, 0, 0, 0, "mine") + new(0, 1, 0, 1, "other ring key")
        let elsewhere =
            new(1, 3, 0, 0, "for b") + new(1, 0, 0, 1, "for me") + new(1, 3, 0, 2, "for b again")
            + new(2, 5, 0, 0, "foreign, for b")
        let tampered = new(0, 0, 0, 9, "tamper me") + [3, 0, 20, 2] + [3, 0, 0, 2] + [3, 0, 30, 0] + [3, 0, 0, 1]
        let plainPacket = Array("DM\u{1}hello".utf8)
        let raw = [4, UInt8(plainPacket.count)] + plainPacket + [4, 50, 0xD5] + [UInt8](repeating: 7, count: 49)
        let stream =
            [5, 0, 5] + Array("first".utf8) + [5, 0, 6] + Array("second".utf8) + [5, 1, 3] + Array("odd".utf8)
            + [5, 3, 1, 0] + [5, 3, 0, 0] + [5, 3, 0, 3] + [5, 3, 1, 0] + [5, 3, 2, 0] + [5, 2, 0, 0, 0, 16, 0]
            + [5, 2, 0, 0, 0x40, 0x60, 1]
        let strangeStreams =
            [5, 0, 2] + Array("hi".utf8) + [5, 4, 0, 2] + Array("k1".utf8) + [5, 4, 1, 2] + Array("no".utf8)
            + [5, 4, 2, 2] + Array("tx".utf8) + [5, 3, 1, 0] + [5, 3, 2, 0] + [5, 3, 3, 0] + [5, 3, 0, 0]
        return [
            ("datagrams-in-order", inOrder), ("datagrams-replayed", replays), ("datagrams-window", window),
            ("datagrams-counter-top", top), ("datagrams-strangers", strangers), ("datagrams-tampered", tampered),
            ("datagrams-raw", raw), ("datagrams-other-receiver", elsewhere), ("stream-records", stream),
            ("stream-other-sessions", strangeStreams),
        ]
    }
    return 0
}
