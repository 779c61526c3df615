// One logger for every room: text (key=value, one line per event, for people) or JSON lines
// through pino (for collectors), on stderr so a wrapped command's stdout stays its own.
import { createRequire } from 'node:module';
import type { LogRing } from './log-ring.js';
export type LogFields = Record<string, string | number | boolean | undefined>;
export type Level = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

const NEEDS_QUOTES = /[\s"=]/;

function quote(v: string | number | boolean): string {
  if (typeof v !== 'string') return String(v); // numbers and booleans never need quotes
  return v === '' || NEEDS_QUOTES.test(v) ? JSON.stringify(v) : v;
}

/** `msg k=v …` as the text format writes it (after the prefix). */
export function textOf(msg: string, fields: LogFields = {}): string {
  let line = msg;
  // for…in, not Object.entries: no array per field on a line written per connection.
  for (const k in fields) {
    const v = fields[k];
    if (v !== undefined) line += ` ${k}=${quote(v)}`;
  }
  return line;
}

/** `ring`: every line is also kept there, as text (the console's Logs page). */
export function createLogger(format: 'text' | 'json', out?: (line: string) => void, ring?: LogRing): Logger {
  if (format === 'json') {
    // pino loads only for JSON lines: the text format (a sidecar's default) keeps it out of memory.
    const { pino, destination } = createRequire(import.meta.url)('pino') as typeof import('pino');
    const p = pino(
      {
        base: { pid: process.pid },
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
      },
      out ? { write: out } : destination({ fd: 2, sync: true }),
    );
    const emitJson = (level: 'info' | 'warn' | 'error', m: string, f?: LogFields): void => {
      ring?.push(level, textOf(m, f));
      p[level](f ?? {}, m);
    };
    return {
      info: (m, f) => emitJson('info', m, f),
      warn: (m, f) => emitJson('warn', m, f),
      error: (m, f) => emitJson('error', m, f),
    };
  }
  const write = out ?? ((l: string) => process.stderr.write(l));
  const emit = (level: Level, msg: string, fields: LogFields = {}): void => {
    const text = textOf(msg, fields);
    ring?.push(level, text);
    write(`tranproxy${level === 'info' ? '' : ` ${level.toUpperCase()}`}: ${text}\n`);
  };
  return {
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}
