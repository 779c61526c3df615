// The YAML config file: a full example, broken files with exact FILE:LINE:COL messages,
// and the hand-off to runConfigOf and compileRules.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfigFile, parseConfigText } from '../../src/config/file.js';
import { runConfigOf, type HostFacts } from '../../src/config/run-config.js';
import { capturePlanOf } from '../../src/config/capture-plan.js';
import { UsageError } from '../../src/errors.js';
import { compileRules, type DomainList } from '../../src/route/index.js';

const DIR = 'test/fixtures/config';
const FACTS: HostFacts = {
  podAddress: () => '10.1.2.3',
  hostname: () => 'gw1',
  resolvConf: () =>
    ({ nameservers: ['127.0.0.53'], search: [], ndots: 1 }) as unknown as ReturnType<HostFacts['resolvConf']>,
};

/** The message lines of the ConfigError that loading `name` throws. */
function errorsOf(name: string): string[] {
  try {
    loadConfigFile(join(DIR, name));
  } catch (e) {
    assert.ok(e instanceof ConfigError && e instanceof UsageError, String(e));
    assert.equal(e.exitCode, 2);
    return e.message.split('\n');
  }
  assert.fail(`${name} loaded without error`);
}

function textErrors(text: string, opts = {}): string[] {
  try {
    parseConfigText(text, 'tranproxy.yaml', opts);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.message.split('\n');
  }
  assert.fail('parsed without error');
}

test('full example: every section, handed on to runConfigOf and compileRules', () => {
  const cfg = loadConfigFile(join(DIR, 'full.yaml'));
  assert.equal(cfg.path, join(DIR, 'full.yaml'));
  // Typed straight from the file: nothing is turned back into flag text.
  assert.deepEqual(cfg.run.port, [
    { from: 80, to: 80 },
    { from: 443, to: 443 },
    { from: 8000, to: 8100 },
  ]);
  assert.deepEqual(cfg.run.excludePort, [{ from: 22, to: 22 }]);
  assert.deepEqual(cfg.run.header, [
    { name: 'X-Team', value: 'payments' },
    { name: 'X-Env', value: 'staging' },
    { name: 'X-Build', value: '42' },
  ]);
  assert.deepEqual(cfg.run.bypassMark, { mark: 1337, mask: 0xffffffff }); // YAML reads 0x539 as a number
  assert.deepEqual(cfg.run.tproxyMark, { mark: 0x1e7, mask: 0xffffffff });
  assert.equal(cfg.run.setForwardedFor, 'default');
  assert.equal(Object.getPrototypeOf(cfg.nodes), null, 'node names are keys of a null-prototype map');
  assert.deepEqual(
    { ...cfg.nodes },
    {
      'node-a': { uri: 'socks5://user:pass@203.0.113.10:1080' },
      'node-b': { uri: 'ss://aes-256-gcm:secret@203.0.113.11:8388#b', connectTimeoutMs: 3000, udp: true },
      corp: { uri: 'http://proxy.corp.example:3128' },
    },
  );
  assert.equal(cfg.default, 'node-a');
  assert.equal(cfg.defaultGiven, true);
  assert.deepEqual(cfg.dns, {
    listen: { host: '127.0.0.1', port: 5353 },
    nameservers: [
      { host: '1.1.1.1', port: 53 },
      { host: '2606:4700:4700::1111', port: 53 },
      { host: '8.8.8.8', port: 53 },
    ],
    via: 'node-a',
    cache: true,
    fakeIp: { enabled: true, range: '198.18.0.0/15' },
  });
  assert.deepEqual(cfg.rules[1], { outbound: 'corp', domainSuffix: ['corp.example', 'internal.example'] });
  assert.deepEqual(cfg.rules[0]!.domainList, ['lists/ads.txt']);

  const run = runConfigOf(cfg.run, [], FACTS);
  assert.equal(run.mode, 'tproxy');
  assert.deepEqual(run.capture, ['prerouting']);
  assert.deepEqual(run.ports, [
    { from: 80, to: 80 },
    { from: 443, to: 443 },
    { from: 8000, to: 8100 },
  ]);
  assert.equal(run.connectTimeoutMs, 5000);
  assert.equal(run.bypassMark, 0x539);
  assert.equal(run.proxyUser, undefined);
  assert.deepEqual(run.inject?.forwardedFor, { value: '10.1.2.3', mode: 'append' });
  assert.deepEqual(
    run.inject?.headers.map((h) => `${h.name}=${h.value}`),
    ['X-Team=payments', 'X-Env=staging', 'X-Build=42', 'X-Client-Hostname=gw1'],
  );
  assert.deepEqual(run.resolver.nameservers, ['1.1.1.1', '2606:4700:4700::1111']);

  const router = compileRules(cfg.routeRules, cfg.default, Object.keys(cfg.nodes));
  const go = (
    domain: string | undefined,
    ip = '93.184.216.34',
    port = 443,
    src = '192.168.1.20',
    network: 'tcp' | 'udp' = 'tcp',
  ) => router.route({ dst: { ip, port, family: 4, ...(domain ? { domain } : {}) }, src, network });
  assert.deepEqual(go('x.doubleclick.net'), { action: 'reject', rule: 0 }); // from lists/ads.txt
  assert.deepEqual(go('my-tracker.io'), { action: 'reject', rule: 0 });
  assert.deepEqual(go('git.corp.example'), { action: 'corp', rule: 1 });
  assert.deepEqual(go('live.streaming.tv'), { action: 'node-b', rule: 2 });
  assert.deepEqual(go(undefined, '192.168.7.7'), { action: 'direct', rule: 3 });
  assert.deepEqual(go(undefined, '1.1.1.1', 25), { action: 'reject', rule: 4 });
  assert.deepEqual(go(undefined, '1.1.1.1', 53, '192.168.1.50', 'udp'), { action: 'node-b', rule: 5 });
  assert.deepEqual(go('example.net'), { action: 'node-a', rule: 'default' });
});

