#!/usr/bin/env node
// The `flt` command. Parses the command line, resolves the configuration, runs one applet, and
// turns any failure into one line `flt: CODE: message` on stderr with a non-zero exit:
// 2 for bad usage or configuration, 1 for everything else.

import { codeOf, FltError, messageOf } from '../../sync/errors.js';
import { createLogger } from '../../sync/log.js';
import { formatConfig, resolveConfig } from '../config/index.js';
import { VERSION } from '../version.js';
import { parseCommandLine, type ParsedArgs } from './args.js';
import { runCoordinator } from './commands/coordinator.js';
import { runDemo } from './commands/demo.js';
import { runDoctor } from './commands/doctor.js';
import { runEcho } from './commands/echo.js';
import {
  runAdmins,
  runApproveRevoke,
  runAudit,
  runEnrollToken,
  runReset,
} from './commands/trust.js';
import { runAgent, runAgents, runFacts } from './commands/fleet.js';
import { runId, runKeygen } from './commands/keys.js';
import { stdout } from './output.js';
import { USAGE } from './usage.js';

const USAGE_CODES = new Set(['BAD_ARGUMENT', 'BAD_CONFIG', 'BAD_ADDRESS', 'BAD_NODE_ID']);

async function main(argv: readonly string[]): Promise<void> {
  const args = parseCommandLine(argv);
  if (args.options.version) return stdout.line(VERSION);
  if (args.options.help || !args.applet) return stdout.line(USAGE);
  const resolved = await resolveConfig({ flags: args.configFlags, env: process.env });
  const config = resolved.config;
  const log = createLogger(config.logLevel);
  switch (args.applet) {
    case 'coordinator':
      return runCoordinator(config, log, stdout);
    case 'agent':
      return runAgent(config, log);
    case 'demo':
      return runDemo(args, config, log, stdout);
    case 'doctor':
      return runDoctor(config, stdout);
    case 'admin':
      return runAdmin(args, {
        echo: () => runEcho(args, config, log, stdout),
        agents: () => runAgents(args, config, log, stdout),
        facts: () => runFacts(args, config, log, stdout),
        'enroll-token': () => runEnrollToken(args, config, log, stdout),
        approve: () => runApproveRevoke(args, config, log, stdout, 'agent.approve'),
        revoke: () => runApproveRevoke(args, config, log, stdout, 'agent.revoke'),
        reset: () => runReset(args, config, log, stdout),
        admins: () => runAdmins(args, config, log, stdout),
        audit: () => runAudit(config, log, stdout),
      });
    case 'keygen':
      return runKeygen(args, config, log, stdout);
    case 'id':
      return runId(args, config, log, stdout);
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
    if (!(err instanceof FltError)) process.stderr.write(`${(err as Error).stack ?? ''}\n`);
    process.exit(USAGE_CODES.has(code) ? 2 : 1);
  },
);
