@preconcurrency import Crypto
import DataMesherCore
import DataMesherKeys
import Foundation
import SwiftASN1
import Testing
import X509

@Suite struct SealTests {
    nonisolated(unsafe) static let ring1 = SymmetricKey(size: .bits256)
    nonisolated(unsafe) static let ring2 = SymmetricKey(size: .bits256)
    static func salt(_ byte: UInt8) -> [UInt8] { [UInt8](repeating: byte, count: Seal.saltLength) }
    static let receiver = NodeID(bytes: [UInt8](repeating: 0xAA, count: 16))!
    static let otherNode = NodeID(bytes: [UInt8](repeating: 0xBB, count: 16))!

    @Test func aSealedPacketOpensUnderAnyKeyOfTheRingAndHidesItsContent() throws {
        var sealer = PacketSealer(ringKey: Self.ring2, salt: Self.salt(1))
        let plain = Array("a marker that must not show".utf8)
        let sealed = sealer.seal(plain, for: Self.receiver)
        #expect(sealed.count == plain.count + Seal.packetOverhead)
        #expect(!String(decoding: sealed, as: UTF8.self).contains("marker"))
        var opener = PacketOpener(ring: [Self.ring1, Self.ring2])
        let opened = try opener.open(sealed, receiver: Self.receiver)
        #expect(opened == plain)
        // Sealed for another node: it does not open here, whatever the key.
        var elsewhere = PacketOpener(ring: [Self.ring1, Self.ring2])
        #expect(throws: SealError.authentication) { try elsewhere.open(sealed, receiver: Self.otherNode) }
        var stranger = PacketOpener(ring: [Self.ring1])
        #expect(throws: SealError.authentication) { try stranger.open(sealed, receiver: Self.receiver) }
    }

    @Test func nonceCountersNeverRepeatAndReplaysAreRefused() throws {
        var sealer = PacketSealer(ringKey: Self.ring1, salt: Self.salt(2))
        let packets = (0..<2000).map { sealer.seal([UInt8(truncatingIfNeeded: $0)], for: Self.receiver) }
        let nonces = packets.map { Array($0[(1 + Seal.saltLength)..<(1 + Seal.saltLength + Seal.nonceLength)]) }
        #expect(Set(nonces).count == packets.count)
        var opener = PacketOpener(ring: [Self.ring1])
        // Out of order within the window is fine; each packet opens exactly once.
        for index in [5, 3, 4, 0, 1, 2] {
            let opened = try opener.open(packets[index], receiver: Self.receiver)
            #expect(opened == [UInt8(index)])
        }
        for index in [0, 3, 5] {
            #expect(throws: SealError.replayed) { try opener.open(packets[index], receiver: Self.receiver) }
        }
        let last = try opener.open(packets[1999], receiver: Self.receiver)
        #expect(last == [UInt8(truncatingIfNeeded: 1999)])
        // Older than the window: refused, even if never seen.
        #expect(throws: SealError.replayed) { try opener.open(packets[6], receiver: Self.receiver) }
        let inWindow = try opener.open(packets[1990], receiver: Self.receiver)
        #expect(inWindow == [UInt8(truncatingIfNeeded: 1990)])
    }

    @Test func tamperingAndTruncationAreRefused() throws {
        var sealer = PacketSealer(ringKey: Self.ring1, salt: Self.salt(3))
        let sealed = sealer.seal(Array(repeating: 7, count: 100), for: Self.receiver)
        for index in [0, 1, 17, 20, 40, sealed.count - 1] {
            var damaged = sealed
            damaged[index] ^= 0x01
            var opener = PacketOpener(ring: [Self.ring1])
            #expect(throws: (any Error).self) { try opener.open(damaged, receiver: Self.receiver) }
        }
        var opener = PacketOpener(ring: [Self.ring1])
        #expect(throws: SealError.truncated) { try opener.open(Array(sealed.prefix(20)), receiver: Self.receiver) }
        #expect(throws: SealError.notSealed) { try opener.open(Array("DM plain".utf8), receiver: Self.receiver) }
    }

