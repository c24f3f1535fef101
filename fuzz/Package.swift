// swift-tools-version:6.0
// libFuzzer targets for data-mesher's decoders: a package of its own, so building it never
// slows down the main package (which does not know about it). Build and run with fuzz/run.sh;
// see docs/FUZZING.md.
import PackageDescription

/// Every fuzz target is an executable whose `main` is libFuzzer's: its Swift code is compiled as a
/// library (no top-level code) and defines `LLVMFuzzerTestOneInput`. run.sh also passes
/// `--sanitize=fuzzer`, which adds the coverage instrumentation to the project's modules too.
let fuzzerSettings: [SwiftSetting] = [.unsafeFlags(["-parse-as-library", "-sanitize=fuzzer"])]
let fuzzerLink: [LinkerSetting] = [.unsafeFlags(["-sanitize=fuzzer"])]

let core = Target.Dependency.product(name: "DataMesherCore", package: "data-mesher")
let config = Target.Dependency.product(name: "DataMesherConfig", package: "data-mesher")
let keys = Target.Dependency.product(name: "DataMesherKeys", package: "data-mesher")
let crypto = Target.Dependency.product(name: "Crypto", package: "swift-crypto")
let asn1 = Target.Dependency.product(name: "SwiftASN1", package: "swift-asn1")
let x509 = Target.Dependency.product(name: "X509", package: "swift-certificates")

func fuzzTarget(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
    .executableTarget(
        name: name, dependencies: ["FuzzSupport"] + dependencies, swiftSettings: fuzzerSettings,
        linkerSettings: fuzzerLink)
}

let package = Package(
    name: "data-mesher-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "data-mesher", path: ".."),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
    ],
    targets: [
        // Invariant checks, input helpers and the seed-corpus writer shared by the targets.
        .target(name: "FuzzSupport", dependencies: [core, crypto]),
        fuzzTarget("fuzz-wire", [core]),
        fuzzTarget("fuzz-sync", [core]),
        fuzzTarget("fuzz-config", [core, config]),
        fuzzTarget("fuzz-pem", [core, keys, crypto]),
        fuzzTarget("fuzz-cert", [core, keys, crypto, asn1, x509]),
        fuzzTarget("fuzz-names", [core]),
        fuzzTarget("fuzz-headers", [core]),
        fuzzTarget("fuzz-seal", [core, crypto]),
        fuzzTarget("fuzz-handshake", [core, crypto]),
    ]
)
