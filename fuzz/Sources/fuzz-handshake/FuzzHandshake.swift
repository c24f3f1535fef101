// The stream handshake, version 2 (`StreamHandshake` in DataMesherCore/Handshake.swift): the
// preamble and proof decoders, the X25519 agreement and the proofs' signatures.
//
// The first byte of the input picks what the rest is (modulo 4):
// 0. a preamble: `StreamHandshake.preamble(rest)`;
// 1. a proof: `StreamHandshake.proof(rest)`;
// 2. a key agreement: 32 bytes of our ephemeral private key, then their public key (the bytes
//    that follow, whatever their number);
// 3. a proof to make and check: a role byte, a 32-byte transcript, a 32-byte other transcript
//    (shorter when the input ends), the rest is the certificate.
//
// Invariants:
// - a decoded preamble re-encodes to the same bytes, has a 32-byte ephemeral and only known
//   flags; a refusal has the reason the bytes call for (length, magic, version, flags); the
//   transcript hash depends on the order of the two preambles;
// - a decoded proof re-encodes to the same bytes (32-byte key, certificate of at most 16 KiB,
//   64-byte signature) and is self-delimiting (one byte less or more does not decode); checking
//   it does not trap, and a proof valid for a transcript in one role is not valid in the other;
// - `sharedSecret` never traps, returns 32 bytes that are not all zero or nil, refuses exactly
//   when the library's own agreement fails or yields all zeros, and agrees with the agreement
//   computed from the other side when their key is a real one;
// - a proof made with `Proof(key:certificate:transcript:initiator:)` has the node key's ID,
//   verifies for its transcript and role, not in the other role, never for another transcript,
//   and its encoding decodes to it.
@preconcurrency import Crypto
import DataMesherCore
import FuzzSupport

let verifier = Ed25519Verifier()
/// A transcript some seed proofs were made for.
let fixedTranscript = Array(SHA256.hash(data: Array("fuzz-handshake transcript".utf8)))
/// Another ephemeral, for the agreement from the other side.
let peer = try! Curve25519.KeyAgreement.PrivateKey(rawRepresentation: [UInt8](repeating: 0x42, count: 32))

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHandshake(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = fuzzInput(data, size)
    guard let mode = input.first else { return 0 }
    let rest = Array(input.dropFirst())
    switch mode % 4 {
    case 0: checkPreamble(rest)
    case 1: checkProof(rest)
    case 2: checkAgreement(rest)
    default: checkMadeProof(rest)
    }
    return 0
}

func checkPreamble(_ bytes: [UInt8]) {
    let preamble: StreamHandshake.Preamble
    do {
        preamble = try StreamHandshake.preamble(bytes)
    } catch {
        let expected: String
        if bytes.count != StreamHandshake.preambleLength {
            expected = "malformed"
        } else if !bytes.prefix(3).elementsEqual(StreamHandshake.magic.prefix(3)) {
            expected = "notDataMesher"
        } else if bytes[3] != StreamHandshake.magic[3] {
            expected = "version"
        } else {
            expected = "malformed"
        }
        let actual: String
        switch error {
        case .malformed: actual = "malformed"
        case .notDataMesher: actual = "notDataMesher"
        case .version(let version):
            actual = "version"
            invariant(version == bytes[3], "version \(version) reported for byte \(bytes[3])")
        }
        invariant(actual == expected, "preamble \(dump(bytes)) refused as \(actual), expected \(expected)")
        return
    }
    invariant(preamble.encoded == bytes, "preamble re-encodes differently: \(dump(bytes)) -> \(dump(preamble.encoded))")
    invariant(preamble.ephemeral.count == 32, "ephemeral of \(preamble.ephemeral.count) bytes")
    invariant(
        preamble.flags & ~(StreamHandshake.flagSealed | StreamHandshake.flagIdentity) == 0,
        "unknown flags \(preamble.flags) accepted")
    let other = StreamHandshake.Preamble(flags: 0, ephemeral: Array(peer.publicKey.rawRepresentation))
    if other != preamble {
        invariant(
            StreamHandshake.transcriptHash(initiator: preamble, responder: other)
                != StreamHandshake.transcriptHash(initiator: other, responder: preamble),
            "the transcript hash does not depend on the order of the preambles")
    }
}

func checkProof(_ bytes: [UInt8]) {
    guard let proof = try? StreamHandshake.proof(bytes) else { return }
    invariant(proof.encoded == bytes, "proof re-encodes differently: \(dump(bytes)) -> \(dump(proof.encoded))")
    invariant(proof.nodeKey.count == 32, "node key of \(proof.nodeKey.count) bytes")
    invariant(proof.signature.count == 64, "signature of \(proof.signature.count) bytes")
    invariant(proof.certificate.count <= StreamHandshake.maxCertificateLength, "certificate too long")
    invariant(bytes.count == 32 + 2 + proof.certificate.count + 64, "proof of \(bytes.count) bytes")
    invariant((try? StreamHandshake.proof(Array(bytes.dropLast()))) == nil, "a truncated proof decodes")
    invariant((try? StreamHandshake.proof(bytes + [0])) == nil, "a proof with a trailing byte decodes")
    _ = proof.nodeID
    let asInitiator = proof.isValid(transcript: fixedTranscript, initiator: true, verifier: verifier)
    let asResponder = proof.isValid(transcript: fixedTranscript, initiator: false, verifier: verifier)
    invariant(!(asInitiator && asResponder), "a proof is valid in both roles: \(dump(bytes))")
}

