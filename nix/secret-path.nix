# Secrets (node keys, enrollment tokens) are named by a string path, as NixOS modules do: a Nix
# path literal would copy the file into the world-readable store, so the option type is `str`
# (a path literal is refused by it) and these assertions refuse a store path or a relative one.
# Not a blueprint folder: only imported by the modules.
{ lib }:
option: path:
lib.optionals (path != null) [
  {
    assertion = lib.hasPrefix "/" path;
    message = "${option} must be an absolute path, got \"${path}\".";
  }
  {
    assertion = !(lib.hasPrefix "${builtins.storeDir}/" path);
    message = "${option} is in the Nix store (${path}), which every user can read: give the path of a file outside it, as a string (\"/etc/...\", \"/run/secrets/...\").";
  }
]
