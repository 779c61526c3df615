// GET /api/logs: the proxy's recent log lines from the in-memory ring, as a long poll. Each
// answer is at most one page; the client asks again with `since=next`. Nothing is buffered
// per client, so a slow or vanished client costs nothing.
import { isRingLevel, type LogPage } from '../observe/log-ring.js';
import type { SupervisorControl } from '../proxy/supervisor.js';
import { invalid } from './document.js';

/** Longest wait of one long poll. */
export const MAX_WAIT_MS = 25_000;
/** While waiting, the workers' new lines are pulled this often. */
const PULL_MS = 500;

export interface LogsQuery {
  since: number;
  level?: 'debug' | 'info' | 'warn' | 'error';
  q?: string;
  waitMs: number;
  limit: number;
}

export function parseLogsQuery(query: URLSearchParams): LogsQuery {
  const int = (name: string, dflt: number, max: number): number => {
    const v = query.get(name);
    if (v === null || v === '') return dflt;
    if (!/^\d{1,15}$/.test(v)) throw invalid(name, 'expected a whole number');
    return Math.min(Number(v), max);
  };
  const level = query.get('level') || undefined;
  if (level !== undefined && !isRingLevel(level)) throw invalid('level', 'expected debug, info, warn or error');
  const q = query.get('q') ?? '';
  if (q.length > 200) throw invalid('q', 'search text longer than 200 characters');
  return {
    since: int('since', 0, Number.MAX_SAFE_INTEGER),
    ...(level ? { level } : {}),
    ...(q.trim() ? { q } : {}),
    waitMs: int('wait', 0, MAX_WAIT_MS / 1000) * 1000,
    limit: int('limit', 500, 2000) || 1,
  };
}

export async function readLogs(control: SupervisorControl, query: URLSearchParams): Promise<LogPage> {
  const q = parseLogsQuery(query);
  const deadline = Date.now() + q.waitMs;
  let since = q.since;
  let gap = false;
  for (;;) {
    const ring = await control.logs?.();
    if (!ring) return { entries: [], next: 0, gap: false };
    const page = ring.read({ ...q, since });
    gap ||= page.gap;
    const left = deadline - Date.now();
    if (page.entries.length > 0 || left <= 0) return { ...page, gap };
    since = page.next;
    await ring.waitForMore(Math.min(PULL_MS, left));
  }
}
