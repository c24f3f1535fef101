# Evaluates nix/package.nix without nixpkgs, for tests-nix/nix_test.sh: fetchgit and
# mkDerivation are stand-ins that return their arguments, so the test sees which sources the
# package fetches (url, rev, hash) and what its configure phase does with them.
#
#   nix-instantiate --eval --strict --json tests-nix/package-eval.nix
let
  inherit (builtins)
    attrNames
    concatStringsSep
    listToAttrs
    map
    substring
    stringLength
    ;
  stubLib = {
    inherit listToAttrs;
    importJSON = path: builtins.fromJSON (builtins.readFile path);
    concatStrings = concatStringsSep "";
    mapAttrsToList = f: attrs: map (name: f name attrs.${name}) (attrNames attrs);
    hasPrefix = prefix: s: substring 0 (stringLength prefix) s == prefix;
    cleanSourceWith = { src, filter }: "source";
    platforms.linux = [ "x86_64-linux" ];
  };
  drv = import ../nix/package.nix {
    lib = stubLib;
    # a fetched source renders as a store path named by its revision
    fetchgit = args: args // { outPath = "/nix/store/fetched-${args.rev}"; };
    swift = "swift";
    swiftpm = "swiftpm";
    swiftPackages = {
      stdenv.mkDerivation = args: args;
      Foundation = "Foundation";
    };
  };
in
{
  inherit (drv) pname configurePhase swiftpmFlags;
  sources = builtins.mapAttrs (_: s: { inherit (s) url rev hash; }) drv.passthru.sources;
}
