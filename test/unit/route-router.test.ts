// Rule engine: every matcher, combinations, order, defaults, errors, and speed with
// thousands of entries.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  CidrSet,
  compileRules,
  ipv4ToNumber,
  parseDomainList,
  parseFlowIp,
  PortSet,
  RuleError,
  type RouteQuery,
  type RuleSpec,
} from '../../src/route/index.js';
import { UsageError } from '../../src/errors.js';

function flow(
  ip: string,
  port: number,
  domain?: string,
  src = '192.168.1.10',
  network: 'tcp' | 'udp' = 'tcp',
): RouteQuery {
  return { dst: { ip, port, family: ip.includes(':') ? 6 : 4, ...(domain ? { domain } : {}) }, src, network };
}

const NODES = ['node-a', 'node-b'];

test('domain suffix: the name itself and names below it, not look-alikes', () => {
  const r = compileRules([{ domainSuffix: 'example.com', outbound: 'node-a' }], 'direct', NODES);
  assert.deepEqual(r.route(flow('1.1.1.1', 443, 'example.com')), { action: 'node-a', rule: 0 });
  assert.deepEqual(r.route(flow('1.1.1.1', 443, 'a.b.example.com')), { action: 'node-a', rule: 0 });
  assert.deepEqual(r.route(flow('1.1.1.1', 443, 'A.Example.COM.')), { action: 'node-a', rule: 0 });
  assert.deepEqual(r.route(flow('1.1.1.1', 443, 'badexample.com')), { action: 'direct', rule: 'default' });
  assert.deepEqual(r.route(flow('1.1.1.1', 443, 'example.com.evil')), { action: 'direct', rule: 'default' });
  assert.deepEqual(r.route(flow('1.1.1.1', 443)), { action: 'direct', rule: 'default' });
  // A leading dot means the same.
  const dot = compileRules([{ domainSuffix: ['.Example.org.'], outbound: 'reject' }], 'direct', []);
  assert.equal(dot.route(flow('1.1.1.1', 80, 'www.example.org')).action, 'reject');
});

test('domain exact and keyword', () => {
  const r = compileRules(
    [
      { domain: ['www.example.com'], outbound: 'node-a' },
      { domainKeyword: ['track'], outbound: 'reject' },
    ],
    'direct',
    NODES,
  );
  assert.equal(r.route(flow('1.1.1.1', 443, 'www.example.com')).action, 'node-a');
  assert.equal(r.route(flow('1.1.1.1', 443, 'a.www.example.com')).action, 'direct');
  assert.equal(r.route(flow('1.1.1.1', 443, 'example.com')).action, 'direct');
  assert.deepEqual(r.route(flow('1.1.1.1', 443, 'ads.tracker.net')), { action: 'reject', rule: 1 });
});

test('destination CIDR v4/v6, source CIDR, IPv4-mapped addresses', () => {
  const r = compileRules(
    [
      { cidr: ['10.0.0.0/8', 'fd00::/8', '203.0.113.7'], outbound: 'direct' },
      { sourceCidr: '192.168.50.0/24', outbound: 'node-b' },
      { cidr: '::/0', outbound: 'node-a' },
    ],
    'reject',
    NODES,
  );
  assert.deepEqual(r.route(flow('10.255.0.1', 80)), { action: 'direct', rule: 0 });
  assert.deepEqual(r.route(flow('::ffff:10.1.2.3', 80)), { action: 'direct', rule: 0 });
  assert.deepEqual(r.route(flow('fd12:3456::1', 80)), { action: 'direct', rule: 0 });
  assert.deepEqual(r.route(flow('203.0.113.7', 80)), { action: 'direct', rule: 0 });
  assert.deepEqual(r.route(flow('203.0.113.8', 80)), { action: 'reject', rule: 'default' });
  assert.deepEqual(r.route(flow('8.8.8.8', 53, undefined, '192.168.50.9')), { action: 'node-b', rule: 1 });
  assert.deepEqual(r.route(flow('8.8.8.8', 53, undefined, '::ffff:192.168.50.9')), { action: 'node-b', rule: 1 });
  assert.deepEqual(r.route(flow('2001:db8::1', 443)), { action: 'node-a', rule: 2 });
  assert.deepEqual(r.route(flow('fe80::1%eth0', 443)), { action: 'node-a', rule: 2 });
  assert.deepEqual(r.route(flow('not-an-ip', 443)), { action: 'reject', rule: 'default' });
});

