# Evaluates this flake the way `nix flake check` would, with the real nixpkgs `lib`, the real
# numtide/blueprint and nixpkgs' real importNpmLock, and stub-pkgs.nix for the rest of nixpkgs.
# nix/eval/run.sh runs it with Nix 2.26 (Debian trixie's nix-bin) and says where the upstream
# sources come from. `report` is what test/nix.test.ts asserts on; `tarballs` builds a few of
# the npm tarball derivations for real (npm pack, checked against the lockfile's integrity).
{
  # Where run.sh put the upstream sources: nixpkgs.lib/, blueprint/, nixpkgs/ (a few files).
  inputsDir,
  # The flt checkout to evaluate.
  repo ? ../..,
}:
let
  lib = import (inputsDir + "/nixpkgs.lib/lib");
  nixpkgsPath = inputsDir + "/nixpkgs";

  # The flake's source as Nix would copy it (a git flake: tracked files only): without
  # node_modules, build output, .git, and the benchmarks' git-ignored results (their fixtures
  # hold tens of thousands of files, which made the copy take minutes).
  src = builtins.path {
    path = repo;
    name = "source";
    filter =
      path: _type:
      !(lib.elem (baseNameOf path) [
        ".git"
        "node_modules"
        "dist"
        ".flt-state"
      ])
      && !(lib.hasSuffix "/bench/results" (toString path));
  };

  evalNixos = import ./nixos-stub.nix { inherit lib; };
  pkgsFor = system: import ./stub-pkgs.nix { inherit lib system nixpkgsPath evalNixos; };

  allSystems = [
    "x86_64-linux"
    "aarch64-linux"
    "x86_64-darwin"
    "aarch64-darwin"
  ];
  nixpkgs = {
    inherit lib;
    outPath = nixpkgsPath;
    legacyPackages = lib.genAttrs allSystems pkgsFor;
  };
  # blueprint's flake output is this same lib, applied to its own inputs (`follows` nixpkgs).
  blueprint = import (inputsDir + "/blueprint/lib") { inputs = { inherit nixpkgs; }; };

  flake = import (src + "/flake.nix");
  self = outputs // {
    outPath = src;
    inherit inputs;
  };
  inputs = {
    inherit self nixpkgs blueprint;
  };
  outputs = flake.outputs inputs;

  pkgs = pkgsFor "x86_64-linux";
  flt = outputs.packages.x86_64-linux.flt;
  # The patched files importNpmLock writes (their store paths are only read here, not built).
  lock = builtins.fromJSON (builtins.unsafeDiscardStringContext flt.npmDeps.packageLock);
  packageJson = builtins.fromJSON (builtins.unsafeDiscardStringContext flt.npmDeps.package);
  origLock = lib.importJSON (src + "/package-lock.json");

  # One NixOS system made of the given modules plus flt's module.
  nixos = module: extra: evalNixos pkgs [
    outputs.nixosModules.${module}
    extra
  ];
  # Whether NixOS would build it; the failed assertions' messages if not. The units are forced
  # too (deepSeq), as building them would.
  outcome =
    sys:
    let
      built = builtins.tryEval (builtins.deepSeq sys.toplevel true);
    in
    {
      builds = built.success;
      failedAssertions = sys.failedAssertions;
      # Evaluating the units fails only where an option has no value (the old coordinator).
      unitsEvaluate =
        (builtins.tryEval (builtins.deepSeq (builtins.toJSON sys.config.systemd.services) true)).success;
    };
  typeRefuses = value: !(builtins.tryEval (builtins.deepSeq value true)).success;

  agentBase = {
    services.flt-agent.enable = true;
    services.flt-agent.settings.coordinator = "endpointabc";
  };
  coordinatorBase.services.flt-coordinator.enable = true;
  coordinatorDefault = nixos "coordinator" coordinatorBase;
  withDeploy = deploy: lib.recursiveUpdate agentBase { services.flt-agent.deploy = deploy; };
  # What the agent module writes into flt's config file (null keys are left out).
  rendered = sys: lib.filterAttrs (_: v: v != null) sys.config.services.flt-agent.settings;
  agentDeploy = nixos "agent" (
    lib.recursiveUpdate agentBase {
      services.flt-agent = {
        admins = [ "0e3f3b2f3cdb6e2bdf7b0fb2b5e7b5d3b0a3e1c0e0f6a8d5c7b8a9e0f1d2c3b4" ];
        deploy = {
          activator = "profile";
          profile = "/nix/var/nix/profiles/per-user/root/app";
          command = "/run/current-system/sw/bin/true";
          check = "true";
          healthTimeout = "5m";
          recheck = "1m";
          nixStore = "local?store=/srv/nix/store";
        };
      };
    }
  );
  # A deployment VM check: its variants are built with it, in the agent's store, named in the
  # script, and each differs from the agent's own system.
  vmReport =
    check:
    let
      agent = check.nodeConfigs.agent1;
      variants = lib.mapAttrs (_: v: builtins.unsafeDiscardStringContext (toString v)) agent.system.build.fltVariants;
      paths = lib.attrValues variants;
    in
    {
      variants = lib.attrNames variants;
      registered = lib.all (p: lib.elem p check.additionalPaths.agent1) paths;
      inScript = lib.all (p: lib.hasInfix p (builtins.unsafeDiscardStringContext check.testScript)) paths;
      distinct = lib.length (lib.unique (paths ++ [ (builtins.unsafeDiscardStringContext (toString agent.system.build.toplevel)) ])) == lib.length paths + 1;
      agentSettings = lib.filterAttrs (_: v: v != null) agent.services.flt-agent.settings;
    };
  # The artifacts check: pushed variants are in the coordinator's store only, named in the
  # script, and the agent has no substituter besides flt.
  vmArtifactsReport =
    check:
    let
      agent = check.nodeConfigs.agent1;
      pushed = lib.mapAttrs (_: v: builtins.unsafeDiscardStringContext (toString v)) agent.system.build.fltPushed;
      paths = lib.attrValues pushed;
    in
    {
      pushed = lib.attrNames pushed;
      onCoordinator = lib.all (p: lib.elem p check.additionalPaths.coordinator) paths;
      notOnAgent = lib.all (p: !(lib.elem p check.additionalPaths.agent1)) paths;
      inScript = lib.all (p: lib.hasInfix p (builtins.unsafeDiscardStringContext check.testScript)) paths;
      agentSubstituters = agent.nix.settings.substituters;
      agentEnvironmentFile = lib.hasSuffix "/agent.env" (toString agent.systemd.services.flt-agent.serviceConfig.EnvironmentFile);
    };
  storeKey = "${builtins.storeDir}/0000000000000000000000000000000-key/key";
  nixKey = "flt-admin-1:6vW1m0yB3cBm4h0Xo2bq0m6Zq0r6p9sQe1kI7w5lC2Y=";
  coordinatorArtifacts = nixos "coordinator" (
    lib.recursiveUpdate coordinatorBase {
      services.flt-coordinator = {
        nix.trustedPublicKeys = [ nixKey ];
        artifacts.gcGrace = "30d";
      };
    }
  );
