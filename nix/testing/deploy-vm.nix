# The fleet the deployment VM checks share (nix/checks/vm-deploy.nix, vm-rollback.nix): a
# coordinator that is also the admin's machine, and one agent with the `nixos` activator whose
# trust anchor is the admin's key. `variants` are modules layered on the agent's own
# configuration (extendModules: no specialisation, the same machine otherwise); each variant's
# system is built with the test and registered in the agent's store (additionalPaths), as a
# closure pushed to a real machine would be. The test script gets them as
# `nodes.agent1.system.build.fltVariants.NAME` and drives the admin CLI. `pushedVariants` are
# built the same way but given to the coordinator's store only (the admin's machine), for
# `flt admin push` to bring to the agent (`pushed_variants` in the script); `coordinator` and
# `agent` are extra modules for the two nodes.
# Not a blueprint folder: only imported by those checks.
{ pkgs, flake }:
{
  name,
  variants,
  pushedVariants ? { },
  coordinator ? { },
  agent ? { },
  testScript,
}:
let
  inherit (pkgs) lib;
  flt = flake.packages.${pkgs.stdenv.hostPlatform.system}.flt;
  adminKey = pkgs.runCommand "flt-vm-admin-key" { nativeBuildInputs = [ pkgs.openssh ]; } ''
    mkdir $out
    ssh-keygen -q -t ed25519 -N "" -C flt-vm-admin -f $out/key
  '';
  local = {
    relay = "disabled";
    discovery = "none";
  };
in
if !pkgs.stdenv.hostPlatform.isLinux then
  pkgs.emptyFile
else
  pkgs.testers.runNixOSTest {
    name = "flt-${name}";
    nodes = {
      coordinator =
        { nodes, ... }:
        {
          imports = [
            flake.nixosModules.coordinator
            coordinator
          ];
          # The closures an admin would push (none unless pushedVariants).
          virtualisation.additionalPaths = lib.attrValues nodes.agent1.system.build.fltPushed;
          services.flt-coordinator = {
            enable = true;
            openFirewall = true;
            settings = local // {
              admins = [ "${adminKey}/key.pub" ];
            };
          };
          environment.systemPackages = [ flt ];
          environment.etc."flt-admin.key" = {
            source = "${adminKey}/key";
            mode = "0600";
          };
        };
      agent1 =
        { extendModules, ... }:
        let
          # Lazily: a variant's own `fltVariants` (variants of the variant) is never built.
          build = lib.mapAttrs (
            _: module: (extendModules { modules = [ module ]; }).config.system.build.toplevel
          );
          systems = build variants;
        in
        {
          imports = [
            flake.nixosModules.agent
            agent
          ];
          services.flt-agent = {
            enable = true;
            admins = [ "${adminKey}/key.pub" ];
            deploy = {
              activator = "nixos";
              # A system that ships /etc/flt-unhealthy is unhealthy: the check gets
              # STORE_PATH ACTION appended, hence the function.
              check = ''ok() { test ! -e "$1/etc/flt-unhealthy"; }; ok'';
              healthTimeout = "2m";
            };
            # The coordinator's ticket is only known once it runs: set by the test script.
            settings = local // {
              coordinator = "set-by-the-test-script";
            };
            enrollTokenFile = "/etc/flt-enroll-token";
          };
          # Started by the test script once its token is in place.
          systemd.services.flt-agent.wantedBy = lib.mkForce [ ];
          system.build.fltVariants = systems;
          system.build.fltPushed = build pushedVariants;
          virtualisation.additionalPaths = lib.attrValues systems;
        };
    };

    testScript =
      { nodes, ... }:
      ''
        import json

        start_all()
        coordinator.wait_for_unit("flt-coordinator.service")
        ticket_file = "/var/lib/private/flt-coordinator/coordinator.ticket"
        coordinator.wait_for_file(ticket_file)
        ticket = coordinator.succeed(f"cat {ticket_file}").strip()
        flt = ("flt --relay disabled --discovery none --secret-key /etc/flt-admin.key "
               f"--state-dir /root/flt-admin admin --coordinator {ticket}")

        agent1.wait_for_unit("multi-user.target")
        # What nixos-rebuild leaves on a real machine: the running system as generation 1 of
        # the system profile (a VM test boots without one), so a failure has something to roll
        # back to.
        agent1.succeed("nix-env -p /nix/var/nix/profiles/system --set $(readlink -f /run/current-system)")
        first = agent1.succeed("readlink -f /run/current-system").strip()

        token = coordinator.succeed(f"{flt} enroll-token").strip()
        agent1.succeed(f"printf %s '{token}' > /etc/flt-enroll-token")
        agent1.succeed(f"systemctl set-environment FLT_COORDINATOR={ticket}")
        agent1.succeed("systemctl start flt-agent.service")
        coordinator.wait_until_succeeds(f"{flt} agents --json | grep -q agent1", timeout=120)

        def status():
            rows = json.loads(coordinator.succeed(f"{flt} status --json"))
            return next(r for r in rows if r["hostname"] == "agent1")

        def current():
            return agent1.succeed("readlink -f /run/current-system").strip()

        def profile():
            return agent1.succeed("readlink -f /nix/var/nix/profiles/system").strip()

        def agent_invocation():
            return agent1.succeed("systemctl show -P InvocationID flt-agent.service").strip()

        variants = ${builtins.toJSON (lib.mapAttrs (_: toString) nodes.agent1.system.build.fltVariants)}
        pushed_variants = ${builtins.toJSON (lib.mapAttrs (_: toString) nodes.agent1.system.build.fltPushed)}

        ${testScript}
      '';
  }
