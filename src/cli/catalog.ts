// Every command flt has, declared once: its words, arguments, own options, help, how it uses the
// state dir, and the runner it loads when it runs. program.ts turns this table into the parser,
// `--help` of each command and shell completion; main.ts runs what was chosen. A new command is
// one entry here and one runner in commands/.
//
// Nothing here imports a runner up front: each `run` imports its module when the command runs,
// so `--version` and `--help` load no role, no Automerge and no configuration (cli-start test).

import type { StateDirUse } from '../config/state-dir.js';
import type { Invocation } from './invocation.js';

/** One option of one command, in commander's syntax: `-n, --count <N>` or `--once`. */
export interface OptionDecl {
  readonly flags: string;
  readonly help: string;
  /** Given more than once, each value is kept (opts holds a string[]). */
  readonly repeatable?: boolean;
}

export interface CommandDecl {
  /** The words after `flt`: `['admin', 'facts']`. Groups (`admin`) are implied by their leaves. */
  readonly path: readonly string[];
  /** Positional arguments in commander's syntax: `<agent>`, `[node]`. */
  readonly args?: readonly { readonly name: string; readonly help: string }[];
  /** The usage line's arguments when commander's rendering of `args` would not say it. */
  readonly usage?: string;
  /** One line for the command list; the first line of the command's own `--help`. */
  readonly summary: string;
  /** More text for the command's own `--help`, after its options. */
  readonly details?: string;
  readonly options?: readonly OptionDecl[];
  /** How the command uses the state dir, checked before it runs (config/state-dir.ts). */
  readonly stateDir?: (inv: Pick<Invocation, 'opts' | 'config'>) => StateDirUse | undefined;
  /** Runs until stopped (keeps V8's optimizing compiler for Automerge's wasm; see main.ts). */
  readonly longRunning?: boolean;
  /**
   * Whether this run may load the replica's root document (wasm-tier.ts; true when absent):
   * `admin facts` online asks the coordinator for its one agent instead.
   */
  readonly loadsRoot?: (inv: Pick<Invocation, 'opts'>) => boolean;
  readonly run: (inv: Invocation) => Promise<void>;
}

/** Descriptions of the words that only group commands. */
export const GROUPS: Readonly<Record<string, string>> = {
  admin: 'read and change the fleet (run as an admin node)',
  'admin admins': 'the fleet admins: list, add, remove',
  'admin artifacts': "the coordinator's artifact store: stats, gc",
  config: 'the merged configuration',
};

const write = () => 'write' as const;
const AGENT_ARG = { name: '<agent>', help: 'node id, unique prefix or hostname' };
const NODE_ARG = { name: '<node-id>', help: 'the node id (64 hex digits)' };
const OFFLINE: OptionDecl = { flags: '--offline', help: 'read the local replica; no network' };
const FLAKE: OptionDecl = {
  flags: '--flake <ref>',
  help: 'build and use REF#nixosConfigurations.HOST (nix build)',
};

const fleet = () => import('./commands/fleet.js');
const trust = () => import('./commands/trust.js');
const keys = () => import('./commands/keys.js');
const deploy = () => import('./commands/deploy.js');