in
{
  inherit outputs;

  report = {
    systems = lib.attrNames outputs.packages;
    packages = lib.mapAttrs (_: lib.attrNames) outputs.packages;
    checks = lib.mapAttrs (_: lib.attrNames) outputs.checks;
    devShells = lib.mapAttrs (_: lib.attrNames) outputs.devShells;
    nixosModules = lib.attrNames outputs.nixosModules;
    platforms = flt.meta.platforms;

    drvPaths = {
      flt = flt.drvPath;
      default = outputs.packages.x86_64-linux.default.drvPath;
      suite = flt.tests.suite.drvPath;
      npmDeps = flt.npmDeps.drvPath;
      darwinFlt = outputs.packages.aarch64-darwin.flt.drvPath;
      devShell = outputs.devShells.x86_64-linux.default.drvPath;
      vmFleet = outputs.checks.x86_64-linux.vm-fleet.drvPath;
      vmDeploy = outputs.checks.x86_64-linux.vm-deploy.drvPath;
      vmRollback = outputs.checks.x86_64-linux.vm-rollback.drvPath;
      vmArtifacts = outputs.checks.x86_64-linux.vm-artifacts.drvPath;
    };

    npm = {
      lockEntries = lib.length (lib.attrNames origLock.packages) - 1;
      withIntegrity = lib.length (
        lib.attrNames (lib.filterAttrs (p: e: p != "" && e ? integrity) origLock.packages)
      );
      # Entries the patched lockfile points at a store path, and those it leaves without one.
      resolvedToStore = lib.length (
        lib.attrNames (
          lib.filterAttrs (_: e: lib.hasPrefix "file:${builtins.storeDir}/" (e.resolved or "")) lock.packages
        )
      );
      unresolved = lib.attrNames (lib.filterAttrs (p: e: p != "" && !(e ? resolved)) lock.packages);
      # Every direct dependency of package.json, now a tarball in the store.
      packageJsonDepsInStore = lib.all (v: lib.hasPrefix "file:${builtins.storeDir}/" v) (
        lib.attrValues (packageJson.dependencies // packageJson.devDependencies)
      );
      # The hash of each tarball derivation is the lockfile's integrity.
      hashesAreIntegrity = lib.all (
        p:
        let
          drv = flt.npmDeps.tarballs.${p} or null;
        in
        drv == null || drv.outputHash == origLock.packages.${p}.integrity
      ) (lib.attrNames origLock.packages);
      anyRegistryHostInLock = lib.any (e: lib.hasInfix "://" (e.resolved or "")) (lib.attrValues lock.packages);
    };

    node = {
      package = flt.stubArgs.nodejs.name;
      # The hook's node-gyp and headers come from the pinned Node.
      configHookNodeGyp = lib.hasPrefix "${pkgs.nodejs_22}/" flt.stubArgs.npmConfigHook.substitutions.nodeGyp;
      configHookNodeSrc = flt.stubArgs.npmConfigHook.substitutions.nodeSrc.name;
    };

    vm = {
      deploy = vmReport outputs.checks.x86_64-linux.vm-deploy;
      rollback = vmReport outputs.checks.x86_64-linux.vm-rollback;
      artifacts = vmArtifactsReport outputs.checks.x86_64-linux.vm-artifacts;
    };

    modules = {
      agentWithoutCoordinator = outcome (nixos "agent" { services.flt-agent.enable = true; });
      agent = outcome (nixos "agent" agentBase);
      agentKeyInStore = outcome (nixos "agent" (lib.recursiveUpdate agentBase { services.flt-agent.keyFile = storeKey; }));
      agentKeyRelative = outcome (nixos "agent" (lib.recursiveUpdate agentBase { services.flt-agent.keyFile = "key"; }));
      agentTokenInStore = outcome (
        nixos "agent" (lib.recursiveUpdate agentBase { services.flt-agent.enrollTokenFile = storeKey; })
      );
      agentKeyPathLiteralRefused = typeRefuses
        (nixos "agent" (lib.recursiveUpdate agentBase { services.flt-agent.keyFile = ./default.nix; }))
        .config.services.flt-agent.keyFile;
      agentExecStart =
        (nixos "agent" (
          lib.recursiveUpdate agentBase { services.flt-agent.keyFile = "/etc/ssh/ssh_host_ed25519_key"; }
        )).config.systemd.services.flt-agent.serviceConfig;
      agentProfileWithoutPath = outcome (nixos "agent" (withDeploy { activator = "profile"; }));
      agentProfileRelative = outcome (
        nixos "agent" (withDeploy { activator = "profile"; profile = "app"; })
      );
      agentCommandWithoutCommand = outcome (nixos "agent" (withDeploy { activator = "command"; }));
      agentNixosWithStore = outcome (nixos "agent" (withDeploy { nixStore = "local?store=/x"; }));
      agentDeploy = outcome agentDeploy;
      agentDeploySettings = rendered agentDeploy;
      agentDeployWarnings = agentDeploy.config.warnings;
      agentDefaultSettings = rendered (nixos "agent" agentBase);
      agentDefaultWarnings = (nixos "agent" agentBase).config.warnings;
      agentUnit =
        let
          unit = (nixos "agent" agentBase).config.systemd.services.flt-agent;
        in
        {
          inherit (unit) restartIfChanged stopIfChanged;
          inherit (unit.serviceConfig) KillMode User;
          path = map (p: p.name) unit.path;
        };
      coordinator = outcome (nixos "coordinator" coordinatorBase);
      coordinatorDefaultSettings = coordinatorDefault.config.services.flt-coordinator.settings;
      coordinatorArtifacts = outcome coordinatorArtifacts;
      coordinatorArtifactsSettings = {
        inherit (coordinatorArtifacts.config.services.flt-coordinator.settings)
          nix_trusted_keys
          artifact_gc_grace
          ;
      };
      coordinatorBadNixKey = outcome (
        nixos "coordinator" (
          lib.recursiveUpdate coordinatorBase { services.flt-coordinator.nix.trustedPublicKeys = [ "flt-admin-1" ]; }
        )
      );
      agentNixKeys = rendered (
        nixos "agent" (lib.recursiveUpdate agentBase { services.flt-agent.nix.trustedPublicKeys = [ nixKey ]; })
      );
      agentBadNixKey = outcome (
        nixos "agent" (
          lib.recursiveUpdate agentBase { services.flt-agent.nix.trustedPublicKeys = [ "flt-admin-1:short=" ]; }
        )
      );
      coordinatorKeyInStore = outcome (
        nixos "coordinator" (lib.recursiveUpdate coordinatorBase { services.flt-coordinator.keyFile = storeKey; })
      );
      coordinatorKeyPathLiteralRefused = typeRefuses
        (nixos "coordinator" (lib.recursiveUpdate coordinatorBase { services.flt-coordinator.keyFile = ./default.nix; }))
        .config.services.flt-coordinator.keyFile;
    };
  };

  # A few tarball derivations to build for real: scoped, alias, the iroh addon, a plain one.
  tarballs =
    let
      o = flt.npmDeps.tarballs;
    in
    [
      o."node_modules/zod"
      o."node_modules/@number0/iroh-linux-x64-gnu"
      o."node_modules/string-width-cjs"
      o."node_modules/@automerge/automerge-repo"
    ];
  npmDeps = flt.npmDeps;
}
