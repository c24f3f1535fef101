# The example inventory of the seed service description (seed/data-mesher-service.txt), as
# a clan user writes it in inventory.instances; tests-nix/nix_test.sh maps its
# roles.default.settings to dm.toml and checks the result with the real binary.
{
  data-mesher = {
    module = {
      name = "data-mesher";
      input = "clan-core";
    };
    roles.default.settings = {
      interfaces = [ "eth1" ];
      bootstrapNodes = [
        "192.168.1.1:7946"
        "192.168.1.2:7946"
      ];
      files = {
        "config:app" = [
          "azwT+VhTxA+BF73Hwq0uqdXHG8XvHU2BknoVXgmEjww="
        ];
        "shared:data" = [
          "azwT+VhTxA+BF73Hwq0uqdXHG8XvHU2BknoVXgmEjww="
          "Mdtz9s2DEyEk0DL8ZzW7WqwAehoQ97PFHVbJJdskkGo="
        ];
      };
    };
  };
}
