// Thin client for the console API (src/console/API.md). Every non-GET request carries the
// CSRF token as X-CSRF-Token; cookies are same-origin only. The app hears about an ended
// session (401), an unreachable gateway (fetch failed) and every finished change (to re-read
// /api/state) through the handlers below.

export interface NodeInfo {
  name: string;
  label: string;
  type: string;
  plugin?: string;
  server: string;
  port: number;
  uri: string;
}
export interface Subscription {
  url: string;
  nodes: string[];
  kept?: string[];
  updatedAt: string | null;
  result?: string;
  error?: string;
}
/** What an import took and skipped; `summary` is the server's own (English) sentence. */
export interface ImportReport {
  summary: string;
  skipped?: unknown[];
}
export type Rule = Record<string, unknown> & { outbound: string };
export interface DnsServer {
  /** Where the DNS forwarder listens (host null: every address); null: no DNS section. */
  listen: { host: string | null; port: number } | null;
  /** The fake-IP range while fake IP is on. */
  fakeIpRange: string | null;
  /** Addresses of the LAN interfaces, the ones LAN hosts can reach. */
  lanAddresses: string[];
}
export interface State {
  enabled: boolean;
  mode: 'redirect' | 'tproxy';
  lan: { interfaces: string[]; sources: string[] };
  tcpNode: string;
  udpNode: string;
  nodes: NodeInfo[];
  subscriptions: Subscription[];
  dns: { nameservers: string[]; cache: boolean; fakeIp: boolean };
  rules: Rule[];
  checkTargets: string[];
  applied: boolean;
  /** Absent from gateways older than the field. */
  dnsServer?: DnsServer;
  /** Whether UDP is captured now; absent from older gateways. */
  udp?: boolean;
  /** The URL the node test requests through each node. */
  testUrl?: string;
}
export type {
  ClosedConnection as Closed,
  ConsoleConnection as Conn,
  TrafficBody as Traffic,
} from '../../src/console/live-wire.js';
export interface Probe {
  ok: boolean;
  ms?: number;
  error?: string;
}
export interface CheckResult {
  target: string;
  direct: Probe;
  /** `member`: the node a group used for the check. */
  node: Probe & { node?: string; member?: string };
}
export interface FieldError {
  field: string;
  message: string;
}

/** A refused request: `fields` holds HTTP 400 validation errors, else `message` says why (status 0: no answer). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly fields: FieldError[] = [],
  ) {
    super(message);
  }
}

let csrf = '';
const handlers = { unauthorized: () => {}, unreachable: () => {}, changed: () => {} };

export function setCsrf(token: string): void {
  csrf = token;
}
export function setApiHandlers(h: Partial<typeof handlers>): void {
  Object.assign(handlers, h);
}

const SESSION_ROUTES = ['/api/login', '/api/logout', '/api/session'];

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  try {
    return await request<T>(method, path, body);
  } finally {
    // The switch, pills and forms show what the gateway says after every change, failed or not.
    if (method !== 'GET' && !SESSION_ROUTES.includes(path)) handlers.changed();
  }
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['x-csrf-token'] = csrf;
  const send = () =>
    fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  let res: Response;
  try {
    res = await send();
  } catch (e) {
    // A GET is safe to repeat once (e.g. a kept-alive connection closed under it).
    try {
      if (method !== 'GET') throw e;
      res = await send();
    } catch (e2) {
      handlers.unreachable();
      throw new ApiError(0, `network error: ${(e2 as Error).message}`);
    }
  }
  let data: unknown;
  const text = await res.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: text.slice(0, 200) };
    }
  }
  if (res.ok) return data as T;
  const d = (data ?? {}) as { error?: string; errors?: FieldError[] };
  if (res.status === 401 && path !== '/api/login') handlers.unauthorized();
  if (Array.isArray(d.errors)) {
    const msg = d.errors.map((e) => (e.field ? `${e.field}: ${e.message}` : e.message)).join('; ');
    throw new ApiError(res.status, msg || `HTTP ${res.status}`, d.errors);
  }
  throw new ApiError(res.status, d.error ?? `HTTP ${res.status} ${res.statusText}`);
}

export const get = <T>(path: string) => api<T>('GET', path);
export const post = <T>(path: string, body?: unknown) => api<T>('POST', path, body ?? {});
export const put = <T>(path: string, body: unknown) => api<T>('PUT', path, body);
export const del = <T>(path: string) => api<T>('DELETE', path);

export function fmtBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '–';
  if (n < 1024) return `${n} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${u[i]}`;
}

export function fmtAge(startedAt: string, now: number): string {
  const t = Date.parse(startedAt);
  if (!Number.isFinite(t)) return '–';
  let s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  s %= 60;
  if (m < 60) return `${m}m${String(s).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
