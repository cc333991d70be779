# services.flt-coordinator: the fleet's coordinator as a hardened systemd service. Its state (node
# key, documents, audit trail, ticket) lives in /var/lib/flt-coordinator; `settings` becomes
# flt's JSON config file (same keys as `flt config show`).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.flt-coordinator;
  format = pkgs.formats.json { };
  configFile = format.generate "flt-coordinator.json" cfg.settings;
  port = lib.toInt (lib.last (lib.splitString ":" cfg.settings.bind));
  secretPathAssertions = import ../../secret-path.nix { inherit lib; };
  nixKeyAssertions = import ../../nix-keys.nix { inherit lib; };
  # nix.* and artifacts.* -> flt config keys (unset ones are left to flt's defaults).
  artifactSettings = lib.filterAttrs (_: v: v != null && v != [ ]) {
    nix_trusted_keys = cfg.nix.trustedPublicKeys;
    artifact_gc_grace = cfg.artifacts.gcGrace;
  };
in
{
  options.services.flt-coordinator = {
    enable = lib.mkEnableOption "the flt coordinator";

    package = lib.mkOption {
      type = lib.types.package;
      # The package file of this flake, so the module works without blueprint's module args.
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
          bind = lib.mkOption {
            type = lib.types.str;
            default = "0.0.0.0:7447";
            description = "Socket to listen on (HOST:PORT); agents and admins dial it.";
          };
          admins = lib.mkOption {
            type = lib.types.listOf lib.types.str;
            default = [ ];
            example = [ "3b6a27bc..." ];
            description = ''
              Initial admins of a new fleet: node ids (`flt id` on the admin's machine) or
              paths of OpenSSH ed25519 public keys. They count only when the fleet begins;
              later changes are signed `flt admin admins add|remove` operations.
            '';
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
        use as the node key (passed with systemd's LoadCredential, so the service user need not
        own it). Default: a key created in the state directory on first start.
      '';
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the UDP port of `settings.bind` (QUIC) in the firewall.";
    };

    nix.trustedPublicKeys = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "flt-admin-1:6vW1m0yB3cBm4h0Xo2bq0m6Zq0r6p9sQe1kI7w5lC2Y=" ];
      description = ''
        Keys a pushed path must be signed by (`NAME:BASE64`, as in trusted-public-keys;
        `nix_trusted_keys`): an early refusal (`UNKNOWN_SIGNING_KEY`) of a push the agents
        would refuse anyway. Set it to the agents' `nix.trustedPublicKeys`. Empty: any valid
        signature is taken; the agents still decide. The coordinator's own Nix is not involved.
      '';
    };

    artifacts.gcGrace = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "30d";
      description = ''
        How long pushed paths that no deployment references any more are kept
        (`artifact_gc_grace`, 1h to 365d). Null: flt's default, 14d.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions =
      secretPathAssertions "services.flt-coordinator.keyFile" cfg.keyFile
      ++ nixKeyAssertions "services.flt-coordinator.nix.trustedPublicKeys" cfg.nix.trustedPublicKeys;

    services.flt-coordinator.settings = artifactSettings;

    networking.firewall.allowedUDPPorts = lib.mkIf cfg.openFirewall [ port ];

    # iroh asks the kernel for 7 MiB UDP socket buffers; Linux grants at most net.core.rmem_max
    # (wmem_max), 208 KiB unless raised. All agents share the coordinator's sockets: in a fan-in
    # of 1,000 agents its socket dropped 1,494 datagrams in 5 s even with 8 MiB (README "Scale",
    # session 12), and a dropped handshake packet waits for QUIC's backoff to be sent again.
    boot.kernel.sysctl = {
      "net.core.rmem_max" = lib.mkDefault 7340032;
      "net.core.wmem_max" = lib.mkDefault 7340032;
    };

    systemd.services.flt-coordinator = {
      description = "flt coordinator";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      environment = {
        FLT_STATE_DIR = "/var/lib/flt-coordinator";
        # Two glibc arenas, not one per core for iroh's worker threads: freed memory is reused
        # instead of kept per arena (100 agents: 1,119 -> 759 KiB of RSS per agent, README
        # "Scale").
        MALLOC_ARENA_MAX = "2";
      };
      serviceConfig = {
        ExecStart = lib.escapeShellArgs (
          [
            (lib.getExe cfg.package)
            "--config"
            configFile
          ]
          ++ lib.optionals (cfg.keyFile != null) [
            "--secret-key"
            "%d/node-key"
          ]
          ++ [ "coordinator" ]
        );
        LoadCredential = lib.optional (cfg.keyFile != null) "node-key:${cfg.keyFile}";
        Restart = "on-failure";
        RestartSec = 2;
        DynamicUser = true;
        StateDirectory = "flt-coordinator";
        StateDirectoryMode = "0700";
        # Hardening: a network daemon that writes only its state directory.
        CapabilityBoundingSet = "";
        NoNewPrivileges = true;
        PrivateDevices = true;
        PrivateTmp = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
          "AF_NETLINK"
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" ];
        UMask = "0077";
      };
    };
  };
}