test('unknown outbound: line and column of the value, the known names, a suggestion', () => {
  assert.deepEqual(errorsOf('unknown-outbound.yaml'), [
    `${DIR}/unknown-outbound.yaml:14:15: rules[2].outbound: unknown outbound 'hk1' (known: direct, reject, node-a, hk); did you mean 'hk'?`,
  ]);
});

test('YAML syntax errors and duplicate keys carry line:col', () => {
  assert.deepEqual(errorsOf('syntax-error.yaml'), [
    `${DIR}/syntax-error.yaml:5:1: YAML: Flow sequence in block collection must be sufficiently indented and end with a ]`,
  ]);
  assert.deepEqual(errorsOf('duplicate-key.yaml'), [`${DIR}/duplicate-key.yaml:3:1: YAML: Map keys must be unique`]);
  const [tab] = textErrors('mode: redirect\n\tports: 80\n');
  assert.match(tab!, /^tranproxy\.yaml:2:1: YAML: /);
});

test('unknown keys: where they are, and what was meant', () => {
  assert.deepEqual(errorsOf('unknown-key.yaml'), [
    `${DIR}/unknown-key.yaml:2:1: unknown key 'listenPort'; did you mean 'listen-port'? (keys are kebab-case)`,
    `${DIR}/unknown-key.yaml:4:5: rules[0]: unknown key 'domain-sufix'; did you mean 'domain-suffix'?`,
    `${DIR}/unknown-key.yaml:8:5: dns.fake-ip: unknown key 'enabeld'; did you mean 'enabled'?`,
  ]);
  assert.deepEqual(textErrors('port: 80\nheader: "X-A: b"\ninterfaces: eth0\nbanana: 1\n'), [
    "tranproxy.yaml:1:1: unknown key 'port'; did you mean 'ports'?",
    "tranproxy.yaml:2:1: unknown key 'header'; did you mean 'headers'?",
    "tranproxy.yaml:3:1: unknown key 'interfaces'; did you mean 'in-interfaces'?",
    "tranproxy.yaml:4:1: unknown key 'banana'",
  ]);
  assert.deepEqual(textErrors('nodes:\n  a:\n    uri: socks5://h:1\n    password: x\n'), [
    "tranproxy.yaml:4:5: nodes.a: unknown key 'password'",
  ]);
});

