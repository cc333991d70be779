# The flt package: buildNpmPackage over the repository's own package-lock.json (importNpmLock,
# with each tarball checked against the lockfile's integrity: npm-deps.nix), on a pinned Node.
# The iroh transport is a prebuilt N-API addon (@number0/iroh-<platform>): autoPatchelfHook
# points it at the C++ runtime it links.
{
  pkgs,
  lib ? pkgs.lib,
  ...
}:
let
  nodejs = pkgs.nodejs_22;
  root = ../../..;
  # Only what the build and the tests read: editing the README or nix/ rebuilds nothing.
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (root + "/package.json")
      (root + "/package-lock.json")
      (root + "/tsconfig.json")
      (root + "/tsconfig.build.json")
      (root + "/vitest.config.ts")
      (root + "/eslint.config.js")
      (root + "/src")
      (root + "/sync")
      (root + "/stores")
      (root + "/bench")
      (root + "/test")
      (root + "/README.md")
    ];
  };
  version = (lib.importJSON (root + "/package.json")).version;

  # Platforms with a published iroh addon (@number0/iroh 1.1.0): the linux arm64 one is listed
  # but not published, and there is no darwin x64 one at all.
  platforms = [
    "x86_64-linux"
    "aarch64-darwin"
  ];

  npmDeps = import ./npm-deps.nix {
    inherit lib nodejs;
    inherit (pkgs) runCommand cacert importNpmLock;
  } { npmRoot = src; };

  # importNpmLock's hook runs `npm install` and builds native addons (cbor-extract) against
  # Node's headers: the pinned Node, not pkgs.nodejs. Built from the same hooks file as
  # pkgs.importNpmLock.npmConfigHook, so it does not depend on how nixpkgs wraps that attribute.
  npmConfigHook =
    (pkgs.callPackages (pkgs.path + "/pkgs/build-support/node/import-npm-lock/hooks") {
      inherit nodejs;
    }).npmConfigHook;

  # What the package and its test run share: sources, dependencies, and the addon's patching.
  common = {
    inherit
      version
      src
      nodejs
      npmDeps
      npmConfigHook
      ;
    nativeBuildInputs = lib.optionals pkgs.stdenv.hostPlatform.isLinux [ pkgs.autoPatchelfHook ];
    buildInputs = lib.optionals pkgs.stdenv.hostPlatform.isLinux [ pkgs.stdenv.cc.cc.lib ];
    # npm installs only the addon for this platform; should a musl variant come along, it
    # links against musl's libc, which a glibc system does not have and never loads.
    autoPatchelfIgnoreMissingDeps = [ "libc.musl-*.so.1" ];
  };

  flt = pkgs.buildNpmPackage (common // {
    pname = "flt";
    npmBuildScript = "build";
    postInstall = ''
      rm -rf $out/lib/node_modules/flt/node_modules/@number0/iroh-linux-*-musl
    '';

    doInstallCheck = true;
    installCheckPhase = ''
      runHook preInstallCheck
      $out/bin/flt --version
      runHook postInstallCheck
    '';

    passthru = {
      tests.suite = tests;
      inherit npmDeps;
    };

    meta = {
      description = "Fleet management for NixOS machines over iroh";
      mainProgram = "flt";
      license = lib.licenses.mit;
      inherit platforms;
    };
  });

  # The test suite in the build sandbox: loopback works there, the network and the real Nix
  # store do not, so tests that need them skip themselves (FLT_SANDBOX, see test/helpers/env.ts).
  tests = pkgs.buildNpmPackage (common // {
    pname = "flt-tests";
    nativeCheckInputs = [ pkgs.openssh ];
    dontNpmBuild = true;
    doCheck = true;
    FLT_SANDBOX = "1";
    # The addon is patched for $out in the fixup phase; the tests load it from the build tree.
    preCheck = lib.optionalString pkgs.stdenv.hostPlatform.isLinux ''
      autoPatchelf node_modules/@number0
    '';
    checkPhase = ''
      runHook preCheck
      export HOME=$TMPDIR
      npx vitest run
      runHook postCheck
    '';
    installPhase = ''
      touch $out
    '';
    meta = { inherit platforms; };
  });
in
flt
