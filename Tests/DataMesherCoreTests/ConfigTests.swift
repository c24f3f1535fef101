import DataMesherConfig
import DataMesherCore
import Testing

@Suite struct ConfigTests {
    static let key = "azwT+VhTxA+BF73Hwq0uqdXHG8XvHU2BknoVXgmEjww="

    @Test func theSpecExampleLoads() throws {
        let config = try ConfigLoader.parse(
            """
            log_level = "info"
            state_dir = "/var/lib/data-mesher"
            node_name = "alpha"
            max_file_size = "4GiB"
            max_clock_skew = "10m"
            tombstone_retention = "720h"

            [cluster]
            port = 7946
            interfaces = ["eth1"]
            bootstrap_nodes = ["192.168.1.1:7946", "[2001:db8::1]:7946", "alpha.example:7946"]
            join_interval = "30s"
            push_pull_interval = "30s"
            network_id = ""

            [cluster.encryption]
            enable = true
            keyring = ["/run/secrets/dm/pre_shared_key"]
            identity_key = "/run/secrets/dm/identity.key"
            identity_cert = "/run/secrets/dm/identity.cert"
            certificate_authorities = ["/etc/dm/ca.pub"]

            [http]
            port = 7331
            interfaces = ["lo"]

            [files]
            "config:app" = ["azwT+VhTxA+BF73Hwq0uqdXHG8XvHU2BknoVXgmEjww="]
            "shared:data" = ["azwT+VhTxA+BF73Hwq0uqdXHG8XvHU2BknoVXgmEjww=",
                             "Mdtz9s2DEyEk0DL8ZzW7WqwAehoQ97PFHVbJJdskkGo="]
            """)
        #expect(config.nodeName == "alpha")
        #expect(config.maxFileSize == 4 << 30)
        #expect(config.maxClockSkew == 600_000_000_000)
        #expect(config.cluster.interfaces == [.interface("eth1")])
        #expect(
            config.cluster.bootstrapNodes == [
                PeerAddress(host: "192.168.1.1", port: 7946), PeerAddress(host: "2001:db8::1", port: 7946),
                PeerAddress(host: "alpha.example", port: 7946),
            ])
        #expect(config.cluster.encryption?.enable == true)
        #expect(config.cluster.encryption?.certificateAuthorities == ["/etc/dm/ca.pub"])
        #expect(config.http.interfaces == [.interface("lo")])
        #expect(config.files[try FileName("shared:data")]?.count == 2)
    }

    @Test func defaultsWhenEmpty() throws {
        let config = try ConfigLoader.parse("")
        #expect(config == NodeConfig())
        #expect(config.http.port == 7331 && config.cluster.port == 7946)
        #expect(config.http.interfaces == [.interface("lo")])
    }

    @Test func httpLimitsHaveDefaultsAndCanBeSet() throws {
        let defaults = try ConfigLoader.parse("")
        #expect(defaults.http.headerTimeout == 10_000_000_000 && defaults.http.idleTimeout == 60_000_000_000)
        #expect(defaults.http.maxConnectionsPerSource == 64 && defaults.http.maxConcurrentUploads == 16)
        #expect(defaults.diskReserve == 64 << 20)
        let config = try ConfigLoader.parse(
            """
            disk_reserve = "1GiB"
            [http]
            header_timeout = "5s"
            idle_timeout = "2m"
            max_connections_per_source = 8
            max_concurrent_uploads = 2
            """)
        #expect(config.http.headerTimeout == 5_000_000_000 && config.http.idleTimeout == 120_000_000_000)
        #expect(config.http.maxConnectionsPerSource == 8 && config.http.maxConcurrentUploads == 2)
        #expect(config.diskReserve == 1 << 30)
    }

    @Test func twentyThousandNamesLoad() throws {
        var text = "[files]\n"
        for index in 0..<20_000 { text += "\"dir\(index % 100)/file\(index)\" = [\"\(Self.key)\"]\n" }
        let config = try ConfigLoader.parse(text)
        #expect(config.files.count == 20_000)
    }

    @Test func literalAddressesAreAddresses() throws {
        let config = try ConfigLoader.parse(
            """
            [cluster]
            interfaces = ["127.0.0.2", "::1", "eth0"]
            [http]
            interfaces = ["::1"]
            """)
        #expect(config.cluster.interfaces == [.address("127.0.0.2"), .address("::1"), .interface("eth0")])
    }

    /// Every bad config names the key and the problem.
    @Test(arguments: [
        ("lol_level = \"info\"", "lol_level", "unknown key"),
        ("log_level = \"loud\"", "log_level", "not one of"),
        ("log_level = 3", "log_level", "must be a string, not an integer"),
        ("max_file_size = \"4 gigs\"", "max_file_size", "not a size"),
        ("max_clock_skew = \"10 minutes\"", "max_clock_skew", "not a duration"),
        ("tombstone_retention = 720", "tombstone_retention", "must be a string"),
        ("[cluster]\nport = 70000", "cluster.port", "not a port"),
        ("[cluster]\nport = \"7946\"", "cluster.port", "must be an integer, not a string"),
        ("[cluster]\nbootstrap_nodes = [\"nohost\"]", "cluster.bootstrap_nodes[0]", "not host:port"),
        ("[cluster]\nbootstrap_nodes = [\"[::1:7946\"]", "cluster.bootstrap_nodes[0]", "not host:port"),
        ("[cluster]\nbootstrap_nodes = [\"a.b:0\"]", "cluster.bootstrap_nodes[0]", "not host:port"),
        ("[cluster]\nbootstrap_nodes = [\"1.2.3.4:7946\", 5]", "cluster.bootstrap_nodes[1]", "must be a string"),
        ("[cluster]\njoin_interval = \"0\"", "cluster.join_interval", "longer than 0"),
        ("[cluster]\nmystery = 1", "cluster.mystery", "unknown key"),
        ("[cluster]\ninterfaces = [\"1.2.3\"]", "cluster.interfaces[0]", "neither an interface"),
        ("[cluster]\ninterfaces = [\"fe80::zz\"]", "cluster.interfaces[0]", "neither an interface"),
        ("[cluster.encryption]\nenable = true", "cluster.encryption.keyring", "at least one"),
        ("[cluster.encryption]\nidentity_key = \"/k\"", "cluster.encryption.identity_key", "together"),
        ("[http]\ninterfaces = []", "http.interfaces", "at least one"),
        ("[http]\nport = 0", "http.port", "not a port"),
        ("[http]\nheader_timeout = \"0s\"", "http.header_timeout", "longer than 0"),
        ("[http]\nheader_timeout = 10", "http.header_timeout", "must be a string"),
        ("[http]\nidle_timeout = \"soon\"", "http.idle_timeout", "not a duration"),
        ("[http]\nmax_connections_per_source = 0", "http.max_connections_per_source", "out of range"),
        ("[http]\nmax_connections_per_source = \"64\"", "http.max_connections_per_source", "must be an integer"),
        ("[http]\nmax_concurrent_uploads = -1", "http.max_concurrent_uploads", "out of range"),
        ("disk_reserve = \"lots\"", "disk_reserve", "not a size"),
        ("[files]\n\"x/A\" = [\"\(key)\"]\n\"x/a\" = [\"\(key)\"]", "files.\"x/a\"", "only by case"),
        ("[files]\n\"A\" = [\"\(key)\"]\n\"a/b\" = [\"\(key)\"]", "files.\"a/b\"", "folder of another"),
        ("[files]\n\"../etc\" = [\"\(key)\"]", "files.\"../etc\"", "starts with '.'"),
        ("[files]\n\"a\" = [\"not base64!\"]", "files.\"a\"[0]", "not valid base64"),
        ("[files]\n\"a\" = [\"YWJj\"]", "files.\"a\"[0]", "has 3 bytes"),
        ("[files]\n\"a\" = []", "files.\"a\"", "no public keys"),
        ("[files]\n\"a\" = \"\(key)\"", "files.a", "must be an array"),
        ("[files]\n\"a\" = [\"\(key)\"]\n\"a/b\" = [\"\(key)\"]", "files.\"a/b\"", "conflicts"),
        ("files = 3", "files", "must be a table"),
    ])
    func badConfigsNameTheKey(text: String, key: String, problem: String) {
        do {
            _ = try ConfigLoader.parse(text)
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.key == key, "\(error)")
            #expect(error.description.contains(problem), "\(error)")
        }
    }

    @Test func invalidTOMLSaysWhere() {
        #expect(throws: ConfigError.self) { try ConfigLoader.parse("a = [") }
        do { _ = try ConfigLoader.parse("log_level = \"info\"\n[http\n") } catch {
            #expect(error.description.contains("line 2"), "\(error)")
        }
    }

    @Test func peerAddresses() {
        #expect(PeerAddress.parse("host.example:7946") == PeerAddress(host: "host.example", port: 7946))
        #expect(PeerAddress.parse("[fd00::1]:7946") == PeerAddress(host: "fd00::1", port: 7946))
        #expect(PeerAddress.parse("[fd00::1]:7946")?.description == "[fd00::1]:7946")
        for bad in ["", ":7946", "host", "host:", "host:x", "fd00::1:7946", "[fd00::1]", "a b:1", "-a:1", "a:65536"] {
            #expect(PeerAddress.parse(bad) == nil, "\(bad)")
        }
    }
}
