// Subscriptions: fetch (with the subscription's User-Agent), decode whatever format the
// provider serves, and merge into the file's nodes. A refresh keeps node names stable (the
// same label or link keeps its key, so rules naming it still work) and never removes a node
// something uses: a dropped node in use stays as last seen, listed under `kept`, and the
// log and the console say so.
import type { Document } from 'yaml';
import { SUBSCRIPTION_INTERVAL_MS, SUBSCRIPTION_USER_AGENT } from '../config/schema.js';
import type { Logger } from '../observe/log.js';
import type { ConfigStore, Snapshot } from './apply.js';
import {
  invalid,
  nodeLabel,
  nodeNames,
  nodeUri,
  nodeUsers,
  setSubscriptions,
  subscriptionsOf,
  writeNode,
  type DocSubscription,
} from './document.js';
import {
  baseName,
  importSummary,
  labelFromUri,
  parseEntries,
  uniqueName,
  type ParsedLink,
  type SkippedLink,
} from './links.js';
import { decodeSubscription, type SubscriptionFormat } from './subscription-formats.js';

export type FetchText = (url: string, opts: { userAgent: string }) => Promise<string>;

/** A node a subscription put in the file. */
export interface SubNode {
  name: string;
  uri: string;
  label?: string;
}

export interface RefreshPlan {
  /** Nodes to write (new ones and the ones whose link or label changed), by final name. */
  write: SubNode[];
  /** Old nodes to delete (dropped by the provider and used by nothing). */
  remove: string[];
  /** Dropped by the provider but in use: left as they are. */
  kept: { name: string; label?: string; users: string[] }[];
  /** Names that are new in this refresh. */
  added: string[];
  /** The subscription's node list afterwards (fresh ones in the provider's order, then kept). */
  nodes: string[];
}

