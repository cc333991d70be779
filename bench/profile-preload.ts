// Measurement only: a CPU profile of a process that may never exit cleanly (node's --cpu-prof
// writes at exit only; a saturated coordinator stopped by SIGKILL writes nothing). Loaded with
// `--import`, it profiles from the start and writes the profile so far on each SIGUSR2 to
// `$BENCH_PROFILE_DIR/<pid>-<n>.cpuprofile` (default: the temp dir), then goes on profiling.
//
//   BENCH_COORD_NODE_ARGS="--import $PWD/dist/bench/profile-preload.js" node dist/bench/run.js ...
//   kill -USR2 <coordinator pid>
//   node dist/bench/cpuprofile-summary.js <file> --per N

import { writeFileSync } from 'node:fs';
import { Session, type Profiler } from 'node:inspector';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = process.env.BENCH_PROFILE_DIR ?? tmpdir();
const session = new Session();
session.connect();
session.post('Profiler.enable', () =>
  session.post('Profiler.setSamplingInterval', { interval: 2000 }, () =>
    session.post('Profiler.start'),
  ),
);
let written = 0;
process.on('SIGUSR2', () => {
  session.post('Profiler.stop', (err, result: Profiler.StopReturnType) => {
    if (err === null) {
      const file = join(dir, `${process.pid}-${written++}.cpuprofile`);
      writeFileSync(file, JSON.stringify(result.profile));
      process.stderr.write(`profile written: ${file}\n`);
    }
    session.post('Profiler.start');
  });
});
