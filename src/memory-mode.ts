// The coordinator asks V8 to favour memory over speed (issue 13): `--optimize-for-size`.
// Measured on a 1,000-agent fan-in (bench `scale`, part `fleets`, README "Session 21"): 250-270
// KiB of coordinator RSS per agent against 306-373 without it in the same hours, with the
// coordinator's CPU within the runs' spread. Node refuses the flag in NODE_OPTIONS, so it is set
// here, when the command starts, before the role's modules load. Short commands (admin, doctor)
// keep V8's defaults: their start-up is what counts there. The agent keeps them too: one agent
// after 40 s held 156-158 MiB of RSS without the flag and 159-164 MiB with it, for more CPU (two
// runs each).

import { setFlagsFromString } from 'node:v8';

export function favourMemory(): void {
  setFlagsFromString('--optimize-for-size');
}
