// The status document (issue 11; key `flt/v1/doc/status`), one per agent, written only by that
// agent (signed heads, as its facts): what it did with each deployment it received, and its
// system now. The coordinator summarizes it into the root record; admins read it whole (offline
// too). Readers take it from peers: every record is validated and bounded (decodeDeployment).

import * as A from '@automerge/automerge';
import { isNodeId, type NodeId } from '../../sync/ids.js';
import type { DerivePurpose } from '../identity/derive.js';
import { isIsoTime, plainRecord } from '../trust/canonical.js';
import { DEPLOY_ACTIONS, MAX_STORE_PATH, type DeployAction } from '../trust/deployment.js';
import { scalarString } from './scalars.js';
import { DOC_SCHEMA } from './schema.js';

export const STATUS_KIND = 'flt/status';
/** The purpose its write key is derived for (identity/derive.ts). */
export const STATUS_KEY = 'flt/v1/doc/status' satisfies DerivePurpose;
/** Deployment records kept (older keys deleted on write): ~3 KB of history per deployment. */
export const MAX_STATUS_RECORDS = 20;
/** Log tail kept in a terminal record. */
export const MAX_LOG_TAIL = 4096;
export const MAX_REASON = 1024;
/** Longest record read (a 4 KiB log tail, a reason, the rest). */
const MAX_STATUS_TEXT = 8192;
/** Keys looked at when reading, however many a misbehaving writer left. */
const MAX_KEYS_READ = 4 * MAX_STATUS_RECORDS;

export const DEPLOY_STATES = [
  'received',
  'refused',
  'waiting',
  'fetching', // the closure is being fetched from the coordinator (issue 12)
  'activating',
  'checking',
  'succeeded',
  'failed',
  'rolled-back',
  'superseded',
] as const;
export type DeployState = (typeof DEPLOY_STATES)[number];
/** States after which nothing more happens to the deployment on that agent. */
export const TERMINAL_STATES: ReadonlySet<DeployState> = new Set([
  'refused',
  'succeeded',
  'failed',
  'rolled-back',
  'superseded',
]);

/** States that mean something ran (a record in one is never overwritten by another part). */
export const RAN_STATES: ReadonlySet<DeployState> = new Set([
  'activating',
  'checking',
  'succeeded',
  'failed',
  'rolled-back',
]);

/** Why an agent refused a part, checked in this order (README, "Deployments"). */
export const REFUSAL_CODES = [
  'BAD_DEPLOYMENT',
  'BAD_SIGNATURE',
  'WRONG_FLEET',
  'NOT_TARGETED',
  'UNTRUSTED_TRAIL',
  'SIGNER_NOT_ADMIN',
  'SEQ_NOT_NEWER',
  'DEPLOYMENT_EXPIRED',
  'BAD_STORE_PATH',
  'NOT_A_SYSTEM',
  'NO_ACTIVATOR',
  'UNTRUSTED_SIGNATURE',
] as const;
export type RefusalCode = (typeof REFUSAL_CODES)[number];
/** Why an activation failed or was rolled back. */
export const FAILURE_CODES = [
  'ACTIVATION_FAILED',
  'HEALTH_CHECK_FAILED',
  'INTERRUPTED',
  'ROLLBACK_FAILED',
] as const;
export type FailureCode = (typeof FAILURE_CODES)[number];
/** Why a closure fetch did not finish (state `waiting`, `waitingFor: 'artifacts'`; retried). */
export const FETCH_CODES = [
  'BLOB_CORRUPT',
  'BLOB_MISSING',
  'DISK_FULL',
  'HASH_MISMATCH',
  'NAR_HASH_MISMATCH',
  'CONNECTION_LOST',
  'SUBSTITUTE_FAILED',
  'ARTIFACT_NOT_ALLOWED',
  'TIMEOUT',
  'IO',
  'CONNECT_FAILED', // the coordinator could not be reached (retried at once on reconnect)
] as const;
export type FetchCode = (typeof FETCH_CODES)[number];
export type DeployCode = RefusalCode | FailureCode | FetchCode;

