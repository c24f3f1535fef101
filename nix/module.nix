# NixOS module: services.data-mesher.
#
# services.data-mesher = {
#   enable = true;
#   openFirewall = true;                       # cluster port, UDP and TCP
#   settings = {                               # dm.toml (docs/CONFIG.md), rendered by lib.nix's toTOML
#     cluster.interfaces = [ "eth1" ];
#     cluster.bootstrap_nodes = [ "192.168.1.1:7946" ];
#     files."config:app" = [ "azwT+VhTxA+BF73Hwq0uqdXHG8XvHU2BknoVXgmEjww=" ];
#   };
# };
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.data-mesher;
  dmLib = import ./lib.nix;
  inherit (lib) mkOption mkEnableOption mkIf types literalExpression;

  configPath = "/etc/data-mesher/dm.toml";

  # Any value TOML can hold; null means "leave the key out". File paths are strings naming
  # files on the target machine (a Nix path would not be copied to the store by toTOML).
  tomlValue =
    let
      value = types.nullOr (
        types.oneOf [
          types.bool
          types.int
          types.float
          types.str
          (types.attrsOf value)
          (types.listOf value)
        ]
      );
    in
    value // { description = "TOML value"; };

  # StateDirectory= only covers folders below /var/lib; anything else is made writable with
  # ReadWritePaths= (and must exist, owned by the service user).
  stateDir = cfg.settings.state_dir;
  underVarLib = lib.hasPrefix "/var/lib/" stateDir;
  stateDirectoryName = lib.removePrefix "/var/lib/" stateDir;

  exe = "${cfg.package}/bin/data-mesher";
in
{
  options.services.data-mesher = {
    enable = mkEnableOption "data-mesher, the daemon that replicates ED25519-signed files across a cluster";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = literalExpression "pkgs.callPackage ./nix/package.nix { }";
      description = "The data-mesher package (daemon and CLI).";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the cluster port (settings.cluster.port) for UDP (gossip) and TCP (push/pull, content).";
    };

    user = mkOption {
      type = types.str;
      default = "data-mesher";
      description = "System user the daemon runs as (created by this module).";
    };

    group = mkOption {
      type = types.str;
      default = "data-mesher";
      description = ''
        Group of the daemon. Stored files are readable by this group (0640, folders 0750), so
        a service that consumes them (a DNS server, say) can be added to it.
      '';
    };

    configFile = mkOption {
      type = types.str;
      default = configPath;
      readOnly = true;
      description = "Where the rendered dm.toml is installed.";
    };

    settings = mkOption {
      default = { };
      description = ''
        The contents of dm.toml (docs/CONFIG.md), rendered to ${configPath}. Keys are dm.toml's
        own (snake_case); null leaves a key out. Unknown keys are refused by the daemon when it
        starts (and by the ExecStartPre check).
      '';
      example = literalExpression ''
        {
          log_level = "info";
          cluster = {
            interfaces = [ "eth1" ];
            bootstrap_nodes = [ "192.168.1.1:7946" "192.168.1.2:7946" ];
          };
          files."config:app" = [ "azwT+VhTxA+BF73Hwq0uqdXHG8XvHU2BknoVXgmEjww=" ];
        }
      '';
      type = types.submodule {
        freeformType = types.attrsOf tomlValue;
        options = {
          log_level = mkOption {
            type = types.enum dmLib.logLevels;
            default = "info";
            description = "Log level.";
          };
          state_dir = mkOption {
            type = types.str;
            default = dmLib.defaultStateDir;
            description = "Where files, their signatures and the node ID are kept.";
          };
          cluster = mkOption {
            default = { };
            description = "The [cluster] table.";
            type = types.submodule {
              freeformType = types.attrsOf tomlValue;
              options = {
                port = mkOption {
                  type = types.port;
                  default = dmLib.defaultPort;
                  description = "Cluster port, UDP and TCP, on every bound address.";
                };
                interfaces = mkOption {
                  type = types.listOf types.str;
                  default = [ ];
                  description = "Interface names or IP addresses to bind; [] binds every address.";
                };
                bootstrap_nodes = mkOption {
                  type = types.listOf types.str;
                  default = [ ];
                  description = "host:port of nodes to join through.";
                };
              };
            };
          };
          files = mkOption {
            type = types.attrsOf (types.listOf types.str);
            default = { };
            description = "File name -> base64 ED25519 public keys allowed to sign it.";
          };
        };
      };
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = lib.hasPrefix "/" stateDir;
        message = "services.data-mesher.settings.state_dir must be an absolute path, not \"${stateDir}\"";
      }
    ];

    environment.etc."data-mesher/dm.toml".text = dmLib.toTOML cfg.settings;
    environment.systemPackages = [ cfg.package ];

    users.users = mkIf (cfg.user == "data-mesher") {
      data-mesher = {
        isSystemUser = true;
        inherit (cfg) group;
        home = stateDir;
        description = "data-mesher daemon";
      };
    };
    users.groups = mkIf (cfg.group == "data-mesher") { data-mesher = { }; };

    # StateDirectory= makes /var/lib/<name>; a state_dir elsewhere is made here.
    systemd.tmpfiles.rules = mkIf (!underVarLib) [ "d ${stateDir} 0750 ${cfg.user} ${cfg.group} -" ];

    networking.firewall = mkIf cfg.openFirewall {
      allowedTCPPorts = [ cfg.settings.cluster.port ];
      allowedUDPPorts = [ cfg.settings.cluster.port ];
    };

    systemd.services.data-mesher = {
      description = "data-mesher: replicate signed files across the cluster";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      restartTriggers = [ config.environment.etc."data-mesher/dm.toml".source ];

      serviceConfig = {
        Type = "simple";
        ExecStartPre = "${exe} server --check-config --config ${configPath}";
        ExecStart = "${exe} server --config ${configPath}";
        Restart = "on-failure";
        RestartSec = "5s";
        # SIGTERM makes the node announce that it leaves; give it time.
        TimeoutStopSec = "30s";

        User = cfg.user;
        Group = cfg.group;
        StateDirectory = mkIf underVarLib stateDirectoryName;
        StateDirectoryMode = "0750";
        ReadWritePaths = mkIf (!underVarLib) [ stateDir ];
        UMask = "0027";
        LimitNOFILE = 65536;

        # Hardening. The cluster and HTTP ports are above 1024, so no capabilities at all.
        CapabilityBoundingSet = "";
        AmbientCapabilities = "";
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        DevicePolicy = "closed";
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        RemoveIPC = true;
        LockPersonality = true;
        KeyringMode = "private";
        # Interface addresses are enumerated with getifaddrs, which asks the kernel over netlink.
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
          "AF_NETLINK"
        ];
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" ];
        SystemCallErrorNumber = "EPERM";
        # MemoryDenyWriteExecute is left off on purpose: the Swift runtime is not known to be
        # safe under it (it may map executable memory), and a daemon that dies at start is worse.
      };
    };
  };
}
