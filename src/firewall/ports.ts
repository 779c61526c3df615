// Port and port-range parsing, shared by flags, config files and routing rules. Each error
// names the flag (or rule) and the fix.
import { UsageError } from '../errors.js';
import type { PortRange } from './plan.js';

export function parsePort(text: string, flag: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isInteger(n) || n < 1 || n > 65535) {
    throw new UsageError(`${flag}: '${text}' is not a port: use a number from 1 to 65535`);
  }
  return n;
}

/** "80", "8000-8100" or "8000:8100". */
export function parsePortRange(text: string, flag: string): PortRange {
  const m = text.trim().match(/^(\d+)(?:[-:](\d+))?$/);
  if (!m) throw new UsageError(`${flag}: '${text}' is not a port or range: use 80 or 8000-8100`);
  const from = parsePort(m[1]!, flag);
  const to = m[2] === undefined ? from : parsePort(m[2], flag);
  if (to < from) throw new UsageError(`${flag}: range '${text}' ends before it starts`);
  return { from, to };
}
