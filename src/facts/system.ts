// Facts the kernel hands us without a tool: hostname, kernel, arch, CPUs, memory, network
// interfaces (all through node:os, so kernel.release is exactly `uname -r`), the hashed
// machine-id, and the volatile samples (uptime, load, available memory).

import { createHash } from 'node:crypto';
import os from 'node:os';
import { MAX_STRING } from './bounded.js';
import { readTextIn } from './files.js';
import type { CpuInfo, KernelInfo, MemoryInfo, NetworkInfo } from './schema.js';

type Note = (text: string) => void;

/** Domain prefix of the machine-id hash: the raw id must never leave the host (machine-id(5)). */
const MACHINE_ID_PREFIX = 'flt/v1/machine-id:';
/** Caps that keep a host with many containers' veths inside the schema's array bound. */
const MAX_INTERFACES = 256;
const MAX_ADDRESSES = 64;
const NO_MAC = '00:00:00:00:00:00';

export function hostname(): string {
  return os.hostname().slice(0, MAX_STRING);
}

/** `uname -s`, `uname -r` (exactly), `uname -v`. */
export function kernel(): KernelInfo {
  return { name: os.type(), release: os.release(), version: os.version() };
}

/** `uname -m`. */
export function arch(): string {
  return os.machine();
}

export function cpus(note: Note): CpuInfo {
  const list = os.cpus();
  const model = list[0]?.model.trim() ?? '';
  if (model === '') note('cpus: model not reported');
  // os.cpus() is empty where /proc/cpuinfo is hidden; the scheduler still knows the count.
  return { model: model.slice(0, MAX_STRING), count: list.length || os.availableParallelism() };
}

export function memory(): MemoryInfo {
  return { totalBytes: os.totalmem() };
}

/** Non-loopback interfaces, sorted by name so an unchanged machine gives an unchanged list. */
export function network(note: Note): NetworkInfo[] {
  const out: NetworkInfo[] = [];
  const entries = Object.entries(os.networkInterfaces()).sort(([a], [b]) => (a < b ? -1 : 1));
  for (const [name, infos] of entries) {
    const external = (infos ?? []).filter((i) => !i.internal);
    if (external.length === 0) continue;
    if (out.length === MAX_INTERFACES) {
      note(`network: only the first ${MAX_INTERFACES} interfaces are listed`);
      break;
    }
    const mac = external.find((i) => i.mac !== NO_MAC)?.mac;
    const addresses = [...new Set(external.map((i) => i.cidr ?? i.address))];
    out.push({
      name: name.slice(0, MAX_STRING),
      ...(mac === undefined ? {} : { mac }),
      addresses: addresses.slice(0, MAX_ADDRESSES),
    });
  }
  return out;
}

/** sha256 hex of the prefixed /etc/machine-id, or undefined (and a note) when there is none. */
export async function machineIdHash(root: string, note: Note): Promise<string | undefined> {
  const id = (await readTextIn(root, '/etc/machine-id', 4096))?.trim();
  if (id === undefined || id === '' || id === 'uninitialized') {
    note('machine-id: not set');
    return undefined;
  }
  return createHash('sha256')
    .update(MACHINE_ID_PREFIX + id)
    .digest('hex');
}

export function uptimeSeconds(): number {
  return Math.floor(os.uptime());
}

/** 1, 5 and 15 minute load averages, to two decimals (the precision /proc/loadavg has). */
export function load(): [number, number, number] {
  const [a = 0, b = 0, c = 0] = os.loadavg().map((x) => Math.round(x * 100) / 100);
  return [a, b, c];
}

/** MemAvailable from /proc/meminfo (what could be used without swapping), else free memory. */
export async function memoryAvailableBytes(root: string): Promise<number> {
  const text = await readTextIn(root, '/proc/meminfo');
  const kib = /^MemAvailable:\s+(\d+) kB$/m.exec(text ?? '')?.[1];
  return kib === undefined ? os.freemem() : Number(kib) * 1024;
}
