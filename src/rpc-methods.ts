// The fleet's RPC methods (flt/rpc/0). sync/rpc.ts carries them; this file names them and
// validates their bodies in both directions with zod schemas (anything else: BAD_MESSAGE), and
// declares who may call each (`allow`), which the coordinator's RpcServer enforces before the
// body is read: refused callers get the codes of `refusal` below.
// The byte-level envelope is in sync/PROTOCOL.md; the method table is in the README.

import { z } from 'zod';
import { FltError } from './errors.js';
import { isNodeId, type NodeId } from '../sync/ids.js';
import { ANYONE, type RpcMethod } from '../sync/rpc-method.js';
import type { Role } from './trust/authority.js';
import { validateVolatileFacts, type VolatileFacts } from './facts/index.js';
import { MAX_RECORD } from './docs/root.js';

const nodeId = z
  .string()
  .refine(isNodeId, 'a node id')
  .transform((s) => s as NodeId);
const docId = z.string().min(1).max(64);
const hex32 = z.string().regex(/^[0-9a-f]{64}$/);
const time = z.string().max(40);
const heads = z.array(z.string().max(128)).max(1024);

/** Who may call a method: roles of the coordinator's gate, or anyone at all. */
export type Caller = Role | typeof ANYONE;

const ADMIN = ['admin'] as const satisfies readonly Caller[];
const MEMBER = ['agent', 'admin'] as const satisfies readonly Caller[];

/**
 * The error for a peer whose role a method does not allow: REVOKED for a revoked peer; for
 * everyone else UNAUTHORIZED_PEER where members may call, NOT_ADMIN where only admins may.
 */
export function refusal(peer: NodeId, role: string, method: RpcMethod<unknown, unknown>): FltError {
  if (role === 'revoked') return new FltError('REVOKED', `${peer} is revoked (${method.name})`);
  if (method.allow.includes('agent'))
    return new FltError('UNAUTHORIZED_PEER', `${peer} is not approved (${method.name})`);
  return new FltError('NOT_ADMIN', `${peer} is not an admin (${method.name})`);
}

function method<Req extends z.ZodType, Res extends z.ZodType>(
  name: string,
  allow: readonly Caller[],
  request: Req,
  response: Res,
): RpcMethod<z.output<Req>, z.output<Res>> {
  const check =
    <S extends z.ZodType>(schema: S, what: string) =>
    (value: unknown): z.output<S> => {
      const r = schema.safeParse(value);
      if (!r.success) {
        const issue = r.error.issues[0];
        throw new FltError(
          'BAD_MESSAGE',
          `${name} ${what}: ${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}`,
        );
      }
      return r.data;
    };
  return {
    name,
    allow,
    request: check(request, 'request'),
    response: check(response, 'response'),
  };
}

const empty = z.object({}).strict();

/** `node.info`: who is this node, which role and version it runs. Any node answers it. */
export const nodeInfo = method(
  'node.info',
  MEMBER,
  empty,
  z.object({
    nodeId,
    role: z.string().max(32),
    version: z.string().max(64),
    uptimeMs: z.number().nonnegative(),
  }),
);

/** `agent.enroll`: an agent announces its facts document; idempotent. The one method open
 * to unknown peers: the handler decides (approved beforehand, or a token now). */
export const agentEnroll = method(
  'agent.enroll',
  [ANYONE],
  // token: a one-time enrollment token (src/trust/tokens.ts), for an agent not yet approved.
  // statusDocId, statusWriteKey (issue 11): the agent's status document and its write key;
  // optional so that agents before deployments still enroll (the schema is strict: a coordinator
  // before issue 11 refuses them, hence "upgrade the coordinator first").
  z
    .object({
      factsDocId: docId,
      factsWriteKey: hex32,
      token: z.string().max(1024).optional(),
      statusDocId: docId.optional(),
      statusWriteKey: hex32.optional(),
    })
    .strict(),
  z.object({
    rootDocId: docId,
    enrolledAt: time,
    /** The coordinator already holds this facts document: fetch it before writing to it. */
    known: z.boolean(),
    /**
     * The newest signed heads of the facts document the coordinator verified (none while the
     * agent is forked): an agent restored from an older copy of its state catches up to them.
     */
    factsHeads: z.unknown().optional(),
    /** The agent's desired document (docs/desired.ts): what it should run. */
    desiredDocId: docId.optional(),
    /**
     * The head of the desired document's base, when the coordinator began the document now: an
     * agent whose own base (desiredSnapshot) has this head starts its copy from it, and its first
     * sync is answered without the coordinator loading the document (issue 13).
     */
    desiredBase: hex32.optional(),
    /** The fleet's admins document (docs/admins.ts): how the agent checks a deployment signer. */
    adminsDocId: docId.optional(),
    /** The coordinator already holds the status document: fetch it before writing to it. */
    statusKnown: z.boolean().optional(),
    /** The newest verified signed heads of the status document, as factsHeads. */
    statusHeads: z.unknown().optional(),
  }),
);

