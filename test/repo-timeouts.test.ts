// sync/repo-timeouts.ts: automerge-repo 2.5.6 rejects a sync timeout with nobody listening when a
// document a peer announced never arrives (a peer that announced and left); Node would end the
// process a minute later. Real child processes: with the guard, automerge-repo's own TimeoutError
// (its class, from its dist) unhandled leaves the process running and logs one line; any other
// unhandled rejection still ends it, as Node would.

import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isRepoTimeout } from '../sync/repo-timeouts.js';

const ROOT = resolve(import.meta.dirname, '..');
const GUARD = pathToFileURL(resolve(ROOT, 'dist/sync/repo-timeouts.js')).href;
const REPO_TIMEOUT = pathToFileURL(
  resolve(ROOT, 'node_modules/@automerge/automerge-repo/dist/helpers/withTimeout.js'),
).href;

/** Runs a module script in a child Node; its exit code and output. */
function child(script: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', script],
      { timeout: 20_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        done({ code, stdout, stderr });
      },
    );
  });
}

const prelude = `
  import { guardRepoTimeouts, repoTimeoutsSeen } from ${JSON.stringify(GUARD)};
  import { withTimeout } from ${JSON.stringify(REPO_TIMEOUT)};
  const line = (level) => (msg, f) => process.stderr.write(level + ' ' + msg + ' ' + JSON.stringify(f ?? {}) + '\\n');
  guardRepoTimeouts({ error: line('ERROR'), warn: line('WARN'), info: line('INFO'), debug: line('DEBUG') });
  const tick = () => new Promise((r) => setTimeout(r, 50));
`;

describe('guardRepoTimeouts', () => {
  it("absorbs automerge-repo's unhandled withTimeout rejection: the process lives on and says so", async () => {
    const r = await child(`${prelude}
      void withTimeout(new Promise(() => {}), 10); // as beginSync: nobody awaits it
      void withTimeout(new Promise(() => {}), 10);
      await tick(); await tick();
      console.log('alive ' + repoTimeoutsSeen());
    `);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('alive 2');
    const warns = r.stderr.split('\n').filter((l) => l.startsWith('WARN'));
    expect(warns).toHaveLength(1); // rate-limited: one line for both
    expect(warns[0]).toMatch(/did not arrive in time/);
  });

  it('any other unhandled rejection still ends the process', async () => {
    const r = await child(`${prelude}
      void Promise.reject(new Error('boom: not a repo timeout'));
      await tick();
      console.log('alive');
    `);
    expect(r.code).not.toBe(0);
    expect(r.stdout).not.toContain('alive');
    expect(r.stderr).toContain('boom: not a repo timeout');
  });

  it('recognises only the two timeout shapes', () => {
    const repo = Object.assign(new Error('withTimeout: timed out after 60000ms'), {
      name: 'TimeoutError',
    });
    expect(isRepoTimeout(repo)).toBe(true);
    const xstate = new Error('Timeout of 120000 ms exceeded');
    xstate.stack = `Error: Timeout of 120000 ms exceeded\n    at node_modules/xstate/dist/x.js:1:1`;
    expect(isRepoTimeout(xstate)).toBe(true);
    expect(isRepoTimeout(new Error('Timeout of 120000 ms exceeded'))).toBe(false); // not xstate's
    expect(isRepoTimeout(new Error('withTimeout: timed out after 1ms'))).toBe(false); // wrong name
    expect(isRepoTimeout('TimeoutError')).toBe(false);
  });
});