test('ports, ranges, network, and combined matchers (all must match)', () => {
  const rules: RuleSpec[] = [
    { domainSuffix: 'corp.example', port: [443, '8443'], outbound: 'node-a' },
    { port: '8000-8100', network: 'udp', outbound: 'node-b' },
    { port: { from: 25, to: 25 }, outbound: 'reject' },
    { cidr: '10.0.0.0/8', sourceCidr: '192.168.1.0/24', port: 22, outbound: 'direct' },
  ];
  const r = compileRules(rules, 'node-b', NODES);
  assert.deepEqual(r.route(flow('1.2.3.4', 443, 'git.corp.example')), { action: 'node-a', rule: 0 });
  assert.deepEqual(r.route(flow('1.2.3.4', 8443, 'corp.example')), { action: 'node-a', rule: 0 });
  assert.deepEqual(r.route(flow('1.2.3.4', 80, 'git.corp.example')), { action: 'node-b', rule: 'default' });
  assert.deepEqual(r.route(flow('1.2.3.4', 8050, undefined, '192.168.1.10', 'udp')), { action: 'node-b', rule: 1 });
  assert.deepEqual(r.route(flow('1.2.3.4', 8050, undefined, '192.168.1.10', 'tcp')), {
    action: 'node-b',
    rule: 'default',
  });
  assert.deepEqual(r.route(flow('1.2.3.4', 8101, undefined, '192.168.1.10', 'udp')), {
    action: 'node-b',
    rule: 'default',
  });
  assert.deepEqual(r.route(flow('1.2.3.4', 25)), { action: 'reject', rule: 2 });
  assert.deepEqual(r.route(flow('10.0.0.5', 22, undefined, '192.168.1.77')), { action: 'direct', rule: 3 });
  assert.deepEqual(r.route(flow('10.0.0.5', 22, undefined, '192.168.2.77')), { action: 'node-b', rule: 'default' });
});

test('first match wins across domain and non-domain rules', () => {
  const r = compileRules(
    [
      { port: 443, network: 'udp', outbound: 'reject' },
      { domainKeyword: 'exam', outbound: 'node-b' },
      { cidr: '0.0.0.0/0', outbound: 'direct' },
      { domainSuffix: 'example.com', outbound: 'node-a' },
      { domain: 'www.example.com', outbound: 'node-a' },
    ],
    'reject',
    NODES,
  );
  assert.deepEqual(r.route(flow('1.1.1.1', 443, 'www.example.com', '10.0.0.1', 'udp')), { action: 'reject', rule: 0 });
  assert.deepEqual(r.route(flow('1.1.1.1', 443, 'www.example.com')), { action: 'node-b', rule: 1 });
  assert.deepEqual(r.route(flow('1.1.1.1', 443, 'other.net')), { action: 'direct', rule: 2 });
  const later = compileRules(
    [
      { domainSuffix: 'example.com', port: 80, outbound: 'node-b' },
      { domain: 'www.example.com', outbound: 'node-a' },
      { domainSuffix: ['com', 'example.com'], outbound: 'reject' },
    ],
    'direct',
    NODES,
  );
  assert.deepEqual(later.route(flow('1.1.1.1', 443, 'www.example.com')), { action: 'node-a', rule: 1 });
  assert.deepEqual(later.route(flow('1.1.1.1', 80, 'www.example.com')), { action: 'node-b', rule: 0 });
  assert.deepEqual(later.route(flow('1.1.1.1', 443, 'x.example.com')), { action: 'reject', rule: 2 });
});

