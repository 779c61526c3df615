import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connFields, FlowReporter, refusedFields } from '../../src/flow/record.js';
import { createLogger } from '../../src/observe/log.js';
import { DataPlaneMetrics } from '../../src/observe/metrics.js';
import { FlowStats } from '../../src/observe/flow-stats.js';

const flow = {
  id: 7,
  listener: 'tcp4',
  src: { address: '10.0.0.2', port: 40000, family: 4 as const },
  dst: { address: '2001:db8::1', port: 443, family: 6 as const },
  started: 1_000,
};

function capture() {
  const lines: string[] = [];
  const metrics = new DataPlaneMetrics();
  return {
    lines,
    metrics,
    report: new FlowReporter(
      createLogger('text', (l) => lines.push(l)),
      metrics,
    ),
  };
}

async function counter(metrics: DataPlaneMetrics, name: string) {
  const m = (await metrics.snapshot()).find((x) => x.name === name);
  return (m?.values ?? []).map((v) => ({ ...v.labels, value: v.value }));
}

test('conn line of a relayed flow: endpoints formatted one way, fields in order, via only with routing', () => {
  const end = { via: 'node-a', domain: 'example.com', rule: 'rules[2]', up: 10, down: 20, durMs: 5, close: 'eof' };
  assert.deepEqual(
    Object.entries(connFields(flow, { ...end, showVia: true })).filter(([, v]) => v !== undefined),
    [
      ['id', 7],
      ['src', '10.0.0.2:40000'],
      ['dst', '[2001:db8::1]:443'],
      ['domain', 'example.com'],
      ['via', 'node-a'],
      ['route', 'rules[2]'],
      ['up', 10],
      ['down', 20],
      ['dur', '5ms'],
      ['close', 'eof'],
    ],
  );
  assert.equal(connFields(flow, end).via, undefined);
});

test('conn lines for each outcome: fallback, rejected, connect-failed with detail, spliced', () => {
  const { lines, report } = capture();
  report.ended(flow, { via: 'direct', showVia: true, fallbackFrom: 'node-a', up: 1, down: 2, durMs: 3, close: 'eof' });
  report.ended(flow, {
    via: 'reject',
    showVia: true,
    rule: 'rules[0]',
    up: 0,
    down: 0,
    durMs: 0,
    close: 'rejected-by-rule',
  });
  report.ended(flow, {
    via: 'node-b',
    showVia: true,
    up: 0,
    down: 0,
    durMs: 1,
    close: 'connect-failed',
    error: 'ECONNREFUSED',
    detail: 'node-b: refused',
  });
  report.ended(flow, { via: 'direct', up: 4, down: 5, durMs: 6, close: 'eof', relay: 'splice' });
  assert.deepEqual(lines, [
    'tranproxy: conn id=7 src=10.0.0.2:40000 dst=[2001:db8::1]:443 via=direct fallback-from=node-a up=1 down=2 dur=3ms close=eof\n',
    'tranproxy: conn id=7 src=10.0.0.2:40000 dst=[2001:db8::1]:443 via=reject route=rules[0] up=0 down=0 dur=0ms close=rejected-by-rule\n',
    'tranproxy: conn id=7 src=10.0.0.2:40000 dst=[2001:db8::1]:443 via=node-b up=0 down=0 dur=1ms close=connect-failed error=ECONNREFUSED detail="node-b: refused"\n',
    'tranproxy: conn id=7 src=10.0.0.2:40000 dst=[2001:db8::1]:443 up=4 down=5 dur=6ms close=eof relay=splice\n',
  ]);
});

test('metrics of ended flows are labelled by outbound (direct when none) and close reason', async () => {
  const { metrics, report } = capture();
  report.ended(flow, { via: 'reject', up: 0, down: 0, durMs: 0, close: 'rejected-by-rule' });
  report.ended(flow, { up: 3, down: 4, durMs: 0, close: 'eof', requests: 2 });
  assert.deepEqual(await counter(metrics, 'tranproxy_connections_total'), [
    { listener: 'tcp4', outbound: 'reject', result: 'rejected-by-rule', value: 1 },
    { listener: 'tcp4', outbound: 'direct', result: 'eof', value: 1 },
  ]);
  assert.deepEqual(await counter(metrics, 'tranproxy_http_requests_injected_total'), [{ value: 2 }]);
});

