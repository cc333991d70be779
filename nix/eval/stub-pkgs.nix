# A stand-in for nixpkgs' `pkgs`, just large enough to evaluate this flake (nixpkgs itself is too
# large to fetch where flt is developed). Real: `lib`, and the files under `path` (importNpmLock
# and its hooks, from nixpkgs). Stubs: stdenv, buildNpmPackage, Node, the NixOS test driver.
# Every stub derivation is a real `derivation` with structured attrs, so evaluating its drvPath
# forces every argument the flake hands it. The ones with a `buildCommand` can be built in the
# evaluation chroot (sandbox off: /bin/bash, and Node and npm from the chroot's /usr/bin).
{
  lib,
  system,
  # A directory laid out like nixpkgs that holds the nixpkgs files the flake reads.
  nixpkgsPath,
  # Evaluates NixOS modules (nixos-stub.nix), for the test driver stub.
  evalNixos,
}:
let
  hostPlatform = lib.systems.elaborate system;

  mkDrv =
    name: attrs:
    let
      drv = derivation (
        {
          inherit name system;
          builder = "/bin/bash";
          __structuredAttrs = true;
          args = [
            "-euc"
            ''
              . "$NIX_ATTRS_SH_FILE"
              out="''${outputs[out]}"
              for p in ''${nativeBuildInputs[@]+"''${nativeBuildInputs[@]}"}; do PATH="$p/bin:$PATH"; done
              export PATH="$PATH:/usr/bin:/bin"
              ${attrs.buildCommand or "echo 'stub: not buildable here' >&2; exit 1"}
            ''
          ];
        }
        // removeAttrs attrs [
          "passthru"
          "meta"
          "buildCommand"
          "name"
        ]
      );
    in
    drv
    // (attrs.passthru or { })
    // {
      meta = attrs.meta or { };
      passthru = attrs.passthru or { };
    };

  # A Node that runs the chroot's own node and npm.
  mkNode =
    version:
    mkDrv "nodejs-${version}-stub" {
      inherit version;
      buildCommand = ''
        mkdir -p "$out/bin" "$out/lib/node_modules/npm/node_modules/node-gyp/bin"
        ln -s /usr/bin/node /usr/bin/npm "$out/bin/"
      '';
      passthru = {
        python = mkDrv "python3-stub" { };
        meta.mainProgram = "node";
      };
    };

  pkgs = {
    inherit lib system;
    path = nixpkgsPath;
    callPackage = lib.callPackageWith pkgs;
    callPackages = lib.callPackagesWith pkgs;
    newScope = extra: lib.callPackageWith (pkgs // extra);

    stdenv = {
      inherit hostPlatform;
      inherit (hostPlatform) isLinux isDarwin;
      mkDerivation = args: mkDrv (args.name or "${args.pname}-${args.version}") args;
      cc.cc.lib = mkDrv "gcc-lib-stub" { };
    };
    stdenvNoCC = pkgs.stdenv;
    runCommand = name: env: buildCommand: mkDrv name (env // { inherit buildCommand; });
    fetchurl = args: mkDrv (baseNameOf args.url) { outputHash = args.hash; };
    makeSetupHook =
      {
        name,
        substitutions ? { },
        ...
      }:
      _script:
      mkDrv name {
        # Paths stay names: the hook scripts themselves are not fetched here.
        substitutions = lib.mapAttrs (_: v: if builtins.isPath v then toString v else v) substitutions;
      };
    # Real: nixpkgs' importNpmLock, made the way all-packages.nix makes it.
    importNpmLock = pkgs.callPackage (nixpkgsPath + "/pkgs/build-support/node/import-npm-lock") { };
    srcOnly = drv: mkDrv "${drv.name}-source" { src = drv; };
    cctools = mkDrv "cctools-stub" { };

    nodejs_22 = mkNode "22";
    nodejs = mkNode "24";
    cacert = mkDrv "cacert-stub" {
      buildCommand = ''
        mkdir -p "$out/etc/ssl/certs"
        # The host's bundle (run.sh copies it in): it holds any CA of a TLS-inspecting proxy.
        cp /eval-inputs/ca-bundle.crt "$out/etc/ssl/certs/ca-bundle.crt"
      '';
    };
    autoPatchelfHook = mkDrv "auto-patchelf-hook-stub" { };
    openssh = mkDrv "openssh-stub" { };
    git = mkDrv "git-stub" { };
    nix = mkDrv "nix-stub" { };
    iproute2 = mkDrv "iproute2-stub" { };
    coreutils = mkDrv "coreutils-stub" { };
    systemd = mkDrv "systemd-stub" { };
    emptyFile = mkDrv "empty-file-stub" { };

    # buildNpmPackage adds Node, its hooks and Python to the inputs; the rest of its arguments
    # go to the derivation as they are. `stubArgs` lets the harness look at what it was given.
    buildNpmPackage =
      args:
      mkDrv "${args.pname}-${args.version}" (
        args
        // {
          nativeBuildInputs = (args.nativeBuildInputs or [ ]) ++ [
            args.nodejs
            args.npmConfigHook
            args.nodejs.python
          ];
          passthru = (args.passthru or { }) // {
            stubArgs = args;
          };
        }
      );
    mkShell = args: mkDrv "nix-shell" args;

    formats.json = _: {
      type = lib.types.attrsOf lib.types.anything;
      generate =
        name: value:
        pkgs.runCommand name { json = builtins.toJSON value; } ''printf '%s' "$json" > "$out"'';
    };
    writeShellScript = name: text: builtins.toFile name "#!/bin/sh\n${text}";

    # The NixOS test driver: evaluates each node's modules (assertions included) and keeps
    # their systemd units and the test script in the derivation. A test script may be a
    # function of the nodes' configurations, as in NixOS.
    testers.runNixOSTest =
      {
        name,
        nodes,
        testScript,
      }:
      let
        # As in NixOS tests, each node's modules get `nodes` (every node's config).
        evaluated = lib.mapAttrs (
          _: module:
          evalNixos pkgs [
            module
            { _module.args.nodes = lib.mapAttrs (_: e: e.config) evaluated; }
          ]
        ) nodes;
      in
      mkDrv "vm-test-run-${name}" {
        testScript =
          if lib.isFunction testScript then
            testScript { nodes = lib.mapAttrs (_: e: e.config) evaluated; }
          else
            testScript;
        nodes = lib.mapAttrs (_: e: e.toplevel) evaluated;
        # What the VMs' stores are given besides their own systems (the deployed variants).
        additionalPaths = lib.mapAttrs (
          _: e: map toString e.config.virtualisation.additionalPaths
        ) evaluated;
        passthru.nodeConfigs = lib.mapAttrs (_: e: e.config) evaluated;
      };
  };
in
pkgs
