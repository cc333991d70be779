# Deploys a second system configuration to an agent (`nix flake check`): the admin signs it with
# `flt admin deploy agent1 STORE_PATH --wait`, the agent verifies it against its own admin
# anchor, sets the system profile and switches in a transient unit. The new system also changes
# the agent's own unit, so the switch restarts the agent in the middle of its deployment: the
# restarted agent must finish it from its journal. Linux only (it boots VMs).
{ pkgs, flake, ... }:
import ../testing/deploy-vm.nix { inherit pkgs flake; } {
  name = "vm-deploy";
  variants.next = {
    environment.etc."flt-deployed".text = "next";
    # A changed unit: switch-to-configuration restarts flt-agent.service.
    systemd.services.flt-agent.environment.FLT_VM_VARIANT = "next";
  };
  testScript = ''
    with subtest("a deployment switches the agent to the second system"):
        assert current() == first, (current(), first)
        before = agent_invocation()
        out = coordinator.succeed(f"{flt} deploy agent1 {variants['next']} --wait 2>&1")
        print(out)
        assert current() == variants["next"], (current(), variants["next"])
        assert profile() == variants["next"], profile()
        agent1.succeed("grep -qx next /etc/flt-deployed")

    with subtest("the switch restarted the agent, which finished its own deployment"):
        agent1.wait_for_unit("flt-agent.service")
        assert agent_invocation() != before, "flt-agent.service was not restarted by the switch"
        agent1.succeed("systemctl show -P Environment flt-agent.service | grep -q FLT_VM_VARIANT=next")

    with subtest("status: desired = current, booted unchanged, no reboot needed"):
        s = status()
        print(json.dumps(s, indent=2))
        assert s["onDesired"] is True, s
        assert s["current"] == variants["next"], s
        assert s["booted"] == first, s
        assert s["rebootNeeded"] is False, s
        assert s["last"]["state"] == "succeeded", s
  '';
}
