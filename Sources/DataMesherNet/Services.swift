import DataMesherCore
import Logging
import NIOCore
import ServiceLifecycle

/// Runs `valid_for` expiry and tombstone retention once a second until shutdown, looks over the
/// held files once a minute, and once at start runs the background verification of what the
/// startup scan took on trust.
public struct ExpiryService: Service {
    let node: Replica

    public init(node: Replica) { self.node = node }

    public func run() async throws {
        let node = self.node
        let verification = Task { await node.verifyStore() }
        defer { verification.cancel() }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            await node.sweepIfDue()
            await node.lookOverIfDue()
            try? await Task.sleep(for: .seconds(1))
        }
    }
}

/// Addresses to bind for an `interfaces` list (SPEC §4).
public enum InterfaceResolver {
    public struct ResolveError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Literal addresses are used as they are; an interface name gives every address it has
    /// (IPv6 link-local only when it has no other). An empty list means every address.
    public static func addresses(for targets: [BindTarget], key: String) throws -> [String] {
        let devices = (try? System.enumerateDevices()) ?? []
        if targets.isEmpty {
            // Every address, loopback last: peers reach a node at the first address it announces.
            let all = addresses(of: devices)
            let isLoopback = { (address: String) in address.hasPrefix("127.") || address == "::1" }
            return all.filter { !isLoopback($0) } + all.filter(isLoopback)
        }
        var out = [String]()
        for target in targets {
            switch target {
            case .address(let address):
                out.append(address)
            case .interface(let name):
                let matching = devices.filter { $0.name == name }
                let found = addresses(of: matching)
                guard !found.isEmpty else {
                    let known = Set(devices.map(\.name)).sorted().joined(separator: ", ")
                    throw ResolveError(
                        description:
                            "config key \(key): interface \"\(name)\" does not exist or has no address (known: \(known))"
                    )
                }
                out += found
            }
        }
        var seen = Set<String>()
        return out.filter { seen.insert($0).inserted }
    }

    static func addresses(of devices: [NIONetworkDevice]) -> [String] {
        var byInterface = [String: [(String, Bool)]]()
        var order = [String]()
        for device in devices {
            guard let address = device.address, let ip = address.ipAddress else { continue }
            if byInterface[device.name] == nil { order.append(device.name) }
            var isLinkLocal = false
            if case .v6 = address, ip.lowercased().hasPrefix("fe80") { isLinkLocal = true }
            let text = isLinkLocal ? "\(ip)%\(device.name)" : ip
            byInterface[device.name, default: []].append((text, isLinkLocal))
        }
        var out = [String]()
        for name in order {
            let list = byInterface[name] ?? []
            let global = list.filter { !$0.1 }.map(\.0)
            out += global.isEmpty ? list.map(\.0) : global
        }
        return out
    }
}
