# Clan service "data-mesher" (a clan.service module; flake output clan.modules.data-mesher).
#
# Roles:
#   default    every machine that runs data-mesher; settings: interfaces, port, bootstrapNodes,
#              extraBootstrapNodes, files, logLevel, certificateValidity. Its files are merged
#              with every clan export's dataMesher.files.
#   bootstrap  no settings; its machines (which must also be in 'default') become bootstrap
#              nodes of every member, merged with bootstrapNodes and extraBootstrapNodes
#   admin, peer, signer
#              the roles of data-mesher v1; they take no settings, and assigning a machine to
#              one fails the evaluation (an assertion) with a migration message
#
# The mapping from settings to dm.toml is lib.nix's roleSettingsToDmSettings, the same pure
# function tests-nix/nix_test.sh evaluates. Cluster traffic is always encrypted: a shared
# keyring key and a shared CA come from clan vars, and every machine gets its own
# certificate signed by that CA.
{ ... }:
let
  dmLib = import ./lib.nix;

  # A removed v1 role: it takes no settings, and a machine assigned to it fails the
  # evaluation with the migration message (as clan-core's service does).
  removedRole = role: {
    description = "Removed in data-mesher v2: use role 'default' (and 'bootstrap').";
    interface = { };
    perInstance = _: {
      nixosModule = {
        assertions = [
          {
            assertion = false;
            message = dmLib.v1RoleMessage role;
          }
        ];
      };
    };
  };

  # Names of the vars generators, the same as clan-core's data-mesher service uses, so a clan
  # can move between the two services and keep its secrets (shared ones are clan-wide).
  gen = {
    keyring = "data-mesher-node-keyring";
    ca = "data-mesher-ca";
    identity = "data-mesher-node-identity";
  };
