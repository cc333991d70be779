// The trust commands as a user runs them, as real processes: a coordinator whose initial admin is
// named by an OpenSSH public key file, a token issued by that admin, an agent enrolling with it,
// a second agent refused with the token's reason code, and the audit trail verified locally.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FltProcess, LOCAL, runFlt, tempDir } from './helpers/flt.js';
import { freeUdpPort } from './helpers/peer-process.js';

describe('trust from the command line', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let coordinator: FltProcess;
  let addr: string;
  let adminId: string;
  const started: FltProcess[] = [];
  const flt = (state: string, ...args: string[]) =>
    runFlt(['--state-dir', `${dir.path}/${state}`, ...LOCAL, ...args]);
  const asAdmin = (...args: string[]) =>
    flt('ad', '--secret-key', `${dir.path}/admin.key`, 'admin', '--coordinator', addr, ...args);
  const agent = (state: string, token: string) => {
    const p = new FltProcess([
      '--state-dir',
      `${dir.path}/${state}`,
      ...LOCAL,
      'agent',
      '--coordinator',
      addr,
      '--enroll-token',
      token,
    ]);
    started.push(p);
    return p;
  };

  beforeAll(async () => {
    dir = await tempDir();
    const key = await runFlt(['keygen', '--out', `${dir.path}/admin.key`]);
    expect(key.code, key.stderr).toBe(0);
    adminId = key.stdout.trim().split(/\s+/).at(-1)!;
    const port = await freeUdpPort();
    coordinator = new FltProcess([
      '--state-dir',
      `${dir.path}/c`,
      ...LOCAL,
      'coordinator',
      '--bind',
      `127.0.0.1:${port}`,
      '--admin',
      `${dir.path}/admin.key.pub`,
    ]);
    started.push(coordinator);
    await coordinator.waitFor(/^endpoint\w+$/m);
    const id = await flt('c', 'id');
    addr = `${id.stdout.trim()}@127.0.0.1:${port}`;
  });

  afterAll(async () => {
    for (const p of started) p.kill('SIGKILL');
    await Promise.all(started.map((p) => p.exited));
    await dir.remove();
  });

  it('an admin named by its public key file issues a token; one agent enrolls, a second is refused', async () => {
    const list = await asAdmin('admins', 'list');
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout.trim()).toBe(adminId);

    const token = await asAdmin('enroll-token', '--expires', '5m');
    expect(token.code, token.stderr).toBe(0);
    const first = agent('ag1', token.stdout.trim());
    await first.waitFor(/enrolled/, 'stderr', 30_000);

    const second = agent('ag2', token.stdout.trim());
    const exit = await second.exited;
    expect(exit.code).toBe(1);
    expect(second.stderr).toMatch(/^flt: TOKEN_REUSED: /m);

    const audit = await asAdmin('audit', '--json');
    expect(audit.code, audit.stderr).toBe(0);
    const entries = JSON.parse(audit.stdout) as { kind: string; op?: { signer: string } }[];
    expect(entries.map((e) => e.kind)).toEqual(['op', 'enroll']);
    expect(entries[0]!.op!.signer).toBe(adminId);
  });

  it('a node that is not an admin is refused with a code, and changes nothing', async () => {
    const r = await flt('stranger', 'admin', '--coordinator', addr, 'enroll-token');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^flt: NOT_ADMIN: /m);
    const audit = await asAdmin('audit', '--json');
    expect((JSON.parse(audit.stdout) as unknown[]).length).toBe(2);
  });
});
