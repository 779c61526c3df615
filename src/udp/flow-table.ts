// Per-flow state with an idle timeout. Pure (injected clock), so the expiry rules are
// unit-tested without timers: the owner calls sweep() periodically.

export interface FlowTableOptions {
  idleTimeoutMs: number;
  now?: () => number;
}

interface Entry<V> {
  value: V;
  lastActive: number;
}

export class FlowTable<V> {
  private readonly map = new Map<string, Entry<V>>();
  private readonly now: () => number;
  readonly idleTimeoutMs: number;

  constructor(opts: FlowTableOptions) {
    if (!(opts.idleTimeoutMs > 0)) throw new RangeError(`idle timeout must be positive, got ${opts.idleTimeoutMs}`);
    this.idleTimeoutMs = opts.idleTimeoutMs;
    this.now = opts.now ?? (() => performance.now());
  }

  get size(): number {
    return this.map.size;
  }

  get(key: string): V | undefined {
    return this.map.get(key)?.value;
  }

  /** Insert (or replace) and mark active now. */
  set(key: string, value: V): void {
    this.map.set(key, { value, lastActive: this.now() });
  }

  /** Mark active now (a datagram in either direction). False when absent. */
  touch(key: string): boolean {
    const e = this.map.get(key);
    if (!e) return false;
    e.lastActive = this.now();
    return true;
  }

  /** The value, marked active now. */
  use(key: string): V | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    e.lastActive = this.now();
    return e.value;
  }

  delete(key: string): V | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    this.map.delete(key);
    return e.value;
  }

  /** Milliseconds since `key` was last active (undefined when absent). */
  idleFor(key: string): number | undefined {
    const e = this.map.get(key);
    return e ? this.now() - e.lastActive : undefined;
  }

  /** Remove and return every entry idle for at least the timeout. */
  sweep(): Array<[string, V]> {
    const limit = this.now() - this.idleTimeoutMs;
    const out: Array<[string, V]> = [];
    for (const [key, e] of this.map) {
      if (e.lastActive <= limit) {
        this.map.delete(key);
        out.push([key, e.value]);
      }
    }
    return out;
  }

  /** Remove and return everything (shutdown). */
  drain(): Array<[string, V]> {
    const out = [...this.map].map(([k, e]) => [k, e.value] as [string, V]);
    this.map.clear();
    return out;
  }

  keys(): IterableIterator<string> {
    return this.map.keys();
  }
}

/** Flow key: client address and port, original destination address and port. */
export function flowKey(src: { address: string; port: number }, dst: { address: string; port: number }): string {
  return `${src.address}|${src.port}|${dst.address}|${dst.port}`;
}

/** How often to sweep for an idle timeout: a quarter of it, between 50 ms and 1 s. */
export function sweepInterval(idleTimeoutMs: number): number {
  return Math.min(1000, Math.max(50, Math.floor(idleTimeoutMs / 4)));
}
