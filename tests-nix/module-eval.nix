# Evaluates nix/module.nix without nixpkgs, for tests-nix/nix_test.sh.
#
# The module is called with a tiny stub `lib` (mkOption, mkIf, types as placeholders) and a
# `config` whose services.data-mesher is given in full (as the module system would have
# filled in the defaults). What comes back is the module's `config` with every mkIf
# resolved, plus the systemd unit rendered as sorted "Key=Value" lines in the form a plain
# unit file uses, so the test can compare it with contrib/systemd/data-mesher.service.
#
#   nix-instantiate --eval --strict --json tests-nix/module-eval.nix --arg settings '{ ... }'
{
  settings,
  package ? "/nix/store/00000000000000000000000000000000-data-mesher",
  openFirewall ? true,
}:
let
  inherit (builtins)
    attrNames
    concatStringsSep
    filter
    isAttrs
    isBool
    isList
    mapAttrs
    stringLength
    substring
    replaceStrings
    sort
    ;

  placeholderType = name: { inherit name; };
  stubLib = rec {
    types = {
      bool = placeholderType "bool";
      int = placeholderType "int";
      float = placeholderType "float";
      str = placeholderType "str";
      port = placeholderType "port";
      package = placeholderType "package";
      nullOr = _: placeholderType "nullOr";
      oneOf = _: placeholderType "oneOf";
      attrsOf = _: placeholderType "attrsOf";
      listOf = _: placeholderType "listOf";
      enum = _: placeholderType "enum";
      submodule = _: placeholderType "submodule";
    };
    mkOption = x: x;
    mkEnableOption = description: {
      type = types.bool;
      default = false;
      inherit description;
    };
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };
    hasPrefix = prefix: s: substring 0 (stringLength prefix) s == prefix;
    removePrefix =
      prefix: s: if hasPrefix prefix s then substring (stringLength prefix) (stringLength s) s else s;
  };

  # mkIf false -> gone; mkIf true -> its content; recursively.
  dropped = {
    _dropped = true;
  };
  resolve =
    v:
    if isAttrs v && (v._type or null) == "if" then
      (if v.condition then resolve v.content else dropped)
    else if isAttrs v then
      let
        resolved = mapAttrs (_: resolve) v;
      in
      builtins.removeAttrs resolved (filter (k: resolved.${k} == dropped) (attrNames resolved))
    else if isList v then
      map resolve v
    else
      v;

  config = {
    services.data-mesher = {
      enable = true;
      inherit package openFirewall settings;
      user = "data-mesher";
      group = "data-mesher";
    };
    environment.etc."data-mesher/dm.toml".source = "/nix/store/00000000000000000000000000000000-dm.toml";
  };

  module = import ../nix/module.nix {
    inherit config;
    lib = stubLib;
    pkgs = { };
  };
  out = resolve module.config;

  unit = out.systemd.services.data-mesher;
  # Unit-file spelling of a value: booleans as true/false, lists space-separated, and the
  # package's binary as the path contrib/systemd installs it to.
  unitValue =
    v:
    replaceStrings [ "${package}/bin/data-mesher" ] [ "/usr/local/bin/data-mesher" ] (
      if isBool v then
        (if v then "true" else "false")
      else if isList v then
        concatStringsSep " " (map toString v)
      else
        toString v
    );
  lines =
    map (k: "${k}=${unitValue unit.serviceConfig.${k}}") (attrNames unit.serviceConfig)
    ++ [
      "Wants=${unitValue unit.wants}"
      "After=${unitValue unit.after}"
      "WantedBy=${unitValue unit.wantedBy}"
      "Description=${unit.description}"
    ];
in
{
  config = out;
  etcText = out.environment.etc."data-mesher/dm.toml".text;
  unitLines = concatStringsSep "\n" (sort (a: b: a < b) lines) + "\n";
  optionDefaults = {
    openFirewall = module.options.services.data-mesher.openFirewall.default;
    user = module.options.services.data-mesher.user.default;
    configFile = module.options.services.data-mesher.configFile.default;
  };
  tmpfiles = out.systemd.tmpfiles.rules or null;
  failedAssertions = map (a: a.message) (filter (a: !a.assertion) out.assertions);
}