/** Progress of a closure fetch (state `fetching`): bytes, paths and bytes per second. */
export interface FetchStatus {
  bytes: number;
  total: number;
  paths: number;
  pathsDone: number;
  rate: number;
}

export type ActivatorKind = 'none' | 'nixos' | 'profile' | 'command';
const ACTIVATORS: readonly ActivatorKind[] = ['none', 'nixos', 'profile', 'command'];
const WAITING_FOR = ['store-path', 'admin-trail', 'artifacts'] as const;
/** Largest byte count or rate a fetch record carries (2^53 - 1 would do; 1 PiB is plenty). */
const MAX_FETCH_BYTES = 2 ** 50;
/** Most paths a fetch record counts. */
const MAX_FETCH_PATHS = 1_000_000;
const ROLLBACKS = ['done', 'failed', 'impossible-first-deployment'] as const;
const TIME_KEYS = ['received', 'activating', 'finished'] as const;
/** Deployment ids (16 bytes hex), or a part digest (32 bytes) for a part without a readable id. */
const RECORD_ID = /^[0-9a-f]{1,64}$/;

/** What an agent did with one deployment. */
export interface DeploymentStatus {
  /** The deployment id (or the part's digest when the part had no valid id). */
  id: string;
  /** The part's seq for this agent; 0 when unreadable. */
  seq: number;
  /** sha256 of the part (partDigest), when it was a record at all. */
  digest?: string;
  /** '' when unreadable. */
  storePath: string;
  action: DeployAction | null;
  signer: NodeId | null;
  state: DeployState;
  code?: DeployCode;
  reason?: string;
  waitingFor?: (typeof WAITING_FOR)[number];
  rollback?: (typeof ROLLBACKS)[number];
  /** While `fetching`: how far the closure fetch is. */
  fetch?: FetchStatus;
  times: Partial<Record<(typeof TIME_KEYS)[number], string>>;
  /** Log tail (<= MAX_LOG_TAIL), terminal records only. */
  log?: string;
}

/** The agent's system now. */
export interface SystemStatus {
  activator: ActivatorKind;
  /** /run/current-system (nixos), the profile's target (profile), lastGood (command). */
  current: string | null;
  /** /run/booted-system (nixos only). */
  booted: string | null;
  /** The system profile's target, when there is one. */
  profile: string | null;
  generation: number | null;
  /** Kernel, initrd or modules differ between current and booted; null off NixOS. */
  rebootNeeded: boolean | null;
  /** The highest seq this agent started activating (its high-water mark). */
  hwm: number;
  at: string;
}

export interface StatusDoc {
  kind: typeof STATUS_KIND;
  schema: number;
  owner: NodeId;
  /** JSON of SystemStatus. */
  system?: A.ImmutableString;
  /** Deployment id -> JSON of DeploymentStatus; the MAX_STATUS_RECORDS newest. */
  deployments: Record<string, A.ImmutableString>;
}

/** A status document as read: valid records only, newest first. */
export interface StatusContent {
  system: SystemStatus | null;
  deployments: DeploymentStatus[];
}

/** The document before its first change: what every copy starts from (doc-id.ts). */
export function statusBase(owner: NodeId): StatusDoc {
  return { kind: STATUS_KIND, schema: DOC_SCHEMA, owner, deployments: {} };
}

/**
 * Writes one deployment record (inside a change), replacing the one with its id, and deletes
 * the oldest beyond MAX_STATUS_RECORDS. A log tail is cut to its last MAX_LOG_TAIL characters,
 * a reason to MAX_REASON; then, while the record's JSON is still over what readers take
 * (control characters in a log count 6 each), the log loses its head, then the reason its end.
 * @throws TypeError for a record decodeDeployment would refuse (a bug in the writer).
 */