test('domain list files', () => {
  const text = [
    '# ads',
    'doubleclick.net',
    'domain:Ads.Example   # inline comment',
    'full:exact.example',
    'keyword:tracker',
    'cn.example @cn @ads',
    '',
    '   ',
  ].join('\n');
  const dl = parseDomainList(text, 'lists/ads.txt');
  assert.equal(dl.source, 'lists/ads.txt');
  assert.deepEqual(dl.entries(), {
    full: ['exact.example'],
    suffix: ['doubleclick.net', 'ads.example', 'cn.example'],
    keyword: ['tracker'],
  });
  const r = compileRules([{ domainList: dl, outbound: 'reject' }], 'direct', []);
  for (const d of [
    'doubleclick.net',
    'x.doubleclick.net',
    'ads.example',
    'exact.example',
    'my-tracker.io',
    'a.cn.example',
  ]) {
    assert.deepEqual(r.route(flow('1.1.1.1', 443, d)), { action: 'reject', rule: 0 }, d);
  }
  for (const d of ['sub.exact.example', 'notdoubleclick.net', 'example'])
    assert.equal(r.route(flow('1.1.1.1', 443, d)).action, 'direct', d);
  // Errors name the file and line, never the line's text (a list path may point at a secret).
  assert.throws(
    () => parseDomainList('ok.example\nregexp:^ads\\.', 'l.txt'),
    (e: Error) =>
      e.message === 'l.txt:2: not a domain list entry: use full:NAME, domain:NAME, keyword:WORD or a bare name',
  );
  assert.throws(
    () => parseDomainList('\n\nfull:a b', 'l.txt'),
    (e: Error) => e.message === 'l.txt:3: not a domain name',
  );
  assert.throws(
    () => parseDomainList('root:$y$j9T$secret:19000:0:99999:7:::', 'shadow'),
    (e: Error) => !/root|secret|\$y/.test(e.message),
  );
  assert.throws(() => parseDomainList('*.example.com', 'l.txt'), /l\.txt:1: .*no wildcards/);
});

test('errors name the rule and field', () => {
  const err = (rules: RuleSpec[], def = 'direct') => {
    try {
      compileRules(rules, def, NODES);
    } catch (e) {
      return e as RuleError;
    }
    assert.fail('no error');
  };
  let e = err([
    { port: 80, outbound: 'direct' },
    { cidr: '10.0.0.0/8', outbound: 'node-c' },
  ]);
  assert.ok(e instanceof RuleError && e instanceof UsageError);
  assert.equal(e.rule, 1);
  assert.equal(e.field, 'outbound');
  assert.equal(
    e.message,
    "rules[1].outbound: unknown outbound 'node-c' (known: direct, reject, node-a, node-b); did you mean 'node-a'?",
  );
  e = err([{ cidr: '10.0.0.0/33', outbound: 'direct' }]);
  assert.equal(e.field, 'cidr');
  assert.match(e.message, /^rules\[0\]\.cidr: invalid CIDR '10\.0\.0\.0\/33'/);
  e = err([{ port: '70000', outbound: 'direct' }]);
  assert.equal(e.message, "rules[0].port: '70000' is not a port: use a number from 1 to 65535");
  e = err([{ sourceCidr: [], outbound: 'direct' }]);
  assert.equal(e.message, 'rules[0].source-cidr: empty list');
  e = err([{ domainSuffix: 'bad name', outbound: 'direct', name: 'tranproxy.yaml:12' }]);
  assert.equal(e.message, "tranproxy.yaml:12.domain-suffix: 'bad name' is not a domain name");
  e = err([{ network: 'icmp' as 'tcp', outbound: 'direct' }]);
  assert.equal(e.field, 'network');
  e = err([{ outbound: 'direct' }]);
  assert.match(e.message, /^rules\[0\]: no matcher/);
  e = err([{ domain: [], outbound: 'direct' }]);
  assert.match(e.message, /could never match/);
  assert.throws(
    () => compileRules([], 'hk1', ['hk']),
    /^UsageError: default: unknown outbound 'hk1' \(known: direct, reject, hk\); did you mean 'hk'\?$/,
  );
});