    @Test func streamRecordsOpenInOrderOnlyAndEachDirectionHasItsOwnKey() throws {
        let keys = StreamHandshake.sessionKeys(
            sharedSecret: [UInt8](repeating: 3, count: 32), ringKey: Self.ring1,
            transcript: [UInt8](repeating: 4, count: 32))
        var send = StreamCipher(key: keys.initiatorToResponder)
        var receive = StreamCipher(key: keys.initiatorToResponder)
        var otherDirection = StreamCipher(key: keys.responderToInitiator)
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
        #expect(throws: SealError.authentication) { try StreamCipher.recordLength([0, 1, 0, 0], limit: 1000) }
    }

    @Test func trialsOfUnknownSendersAreLimitedPerSourceThenGlobally() {
        var limiter = TrialLimiter(perSource: 10, global: 50, window: 1_000)
        var verdicts: [Bool] = []
        for tick in 0..<11 { verdicts.append(limiter.allow("10.0.0.9", now: Int64(tick))) }
        #expect(verdicts == Array(repeating: true, count: 10) + [false])
        let otherSource = limiter.allow("10.0.0.8", now: 11)
        let nextWindow = limiter.allow("10.0.0.9", now: 1_010)
        #expect(otherSource && nextWindow)
        // A table full of sources: newcomers draw on the global budget, and nobody's count is reset.
        var full = TrialLimiter(perSource: 10, global: 50, window: 1_000)
        for index in 0..<TrialLimiter.maxSources {
            for _ in 0..<10 { _ = full.allow("source-\(index)", now: 0) }
        }
        let overItsOwn = full.allow("source-0", now: 1)
        #expect(!overItsOwn)
        var admitted = 0
        for index in 0..<200 where full.allow("newcomer-\(index)", now: 2) { admitted += 1 }
        #expect(admitted == 50)
    }

