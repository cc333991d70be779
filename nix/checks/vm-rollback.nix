# Deployments that fail roll back (`nix flake check`): one system whose health check fails
# (deploy.check refuses a system with /etc/flt-unhealthy) and one with a systemd unit that fails
# to start (switch-to-configuration exits non-zero). Each time the agent switches back to the
# generation it was on, `/run/current-system` is the first system again, the status says
# `rolled-back` with the reason, and `flt admin deploy --wait` exits non-zero.
# Linux only (it boots VMs).
{ pkgs, flake, ... }:
import ../testing/deploy-vm.nix { inherit pkgs flake; } {
  name = "vm-rollback";
  variants = {
    unhealthy.environment.etc."flt-unhealthy".text = "the health check refuses this system";
    brokenUnit = {
      environment.etc."flt-deployed".text = "broken";
      systemd.services.flt-broken = {
        wantedBy = [ "multi-user.target" ];
        serviceConfig = {
          Type = "oneshot";
          ExecStart = "${pkgs.coreutils}/bin/false";
        };
      };
    };
  };
  testScript = ''
    def deploy_fails(path):
        out = coordinator.fail(f"{flt} deploy agent1 {path} --wait 2>&1")
        print(out)
        assert "DEPLOY_FAILED" in out, out
        return out

    def rolled_back(code):
        s = status()
        print(json.dumps(s, indent=2))
        assert s["last"]["state"] == "rolled-back", s
        assert s["last"]["code"] == code, s
        assert s["current"] == first, s
        assert s["onDesired"] is False, s

    with subtest("a failing health check rolls back to the first system"):
        deploy_fails(variants["unhealthy"])
        assert current() == first, (current(), first)
        assert profile() == first, profile()
        agent1.succeed("test ! -e /etc/flt-unhealthy")
        rolled_back("HEALTH_CHECK_FAILED")

    with subtest("a unit that fails to start fails the switch, which rolls back"):
        deploy_fails(variants["brokenUnit"])
        assert current() == first, (current(), first)
        assert profile() == first, profile()
        agent1.succeed("test ! -e /etc/flt-deployed")
        rolled_back("ACTIVATION_FAILED")

    with subtest("the profile keeps the failed generations and is back on the first"):
        agent1.wait_for_unit("flt-agent.service")
        # Three generations of the system profile: first, unhealthy, brokenUnit.
        gens = agent1.succeed("nix-env -p /nix/var/nix/profiles/system --list-generations")
        print(gens)
        assert len(gens.strip().splitlines()) == 3, gens
  '';
}
