import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FlowStats, nodeOf, type TrafficSnapshot } from '../../src/observe/flow-stats.js';
import { rateOf, TrafficTotals } from '../../src/observe/traffic.js';

const closedFlow = (id: number, via: string, up: number, down: number, path?: string[]) => ({
  id,
  src: '10.0.0.2:4000',
  dst: '10.0.9.9:80',
  via,
  ...(path ? { path } : {}),
  up,
  down,
  started: 1000,
  durMs: 5,
  outcome: 'eof',
});

test('flow stats: moved = closed + live, per node (the group member, not the group), closed ring bounded', () => {
  const s = new FlowStats(3);
  s.recordClosed(closedFlow(1, 'direct', 10, 100));
  s.recordClosed(closedFlow(2, 'auto', 5, 50, ['hk-1']));
  const snap = s.snapshot(
    [
      { up: 1, down: 2, node: 'hk-1' },
      { up: 7, down: 0 }, // still connecting: in moved, no node yet
    ],
    0,
  );
  assert.deepEqual(snap.moved, { up: 23, down: 152 });
  assert.deepEqual(snap.byNode, { direct: { up: 10, down: 100 }, 'hk-1': { up: 6, down: 52 } });
  assert.deepEqual(
    snap.closed.map((c) => c.seq),
    [1, 2],
  );
  assert.deepEqual(
    s.snapshot([], 1).closed.map((c) => c.id),
    [2],
    'only those after the cursor',
  );
  for (let i = 3; i <= 20; i++) s.recordClosed(closedFlow(i, 'direct', 1, 1));
  const kept = s.snapshot([], 0).closed;
  assert.deepEqual(
    kept.map((c) => c.id),
    [18, 19, 20],
  );
  assert.ok((s as unknown as { closed: unknown[] }).closed.length <= 6);
  assert.equal(nodeOf('g', ['g2', 'n']), 'n');
  assert.equal(nodeOf(undefined, undefined), 'direct');
});

test('rate: bytes per second over the window, from counters that grow during a transfer', () => {
  assert.deepEqual(rateOf([], 2000), { up: 0, down: 0 });
  assert.deepEqual(rateOf([{ t: 0, up: 5, down: 5 }], 2000), { up: 0, down: 0 });
  const samples = [0, 1000, 2000, 3000].map((t) => ({ t, up: t * 10, down: t * 1000 }));
  // 10 B/ms up, 1000 B/ms down over the last 2 s.
  assert.deepEqual(rateOf(samples, 2000), { up: 10_000, down: 1_000_000 });
  // Younger than the window: over what there is.
  assert.deepEqual(rateOf(samples.slice(0, 2), 2000), { up: 10_000, down: 1_000_000 });
});

const worker = (pid: number, moved: [number, number], byNode: Record<string, [number, number]>, closed = 0) => {
  const traffic: TrafficSnapshot = {
    moved: { up: moved[0], down: moved[1] },
    byNode: Object.fromEntries(Object.entries(byNode).map(([k, [up, down]]) => [k, { up, down }])),
    closed: Array.from({ length: closed }, (_, i) => ({ ...closedFlow(i + 1, 'direct', 1, 1), seq: i + 1 })),
  };
  return { pid, traffic, flows: [{ key: `${pid}-1`, up: moved[0], down: moved[1] }] };
};

test('traffic totals: growth only, across workers that come and go; throughput from live counters', () => {
  const tt = new TrafficTotals(2000, 200);
  tt.update(0, [worker(1, [0, 0], {})]);
  assert.deepEqual(tt.rate(), { up: 0, down: 0 });
  tt.update(1000, [worker(1, [1000, 4_000_000], { direct: [1000, 4_000_000] })]);
  tt.update(2000, [worker(1, [2000, 8_000_000], { direct: [2000, 8_000_000] })]);
  // A transfer running at 4 MB/s shows 4 MB/s while it runs, not when it ends.
  assert.deepEqual(tt.rate(), { up: 1000, down: 4_000_000 });
  assert.deepEqual(tt.flowRate('1-1'), { up: 1000, down: 4_000_000 });
  // A counter read a moment early (a flow between live and closed) never subtracts, and is not counted twice.
  tt.update(2500, [worker(1, [1500, 7_000_000], { direct: [1500, 7_000_000] })]);
  tt.update(3000, [worker(1, [2500, 9_000_000], { direct: [2500, 9_000_000] })]);
  assert.deepEqual(tt.totals(), { up: 2500, down: 9_000_000 });
  // A reload: worker 1 leaves, worker 2 starts from zero; totals go on.
  tt.update(4000, [worker(2, [100, 200], { hk: [100, 200] }, 2)]);
  assert.deepEqual(tt.totals(), { up: 2600, down: 9_000_200 });
  assert.deepEqual(tt.byNode(), { direct: { up: 2500, down: 9_000_000 }, hk: { up: 100, down: 200 } });
  assert.equal(tt.flowRate('1-1').down, 0, 'a flow gone is forgotten');
  assert.equal(tt.cursor(2), 2);
  // The same closed flows offered again are not listed twice.
  tt.update(5000, [worker(2, [100, 200], { hk: [100, 200] }, 2)]);
  assert.deepEqual(
    tt.recentlyClosed().map((c) => [c.worker, c.seq]),
    [
      [2, 2],
      [2, 1],
    ],
  );
});

test('traffic totals: the closed list stays bounded', () => {
  const tt = new TrafficTotals(2000, 5);
  tt.update(0, [worker(1, [0, 0], {}, 50)]);
  assert.equal(tt.recentlyClosed().length, 5);
  assert.equal(tt.recentlyClosed()[0]!.seq, 50);
});
