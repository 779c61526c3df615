// Rule sets from a URL: fetched (with a User-Agent, streamed under a size cap), checked by
// parsing, and kept on disk next to the config as the last good copy. The config load reads
// the copy, so a start without network uses it; each set refreshes on its interval and a
// changed copy becomes a new generation of the rules (the same path as SIGHUP).
import { mkdir, rename, stat, utimes, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { MAX_RULE_SET_BYTES, readRuleSetCopy, ruleSetPath } from '../config/file.js';
import type { RuleSetConfig } from '../config/schema.js';
import { fetchSubscription } from '../console/subscription-fetch.js';
import type { Logger } from '../observe/log.js';
import { parseRuleSet, ruleSetSize } from '../route/index.js';

export type FetchText = (url: string, opts: { userAgent: string; maxBytes: number }) => Promise<string>;

/** A failed refresh is tried again after this long (or the interval, if shorter). */
const RETRY_MS = 5 * 60_000;
/** Longest delay setTimeout takes. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface RuleSetSource {
  /** The directory the copies are kept under (the config file's). */
  baseDir: string;
  log: Logger;
  fetchText?: FetchText;
}

const defaultFetch: FetchText = (url, opts) => fetchSubscription(url, opts);

/**
 * Fetch one set and keep it if it parses. Resolves true when the copy on disk changed, false
 * when it is the same; rejects with the reason when the fetch or the new text is bad (the
 * copy on disk is then untouched).
 */
export async function refreshRuleSet(name: string, def: RuleSetConfig, src: RuleSetSource): Promise<boolean> {
  const path = ruleSetPath(src.baseDir, name);
  const text = await (src.fetchText ?? defaultFetch)(def.url, {
    userAgent: def.userAgent,
    maxBytes: MAX_RULE_SET_BYTES,
  });
  const parsed = parseRuleSet(text, def.format, `rule set ${name}`);
  if (ruleSetSize(parsed) === 0) throw new Error('the answer holds no entries');
  let old: string | undefined;
  try {
    old = readRuleSetCopy(path);
  } catch {
    old = undefined; // an unreadable copy is replaced
  }
  if (old === text) {
    const now = new Date();
    await utimes(path, now, now); // fresh as of now: the next refresh is an interval away
    return false;
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode: 0o644 });
  await rename(tmp, path);
  const skipped = Object.entries(parsed.skipped).map(([t, n]) => `${n} ${t}`);
  src.log.info(`rule set ${name}: fetched ${ruleSetSize(parsed)} entries`, {
    url: def.url,
    ...(skipped.length ? { skipped: skipped.join(', ') } : {}),
  });
  return true;
}

/** When the copy on disk was last fetched (ms), or undefined when there is none. */
async function fetchedAt(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).mtimeMs;
  } catch {
    return undefined;
  }
}

/**
 * At start: fetch every set that has no copy on disk yet. Resolves true when any copy was
 * written (the config must then be read again). A set that cannot be fetched stays empty
 * (it matches nothing) and the log says so.
 */
export async function fetchMissingRuleSets(sets: Record<string, RuleSetConfig>, src: RuleSetSource): Promise<boolean> {
  let wrote = false;
  for (const [name, def] of Object.entries(sets)) {
    const path = ruleSetPath(src.baseDir, name);
    const at = await fetchedAt(path);
    if (at !== undefined) {
      src.log.info(`rule set ${name}: using the copy on disk from ${new Date(at).toISOString()}`, { path });
      continue;
    }
    try {
      wrote = (await refreshRuleSet(name, def, src)) || wrote;
    } catch (e) {
      src.log.warn(`rule set ${name}: fetch failed and no copy on disk: it matches nothing until a fetch works`, {
        url: def.url,
        error: (e as Error).message,
      });
    }
  }
  return wrote;
}

export interface RuleSetRefresher {
  /** Re-plan the timers for the sets the configuration has now (after a reload). */
  reschedule(sets: Record<string, RuleSetConfig>): void;
  close(): void;
}

/**
 * Refresh each set on its interval (counted from its copy's last fetch); after a change,
 * `apply` makes a new generation from the file. A failed fetch keeps the last good copy.
 */
export function startRuleSetRefresh(
  sets: Record<string, RuleSetConfig>,
  src: RuleSetSource,
  apply: () => Promise<void>,
): RuleSetRefresher {
  const timers = new Map<string, NodeJS.Timeout>();
  let current = sets;
  let closed = false;
  let chain: Promise<void> = Promise.resolve();

  const arm = (name: string, delayMs: number) => {
    clearTimeout(timers.get(name));
    const t = setTimeout(
      () => void (chain = chain.then(() => tick(name))),
      Math.min(Math.max(0, delayMs), MAX_TIMER_MS),
    );
    t.unref();
    timers.set(name, t);
  };
  const tick = async (name: string): Promise<void> => {
    const def = current[name];
    if (closed || !def || def.intervalMs === 0) return;
    try {
      if (await refreshRuleSet(name, def, src)) {
        await apply().then(
          () => src.log.info(`rule set ${name}: new rules applied`),
          (e: Error) => src.log.error(`rule set ${name}: the new copy was not applied: ${e.message}`),
        );
      }
      arm(name, def.intervalMs);
    } catch (e) {
      const at = await fetchedAt(ruleSetPath(src.baseDir, name));
      src.log.warn(
        `rule set ${name}: refresh failed, ${at === undefined ? 'no copy on disk yet' : `keeping the last good copy from ${new Date(at).toISOString()}`}`,
        { url: def.url, error: (e as Error).message },
      );
      arm(name, Math.min(def.intervalMs, RETRY_MS));
    }
  };
  const reschedule = (next: Record<string, RuleSetConfig>) => {
    current = next;
    for (const [name, t] of timers) if (!(name in next)) clearTimeout(t);
    for (const [name, def] of Object.entries(next)) {
      if (def.intervalMs === 0) {
        clearTimeout(timers.get(name));
        continue;
      }
      void fetchedAt(ruleSetPath(src.baseDir, name)).then((at) => {
        if (!closed) arm(name, at === undefined ? 0 : at + def.intervalMs - Date.now());
      });
    }
  };
  reschedule(sets);
  return {
    reschedule,
    close() {
      closed = true;
      for (const t of timers.values()) clearTimeout(t);
    },
  };
}

/**
 * The supervisor `services` hook that refreshes the config's rule sets: `reload` reads the
 * file again (as SIGHUP does) and `latest` is the configuration last read.
 */
export function ruleSetService<C>(
  src: RuleSetSource,
  latest: () => Record<string, RuleSetConfig>,
  reload: () => C,
): (ctl: { apply(next: C): Promise<void>; onApplied(fn: () => void): () => void }) => Promise<{
  close(): Promise<void>;
}> {
  return async (ctl) => {
    const refresher = startRuleSetRefresh(latest(), src, async () => ctl.apply(reload()));
    const off = ctl.onApplied(() => refresher.reschedule(latest()));
    return {
      close: async () => {
        off();
        refresher.close();
      },
    };
  };
}
