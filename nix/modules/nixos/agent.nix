# services.flt-agent: the agent on every managed machine. It runs as root (it reads the whole
# system's facts and activates the configurations admins deploy), has Nix and systemd on its
# PATH, and may be restarted by a switch it drives itself: activations run in their own
# transient unit (systemd-run), and the restarted agent finishes them from its journal.
# `settings` becomes flt's JSON config file; `deploy.*` and `admins` are written into it.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.flt-agent;
  format = pkgs.formats.json { };
  # Unset typed keys are null: left out of the file.
  configFile = format.generate "flt-agent.json" (lib.filterAttrs (_: v: v != null) cfg.settings);
  secretPathAssertions = import ../../secret-path.nix { inherit lib; };
  # deploy.* and admins -> flt config keys (unset ones are left to flt's defaults).
  deploySettings = lib.filterAttrs (_: v: v != null && v != [ ]) {
    deploy_activator = cfg.deploy.activator;
    deploy_profile = cfg.deploy.profile;
    deploy_command = cfg.deploy.command;
    deploy_check = cfg.deploy.check;
    deploy_health_timeout = cfg.deploy.healthTimeout;
    deploy_recheck = cfg.deploy.recheck;
    nix_store = cfg.deploy.nixStore;
    admins = cfg.admins;
    nix_trusted_keys = cfg.nix.trustedPublicKeys;
  };
  nixKeyAssertions = import ../../nix-keys.nix { inherit lib; };
  activator = cfg.deploy.activator;
  # The token is read from its file at start and handed over in the environment, never on the
  # command line (which every user can read in /proc).
  start = pkgs.writeShellScript "flt-agent-start" ''
    if [ -n "''${CREDENTIALS_DIRECTORY:-}" ] && [ -r "$CREDENTIALS_DIRECTORY/enroll-token" ]; then
      FLT_ENROLL_TOKEN="$(< "$CREDENTIALS_DIRECTORY/enroll-token")"
      export FLT_ENROLL_TOKEN
    fi
    exec "$@"
  '';