export function writeDeployment(d: StatusDoc, record: DeploymentStatus): void {
  const text = fitRecord(record);
  if (decodeDeployment(text) === undefined)
    throw new TypeError(`not a valid deployment status: ${text.slice(0, 200)}`);
  d.deployments[record.id] = new A.ImmutableString(text);
  const keys = Object.keys(d.deployments);
  if (keys.length <= MAX_STATUS_RECORDS) return;
  const ranked = keys.map((k) => ({ k, rec: decodeDeployment(d.deployments[k]) }));
  ranked.sort((a, b) => newestFirst(a.rec, b.rec) || (a.k < b.k ? -1 : 1));
  for (const { k } of ranked.slice(MAX_STATUS_RECORDS)) delete d.deployments[k];
}

/** The record's JSON, its log and reason cut until it fits MAX_STATUS_TEXT (bounded loop). */
function fitRecord(record: DeploymentStatus): string {
  const r: DeploymentStatus = { ...record };
  if (r.log !== undefined) r.log = r.log.slice(-MAX_LOG_TAIL);
  if (r.reason !== undefined) r.reason = r.reason.slice(0, MAX_REASON);
  let text = JSON.stringify(r);
  // Each round cuts at least the excess (one character is at most 6 in JSON): a few rounds.
  for (let round = 0; text.length > MAX_STATUS_TEXT && round < 64; round++) {
    const excess = text.length - MAX_STATUS_TEXT;
    if (r.log !== undefined && r.log !== '') r.log = r.log.slice(Math.min(r.log.length, excess));
    else if (r.reason !== undefined && r.reason !== '')
      r.reason = r.reason.slice(0, Math.max(0, r.reason.length - excess));
    else break;
    text = JSON.stringify(r);
  }
  return text;
}

/** Writes the system status (inside a change). @throws TypeError when invalid. */
export function writeSystem(d: StatusDoc, system: SystemStatus): void {
  const text = JSON.stringify(system);
  if (decodeSystem(text) === undefined) throw new TypeError(`not a valid system status: ${text}`);
  d.system = new A.ImmutableString(text);
}

/** The content of a status document (or its plain copy): valid records only, newest first. */
export function readStatus(doc: unknown): StatusContent {
  const d = plainOrDoc(doc);
  const system = d ? (decodeSystem(d.system) ?? null) : null;
  const map = d && typeof d.deployments === 'object' && d.deployments !== null ? d.deployments : {};
  const out: DeploymentStatus[] = [];
  for (const [key, value] of Object.entries(map).slice(0, MAX_KEYS_READ)) {
    const rec = decodeDeployment(value);
    if (rec !== undefined && rec.id === key) out.push(rec);
  }
  return { system, deployments: out.sort(newestFirst) };
}

/** One deployment record (JSON text, sealed or not), validated; undefined when malformed. */
export function decodeDeployment(value: unknown): DeploymentStatus | undefined {
  const r = parseRecord(value);
  if (r === undefined) return undefined;
  const { id, seq, digest, storePath, action, signer, state, code, reason } = r;
  if (typeof id !== 'string' || !RECORD_ID.test(id)) return undefined;
  if (!Number.isSafeInteger(seq) || (seq as number) < 0) return undefined;
  if (digest !== undefined && !(typeof digest === 'string' && /^[0-9a-f]{64}$/.test(digest)))
    return undefined;
  if (!str(storePath, MAX_STORE_PATH)) return undefined;
  if (action !== null && !DEPLOY_ACTIONS.includes(action as DeployAction)) return undefined;
  if (signer !== null && !isNodeId(signer)) return undefined;
  if (!oneOf(DEPLOY_STATES, state)) return undefined;
  if (
    code !== undefined &&
    !oneOf(REFUSAL_CODES, code) &&
    !oneOf(FAILURE_CODES, code) &&
    !oneOf(FETCH_CODES, code)
  )
    return undefined;
  if (reason !== undefined && !str(reason, MAX_REASON)) return undefined;
  if (r.waitingFor !== undefined && !oneOf(WAITING_FOR, r.waitingFor)) return undefined;
  if (r.rollback !== undefined && !oneOf(ROLLBACKS, r.rollback)) return undefined;
  if (r.log !== undefined && !str(r.log, MAX_LOG_TAIL)) return undefined;
  const fetch = r.fetch === undefined ? undefined : decodeFetch(r.fetch);
  if (r.fetch !== undefined && fetch === undefined) return undefined;
  const times = plainRecord(r.times);
  if (times === undefined) return undefined;
  const outTimes: DeploymentStatus['times'] = {};
  for (const [k, v] of Object.entries(times)) {
    if (!oneOf(TIME_KEYS, k) || !isIsoTime(v)) return undefined;
    outTimes[k] = v;
  }
  return {
    id,
    seq: seq as number,
    ...(digest !== undefined ? { digest } : {}),
    storePath,
    action: action as DeployAction | null,
    signer: signer,
    state,
    ...(code !== undefined ? { code } : {}),
    ...(reason !== undefined ? { reason } : {}),
    ...(r.waitingFor !== undefined ? { waitingFor: r.waitingFor } : {}),
    ...(r.rollback !== undefined ? { rollback: r.rollback } : {}),
    ...(fetch !== undefined ? { fetch } : {}),
    times: outTimes,
    ...(r.log !== undefined ? { log: r.log } : {}),
  };
}

