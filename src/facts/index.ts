// The facts collectors of the flt agent: what a machine is (Facts, stable, published as diffs)
// and how it is doing (VolatileFacts, sampled). No Automerge here; the agent role writes these
// into its facts document, and readers validate what they receive with validateFacts.

export {
  FACTS_SCHEMA_VERSION,
  validateFacts,
  validateSummaryFacts,
  validateVolatileFacts,
  type CpuInfo,
  type DiskInfo,
  type Facts,
  type KernelInfo,
  type MemoryInfo,
  type NetworkInfo,
  type NixInfo,
  type NixosInfo,
  type OsInfo,
  type SummaryFacts,
  type VolatileFacts,
} from './schema.js';
export { MAX_DEPTH, MAX_FACTER_BYTES, MAX_ITEMS, MAX_NODES, MAX_STRING } from './bounded.js';
export { collectFacts, collectVolatile, type CollectOptions } from './collect.js';
export { EXEC_TIMEOUT_MS, execTool, type ExecFn, type ExecOptions } from './exec.js';
export { DEFAULT_OS, osInfoFrom, parseOsRelease } from './os-release.js';
export { isRealFilesystem, parseMounts, type MountEntry } from './disks.js';
export { rebootRequired } from './nixos.js';
export { parseNixVersion } from './tools.js';
export {
  applyFactsPatch,
  diffFacts,
  isEmptyPatch,
  type FactsChange,
  type FactsPatch,
} from './diff.js';
