# A fleet of NixOS VMs (`nix flake check`): a coordinator, two agents and an admin. Agents
# enroll with tokens the admin issues, the admin sees both agents' facts, the coordinator
# restarts, and the fleet is still there. Linux only (it boots VMs).
{ pkgs, flake, ... }:
let
  inherit (pkgs) lib;
  flt = flake.packages.${pkgs.stdenv.hostPlatform.system}.flt;
  # A throwaway admin key, made at build time; the coordinator trusts its public half.
  adminKey = pkgs.runCommand "flt-vm-admin-key" { nativeBuildInputs = [ pkgs.openssh ]; } ''
    mkdir $out
    ssh-keygen -q -t ed25519 -N "" -C flt-vm-admin -f $out/key
  '';
  local = {
    relay = "disabled";
    discovery = "none";
  };
  agent = {
    imports = [ flake.nixosModules.agent ];
    services.flt-agent = {
      enable = true;
      admins = [ "${adminKey}/key.pub" ];
      # The coordinator's ticket is only known once it runs: set by the test script.
      settings = local // {
        coordinator = "set-by-the-test-script";
      };
      enrollTokenFile = "/etc/flt-enroll-token";
    };
    # Started by the test script once its token is in place.
    systemd.services.flt-agent.wantedBy = lib.mkForce [ ];
  };
in
if !pkgs.stdenv.hostPlatform.isLinux then
  pkgs.emptyFile
else
  pkgs.testers.runNixOSTest {
    name = "flt-vm-fleet";
    nodes = {
      coordinator = {
        imports = [ flake.nixosModules.coordinator ];
        services.flt-coordinator = {
          enable = true;
          openFirewall = true;
          settings = local // {
            admins = [ "${adminKey}/key.pub" ];
          };
        };
      };
      agent1 = agent;
      agent2 = agent;
      admin = {
        environment.systemPackages = [ flt ];
        environment.etc."flt-admin.key" = {
          source = "${adminKey}/key";
          mode = "0600";
        };
      };
    };

    testScript = ''
      import json

      start_all()
      coordinator.wait_for_unit("flt-coordinator.service")
      ticket_file = "/var/lib/private/flt-coordinator/coordinator.ticket"
      coordinator.wait_for_file(ticket_file)
      ticket = coordinator.succeed(f"cat {ticket_file}").strip()

      flt = ("flt --relay disabled --discovery none --secret-key /etc/flt-admin.key "
             f"--state-dir /root/flt-admin admin --coordinator {ticket}")

      for machine in [agent1, agent2]:
          token = admin.succeed(f"{flt} enroll-token").strip()
          machine.succeed(f"printf %s '{token}' > /etc/flt-enroll-token")
          machine.succeed(f"systemctl set-environment FLT_COORDINATOR={ticket}")
          machine.succeed("systemctl start flt-agent.service")

      def hostnames():
          rows = json.loads(admin.succeed(f"{flt} agents --json"))
          return sorted(r["hostname"] for r in rows if r["hostname"])

      with subtest("both agents enroll and their facts reach the admin"):
          admin.wait_until_succeeds(f"{flt} agents --json | grep -q agent2", timeout=120)
          admin.wait_until_succeeds(f"{flt} agents --json | grep -q agent1", timeout=120)
          assert hostnames() == ["agent1", "agent2"], hostnames()
          facts = json.loads(admin.succeed(f"{flt} facts agent1 --json"))
          assert facts["facts"]["hostname"] == "agent1", facts
          assert facts["unverified"] is False, facts

      with subtest("the fleet survives a coordinator restart"):
          coordinator.succeed("systemctl restart flt-coordinator.service")
          coordinator.wait_for_unit("flt-coordinator.service")
          admin.wait_until_succeeds(f"{flt} agents --json", timeout=60)
          assert hostnames() == ["agent1", "agent2"], hostnames()
          admin.succeed(f"{flt} audit")
    '';
  }
