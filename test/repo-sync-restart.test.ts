// Two Repos in two processes sync one document both ways over iroh; each is killed with
// SIGKILL in turn and restarted on the same state: sync resumes and no change is lost.

import { randomBytes } from 'node:crypto';
import { afterAll, expect, it } from 'vitest';
import { tempDir } from './helpers/flt.js';
import { freeUdpPort, PeerProcess } from './helpers/peer-process.js';

const running: PeerProcess[] = [];
let dir: Awaited<ReturnType<typeof tempDir>>;

afterAll(async () => {
  await Promise.all(running.map((p) => p.stop()));
  await dir?.remove();
});

function start(...args: ConstructorParameters<typeof PeerProcess>): PeerProcess {
  const p = new PeerProcess(...args);
  running.push(p);
  return p;
}

const has =
  (...items: string[]) =>
  (p: PeerProcess) =>
    items.every((i) => p.items.includes(i));

it('two processes sync both ways, survive SIGKILL of either, lose nothing', async () => {
  dir = await tempDir();
  const keyA = randomBytes(32).toString('hex');
  const keyB = randomBytes(32).toString('hex');
  const bindA = `127.0.0.1:${await freeUdpPort()}`;

  let a = start(`${dir.path}/a`, keyA, bindA);
  await a.until('a ready', (p) => p.sawEvent('ready'));
  const { url } = await a.command({ op: 'create' });
  let b = start(`${dir.path}/b`, keyB, '127.0.0.1:0', `${a.nodeId}@${bindA}`);
  await a.command({ op: 'push', item: 'a1' });
  await b.command({ op: 'open', url });
  await b.until('b has a1', has('a1'));
  await b.command({ op: 'push', item: 'b1' });
  await a.until('a has b1', has('b1'));

  // Kill the listening side; B keeps writing while it is gone, then it comes back on the same address.
  await a.kill9();
  await b.command({ op: 'push', item: 'b2-while-a-down' });
  a = start(`${dir.path}/a`, keyA, bindA);
  const reopened = await a.command({ op: 'open', url });
  // What A acknowledged (flushed) is in its own storage before any sync; what it had only
  // received from B comes back from B.
  expect(reopened.items).toContain('a1');
  // B notices the dead connection when QUIC's idle timeout fires (about 15 s, measured), then redials.
  await a.until('a gets what b wrote while it was down', has('b1', 'b2-while-a-down'), 45_000);
  await a.command({ op: 'push', item: 'a2' });
  await b.until('b has a2', has('a2'));

  // Now kill the dialing side; A writes meanwhile; B restarts and redials.
  await b.kill9();
  await a.command({ op: 'push', item: 'a3-while-b-down' });
  b = start(`${dir.path}/b`, keyB, '127.0.0.1:0', `${a.nodeId}@${bindA}`);
  const bAgain = await b.command({ op: 'open', url });
  expect(bAgain.items).toEqual(expect.arrayContaining(['b1', 'b2-while-a-down']));
  await b.until('b gets a3', has('a3-while-b-down'));
  await b.command({ op: 'push', item: 'b3' });
  await a.until(
    'a has everything',
    has('a1', 'b1', 'b2-while-a-down', 'a2', 'a3-while-b-down', 'b3'),
  );
  expect([...a.items].sort()).toEqual([...b.items].sort());
});
