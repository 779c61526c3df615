import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LogRing } from '../../src/observe/log-ring.js';
import { createLogger } from '../../src/observe/log.js';
import { parseLogsQuery } from '../../src/console/logs-api.js';
import { ValidationError } from '../../src/console/document.js';

test('log ring: bounded by lines, oldest dropped, sequence numbers go on', () => {
  const ring = new LogRing(3, 1 << 20);
  for (let i = 1; i <= 5; i++) ring.push('info', `line ${i}`);
  assert.equal(ring.size, 3);
  assert.equal(ring.last, 5);
  const page = ring.read({ since: 0 });
  assert.deepEqual(
    page.entries.map((e) => [e.seq, e.text]),
    [
      [3, 'line 3'],
      [4, 'line 4'],
      [5, 'line 5'],
    ],
  );
  assert.equal(page.next, 5);
  // A reader that last saw line 1 missed line 2: it is told.
  assert.equal(ring.read({ since: 1 }).gap, true);
  assert.equal(ring.read({ since: 3 }).gap, false);
  assert.deepEqual(ring.read({ since: 5 }).entries, []);
});

test('log ring: bounded by bytes, whichever comes first; a huge line is cut, not kept whole', () => {
  const ring = new LogRing(1000, 4096);
  for (let i = 0; i < 100; i++) ring.push('info', 'x'.repeat(200));
  assert.ok(ring.byteSize <= 4096, `${ring.byteSize} bytes kept`);
  assert.ok(ring.size < 100 && ring.size > 10);
  ring.push('error', 'y'.repeat(100_000));
  assert.ok(ring.byteSize <= 4096 + 64 + 1100, `${ring.byteSize}`);
  assert.ok(ring.read({ since: 0, level: 'error' }).entries[0]!.text.length <= 1025);
  // Many more lines than the bound: memory stays put (the array is compacted).
  for (let i = 0; i < 50_000; i++) ring.push('info', `n${i}`);
  assert.equal(ring.read({ since: 0, limit: 2000 }).entries.at(-1)!.text, 'n49999');
  assert.ok((ring as unknown as { entries: unknown[] }).entries.length < 3000);
});

test('log ring: level and text filters, page limit, next continues after filtered lines', () => {
  const ring = new LogRing();
  ring.push('info', 'conn id=1 dst=10.0.0.1:80');
  ring.push('warn', 'refused reason=loop');
  ring.push('error', 'accept failed error=EMFILE');
  ring.push('info', 'conn id=2 dst=10.0.0.2:443');
  assert.deepEqual(
    ring.read({ since: 0, level: 'warn' }).entries.map((e) => e.level),
    ['warn', 'error'],
  );
  const q = ring.read({ since: 0, q: 'DST=10.0.0.2' });
  assert.deepEqual(
    q.entries.map((e) => e.seq),
    [4],
  );
  const first = ring.read({ since: 0, limit: 1 });
  assert.equal(first.entries.length, 1);
  assert.equal(first.next, 1);
  const none = ring.read({ since: 0, q: 'nothing like this' });
  assert.equal(none.next, 4, 'a filtered read still moves the cursor past what it looked at');
});

test('log ring: waitForMore wakes on a push, or times out', async () => {
  const ring = new LogRing();
  const t0 = Date.now();
  const woke = ring.waitForMore(5000);
  setTimeout(() => ring.push('info', 'hello'), 20);
  await woke;
  assert.ok(Date.now() - t0 < 2000);
  const t1 = Date.now();
  await ring.waitForMore(30);
  assert.ok(Date.now() - t1 >= 25);
});

test('the logger keeps every line in the ring as text, in both formats', () => {
  for (const format of ['text', 'json'] as const) {
    const ring = new LogRing();
    const log = createLogger(format, () => {}, ring);
    log.info('conn', { src: '10.0.0.1:5', close: 'eof' });
    log.warn('refused', { reason: 'a b' });
    assert.deepEqual(
      ring.read({ since: 0 }).entries.map((e) => [e.level, e.text]),
      [
        ['info', 'conn src=10.0.0.1:5 close=eof'],
        ['warn', 'refused reason="a b"'],
      ],
    );
  }
});

test('GET /api/logs query: defaults, bounds, clear errors', () => {
  assert.deepEqual(parseLogsQuery(new URLSearchParams('')), { since: 0, waitMs: 0, limit: 500 });
  assert.deepEqual(parseLogsQuery(new URLSearchParams('since=12&level=warn&q=conn&wait=999&limit=9999')), {
    since: 12,
    level: 'warn',
    q: 'conn',
    waitMs: 25_000,
    limit: 2000,
  });
  assert.throws(() => parseLogsQuery(new URLSearchParams('level=loud')), ValidationError);
  assert.throws(() => parseLogsQuery(new URLSearchParams('since=-1')), ValidationError);
  assert.throws(() => parseLogsQuery(new URLSearchParams(`q=${'a'.repeat(201)}`)), ValidationError);
});
