@preconcurrency import Crypto
import FoundationEssentials

/// AES-256-GCM sealing of cluster traffic under a pre-shared keyring (docs/PROTOCOL.md,
/// "Encryption"). Pure: the caller supplies the random salts; no I/O, no clock.
///
/// A sender never uses a keyring key directly. It derives its own key with HKDF-SHA256 from the
/// ring key and a random 16-byte salt (one per process for UDP, one pair per TCP connection),
/// and numbers its messages under that key with a counter from 0. A nonce is that counter, so
/// under one derived key no nonce is ever used twice; the salt travels in the clear so the
/// receiver can derive the same key.
public enum Seal {
    public static let saltLength = 16
    public static let nonceLength = 12
    public static let tagLength = 16
    /// First byte of a sealed datagram; a plain one starts with "DM" (0x44).
    public static let sealedPacketMarker: UInt8 = 0xD5
    public static let packetOverhead = 1 + saltLength + nonceLength + tagLength

    static func derive(_ ringKey: SymmetricKey, salt: [UInt8], info: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: ringKey, salt: salt, info: Array(info.utf8), outputByteCount: 32)
    }

    static func nonceBytes(_ counter: UInt64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: nonceLength)
        for index in 0..<8 { bytes[4 + index] = UInt8(truncatingIfNeeded: counter >> (56 - 8 * UInt64(index))) }
        return bytes
    }

    /// AES-GCM under `key` with the counter nonce; `AES.GCM` refuses only nonces that are not 12
    /// bytes and keys of a wrong size, neither of which can happen here.
    static func box(
        _ plain: some DataProtocol, key: SymmetricKey, counter: UInt64, authenticating data: [UInt8]
    ) -> AES.GCM.SealedBox? {
        guard let nonce = try? AES.GCM.Nonce(data: nonceBytes(counter)) else { return nil }
        return try? AES.GCM.seal(plain, using: key, nonce: nonce, authenticating: data)
    }

    /// `box`, as ciphertext followed by the tag.
    static func seal(_ plain: [UInt8], key: SymmetricKey, counter: UInt64, authenticating data: [UInt8]) -> [UInt8] {
        guard let box = box(plain, key: key, counter: counter, authenticating: data) else { return [] }
        return Array(box.ciphertext) + Array(box.tag)
    }

    static func counter(_ nonce: ArraySlice<UInt8>) -> UInt64? {
        guard nonce.count == nonceLength, nonce.prefix(4).allSatisfy({ $0 == 0 }) else { return nil }
        return nonce.suffix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}

public enum SealError: Error, Sendable, Equatable, CustomStringConvertible {
    case notSealed
    case truncated
    /// No key of the keyring opens it (a stranger, a wrong key, or tampering).
    case authentication
    /// Seen before (or older than the replay window).
    case replayed

    public var description: String {
        switch self {
        case .notSealed: return "not sealed (the sender has no keyring)"
        case .truncated: return "sealed message is truncated"
        case .authentication: return "does not authenticate under any key of the keyring"
        case .replayed: return "replayed"
        }
    }

    public var reason: String {
        switch self {
        case .notSealed: return "not_sealed"
        case .truncated: return "truncated"
        case .authentication: return "auth"
        case .replayed: return "replay"
        }
    }
}

/// Seals this node's datagrams: marker, salt, nonce, ciphertext, tag. The associated data is the
/// marker, the salt (the sender's epoch: new for each process) and the receiver's node ID, so a
/// datagram opens only at the node it was sealed for.
public struct PacketSealer: Sendable {
    let key: SymmetricKey
    let header: [UInt8]
    var counter: UInt64 = 0

    /// `ringKey`: the keyring's first key; `salt`: 16 random bytes, new for each process.
    public init(ringKey: SymmetricKey, salt: [UInt8]) {
        precondition(salt.count == Seal.saltLength, "salt must be 16 bytes")
        key = Seal.derive(ringKey, salt: salt, info: "data-mesher udp v2")
        header = [Seal.sealedPacketMarker] + salt
    }

    public mutating func seal(_ plain: [UInt8], for receiver: NodeID) -> [UInt8] {
        let sealed = Seal.seal(plain, key: key, counter: counter, authenticating: header + receiver.bytes)
        let nonce = Seal.nonceBytes(counter)
        counter &+= 1
        return header + nonce + sealed
    }
}

/// Opens datagrams sealed under any key of the keyring, and refuses replays: per sender (salt)
/// it remembers the highest counter and which of the `window` counters below it were seen.
public struct PacketOpener: Sendable {
    public static let window: UInt64 = 1024
    /// Senders remembered; the oldest is forgotten beyond this.
    public static let maxSenders = 4096

    struct Sender: Sendable {
        let key: SymmetricKey
        var highest: UInt64
        var seen: [UInt64]  // bitmap of counters highest-window+1 ... highest
        var lastUse: UInt64
    }

    let ring: [SymmetricKey]
    var senders: [[UInt8]: Sender] = [:]
    var uses: UInt64 = 0

    public init(ring: [SymmetricKey]) { self.ring = ring }

    /// True when the datagram comes from a sender (salt) this opener knows: opening it costs one
    /// AES-GCM operation, not a trial of every keyring key.
    public func knowsSender(of packet: [UInt8]) -> Bool {
        guard packet.first == Seal.sealedPacketMarker, packet.count >= Seal.packetOverhead else { return false }
        return senders[Array(packet[1..<(1 + Seal.saltLength)])] != nil
    }

