@preconcurrency import Crypto
import DataMesherCore
import DataMesherKeys
import Foundation
import Testing

@Suite struct SealTests {
    nonisolated(unsafe) static let ring1 = SymmetricKey(size: .bits256)
    nonisolated(unsafe) static let ring2 = SymmetricKey(size: .bits256)
    static func salt(_ byte: UInt8) -> [UInt8] { [UInt8](repeating: byte, count: Seal.saltLength) }

    @Test func aSealedPacketOpensUnderAnyKeyOfTheRingAndHidesItsContent() throws {
        var sealer = PacketSealer(ringKey: Self.ring2, salt: Self.salt(1))
        let plain = Array("a marker that must not show".utf8)
        let sealed = sealer.seal(plain)
        #expect(sealed.count == plain.count + Seal.packetOverhead)
        #expect(!String(decoding: sealed, as: UTF8.self).contains("marker"))
        var opener = PacketOpener(ring: [Self.ring1, Self.ring2])
        let opened = try opener.open(sealed)
        #expect(opened == plain)
        var stranger = PacketOpener(ring: [Self.ring1])
        #expect(throws: SealError.authentication) { try stranger.open(sealed) }
    }

    @Test func nonceCountersNeverRepeatAndReplaysAreRefused() throws {
        var sealer = PacketSealer(ringKey: Self.ring1, salt: Self.salt(2))
        let packets = (0..<2000).map { sealer.seal([UInt8(truncatingIfNeeded: $0)]) }
        let nonces = packets.map { Array($0[(1 + Seal.saltLength)..<(1 + Seal.saltLength + Seal.nonceLength)]) }
        #expect(Set(nonces).count == packets.count)
        var opener = PacketOpener(ring: [Self.ring1])
        // Out of order within the window is fine; each packet opens exactly once.
        for index in [5, 3, 4, 0, 1, 2] {
            let opened = try opener.open(packets[index])
            #expect(opened == [UInt8(index)])
        }
        for index in [0, 3, 5] { #expect(throws: SealError.replayed) { try opener.open(packets[index]) } }
        let last = try opener.open(packets[1999])
        #expect(last == [UInt8(truncatingIfNeeded: 1999)])
        // Older than the window: refused, even if never seen.
        #expect(throws: SealError.replayed) { try opener.open(packets[6]) }
        let inWindow = try opener.open(packets[1990])
        #expect(inWindow == [UInt8(truncatingIfNeeded: 1990)])
    }

    @Test func tamperingAndTruncationAreRefused() throws {
        var sealer = PacketSealer(ringKey: Self.ring1, salt: Self.salt(3))
        let sealed = sealer.seal(Array(repeating: 7, count: 100))
        for index in [0, 1, 17, 20, 40, sealed.count - 1] {
            var damaged = sealed
            damaged[index] ^= 0x01
            var opener = PacketOpener(ring: [Self.ring1])
            #expect(throws: (any Error).self) { try opener.open(damaged) }
        }
        var opener = PacketOpener(ring: [Self.ring1])
        #expect(throws: SealError.truncated) { try opener.open(Array(sealed.prefix(20))) }
        #expect(throws: SealError.notSealed) { try opener.open(Array("DM plain".utf8)) }
    }

    @Test func streamRecordsOpenInOrderOnlyAndEachDirectionHasItsOwnKey() throws {
        let (a, b) = (Self.salt(4), Self.salt(5))
        var send = StreamCipher(ringKey: Self.ring1, initiatorSalt: a, responderSalt: b, fromInitiator: true)
        var receive = StreamCipher(ringKey: Self.ring1, initiatorSalt: a, responderSalt: b, fromInitiator: true)
        var otherDirection = StreamCipher(ringKey: Self.ring1, initiatorSalt: a, responderSalt: b, fromInitiator: false)
        let first = send.seal(Array("one".utf8))
        let second = send.seal(Array("two".utf8))
        #expect(throws: SealError.authentication) {
            try otherDirection.open(prefix: Array(first.prefix(4)), record: Array(first.dropFirst(4)))
        }
        // Reordered (or replayed) records do not open.
        #expect(throws: SealError.authentication) {
            try receive.open(prefix: Array(second.prefix(4)), record: Array(second.dropFirst(4)))
        }
        let one = try receive.open(prefix: Array(first.prefix(4)), record: Array(first.dropFirst(4)))
        let two = try receive.open(prefix: Array(second.prefix(4)), record: Array(second.dropFirst(4)))
        #expect(one == Array("one".utf8) && two == Array("two".utf8))
        #expect(throws: SealError.authentication) { try StreamCipher.recordLength([0xFF, 0xFF, 0xFF, 0xFF]) }
    }

    @Test func junkLimiterMutesOneNoisySourceOnly() {
        var limiter = JunkLimiter(allowance: 10, window: 1_000, muteFor: 5_000)
        for tick in 0..<10 {
            let muted = limiter.noteJunk("10.0.0.9", now: Int64(tick))
            #expect(!muted)
        }
        let mutedNow = limiter.noteJunk("10.0.0.9", now: 10)
        #expect(mutedNow)
        #expect(limiter.isMuted("10.0.0.9", now: 11))
        #expect(!limiter.isMuted("10.0.0.8", now: 11))
        #expect(!limiter.isMuted("10.0.0.9", now: 5_011))
    }

    @Test func certificatesFromTheCAVerifyOthersDoNot() throws {
        let ca = Curve25519.Signing.PrivateKey()
        let otherCA = Curve25519.Signing.PrivateKey()
        let node = Curve25519.Signing.PrivateKey()
        let now = Date()
        let certificate = try NodeCertificate.issue(
            caKey: ca, nodeKey: node.publicKey, name: "alpha", now: now, validity: 3600)
        let reparsed = try NodeCertificate(pem: try certificate.pem())
        #expect(reparsed.name == "alpha")
        #expect(
            try reparsed.verify(authorities: [otherCA.publicKey, ca.publicKey], now: now).rawRepresentation
                == node.publicKey.rawRepresentation)
        #expect(throws: CertificateError.unknownAuthority) {
            try reparsed.verify(authorities: [otherCA.publicKey], now: now)
        }
        #expect(throws: CertificateError.expired(reparsed.notValidAfter)) {
            try reparsed.verify(authorities: [ca.publicKey], now: now.addingTimeInterval(7200))
        }
        #expect(throws: (any Error).self) {
            try NodeCertificate(pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        }
        #expect(throws: (any Error).self) { try NodeCertificate(der: Array(reparsed.der.dropLast(3))) }
    }
}
