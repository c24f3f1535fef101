# The data-mesher binary (daemon and CLI), built with SwiftPM from nixpkgs.
#
# Nix builds run without network, so SwiftPM cannot fetch the dependencies itself; they are
# pinned by swiftpm2nix. To (re)generate nix/swiftpm2nix/ after a change of Package.swift:
#
#   swift package resolve        # writes Package.resolved and .build/workspace-state.json
#   nix run nixpkgs#swiftpm2nix  # writes ./nix/default.nix and ./nix/workspace-state.json
#   mkdir -p nix/swiftpm2nix && mv nix/default.nix nix/workspace-state.json nix/swiftpm2nix/
#
# and commit nix/swiftpm2nix/ (Package.resolved is not tracked; swiftpm2nix pins every
# dependency's revision and hash in nix/swiftpm2nix/default.nix instead).
#
# Package.swift asks for swift-tools-version 6.0, so the nixpkgs in use must have Swift 6.
{
  lib,
  swift,
  swiftpm,
  swiftpm2nix,
  swiftPackages,
}:
let
  generatedDir = ./swiftpm2nix;
  generated =
    if builtins.pathExists (generatedDir + "/default.nix") then
      swiftpm2nix.helpers generatedDir
    else
      throw "data-mesher: nix/swiftpm2nix/ is missing; generate it as described at the top of nix/package.nix";
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

  configurePhase = generated.configure;

  # Only the daemon/CLI product; dm-sim and the fuzz libraries are not installed.
  swiftpmFlags = [ "--product data-mesher" ];

  installPhase = ''
    runHook preInstall
    binPath="$(swiftpmBinPath)"
    install -Dm755 "$binPath/data-mesher" "$out/bin/data-mesher"
    runHook postInstall
  '';

  meta = {
    description = "Replicates ED25519-signed files across the machines of a cluster (gossip, SWIM)";
    mainProgram = "data-mesher";
    platforms = lib.platforms.linux;
  };
}
