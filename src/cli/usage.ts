// The help text. The options come from the key declarations (src/config-keys.ts), as the
// parser's do; the commands are listed here, next to the parser's applet options.

import { configOptionsHelp } from '../config-keys.js';

/** Width of the option column, `--state-dir DIR` and the like. */
const WIDTH = 22;

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
  admin admins add|remove NODE_ID  change the admins; admin admins list
  admin audit                      the audit trail, every signature verified locally
  doctor                           check the state dir's document store (read only)
  keygen [--out FILE] [--force]    make a node key (default: <state-dir>/node.key)
  id [--public-key FILE.pub]       print the node id of a key
  config show                      print the merged configuration and where each value came from

options (also FLT_<NAME> environment variables and config file keys; flags win):
${configOptionsHelp(WIDTH).join('\n')}
${'  -V, --version'.padEnd(WIDTH + 2)} print the version
${'  -h, --help'.padEnd(WIDTH + 2)} this text
`;
