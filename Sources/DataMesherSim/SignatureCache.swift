import DataMesherCore
import Synchronization

/// Remembers signature verdicts. Whether a version's signature verifies is a pure function of
/// the version, and checking it is the most expensive thing the core does; a simulator running
/// a thousand cores in one process gives them one cache (as their `ClusterCore.verifier`), so each
/// version is verified once instead of once per core, and each member's announcement is held once
/// for all the cores that accepted it (`authentic`). It lives with the simulator: the daemon's
/// core is given the plain `Ed25519Verifier` and verifies every version it is offered.
public final class SignatureCache: SignatureVerifier {
    /// Everything `FileVersion.hasValidSignature` reads.
    struct Key: Hashable {
        var message: [UInt8]
        var signer: [UInt8]
        var signature: [UInt8]
    }

    let verdicts = Mutex<[Key: Bool]>([:])
    /// The latest authentic announcement of each member: what every core that accepts an equal
    /// one keeps instead (one copy for all of them, and no signature to check again).
    let announcements = Mutex<[NodeID: MemberAnnouncement]>([:])

    public init() {}

    /// How many verdicts are held (one per distinct version checked).
    public var count: Int { verdicts.withLock { $0.count } }

    /// `version.hasValidSignature`, verified once per distinct version.
    public func isValid(_ version: FileVersion) -> Bool {
        // Only where the signed message says unambiguously what was signed (lengths in range).
        guard version.contentSHA256.count == 32, version.networkID.utf8.count <= Int(UInt16.max) else {
            return version.hasValidSignature
        }
        let key = Key(message: version.signedMessage, signer: version.signer.bytes, signature: version.signature)
        if let known = verdicts.withLock({ $0[key] }) { return known }
        let valid = version.hasValidSignature
        verdicts.withLock { $0[key] = valid }
        return valid
    }

    /// `announcement` if authentic, as the copy already held when an equal one was checked before.
    public func authentic(_ announcement: MemberAnnouncement) -> MemberAnnouncement? {
        if let held = announcements.withLock({ $0[announcement.id] }), held == announcement { return held }
        guard announcement.isAuthentic(self) else { return nil }
        announcements.withLock { held in
            if (held[announcement.id]?.incarnation ?? 0) <= announcement.incarnation {
                held[announcement.id] = announcement
            }
        }
        return announcement
    }

    /// Any ED25519 signature (members' claims), verified once per distinct (signature, message, key).
    public func isValidSignature(_ signature: [UInt8], of message: [UInt8], by publicKey: [UInt8]) -> Bool {
        let key = Key(message: message, signer: publicKey, signature: signature)
        if let known = verdicts.withLock({ $0[key] }) { return known }
        let valid = Ed25519Verifier().isValidSignature(signature, of: message, by: publicKey)
        verdicts.withLock { $0[key] = valid }
        return valid
    }
}