test('bad values: each at its own line:col, all reported at once', () => {
  const f = `${DIR}/bad-values.yaml`;
  assert.deepEqual(errorsOf('bad-values.yaml'), [
    `${f}:1:7: mode: 'transparent' is not one of redirect, tproxy`,
    `${f}:2:13: ports[1]: '99999' is not a port: use a number from 1 to 65535`,
    `${f}:2:20: ports[2]: range '8000-7000' ends before it starts`,
    `${f}:3:16: exclude-cidrs: '10.0.0.0/33' is not a CIDR: use e.g. 10.0.0.0/8 or fd00::/8`,
    `${f}:4:18: connect-timeout: 'soon' is not a duration: use e.g. 500ms, 10s, 5m`,
    `${f}:6:5: headers[0]: invalid header 'no colon here': expected name:value, e.g. -H 'X-Team: payments'`,
    `${f}:7:21: headers[1].Content-Length: header 'Content-Length' cannot be injected: it controls message framing or the connection; tranproxy keeps the client's own`,
    `${f}:9:3: nodes.direct: 'direct' is a built-in outbound; give the node another name`,
    `${f}:10:6: nodes.b: unsupported scheme 'ftp': use socks5://, socks5h://, http://, ss://, vmess://, vless://, trojan://`,
    `${f}:12:5: rules[0].outbound: required: an outbound name (direct, reject or a node)`,
    `${f}:13:14: rules[1].network: 'icmp' is not one of tcp, udp`,
  ]);
});

test('domain list files: read relative to the config, errors point at the path in the config', () => {
  const f = `${DIR}/bad-domain-list.yaml`;
  assert.deepEqual(errorsOf('bad-domain-list.yaml'), [
    `${f}:2:34: rules[0].domain-list[1]: lists/broken.txt:2: not a domain list entry: use full:NAME, domain:NAME, keyword:WORD or a bare name`,
    `${f}:4:18: rules[1].domain-list: domain list: cannot read ${DIR}/lists/missing.txt: no such file`,
  ]);
  // An injected reader: the engine never touches the disk when told not to.
  const read: string[] = [];
  const cfg = parseConfigText(
    'rules:\n  - domain-list: [a.txt, a.txt, /abs/b.txt]\n    outbound: reject\n',
    '/etc/tranproxy/t.yaml',
    {
      readFile: (p) => (read.push(p), p.endsWith('a.txt') ? 'full:a.example\n' : 'b.example\n'),
    },
  );
  assert.deepEqual(read, ['/etc/tranproxy/a.txt', '/abs/b.txt']);
  const lists = [cfg.routeRules[0]!.domainList].flat() as DomainList[];
  assert.deepEqual(
    lists.map((l) => ({ source: l.source, ...l.entries() })),
    [
      { source: 'a.txt', full: ['a.example'], suffix: [], keyword: [] },
      { source: 'a.txt', full: ['a.example'], suffix: [], keyword: [] },
      { source: '/abs/b.txt', full: [], suffix: ['b.example'], keyword: [] },
    ],
  );
  assert.equal(lists[0], lists[1], 'a file named twice is parsed (and compiled) once');
});

test('cross-references: default, dns.via, xff-mode; errors found by the router still get a line', () => {
  assert.deepEqual(textErrors('nodes: { a: "socks5://h:1" }\ndefault: b\ndns:\n  via: reject\nxff-mode: replace\n'), [
    "tranproxy.yaml:2:10: default: unknown outbound 'b' (known: direct, reject, a); did you mean 'a'?",
    "tranproxy.yaml:4:8: dns.via: 'reject' cannot carry DNS queries: use direct or a node",
    'tranproxy.yaml:5:11: xff-mode: xff-mode needs set-forwarded-for',
  ]);
  // values.ts accepts a zone in a CIDR, the router does not: the router's verdict, with a line.
  assert.deepEqual(
    textErrors('rules:\n  - port: 80\n    outbound: direct\n  - cidr: "fe80::1%eth0"\n    outbound: direct\n'),
    ["tranproxy.yaml:4:11: rules[1].cidr: invalid CIDR 'fe80::1%eth0': expected ADDRESS[/PREFIX]"],
  );
  assert.deepEqual(textErrors('rules:\n  - outbound: direct\n'), [
    'tranproxy.yaml:2:5: rules[0]: no matcher (domain, domain-suffix, domain-keyword, domain-list, cidr, port, source-cidr, network); use `default` for a catch-all',
  ]);
  assert.deepEqual(textErrors('rules:\n  - domain-suffix: []\n    outbound: direct\n'), [
    'tranproxy.yaml:2:20: rules[0].domain-suffix: empty list: the rule could never match',
  ]);
});