const volatile = z.unknown().transform((v, ctx): VolatileFacts => {
  try {
    return validateVolatileFacts(v);
  } catch (err) {
    ctx.addIssue({
      code: 'custom',
      message: err instanceof Error ? err.message : 'bad volatile facts',
    });
    return z.NEVER;
  }
});

/** `agent.heartbeat`: an agent's volatile facts (load, uptime), kept out of documents. */
export const agentHeartbeat = method(
  'agent.heartbeat',
  MEMBER,
  // factsHeads: the agent's signed heads of its facts document (sync/owned-doc.ts),
  // verified by the coordinator against the write key the agent enrolled with.
  // statusHeads (issue 11): the same for its status document (docs/status.ts).
  z
    .object({
      volatile,
      factsHeads: z.unknown().optional(),
      statusHeads: z.unknown().optional(),
    })
    .strict(),
  z.object({}),
);

/**
 * `agent.ping`: liveness, every few seconds while the connection takes in nothing else
 * (src/roles/liveness.ts). Empty both ways and checked with no signature, so that thousands of
 * agents cost the coordinator little. A ping that fails, or an answer from a new coordinator
 * process, makes the agent redial (src/roles/liveness.ts).
 */
export const agentPing = method(
  'agent.ping',
  MEMBER,
  empty,
  // boot: random per coordinator process; a new value tells the agent the coordinator restarted.
  // every: ms until the next ping, from the fleet's size and the coordinator's load
  // (roles/presence.ts pingPeriodFor); absent from coordinators before it, and bounded again by
  // the agent. quiet: ms an agent may go without pinging while its connection keeps taking in
  // packets (the coordinator counts those as hearing from it: roles/presence.ts scan); absent
  // from coordinators before it, and then the agent pings every `every`.
  z.object({
    boot: z.string().max(64),
    every: z.number().int().min(0).max(86_400_000).optional(),
    quiet: z.number().int().min(0).max(86_400_000).optional(),
  }),
);

/** `fleet.info`: the root document to replicate, and its heads now. */
export const fleetInfo = method(
  'fleet.info',
  ADMIN,
  empty,
  // rootSigned: the root document's heads signed with its write key; readers verify it.
  z.object({ coordinator: nodeId, rootDocId: docId, rootHeads: heads, rootSigned: z.unknown() }),
);

export const presenceEntry = z.object({
  nodeId,
  online: z.boolean(),
  lastSeen: time.nullable(),
  volatile: volatile.nullable(),
  /**
   * The agent signed newer heads of its facts document than the coordinator holds: its root
   * record (and so every read) shows the newest state the coordinator has, and more is coming.
   * Optional: a coordinator before this field sends none.
   */
  pending: z.boolean().optional(),
});
export type PresenceEntry = z.output<typeof presenceEntry>;

/** `fleet.presence`: who is connected now, when each agent was last seen, their volatile facts. */
export const fleetPresence = method(
  'fleet.presence',
  ADMIN,
  empty,
  z.object({ now: time, agents: z.array(presenceEntry).max(100_000) }),
);

/** A century in ms: the longest fleet.online says an agent went unheard (keeps dates valid). */
const MAX_SINCE_MS = 100 * 365 * 86_400_000;

/**
 * `fleet.online`: the part of fleet.presence the fleet table shows, in short (issue 13): per agent
 * `[nodeId, online, msSinceSeen, pending]`, where `msSinceSeen` is how long before `now` the
 * coordinator last heard from it (null: not since it started; the root record's lastSeen
 * stands). Agents with nothing beyond their record (offline, not heard, nothing pending) are left
 * out, and no volatile facts are sent (`facts` asks for them: fleet.agent). For 5,000 agents
 * online it is ~0.4 MB against fleet.presence's 1.3 MB. A coordinator before it answers
 * RPC_UNKNOWN_METHOD: ask fleet.presence.
 */
