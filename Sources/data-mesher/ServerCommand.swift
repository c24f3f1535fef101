import ArgumentParser
import DataMesherConfig
import DataMesherCore
import DataMesherHTTP
import DataMesherNet
import DataMesherStore
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Run the data-mesher daemon."
    )

    @Option(help: "Path of the configuration file.")
    var config: String = "/etc/data-mesher/dm.toml"

    func run() async throws {
        try await reportingErrors {
            let config = try ConfigLoader.load(path: config)
            try await Server(config: config).run()
        }
    }
}

struct Server {
    let config: NodeConfig

    func run() async throws {
        let level = Server.logLevel(config.logLevel)
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "data-mesher")
        logger.logLevel = level

        let httpAddresses = try InterfaceResolver.addresses(for: config.http.interfaces, key: "http.interfaces")
        let clusterAddresses = try InterfaceResolver.addresses(
            for: config.cluster.interfaces, key: "cluster.interfaces")
        let store = try FileStore(
            stateDir: config.stateDir, policy: config.filePolicy, now: WallClock.now(), logger: logger)
        let nodeName = config.nodeName ?? ProcessInfo.processInfo.hostName
        logger[metadataKey: "dm.node"] = "\(nodeName)"
        let node = MeshNode(
            config: config, store: store, nodeName: nodeName,
            clusterAddresses: clusterAddresses.map { PeerAddress(host: $0, port: config.cluster.port).description },
            logger: logger)

        var settings = MeshSettings()
        settings.joinInterval = Int64(clamping: config.cluster.joinInterval)
        settings.pushPullInterval = Int64(clamping: config.cluster.pushPullInterval)
        let cluster = ClusterNode(node: node, bindAddresses: clusterAddresses, settings: settings, logger: logger)
        node.addListener(cluster)

        let api = API(node: node)
        var services: [any Service] = [ExpiryService(node: node), cluster]
        for address in httpAddresses {
            let appLogger = logger
            let app = Application(
                router: api.router(),
                configuration: .init(address: .hostname(address, port: Int(config.http.port)), serverName: nil),
                logger: appLogger)
            services.append(app)
        }
        logger.info(
            "data-mesher \(DataMesherVersion.string) starting",
            metadata: [
                "dm.node_id": "\(store.nodeID)", "dm.state_dir": "\(config.stateDir)",
                "dm.files": "\(store.list().filter(\.isServed).count)",
            ])
        let group = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
        logger.info("stopped")
    }

    static func logLevel(_ level: NodeConfig.LogLevel) -> Logger.Level {
        switch level {
        case .fatal: return .critical
        case .error: return .error
        case .warn: return .warning
        case .info: return .info
        case .debug: return .debug
        }
    }
}
