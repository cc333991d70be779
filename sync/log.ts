// A tiny leveled logger. Logs go to stderr so that stdout stays for command output
// (tickets, tables, JSON). sync/ takes a Logger so that tests can capture what it says.

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

type LogFn = (msg: string, fields?: Record<string, unknown>) => void;

/** Plain functions, not methods: a Logger's functions may be passed around unbound. */
export interface Logger {
  readonly error: LogFn;
  readonly warn: LogFn;
  readonly info: LogFn;
  readonly debug: LogFn;
}

function formatFields(fields: Record<string, unknown> | undefined): string {
  if (!fields) return '';
  const parts = Object.entries(fields).map(
    ([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`,
  );
  return parts.length > 0 ? ' ' + parts.join(' ') : '';
}

/** A logger writing `LEVEL component: message k=v` lines to a sink (stderr by default). */
export function createLogger(
  level: LogLevel,
  component = 'flt',
  sink: (line: string) => void = (line) => process.stderr.write(line + '\n'),
): Logger {
  const at = (l: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (RANK[l] <= RANK[level])
      sink(`${l.toUpperCase()} ${component}: ${msg}${formatFields(fields)}`);
  };
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}

const nothing: LogFn = () => undefined;
export const silentLogger: Logger = {
  error: nothing,
  warn: nothing,
  info: nothing,
  debug: nothing,
};