/** A record's `fetch`, bounded: counts are integers, bytes <= total, pathsDone <= paths. */
function decodeFetch(v: unknown): FetchStatus | undefined {
  const f = plainRecord(v);
  if (f === undefined || Object.keys(f).length !== 5) return undefined;
  const { bytes, total, paths, pathsDone, rate } = f;
  const count = (x: unknown, max: number): x is number =>
    Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) <= max;
  if (!count(total, MAX_FETCH_BYTES) || !count(bytes, total)) return undefined;
  if (!count(paths, MAX_FETCH_PATHS) || !count(pathsDone, paths)) return undefined;
  if (!count(rate, MAX_FETCH_BYTES)) return undefined;
  return { bytes, total, paths, pathsDone, rate };
}

/** The system record (JSON text, sealed or not), validated; undefined when malformed. */
export function decodeSystem(value: unknown): SystemStatus | undefined {
  const r = parseRecord(value);
  if (r === undefined) return undefined;
  const path = (v: unknown): v is string | null => v === null || str(v, MAX_STORE_PATH);
  const { activator, current, booted, profile, generation, rebootNeeded, hwm, at } = r;
  if (!oneOf(ACTIVATORS, activator)) return undefined;
  if (!path(current) || !path(booted) || !path(profile)) return undefined;
  if (generation !== null && !(Number.isSafeInteger(generation) && (generation as number) >= 0))
    return undefined;
  if (rebootNeeded !== null && typeof rebootNeeded !== 'boolean') return undefined;
  if (!Number.isSafeInteger(hwm) || (hwm as number) < 0 || !isIsoTime(at)) return undefined;
  return {
    activator,
    current,
    booted,
    profile,
    generation: generation as number | null,
    rebootNeeded,
    hwm: hwm as number,
    at,
  };
}

/** Newest first: by received time, then seq. */
function newestFirst(a: DeploymentStatus | undefined, b: DeploymentStatus | undefined): number {
  const ta = a?.times.received ?? '';
  const tb = b?.times.received ?? '';
  if (ta !== tb) return ta < tb ? 1 : -1;
  return (b?.seq ?? -1) - (a?.seq ?? -1);
}

function parseRecord(value: unknown): Readonly<Record<string, unknown>> | undefined {
  const text = scalarString(value);
  if (text === undefined || text.length > MAX_STATUS_TEXT) return undefined;
  try {
    return plainRecord(JSON.parse(text));
  } catch {
    return undefined;
  }
}

function plainOrDoc(doc: unknown): { system?: unknown; deployments?: unknown } | undefined {
  return typeof doc === 'object' && doc !== null ? doc : undefined;
}

function oneOf<T extends string>(choices: readonly T[], value: unknown): value is T {
  return typeof value === 'string' && (choices as readonly string[]).includes(value);
}

const str = (v: unknown, max: number): v is string => typeof v === 'string' && v.length <= max;