in
{
  _class = "clan.service";
  manifest.name = "data-mesher";
  manifest.description = "Set up data-mesher";
  manifest.categories = [ "System" ];

  roles.default = {
    description = "A data-mesher node: stores and relays the files listed in 'files', signed by their keys.";
    interface =
      { lib, ... }:
      {
        options = {
          interfaces = lib.mkOption {
            type = lib.types.listOf lib.types.str;
            example = [
              "eth1"
              "tailscale0"
            ];
            description = ''
              Interfaces (or literal IP addresses) to bind the cluster port on; every address
              of a listed interface is used. [ ] binds every address of the machine.
            '';
          };

          port = lib.mkOption {
            type = lib.types.port;
            default = dmLib.defaultPort;
            description = "Cluster port (UDP gossip, TCP push/pull and content).";
          };

          bootstrapNodes = lib.mkOption {
            type = lib.types.listOf lib.types.str;
            default = [ ];
            example = [
              "192.168.1.1:7946"
              "192.168.1.2:7946"
            ];
            description = ''
              host:port of nodes to join the cluster through. Merged with the machines of the
              'bootstrap' role and extraBootstrapNodes.
            '';
          };

          extraBootstrapNodes = lib.mkOption {
            type = lib.types.listOf lib.types.str;
            default = [ ];
            example = [ "[fd00::1]:7946" ];
            description = ''
              Additional bootstrap nodes that act as an initial gateway when joining the
              cluster. These are merged with machines from the 'bootstrap' role.
            '';
          };

          files = lib.mkOption {
            type = lib.types.attrsOf (lib.types.listOf lib.types.str);
            default = { };
            example = {
              "config:app" = [ "azwT+VhTxA+BF73Hwq0uqdXHG8XvHU2BknoVXgmEjww=" ];
              "dns/zone" = [
                "azwT+VhTxA+BF73Hwq0uqdXHG8XvHU2BknoVXgmEjww="
                "Mdtz9s2DEyEk0DL8ZzW7WqwAehoQ97PFHVbJJdskkGo="
              ];
            };
            description = ''
              File name -> base64 ED25519 public keys (data-mesher key public KEYFILE). Only
              names listed here are stored or relayed, and only versions signed by one of
              their keys are accepted.
            '';
          };

          logLevel = lib.mkOption {
            type = lib.types.enum dmLib.logLevels;
            default = "info";
            description = "Log level.";
          };

          certificateValidity = lib.mkOption {
            # a duration as `data-mesher certificate sign --validity` reads it (safe in a script)
            type = lib.types.strMatching "([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h|d))+";
            default = dmLib.defaultCertificateValidity;
            example = "8760h";
            description = ''
              How long the node certificates issued by the data-mesher-node-identity generator
              are valid (a duration: s, m, h). The generator runs once per machine; renew a
              certificate before it lapses by regenerating it (see docs/DEPLOY.md).
            '';
          };

          # v1 settings: accepted only to fail with a message that says what replaces them.
          network = lib.mkOption {
            type = lib.types.nullOr lib.types.anything;
            default = null;
            visible = false;
            description = "Removed in v2: use 'interfaces' and 'port'.";
          };
          extraHostNames = lib.mkOption {
            type = lib.types.nullOr lib.types.anything;
            default = null;
            visible = false;
            description = "Removed in v2: publish signed files instead.";
          };
        };
      };

    perInstance =
      {
        settings,
        roles,
        machine,
        ...
      }@args:
      let
        # The role's files merged with every clan export's dataMesher.files: lists of the same
        # name are concatenated (duplicates dropped).
        files = dmLib.mergeFiles ([ settings.files ] ++ dmLib.exportedFiles (args.exports or { }));
      in
      {
        nixosModule =
          {
            config,
            lib,
            pkgs,
            ...
          }:
          let
            cfg = config.services.data-mesher;
            vars = config.clan.core.vars.generators;
            domain = config.clan.core.settings.domain or null;

            # Bootstrap machines are reached by name: <machine>.<clan domain> when the clan has
            # a domain (what clan's networking modules resolve), else the bare machine name.
            bootstrapMachines = builtins.mapAttrs (
              name: _: if domain == null || domain == "" then name else "${name}.${domain}"
            ) (roles.bootstrap.machines or { });

            dmSettings = dmLib.roleSettingsToDmSettings {
              settings = removeAttrs settings [ "certificateValidity" ] // {
                inherit files;
              };
              inherit bootstrapMachines;
              machineName = machine.name;
              encryption = {
                keyring = [ vars.${gen.keyring}.files.pre_shared_key.path ];
                identityKey = vars.${gen.identity}.files."identity.key".path;
                identityCert = vars.${gen.identity}.files."identity.cert".path;
                certificateAuthorities = [ vars.${gen.ca}.files."ca.pub".path ];
              };
            };

            isBootstrap = (roles.bootstrap.machines or { }) ? ${machine.name};

            # Secret files the daemon reads at run time belong to its user and group
            # (clan vars deploys them 0400 to that owner).
            daemonSecret = {
              owner = cfg.user;
              group = cfg.group;
            };
            dm = "data-mesher";
          in
          {
            imports = [ ./module.nix ];

            # As clan-core's service: nothing to join through is an error. A bootstrap machine
            # may start alone (the others join it), so it is exempt.
            assertions = [
              {
                assertion = dmSettings.cluster.bootstrap_nodes != [ ] || isBootstrap;
                message =
                  "data-mesher: machine '${machine.name}' has no bootstrap node to join through; "
                  + "put a machine in role 'bootstrap' or set bootstrapNodes / extraBootstrapNodes";
              }
            ];

            # The same generators, files, ownership and scripts as clan-core's data-mesher
            # service. The scripts run with the package (and openssl) on PATH.
            clan.core.vars.generators = {
              # Certificate authority of the cluster; its private key stays in the vars store
              # (deploy = false) and is used only to sign the machines' certificates.
              ${gen.ca} = {
                share = true;
                files."ca.key".deploy = false;
                files."ca.pub".secret = false;
                runtimeInputs = [ cfg.package ];
                script = ''
                  ${dm} generate ca --public-key-path "$out/ca.pub" --private-key-path "$out/ca.key"
                '';
              };

              # This machine's identity: a node key and its certificate from the CA.
              ${gen.identity} = {
                dependencies = [ gen.ca ];
                files."identity.key" = daemonSecret;
                files."identity.pub".secret = false;
                files."identity.cert" = daemonSecret;
                runtimeInputs = [ cfg.package ];
                script = ''
                  ${dm} generate node-key --public-key-path "$out/identity.pub" --private-key-path "$out/identity.key"
                  ${dm} certificate sign --ca-key "$in/${gen.ca}/ca.key" --node-key "$out/identity.pub" --output "$out/identity.cert" --validity ${settings.certificateValidity}
                '';
              };

              # Pre-shared key of the cluster (AES-256-GCM), one for the whole clan: the base64
              # of 32 random bytes, which the daemon's keyring reader takes as it is.
              ${gen.keyring} = {
                share = true;
                files.pre_shared_key = daemonSecret;
                runtimeInputs = [ pkgs.openssl ];
                script = ''
                  openssl rand -base64 32 > "$out/pre_shared_key"
                '';
              };
            };

            services.data-mesher = {
              enable = true;
              openFirewall = true;
              # Every key at default priority, so a machine can still override single keys
              # (e.g. services.data-mesher.settings.http.port) in its own configuration.
              settings = dmLib.mapLeaves lib.mkDefault dmSettings;
            };
          };
      };
  };

  roles.bootstrap = {
    description = "Machines the other members join through (they must also be in role 'default').";
    interface = { };
    perInstance =
      { roles, machine, ... }:
      {
        nixosModule = {
          assertions = [
            {
              assertion = (roles.default.machines or { }) ? ${machine.name};
              message =
                "data-mesher: machine '${machine.name}' is in role 'bootstrap' but not in role 'default'; "
                + "add it to 'default' too ('bootstrap' only marks which members the others join through)";
            }
          ];
        };
      };
  };

  roles.admin = removedRole "admin";
  roles.peer = removedRole "peer";
  roles.signer = removedRole "signer";
}
