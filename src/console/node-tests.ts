// The Nodes page's delay tests, kept in the console process: "Test all" runs every node with a
// small concurrency limit, and the results outlive the page (another page, a reload) until the
// node's link changes or the console restarts.
import type { NodeTestResult } from './probe.js';

/** Nodes tested at once by "Test all": enough to be quick, few enough not to look like a flood. */
export const TEST_ALL_CONCURRENCY = 4;

export interface StoredTest extends NodeTestResult {
  /** When the test finished (ISO time). */
  at: string;
}

/** Runs `fn` over `items` with at most `limit` running at once; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  return out;
}

export class NodeTests {
  /** node name → its last result and the link it was tested with. */
  private readonly results = new Map<string, { uri: string; result: StoredTest }>();

  /** Tests one node and keeps the result. */
  async run(name: string, uri: string, test: () => Promise<NodeTestResult>): Promise<StoredTest> {
    const result = { ...(await test()), at: new Date().toISOString() };
    this.results.set(name, { uri, result });
    return result;
  }

  /** Tests every node, TEST_ALL_CONCURRENCY at a time. */
  async runAll(
    nodes: readonly { name: string; uri: string }[],
    test: (name: string, uri: string) => Promise<NodeTestResult>,
  ): Promise<Record<string, StoredTest>> {
    await mapLimit(nodes, TEST_ALL_CONCURRENCY, (n) => this.run(n.name, n.uri, () => test(n.name, n.uri)));
    return this.current(nodes);
  }

  /** The kept results of `nodes`, leaving out those whose link changed since. */
  current(nodes: readonly { name: string; uri: string }[]): Record<string, StoredTest> {
    const out: Record<string, StoredTest> = {};
    for (const n of nodes) {
      const r = this.results.get(n.name);
      if (r && r.uri === n.uri) out[n.name] = r.result;
    }
    return out;
  }
}
