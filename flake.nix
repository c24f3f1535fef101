{
  description = "data-mesher: replicate ED25519-signed files across the machines of a cluster";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The module with this flake's package as its default.
      nixosModule =
        { lib, pkgs, ... }:
        {
          imports = [ ./nix/module.nix ];
          services.data-mesher.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };
    in
    {
      # Pure helpers (builtins only): toTOML, roleSettingsToDmSettings, renderDmToml, ...
      lib = import ./nix/lib.nix;

      packages = forAllSystems (pkgs: rec {
        data-mesher = pkgs.callPackage ./nix/package.nix { };
        default = data-mesher;
      });

      nixosModules = {
        data-mesher = nixosModule;
        default = nixosModule;
      };

      # The clan service: inventory.instances.<name>.module = { name = "data-mesher"; input = "data-mesher"; }
      clan.modules.data-mesher = ./nix/clan-service.nix;

      # Evaluation-only checks (the same ones tests-nix/nix_test.sh runs without nixpkgs).
      checks = forAllSystems (pkgs: {
        dm-toml-seed =
          let
            text = self.lib.renderDmToml {
              settings = {
                interfaces = [ "eth1" ];
                bootstrapNodes = [
                  "192.168.1.1:7946"
                  "192.168.1.2:7946"
                ];
                files."config:app" = [ "azwT+VhTxA+BF73Hwq0uqdXHG8XvHU2BknoVXgmEjww=" ];
              };
            };
          in
          pkgs.writeText "dm.toml" text;
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-rfc-style);
    };
}
