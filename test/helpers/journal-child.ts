// Writes to a journal (stores/journal.ts) until it is killed, so that a test can SIGKILL it at a
// moment of its choosing and check that every write it acknowledged survived.
//
//   node dist/test/helpers/journal-child.js FILE
// Sets `k<i>` to `v<i>` for i = 0, 1, ... (8 in flight, and every tenth key deleted again after
// it was set), printing `i` once key i's set resolved (durable).

import { Journal } from '../../stores/journal.js';

const journal = await Journal.open(process.argv[2] ?? '');
let next = 0;
async function writer(): Promise<void> {
  for (;;) {
    const i = next++;
    await journal.set(`k${i}`, `v${i}`);
    if (i % 10 === 0) await journal.set(`k${i}`, undefined);
    process.stdout.write(`${i}\n`);
  }
}
await Promise.all(Array.from({ length: 8 }, writer));