test('refused lines: each reason with its own detail, counted by reason', async () => {
  const { lines, metrics, report } = capture();
  report.refused({ src: flow.src, reason: 'max-connections', limit: 100 });
  report.refused({ src: flow.src, dst: flow.dst, reason: 'loop' });
  report.refused({ src: flow.src, reason: 'resolve-failed', host: 'x.test', error: 'ENOTFOUND' });
  assert.deepEqual(lines, [
    'tranproxy WARN: refused src=10.0.0.2:40000 reason=max-connections limit=100\n',
    'tranproxy WARN: refused src=10.0.0.2:40000 dst=[2001:db8::1]:443 reason=loop\n',
    'tranproxy WARN: refused src=10.0.0.2:40000 reason=resolve-failed host=x.test error=ENOTFOUND\n',
  ]);
  assert.deepEqual(refusedFields({ reason: 'no-original-destination' }), { reason: 'no-original-destination' });
  assert.equal((await counter(metrics, 'tranproxy_connections_refused_total')).length, 3);
});

test('accept errors are counted each time but logged at most once a second', async () => {
  const { lines, metrics, report } = capture();
  report.acceptFailed('tcp4', 'EMFILE', 10_000);
  report.acceptFailed('tcp4', 'EMFILE', 10_500);
  report.acceptFailed('tcp4', 'EMFILE', 11_001);
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /accept failed listener=tcp4 error=EMFILE/);
  assert.deepEqual(await counter(metrics, 'tranproxy_connections_refused_total'), [
    { reason: 'accept-error', value: 3 },
  ]);
});

test('a reporter with FlowStats (proxy mode) puts ended flows in the Live totals, per node, and in recently closed', () => {
  const stats = new FlowStats();
  const report = new FlowReporter(
    createLogger('text', () => {}),
    undefined,
    stats,
  );
  report.ended(flow, { via: 'hk', up: 100, down: 2_000, durMs: 5, close: 'eof', inbound: 'socks5' });
  report.ended({ ...flow, id: 8 }, { via: 'direct', up: 1, down: 2, durMs: 1, close: 'connect-failed' });
  // A live proxy-mode flow's bytes come in as `extra` at snapshot time.
  const snap = stats.snapshot([{ up: 10, down: 20, node: 'hk' }], 0);
  assert.deepEqual(snap.moved, { up: 111, down: 2_022 });
  assert.deepEqual(snap.byNode, { hk: { up: 110, down: 2_020 }, direct: { up: 1, down: 2 } });
  assert.deepEqual(
    snap.closed.map((c) => [c.id, c.via, c.outcome, c.dst]),
    [
      [7, 'hk', 'eof', '[2001:db8::1]:443'],
      [8, 'direct', 'connect-failed', '[2001:db8::1]:443'],
    ],
  );
});

test('a batch of ended flows (engine records): the same lines and totals as one by one, one update per label set', async () => {
  const one = capture();
  const batch = capture();
  const ends = [
    { via: 'direct', up: 10, down: 20, durMs: 1, close: 'eof', requests: 2, relay: 'engine' as const },
    { via: 'direct', up: 5, down: 0, durMs: 2, close: 'eof', requests: 1, relay: 'engine' as const },
    { via: 'direct', up: 0, down: 0, durMs: 3, close: 'connect-failed', error: 'ECONNREFUSED' },
  ];
  for (const end of ends) one.report.ended(flow, end);
  let updates = 0;
  const inc = batch.metrics.total.inc.bind(batch.metrics.total);
  batch.metrics.total.inc = ((...a: Parameters<typeof inc>) => {
    updates++;
    return inc(...a);
  }) as typeof inc;
  batch.report.endedBatch((ended) => {
    for (const end of ends) ended(flow, end);
  });
  assert.deepEqual(batch.lines, one.lines);
  for (const name of ['tranproxy_connections_total', 'tranproxy_bytes_total', 'tranproxy_http_requests_injected_total'])
    assert.deepEqual(await counter(batch.metrics, name), await counter(one.metrics, name), name);
  assert.deepEqual(await counter(batch.metrics, 'tranproxy_bytes_total'), [
    { direction: 'up', value: 15 },
    { direction: 'down', value: 20 },
  ]);
  assert.equal(updates, 2, 'three flows, two label sets (eof, connect-failed): two counter updates');
});
