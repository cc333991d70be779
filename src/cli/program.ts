// The command-line parser, built with commander from the two declarations: the commands
// (catalog.ts) and the configuration keys (src/config-keys.ts), which are options of `flt`
// itself, accepted before or after the command. Each command has its own `--help`.
//
// Commander never exits or prints an error here: `exitOverride` turns every parse failure into
// a FltError BAD_ARGUMENT (exit 2, one line, main.ts), and help and version into a normal end.

import { Command, CommanderError, Option } from 'commander';
import { FltError } from '../../sync/errors.js';
import { CONFIG_FILE, KEY_DECLS, flagOf, helpText, type KeyDecl } from '../config-keys.js';
import { VERSION } from '../version.js';
import { COMMANDS, GROUPS, type CommandDecl } from './catalog.js';

/** Config flags as the resolver takes them: by flag name without dashes (`state-dir`). */
export type ConfigFlags = Record<string, string | string[] | boolean | undefined>;

/** What the parser chose: one command, its arguments and options, and the config flags. */
export interface Chosen {
  readonly command: CommandDecl;
  readonly args: readonly string[];
  readonly opts: Readonly<Record<string, string | readonly string[] | boolean | undefined>>;
  readonly configFlags: ConfigFlags;
}

const GLOBAL_NOTE = 'Options of flt itself (--state-dir, --coordinator, --json, ...): flt --help';

/** Options that are config keys (and `--config`), with the flag name the resolver knows. */
function configOptions(): { option: Option; flag: string }[] {
  const config = new Option(`--${CONFIG_FILE.flag} <${CONFIG_FILE.metavar}>`, CONFIG_FILE.help);
  const options: { option: Option; flag: string }[] = [{ option: config, flag: CONFIG_FILE.flag }];
  for (const decl of KEY_DECLS as readonly KeyDecl[]) {
    const value = decl.kind === 'boolean' ? '' : ` <${decl.metavar ?? 'VALUE'}>`;
    const option = new Option(`--${flagOf(decl)}${value}`, helpText(decl));
    if (decl.kind === 'list')
      option.argParser((v: string, prev?: string[]) => [...(prev ?? []), v]);
    options.push({ option, flag: flagOf(decl) });
  }
  return options;
}

/**
 * Builds `flt`. `onChoose` receives the chosen command; commander awaits it, so it may run it.
 */
export function buildProgram(onChoose: (chosen: Chosen) => Promise<void>): Command {
  const program = new Command('flt')
    .description('fleet management for NixOS machines over iroh')
    .version(VERSION, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'print help (flt COMMAND --help: help for one command)')
    .showSuggestionAfterError(true)
    .exitOverride()
    // main.ts prints the one error line; a group run alone gets that line, not a page of help
    .configureOutput({ outputError: () => undefined, writeErr: () => undefined });
  const config = configOptions();
  for (const { option } of config) program.addOption(option);
  program.addHelpText(
    'after',
    '\nConfig options are also FLT_<NAME> environment variables and config file keys; flags win.',
  );

  const groups = new Map<string, Command>([['', program]]);
  const groupOf = (path: readonly string[]): Command => {
    const key = path.join(' ');
    const known = groups.get(key);
    if (known) return known;
    const parent = groupOf(path.slice(0, -1));
    const group = parent.command(path.at(-1)!).description(GROUPS[key] ?? '');
    groups.set(key, group);
    return group;
  };

  for (const decl of COMMANDS) {
    const cmd = groupOf(decl.path.slice(0, -1)).command(decl.path.at(-1)!);
    cmd.description(decl.summary);
    if (decl.usage) cmd.usage(decl.usage);
    for (const a of decl.args ?? []) cmd.argument(a.name, a.help);
    for (const o of decl.options ?? []) {
      const option = new Option(o.flags, o.help);
      // A repeatable option collects every value given: `--label a=1 --label b=2`.
      if (o.repeatable) option.argParser((v: string, prev?: string[]) => [...(prev ?? []), v]);
      cmd.addOption(option);
    }
    cmd.addHelpText('after', `${decl.details ? `\n${decl.details}\n` : ''}\n${GLOBAL_NOTE}`);
    // commander passes each argument (a string, or undefined when optional and absent), then
    // the options and the command itself
    cmd.action(async (...params: unknown[]) => {
      const configFlags: ConfigFlags = {};
      const all = cmd.optsWithGlobals<Record<string, string | string[] | boolean>>();
      for (const { option, flag } of config) configFlags[flag] = all[option.attributeName()];
      await onChoose({
        command: decl,
        // a variadic argument arrives as an array: spread at the end
        args: params.flatMap((p) =>
          typeof p === 'string'
            ? [p]
            : Array.isArray(p)
              ? p.filter((x): x is string => typeof x === 'string')
              : [],
        ),
        opts: cmd.opts(),
        configFlags,
      });
    });
  }
  program
    .command('completion')
    .description('print a shell completion script (bash, zsh or fish)')
    .argument('<shell>', 'bash | zsh | fish')
    .addHelpText(
      'after',
      '\nbash: source <(flt completion bash); fish: flt completion fish | source',
    )
    .action(async (shell: string) => {
      const { completionScript } = await import('./completion.js');
      process.stdout.write(completionScript(program, shell));
    });
  return program;
}

/**
 * Parses `argv` (without `node flt`) and awaits `onChoose` for the chosen command. Resolves
 * `false` when help or the version was printed instead.
 * @throws {FltError} BAD_ARGUMENT for anything commander refuses, with commander's message.
 */
export async function parseAndRun(
  argv: readonly string[],
  onChoose: (chosen: Chosen) => Promise<void>,
): Promise<boolean> {
  const program = buildProgram(onChoose);
  if (argv.length === 0) {
    program.outputHelp();
    return false;
  }
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return true;
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    if (err.exitCode === 0) return false;
    if (err.code !== 'commander.help')
      throw new FltError('BAD_ARGUMENT', err.message.replace(/^error: /, '').replaceAll('\n', ' '));
    const group = groupIn(program, argv);
    const names = group.commands.map((c) => c.name()).filter((n) => n !== 'help');
    const usage = ['flt', ...pathOf(group)].join(' ');
    throw new FltError('BAD_ARGUMENT', `${usage} needs a command: ${names.join(', ')}`);
  }
}

/** The deepest group that `argv`'s words name (commander does not say which one it stopped at). */
function groupIn(program: Command, argv: readonly string[]): Command {
  let at = program;
  for (const word of argv) {
    const next = at.commands.find((c) => c.name() === word);
    if (next) at = next;
  }
  return at;
}

function pathOf(cmd: Command): string[] {
  return cmd.parent ? [...pathOf(cmd.parent), cmd.name()] : [];
}
