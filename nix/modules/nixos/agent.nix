# services.flt-agent: the agent on every managed machine. It runs as root (it reads the whole
# system's facts and, later, activates configurations), is never restarted by a switch (it may
# be the one driving it), and has Nix on its PATH. `settings` becomes flt's JSON config file.
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
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.settings.coordinator != null;
        message = "services.flt-agent.settings.coordinator must be set: the coordinator's ticket (`cat /var/lib/private/flt-coordinator/coordinator.ticket` on it), or NODE_ID@HOST:PORT.";
      }
    ]
    ++ secretPathAssertions "services.flt-agent.keyFile" cfg.keyFile
    ++ secretPathAssertions "services.flt-agent.enrollTokenFile" cfg.enrollTokenFile;

    networking.firewall.allowedUDPPorts = lib.mkIf (cfg.openFirewall && cfg.settings ? bind) [
      (lib.toInt (lib.last (lib.splitString ":" cfg.settings.bind)))
    ];

    systemd.services.flt-agent = {
      description = "flt agent";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      # Never killed in the middle of a switch it may be running itself.
      restartIfChanged = false;
      path = [
        config.nix.package
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
