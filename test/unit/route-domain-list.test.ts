// The compact domain-list structures (packed name sets, keyword automaton) and the router
// built on them, checked against the plain implementation they replaced: arrays of entries,
// every rule tried in order (full: equal, suffix: equal or ends with '.'+suffix, keyword:
// includes).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  compileRules,
  KeywordSet,
  NameSet,
  NameSetBuilder,
  packedBytes,
  packRuleLists,
  parseDomainList,
  reviveRuleLists,
  type RouteQuery,
  type RuleSpec,
} from '../../src/route/index.js';

/** The rules as the data plane gets them: lists packed into bytes, references through JSON. */
function crossed(rules: RuleSpec[]): RuleSpec[] {
  const packed = packRuleLists(rules);
  return reviveRuleLists(JSON.parse(JSON.stringify(packed.rules)) as RuleSpec[], packedBytes(packed));
}

const flow = (domain: string | undefined, port = 443): RouteQuery => ({
  dst: { ip: '192.0.2.9', port, family: 4, ...(domain ? { domain } : {}) },
  src: '10.0.0.2',
  network: 'tcp',
});

interface PlainList {
  full: string[];
  suffix: string[];
  keyword: string[];
}

/** The reference: the old matcher, entry by entry. */
function plainMatches(l: PlainList, name: string): boolean {
  return (
    l.full.includes(name) ||
    l.suffix.some((s) => name === s || name.endsWith(`.${s}`)) ||
    l.keyword.some((k) => name.includes(k))
  );
}

function listText(l: PlainList): string {
  return [
    ...l.full.map((v) => `full:${v}`),
    ...l.suffix.map((v, i) => (i % 2 ? `domain:${v}` : v)),
    ...l.keyword.map((v) => `keyword:${v}`),
  ].join('\n');
}

// A small alphabet so that generated names and entries collide often.
const label = fc.constantFrom('a', 'b', 'ab', 'ba', 'c', 'cdn', 'x1');
const name = fc.array(label, { minLength: 1, maxLength: 4 }).map((ls) => ls.join('.'));
const keyword = fc.constantFrom('a', 'b.a', 'cd', 'x', 'n.x', 'ab.c', 'zz');
const plainList = fc.record({
  full: fc.array(name, { maxLength: 6 }),
  suffix: fc.array(name, { maxLength: 6 }),
  keyword: fc.array(keyword, { maxLength: 3 }),
});

test('NameSet: membership of whole names and of a name from an offset, duplicates kept once', () => {
  const b = new NameSetBuilder();
  for (const n of ['example.com', 'a.example.com', 'example.com', 'x']) b.add(n);
  const s = b.build();
  assert.equal(s.size, 3);
  assert.deepEqual(s.names(), ['example.com', 'a.example.com', 'x']);
  assert.ok(s.has('example.com'));
  assert.ok(s.has('www.example.com', 4), 'from the second label');
  assert.ok(!s.has('www.example.com', 3), '.example.com is not example.com');
  assert.ok(!s.has('example.co'));
  assert.ok(!s.has('xx'));
  assert.ok(!NameSet.EMPTY.has('x'));
});

test('NameSet: used from its arrays as they are over many names; arrays that do not fit are refused', () => {
  const b = new NameSetBuilder();
  for (let i = 0; i < 5000; i++) b.add(`n${i}.example${i % 7}.org`);
  const [bytes, ends, slots] = b.build().arrays();
  const s = NameSet.fromArrays(bytes.slice(), ends.slice(), slots.slice());
  assert.equal(s.size, 5000);
  for (let i = 0; i < 5000; i += 97) assert.ok(s.has(`n${i}.example${i % 7}.org`));
  assert.ok(!s.has('n5000.example2.org'));
  assert.equal(NameSet.fromArrays(new Uint8Array(0), new Uint32Array(0), new Int32Array(16)).size, 0);
  assert.throws(() => NameSet.fromArrays(bytes, ends, slots.subarray(1)), /do not fit/);
  assert.throws(() => NameSet.fromArrays(bytes.subarray(0, 10), ends, slots), /do not fit/);
});

