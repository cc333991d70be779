#!/usr/bin/env node
// The `flt` command. Parses the command line, resolves the configuration, runs one applet, and
// turns any failure into one line `flt: CODE: message` on stderr with a non-zero exit:
// 2 for bad usage or configuration, 1 for everything else. Only INTERNAL (a bug) adds a stack
// trace; `--log-level debug` adds the chain of causes (e.g. the iroh binding's own error text).
//
// Start-up cost: only what `--version` and `--help` need is imported up front. The configuration
// (zod) and each command (and through it iroh, Automerge and the roles) are imported when a
// command runs, each by the branch that runs it (bench `cli` group; README "Benchmarks").

import { setFlagsFromString } from 'node:v8';
import { codeOf, FltError, messageOf } from '../errors.js';
import { createLogger } from '../../sync/log.js';
import type { StateDirUse } from '../config/state-dir.js';
import { VERSION } from '../version.js';
import { parseCommandLine, type ParsedArgs } from './args.js';
import { stdout } from './output.js';
import { USAGE } from './usage.js';

const USAGE_CODES = new Set(['BAD_ARGUMENT', 'BAD_CONFIG', 'BAD_ADDRESS', 'BAD_NODE_ID']);

/** Applets that run until stopped: Automerge's wasm keeps V8's optimizing tier in them. */
const LONG_RUNNING = new Set(['coordinator', 'agent', 'demo']);

/**
 * A command that reads and exits compiles Automerge's wasm with V8's baseline compiler only
 * (`--liftoff-only`): optimizing the hot functions of a 3 MB module costs more than a short run
 * gains from it (measured: `admin agents --offline` on 100 agents, ~0.55 s of CPU -> ~0.34 s;
 * bench `cli` group). Set before any wasm is compiled; it changes speed, never results.
 */
function oneShotWasm(): void {
  setFlagsFromString('--liftoff-only');
}

/** Set once the configuration is known: print the causes of a failure too. */
let debug = false;

async function main(argv: readonly string[]): Promise<void> {
  const args = parseCommandLine(argv);
  if (args.options.version) return stdout.line(VERSION);
  if (args.options.help || !args.applet) return stdout.line(USAGE);
  if (!LONG_RUNNING.has(args.applet)) oneShotWasm();
  const { formatConfig, resolveConfig } = await import('../config/index.js');
  const resolved = await resolveConfig({ flags: args.configFlags, env: process.env });
  const config = resolved.config;
  debug = config.logLevel === 'debug';
  const log = createLogger(config.logLevel);
  const use = stateDirUse(args, config.secretKey !== undefined);
  if (use) await (await import('../config/state-dir.js')).prepareStateDir(resolved, use);
  switch (args.applet) {
    case 'coordinator':
      return (await import('./commands/coordinator.js')).runCoordinator(config, log, stdout);
    case 'agent':
      return (await import('./commands/fleet.js')).runAgent(config, log);
    case 'demo':
      return (await import('./commands/demo.js')).runDemo(args, config, log, stdout);
    case 'doctor':
      return (await import('./commands/doctor.js')).runDoctor(config, stdout);
    case 'admin': {
      const fleet = () => import('./commands/fleet.js');
      const trust = () => import('./commands/trust.js');
      return runAdmin(args, {
        echo: async () => (await import('./commands/echo.js')).runEcho(args, config, log, stdout),
        agents: async () => (await fleet()).runAgents(args, config, log, stdout),
        facts: async () => (await fleet()).runFacts(args, config, log, stdout),
        'enroll-token': async () => (await trust()).runEnrollToken(args, config, log, stdout),
        approve: async () =>
          (await trust()).runApproveRevoke(args, config, log, stdout, 'agent.approve'),
        revoke: async () =>
          (await trust()).runApproveRevoke(args, config, log, stdout, 'agent.revoke'),
        admins: async () => (await trust()).runAdmins(args, config, log, stdout),
        audit: async () => (await trust()).runAudit(config, log, stdout),
      });
    }
    case 'keygen':
      return (await import('./commands/keys.js')).runKeygen(args, config, log, stdout);
    case 'id':
      return (await import('./commands/keys.js')).runId(args, config, log, stdout);
    case 'config':
      if (args.words[0] !== 'show')
        throw new FltError('BAD_ARGUMENT', 'usage: flt config show [--json]');
      return stdout.line(formatConfig(resolved, { json: config.json }));
    default:
      throw new FltError(
        'BAD_ARGUMENT',
        `unknown command ${JSON.stringify(args.applet)} (see flt --help)`,
      );
  }
}

/**
 * How the applet uses the state dir, if at all. Admin commands always do (the endpoint opens
 * there, and the replica lives there); keygen --out, id --secret-key/--public-key and config do not.
 */
function stateDirUse(args: ParsedArgs, hasSecretKey: boolean): StateDirUse | undefined {
  switch (args.applet) {
    case 'coordinator':
    case 'agent':
    case 'demo':
    case 'admin':
      return 'write';
    case 'keygen':
      return args.options.out ? undefined : 'write';
    case 'id':
      return args.options.publicKey || hasSecretKey ? undefined : 'write';
    case 'doctor':
      return 'read';
    default:
      return undefined;
  }
}

function runAdmin(args: ParsedArgs, commands: Record<string, () => Promise<void>>): Promise<void> {
  const sub = args.words[0] ?? '';
  const run = Object.hasOwn(commands, sub) ? commands[sub] : undefined;
  if (!run) {
    const known = Object.keys(commands).join(', ');
    throw new FltError(
      'BAD_ARGUMENT',
      `unknown admin command ${JSON.stringify(sub)} (known: ${known})`,
    );
  }
  return run();
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: unknown) => {
    const code = codeOf(err);
    process.stderr.write(`flt: ${code}: ${messageOf(err)}\n`);
    if (code === 'INTERNAL') process.stderr.write(`${(err as Error).stack ?? ''}\n`);
    else if (debug) for (const line of causes(err)) process.stderr.write(`${line}\n`);
    process.exit(USAGE_CODES.has(code) ? 2 : 1);
  },
);

/** `caused by: ...` for each error in the `cause` chain (bounded), with their full text. */
function causes(err: unknown): string[] {
  const out: string[] = [];
  const causeOf = (e: unknown) => (e instanceof Error ? e.cause : undefined);
  for (let cur = causeOf(err), depth = 0; cur !== undefined && depth < 8; depth++) {
    out.push(`caused by: ${messageOf(cur)}`);
    cur = causeOf(cur);
  }
  return out;
}
