# Pure helpers for data-mesher's Nix integration: builtins only, no nixpkgs.
#
#   toTOML                    attribute set -> TOML text (what dm.toml needs, and a bit more)
#   roleSettingsToDmSettings  clan role settings (+ bootstrap machines, encryption) -> dm.toml attrs
#   renderDmToml              the same, rendered to TOML text
#   v1RoleMessage             the migration message for a removed v1 role
#
# Evaluate on its own, e.g.:
#   nix-instantiate --eval --strict -E 'let l = import ./nix/lib.nix; in l.toTOML { a.b = 1; }'
let
  inherit (builtins)
    all
    attrNames
    concatLists
    concatStringsSep
    elem
    elemAt
    filter
    foldl'
    genList
    hasAttr
    head
    isAttrs
    isBool
    isFloat
    isInt
    isList
    isPath
    isString
    length
    listToAttrs
    match
    replaceStrings
    stringLength
    substring
    tail
    toJSON
    typeOf
    ;

  # ---------------------------------------------------------------- small generic helpers

  # Deep merge: attribute sets merge key by key, anything else on the right wins.
  recursiveUpdate =
    left: right:
    left
    // listToAttrs (
      map (name: {
        inherit name;
        value =
          if hasAttr name left && isAttrs left.${name} && isAttrs right.${name} then
            recursiveUpdate left.${name} right.${name}
          else
            right.${name};
      }) (attrNames right)
    );

  # Applies f to every value that is not a table (lists and nulls included), keeping the
  # nesting; e.g. mapLeaves lib.mkDefault settings gives every key default priority.
  mapLeaves = f: attrs: builtins.mapAttrs (_: v: if isTable v then mapLeaves f v else f v) attrs;

  # One word for a POSIX shell, in single quotes.
  shellQuote = s: "'" + replaceStrings [ "'" ] [ "'\\''" ] s + "'";

  # Keeps the first occurrence of every element, in order.
  unique = foldl' (seen: x: if elem x seen then seen else seen ++ [ x ]) [ ];

  # ---------------------------------------------------------------- TOML rendering

  hexDigits = [
    "0"
    "1"
    "2"
    "3"
    "4"
    "5"
    "6"
    "7"
    "8"
    "9"
    "A"
    "B"
    "C"
    "D"
    "E"
    "F"
  ];
  hexByte = n: elemAt hexDigits (n / 16) + elemAt hexDigits (n - 16 * (n / 16));

  # Control characters (U+0001..U+001F and U+007F; Nix strings cannot hold NUL), made
  # through fromJSON since Nix string literals only have \n, \r and \t escapes.
  controlCodes = genList (i: i + 1) 31 ++ [ 127 ];
  controlChar = n: builtins.fromJSON ''"\u00${hexByte n}"'';
  namedEscapes = {
    "8" = "\\b";
    "9" = "\\t";
    "10" = "\\n";
    "12" = "\\f";
    "13" = "\\r";
  };
  escapeControl =
    n:
    let
      key = toString n;
    in
    if hasAttr key namedEscapes then namedEscapes.${key} else "\\u00${hexByte n}";

  # A TOML basic string: backslash, quote and every control character escaped. All other
  # characters (UTF-8 included) are written as they are, which TOML allows.
  quoteString =
    s:
    ''"''
    + replaceStrings ([ "\\" ''"'' ] ++ map controlChar controlCodes) (
      [ "\\\\" ''\"'' ] ++ map escapeControl controlCodes
    ) s
    + ''"'';

  # Bare keys are A-Za-z0-9_- only; anything else (e.g. "config:app", "dns/zone") is quoted.
  renderKey = key: if match "[A-Za-z0-9_-]+" key != null then key else quoteString key;
  renderPath = path: concatStringsSep "." (map renderKey path);

  # Derivations and other values with an outPath render as their path.
  isPathLike = v: isPath v || (isAttrs v && v ? outPath);

  # A table is an attribute set that is not path-like.
  isTable = v: isAttrs v && !(isPathLike v);

  renderValue =
    path: v:
    if v == null then
      throw "toTOML: ${renderPath path}: null inside a list or inline table cannot be written in TOML"
    else if isString v then
      quoteString v
    else if isPathLike v then
      quoteString (toString v)
    else if isBool v then
      (if v then "true" else "false")
    else if isInt v then
      toString v
    else if isFloat v then
      # toJSON writes a float in a form TOML reads (e.g. 1.5, 1e+20); integral values get ".0".
      let
        text = toJSON v;
      in
      if match "-?[0-9]+" text != null then text + ".0" else text
    else if isList v then
      "[" + concatStringsSep ", " (genList (i: renderValue (path ++ [ "[${toString i}]" ]) (elemAt v i)) (length v)) + "]"
    else if isTable v then
      let
        keys = filter (k: v.${k} != null) (attrNames v);
      in
      if keys == [ ] then
        "{}"
      else
        "{ "
        + concatStringsSep ", " (map (k: "${renderKey k} = ${renderValue (path ++ [ k ]) v.${k}}") keys)
        + " }"
    else
      throw "toTOML: ${renderPath path}: a ${typeOf v} cannot be written in TOML";

  # Body of one table: its plain key/value lines first (sorted), then each sub-table under
  # its own [header]. Null values are left out, so optional settings can be null.
  renderTable =
    path: attrs:
    let
      keys = filter (k: attrs.${k} != null) (attrNames attrs);
      plainKeys = filter (k: !(isTable attrs.${k})) keys;
      tableKeys = filter (k: isTable attrs.${k}) keys;
      plainLines = map (k: "${renderKey k} = ${renderValue (path ++ [ k ]) attrs.${k}}\n") plainKeys;
      subTables = map (
        k:
        let
          sub = path ++ [ k ];
        in
        "\n[${renderPath sub}]\n" + renderTable sub attrs.${k}
      ) tableKeys;
    in
    concatStringsSep "" (plainLines ++ subTables);

  # attrs -> TOML document text. Top-level keys come first, then the tables in key order.
  toTOML =
    attrs:
    if !(isTable attrs) then
      throw "toTOML: the document must be an attribute set, not a ${typeOf attrs}"
    else
      let
        text = renderTable [ ] attrs;
      in
      # a document that starts with a table has a leading blank line from renderTable
      if substring 0 1 text == "\n" then substring 1 (stringLength text) text else text;

  # ---------------------------------------------------------------- clan role settings -> dm.toml

  logLevels = [
    "fatal"
    "error"
    "warn"
    "info"
    "debug"
  ];

  defaultPort = 7946;
  defaultHttpPort = 7331;
  defaultStateDir = "/var/lib/data-mesher";
  # Lifetime of the node certificates the clan service issues (clan-core's 90 days).
  defaultCertificateValidity = "2160h";

  # Settings of the v1 module that have no v2 meaning, with what to do instead.
  removedSettings = {
    network = "data-mesher v2: setting 'network' was removed; use 'interfaces' (a list) instead of 'network.interface', and 'port' instead of 'network.port' (TLD and host TTL are gone: publish files under 'files' instead)";
    extraHostNames = "data-mesher v2: setting 'extraHostNames' was removed; host name claims are gone, publish signed files listed under 'files' instead";
  };

  v1RoleMessage =
    role:
    "data-mesher v2: role '${role}' was removed; use role 'default' (and 'bootstrap' for the machines the others join through). "
    + "v2 has no admin/peer/signer distinction: every 'default' machine stores and relays the files listed in its 'files' setting, "
    + "and whoever holds a private key listed for a file can sign it. Move the machines of role '${role}' to role 'default'.";

  v1Roles = [
    "admin"
    "peer"
    "signer"
  ];

  # Throws the migration message for the first v1 role that has machines, else returns true.
  # `roles` is shaped like an inventory instance's roles: { admin.machines.x = { }; ... }.
  checkRoles =
    roles:
    let
      used = filter (r: hasAttr r roles && (roles.${r}.machines or { }) != { }) v1Roles;
    in
    if used != [ ] then throw (v1RoleMessage (head used)) else true;

  # "host" -> "host:port"; IPv6 literals get brackets; "host:port" and "[v6]:port" stay as given.
  hostPort =
    port: host:
    if match "[[][^]]*[]]:[0-9]+" host != null then
      host
    else if match "[^:]+:[0-9]+" host != null then
      host
    else if match ".*:.*" host != null then
      "[${host}]:${toString port}"
    else
      "${host}:${toString port}";

  # A value for an error message (never copies paths to the store, never forces functions).
  describe =
    v:
    if isString v || isInt v || isBool v || isFloat v || v == null then
      toJSON v
    else if isList v && all (x: isString x || isInt x) v then
      toJSON v
    else
      "a ${typeOf v}";

  checkStringList =
    what: v:
    if isList v && all isString v then
      v
    else
      throw "data-mesher: '${what}' must be a list of strings, not ${describe v}";

  # Lists of file paths: strings or Nix paths (a Nix path is used where it is, not copied).
  checkPathList =
    what: v:
    if isList v && all (x: isString x || isPath x) v then
      map toString v
    else
      throw "data-mesher: '${what}' must be a list of file paths (strings), not a ${typeOf v}";

  checkPort =
    what: v:
    if isInt v && v >= 1 && v <= 65535 then
      v
    else
      throw "data-mesher: '${what}' must be a port number 1-65535, not ${describe v}";

  checkFiles =
    files:
    if !(isAttrs files) then
      throw "data-mesher: 'files' must be an attribute set of file name -> list of base64 public keys"
    else
      let
        bad = filter (
          name:
          let
            keys = files.${name};
          in
          !(isList keys && keys != [ ] && all isString keys)
        ) (attrNames files);
      in
      if bad != [ ] then
        throw "data-mesher: files.\"${head bad}\" must be a non-empty list of base64 public keys"
      else
        files;

  # Merges file maps (name -> list of keys) in order: lists of the same name are concatenated,
  # keys already present are not repeated. Used for the role's 'files' plus every clan
  # export's dataMesher.files.
  mergeFiles = foldl' (
    acc: files:
    acc
    // listToAttrs (
      map (name: {
        inherit name;
        value = unique ((acc.${name} or [ ]) ++ files.${name});
      }) (attrNames files)
    )
  ) { };

  # The dataMesher.files of every export value (clan passes `exports` to perInstance as an
  # attribute set of scope key -> export value; values without dataMesher are skipped).
  exportedFiles =
    exports:
    map (v: if isAttrs v && (v.dataMesher or null) != null then v.dataMesher.files or { } else { }) (
      map (k: exports.${k}) (attrNames exports)
    );

  # Encryption paths (all optional but keyring) -> [cluster.encryption].
  encryptionSection =
    enc:
    let
      keyring = checkPathList "encryption.keyring" (enc.keyring or [ ]);
      identityKey = enc.identityKey or null;
      identityCert = enc.identityCert or null;
      cas = checkPathList "encryption.certificateAuthorities" (enc.certificateAuthorities or [ ]);
      identityParts = length (filter (x: x != null) [ identityKey identityCert ]);
    in
    if keyring == [ ] then
      throw "data-mesher: encryption needs at least one keyring file"
    else if identityParts == 1 || (identityParts == 2 && cas == [ ]) then
      throw "data-mesher: encryption identityKey, identityCert and certificateAuthorities must be set together"
    else
      {
        enable = true;
        inherit keyring;
        identity_key = if identityKey == null then null else toString identityKey;
        identity_cert = if identityCert == null then null else toString identityCert;
        certificate_authorities = if cas == [ ] then null else cas;
      };

  # The mapping from a clan 'default' role's settings to the dm.toml attribute set.
  #
  #   settings           roles.default settings: interfaces (required), port (7946),
  #                      bootstrapNodes ([]), extraBootstrapNodes ([]), files ({}), logLevel ("info")
  #   machineName        this machine: becomes node_name, and is left out of the bootstrap list
  #   bootstrapMachines  the 'bootstrap' role's machines: { name = "address or DNS name"; }
  #                      (a value may carry its own ":port"; else the cluster port is added)
  #   encryption         null, or { keyring = [ path ]; identityKey; identityCert; certificateAuthorities = [ path ]; }
  #   stateDir           state_dir ("/var/lib/data-mesher")
  #   extraSettings      merged (deeply) over the result, for anything else dm.toml knows
  #
  # bootstrap_nodes = bootstrapNodes ++ bootstrap-role machines ++ extraBootstrapNodes, duplicates removed.
  roleSettingsToDmSettings =
    {
      settings,
      machineName ? null,
      bootstrapMachines ? { },
      encryption ? null,
      stateDir ? defaultStateDir,
      extraSettings ? { },
    }:
    let
      removedUsed = filter (k: hasAttr k settings && settings.${k} != null) (attrNames removedSettings);
      logLevel = settings.logLevel or "info";
      port = checkPort "port" (settings.port or defaultPort);
      interfaces =
        if hasAttr "interfaces" settings then
          checkStringList "interfaces" settings.interfaces
        else
          throw "data-mesher: setting 'interfaces' is required (e.g. [ \"eth1\" ]; [ ] binds every address)";
      fromRole = map (name: hostPort port bootstrapMachines.${name}) (
        filter (name: name != machineName) (attrNames bootstrapMachines)
      );
      bootstrapNodes = unique (
        checkStringList "bootstrapNodes" (
          if (settings.bootstrapNodes or null) == null then [ ] else settings.bootstrapNodes
        )
        ++ fromRole
        ++ checkStringList "extraBootstrapNodes" (settings.extraBootstrapNodes or [ ])
      );
      base = {
        log_level = logLevel;
        state_dir = stateDir;
        node_name = machineName;
        cluster = {
          inherit port interfaces;
          # clan-core's service sets both to 30s
          join_interval = "30s";
          push_pull_interval = "30s";
          bootstrap_nodes = bootstrapNodes;
          encryption = if encryption == null then null else encryptionSection encryption;
        };
        http = {
          port = defaultHttpPort;
          interfaces = [ "lo" ];
        };
        files = checkFiles (settings.files or { });
      };
    in
    if removedUsed != [ ] then
      throw removedSettings.${head removedUsed}
    else if !(elem logLevel logLevels) then
      throw "data-mesher: logLevel ${describe logLevel} is not one of ${concatStringsSep ", " logLevels}"
    else
      recursiveUpdate base extraSettings;

  renderDmToml = args: toTOML (roleSettingsToDmSettings args);
in
{
  inherit
    toTOML
    quoteString
    recursiveUpdate
    mapLeaves
    shellQuote
    unique
    hostPort
    logLevels
    defaultPort
    defaultHttpPort
    defaultStateDir
    v1Roles
    v1RoleMessage
    checkRoles
    roleSettingsToDmSettings
    renderDmToml
    mergeFiles
    exportedFiles
    defaultCertificateValidity
    ;
}