test('KeywordSet: contains-any agrees with String.includes (property)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.stringMatching(/^[ab.]{1,4}$/), { minLength: 1, maxLength: 8 }),
      fc.stringMatching(/^[abc.]{0,16}$/),
      (kws, n) => {
        assert.equal(
          KeywordSet.of(kws).matches(n),
          kws.some((k) => n.includes(k)),
          `${JSON.stringify(kws)} in '${n}'`,
        );
      },
    ),
    { numRuns: 500 },
  );
});

test('domain list: one list agrees with the plain matcher (property)', () => {
  fc.assert(
    fc.property(plainList, fc.array(name, { minLength: 1, maxLength: 8 }), (l, names) => {
      const dl = parseDomainList(listText(l), 'gen.txt');
      for (const n of names) assert.equal(dl.matches(n), plainMatches(l, n), `${n} in ${listText(l)}`);
    }),
    { numRuns: 300 },
  );
});

test('router: first match wins across lists, inline entries and ports, like the plain router (property)', () => {
  const rule = fc.record({
    inline: fc.option(
      fc.record({
        full: fc.array(name, { maxLength: 2 }),
        suffix: fc.array(name, { maxLength: 2 }),
        keyword: fc.array(keyword, { maxLength: 1 }),
      }),
      { nil: undefined },
    ),
    lists: fc.array(plainList, { maxLength: 2 }),
    port: fc.option(fc.constantFrom(80, 443), { nil: undefined }),
  });
  fc.assert(
    fc.property(
      fc.array(rule, { minLength: 1, maxLength: 5 }),
      fc.array(fc.tuple(fc.option(name, { nil: undefined }), fc.constantFrom(80, 443)), { minLength: 1, maxLength: 6 }),
      (rules, flows) => {
        const specs: RuleSpec[] = [];
        const plain: { lists: PlainList[]; port?: number; domain: boolean }[] = [];
        rules.forEach((r, i) => {
          const lists = [...(r.inline ? [r.inline] : []), ...r.lists];
          const entries = lists.reduce((n, l) => n + l.full.length + l.suffix.length + l.keyword.length, 0);
          if (entries === 0 && r.port === undefined) return; // no matcher: compileRules refuses it
          const hasDomain = r.inline !== undefined || r.lists.length > 0;
          if (hasDomain && entries === 0) return; // a domain group with no entries is refused too
          specs.push({
            ...(r.inline
              ? { domain: r.inline.full, domainSuffix: r.inline.suffix, domainKeyword: r.inline.keyword }
              : {}),
            ...(r.lists.length
              ? { domainList: r.lists.map((l, j) => parseDomainList(listText(l), `r${i}-${j}.txt`)) }
              : {}),
            ...(r.port !== undefined ? { port: r.port } : {}),
            outbound: `o${i}`,
          });
          plain.push({ lists, ...(r.port !== undefined ? { port: r.port } : {}), domain: hasDomain });
        });
        const outs = specs.map((s) => s.outbound);
        const direct = compileRules(specs, 'direct', outs);
        // The data plane's copy: lists packed into bytes and used from them.
        const revived = compileRules(crossed(specs), 'direct', outs);
        for (const [n, port] of flows) {
          const want = plain.findIndex(
            (p) =>
              (p.port === undefined || p.port === port) &&
              (!p.domain || (n !== undefined && p.lists.some((l) => plainMatches(l, n)))),
          );
          const expected =
            want < 0 ? { action: 'direct', rule: 'default' } : { action: specs[want]!.outbound, rule: want };
          assert.deepEqual(direct.route(flow(n, port)), expected, `${n}:${port}`);
          assert.deepEqual(revived.route(flow(n, port)), expected, `revived ${n}:${port}`);
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('router: suffix, full and keyword semantics of a list; case and trailing dot of the flow name', () => {
  const dl = parseDomainList('full:www.example.com\nexample.org\nkeyword:track\n', 'l.txt');
  const r = compileRules(
    [
      { domainList: dl, port: 443, outbound: 'a' },
      { domainList: dl, outbound: 'b' },
    ],
    'direct',
    ['a', 'b'],
  );
  assert.deepEqual(r.route(flow('WWW.Example.COM.')), { action: 'a', rule: 0 });
  assert.deepEqual(
    r.route(flow('www.example.com', 80)),
    { action: 'b', rule: 1 },
    'the port fails rule 0; rule 1 matches the same list',
  );
  assert.equal(r.route(flow('example.com')).action, 'direct', 'full: is not a suffix');
  assert.equal(r.route(flow('a.www.example.com')).action, 'direct', 'full: matches no name below');
  assert.equal(r.route(flow('deep.sub.example.org')).action, 'a');
  assert.equal(r.route(flow('notexample.org')).action, 'direct', 'a suffix matches at label boundaries only');
  assert.equal(r.route(flow('cdn.tracker.net')).action, 'a');
  assert.equal(r.route(flow(undefined)).action, 'direct', 'no name: no domain rule');
});

test('router: a list shared by rules is packed once and used from the bytes once', () => {
  const dl = parseDomainList('a.example\n', 'l.txt');
  const packed = packRuleLists([
    { domainList: dl, outbound: 'x' },
    { domainList: [dl], outbound: 'y' },
  ]);
  assert.equal(packed.length, packRuleLists([{ domainList: dl, outbound: 'x' }]).length, 'packed once');
  const rules = crossed([
    { domainList: dl, outbound: 'x' },
    { domainList: [dl], outbound: 'y' },
  ]);
  assert.equal(
    [rules[0]!.domainList].flat()[0],
    [rules[1]!.domainList].flat()[0],
    'both rules share one unpacked list',
  );
});

test('a big generated list (200,000 lines, every line form): suffix, exact and keyword lookups agree with sets, also packed for the data plane', () => {
  let seed = 7;
  const rnd = (n: number) => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n;
  const word = () => (rnd(36 ** 5) + 36 ** 4).toString(36);
  const full = new Set<string>();
  const suffix = new Set<string>();
  const keywords: string[] = [];
  const lines: string[] = [];
  for (let i = 0; i < 200_000; i++) {
    const d = `${word()}${i}.${['com', 'net', 'cn'][i % 3]}`;
    const form = rnd(100);
    if (form < 45) suffix.add(d), lines.push(d);
    else if (form < 65) suffix.add(d), lines.push(`domain:${d}`);
    else if (form < 85) full.add(`www.${d}`), lines.push(`full:www.${d}`);
    else if (form < 86 && i % 10 === 0) keywords.push(`kw${i}x`), lines.push(`keyword:kw${i}x`);
    // The slow path: case, trailing dot, leading dot, CRLF, comments, attributes.
    else if (form < 90) suffix.add(d), lines.push(d.toUpperCase());
    else if (form < 93) full.add(`a.${d}`), lines.push(`full:a.${d}.`);
    else if (form < 95) suffix.add(d), lines.push(`domain:.${d}\r`);
    else if (form < 97) suffix.add(d), lines.push(`${d} @ads # why`);
    else lines.push(`# ${d}`, '');
  }
  const dl = parseDomainList(lines.join('\n'), 'big.txt');
  assert.equal(dl.size, full.size + suffix.size + keywords.length);
  const expected = (n: string) => {
    if (full.has(n)) return true;
    for (let at = 0; at >= 0; at = n.indexOf('.', at) + 1 || -1) if (suffix.has(n.slice(at))) return true;
    return keywords.some((k) => n.includes(k));
  };
  const probes: string[] = [];
  for (const s of [...suffix].slice(0, 6_000)) probes.push(s, `x.${s}`, `x${s}`, s.slice(0, s.indexOf('.')));
  for (const f of [...full].slice(0, 6_000)) probes.push(f, `x.${f}`, f.slice(f.indexOf('.') + 1));
  for (const k of keywords.slice(0, 300)) probes.push(`a${k}b.org`, `${k.slice(0, -1)}.org`);
  const rules = crossed([{ domainList: dl, outbound: 'reject' }]);
  const router = compileRules(rules, 'direct', []);
  let hits = 0;
  for (const p of probes) {
    const want = expected(p);
    hits += want ? 1 : 0;
    assert.equal(dl.matches(p), want, p);
    assert.equal(router.route(flow(p)).action, want ? 'reject' : 'direct', `${p} packed for the data plane`);
  }
  assert.ok(hits > 10_000 && hits < probes.length - 10_000, `both answers are tested (${hits} of ${probes.length})`);
});
