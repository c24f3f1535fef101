# The data-mesher binary (daemon and CLI), built with SwiftPM from nixpkgs.
#
# Nix builds run without network, so SwiftPM cannot fetch the dependencies itself. They are
# pinned in the repository: Package.resolved (SwiftPM's pins) and nix/swiftpm2nix/ (the
# workspace state and one fixed-output hash per dependency, in the shape nixpkgs' swiftpm2nix
# writes). After a change of Package.swift, regenerate them with
#
#   scripts/update-nix-pins
#
# and commit Package.resolved and nix/swiftpm2nix/. tests-nix/nix_test.sh runs
# `scripts/update-nix-pins --check`, which recomputes every hash and fails on drift.
#
# The configure step is written out here instead of taking swiftpm2nix.helpers: those assert a
# workspace state of version 5 or 6, and SwiftPM 6 writes version 7. It does what they do: one
# fetchgit per dependency, linked into .build/checkouts, with the pinned workspace state.
#
# Package.swift asks for swift-tools-version 6.0, so the nixpkgs in use must have Swift 6.
# See docs/DEPLOY.md ("Building with Nix") for what has and has not been checked.
{
  lib,
  fetchgit,
  swift,
  swiftpm,
  swiftPackages,
}:
let
  generated = import ./swiftpm2nix;
  workspaceState = lib.importJSON generated.workspaceStateFile;

  # One fixed-output fetch per dependency, named by its checkout folder (subpath).
  sources = lib.listToAttrs (
    map (dep: {
      name = dep.subpath;
      value = fetchgit {
        url = dep.packageRef.location;
        rev = dep.state.checkoutState.revision;
        hash = generated.hashes.${dep.subpath};
      };
    }) workspaceState.object.dependencies
  );

  configure = ''
    mkdir -p .build/checkouts
    install -m 0600 ${generated.workspaceStateFile} ./.build/workspace-state.json
  ''
  + lib.concatStrings (
    lib.mapAttrsToList (name: src: ''
      ln -s '${src}' '.build/checkouts/${name}'
    '') sources
  );
in
swiftPackages.stdenv.mkDerivation {
  pname = "data-mesher";
  version = "0.1.0";

  src = lib.cleanSourceWith {
    src = ../.;
    filter =
      path: type:
      let
        base = baseNameOf path;
      in
      !(lib.hasPrefix ".build" base)
      && !(lib.hasPrefix ".venv" base)
      && base != ".demo"
      && base != "bench"
      && base != "tests-net"
      && base != "tests-nix";
  };

  nativeBuildInputs = [
    swift
    swiftpm
  ];
  buildInputs = [ swiftPackages.Foundation ];

  configurePhase = ''
    runHook preConfigure
    ${configure}
    runHook postConfigure
  '';

  # Only the daemon/CLI product; dm-sim and the fuzz libraries are not installed.
  swiftpmFlags = [ "--product data-mesher" ];

  # Package.swift links release builds statically with lld and RELR relocations; nixpkgs'
  # toolchain is linked the plain way (not measured there).
  DM_PLAIN_LINK = "1";

  installPhase = ''
    runHook preInstall
    binPath="$(swiftpmBinPath)"
    install -Dm755 "$binPath/data-mesher" "$out/bin/data-mesher"
    runHook postInstall
  '';

  passthru = { inherit sources; };

  meta = {
    description = "Replicates ED25519-signed files across the machines of a cluster (gossip, SWIM)";
    mainProgram = "data-mesher";
    platforms = lib.platforms.linux;
  };
}
