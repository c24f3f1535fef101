import Crypto
import DataMesherCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Stops the process when a decoder breaks one of its promises, so libFuzzer keeps the input as
/// a crash (`crash-<sha1>`) exactly as it would for a trap inside the decoder itself.
@inline(__always)
public func invariant(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String, file: StaticString = #fileID,
    line: UInt = #line
) {
    if !condition() { fatalError("fuzz invariant broken: \(message())", file: file, line: line) }
}

/// Stops the process: something that must not happen did.
public func broken(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    fatalError("fuzz invariant broken: \(message)", file: file, line: line)
}

/// The bytes libFuzzer hands to `LLVMFuzzerTestOneInput`.
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// A short printable form of bytes for invariant messages.
public func dump(_ bytes: [UInt8], limit: Int = 256) -> String {
    Hex.encode(bytes.prefix(limit)) + (bytes.count > limit ? "…(\(bytes.count) bytes)" : "")
}

/// A string quoted for invariant messages, with its UTF-8 bytes when it is not plain ASCII.
public func quote(_ text: String) -> String {
    let printable = text.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
    return printable ? "\"\(text)\"" : "\"\(text)\" (utf8 \(dump(Array(text.utf8))))"
}

/// Seeds for the committed corpus, made with the project's own encoders.
public enum Seeds {
    /// A fixed signing key, so that the generated seeds are the same on every run.
    public static func key(_ fill: UInt8) -> Curve25519.Signing.PrivateKey {
        // 32 bytes is always a valid ED25519 seed.
        try! Curve25519.Signing.PrivateKey(rawRepresentation: [UInt8](repeating: fill, count: 32))
    }

    /// When `DM_FUZZ_MAKE_CORPUS` names a directory, writes each seed into it and exits; called
    /// from `LLVMFuzzerInitialize`, before libFuzzer reads any corpus.
    public static func writeIfAsked(_ make: () throws -> [(name: String, bytes: [UInt8])]) {
        guard let raw = getenv("DM_FUZZ_MAKE_CORPUS") else { return }
        let directory = String(cString: raw)
        let seeds: [(name: String, bytes: [UInt8])]
        do { seeds = try make() } catch {
            print("cannot make the seeds: \(error)")
            exit(1)
        }
        for seed in seeds {
            let path = directory + "/" + seed.name
            guard let file = fopen(path, "wb") else {
                print("cannot write \(path)")
                exit(1)
            }
            let written = seed.bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
            fclose(file)
            guard written == seed.bytes.count else {
                print("short write to \(path)")
                exit(1)
            }
        }
        print("wrote \(seeds.count) seeds to \(directory)")
        exit(0)
    }
}

/// Fixed node keys and a `ClusterCore` that knows some of them, shared by the membership targets.
public enum Cluster {
    /// A node key from a repeated seed byte, the same on every run (as in MembershipTrustTests).
    public static func nodeKey(_ fill: UInt8) -> NodeKey {
        NodeKey(seed: [UInt8](repeating: fill, count: 32))!
    }

    /// `a` runs the core; `b` and `c` are confirmed members it knows; `mallory` is unknown to it.
    public static let a = nodeKey(1)
    public static let b = nodeKey(2)
    public static let c = nodeKey(3)
    public static let mallory = nodeKey(9)
    public static let known = [a, b, c]
    public static let start: Int64 = 1_800_000_000_000_000_000
    /// `DM_FUZZ_DEBUG` set: print what the core did to its members (to see what seeds reach).
    public static let debug = getenv("DM_FUZZ_DEBUG") != nil

    public static func address(_ key: NodeKey) -> PeerAddress {
        PeerAddress(host: "10.0.0.\(key.publicKey[0] % 200 + 1)", port: 7946)
    }

    /// What a node key signs for an accusation, written here from the v2 definition
    /// (`MemberClaims.accusationMessage`): label "data-mesher/suspect/v2" or "…/dead/v2" and a
    /// zero byte, the accused ID, its incarnation (u64, big-endian), the accuser's ID.
    public static func accusationMessage(_ accusation: Accusation, dead: Bool) -> [UInt8] {
        var out = Array((dead ? "data-mesher/dead/v2" : "data-mesher/suspect/v2").utf8) + [0]
        out += accusation.id.bytes
        for shift in stride(from: 56, through: 0, by: -8) {
            out.append(UInt8(truncatingIfNeeded: accusation.incarnation >> UInt64(shift)))
        }
        return out + accusation.from.bytes
    }

    /// A core run by `a` that met `b` and `c` (announced, pinged, answered), at `start`.
    public static let core: ClusterCore = {
        var core = ClusterCore(
            key: a, name: "a", addresses: [address(a)], incarnation: 100, settings: CoreSettings(),
            policy: FilePolicy(allowedSigners: [:]), bootstrap: [], now: start)
        var rng = FuzzRandom(state: 11)
        for member in [b, c] {
            let announcement = MemberAnnouncement.signed(
                by: member, name: "n\(member.publicKey[0])", incarnation: 100, addresses: [address(member)])
            _ = core.handle(
                .packet(
                    Packet(sender: member.id, message: .gossip, items: [.alive(announcement)]), from: address(member)),
                now: start, rng: &rng)
            let pings = core.handle(.tick, now: start, rng: &rng).compactMap { directive -> UInt32? in
                guard case .send(let packet, _, let node) = directive, node == member.id,
                    case .ping(let sequence, _) = packet.message
                else { return nil }
                return sequence
            }
            for sequence in pings {
                _ = core.handle(
                    .packet(
                        Packet(
                            sender: member.id, message: .ack(sequence: sequence, responder: member.id, clock: start)),
                        from: address(member)), now: start, rng: &rng)
            }
        }
        return core
    }()
}

/// SplitMix64: a deterministic generator for the core.
public struct FuzzRandom: RandomNumberGenerator {
    public var state: UInt64
    public init(state: UInt64) { self.state = state }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Cluster {
    /// The membership promises of wire v2 after `after` handled one input that `before` had not:
    /// a member that is new or whose announcement changed holds an authentic announcement (its ID
    /// is its key's and the key signed it), and a member that was alive is suspect, dead or left
    /// only when `justified(id, newState)` says the input carried a valid reason for it.
    public static func checkMembership(
        before: ClusterCore, after: ClusterCore, _ what: @autoclosure () -> String,
        justified: (NodeID, MemberState) -> Bool
    ) {
        let verifier = Ed25519Verifier()
        for (id, record) in after.members {
            let old = before.members[id]
            if debug, old?.state != record.state || old?.announcement != record.announcement {
                print(
                    "member \(id): \(old.map { "\($0.state.name)@\($0.announcement.incarnation)" } ?? "unknown") -> "
                        + "\(record.state.name)@\(record.announcement.incarnation) confirmed \(record.confirmed)")
            }
            if old?.announcement != record.announcement {
                invariant(
                    record.announcement.isAuthentic(verifier),
                    "member \(id.hex) took an announcement that is not authentic after \(what())")
                invariant(record.id == id, "member \(id.hex) is filed under another ID")
            }
            if let old, old.state == .alive, record.state != .alive {
                invariant(
                    justified(id, record.state),
                    "member \(id.hex) went from alive to \(record.state.name) without a valid reason in \(what())")
            }
        }
    }
}
