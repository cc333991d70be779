// The help text. Kept next to the parser so that a new option lands in both.

export const USAGE = `flt: fleet management for NixOS machines over iroh

usage: flt [options] <command> ...

commands:
  demo [--once]                    a local fleet (coordinator, 2 agents, admin view) on loopback
  coordinator                      run the coordinator until SIGINT/SIGTERM; prints its ticket
  agent [--enroll-token TOKEN]     run an agent: enroll with --coordinator, publish facts
  admin agents [--offline]         the fleet table (offline: from the local replica)
  admin facts AGENT [--offline]    one agent's facts (AGENT: node id, prefix or hostname)
  admin echo [-n N] [--size B] [NODE]
                                   N verified echo rounds to the coordinator (or NODE)
  admin enroll-token [--expires D] a one-time token an agent enrolls with (default 1h)
  admin approve NODE_ID            approve an agent (before or after it starts)
  admin revoke NODE_ID             revoke an agent: refused from now on
  admin reset NODE_ID              clear a forked agent: the coordinator drops its copy of the
                                   agent's facts and takes them from the next instance that syncs
  admin admins add|remove NODE_ID  change the admins; admin admins list
  admin audit                      the audit trail, every signature verified locally
  doctor                           check the state dir's document store (read only)
  keygen [--out FILE] [--force]    make a node key (default: <state-dir>/node.key)
  id [--public-key FILE.pub]       print the node id of a key
  config show                      print the merged configuration and where each value came from

options (also FLT_<NAME> environment variables and config file keys; flags win):
  --state-dir DIR        state directory (default: ~/.local/state/flt, /var/lib/flt for root)
  --secret-key FILE      use an unencrypted OpenSSH ed25519 key as the node key
  --config FILE          TOML or JSON configuration file
  --log-level L          error | warn | info | debug (logs go to stderr)
  --bind HOST:PORT       socket to bind (coordinator 0.0.0.0:7447; others 0.0.0.0:0)
  --relay R              disabled | default | https://relay.example (iroh relays)
  --discovery D          none | n0 (iroh address discovery)
  --coordinator ADDR     coordinator ticket, or NODE_ID@HOST:PORT
  --admin NODE_ID|FILE   initial admin of a new fleet: node id or OpenSSH .pub (repeatable)
  --enroll-token TOKEN   one-time enrollment token (agent)
  --facts-interval D     how often agents publish facts (e.g. 60s)
  --rpc-timeout D        deadline of one request or echo round (e.g. 10s)
  --json                 machine-readable output
  -V, --version          print the version
  -h, --help             this text
`;
