# Nix public keys (trusted-public-keys form, `NAME:BASE64` of 32 bytes) given to flt as
# `nix_trusted_keys`: each is checked here, so a typo fails the build instead of the agent's
# start. Not a blueprint folder: only imported by the modules.
{ lib }:
option: keys:
map (key: {
  assertion = builtins.match "[^: ]+:[A-Za-z0-9+/]{43}=" key != null;
  message = "${option}: \"${key}\" is not a Nix public key (NAME:BASE64 of 32 bytes, the public half of `nix-store --generate-binary-cache-key NAME sk pk`).";
}) keys
