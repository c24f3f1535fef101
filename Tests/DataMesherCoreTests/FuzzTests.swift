import DataMesherConfig
import DataMesherCore
import DataMesherKeys
import DataMesherSim
import Foundation
import Testing

/// Random and mutated inputs through every decoder: each must return a value or an error,
/// never crash. (Coverage-guided libFuzzer targets come with the security work.)
@Suite struct DecoderFuzzTests {
    static let seeds: [String] = [
        "config:app", "dns/cnames", "a/b/c", "log_level = \"info\"\n[cluster]\nport = 7946\n",
        "[files]\n\"a\" = [\"azwT+VhTxA+BF73Hwq0uqdXHG8XvHU2BknoVXgmEjww=\"]\n",
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIOVEILHS22TJPnkVp2i5z/NbMtoD+fEzksAqiXByDppc\n-----END PRIVATE KEY-----\n",
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA3g7CXt9PwvaYSqqNvpJt+vUH+l3uFMCIfxV4Dq89TrY=\n-----END PUBLIC KEY-----\n",
        "30s", "1h30m", "4GiB", "[::1]:7946", "host:1", "[cluster.encryption]\nenable = true\nkeyring = ['/k']\n",
        "a = { b = 1, c = [1, 2.5, \"x\"] }\n[[t]]\nd = 1979-05-27T07:32:00Z\n",
        "x = \"\"\"\nmulti\n\"\"\"\ny = 0x1f\n",
    ]

    static func mutate(_ input: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var bytes = input
        for _ in 0...Int(rng.next() % 4) {
            switch rng.next() % 5 {
            case 0 where !bytes.isEmpty:
                bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
            case 1: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: Int(rng.next() % UInt64(bytes.count + 1)))
            case 2 where !bytes.isEmpty: bytes.remove(at: Int(rng.next() % UInt64(bytes.count)))
            case 3 where !bytes.isEmpty:
                let cut = Int(rng.next() % UInt64(bytes.count))
                bytes = Array(bytes[..<cut])
            default:
                bytes += (0..<Int(rng.next() % 8)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            }
        }
        return bytes
    }

    @Test(arguments: 0..<UInt64(ProcessInfo.processInfo.environment["DM_FUZZ_SEEDS"].flatMap(Int.init) ?? 4))
    func decodersNeverCrash(seed: UInt64) {
        var rng = SplitMix64(state: seed &* 7919)
        for iteration in 0..<2500 {
            let source = Array(Self.seeds[Int(rng.next() % UInt64(Self.seeds.count))].utf8)
            let bytes = Self.mutate(source, &rng)
            let text = String(decoding: bytes, as: UTF8.self)
            _ = try? FileName(text)
            _ = Base64.decode(text)
            _ = Hex.decode(text)
            _ = try? DurationFormat.parse(text)
            _ = try? ByteSize.parse(text)
            _ = PeerAddress.parse(text)
            _ = try? KeyPEM.decodePrivateKey(pem: text)
            _ = try? KeyPEM.decodePublicKey(pem: text)
            if iteration % 5 == 0 {
                // DM_FUZZ_TRACE=1 prints each config before it is parsed: if a parser crashes the
                // process, the last line is the input that did it.
                if ProcessInfo.processInfo.environment["DM_FUZZ_TRACE"] != nil {
                    print("TOML", seed, iteration, Array(text.utf8))
                }
                _ = try? ConfigLoader.parse(text)
            }
        }
    }
}
