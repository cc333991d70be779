// The command line as a person meets it: every command's own --help, a group run without its
// command, a wrong word, and shell completion (the bash script run by a real bash).

import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS } from '../src/cli/catalog.js';
import { runFlt, tempDir } from './helpers/flt.js';

let dir: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => void (dir = await tempDir()));
afterAll(() => dir.remove());

/** The first line of a refusal, split into its exit status, code and message. */
function refusal(r: { code: number | null; stderr: string; stdout: string }) {
  const m = /^flt: ([A-Z_]+): (.*)$/.exec(r.stderr.trim());
  return { exit: r.code, code: m?.[1], message: m?.[2], stdout: r.stdout };
}

describe('flt help', () => {
  it.each(COMMANDS.map((c) => [c.path.join(' '), c] as const))(
    'flt %s --help describes that command alone',
    async (_, command) => {
      const r = await runFlt([...command.path, '--help']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: flt ${command.path.join(' ')}\\b`));
      const lines = r.stdout.split('\n');
      expect(lines).toContain(command.summary); // the description, on its own line
      for (const o of command.options ?? []) expect(r.stdout).toContain(o.help);
      for (const other of COMMANDS)
        if (other.summary !== command.summary) expect(lines).not.toContain(other.summary);
      expect(r.stdout).not.toContain('--rpc-timeout'); // flt's own options are in flt --help
    },
  );

  it('flt --help lists every top-level command and every config flag', async () => {
    const r = await runFlt(['--help']);
    expect(r.code).toBe(0);
    for (const word of new Set(COMMANDS.map((c) => c.path[0]!)))
      expect(r.stdout).toMatch(new RegExp(`^  ${word}\\b`, 'm'));
    expect(r.stdout).toMatch(/^ {2}--state-dir <DIR>/m);
  });

  it.each([
    [['admin'], /^flt admin needs a command: agents, facts, /],
    [['admin', 'admins'], /^flt admin admins needs a command: list, add, remove$/],
    [['admin', 'agent'], /^unknown command 'agent' \(Did you mean agents\?\)$/],
    [['admin', 'facts'], /^missing required argument 'agent'$/],
    [['admin', 'facts', 'a', 'b'], /^too many arguments for 'facts'/],
    [['--stat-dir', 'x', 'id'], /^unknown option '--stat-dir' \(Did you mean --state-dir\?\)$/],
    [['--offline', 'admin', 'agents'], /^unknown option '--offline'$/],
    [['completion', 'tcsh'], /^unknown shell "tcsh": bash, zsh, fish$/],
  ])('flt %j exits 2 with one BAD_ARGUMENT line and prints nothing', async (args, message) => {
    const e = refusal(await runFlt([...args, '--state-dir', join(dir.path, 'never')]));
    expect(e).toMatchObject({ exit: 2, code: 'BAD_ARGUMENT', stdout: '' });
    expect(e.message).toMatch(message);
  });
});

describe('flt completion', () => {
  let script: string;
  beforeAll(async () => {
    const r = await runFlt(['completion', 'bash']);
    expect(r.code, r.stderr).toBe(0);
    script = join(dir.path, 'flt.bash');
    await writeFile(script, r.stdout);
  });

  /** What bash offers for the line typed so far (its last word is being completed). */
  async function complete(line: string): Promise<string[]> {
    const words = line.split(' ');
    const program = `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _flt; printf '%s\\n' "\${COMPREPLY[@]}"`;
    const { stdout } = await promisify(execFile)('bash', ['-c', program, 'bash', script, ...words]);
    return stdout.split('\n').filter(Boolean);
  }

  it.each([
    ['flt adm', ['admin']],
    ['flt admin fa', ['facts']],
    ['flt admin facts --of', ['--offline']],
    ['flt admin admins ', ['list', 'add', 'remove']],
    ['flt --state-dir /tmp ad', ['admin']],
    ['flt admin echo --co', ['--count', '--coordinator', '--config']],
  ])('bash: %j offers %j', async (line, offered) => {
    const got = await complete(line);
    for (const word of offered) expect(got).toContain(word);
    if (!line.endsWith(' ') && !line.includes('--')) expect(got).toEqual(offered);
  });

  it('zsh and fish scripts name every command', async () => {
    for (const shell of ['zsh', 'fish']) {
      const r = await runFlt(['completion', shell]);
      expect(r.code, r.stderr).toBe(0);
      for (const c of COMMANDS) expect(r.stdout, shell).toContain(c.path.at(-1));
    }
  });
});
