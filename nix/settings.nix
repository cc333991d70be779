# The `settings` options both NixOS modules share (coordinator.nix, agent.nix): flt config keys
# every node has. Each module adds its own (bind and admins; coordinator and facts_interval).
# Not a blueprint folder: only imported by the modules.
{ lib }:
{
  relay = lib.mkOption {
    type = lib.types.str;
    default = "default";
    description = "iroh relays: `disabled`, `default` (n0's), or a relay URL.";
  };
  discovery = lib.mkOption {
    type = lib.types.enum [
      "none"
      "n0"
    ];
    default = "n0";
    description = "iroh address discovery.";
  };
  log_level = lib.mkOption {
    type = lib.types.enum [
      "error"
      "warn"
      "info"
      "debug"
    ];
    default = "info";
    description = "How much to log (to the journal).";
  };
}
