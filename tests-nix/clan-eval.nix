# Evaluates nix/clan-service.nix's 'default' role for one machine, without nixpkgs or clan,
# for tests-nix/nix_test.sh.
#
# perInstance is called the way clan calls it (settings, roles, machine), and the NixOS
# module it returns is called with a stub `lib` (mkDefault, optional) and a `config` in
# which every vars generator file the module itself declares lives at
# <varsDir>/<generator>/<file>, as the module system would resolve it. The result has the
# dm.toml text, the warnings, and the vars generators (scripts, files, share, dependencies).
#
#   nix-instantiate --eval --strict --json tests-nix/clan-eval.nix \
#     --arg settings '{ interfaces = [ "eth1" ]; }' --argstr machine alpha --arg roles '{ ... }'
{
  settings,
  machine,
  roles,
  domain ? null,
  # clan's `exports` for perInstance: scope key -> export value (dataMesher.files, ...)
  exports ? { },
  varsDir ? "/run/vars",
  # merged over the generated dm.toml settings (e.g. a state_dir the test may write)
  overrides ? { },
}:
let
  dmLib = import ../nix/lib.nix;
  service = import ../nix/clan-service.nix { };
  role = service.roles.default;

  # The role's option defaults, as clan's interface module would fill them in.
  withDefaults =
    {
      port = 7946;
      bootstrapNodes = [ ];
      extraBootstrapNodes = [ ];
      files = { };
      logLevel = "info";
      certificateValidity = "2160h";
      network = null;
      extraHostNames = null;
    }
    // settings;

  stubLib = {
    mkDefault = x: x;
    optional = cond: x: if cond then [ x ] else [ ];
  };

  config = {
    services.data-mesher = {
      package = "/nix/store/00000000000000000000000000000000-data-mesher";
      user = "data-mesher";
      group = "data-mesher";
    };
    clan.core.settings = if domain == null then { } else { inherit domain; };
    clan.core.vars.generators = builtins.mapAttrs (gen: def: {
      files = builtins.mapAttrs (file: _: { path = "${varsDir}/${gen}/${file}"; }) def.files;
    }) nixos.clan.core.vars.generators;
  };

  instance = role.perInstance {
    settings = withDefaults;
    inherit roles exports;
    machine = {
      name = machine;
      roles = builtins.filter (r: (roles.${r}.machines or { }) ? ${machine}) (builtins.attrNames roles);
    };
  };
  nixos = instance.nixosModule {
    inherit config;
    lib = stubLib;
    pkgs.openssl = "/nix/store/00000000000000000000000000000000-openssl";
  };

  dmSettings = dmLib.recursiveUpdate nixos.services.data-mesher.settings overrides;
in
{
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) nixos.assertions);
  inherit (service.manifest) description;
  imports = map toString nixos.imports;
  inherit (nixos.services.data-mesher) enable openFirewall;
  settings = dmSettings;
  toml = dmLib.toTOML dmSettings;
  bootstrapNodes = dmSettings.cluster.bootstrap_nodes;
  generators = builtins.mapAttrs (_: g: {
    script = g.script;
    files = builtins.attrNames g.files;
    fileAttrs = g.files;
    runtimeInputs = g.runtimeInputs or [ ];
    share = g.share or false;
    dependencies = g.dependencies or [ ];
    secretFiles = builtins.filter (f: g.files.${f}.secret or true) (builtins.attrNames g.files);
    deployedSecrets = builtins.filter (
      f: (g.files.${f}.secret or true) && (g.files.${f}.deploy or true)
    ) (builtins.attrNames g.files);
  }) nixos.clan.core.vars.generators;
}
