// Thin client for the console API (src/console/API.md). Every non-GET request carries the
// CSRF token as X-CSRF-Token; cookies are same-origin only.

export interface NodeInfo { name: string; type: string; server: string; port: number; uri: string }
export interface Subscription { url: string; nodes: string[]; updatedAt: string | null; error?: string }
export type Rule = Record<string, unknown> & { outbound: string };
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
}
export interface Conn { id: string; src: string; dst: string; domain?: string; node: string; up: number; down: number; startedAt: string | number }
export interface Probe { ok: boolean; ms?: number; error?: string }
export interface CheckResult { target: string; direct: Probe; node: Probe & { node?: string } }
export interface TestResult { ok: boolean; connectMs?: number; handshakeMs?: number; error?: string }
export interface FieldError { field: string; message: string }

/** A refused request: `fields` holds HTTP 400 validation errors, else `message` says why. */
export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly fields: FieldError[] = []) {
    super(message);
  }
}

let csrf = '';
let onUnauthorized: () => void = () => {};

export function setCsrf(token: string): void { csrf = token; }
export function setUnauthorizedHandler(fn: () => void): void { onUnauthorized = fn; }

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
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
    if (method !== 'GET') throw new ApiError(0, `network error: ${(e as Error).message}`);
    try {
      res = await send();
    } catch (e2) {
      throw new ApiError(0, `network error: ${(e2 as Error).message}`);
    }
  }
  let data: unknown = undefined;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: text.slice(0, 200) }; }
  }
  if (res.ok) return data as T;
  const d = (data ?? {}) as { error?: string; errors?: FieldError[] };
  if (res.status === 401 && path !== '/api/login') onUnauthorized();
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
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${u[i]}`;
}

export function fmtAge(startedAt: string | number, now: number): string {
  const t = typeof startedAt === 'number' ? startedAt : Date.parse(startedAt);
  if (!Number.isFinite(t)) return '–';
  let s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  s %= 60;
  if (m < 60) return `${m}m${String(s).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