func checkAgreement(_ bytes: [UInt8]) {
    let seed = Array(bytes.prefix(32)) + [UInt8](repeating: 0, count: max(0, 32 - bytes.count))
    guard let mine = try? Curve25519.KeyAgreement.PrivateKey(rawRepresentation: seed) else {
        broken("32 bytes are not an X25519 private key: \(dump(seed))")
    }
    let theirs = Array(bytes.dropFirst(32))
    let secret = StreamHandshake.sharedSecret(mine, theirs: theirs)
    // The library's own answer.
    let direct = (try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: theirs)).flatMap {
        try? mine.sharedSecretFromKeyAgreement(with: $0)
    }.map { $0.withUnsafeBytes { Array($0) } }
    if let secret {
        invariant(secret.count == 32, "a shared secret of \(secret.count) bytes")
        invariant(secret.contains { $0 != 0 }, "the all-zero shared secret was accepted from \(dump(theirs))")
        invariant(secret == direct, "sharedSecret differs from the library's agreement")
    } else {
        invariant(
            direct == nil || direct!.allSatisfy { $0 == 0 },
            "sharedSecret refused \(dump(theirs)), which agrees to \(dump(direct ?? []))")
    }
    // Their key made from the fuzzed bytes as a private key: both sides agree.
    if theirs.count == 32, let their = try? Curve25519.KeyAgreement.PrivateKey(rawRepresentation: theirs) {
        let forward = StreamHandshake.sharedSecret(mine, theirs: Array(their.publicKey.rawRepresentation))
        let backward = StreamHandshake.sharedSecret(their, theirs: Array(mine.publicKey.rawRepresentation))
        invariant(forward == backward, "the two ends of an agreement differ")
        invariant(forward != nil, "two private keys do not agree")
    }
}

func checkMadeProof(_ bytes: [UInt8]) {
    let initiator = (bytes.first ?? 0) & 1 == 1
    let transcript = Array(bytes.dropFirst().prefix(32)) + [UInt8](repeating: 0, count: max(0, 33 - bytes.count))
    let other = Array(bytes.dropFirst(33).prefix(32))
    let certificate = Array(bytes.dropFirst(65))
    let key = Cluster.b
    let proof = StreamHandshake.Proof(key: key, certificate: certificate, transcript: transcript, initiator: initiator)
    invariant(proof.nodeID == key.id, "the proof's node ID is not its key's")
    invariant(
        proof.isValid(transcript: transcript, initiator: initiator, verifier: verifier),
        "a proof does not verify for its transcript \(dump(transcript)), initiator \(initiator)")
    invariant(
        !proof.isValid(transcript: transcript, initiator: !initiator, verifier: verifier),
        "a proof verifies in the other role")
    if other != transcript {
        invariant(
            !proof.isValid(transcript: other, initiator: initiator, verifier: verifier),
            "a proof for \(dump(transcript)) verifies for \(dump(other))")
    }
    if certificate.count <= StreamHandshake.maxCertificateLength {
        invariant((try? StreamHandshake.proof(proof.encoded)) == proof, "a made proof does not decode to itself")
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    Seeds.writeIfAsked(makeSeeds)
    return 0
}

/// Preambles and proofs as the node sends them, agreements with real and low-order keys, and
/// proofs to make, with the fixed keys of `Cluster`.
func makeSeeds() throws -> [(name: String, bytes: [UInt8])] {
    let ephemeral = Array(peer.publicKey.rawRepresentation)
    let flags = StreamHandshake.flagSealed | StreamHandshake.flagIdentity
    func preamble(_ flags: UInt8) -> [UInt8] {
        [0] + StreamHandshake.Preamble(flags: flags, ephemeral: ephemeral).encoded
    }
    let proof = StreamHandshake.Proof(
        key: Cluster.b, certificate: [], transcript: fixedTranscript, initiator: true)
    let certified = StreamHandshake.Proof(
        key: Cluster.c, certificate: Array("not a real certificate: DER goes here".utf8), transcript: fixedTranscript,
        initiator: false)
    let mine = [UInt8](repeating: 0x41, count: 32)
    // A point of order 8 on Curve25519: every agreement with it is all zeros.
    let lowOrder = Hex.decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")!
    return [
        ("preamble-sealed-identity", preamble(flags)),
        ("preamble-plain", preamble(0)),
        ("preamble-version-1", [0] + Array("DMS".utf8) + [1, 1] + ephemeral),
        ("proof-initiator", [1] + proof.encoded),
        ("proof-responder-certificate", [1] + certified.encoded),
        ("agree", [2] + mine + ephemeral),
        ("agree-zero-key", [2] + mine + [UInt8](repeating: 0, count: 32)),
        ("agree-order-8", [2] + mine + lowOrder),
        ("agree-short", [2] + mine + [9]),
        ("make-proof", [3, 1] + fixedTranscript + Array(fixedTranscript.reversed()) + Array("cert".utf8)),
        ("make-proof-responder", [3, 0] + fixedTranscript + fixedTranscript.prefix(31)),
    ]
}