    @Test func aHandshakeAgreesOnKeysAndAManInTheMiddleCannotCompleteIt() throws {
        let alice = NodeKey(Curve25519.Signing.PrivateKey())
        let bob = NodeKey(Curve25519.Signing.PrivateKey())
        let aliceEphemeral = Curve25519.KeyAgreement.PrivateKey()
        let bobEphemeral = Curve25519.KeyAgreement.PrivateKey()
        let alicePreamble = StreamHandshake.Preamble(
            flags: StreamHandshake.flagSealed, ephemeral: Array(aliceEphemeral.publicKey.rawRepresentation))
        let bobPreamble = StreamHandshake.Preamble(
            flags: StreamHandshake.flagSealed, ephemeral: Array(bobEphemeral.publicKey.rawRepresentation))
        #expect(try StreamHandshake.preamble(alicePreamble.encoded) == alicePreamble)
        let transcript = StreamHandshake.transcriptHash(initiator: alicePreamble, responder: bobPreamble)
        let aliceSecret = try #require(StreamHandshake.sharedSecret(aliceEphemeral, theirs: bobPreamble.ephemeral))
        let bobSecret = try #require(StreamHandshake.sharedSecret(bobEphemeral, theirs: alicePreamble.ephemeral))
        #expect(aliceSecret == bobSecret)
        let aliceKeys = StreamHandshake.sessionKeys(
            sharedSecret: aliceSecret, ringKey: Self.ring1, transcript: transcript)
        let bobKeys = StreamHandshake.sessionKeys(sharedSecret: bobSecret, ringKey: Self.ring1, transcript: transcript)
        var sealer = StreamCipher(key: aliceKeys.initiatorToResponder)
        var opener = StreamCipher(key: bobKeys.initiatorToResponder)
        let proof = StreamHandshake.Proof(key: alice, certificate: [], transcript: transcript, initiator: true)
        let record = sealer.seal(proof.encoded)
        let opened = try opener.open(prefix: Array(record.prefix(4)), record: Array(record.dropFirst(4)))
        let received = try StreamHandshake.proof(opened)
        #expect(received.nodeID == alice.id)
        #expect(received.isValid(transcript: transcript, initiator: true, verifier: Ed25519Verifier()))
        // The same proof in the other role, or over another transcript, does not verify.
        #expect(!received.isValid(transcript: transcript, initiator: false, verifier: Ed25519Verifier()))
        // A keyring holder in the middle that swaps in its own ephemeral key gets a transcript the
        // two ends do not share: the proof Alice signed is worthless on its leg to Bob.
        let mallory = Curve25519.KeyAgreement.PrivateKey()
        let forged = StreamHandshake.Preamble(
            flags: StreamHandshake.flagSealed, ephemeral: Array(mallory.publicKey.rawRepresentation))
        let bobsView = StreamHandshake.transcriptHash(initiator: forged, responder: bobPreamble)
        #expect(!received.isValid(transcript: bobsView, initiator: true, verifier: Ed25519Verifier()))
        // Without the keyring key the session keys differ.
        let withoutRing = StreamHandshake.sessionKeys(sharedSecret: aliceSecret, ringKey: nil, transcript: transcript)
        var strangerOpener = StreamCipher(key: withoutRing.initiatorToResponder)
        #expect(throws: SealError.authentication) {
            try strangerOpener.open(prefix: Array(record.prefix(4)), record: Array(record.dropFirst(4)))
        }
        _ = bob
        // Malformed preambles and proofs are refused with a reason.
        #expect(throws: HandshakeError.notDataMesher) { try StreamHandshake.preamble([UInt8](repeating: 0, count: 37)) }
        #expect(throws: HandshakeError.version(1)) {
            try StreamHandshake.preamble([0x44, 0x4D, 0x53, 1] + [UInt8](repeating: 0, count: 33))
        }
        #expect(throws: HandshakeError.self) { try StreamHandshake.proof(Array(proof.encoded.dropLast())) }
        #expect(StreamHandshake.sharedSecret(aliceEphemeral, theirs: [UInt8](repeating: 0, count: 32)) == nil)
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
        // The node profile: the key's node ID is named, and only that ID passes.
        let id = NodeID(publicKey: Array(node.publicKey.rawRepresentation))
        #expect(reparsed.nodeIDs == [id])
        _ = try reparsed.verify(authorities: [ca.publicKey], now: now, nodeID: id)
        #expect(throws: (any Error).self) {
            try reparsed.verify(authorities: [ca.publicKey], now: now, nodeID: NodeID(publicKey: [1, 2, 3]))
        }
    }

    @Test func aCASignedCertificateWithoutTheNodeProfileIsRefused() throws {
        let ca = Curve25519.Signing.PrivateKey()
        let node = Curve25519.Signing.PrivateKey()
        let now = Date()
        let id = NodeID(publicKey: Array(node.publicKey.rawRepresentation))
        let name = try DistinguishedName { CommonName("not-a-node") }
        func issue(_ extensions: Certificate.Extensions) throws -> NodeCertificate {
            let certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(node.publicKey),
                notValidBefore: now.addingTimeInterval(-60), notValidAfter: now.addingTimeInterval(3600),
                issuer: name, subject: name, signatureAlgorithm: .ed25519, extensions: extensions,
                issuerPrivateKey: .init(ca))
            var serializer = DER.Serializer()
            try serializer.serialize(certificate)
            return try NodeCertificate(der: serializer.serializedBytes)
        }
        let san = SubjectAlternativeNames([.uniformResourceIdentifier(NodeCertificate.nodeURI(id))])
        let profiles: [(String, Certificate.Extensions)] = [
            ("no extensions", try Certificate.Extensions {}),
            (
                "a CA",
                try Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                    Critical(KeyUsage(digitalSignature: true, keyCertSign: true))
                    san
                }
            ),
            (
                "no digital signature",
                try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(keyEncipherment: true))
                    san
                }
            ),
            (
                "no node ID",
                try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                }
            ),
        ]
        for (what, extensions) in profiles {
            let certificate = try issue(extensions)
            #expect(throws: (any Error).self, "\(what)") {
                try certificate.verify(authorities: [ca.publicKey], now: now)
            }
        }
    }
}
