// flt's hierarchical configuration: the keys (declared in src/config-keys.ts, validated by
// schema.ts), merging defaults, file, env and flags (resolve.ts), and printing the result with
// its sources (show.ts). Import from here.

export {
  KEY_SPECS,
  defaultStateDir,
  describeValue,
  formatDuration,
  formatHostPort,
  parseBoolean,
  parseDuration,
  toFileValue,
  type Config,
  type ConfigKey,
  type DefaultContext,
  type FileValue,
  type HostPort,
  type KeyKind,
  type KeySpec,
  type RelaySetting,
} from './schema.js';
export { KEY_DECLS } from '../config-keys.js';
export {
  ConfigError,
  formatProblem,
  formatSource,
  resolveConfig,
  type ConfigProblem,
  type ResolveInput,
  type ResolvedConfig,
  type Source,
} from './resolve.js';
export { formatConfig } from './show.js';