test('CidrSet, PortSet, address parsing', () => {
  assert.equal(ipv4ToNumber('255.255.255.255'), 0xffffffff);
  assert.equal(ipv4ToNumber('1.2.3.4'), 0x01020304);
  for (const bad of ['1.2.3', '1.2.3.4.5', '256.1.1.1', '1..2.3', '1.2.3.4 ', '', '1.2.3.0004'])
    assert.equal(ipv4ToNumber(bad), -1, bad);
  assert.deepEqual(parseFlowIp('::ffff:1.2.3.4'), { v4: 0x01020304 });
  assert.deepEqual(parseFlowIp('::1'), { v6: 1n });
  assert.equal(parseFlowIp('nope'), null);
  const set = new CidrSet([
    '10.0.0.0/24',
    '10.0.1.0/24',
    '10.0.0.128/25',
    '0.0.0.0/32',
    '2001:db8::/32',
    '2001:db9::/32',
  ]);
  assert.ok(set.has(parseFlowIp('10.0.1.255')));
  assert.ok(!set.has(parseFlowIp('10.0.2.0')));
  assert.ok(set.has(parseFlowIp('0.0.0.0')));
  assert.ok(!set.has(parseFlowIp('0.0.0.1')));
  assert.ok(set.has(parseFlowIp('2001:db9:ffff::1')));
  assert.ok(!set.has(parseFlowIp('2001:dba::')));
  assert.ok(!set.has(null));
  const all = new CidrSet(['0.0.0.0/0', '::/0']);
  assert.ok(all.has(parseFlowIp('255.255.255.255')) && all.has(parseFlowIp('ffff::1')));
  const ports = new PortSet([
    { from: 80, to: 80 },
    { from: 8000, to: 8100 },
    { from: 81, to: 81 },
  ]);
  assert.deepEqual(
    [79, 80, 81, 82, 7999, 8000, 8100, 8101].map((p) => ports.has(p)),
    [false, true, true, false, false, true, true, false],
  );
});

test('fast with thousands of suffix entries and CIDRs', (t) => {
  const suffixes = Array.from({ length: 20_000 }, (_, i) => `site${i}.example${i % 50}.com`);
  const cidrs = Array.from({ length: 5_000 }, (_, i) => `${10 + (i >> 8)}.${i & 255}.0.0/16`);
  const manyRules: RuleSpec[] = Array.from({ length: 2_000 }, (_, i) => ({
    domainSuffix: `r${i}.rules.example`,
    outbound: 'node-b',
  }));
  const t0 = performance.now();
  const r = compileRules(
    [
      ...manyRules,
      { domainList: parseDomainList(suffixes.join('\n'), 'big.txt'), outbound: 'node-a' },
      { cidr: cidrs, outbound: 'direct' },
      { domainSuffix: 'com', port: 443, outbound: 'reject' },
    ],
    'node-b',
    NODES,
  );
  const compileMs = performance.now() - t0;
  const t1 = performance.now();
  const N = 200_000;
  let hits = 0;
  for (let i = 0; i < N; i++) {
    const d =
      i % 3 === 0
        ? `www.site${i % 20_000}.example${(i % 20_000) % 50}.com`
        : i % 3 === 1
          ? `x${i}.unknown.org`
          : undefined;
    const res = r.route(flow(`${10 + ((i >> 8) & 15)}.${i & 255}.1.1`, i % 2 ? 443 : 80, d));
    if (res.action === 'node-a') hits++;
  }
  const perRouteUs = ((performance.now() - t1) * 1000) / N;
  assert.equal(hits, Math.ceil(N / 3));
  assert.deepEqual(r.route(flow('1.1.1.1', 443, 'r1999.rules.example')), { action: 'node-b', rule: 1999 });
  assert.deepEqual(r.route(flow('99.1.1.1', 443, 'unlisted.com')), { action: 'reject', rule: 2002 });
  assert.ok(compileMs < 2000, `compile took ${compileMs} ms`);
  assert.ok(perRouteUs < 20, `route took ${perRouteUs.toFixed(2)} µs`);
  t.diagnostic(`compile ${compileMs.toFixed(0)} ms, route ${perRouteUs.toFixed(2)} µs`);
});
