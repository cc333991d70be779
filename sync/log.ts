// A tiny leveled logger. Logs go to stderr so that stdout stays for command output
// (tickets, tables, JSON). sync/ takes a Logger so that tests can capture what it says.

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface Logger {
  error(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
}

function formatFields(fields: Record<string, unknown> | undefined): string {
  if (!fields) return '';
  const parts = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  return parts.length > 0 ? ' ' + parts.join(' ') : '';
}

/** A logger writing `LEVEL component: message k=v` lines to a sink (stderr by default). */
export function createLogger(
  level: LogLevel,
  component = 'flt',
  sink: (line: string) => void = (line) => process.stderr.write(line + '\n'),
): Logger {
  const at = (l: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (RANK[l] <= RANK[level]) sink(`${l.toUpperCase()} ${component}: ${msg}${formatFields(fields)}`);
  };
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}

export const silentLogger: Logger = { error() {}, warn() {}, info() {}, debug() {} };
