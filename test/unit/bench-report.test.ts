import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { haproxyRedirect, nginxSeed } from '../../bench/lib/configs.js';
import { memOf, smapsRollup } from '../../bench/lib/proc.js';
import {
  GENERATED_BEGIN,
  GENERATED_END,
  addBestOf,
  medianOf,
  newCase,
  record,
  replaceGenerated,
} from '../../bench/lib/report.js';

test('addBestOf: per metric, the variant with the better median (higher or lower is better)', () => {
  const c = newCase({ id: 'x', title: 'x', method: [], variants: [], subject: 's', anchors: ['best'] }, [
    { key: 'gbps', label: 'Gbit/s', better: 'higher' },
    { key: 'mb', label: 'MB', better: 'lower' },
  ]);
  c.variants.push({ key: 'h', label: 'HAProxy', detail: '' }, { key: 'hs', label: 'HAProxy, splice', detail: '' });
  for (const [round, h, hs] of [
    [1, 4, 5],
    [2, 4, 6],
    [3, 4, 1],
  ] as const) {
    record(c, 'gbps', 'h', round, h);
    record(c, 'gbps', 'hs', round, hs);
    record(c, 'mb', 'h', round, 10 + round);
    record(c, 'mb', 'hs', round, 20 + round);
  }
  addBestOf(c, 'best', 'best HAProxy', ['h', 'hs']);
  assert.equal(medianOf(c, 'gbps', 'best'), 5); // the splicing variant's median (5) beats 4
  assert.equal(medianOf(c, 'mb', 'best'), 12); // default threads' median (12) beats 22
  const best = c.variants.find((v) => v.key === 'best');
  assert.match(best?.detail ?? '', /Gbit\/s: HAProxy, splice; MB: HAProxy\b/);
});

test('smapsRollup: RSS, PSS and anonymous memory of a live process; memOf sums them', () => {
  const keep = Buffer.alloc(32 << 20, 1); // 32 MiB of touched anonymous memory
  const m = smapsRollup(process.pid);
  assert.ok(m.anon >= 32 << 10, `anon ${m.anon} kB`);
  assert.ok(m.rss >= m.anon && m.rss >= m.pss && m.pss > 0, JSON.stringify(m));
  const twice = memOf([process.pid, process.pid]);
  assert.ok(twice.anon >= 2 * (32 << 10));
  assert.deepEqual(smapsRollup(2 ** 30), { rss: 0, pss: 0, anon: 0 }); // no such process
  assert.equal(keep[0], 1);
});

test('anchors at their best: HAProxy without nbthread 1, a variant that splices both ways with bounded pipes; nginx worker_processes auto', () => {
  const plain = haproxyRedirect(15002, 9000);
  assert.doesNotMatch(plain, /nbthread/);
  assert.doesNotMatch(plain, /splice/);
  const splice = haproxyRedirect(15002, 9000, { splice: true });
  assert.match(splice, /option splice-request\n\s+option splice-response/);
  assert.match(splice, /maxpipes 900/);
  assert.match(nginxSeed('/tmp/x', 15004, 80, '127.0.0.1'), /^worker_processes auto;/);
});

test('replaceGenerated: a run replaces only the part between the markers; hand-written text after the end marker stays', () => {
  const first = replaceGenerated(undefined, '# results\n\nrun 1\n');
  assert.equal(first, `${GENERATED_BEGIN}\n# results\n\nrun 1\n\n${GENERATED_END}\n`);
  const edited = `${first}\n## Analysis (hand-written)\n\nrun 1 was slow\n`;
  const second = replaceGenerated(edited, '# results\n\nrun 2\n');
  assert.equal(
    second,
    `${GENERATED_BEGIN}\n# results\n\nrun 2\n\n${GENERATED_END}\n\n## Analysis (hand-written)\n\nrun 1 was slow\n`,
  );
  assert.doesNotMatch(second, /run 1\n\n/); // the old generated part is gone
  assert.equal(replaceGenerated(second, '# results\n\nrun 2\n'), second); // a rerun changes nothing else
  const withPreface = `note above\n${second}`;
  assert.equal(replaceGenerated(withPreface, '# results\n\nrun 3'), withPreface.replace('run 2', 'run 3'));
});

test('replaceGenerated: a file without both markers in order is kept whole below the new generated part', () => {
  const old = '# tranproxy benchmarks\n\nold table\n\n## Earlier hand-written sections\n\nanalysis\n';
  const out = replaceGenerated(old, '# tranproxy benchmarks\n\nnew table\n');
  assert.ok(out.startsWith(`${GENERATED_BEGIN}\n# tranproxy benchmarks\n\nnew table\n\n${GENERATED_END}\n`));
  assert.ok(out.endsWith(`\n${old}`));
  // The next run then replaces only its own part and keeps the old file's text.
  const next = replaceGenerated(out, 'newer table');
  assert.match(next, /newer table/);
  assert.doesNotMatch(next, /new table/);
  assert.ok(next.endsWith(`\n${old}`));
  for (const broken of [`${GENERATED_END}\nx\n${GENERATED_BEGIN}\n`, `${GENERATED_BEGIN}\nno end\n`]) {
    assert.ok(replaceGenerated(broken, 'g').endsWith(`\n${broken}`), broken); // markers out of order: nothing dropped
  }
});
