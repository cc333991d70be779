{
  description = "flt: fleet management for NixOS machines over iroh";

  # No flake.lock is committed: it cannot be produced offline where this project is developed.
  # `nix flake lock` (or any `nix run/develop/build`) writes one on first use.
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    blueprint.url = "github:numtide/blueprint";
    blueprint.inputs.nixpkgs.follows = "nixpkgs";
  };

  # Folders under nix/ become outputs (numtide/blueprint): packages/flt -> packages.*.flt (and
  # default), devshells/default.nix -> devShells.*.default, modules/nixos/*.nix ->
  # nixosModules.*, checks/*.nix -> checks.*.
  outputs =
    inputs:
    inputs.blueprint {
      inherit inputs;
      prefix = "nix/";
      # The iroh addon is prebuilt for these; NixOS modules and VM checks are Linux only.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
    };
}