export const fleetOnline = method(
  'fleet.online',
  ADMIN,
  empty,
  z.object({
    now: time,
    agents: z
      .array(
        z.tuple([
          nodeId,
          z.boolean(),
          z.number().int().min(0).max(MAX_SINCE_MS).nullable(),
          z.boolean(),
        ]),
      )
      .max(100_000),
  }),
);
export type OnlineAnswer = ReturnType<typeof fleetOnline.response>;

/** fleet.online's answer as fleet.presence entries (no volatile facts); BAD_MESSAGE for bad times. */
export function presenceOfOnline(answer: OnlineAnswer): PresenceEntry[] {
  const now = Date.parse(answer.now);
  const timeOf = (since: number): string => {
    const at = new Date(now - since);
    if (Number.isNaN(at.getTime()))
      throw new FltError('BAD_MESSAGE', `fleet.online response: now: ${answer.now} is not a time`);
    return at.toISOString();
  };
  return answer.agents.map(([id, online, since, pending]) => ({
    nodeId: id,
    online,
    lastSeen: since === null ? null : timeOf(since),
    volatile: null,
    ...(pending ? { pending } : {}),
  }));
}

/** Most agents one `fleet.presenceOf` names. */
export const PRESENCE_OF_MAX = 1_000;

/**
 * `fleet.presenceOf`: fleet.presence of the named agents only (those the coordinator does not
 * know are left out). What a read about one agent needs: at 5,000 agents the whole fleet's is
 * 0.5 MB of CBOR to encode, send, decode and check (issue 13). A coordinator before it answers
 * RPC_UNKNOWN_METHOD: ask fleet.presence.
 */
export const fleetPresenceOf = method(
  'fleet.presenceOf',
  ADMIN,
  z.object({ nodeIds: z.array(nodeId).min(1).max(PRESENCE_OF_MAX) }).strict(),
  z.object({ now: time, agents: z.array(presenceEntry).max(PRESENCE_OF_MAX) }),
);

/** The longest name fleet.agent takes: a hostname is at most 255 characters, a node id 64. */
export const MAX_AGENT_QUERY = 256;

/**
 * `fleet.agent`: one agent's root record and presence, the agent named as `flt admin facts`
 * names it (node id, unique prefix or hostname: docs/root.ts pickEntry, whose NOT_FOUND and
 * BAD_ARGUMENT come back as they are). What `facts` needs without the whole root: at 5,000 agents
 * a fresh admin's root is 1.2 MB to send and half a second to load (issue 13). `record` is the
 * record's text as the root holds it (docs/root.ts decodeAgent reads it). A coordinator before it
 * answers RPC_UNKNOWN_METHOD: read the root.
 */
export const fleetAgent = method(
  'fleet.agent',
  ADMIN,
  z.object({ query: z.string().min(1).max(MAX_AGENT_QUERY) }).strict(),
  z.object({
    now: time,
    coordinator: nodeId,
    rootDocId: docId,
    nodeId,
    record: z.string().max(MAX_RECORD),
    presence: presenceEntry,
  }),
);

/** `doc.heads`: the coordinator's heads of a document (null: it does not hold it). */
export const docHeads = method(
  'doc.heads',
  ADMIN,
  z.object({ docId }).strict(),
  z.object({ heads: heads.nullable() }),
);

/**
 * Largest document (or changes) doc.fetch carries, below the rpc frame cap of 16 MiB: a larger
 * one is answered with its heads alone and synced instead. A root document holds about 250
 * bytes per agent: this is some 40,000 agents.
 */
export const DOC_FETCH_MAX_BYTES = 10 * 1024 * 1024;
const docBytes = z
  .instanceof(Uint8Array)
  .refine((b) => b.length <= DOC_FETCH_MAX_BYTES, `at most ${DOC_FETCH_MAX_BYTES} bytes`);

/**
 * `doc.fetch`: a document in one round trip (src/roles/doc-fetch.ts), for an admin's replica:
 * `have` its heads there (empty: none). The answer names the coordinator's heads (null: not
 * held) and carries at most one of `changes` (every change after `have`, when the coordinator
 * holds all of `have`) and `snapshot` (the whole document, as the chunks it stores); neither when the heads are
 * `have` already, or when the document is too large to send (then sync it).
 */
export const docFetch = method(
  'doc.fetch',
  ADMIN,
  z.object({ docId, have: heads }).strict(),
  z
    .object({
      heads: heads.nullable(),
      changes: docBytes.optional(),
      snapshot: docBytes.optional(),
    })
    .refine((r) => r.changes === undefined || r.snapshot === undefined, 'changes or snapshot')
    .refine((r) => r.heads !== null || (r.changes ?? r.snapshot) === undefined, 'bytes of nothing'),
);

