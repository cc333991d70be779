# The few NixOS options flt's modules and the VM check set, declared the way NixOS declares them
# (assertions, systemd.services, the firewall, environment.etc), and the check NixOS runs before
# it builds a system: failed assertions stop it with their messages.
{ lib }:
pkgs: modules:
let
  anything = lib.types.attrsOf lib.types.anything;
  base = {
    options = {
      assertions = lib.mkOption {
        type = lib.types.listOf lib.types.unspecified;
        default = [ ];
      };
      warnings = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [ ];
      };
      systemd.services = lib.mkOption {
        type = lib.types.attrsOf (
          lib.types.submodule {
            freeformType = anything;
            options.wantedBy = lib.mkOption {
              type = lib.types.listOf lib.types.str;
              default = [ ];
            };
          }
        );
        default = { };
      };
      networking.firewall.allowedUDPPorts = lib.mkOption {
        type = lib.types.listOf lib.types.port;
        default = [ ];
      };
      nix.package = lib.mkOption {
        type = lib.types.package;
        default = pkgs.nix;
      };
      environment.systemPackages = lib.mkOption {
        type = lib.types.listOf lib.types.package;
        default = [ ];
      };
      environment.etc = lib.mkOption {
        type = anything;
        default = { };
      };
    };
    config._module.args.pkgs = pkgs;
  };
  evaluated = lib.evalModules { modules = [ base ] ++ modules; };
  inherit (evaluated) config;
  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
in
{
  inherit config failedAssertions;
  # What NixOS builds: refused, with every failed assertion, before any unit is looked at.
  toplevel =
    if failedAssertions != [ ] then
      throw "Failed assertions:\n${lib.concatMapStrings (m: "- ${m}\n") failedAssertions}"
    else
      builtins.toJSON {
        inherit (config.systemd) services;
        inherit (config.networking) firewall;
        packages = map toString config.environment.systemPackages;
      };
}
