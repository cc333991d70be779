# The npm dependencies for importNpmLock, from a lockfile without `resolved` URLs: npm here is
# set to leave registry URLs out of package-lock.json, and no file of this project names a
# registry. Each locked tarball becomes a fixed-output derivation whose hash IS the lockfile's
# `integrity` (sha512 SRI), fetched by `npm pack NAME@VERSION` from npm's built-in default
# registry (or $npm_config_registry of the Nix daemon, for a mirror). Nix checks every byte
# against the lockfile, so the registry is trusted no more than with `npm ci`.
# Entries with neither `resolved` nor `integrity` (platform addons npm could not lock, e.g. the
# iroh and cbor-extract ones for other platforms) get no source; npm skips them as optional.
{
  lib,
  runCommand,
  nodejs,
  cacert,
  importNpmLock,
}:
{ npmRoot }:
let
  lock = lib.importJSON (npmRoot + "/package-lock.json");

  # "node_modules/a/node_modules/@s/b" -> "@s/b"; an alias ("x-cjs": npm:x@1) has `name`.
  nameOf =
    path: entry: entry.name or (lib.head (builtins.match ".*node_modules/((@[^/]+/)?[^/]+)" path));

  tarball =
    path: entry:
    let
      spec = "${nameOf path entry}@${entry.version}";
    in
    runCommand
      (lib.strings.sanitizeDerivationName "${lib.removePrefix "@" (nameOf path entry)}-${entry.version}.tgz")
      {
        nativeBuildInputs = [ nodejs ];
        outputHash = entry.integrity;
        outputHashMode = "flat";
        # A proxy, or a registry mirror, of the machine that builds.
        impureEnvVars = lib.fetchers.proxyImpureEnvVars ++ [
          "npm_config_registry"
          "NPM_CONFIG_REGISTRY"
        ];
        SSL_CERT_FILE = "${cacert}/etc/ssl/certs/ca-bundle.crt";
        inherit spec;
      }
      ''
        export HOME="$TMPDIR" npm_config_cache="$TMPDIR/npm-cache"
        mkdir "$TMPDIR/pack" && cd "$TMPDIR/pack"
        npm pack --ignore-scripts --cafile "$SSL_CERT_FILE" --loglevel warn "$spec"
        set -- *.tgz
        [ "$#" -eq 1 ] && [ -f "$1" ] || { echo "npm pack $spec made no single tarball" >&2; exit 1; }
        mv "$1" "$out"
      '';

  # Only what importNpmLock cannot fetch itself: a `resolved` URL (another lockfile) is left to it.
  fetchable =
    path: entry:
    path != "" && entry ? integrity && !(entry ? resolved) && !(entry.link or false) && entry ? version;
  tarballs = lib.mapAttrs tarball (lib.filterAttrs fetchable lock.packages);
in
importNpmLock {
  inherit npmRoot;
  packageSourceOverrides = tarballs;
}
// {
  inherit tarballs;
}
