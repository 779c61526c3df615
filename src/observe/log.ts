// One logger for every room: text (key=value, one line per event, for people) or JSON lines
// through pino (for collectors), on stderr so a wrapped command's stdout stays its own.
import { pino, destination } from 'pino';
export type LogFields = Record<string, string | number | boolean | undefined>;
export type Level = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

function quote(v: string | number | boolean): string {
  const s = String(v);
  return /[\s"=]/.test(s) || s === '' ? JSON.stringify(s) : s;
}

export function createLogger(format: 'text' | 'json', out?: (line: string) => void): Logger {
  if (format === 'json') {
    const p = pino(
      {
        base: { pid: process.pid },
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
      },
      out ? { write: out } : destination({ fd: 2, sync: true }),
    );
    return {
      info: (m, f) => p.info(f ?? {}, m),
      warn: (m, f) => p.warn(f ?? {}, m),
      error: (m, f) => p.error(f ?? {}, m),
    };
  }
  const write = out ?? ((l: string) => process.stderr.write(l));
  const emit = (level: Level, msg: string, fields: LogFields = {}): void => {
    let line = `tranproxy${level === 'info' ? '' : ` ${level.toUpperCase()}`}: ${msg}`;
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) line += ` ${k}=${quote(v)}`;
    write(line + '\n');
  };
  return {
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}