export const COMMANDS: readonly CommandDecl[] = [
  {
    path: ['demo'],
    summary: 'a local fleet (coordinator, 2 agents, admin view) on loopback',
    options: [
      { flags: '--once', help: 'print the fleet table once both agents are in, then exit' },
    ],
    stateDir: write,
    longRunning: true,
    run: async (inv) => (await import('./commands/demo.js')).runDemo(inv),
  },
  {
    path: ['coordinator'],
    summary: 'run the coordinator until SIGINT/SIGTERM; prints its ticket',
    stateDir: write,
    longRunning: true,
    run: async (inv) => (await import('./commands/coordinator.js')).runCoordinator(inv),
  },
  {
    path: ['agent'],
    summary: 'run an agent: enroll with --coordinator, publish facts',
    details:
      'A new agent enrolls with --enroll-token TOKEN, or once an admin approved its node id.',
    stateDir: write,
    longRunning: true,
    run: async (inv) => (await fleet()).runAgent(inv),
  },
  {
    path: ['admin', 'agents'],
    summary: 'the fleet table',
    options: [OFFLINE],
    stateDir: write,
    run: async (inv) => (await fleet()).runAgents(inv),
  },
  {
    path: ['admin', 'facts'],
    summary: "one agent's facts",
    args: [AGENT_ARG],
    options: [OFFLINE],
    stateDir: write,
    loadsRoot: ({ opts }) => opts.offline === true,
    run: async (inv) => (await fleet()).runFacts(inv),
  },
  {
    path: ['admin', 'echo'],
    summary: 'verified echo rounds to the coordinator (or NODE)',
    args: [{ name: '[node]', help: 'NODE_ID@HOST:PORT or a ticket (default: the coordinator)' }],
    options: [
      { flags: '-n, --count <n>', help: 'rounds, 1 to 1000000 (default: 10)' },
      { flags: '--size <bytes>', help: 'payload per round, e.g. 4096, 64k, 1m (default: 64k)' },
    ],
    stateDir: write,
    run: async (inv) => (await import('./commands/echo.js')).runEcho(inv),
  },
  {
    path: ['admin', 'enroll-token'],
    summary: 'a one-time token an agent enrolls with',
    options: [{ flags: '--expires <duration>', help: 'lifetime, 1s to 30d (default: 1h)' }],
    stateDir: write,
    run: async (inv) => (await trust()).runEnrollToken(inv),
  },
  {
    path: ['admin', 'approve'],
    summary: 'approve an agent (before or after it starts)',
    args: [NODE_ARG],
    stateDir: write,
    run: async (inv) => (await trust()).runApproveRevoke(inv, 'agent.approve'),
  },
  {
    path: ['admin', 'revoke'],
    summary: 'revoke an agent: refused from now on',
    args: [NODE_ARG],
    stateDir: write,
    run: async (inv) => (await trust()).runApproveRevoke(inv, 'agent.revoke'),
  },
  {
    path: ['admin', 'admins', 'list'],
    summary: 'the current admins, from the verified audit trail',
    stateDir: write,
    run: async (inv) => (await trust()).runAdminsList(inv),
  },
  {
    path: ['admin', 'admins', 'add'],
    summary: 'make a node an admin',
    args: [NODE_ARG],
    stateDir: write,
    run: async (inv) => (await trust()).runAdminsChange(inv, 'admin.add'),
  },
  {
    path: ['admin', 'admins', 'remove'],
    summary: 'remove an admin',
    args: [NODE_ARG],
    stateDir: write,
    run: async (inv) => (await trust()).runAdminsChange(inv, 'admin.remove'),
  },
  {
    path: ['admin', 'audit'],
    summary: 'the audit trail, every signature verified locally',
    stateDir: write,
    run: async (inv) => (await trust()).runAudit(inv),
  },
  {
    path: ['admin', 'deploy'],
    usage: '[options] [TARGET...] (STORE_PATH | --flake REF#nixosConfigurations.HOST)',
    summary: 'sign a system for agents to activate (TARGET... STORE_PATH)',
    args: [
      {
        name: '[target-and-path...]',
        help: 'agents (node id, unique prefix, hostname; none with --all/--label), then the store path (or ./result)',
      },
    ],
    details:
      'Signed here, kept in the state dir, then sent to the coordinator; unreachable, it is\n' +
      'queued and sent by the next online flt admin command. Exit 1 with --wait when a\n' +
      'target failed, was refused or rolled back (DEPLOY_FAILED), or did not finish (TIMEOUT).\n' +
      "The path's closure is pushed to the coordinator first (as flt admin push; a push\n" +
      'error refuses the deployment) unless --no-push. --flake builds the system first; with\n' +
      'no TARGET its HOST is the target.',
    options: [
      { flags: '--all', help: 'every agent (not revoked, not forked)' },
      {
        flags: '--label <key=value>',
        help: 'agents with this label; repeat to require several',
        repeatable: true,
      },
      { flags: '--action <action>', help: 'switch, boot or test (default: switch)' },
      {
        flags: '--expires <duration>',
        help: 'agents refuse it after this, 1m to 30d (default: 7d)',
      },
      { flags: '--wait', help: "show each agent's progress until all are done" },
      { flags: '--timeout <duration>', help: 'how long --wait waits (default: 15m)' },
      FLAKE,
      {
        flags: '--no-push',
        help: 'do not push the closure (agents get it another way)',
      },
    ],
    stateDir: write,
    run: async (inv) => (await deploy()).runDeploy(inv),
  },
  {
    path: ['admin', 'push'],
    usage: '[options] [PATH...]',
    summary: "push store paths' closures to the coordinator (what it lacks)",
    args: [{ name: '[path...]', help: 'store paths (or symlinks to them such as ./result)' }],
    details:
      "Each path and its closure, from the Nix store of nix_store (default: Nix's), signed\n" +
      'with nix_signing_key, minus what the coordinator has already. Exit 1 with the first\n' +
      'error after every path was tried: NOT_IN_STORE, NO_SIGNING_KEY, BAD_SIGNING_KEY,\n' +
      'UNKNOWN_SIGNING_KEY, DISK_FULL, BUILD_FAILED.',
    options: [FLAKE],
    stateDir: write,
    run: async (inv) => (await import('./commands/push.js')).runPush(inv),
  },
  {
    path: ['admin', 'deployments'],
    summary: 'deployments, newest first, with the state of their targets',
    options: [OFFLINE],
    stateDir: write,
    run: async (inv) => (await deploy()).runDeployments(inv),
  },
  {
    path: ['admin', 'status'],
    summary: 'desired vs current vs booted system per agent',
    args: [
      { name: '[agent]', help: 'one agent (node id, prefix or hostname): with its deployments' },
    ],
    options: [OFFLINE],
    stateDir: write,
    run: async (inv) => (await deploy()).runStatus(inv),
  },
  {
    path: ['admin', 'artifacts', 'stats'],
    summary: "the coordinator's artifact store: paths, bytes, quarantine, last gc",
    options: [OFFLINE],
    stateDir: write,
    run: async (inv) => (await import('./commands/artifact-store.js')).runArtifactStats(inv),
  },
  {
    path: ['admin', 'artifacts', 'gc'],
    summary: "run the coordinator's artifact garbage collection now",
    details:
      'Removes what no deployment references any more: index entries outside every live\n' +
      'closure, blobs no entry names and partial uploads, both untouched for artifact_gc_grace.',
    options: [{ flags: '--dry-run', help: 'only list what would be removed' }],
    stateDir: write,
    run: async (inv) => (await import('./commands/artifact-store.js')).runArtifactGc(inv),
  },
  {
    path: ['admin', 'label'],
    summary: "set or remove an agent's labels (KEY= removes)",
    args: [AGENT_ARG, { name: '<key=value...>', help: 'labels to set; KEY= removes one' }],
    stateDir: write,
    run: async (inv) => (await deploy()).runLabel(inv),
  },
  {
    path: ['doctor'],
    summary: "check the state dir's document store (read only)",
    stateDir: () => 'read',
    run: async (inv) => (await import('./commands/doctor.js')).runDoctor(inv),
  },
  {
    path: ['keygen'],
    summary: 'make a node key (default: <state-dir>/node.key)',
    options: [
      { flags: '--out <file>', help: 'write the key here (and FILE.pub) instead' },
      { flags: '--force', help: 'replace an existing key' },
    ],
    stateDir: ({ opts }) => (opts.out ? undefined : 'write'),
    run: async (inv) => (await keys()).runKeygen(inv),
  },
  {
    path: ['id'],
    summary: 'print the node id of a key (default: the node key)',
    options: [{ flags: '--public-key <file>', help: 'an OpenSSH ed25519 .pub file' }],
    stateDir: ({ opts, config }) =>
      opts.publicKey || config.secretKey !== undefined ? undefined : 'write',
    run: async (inv) => (await keys()).runId(inv),
  },
  {
    path: ['config', 'show'],
    summary: 'print the merged configuration and where each value came from',
    run: async ({ resolved, config, out }) =>
      out.line((await import('../config/index.js')).formatConfig(resolved, { json: config.json })),
  },
];
