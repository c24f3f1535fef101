// swift-tools-version:6.0
import Foundation
import PackageDescription

/// How release builds of `data-mesher` are linked on Linux (bench/README.md, "Lean daemon"): the
/// Swift runtime and Foundation statically (no libFoundation/ICU to load; only what is used is
/// linked; the executable's module is compiled with -static-stdlib too, so that its Foundation
/// import brings the static libraries Foundation needs), with lld, without exporting every symbol
/// to the dynamic table, and with compact relative relocations (RELR, glibc 2.36 or later). The
/// executable stays position-independent. Measured with bench/lean_bench.py: idle RSS 38.1 ->
/// 30.5 MiB, `--version` 9.6 -> 6.9 ms. The functions a node and its CLI run are put next to each
/// other at the front of the code (`scripts/link-order.txt`, made by `scripts/gen-link-order`):
/// idle RSS a further 2-4 MiB lower. libstdc++ (which the Swift runtime uses) is linked statically
/// too where GCC's static archive is installed (`scripts/static-libstdcxx`): 1.3-2 MiB less.
/// DM_PLAIN_LINK=1 in the environment of `swift build` links the plain way (nix/package.nix does,
/// for nixpkgs' toolchain, where this was not tried).
let leanSwift: [SwiftSetting] =
    Context.environment["DM_PLAIN_LINK"] == "1"
    ? [] : [.unsafeFlags(["-static-stdlib"], .when(platforms: [.linux], configuration: .release))]
/// GCC's static libstdc++ comes with libstdc++-N-dev on Debian and Ubuntu (the package that gives
/// `-lstdc++` its libstdc++.so) but in a package of its own elsewhere (libstdc++-static on Fedora
/// and RHEL). The linker script is used only where every GCC folder with libstdc++.so has the
/// archive too; otherwise the release build links the shared library, as it did before.
let staticLibstdcxx: [String] = {
    let gcc = "/usr/lib/gcc"
    let files = FileManager.default
    var found = false
    for triple in (try? files.contentsOfDirectory(atPath: gcc)) ?? [] {
        for version in (try? files.contentsOfDirectory(atPath: "\(gcc)/\(triple)")) ?? [] {
            let folder = "\(gcc)/\(triple)/\(version)"
            guard files.fileExists(atPath: folder + "/libstdc++.so") else { continue }
            guard files.fileExists(atPath: folder + "/libstdc++.a") else { return [] }
            found = true
        }
    }
    return found ? ["-L\(Context.packageDirectory)/scripts/static-libstdcxx"] : []
}()
let leanLink: [LinkerSetting] =
    Context.environment["DM_PLAIN_LINK"] == "1"
    ? []
    : [
        .unsafeFlags(
            [
                "-static-stdlib", "-use-ld=lld",
                "-Xlinker", "--no-export-dynamic",
                "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
                "-Xlinker", "--symbol-ordering-file=\(Context.packageDirectory)/scripts/link-order.txt",
                "-Xlinker", "--no-warn-symbol-ordering",
            ] + staticLibstdcxx,
            .when(platforms: [.linux], configuration: .release)
        )
    ]

let package = Package(
    name: "data-mesher",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "data-mesher", targets: ["data-mesher"]),
        .executable(name: "dm-sim", targets: ["dm-sim"]),
        // The decoders, for the libFuzzer package in fuzz/.
        .library(name: "DataMesherCore", targets: ["DataMesherCore"]),
        .library(name: "DataMesherConfig", targets: ["DataMesherConfig"]),
        .library(name: "DataMesherKeys", targets: ["DataMesherKeys"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // Pure protocol core: names, signed versions, ordering, config model. No I/O, no clocks.
        .target(
            name: "DataMesherCore",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        // dm.toml -> NodeConfig, with a strict TOML reader of its own (see TOML.swift).
        .target(
            name: "DataMesherConfig",
            dependencies: ["DataMesherCore"]
        ),
        // PEM key files (PKCS#8 / SPKI), interoperable with openssl.
        .target(
            name: "DataMesherKeys",
            dependencies: [
                "DataMesherCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "X509", package: "swift-certificates"),
            ]
        ),
        // Files on disk: atomic replace, metadata, startup scan.
        .target(
            name: "DataMesherStore",
            dependencies: [
                "DataMesherCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // The node actor and its services; the gossip transport joins here.
        .target(
            name: "DataMesherNet",
            dependencies: [
                "DataMesherCore", "DataMesherStore", "DataMesherKeys",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // HTTP API (Hummingbird 2).
        .target(
            name: "DataMesherHTTP",
            dependencies: [
                "DataMesherCore", "DataMesherStore", "DataMesherNet",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "data-mesher",
            dependencies: [
                "DataMesherCore", "DataMesherConfig", "DataMesherKeys", "DataMesherStore",
                "DataMesherNet", "DataMesherHTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: leanSwift,
            linkerSettings: leanLink
        ),
        // Deterministic simulation of many cores on a fake network and clock.
        .target(
            name: "DataMesherSim",
            dependencies: ["DataMesherCore", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .executableTarget(
            name: "dm-sim",
            dependencies: [
                "DataMesherCore", "DataMesherSim",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "DataMesherCoreTests",
            dependencies: ["DataMesherCore", "DataMesherConfig", "DataMesherKeys", "DataMesherSim"]
        ),
        // The network shell's stream handshake over real loopback sockets.
        .testTarget(
            name: "DataMesherNetTests",
            dependencies: [
                "DataMesherCore", "DataMesherNet",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "DataMesherStoreTests",
            dependencies: ["DataMesherCore", "DataMesherStore", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(
            name: "DataMesherHTTPTests",
            dependencies: [
                "DataMesherCore", "DataMesherStore", "DataMesherNet", "DataMesherHTTP", "DataMesherKeys",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(
            name: "DataMesherProcessTests",
            dependencies: ["DataMesherCore", "DataMesherKeys"]
        ),
    ]
)
