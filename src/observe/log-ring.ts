// The last log lines in memory (the console's Logs page): bounded by a line count and a byte
// count, whichever is reached first; the oldest lines go. Readers page through it by sequence
// number, so a slow reader never makes it keep more.
export type RingLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LogEntry {
  /** Increases by one per line kept by this ring. */
  seq: number;
  /** Date.now() when logged. */
  t: number;
  level: RingLevel;
  /** The line as text (message and key=value fields), without the `tranproxy:` prefix. */
  text: string;
  /** Which process logged it (a data-plane worker's pid); absent: the supervisor. */
  pid?: number;
}

export interface LogQuery {
  /** Entries after this sequence number (0: from the oldest kept). */
  since: number;
  /** Only this level and above. */
  level?: RingLevel;
  /** Case-insensitive substring of the text. */
  q?: string;
  /** At most this many entries (default 500). */
  limit?: number;
}

export interface LogPage {
  entries: LogEntry[];
  /** Pass as `since` to continue: the last sequence number looked at (filtered out or not). */
  next: number;
  /** Lines after `since` were dropped before they were read (the ring moved on). */
  gap: boolean;
}

const RANK: Record<RingLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
/** Bookkeeping per line besides its text, for the byte bound. */
const ENTRY_OVERHEAD = 64;

export function isRingLevel(v: unknown): v is RingLevel {
  return typeof v === 'string' && v in RANK;
}

export class LogRing {
  private entries: LogEntry[] = [];
  /** Index of the oldest entry in `entries` (a ring kept as an array with a moving head). */
  private head = 0;
  private bytes = 0;
  private lastSeq = 0;
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly maxLines = 2000,
    readonly maxBytes = 1 << 20,
  ) {}

  get size(): number {
    return this.entries.length - this.head;
  }

  get byteSize(): number {
    return this.bytes;
  }

  /** The newest sequence number (0: nothing logged yet). */
  get last(): number {
    return this.lastSeq;
  }

  push(level: RingLevel, text: string, t = Date.now(), pid?: number): void {
    // One line larger than the whole budget is cut rather than emptying the ring for it.
    const kept = text.length > this.maxBytes / 4 ? `${text.slice(0, this.maxBytes / 4)}…` : text;
    const e: LogEntry = { seq: ++this.lastSeq, t, level, text: kept, ...(pid !== undefined ? { pid } : {}) };
    this.entries.push(e);
    this.bytes += kept.length + ENTRY_OVERHEAD;
    while (this.size > this.maxLines || (this.bytes > this.maxBytes && this.size > 1)) {
      const old = this.entries[this.head++]!;
      this.bytes -= old.text.length + ENTRY_OVERHEAD;
    }
    // Compact now and then, so the array does not keep the dropped slots.
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    for (const w of this.waiters) w();
    this.waiters.clear();
  }

  read(query: LogQuery): LogPage {
    const limit = Math.max(1, Math.min(query.limit ?? 500, 2000));
    const minRank = RANK[query.level ?? 'debug'];
    const needle = query.q?.trim().toLowerCase() || undefined;
    const oldest = this.size ? this.entries[this.head]!.seq : this.lastSeq + 1;
    const since = Math.max(0, Math.min(query.since, this.lastSeq));
    const gap = since + 1 < oldest && since > 0;
    const out: LogEntry[] = [];
    let next = since;
    // Sequence numbers are consecutive: the first wanted entry is found by arithmetic.
    for (let i = this.head + Math.max(0, since + 1 - oldest); i < this.entries.length; i++) {
      const e = this.entries[i]!;
      next = e.seq;
      if (RANK[e.level] < minRank || (needle && !e.text.toLowerCase().includes(needle))) continue;
      out.push(e);
      if (out.length >= limit) break;
    }
    return { entries: out, next, gap };
  }

  /** Resolves at the next push, or after `ms`. */
  waitForMore(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }
}
