// `flt coordinator` lifecycle as a real process: ticket on stdout and in the state dir,
// clean exit 0 on SIGINT and on SIGTERM.

import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FltProcess, LOCAL, nodeIdOf, runFlt, tempDir } from './helpers/flt.js';

let dir: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(() => dir.remove());

it.each(['SIGINT', 'SIGTERM'] as const)(
  'writes its ticket, and closes cleanly on %s',
  async (signal) => {
    const state = `${dir.path}/${signal}`;
    const c = new FltProcess([
      '--state-dir',
      state,
      ...LOCAL,
      'coordinator',
      '--bind',
      '127.0.0.1:0',
      '--admin',
      await nodeIdOf(`${state}-admin`), // only members may echo
    ]);
    const ticket = (await c.waitFor(/^(endpoint\w+)$/m))[1]!;
    expect((await readFile(`${state}/coordinator.ticket`, 'utf8')).trim()).toBe(ticket);
    expect(c.stderr).toContain(`state dir ${state}`);
    // It answers while running...
    const echo = await runFlt([
      '--state-dir',
      `${state}-admin`,
      ...LOCAL,
      'admin',
      '--coordinator',
      ticket,
      'echo',
      '-n',
      '1',
    ]);
    expect(echo.code, echo.stderr).toBe(0);
    // ...and stops cleanly.
    c.kill(signal);
    expect(await c.exited).toEqual({ code: 0, signal: null });
    expect(c.stderr).toMatch(/coordinator stopped/);
  },
);

it('restarts with the same node id from its state dir', async () => {
  const state = `${dir.path}/same`;
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const c = new FltProcess([
      '--state-dir',
      state,
      ...LOCAL,
      '--json',
      'coordinator',
      '--bind',
      '127.0.0.1:0',
    ]);
    ids.push((await c.waitFor(/"nodeId": "([0-9a-f]{64})"/))[1]!);
    c.kill('SIGTERM');
    const exit = await c.exited;
    expect(exit.code, JSON.stringify(exit) + c.stderr).toBe(0);
  }
  expect(ids[1]).toBe(ids[0]);
});