    /// Opens a datagram sealed for `receiver` (this node).
    public mutating func open(_ packet: [UInt8], receiver: NodeID) throws(SealError) -> [UInt8] {
        guard packet.first == Seal.sealedPacketMarker else { throw .notSealed }
        guard packet.count >= Seal.packetOverhead else { throw .truncated }
        let headerEnd = 1 + Seal.saltLength
        let header = Array(packet[..<headerEnd]) + receiver.bytes
        let salt = Array(packet[1..<headerEnd])
        let nonceBytes = packet[headerEnd..<(headerEnd + Seal.nonceLength)]
        guard let counter = Seal.counter(nonceBytes), let nonce = try? AES.GCM.Nonce(data: nonceBytes) else {
            throw .authentication
        }
        let body = packet[(headerEnd + Seal.nonceLength)...]
        let ciphertext = body.dropLast(Seal.tagLength)
        let tag = body.suffix(Seal.tagLength)
        guard let box = try? AES.GCM.SealedBox(nonce: nonce, ciphertext: ciphertext, tag: tag) else {
            throw .truncated
        }
        uses += 1
        if var sender = senders[salt] {
            guard Self.isFresh(counter, sender) else { throw .replayed }
            guard let plain = try? AES.GCM.open(box, using: sender.key, authenticating: header) else {
                throw .authentication
            }
            Self.mark(counter, &sender)
            sender.lastUse = uses
            senders[salt] = sender
            return Array(plain)
        }
        for ringKey in ring {
            let key = Seal.derive(ringKey, salt: salt, info: "data-mesher udp v2")
            guard let plain = try? AES.GCM.open(box, using: key, authenticating: header) else { continue }
            if senders.count >= Self.maxSenders, let oldest = senders.min(by: { $0.value.lastUse < $1.value.lastUse }) {
                senders[oldest.key] = nil
            }
            var sender = Sender(
                key: key, highest: counter, seen: [UInt64](repeating: 0, count: Int(Self.window / 64)), lastUse: uses)
            Self.mark(counter, &sender)
            senders[salt] = sender
            return Array(plain)
        }
        throw .authentication
    }

    static func isFresh(_ counter: UInt64, _ sender: Sender) -> Bool {
        if counter > sender.highest { return true }
        let age = sender.highest - counter
        guard age < window else { return false }
        let bit = counter % window
        return sender.seen[Int(bit / 64)] & (1 << (bit % 64)) == 0
    }

    static func mark(_ counter: UInt64, _ sender: inout Sender) {
        if counter > sender.highest {
            // Forget the bits that fall out of the window.
            let shift = counter - sender.highest
            if shift >= window {
                for index in sender.seen.indices { sender.seen[index] = 0 }
            } else {
                for old in (sender.highest + 1)...counter {
                    let bit = old % window
                    sender.seen[Int(bit / 64)] &= ~(1 << (bit % 64))
                }
            }
            sender.highest = counter
        }
        let bit = counter % window
        sender.seen[Int(bit / 64)] |= 1 << (bit % 64)
    }
}

/// One direction of a sealed TCP stream: records of `length u32, ciphertext, tag`, numbered from 0.
public struct StreamCipher: Sendable {
    public static let maxRecord = (16 << 20) + 64
    let key: SymmetricKey
    var counter: UInt64 = 0

    /// One direction of a session, under a key from the handshake (`StreamHandshake.sessionKeys`).
    public init(key: SymmetricKey) { self.key = key }

    /// A whole record, length prefix included; the length is authenticated.
    public mutating func seal(_ plain: [UInt8]) -> [UInt8] {
        var record: [UInt8] = []
        record.reserveCapacity(4 + plain.count + Seal.tagLength)
        seal(plain) { prefix, ciphertext, tag in
            record += prefix
            record += ciphertext
            record += tag
        }
        return record
    }

    /// `seal`, handing the record's parts to `write` in order (length prefix, ciphertext, tag)
    /// instead of joining them, so a caller writes them where they go with no copy between.
    public mutating func seal(
        _ plain: some DataProtocol, parts write: ([UInt8], Data, Data) -> Void
    ) {
        let length = UInt32(plain.count + Seal.tagLength)
        let prefix: [UInt8] = [
            UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 8),
            UInt8(truncatingIfNeeded: length),
        ]
        if let box = Seal.box(plain, key: key, counter: counter, authenticating: prefix) {
            write(prefix, box.ciphertext, box.tag)
        }
        counter &+= 1
    }

    /// The record length from its 4-byte prefix, refused beyond `limit` (during a handshake, a
    /// proof's size; after it, `maxRecord`).
    public static func recordLength(_ prefix: [UInt8], limit: Int = maxRecord) throws(SealError) -> Int {
        guard prefix.count == 4 else { throw .truncated }
        let length = prefix.reduce(0) { $0 << 8 | Int($1) }
        guard length >= Seal.tagLength, length <= limit else { throw .authentication }
        return length
    }

    /// Opens the record that follows `prefix`; the counter moves on only when it authenticates.
    public mutating func open(prefix: [UInt8], record: [UInt8]) throws(SealError) -> [UInt8] {
        guard record.count >= Seal.tagLength else { throw .truncated }
        guard let nonce = try? AES.GCM.Nonce(data: Seal.nonceBytes(counter)),
            let box = try? AES.GCM.SealedBox(
                nonce: nonce, ciphertext: record.dropLast(Seal.tagLength),
                tag: record.suffix(Seal.tagLength)),
            let plain = try? AES.GCM.open(box, using: key, authenticating: prefix)
        else { throw .authentication }
        counter &+= 1
        return Array(plain)
    }
}
