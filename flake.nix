{
  description = "flt: fleet management for NixOS machines over iroh";

  # No flake.lock is committed: it cannot be produced offline where this project is developed.
  # `nix flake lock` (or any `nix run/develop/build`) writes one on first use.
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    blueprint.url = "github:numtide/blueprint";
    blueprint.inputs.nixpkgs.follows = "nixpkgs";
  };

  # Folders under nix/ become outputs (numtide/blueprint): packages/flt -> packages.*.flt,
  # packages/default.nix -> packages.*.default, devshells/default.nix -> devShells.*.default,
  # modules/nixos/*.nix -> nixosModules.*, checks/*.nix -> checks.*.
  outputs =
    inputs:
    inputs.blueprint {
      inherit inputs;
      prefix = "nix/";
      # Only where the prebuilt iroh addon (@number0/iroh 1.1.0) exists: its linux-arm64-gnu
      # addon is listed but not published, and it has no darwin-x64 one. The NixOS modules and
      # the VM check are Linux only.
      systems = [
        "x86_64-linux"
        "aarch64-darwin"
      ];
    };
}
