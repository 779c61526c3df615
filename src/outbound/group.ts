// Node groups: an outbound that delegates each connection to its current member. `select`
// is chosen by hand, `url-test` picks the fastest healthy member (sticky within a tolerance),
// `fallback` the first healthy member in order. Members are probed through themselves.
import tls from 'node:tls';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { OutboundError, type ConnectContext, type Destination, type TcpOutbound } from './types.js';

export const GROUP_TYPES = ['select', 'url-test', 'fallback'] as const;
export type GroupType = (typeof GROUP_TYPES)[number];
export const DEFAULT_PROBE_URL = 'http://www.gstatic.com/generate_204';
export const DEFAULT_PROBE_INTERVAL_MS = 300_000;
export const DEFAULT_TOLERANCE_MS = 50;

export interface GroupSpec {
  type: GroupType;
  /** Outbound names in order: nodes, other groups, direct, reject. */
  members: string[];
  url: string;
  intervalMs: number;
  toleranceMs: number;
}

export interface MemberHealth {
  alive: boolean;
  /** Time to the response headers of the last good probe. */
  delayMs?: number;
  error?: string;
}

/** url-test: the fastest alive member; the current one stays unless another beats it by more than `toleranceMs`. */
export function pickUrlTest(
  members: readonly string[],
  health: ReadonlyMap<string, MemberHealth>,
  current: string,
  toleranceMs: number,
): string {
  let best: string | undefined;
  for (const m of members) {
    const h = health.get(m);
    if (h?.alive && h.delayMs !== undefined && (best === undefined || h.delayMs < health.get(best)!.delayMs!)) best = m;
  }
  if (best === undefined) return current;
  const cur = health.get(current);
  if (cur?.alive && cur.delayMs !== undefined && cur.delayMs - health.get(best)!.delayMs! <= toleranceMs)
    return current;
  return best;
}

/** fallback: the first member not known to be down; every one down: the current one. */
export function pickFallback(
  members: readonly string[],
  health: ReadonlyMap<string, MemberHealth>,
  current: string,
): string {
  return members.find((m) => health.get(m)?.alive !== false) ?? current;
}

/** Measures one member: time to response headers of a GET of `url` through it; throws when unhealthy. */
export type Prober = (member: TcpOutbound, url: string) => Promise<number>;

export interface GroupState {
  name: string;
  type: GroupType;
  now: string;
  url: string;
  members: ({ name: string } & MemberHealth)[];
}

export class GroupOutbound implements TcpOutbound {
  readonly kind = 'group';
  private current: string;
  private readonly health = new Map<string, MemberHealth>();
  private timer: NodeJS.Timeout | undefined;
  private probing = false;

  constructor(
    readonly name: string,
    readonly spec: GroupSpec,
    private readonly members: ReadonlyMap<string, TcpOutbound>,
    private readonly probe: Prober,
    /** Called when the chosen member changes (logs, metrics). */
    private readonly onChange: (group: GroupOutbound, from: string, reason: string) => void = () => {},
  ) {
    this.current = spec.members[0]!;
  }

  get now(): string {
    return this.current;
  }

  /** The outbound of the member in use (undefined if missing). */
  get nowOutbound(): TcpOutbound | undefined {
    return this.members.get(this.current);
  }

  connect(dst: Destination, ctx: ConnectContext): Promise<Duplex> {
    const m = this.members.get(this.current);
    if (!m) return Promise.reject(new OutboundError(this.name, 'ENOOUTBOUND', `member '${this.current}' missing`));
    return m.connect(dst, ctx);
  }

  /** select groups: choose a member by hand. */
  select(member: string): void {
    if (this.spec.type !== 'select')
      throw new OutboundError(
        this.name,
        'ENOTSELECT',
        `group '${this.name}' is ${this.spec.type}: only select groups are chosen by hand`,
      );
    if (!this.spec.members.includes(member))
      throw new OutboundError(
        this.name,
        'ENOMEMBER',
        `'${member}' is not a member of '${this.name}' (members: ${this.spec.members.join(', ')})`,
      );
    this.setCurrent(member, 'selected');
  }

