#!/usr/bin/env node
// The `flt` command. Parses the command line (program.ts), resolves the configuration, runs one
// command (catalog.ts), and turns any failure into one line `flt: CODE: message` on stderr with a
// non-zero exit: 2 for bad usage or configuration, 1 for everything else. Only INTERNAL (a bug)
// adds a stack trace; `--log-level debug` adds the chain of causes (e.g. the iroh binding's own
// error text).
//
// Start-up cost: only what `--version` and `--help` need is imported up front. The configuration
// (zod) and each command (and through it iroh, Automerge and the roles) are imported when a
// command runs, by its catalog entry (bench `cli` group; README "Benchmarks").

import { chooseOneShotTier } from './wasm-tier.js';
import { codeOf, messageOf } from '../errors.js';
import { createLogger } from '../../sync/log.js';
import { stdout } from './output.js';
import { parseAndRun, type Chosen } from './program.js';

const USAGE_CODES = new Set(['BAD_ARGUMENT', 'BAD_CONFIG', 'BAD_ADDRESS', 'BAD_NODE_ID']);

/** Set once the configuration is known: print the causes of a failure too. */
let debug = false;

/** Resolves the configuration, checks the state dir as the command uses it, and runs it. */
async function run({ command, args, opts, configFlags }: Chosen): Promise<void> {
  const { resolveConfig } = await import('../config/index.js');
  const resolved = await resolveConfig({ flags: configFlags, env: process.env });
  const config = resolved.config;
  // Before any wasm is compiled (the config imports no Automerge): wasm-tier.ts says why.
  if (!command.longRunning) chooseOneShotTier(config.stateDir, command.loadsRoot?.({ opts }));
  debug = config.logLevel === 'debug';
  const log = createLogger(config.logLevel);
  const use = command.stateDir?.({ opts, config });
  if (use) await (await import('../config/state-dir.js')).prepareStateDir(resolved, use);
  await command.run({ args, opts, config, resolved, log, out: stdout });
}

parseAndRun(process.argv.slice(2), run).then(
  () => exitWhenWritten(0),
  (err: unknown) => {
    const code = codeOf(err);
    process.stderr.write(`flt: ${code}: ${messageOf(err)}\n`);
    if (code === 'INTERNAL') process.stderr.write(`${(err as Error).stack ?? ''}\n`);
    else if (debug) for (const line of causes(err)) process.stderr.write(`${line}\n`);
    exitWhenWritten(USAGE_CODES.has(code) ? 2 : 1);
  },
);

/**
 * Exits once stdout and stderr have taken everything written. A pipe takes writes
 * asynchronously, and process.exit drops what it has not: `flt admin agents --json | jq` of
 * 5,000 agents got the first 128 KiB. A reader that went away (EPIPE) ends the wait.
 */
function exitWhenWritten(code: number): void {
  const streams = [process.stdout, process.stderr];
  let left = streams.length;
  const done = () => {
    if (--left === 0) process.exit(code);
  };
  for (const stream of streams) {
    stream.once('error', () => process.exit(code));
    stream.write('', done);
  }
}

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
