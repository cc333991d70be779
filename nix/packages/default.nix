# packages.<system>.default: the flt package, so `nix run`, `nix build` and `nix profile install`
# need no attribute name.
{ perSystem, ... }:
perSystem.self.flt
