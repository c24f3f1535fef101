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

    @Flag(help: "Check the configuration and the files it names, print what would be bound and joined, and exit.")
    var checkConfig = false

    func run() async throws {
        try await reportingErrors {
            let loaded = try ConfigLoader.load(path: config)
            if checkConfig {
                for line in try Server.plan(loaded, path: config) { print(line) }
                return
            }
            StartupChecks.limitMallocArenas()
            try await Server(config: loaded).run()
        }
    }
}

struct Server {
    let config: NodeConfig

    /// What `server` would do with `config`, as lines for people (`--check-config`); throws what
    /// `server` would stop on.
    static func plan(_ config: NodeConfig, path: String) throws -> [String] {
        let httpAddresses = try InterfaceResolver.addresses(for: config.http.interfaces, key: "http.interfaces")
        let clusterAddresses = try InterfaceResolver.addresses(
            for: config.cluster.interfaces, key: "cluster.interfaces")
        try ConfigChecks.stateDirWritable(config.stateDir)
        let security = try ClusterSecurity.load(
            config.cluster.encryption, stateDir: config.stateDir, createNodeKey: false)
        try ConfigChecks.ownCertificate(security, path: config.cluster.encryption?.identityCert, now: WallClock.date())
        let port = config.cluster.port
        let names = config.filePolicy.allowedSigners.keys.map(\.value).sorted()
        let nodeName = config.nodeName ?? ProcessInfo.processInfo.hostName
        let cluster = clusterAddresses.map { PeerAddress(host: $0, port: port).description }
        let join =
            config.cluster.bootstrapNodes.isEmpty
            ? "no bootstrap nodes (waits for others to join it)"
            : config.cluster.bootstrapNodes.map { address in
                // The node skips its own address, as the core does.
                clusterAddresses.contains { PeerAddress(host: $0, port: port) == address }
                    ? "\(address) (this node: skipped)" : address.description
            }.joined(separator: ", ")
        let http = httpAddresses.map { "http://" + PeerAddress(host: $0, port: config.http.port).description }
        let files =
            names.isEmpty
            ? "none configured"
            : "\(names.count) name\(names.count == 1 ? "" : "s") (\(names.joined(separator: ", ")))"
        var lines: [String] = []
        lines.append("config \(path): valid")
        lines.append("node: \(nodeName), state_dir \(config.stateDir), log_level \(config.logLevel.rawValue)")
        lines.append(
            "node key: \(security.nodeKeySource), "
                + (security.nodeKeyIsStandIn
                    ? "node ID decided then" : "node ID \(security.nodeKey.id.hex)"))
        lines.append("cluster: udp+tcp " + cluster.joined(separator: ", "))
        lines.append("join: " + join)
        lines.append("http: " + http.joined(separator: ", "))
        lines.append("files: " + files)
        lines.append("encryption: " + security.summary)
        return lines
    }

    func run() async throws {
        let level = Server.logLevel(config.logLevel)
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "data-mesher")
        logger.logLevel = level
        // Notes the files mapped now, before anything could load a library at run time.
        let trimmer = CodePageTrimmer(logger: logger)