  /** Probe every member once and re-pick. */
  async checkNow(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    try {
      await Promise.all(
        this.spec.members.map(async (name) => {
          const m = this.members.get(name)!;
          try {
            this.health.set(name, { alive: true, delayMs: await this.probe(m, this.spec.url) });
          } catch (e) {
            this.health.set(name, { alive: false, error: (e as Error).message });
          }
          // The member in use is known down: leave it now, not when the slowest probe is back.
          if (this.health.get(this.current)?.alive === false) this.repick();
        }),
      );
    } finally {
      this.probing = false;
    }
    this.repick();
  }

  private repick(): void {
    const { type, members, toleranceMs } = this.spec;
    if (type === 'select') return;
    const next =
      type === 'url-test'
        ? pickUrlTest(members, this.health, this.current, toleranceMs)
        : pickFallback(members, this.health, this.current);
    const h = this.health.get(this.current);
    this.setCurrent(
      next,
      h?.alive === false
        ? `${this.current} down: ${h.error ?? 'unhealthy'}`
        : type === 'url-test'
          ? 'faster'
          : 'back up',
    );
  }

  private setCurrent(next: string, reason: string): void {
    if (next === this.current) return;
    const from = this.current;
    this.current = next;
    this.onChange(this, from, reason);
  }

  /** Probes now and every interval (the timer does not keep the process alive). */
  start(): void {
    if (this.timer) return;
    void this.checkNow();
    this.timer = setInterval(() => void this.checkNow(), this.spec.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  state(): GroupState {
    return {
      name: this.name,
      type: this.spec.type,
      now: this.current,
      url: this.spec.url,
      members: this.spec.members.map((name) => ({ name, ...(this.health.get(name) ?? { alive: true }) })),
    };
  }

  memberHealth(name: string): MemberHealth | undefined {
    return this.health.get(name);
  }
}

const MAX_HEAD = 16 * 1024;

/**
 * GET `url` through `outbound`; resolves with ms to the response headers when the status is
 * 2xx, rejects otherwise (connect failure, close, timeout, other status).
 */
export async function httpProbe(outbound: TcpOutbound, url: string, timeoutMs: number): Promise<number> {
  const u = new URL(url);
  const https = u.protocol === 'https:';
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = Number(u.port) || (https ? 443 : 80);
  const family = isIP(host) === 6 ? 6 : 4;
  const started = process.hrtime.bigint();
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  let stream: Duplex | undefined;
  try {
    const dst: Destination = {
      ip: isIP(host) ? host : '0.0.0.0',
      port,
      family,
      ...(isIP(host) ? {} : { domain: host }),
    };
    const raw = await withSignal(
      outbound.connect(dst, { source: { address: '0.0.0.0', port: 0 }, signal: ac.signal }),
      ac.signal,
    );
    stream = https ? tls.connect({ socket: raw, servername: isIP(host) ? undefined : host }) : raw;
    const status = await responseStatus(
      stream,
      `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUser-Agent: tranproxy\r\nConnection: close\r\n\r\n`,
      ac.signal,
    );
    if (status < 200 || status > 299) throw new Error(`HTTP status ${status}`);
    return Number(process.hrtime.bigint() - started) / 1e6;
  } finally {
    clearTimeout(timer);
    stream?.destroy();
  }
}

function withSignal<T extends Duplex>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(new Error('timed out'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (s) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) s.destroy();
        resolve(s);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/** Writes `request`, reads up to the end of the response head, returns its status code. */
function responseStatus(stream: Duplex, request: string, signal: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    let head = '';
    const finish = (err?: Error, status?: number): void => {
      stream.off('data', onData).off('error', onError).off('close', onClose);
      signal.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(status!);
    };
    const onData = (b: Buffer): void => {
      head += b.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return head.length > MAX_HEAD ? finish(new Error('response head too large')) : undefined;
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      if (!m) return finish(new Error('not an HTTP response'));
      finish(undefined, Number(m[1]));
    };
    const onError = (e: Error): void => finish(new Error(e.message));
    const onClose = (): void => finish(new Error('closed before a response'));
    const onAbort = (): void => finish(new Error('timed out'));
    stream.on('data', onData).on('error', onError).on('close', onClose);
    signal.addEventListener('abort', onAbort, { once: true });
    stream.write(request);
  });
}