const withoutFragment = (uri: string) => uri.replace(/#.*$/s, '');

/**
 * What a refresh does, given the subscription's nodes now, the fresh links, the names taken
 * by other nodes, and who uses each node. Pure.
 */
export function planRefresh(
  old: readonly SubNode[],
  fresh: readonly ParsedLink[],
  taken: ReadonlySet<string>,
  usersOf: (name: string) => string[],
): RefreshPlan {
  const unmatched = new Map(old.map((n) => [n.name, n]));
  const matchOf = new Map<number, SubNode>();
  // Same label first (a provider that rotates servers keeps the name), then the same link.
  for (const by of [
    (o: SubNode, l: ParsedLink) => l.label !== undefined && o.label === l.label,
    (o: SubNode, l: ParsedLink) => withoutFragment(o.uri) === withoutFragment(l.uri),
  ]) {
    fresh.forEach((l, i) => {
      if (matchOf.has(i)) return;
      const hit = [...unmatched.values()].find((o) => by(o, l));
      if (hit) {
        matchOf.set(i, hit);
        unmatched.delete(hit.name);
      }
    });
  }
  const kept: RefreshPlan['kept'] = [];
  const remove: string[] = [];
  for (const o of unmatched.values()) {
    const users = usersOf(o.name);
    if (users.length) kept.push({ name: o.name, ...(o.label ? { label: o.label } : {}), users });
    else remove.push(o.name);
  }
  const names = new Set([...taken, ...[...matchOf.values()].map((o) => o.name), ...kept.map((k) => k.name)]);
  const write: SubNode[] = [];
  const added: string[] = [];
  const nodes = fresh.map((l, i) => {
    const match = matchOf.get(i);
    const name = match?.name ?? uniqueName(baseName(l.spec, l.label ?? ''), names);
    if (!match) added.push(name);
    if (!match || match.uri !== l.uri || match.label !== l.label)
      write.push({ name, uri: l.uri, ...(l.label ? { label: l.label } : {}) });
    return name;
  });
  return { write, remove, kept, added, nodes: [...nodes, ...kept.map((k) => k.name)] };
}

export interface ImportReport {
  format?: SubscriptionFormat;
  imported: { name: string; label: string }[];
  skipped: SkippedLink[];
  kept: { name: string; label?: string; users: string[] }[];
  removed: string[];
  /** "3 imported, 2 skipped: hysteria2 not supported" (+ "; kept 1 in use: …"). */
  summary: string;
}

export function reportOf(
  plan: RefreshPlan,
  links: readonly ParsedLink[],
  skipped: SkippedLink[],
  format?: SubscriptionFormat,
): ImportReport {
  let summary = importSummary(links.length, skipped);
  if (plan.kept.length)
    summary += `; kept ${plan.kept.length} no longer listed but in use: ${plan.kept.map((k) => `${k.label ?? k.name} (${k.users.join(', ')})`).join(', ')}`;
  return {
    ...(format ? { format } : {}),
    imported: plan.nodes.slice(0, links.length).map((name, i) => ({ name, label: links[i]!.label ?? name })),
    skipped,
    kept: plan.kept,
    removed: plan.remove,
    summary,
  };
}

/** Every node of the file as a SubNode (name, link, label). */
function subNodes(doc: Document, names: readonly string[]): SubNode[] {
  return names.flatMap((name) => {
    const uri = nodeUri(doc, name);
    const label = nodeLabel(doc, name) ?? (uri === undefined ? undefined : labelFromUri(uri));
    return uri === undefined ? [] : [{ name, uri, ...(label ? { label } : {}) }];
  });
}

const FIELDS = [
  ['console.subscriptions', 'url'],
  ['nodes', 'url'],
  ['default', 'url'],
  ['rules', 'url'],
] as const;
/** A failed automatic refresh is tried again after this long (or the interval, if shorter). */
const RETRY_MS = 10 * 60_000;
const TICK_MS = 60_000;

export class Subscriptions {
  private readonly nextTry = new Map<string, number>();

  constructor(private readonly deps: { store: ConfigStore; fetchText: FetchText; log: Logger }) {}

  /** Add (or, with `refresh`, refresh) the subscription at `url`. */
  async fetchAndMerge(
    url: string,
    refresh: boolean,
    settings: { interval?: string; userAgent?: string } = {},
  ): Promise<{ snapshot: Snapshot; report: ImportReport }> {
    const { doc, file } = await this.deps.store.read();
    const existing = subscriptionsOf(doc).find((s) => s.url === url);
    if (refresh && !existing) throw invalid('url', 'no such subscription: add it first');
    if (!refresh && existing) throw invalid('url', 'this subscription exists already: refresh it instead');
    const userAgent =
      settings.userAgent ??
      file.console?.subscriptions.find((s) => s.url === url)?.userAgent ??
      SUBSCRIPTION_USER_AGENT;
    let decoded: ReturnType<typeof decodeSubscription>;
    let links: ParsedLink[];
    let skipped: SkippedLink[];
    let stage = 'fetch';
    try {
      const body = await this.deps.fetchText(url, { userAgent });
      stage = 'use';
      decoded = decodeSubscription(body);
      ({ links, skipped } = parseEntries(decoded.entries));
      if (!links.length)
        throw new Error(
          skipped.length ? `no usable links: ${importSummary(0, skipped)}` : 'the subscription lists no nodes',
        );
    } catch (e) {
      const message = `cannot ${stage} the subscription: ${(e as Error).message}`;
      if (refresh) {
        this.deps.log.warn(`subscription ${url}: ${message}; keeping its nodes as they are`);
        await this.deps.store
          .change(
            (d) =>
              setSubscriptions(
                d,
                subscriptionsOf(d).map((s) => (s.url === url ? { ...s, error: message } : s)),
              ),
            [],
          )
          .catch(() => {});
      }
      throw invalid('url', message);
    }
    let report: ImportReport | undefined;
    const snapshot = await this.deps.store.change((d) => {
      const subs = subscriptionsOf(d);
      const sub = subs.find((s) => s.url === url);
      const mine = new Set(sub?.nodes ?? []);
      const taken = new Set(nodeNames(d).filter((n) => !mine.has(n)));
      const plan = planRefresh(subNodes(d, sub?.nodes ?? []), links, taken, (n) => nodeUsers(d, n));
      for (const n of plan.remove) d.deleteIn(['nodes', n]);
      for (const n of plan.write) writeNode(d, n.name, n.uri, n.label);
      report = reportOf(plan, links, skipped, decoded.format);
      const entry: DocSubscription = {
        ...(sub ?? { url }),
        url,
        nodes: plan.nodes,
        kept: plan.kept.map((k) => k.name),
        ...(settings.interval !== undefined ? { interval: settings.interval } : {}),
        ...(settings.userAgent !== undefined ? { userAgent: settings.userAgent } : {}),
        updatedAt: new Date().toISOString(),
        result: report.summary,
      };
      delete entry.error;
      setSubscriptions(d, sub ? subs.map((s) => (s === sub ? entry : s)) : [...subs, entry]);
    }, FIELDS);
    for (const k of report!.kept) {
      this.deps.log.warn(
        `subscription ${url} no longer lists node '${k.label ?? k.name}' (${k.name}), which is in use by ${k.users.join(', ')}: kept the last good copy`,
      );
    }
    this.deps.log.info(`subscription ${url}: ${report!.summary}`, { format: decoded.format });
    return { snapshot, report: report! };
  }

  remove(url: string): Promise<Snapshot> {
    return this.deps.store.change(
      (doc) => {
        const subs = subscriptionsOf(doc);
        const sub = subs.find((s) => s.url === url);
        if (!sub) throw invalid('url', `no subscription '${url}'`);
        const used = sub.nodes.flatMap((n) => nodeUsers(doc, n).map((u) => `${n} (${u})`));
        if (used.length) throw invalid('url', `its nodes are in use: ${used.join(', ')}`);
        for (const n of sub.nodes) doc.deleteIn(['nodes', n]);
        setSubscriptions(
          doc,
          subs.filter((s) => s !== sub),
        );
      },
      [['console.subscriptions', 'url']],
    );
  }

  /** Refresh every subscription whose interval has passed (one at a time). */
  async refreshDue(now = Date.now()): Promise<void> {
    const subs = (await this.deps.store.read()).file.console?.subscriptions ?? [];
    for (const s of subs) {
      if (!isDue(s, now, this.nextTry.get(s.url))) continue;
      try {
        await this.fetchAndMerge(s.url, true);
        this.nextTry.delete(s.url);
      } catch {
        this.nextTry.set(s.url, now + Math.min(s.intervalMs || RETRY_MS, RETRY_MS)); // logged and recorded by fetchAndMerge
      }
    }
  }

  /** Check for due subscriptions every minute until stopped. */
  startTimer(): () => void {
    let busy = false;
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      this.refreshDue()
        .catch((e: Error) => this.deps.log.error(`subscription refresh: ${e.message}`))
        .finally(() => (busy = false));
    }, TICK_MS);
    timer.unref();
    return () => clearInterval(timer);
  }
}

/** Whether a subscription should be refreshed now. Pure. */
export function isDue(s: { intervalMs: number; updatedAt: string | null }, now: number, retryAt?: number): boolean {
  if (s.intervalMs <= 0) return false;
  if (retryAt !== undefined) return now >= retryAt;
  const last = s.updatedAt ? Date.parse(s.updatedAt) : NaN;
  return Number.isNaN(last) || now - last >= (s.intervalMs || SUBSCRIPTION_INTERVAL_MS);
}
