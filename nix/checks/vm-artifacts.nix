# Artifacts (issue 12) in VMs: the agent gets a system it lacks from the coordinator, with no
# other substituter. A Nix signing key is made at build time; the coordinator (also the admin's
# machine) holds the closures of two variants the agent's store lacks; the agent trusts the
# key's public half and nothing else substitutes for it. `flt admin push` sends the closure
# (signed), `flt admin deploy --wait` places it, the agent fetches what it lacks over
# flt/blobs/0 and its Nix checks the signatures, then switches. A variant pushed with another
# key is refused (UNTRUSTED_SIGNATURE). The coordinator's nix.trustedPublicKeys stays empty on
# purpose: set, it would refuse that push itself (UNKNOWN_SIGNING_KEY) and the agent's refusal
# would not be shown. Linux only (it boots VMs).
{ pkgs, flake, ... }:
let
  inherit (pkgs) lib;
  keys = pkgs.runCommand "flt-vm-nix-keys" { nativeBuildInputs = [ pkgs.nix ]; } ''
    export HOME=$TMPDIR NIX_STATE_DIR=$TMPDIR/state NIX_LOG_DIR=$TMPDIR/log
    mkdir $out
    nix-store --generate-binary-cache-key flt-vm $out/sk $out/pk
    nix-store --generate-binary-cache-key flt-vm-other $out/other.sk $out/other.pk
    # The agent's trusted key as an environment file (FLT_NIX_TRUSTED_KEYS, the config key
    # nix_trusted_keys): the key exists only once this is built, and reading it into the
    # module option at evaluation would need import-from-derivation.
    printf 'FLT_NIX_TRUSTED_KEYS=%s\n' "$(cat $out/pk)" > $out/agent.env
  '';
in
import ../testing/deploy-vm.nix { inherit pkgs flake; } {
  name = "vm-artifacts";
  variants = { };
  pushedVariants = {
    pushed.environment.etc."flt-deployed".text = "pushed";
    other.environment.etc."flt-deployed".text = "other";
  };
  coordinator = {
    environment.etc."flt-nix-signing.key" = {
      source = "${keys}/sk";
      mode = "0600";
    };
    environment.etc."flt-nix-other.key" = {
      source = "${keys}/other.sk";
      mode = "0600";
    };
  };
  agent = {
    # Nothing but flt brings a path the agent lacks.
    nix.settings.substituters = lib.mkForce [ ];
    systemd.services.flt-agent.serviceConfig.EnvironmentFile = "${keys}/agent.env";
  };
  testScript = ''
    pushed = pushed_variants["pushed"]
    other = pushed_variants["other"]
    sign = "FLT_NIX_SIGNING_KEY=/etc/flt-nix-signing.key"

    with subtest("the agent lacks the pushed system; the coordinator has it"):
        agent1.fail(f"nix-store --check-validity {pushed}")
        coordinator.succeed(f"nix-store --check-validity {pushed}")

    with subtest("push, deploy --wait: the agent fetches, verifies and switches"):
        print(coordinator.succeed(f"{sign} {flt} push {pushed} 2>&1"))
        print(coordinator.succeed(f"{sign} {flt} deploy agent1 {pushed} --wait --timeout 20m 2>&1"))
        assert current() == pushed, (current(), pushed)
        agent1.succeed("grep -qx pushed /etc/flt-deployed")
        agent1.succeed(f"nix-store --verify-path {pushed}")
        out = coordinator.succeed(f"{flt} status")
        print(out)
        assert "artifacts at the coordinator:" in out, out

    with subtest("a system signed by a key the agent does not trust is refused"):
        other_sign = "FLT_NIX_SIGNING_KEY=/etc/flt-nix-other.key"
        print(coordinator.succeed(f"{other_sign} {flt} push {other} 2>&1"))
        out = coordinator.fail(f"{other_sign} {flt} deploy agent1 {other} --wait --timeout 10m 2>&1")
        print(out)
        s = status()
        assert s["last"]["state"] == "refused", s
        assert s["last"]["code"] == "UNTRUSTED_SIGNATURE", s
        assert current() == pushed, (current(), pushed)
        agent1.fail(f"nix-store --check-validity {other}")
  '';
}