/**
 * `docs.heads`: the coordinator's heads of many documents at once (null: not held), so that an
 * admin syncs every agent's status and desired documents in one round trip.
 */
export const docsHeads = method(
  'docs.heads',
  ADMIN,
  z.object({ docIds: z.array(docId).max(10_000) }).strict(),
  z.object({ heads: z.record(z.string().max(64), heads.nullable()) }),
);

/**
 * `deploy.submit`: the parts of one or more signed deployments (src/trust/deployment.ts), each
 * verified, recorded in the audit trail (idempotent: the same part again answers its index) and
 * placed in each target's desired document. `index`: the audit entry of the last part;
 * `placed`: targets whose desired document now holds it; `stale`: targets already holding a
 * higher seq (their agent would refuse it); `unknown`: targets not enrolled.
 */
export const deploySubmit = method(
  'deploy.submit',
  ADMIN,
  z.object({ parts: z.array(z.unknown()).min(1).max(1024) }).strict(),
  z.object({
    index: z.number().int().nonnegative(),
    placed: z.array(nodeId).max(65_536),
    stale: z.array(nodeId).max(65_536),
    unknown: z.array(nodeId).max(65_536),
  }),
);

/** `admin.op`: one admin-signed operation (src/trust/authority.ts), applied and recorded. */
export const adminOp = method(
  'admin.op',
  ADMIN,
  z.object({ op: z.unknown() }).strict(),
  z.object({ index: z.number().int().nonnegative() }),
);

/** Entries one fleet.audit page holds at most; a page also stops near AUDIT_PAGE_BYTES. */
export const AUDIT_PAGE_ENTRIES = 10_000;
/** JSON bytes after which a page ends (well under the rpc frame; one entry always fits). */
export const AUDIT_PAGE_BYTES = 4 * 1024 * 1024;

/**
 * `fleet.audit`: the audit trail as stored, for the admin to replay and verify. With `from`
 * and/or `limit`: the entries from index `from` (0 by default), at most `limit` and about
 * AUDIT_PAGE_BYTES, and `total`, the trail's length; without either, every entry (older admins).
 */
export const fleetAudit = method(
  'fleet.audit',
  ADMIN,
  z
    .object({
      from: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
      limit: z.number().int().min(1).max(AUDIT_PAGE_ENTRIES).optional(),
    })
    .strict(),
  z.object({
    fleet: docId,
    initialAdmins: z.array(nodeId).max(10_000),
    entries: z.array(z.unknown()).max(1_000_000),
    /** The trail's length (absent from coordinators before paging: `entries` is all of it). */
    total: z.number().int().min(0).optional(),
  }),
);

/**
 * `artifacts.stats`: the coordinator's artifact store (issue 12): index paths, complete blobs and
 * their bytes, bytes of partial uploads, files in quarantine, and when GC last ran (null: never
 * since start).
 */
export const artifactsStats = method(
  'artifacts.stats',
  ADMIN,
  empty,
  z.object({
    paths: z.number().int().min(0),
    blobs: z.number().int().min(0),
    bytes: z.number().int().min(0),
    partialBytes: z.number().int().min(0),
    quarantined: z.number().int().min(0),
    lastGc: time.nullable(),
  }),
);

/** Store paths and blob names an `artifacts.gc` answer lists at most per kind. */
export const GC_LIST_MAX = 1000;
const gcNames = z.array(z.string().max(512)).max(GC_LIST_MAX);

/**
 * `artifacts.gc`: runs the coordinator's artifact GC now (design §4): index entries no live
 * deployment references, blobs no entry names and partial uploads untouched for the grace. With
 * `dryRun` nothing is removed and the answer says what would be. `counts` are whole; the lists
 * hold the first GC_LIST_MAX of each.
 */
export const artifactsGc = method(
  'artifacts.gc',
  ADMIN,
  z.object({ dryRun: z.boolean().optional() }).strict(),
  z.object({
    at: time,
    dryRun: z.boolean(),
    counts: z.object({
      paths: z.number().int().min(0),
      blobs: z.number().int().min(0),
      partials: z.number().int().min(0),
    }),
    bytes: z.number().int().min(0),
    paths: gcNames,
    blobs: gcNames,
    partials: gcNames,
  }),
);