in
{
  options.services.flt-agent = {
    enable = lib.mkEnableOption "the flt agent";

    package = lib.mkOption {
      type = lib.types.package;
      default = import ../../packages/flt/default.nix { inherit pkgs; };
      defaultText = lib.literalExpression "flt.packages.\${system}.flt";
      description = "The flt package to run.";
    };

    settings = lib.mkOption {
      description = ''
        flt configuration (RFC 42): written to a JSON file passed with --config. Any key of
        `flt config show` may be set; the common ones are typed below.
      '';
      default = { };
      type = lib.types.submodule {
        freeformType = format.type;
        options = import ../../settings.nix { inherit lib; } // {
          coordinator = lib.mkOption {
            # Null rather than no default, so that forgetting it is an assertion that says
            # what to set, not "accessed but has no value defined".
            type = lib.types.nullOr lib.types.str;
            default = null;
            example = "endpointabc...";
            description = "The coordinator to join: its ticket, or NODE_ID@HOST:PORT. Required.";
          };
          facts_interval = lib.mkOption {
            type = lib.types.str;
            default = "60s";
            description = "How often facts are collected; only changes are written.";
          };
        };
      };
    };

    keyFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "/etc/ssh/ssh_host_ed25519_key";
      description = ''
        Path (a string, outside the Nix store) of an unencrypted OpenSSH ed25519 private key to
        use as the node key: the machine's SSH host key makes its SSH identity its fleet
        identity. Default: a key created in /var/lib/flt-agent on first start.
      '';
    };

    enrollTokenFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "/run/secrets/flt-enroll-token";
      description = ''
        Path (a string, outside the Nix store) of a file holding a one-time enrollment token
        (`flt admin enroll-token`). Without one, the agent waits until an admin runs
        `flt admin approve NODE_ID`.
      '';
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Agents only dial out, so nothing needs opening; kept for symmetry with the coordinator
        and for a fixed `settings.bind` port (UDP).
      '';
    };

    admins = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "3b6a27bc…" ];
      description = ''
        The fleet's initial admins (node ids, or OpenSSH .pub files): the agent's trust anchor
        for who may sign deployments. It accepts the fleet's admin trail only if it begins with
        exactly these (the coordinator's `settings.admins`), and replays every later admin
        change itself. Empty: the agent trusts the first trail it is shown (trust on first use).
      '';
    };

    nix.trustedPublicKeys = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "flt-admin-1:6vW1m0yB3cBm4h0Xo2bq0m6Zq0r6p9sQe1kI7w5lC2Y=" ];
      description = ''
        Keys whose signatures the agent's Nix accepts for paths delivered by flt (`NAME:BASE64`,
        the public half of a `nix-store --generate-binary-cache-key` key, as in
        trusted-public-keys; `nix_trusted_keys`). Only for that substitution: the system's
        `nix.settings.trusted-public-keys` is left alone. A path signed by none of them is
        refused (`UNTRUSTED_SIGNATURE`) before any byte is fetched. Empty: the system's Nix
        configuration decides, so a path signed only by the admin's key is refused.
      '';
    };

    deploy = {
      activator = lib.mkOption {
        type = lib.types.enum [
          "none"
          "nixos"
          "profile"
          "command"
        ];
        default = "nixos";
        description = ''
          How the agent activates a deployment. `nixos`: sets /nix/var/nix/profiles/system to
          the deployed closure, then runs its `bin/switch-to-configuration ACTION`, in a
          transient systemd unit; rolls back to the previous generation when the activation
          or the health check fails. `profile`: sets `deploy.profile`, then runs
          `deploy.command` if set. `command`: runs `deploy.command STORE_PATH ACTION`.
          `none`: refuses every deployment (NO_ACTIVATOR).
        '';
      };
      profile = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "/nix/var/nix/profiles/per-user/root/app";
        description = "The Nix profile the `profile` activator sets (absolute path; required by it).";
      };
      command = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "/run/current-system/sw/bin/my-activate";
        description = ''
          Shell command line run as `/bin/sh -c 'COMMAND "$@"' flt STORE_PATH ACTION`: the
          activation of the `command` activator (required by it), and what the `profile`
          activator runs after setting the profile.
        '';
      };
      check = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "curl -fsS http://127.0.0.1:8080/health";
        description = ''
          Health check after an activation: a shell command line run with STORE_PATH ACTION
          appended (as `deploy.command`); non-zero rolls back. Besides it, the agent must reach
          the coordinator again, and (nixos) no systemd unit may have failed anew.
        '';
      };
      healthTimeout = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "5m";
        description = "How long the health check may take (1s to 1h). Null: flt's default, 2m.";
      };
      recheck = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "1m";
        description = ''
          How often a deployed store path that is not in the store yet is looked for again
          (100ms to 1h). Null: flt's default, 30s.
        '';
      };
      nixStore = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        description = "A Nix store URI for `profile`/`command` (`--store`); not with `nixos`.";
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.settings.coordinator != null;
        message = "services.flt-agent.settings.coordinator must be set: the coordinator's ticket (`cat /var/lib/private/flt-coordinator/coordinator.ticket` on it), or NODE_ID@HOST:PORT.";
      }
      {
        assertion = activator == "profile" -> cfg.deploy.profile != null;
        message = "services.flt-agent.deploy.profile must be set when deploy.activator is \"profile\".";
      }
      {
        assertion = cfg.deploy.profile == null || lib.hasPrefix "/" cfg.deploy.profile;
        message = "services.flt-agent.deploy.profile must be an absolute path.";
      }
      {
        assertion = activator == "command" -> cfg.deploy.command != null;
        message = "services.flt-agent.deploy.command must be set when deploy.activator is \"command\".";
      }
      {
        assertion = activator == "nixos" -> cfg.deploy.nixStore == null;
        message = "services.flt-agent.deploy.nixStore cannot be set with deploy.activator \"nixos\": it always uses the system's store.";
      }
    ]
    ++ nixKeyAssertions "services.flt-agent.nix.trustedPublicKeys" cfg.nix.trustedPublicKeys
    ++ secretPathAssertions "services.flt-agent.keyFile" cfg.keyFile
    ++ secretPathAssertions "services.flt-agent.enrollTokenFile" cfg.enrollTokenFile;

    warnings =
      lib.optional (activator != "none" && cfg.admins == [ ]) ''
        services.flt-agent.admins is empty: the agent will trust the first admin trail the
        coordinator shows it (trust on first use) for who may sign deployments. Set it to the
        coordinator's settings.admins.
      ''
      ++ lib.optional (cfg.deploy.profile != null && activator != "profile")
        "services.flt-agent.deploy.profile is only used by deploy.activator \"profile\" (it is \"${activator}\")."
      ++ lib.optional (cfg.deploy.command != null && !(lib.elem activator [ "profile" "command" ]))
        "services.flt-agent.deploy.command is only used by deploy.activator \"profile\" or \"command\" (it is \"${activator}\").";

    services.flt-agent.settings = deploySettings;

    networking.firewall.allowedUDPPorts = lib.mkIf (cfg.openFirewall && cfg.settings ? bind) [
      (lib.toInt (lib.last (lib.splitString ":" cfg.settings.bind)))
    ];

    systemd.services.flt-agent = {
      description = "flt agent";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      # A switch restarts the agent (after activating, not stopped before it), so a deployment
      # can upgrade flt itself. The switch it may be running goes on: activations run in a
      # transient unit (systemd-run, its own cgroup), which the default
      # KillMode=control-group of this unit does not reach; the restarted agent finds the run
      # in its journal and finishes the health check and the report.
      restartIfChanged = true;
      stopIfChanged = false;
      # nix-env (the system profile), systemd-run and systemctl (the runner, failed units).
      path = [
        config.nix.package
        config.systemd.package
        pkgs.coreutils
      ];
      environment.FLT_STATE_DIR = "/var/lib/flt-agent";
      serviceConfig = {
        ExecStart = lib.escapeShellArgs (
          [
            start
            (lib.getExe cfg.package)
            "--config"
            configFile
          ]
          ++ lib.optionals (cfg.keyFile != null) [
            "--secret-key"
            "%d/node-key"
          ]
          ++ [ "agent" ]
        );
        LoadCredential =
          lib.optional (cfg.keyFile != null) "node-key:${cfg.keyFile}"
          ++ lib.optional (cfg.enrollTokenFile != null) "enroll-token:${cfg.enrollTokenFile}";
        # Not `process`/`none`: the agent's own helpers (nix-env, systemctl) end with it; the
        # activation itself is never in this cgroup.
        KillMode = "control-group";
        Restart = "always";
        RestartSec = 5;
        User = "root";
        StateDirectory = "flt-agent";
        StateDirectoryMode = "0700";
        UMask = "0077";
      };
    };
  };
}
