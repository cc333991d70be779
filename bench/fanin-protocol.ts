// What fanin.ts and its child process (fanin-child.ts) say to each other: the steps the child
// reports on stdout, and the constants both sides name. Kept apart because importing a value from
// fanin-child.ts would run that script.

/**
 * After `online` (every agent online, admin as is) or `recover` (a new admin, as a CLI run would
 * be, once the parent restarted the coordinator): from the command to the admin seeing N agents
 * online, or to the deadline. Used by the recover group (recover.ts).
 */
export interface OnlineStep {
  readonly ms: number;
  /** Agents online at the last successful poll; N unless cut off. */
  readonly complete: number;
  readonly cutOff: boolean;
  readonly polls: number;
  readonly failedPolls: number;
}

/** One line of the child's stdout. */
export type FanInStep =
  | { readonly step: 'ready' }
  | { readonly step: 'started'; readonly ms: number }
  | {
      readonly step: 'fleet';
      /** From `go` to the admin seeing N agents with a hostname, or to the deadline. */
      readonly ms: number;
      /** Agents with a hostname at the last successful poll; N unless cut off. */
      readonly complete: number;
      readonly cutOff: boolean;
      /** Polls of the fleet table that answered, and that failed (rpc or sync timeouts). */
      readonly polls: number;
      readonly failedPolls: number;
      /** Documents open in each agent's Repo at that moment (mean). */
      readonly docsPerAgent: number;
      /** heapUsed growth of this process since `go`, bytes (no forced GC). */
      readonly heapDelta: number;
      /** automerge-repo's unhandled timeouts so far in the child (see fanin-child.ts). */
      readonly repoTimeouts: number;
    }
  | ({ readonly step: 'online' } & OnlineStep)
  | ({ readonly step: 'recovered' } & OnlineStep)
  | {
      readonly step: 'deployed';
      /** From the deploy call to every target's status `succeeded` (or the deadline). */
      readonly ms: number;
      readonly succeeded: number;
      readonly targets: number;
    }
  | { readonly step: 'closed'; readonly ms: number };

/**
 * One line of an agent host's stdout: with BENCH_AGENT_PROCS=K > 1, fanin-child.ts keeps only
 * the admin and runs the agents in K hosts (`fanin-child.js --host ...`), which it drives.
 */
export type HostStep =
  | { readonly step: 'ready' }
  | { readonly step: 'started'; readonly ms: number }
  | { readonly step: 'stats'; readonly docs: number[]; readonly repoTimeouts: number }
  | { readonly step: 'closed'; readonly ms: number };

/** Between two polls of the admin's fleet table; the time resolution of the measurement. */
export const POLL_MS = 100;