        let httpAddresses = try InterfaceResolver.addresses(for: config.http.interfaces, key: "http.interfaces")
        let clusterAddresses = try InterfaceResolver.addresses(
            for: config.cluster.interfaces, key: "cluster.interfaces")
        let fileLimit = StartupChecks.raiseFileLimit()
        let budget = DescriptorBudget(openFilesLimit: fileLimit == 0 ? 1024 : fileLimit)
        // Start-up conflicts end here in one line, before anything is bound or written.
        let stateLock = try StateDirLock(stateDir: config.stateDir)
        for address in httpAddresses {
            try StartupChecks.checkBindable(host: address, port: config.http.port, transport: .tcp, role: "http")
        }
        for address in clusterAddresses {
            for transport in [StartupChecks.Transport.tcp, .udp] {
                try StartupChecks.checkBindable(
                    host: address, port: config.cluster.port, transport: transport, role: "cluster")
            }
        }
        let store = try FileStore(
            stateDir: config.stateDir, policy: config.filePolicy, now: WallClock.now(), logger: logger)
        let nodeName = config.nodeName ?? ProcessInfo.processInfo.hostName
        logger[metadataKey: "dm.node"] = "\(nodeName)"
        let security = try ClusterSecurity.load(
            config.cluster.encryption, stateDir: config.stateDir, createNodeKey: true)
        if let problem = security.ownCertificateProblem(now: WallClock.date()) {
            logger.error("this node's certificate will be refused by its peers: \(problem)")
        }
        let certificateExpiry = security.identity.map {
            CertificateExpiry(notValidAfter: $0.certificate.notValidAfter)
        }
        let node = Replica(
            config: config, store: store, nodeName: nodeName, nodeID: security.nodeKey.id.hex,
            clusterAddresses: clusterAddresses.map { PeerAddress(host: $0, port: config.cluster.port).description },
            logger: logger, certificateExpiry: certificateExpiry)

        var settings = CoreSettings()
        settings.joinInterval = Int64(clamping: config.cluster.joinInterval)
        settings.pushPullInterval = Int64(clamping: config.cluster.pushPullInterval)
        settings.maxMembers = config.cluster.maxMembers
        settings.maxUnconfirmed = min(settings.maxUnconfirmed, config.cluster.maxMembers)
        let cluster = NetworkShell(
            node: node, bindAddresses: clusterAddresses, settings: settings, security: security, budget: budget,
            logger: logger)
        node.addListener(cluster)
        try await cluster.bind()

        let api = API(node: node)
        var services: [any Service] = [ExpiryService(node: node), cluster, trimmer]
        if let certificateExpiry {
            // A warning once a day from 14 days before the certificate ends (an error after).
            services.append(CertificateExpiryWarningService(expiry: certificateExpiry, logger: logger))
        }
        let limits = HTTPLimits(
            headerTimeout: .nanoseconds(Int64(clamping: config.http.headerTimeout)),
            idleTimeout: .nanoseconds(Int64(clamping: config.http.idleTimeout)),
            maxConnectionsPerSource: config.http.maxConnectionsPerSource)
        let perSource = SourceConnectionCounter(
            limit: config.http.maxConnectionsPerSource, total: budget.httpConnections, logger: logger)
        for address in httpAddresses {
            let appLogger = logger
            let app = Application(
                router: api.router(),
                server: limits.server(counter: perSource),
                configuration: .init(address: .hostname(address, port: Int(config.http.port)), serverName: nil),
                logger: appLogger)
            services.append(app)
        }
        logger.info(
            "data-mesher \(DataMesherVersion.string) starting",
            metadata: [
                "dm.node_id": "\(security.nodeKey.id.hex)", "dm.state_dir": "\(config.stateDir)",
                "dm.files": "\(store.list().filter(\.isServed).count)", "dm.encryption": "\(security.summary)",
                "dm.open_files_limit": "\(fileLimit)", "dm.http_max_connections": "\(budget.httpConnections)",
                "dm.cluster_max_streams": "\(budget.inboundStreams) in, \(budget.outgoingStreams) out",
            ])
        let group = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        // The lock is held until the process ends; this keeps it alive past the group.
        defer { withExtendedLifetime(stateLock) {} }
        // SIGHUP's default is to end the process without a word; operators send it to reload.
        let hangup = Self.explainHangups(logger: logger)
        defer { hangup.cancel() }
        try await group.run()
        logger.info("stopped")
    }

    /// Answers SIGHUP with a log line instead of dying by it: there is no reload.
    static func explainHangups(logger: Logger) -> any DispatchSourceSignal {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP)
        source.setEventHandler {
            logger.warning("SIGHUP ignored: data-mesher does not reload dm.toml; restart it to apply a changed config")
        }
        source.resume()
        return source
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
