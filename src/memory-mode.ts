// The coordinator asks V8 to favour memory over speed (issue 13): `--optimize-for-size`.
// Measured on a 1,000-agent fan-in (bench `scale`, part `fleets`, README "Session 21"): 250-270
// KiB of coordinator RSS per agent against 306-373 without it in the same hours, with the
// coordinator's CPU within the runs' spread. Node refuses the flag in NODE_OPTIONS, so it is set
// here, when the command starts, before the role's modules load. Short commands (admin, doctor)
// keep V8's defaults: their start-up is what counts there. The agent keeps them too: one agent
// after 40 s held 156-158 MiB of RSS without the flag and 159-164 MiB with it, for more CPU (two
// runs each).
//
// Except in a burst of document work (README "Session 22", "Session 23"): the flag keeps V8's heap
// tight, and a process that allocates fast then pays for it in collections. A restarted
// coordinator loading the facts documents of 5,000 agents at once took 9.0-11.4 s with it against
// 5.4-6.1 s without (CPU in collections 6.6 s against 1.7 s); a server taking 1,000 documents'
// changes a second (issue 13's point 4) spent 1.22-1.66 ms of CPU per change with it against
// 1.04-1.06 ms without, and its p99 delay grew from ~0.1 s to 0.8-5.7 s. So while documents are
// loaded or changed at BURST a second or more, V8 runs with its defaults, and it favours memory
// again once QUIET_MS have passed without such a second. BURST is above what a fleet does by
// itself: agents collect facts once a minute and write only what changed (10,000 agents: at most
// ~170 changes a second), and a 1,000-agent fan-in here did 10-215 a second (a burst at 50 turned
// it to speed five times, and its RSS per agent rose from ~260-280 KiB to 320-430); the restart's
// loads of 5,000 documents come at ~800 a second, point 4 at 1,000. V8 reads the flag as it goes
// (turned off before that load, the same run took 5.7 s).

import { setFlagsFromString } from 'node:v8';

/** Documents loaded or changed in one second that make a burst. */
export const BURST = 300;
/** Seconds without a burst before memory is favoured again. */
export const QUIET_MS = 5_000;

/** When V8 favours memory, and when it is let run at speed (one per process: the flags are). */
export class MemoryMode {
  private favoured = false;
  private speed = false;
  private second = -1;
  private work = 0;
  private lastBurst = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  /** Told when a burst begins (true) and ends (false): the coordinator logs it. */
  onChange: ((speed: boolean) => void) | undefined;

  constructor(
    private readonly set: (flags: string) => void = setFlagsFromString,
    private readonly now: () => number = Date.now,
  ) {}

  /** From now on V8 favours memory, except in bursts of work (idempotent). */
  favourMemory(): void {
    if (this.favoured) return;
    this.favoured = true;
    this.set('--optimize-for-size');
  }

  /** A document was loaded from the store, or changes were taken into one. */
  worked(): void {
    if (!this.favoured) return;
    const t = this.now();
    const second = Math.floor(t / 1000);
    if (second !== this.second) [this.second, this.work] = [second, 0];
    if (++this.work < BURST) return;
    this.lastBurst = t;
    if (this.speed) return;
    this.speed = true;
    this.set('--no-optimize-for-size');
    this.onChange?.(true);
    this.timer = setInterval(() => this.check(), 1_000);
    this.timer.unref();
  }

  /** Whether V8 runs at speed now (a burst). */
  get bursting(): boolean {
    return this.speed;
  }

  /** Memory favoured again once the burst is QUIET_MS over (also called by the timer). */
  check(): void {
    if (!this.speed || this.now() - this.lastBurst < QUIET_MS) return;
    this.speed = false;
    clearInterval(this.timer);
    this.timer = undefined;
    this.set('--optimize-for-size');
    this.onChange?.(false);
  }
}

/** This process's. */
export const memoryMode = new MemoryMode();

/** For `flt coordinator` (and benches that run its parts as it does). */
export function favourMemory(): void {
  memoryMode.favourMemory();
}