test('shapes: wrong types, empty and non-mapping files, empty values, anchors', () => {
  assert.deepEqual(textErrors('ports: {a: 1}\nrules: 3\npreserve-source: "yes"\nnodes: [a]\n'), [
    'tranproxy.yaml:1:8: ports[0]: expected a port or range, e.g. 80 or 8000-8100',
    'tranproxy.yaml:2:8: rules: expected a mapping, got 3', // one value stands for a list of one
    'tranproxy.yaml:3:18: preserve-source: expected true or false',
    'tranproxy.yaml:4:8: nodes: expected a mapping, got a list',
  ]);
  assert.deepEqual(textErrors('- a\n- b\n'), [
    'tranproxy.yaml:1:1: expected a mapping of settings (key: value), got a list',
  ]);
  const empty = parseConfigText('# nothing yet\n', 'e.yaml');
  assert.deepEqual(empty.run, {});
  assert.deepEqual(empty.rules, []);
  assert.equal(empty.default, 'direct');
  assert.equal(empty.defaultGiven, false);
  assert.equal(empty.dns, undefined);
  // `key:` with nothing after it is absent; the seed switches given bare mean "on".
  const bare = parseConfigText('ports:\nrules:\nset-forwarded-for:\nset-client-hostname: false\n', 'b.yaml');
  assert.equal(bare.run.port, undefined);
  assert.equal(bare.run.setForwardedFor, true);
  assert.equal(bare.run.setClientHostname, false);
  const anchors = parseConfigText(
    'nodes: { hk: "socks5://h:1" }\nrules:\n  - domain-suffix: &cn [cn.example, cn.test]\n    outbound: direct\n  - domain-keyword: *cn\n    outbound: hk\n',
    'a.yaml',
  );
  assert.deepEqual(anchors.rules[1]!.domainKeyword, ['cn.example', 'cn.test']);
});

test('dns section: listen and nameserver forms', () => {
  const d = parseConfigText(
    'dns:\n  listen: 53\n  nameservers: ["::1", "[::1]:5353", 9.9.9.9]\n  fake-ip: { range: "fc00::/18" }\n',
    'd.yaml',
  ).dns!;
  assert.deepEqual(d, {
    listen: { host: undefined, port: 53 },
    nameservers: [
      { host: '::1', port: 53 },
      { host: '::1', port: 5353 },
      { host: '9.9.9.9', port: 53 },
    ],
    via: 'direct',
    cache: true,
    fakeIp: { enabled: true, range: 'fc00::/18' },
  });
  assert.deepEqual(textErrors('dns:\n  listen: "::1:53"\n  nameservers: [dns.google]\n  cache: 1\n'), [
    "tranproxy.yaml:2:11: dns.listen: '::1:53' is not PORT or IP:PORT (IPv6 in brackets: [::1]:53)",
    "tranproxy.yaml:3:17: dns.nameservers[0]: 'dns.google' is not IP or IP:PORT (IPv6 in brackets: [::1]:53)",
    'tranproxy.yaml:4:10: dns.cache: expected true or false',
  ]);
});

test('loadConfigFile: a missing file is a UsageError naming it', () => {
  assert.throws(
    () => loadConfigFile(join(DIR, 'nope.yaml')),
    (e: unknown) => e instanceof UsageError && /nope\.yaml: cannot read the file: no such file/.test(e.message),
  );
});

test('udp: true in the file captures UDP like --udp (#17); absent, only TCP', () => {
  const on = runConfigOf(parseConfigText('mode: tproxy\nproxy-user: none\nudp: true\n', 'udp.yaml').run, [], FACTS);
  assert.equal(on.udp, true);
  assert.deepEqual(capturePlanOf(on).protocols, ['tcp', 'udp']);
  const off = runConfigOf(parseConfigText('mode: tproxy\nproxy-user: none\n', 'tcp.yaml').run, [], FACTS);
  assert.deepEqual(capturePlanOf(off).protocols, ['tcp']);
  assert.throws(
    () => runConfigOf(parseConfigText('mode: redirect\nproxy-user: none\nudp: true\n', 'r.yaml').run, [], FACTS),
    /--udp needs --mode tproxy/,
  );
  assert.throws(() => parseConfigText('udp: yes please\n', 'bad.yaml'), ConfigError);
});
