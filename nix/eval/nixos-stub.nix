# The few NixOS options flt's modules and the VM checks set, declared the way NixOS declares them
# (assertions, systemd.services, the firewall, kernel sysctls, environment.etc, system.build.toplevel,
# virtualisation.additionalPaths), and the check NixOS runs before it builds a system: failed
# assertions stop it with their messages. Modules get `extendModules` from lib.evalModules, as
# in NixOS.
{ lib }:
pkgs: modules:
let
  anything = lib.types.attrsOf lib.types.anything;
  # What NixOS builds of a configuration: refused, with every failed assertion, before any unit
  # is looked at.
  systemOf =
    config:
    let
      failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
    in
    {
      inherit failedAssertions;
      toplevel =
        if failedAssertions != [ ] then
          throw "Failed assertions:\n${lib.concatMapStrings (m: "- ${m}\n") failedAssertions}"
        else
          builtins.toJSON {
            inherit (config.systemd) services;
            inherit (config.networking) firewall;
            inherit (config.environment) etc;
            packages = map toString config.environment.systemPackages;
          };
    };
  base =
    { config, ... }:
    {
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
        boot.kernel.sysctl = lib.mkOption {
          type = anything;
          default = { };
        };
        networking.firewall.allowedUDPPorts = lib.mkOption {
          type = lib.types.listOf lib.types.port;
          default = [ ];
        };
        systemd.package = lib.mkOption {
          type = lib.types.package;
          default = pkgs.systemd;
        };
        system.build = lib.mkOption {
          type = lib.types.lazyAttrsOf lib.types.unspecified;
          default = { };
        };
        virtualisation.additionalPaths = lib.mkOption {
          type = lib.types.listOf lib.types.package;
          default = [ ];
        };
        # nix.conf settings (NixOS: a freeform submodule); the artifacts check sets substituters.
        nix.settings = lib.mkOption {
          type = lib.types.submodule { freeformType = lib.types.attrsOf lib.types.anything; };
          default = { };
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
      # A system as a derivation (what the VM checks deploy): its JSON is systemOf's `toplevel`, so
      # failed assertions stop its evaluation as NixOS stops its build.
      config.system.build.toplevel =
        pkgs.runCommand "nixos-system-stub" { json = (systemOf config).toplevel; } ''
          printf '%s' "$json" > "$out"
        '';
    };
  evaluated = lib.evalModules { modules = [ base ] ++ modules; };
  inherit (evaluated) config;
in
{
  inherit config;
  inherit (systemOf config) failedAssertions toplevel;
}
