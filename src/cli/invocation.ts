// What a command's runner gets. Its own file, apart from catalog.ts, so the runners (which the
// catalog imports when they run) import no module that imports them.

import type { Logger } from '../../sync/log.js';
import type { Config, ResolvedConfig } from '../config/index.js';
import type { Output } from './output.js';

/** What a runner gets: its arguments and options as parsed, the resolved configuration, outputs. */
export interface Invocation {
  /** The declared positional arguments, in order; a variadic one is spread at the end. */
  readonly args: readonly string[];
  /** The command's own options, by their long name in camelCase (`--public-key` -> publicKey). */
  readonly opts: Readonly<Record<string, string | readonly string[] | boolean | undefined>>;
  readonly config: Config;
  readonly resolved: ResolvedConfig;
  readonly log: Logger;
  readonly out: Output;
}
