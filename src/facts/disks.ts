// Real filesystems from /proc/mounts, sized with statfs(2). "Real" means backed by a block
// device, a storage pool (zfs) or a network share; pseudo filesystems (proc, tmpfs, cgroup,
// overlay, squashfs images) are left out. One entry per device: bind mounts are not repeated.

import { statfs } from 'node:fs/promises';
import { describeError } from './exec.js';
import { inRoot, readTextIn } from './files.js';
import type { DiskInfo } from './schema.js';

type Note = (text: string) => void;

/** One line of /proc/mounts. */
export type MountEntry = { readonly device: string; readonly mount: string; readonly fs: string };

/** Filesystems that are real although their source is not a /dev path. */
const SOURCELESS_REAL = new Set(['zfs', 'nfs', 'nfs4', 'cifs', 'smb3', 'ceph', 'glusterfs']);
/** Block-device filesystems that are images, not storage (snap and live-CD loops). */
const IMAGE_FS = new Set(['squashfs', 'iso9660', 'erofs']);
const MAX_DISKS = 256;
/** statfs on a dead NFS server blocks; give up after the same 5 s as a tool. */
const STATFS_TIMEOUT_MS = 5_000;
/** statfs calls still blocked from an earlier collection, by path; never started twice. */
const pending = new Set<string>();

/** Parses /proc/mounts, decoding the octal escapes (`\040` for a space) of its fields. */
export function parseMounts(text: string): MountEntry[] {
  const decode = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const [device, mount, fs] = line.split(' ');
    if (device && mount && fs) out.push({ device: decode(device), mount: decode(mount), fs });
  }
  return out;
}

export function isRealFilesystem(entry: MountEntry): boolean {
  if (SOURCELESS_REAL.has(entry.fs)) return true;
  return entry.device.startsWith('/dev/') && !IMAGE_FS.has(entry.fs);
}

/** Real filesystems under `root`, sorted by mount point; unreadable ones become notes. */
export async function collectDisks(root: string, note: Note): Promise<DiskInfo[]> {
  const text = await readTextIn(root, '/proc/mounts', 1024 * 1024);
  if (text === undefined) {
    note('disks: /proc/mounts not found');
    return [];
  }
  const seen = new Set<string>();
  const real = parseMounts(text).filter((m) => {
    if (!isRealFilesystem(m) || seen.has(m.device)) return false;
    seen.add(m.device);
    return true;
  });
  if (real.length > MAX_DISKS) note(`disks: only the first ${MAX_DISKS} filesystems are listed`);
  const sized = await Promise.all(
    real.slice(0, MAX_DISKS).map(async (m) => {
      try {
        return { mount: m.mount, fs: m.fs, totalBytes: await totalBytes(inRoot(root, m.mount)) };
      } catch (err) {
        note(`disks: ${m.mount}: ${describeError(err)}`);
        return undefined;
      }
    }),
  );
  return sized
    .filter((d): d is DiskInfo => d !== undefined)
    .sort((a, b) => (a.mount < b.mount ? -1 : 1));
}

async function totalBytes(path: string): Promise<number> {
  if (pending.has(path)) throw new Error('statfs from an earlier collection still blocked');
  pending.add(path);
  const call = statfs(path);
  void call.then(
    () => pending.delete(path),
    () => pending.delete(path),
  );
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`statfs: no answer in ${STATFS_TIMEOUT_MS} ms`)),
      STATFS_TIMEOUT_MS,
    );
  });
  try {
    const s = await Promise.race([call, timeout]);
    return s.blocks * s.bsize;
  } finally {
    clearTimeout(timer);
  }
}
