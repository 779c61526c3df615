// Console config edits: the YAML document keeps comments, every change is validated like
// the file (errors land on console fields), refused changes leave file and proxy untouched,
// writes are atomic; node links, names and subscriptions.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigStore } from '../../src/console/apply.js';
import { ConsoleApi } from '../../src/console/api.js';
import { fieldOf, parseDoc, SETTINGS_FIELDS, writeFileAtomic } from '../../src/console/document.js';
import { baseName, parseLinks, uniqueName } from '../../src/console/links.js';
import { decodeSubscription } from '../../src/console/subscription-formats.js';
import { runConfigOf, type RunConfig } from '../../src/config/run-config.js';
import { loadConfigFile } from '../../src/config/file.js';
import { reviveDomainList } from '../../src/route/domain-list.js';
import { parseNodeUri } from '../../src/outbound/uri.js';
import { createLogger } from '../../src/observe/log.js';
import type { SupervisorControl } from '../../src/proxy/supervisor.js';
import { withPasswordHash } from '../../src/cli/console.js';

const SS = 'ss://YWVzLTI1Ni1nY206c2VjcmV0@203.0.113.11:8388#HK%201';
const SS_PLAIN_REDACTED = 'ss://aes-256-gcm:***@203.0.113.11:8388#HK%201';

const ORIGINAL = `# Gateway for the lab
mode: tproxy          # TPROXY keeps client addresses
capture: prerouting
in-interfaces: [eth1]

nodes:
  # the office node
  office: socks5://user:pw@192.0.2.10:1080
rules:
  - cidr: [192.168.0.0/16]   # LAN stays direct
    outbound: direct
default: direct
`;

interface Harness {
  dir: string;
  path: string;
  api: ConsoleApi;
  applied: RunConfig[];
  failNextApply: { value: string | undefined };
}

function harness(
  t: { after(fn: () => void): void },
  text = ORIGINAL,
  fetchText?: (url: string) => Promise<string>,
): Harness {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-console-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'gateway.yaml');
  writeFileSync(path, text, { mode: 0o640 });
  const build = (f: Parameters<ConstructorParameters<typeof ConfigStore>[1]>[0]) =>
    runConfigOf({ ...f.run, firewall: 'none' }, [], undefined, f);
  let cfg: RunConfig = build(loadConfigFile(path));
  const applied: RunConfig[] = [];
  const failNextApply = { value: undefined as string | undefined };
  const control: SupervisorControl = {
    config: () => cfg,
    apply: async (next) => {
      if (failNextApply.value) {
        const m = failNextApply.value;
        failNextApply.value = undefined;
        throw new Error(m);
      }
      applied.push(next);
      cfg = next;
    },
    connections: async () => [
      {
        id: 7,
        worker: 1234,
        listener: '0.0.0.0:15001',
        src: '10.0.0.2:5000',
        dst: '198.51.100.1:80',
        via: 'office',
        ageMs: 1500,
      },
    ],
    metricSnapshots: async () => [],
    closeConnection: async (w, id) => w === 1234 && id === 7,
    flushDns: async () => 1,
    rulesInKernel: () => cfg.enabled,
    onApplied: () => () => {},
  };
  const store = new ConfigStore(path, build, control);
  return {
    dir,
    path,
    api: new ConsoleApi({ store, control, log: createLogger('text', () => {}), ...(fetchText ? { fetchText } : {}) }),
    applied,
    failNextApply,
  };
}

type Body = Record<string, unknown> & { errors?: { field: string; message: string }[] };
async function call(
  h: Harness,
  method: string,
  path: string,
  body?: unknown,
  query = '',
): Promise<{ status: number; body: Body }> {
  const r = await h.api.handle({ method, path, query: new URLSearchParams(query), body });
  return { status: r.status, body: r.body as Body };
}

test('state from the file', async (t) => {
  const h = harness(t);
  const { status, body: full } = await call(h, 'GET', '/state');
  assert.equal(status, 200);
  // lanAddresses are the host's own eth1 addresses, if it has one: only their shape is checked.
  const { dnsServer, ...body } = full as Body & { dnsServer: { lanAddresses: string[] } };
  assert.ok(Array.isArray(dnsServer.lanAddresses));
  assert.deepEqual(
    { ...dnsServer, lanAddresses: [] },
    { listen: null, fakeIpRange: null, lanAddresses: [] },
    'no dns section: no DNS server',
  );
  assert.deepEqual(body, {
    enabled: true,
    mode: 'tproxy',
    lan: { interfaces: ['eth1'], sources: [] },
    tcpNode: 'direct',
    udpNode: 'same',
    nodes: [
      {
        name: 'office',
        label: 'office',
        type: 'socks5',
        server: '192.0.2.10',
        port: 1080,
        uri: 'socks5://user:***@192.0.2.10:1080',
      },
    ],
    subscriptions: [],
    dns: { nameservers: [], cache: true, fakeIp: false },
    rules: [{ cidr: ['192.168.0.0/16'], outbound: 'direct' }],
    checkTargets: [],
    applied: true,
    udp: false,
    testUrl: 'http://www.gstatic.com/generate_204',
  });
});

test('settings: applied, saved, comments kept (golden), file mode kept, no temp files left', async (t) => {
  const h = harness(t);
  const r = await call(h, 'PUT', '/settings', {
    enabled: false,
    tcpNode: 'office',
    udpNode: 'direct',
    lan: { interfaces: ['eth1', 'eth2'], sources: ['192.168.1.0/24'] },
    checkTargets: ['198.51.100.1:80'],
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(h.applied.length, 1);
  assert.equal(h.applied[0]!.enabled, false);
  assert.equal(h.applied[0]!.routing?.defaultOutbound, 'office');
  assert.equal(h.applied[0]!.routing?.defaultUdpOutbound, 'direct');
  assert.deepEqual(h.applied[0]!.inInterfaces, ['eth1', 'eth2']);
  assert.equal(r.body.applied, false);
  assert.equal(
    readFileSync(h.path, 'utf8'),
    `# Gateway for the lab
mode: tproxy          # TPROXY keeps client addresses
capture: prerouting
in-interfaces: [eth1, eth2]

nodes:
  # the office node
  office: socks5://user:pw@192.0.2.10:1080
rules:
  - cidr: [192.168.0.0/16]   # LAN stays direct
    outbound: direct
default: office
enabled: false
source-cidrs:
  - 192.168.1.0/24
default-udp: direct
check-targets:
  - 198.51.100.1:80
`,
  );
  assert.equal(statSync(h.path).mode & 0o777, 0o640);
  assert.deepEqual(readdirSync(h.dir), ['gateway.yaml']);
  // only check targets: saved, no new worker generation
  await call(h, 'PUT', '/settings', { checkTargets: ['198.51.100.2:443'] });
  assert.equal(h.applied.length, 1);
  assert.match(readFileSync(h.path, 'utf8'), /198\.51\.100\.2:443/);
  // "same" removes default-udp again
  await call(h, 'PUT', '/settings', { udpNode: 'same' });
  assert.doesNotMatch(readFileSync(h.path, 'utf8'), /default-udp/);
});

test('invalid settings: 400 with form fields; file and proxy untouched', async (t) => {
  const h = harness(t);
  const r = await call(h, 'PUT', '/settings', {
    mode: 'nat',
    tcpNode: 'offce',
    lan: { sources: ['10.0.0.0/33'] },
    enabled: 'yes',
    checkTargets: ['nohost'],
  });
  assert.equal(r.status, 400);
  const fields = r.body.errors!.map((e) => e.field).sort();
  assert.deepEqual(fields, ['checkTargets', 'enabled', 'lan.sources', 'mode']);
  // cross-key checks (outbound names) run once every value has the right shape, as in the file
  const r1 = await call(h, 'PUT', '/settings', { tcpNode: 'offce' });
  assert.equal(r1.body.errors![0]!.field, 'tcpNode');
  assert.match(r1.body.errors![0]!.message, /unknown outbound 'offce'.*did you mean 'office'/);
  assert.equal(readFileSync(h.path, 'utf8'), ORIGINAL);
  assert.equal(h.applied.length, 0);
  // a run-configuration rule (not the schema's): interfaces need prerouting capture
  const h2 = harness(t, 'capture: output\n');
  const r2 = await call(h2, 'PUT', '/settings', { lan: { interfaces: ['eth1'] } });
  assert.equal(r2.status, 400);
  assert.equal(r2.body.errors![0]!.field, 'lan.interfaces');
  assert.equal(readFileSync(h2.path, 'utf8'), 'capture: output\n');
  const r3 = await call(h, 'PUT', '/settings', { udpNode: 'nowhere' });
  assert.equal(r3.body.errors![0]!.field, 'udpNode');
  assert.match(r3.body.errors![0]!.message, /unknown outbound 'nowhere'/);
});

test('a change the supervisor refuses is not saved', async (t) => {
  const h = harness(t);
  h.failNextApply.value = 'nft: Operation not permitted';
  const r = await call(h, 'PUT', '/settings', { enabled: false });
  assert.equal(r.status, 400);
  assert.match(r.body.errors![0]!.message, /Operation not permitted/);
  assert.equal(readFileSync(h.path, 'utf8'), ORIGINAL);
});

test('rules: validated exactly like the file, fields rules[N].key', async (t) => {
  const h = harness(t);
  const bad = await call(h, 'PUT', '/rules', {
    rules: [
      { cidr: ['10.0.0.0/8'], outbound: 'direct' },
      { cidr: ['10.0.0.300/8'], outbound: 'nowhere' },
      { outbound: 'direct', colour: 'red' },
    ],
  });
  assert.equal(bad.status, 400);
  const got = bad.body.errors!.map((e) => e.field).sort();
  assert.deepEqual(got, ['rules[1].cidr', 'rules[1].outbound', 'rules[2]']);
  assert.equal(readFileSync(h.path, 'utf8'), ORIGINAL);
  const ok = await call(h, 'PUT', '/rules', {
    rules: [
      { 'domain-suffix': ['example.com'], outbound: 'office' },
      { port: ['25'], outbound: 'reject' },
    ],
  });
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body.rules, [
    { 'domain-suffix': ['example.com'], outbound: 'office' },
    { port: ['25'], outbound: 'reject' },
  ]);
  assert.equal(h.applied.at(-1)!.routing!.rules.length, 2);
  assert.equal((await call(h, 'PUT', '/rules', { rules: 'x' })).body.errors![0]!.field, 'rules');
});

test('rules: a domain-list the console sets must be a regular file in the config directory; errors never quote a file', async (t) => {
  const h = harness(t);
  const outside = mkdtempSync(join(tmpdir(), 'tpx-outside-'));
  t.after(() => rmSync(outside, { recursive: true, force: true }));
  const secret = join(outside, 'shadow');
  writeFileSync(secret, 'root:$y$j9T$s3cr3t:19000:0:99999:7:::\n', { mode: 0o600 });
  const rules = (list: string) => ({ rules: [{ 'domain-list': [list], outbound: 'reject' }] });
  const t0 = Date.now();
  for (const path of [
    '/etc/shadow',
    '/proc/self/environ',
    '/dev/zero',
    secret,
    `${h.dir}/../${outside.split('/').pop()}/shadow`,
  ]) {
    const r = await call(h, 'PUT', '/rules', rules(path));
    assert.equal(r.status, 400, path);
    const text = JSON.stringify(r.body);
    assert.match(text, /outside .*: the console may only name files in the config file's directory/, path);
    assert.doesNotMatch(text, /s3cr3t|root:|PATH=|HOME=/, path);
  }
  execFileSync('mkfifo', [join(h.dir, 'fifo')]);
  symlinkSync(secret, join(h.dir, 'link.txt'));
  assert.match(JSON.stringify((await call(h, 'PUT', '/rules', rules('fifo'))).body), /is a FIFO: name a regular file/);
  assert.match(JSON.stringify((await call(h, 'PUT', '/rules', rules('link.txt'))).body), /outside/);
  assert.ok(Date.now() - t0 < 3000, 'no read blocked');
  writeFileSync(join(h.dir, 'bad.txt'), 'root:$y$j9T$s3cr3t\n', { mode: 0o600 });
  const bad = await call(h, 'PUT', '/rules', rules('bad.txt'));
  assert.match(JSON.stringify(bad.body), /bad\.txt:1: not a domain list entry/);
  assert.doesNotMatch(JSON.stringify(bad.body), /s3cr3t/);
  assert.equal(readFileSync(h.path, 'utf8'), ORIGINAL);
  writeFileSync(join(h.dir, 'ads.txt'), 'ads.example\n', { mode: 0o600 });
  assert.equal((await call(h, 'PUT', '/rules', rules('ads.txt'))).status, 200);
  assert.ok(reviveDomainList([h.applied.at(-1)!.routing!.rules[0]!.domainList!].flat()[0]!).matches('x.ads.example'));
});

test('nodes: paste many, names from #tag made unique, bad line named, edit keeps secret, rename follows references, delete refused while used', async (t) => {
  const h = harness(t);
  const add = await call(h, 'POST', '/nodes', { links: `${SS}\n  socks5://a:b@192.0.2.20:1080#office\n\n${SS}` });
  assert.equal(add.status, 200, JSON.stringify(add.body));
  assert.deepEqual(add.body.added, ['HK-1', 'office-2', 'HK-1-2']);
  assert.deepEqual((add.body.state as Body).nodes, add.body.nodes);
  // the usable links are taken, the others reported with the reason, never failing the rest
  const mixed = await call(h, 'POST', '/nodes', {
    links: `${SS}\nss://nonsense\nhttp://host-without-port\nhysteria2://pw@198.51.100.7:443#%F0%9F%87%AF%F0%9F%87%B5%20Tokyo`,
  });
  assert.equal(mixed.status, 200, JSON.stringify(mixed.body));
  const report = mixed.body.report as {
    imported: { name: string }[];
    skipped: { line: number; label?: string; reason: string }[];
    summary: string;
  };
  assert.deepEqual(
    report.imported.map((i) => i.name),
    ['HK-1-3'],
  );
  assert.deepEqual(
    report.skipped.map((s) => s.line),
    [2, 3, 4],
  );
  assert.deepEqual(report.skipped[2], { line: 4, label: '🇯🇵 Tokyo', reason: 'hysteria2 not supported' });
  assert.match(report.summary, /^1 imported, 3 skipped: .*missing port.*; hysteria2 not supported$/);
  assert.doesNotMatch(JSON.stringify(mixed.body), /secret/);
  await call(h, 'DELETE', '/nodes/HK-1-3');
  const bad = await call(h, 'POST', '/nodes', { links: 'ss://nonsense\ntuic://x@h:1' });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.errors![0]!.field, 'links');
  assert.match(bad.body.errors![0]!.message, /^nothing imported: 0 imported, 2 skipped: .*; tuic not supported$/);

  // edit: the redacted form sent back keeps the password
  const node = (add.body.nodes as { name: string; uri: string }[]).find((n) => n.name === 'HK-1')!;
  assert.equal(node.uri, SS_PLAIN_REDACTED.replace('aes-256-gcm:***', 'aes-256-gcm:***'));
  const kept = await call(h, 'PUT', '/nodes/HK-1', { name: 'hk', uri: node.uri });
  assert.equal(kept.status, 200, JSON.stringify(kept.body));
  assert.match(
    readFileSync(h.path, 'utf8'),
    /\n {2}hk:\n {4}uri: ss:\/\/YWVzLTI1Ni1nY206c2VjcmV0@203\.0\.113\.11:8388#HK%201\n {4}label: HK 1\n/,
    'the label is kept beside the renamed key',
  );
  const badUri = await call(h, 'PUT', '/nodes/hk', { uri: 'ftp://x:1' });
  assert.equal(badUri.status, 400);
  assert.equal(badUri.body.errors![0]!.field, 'uri');

  // rename follows rules and default; delete refused while used, with who uses it
  await call(h, 'PUT', '/rules', { rules: [{ 'domain-suffix': ['example.com'], outbound: 'office' }] });
  await call(h, 'PUT', '/settings', { tcpNode: 'office' });
  const ren = await call(h, 'PUT', '/nodes/office', { name: 'work' });
  assert.equal(ren.status, 200, JSON.stringify(ren.body));
  assert.equal(ren.body.tcpNode, 'work');
  assert.equal((ren.body.rules as { outbound: string }[])[0]!.outbound, 'work');
  assert.match(readFileSync(h.path, 'utf8'), /# the office node\n {2}work: socks5:/, 'renamed in place, comment kept');
  const del = await call(h, 'DELETE', '/nodes/work');
  assert.equal(del.status, 400);
  assert.equal(del.body.errors![0]!.field, 'name');
  assert.match(del.body.errors![0]!.message, /tcpNode.*rules\[0\]/);
  const gone = await call(h, 'DELETE', '/nodes/hk');
  assert.equal(gone.status, 200);
  assert.ok(!(gone.body.nodes as { name: string }[]).some((n) => n.name === 'hk'));
  assert.equal((await call(h, 'DELETE', '/nodes/nope')).status, 400);
});

test('subscriptions: base64 list, nodes replaced as a group on refresh, removal', async (t) => {
  let served = Buffer.from(`${SS}\nsocks5://192.0.2.30:1080#sub-b\n`).toString('base64');
  const h = harness(t, ORIGINAL, async () => served);
  const url = 'http://198.51.100.9/sub';
  const add = await call(h, 'POST', '/subscriptions', { url });
  assert.equal(add.status, 200, JSON.stringify(add.body));
  const sub = (add.body.subscriptions as { url: string; nodes: string[]; updatedAt: string }[])[0]!;
  assert.deepEqual(sub.nodes, ['HK-1', 'sub-b']);
  assert.ok(sub.updatedAt);
  served = 'socks5://192.0.2.31:1080#sub-c\n';
  const ref = await call(h, 'POST', '/subscriptions/refresh', { url });
  assert.equal(ref.status, 200, JSON.stringify(ref.body));
  assert.deepEqual(
    (ref.body.nodes as { name: string }[]).map((n) => n.name),
    ['office', 'sub-c'],
  );
  assert.equal((await call(h, 'POST', '/subscriptions', { url: 'ftp://x' })).body.errors![0]!.field, 'url');
  const del = await call(h, 'DELETE', '/subscriptions', undefined, `url=${encodeURIComponent(url)}`);
  assert.equal(del.status, 200);
  assert.deepEqual(
    (del.body.nodes as { name: string }[]).map((n) => n.name),
    ['office'],
  );
  assert.deepEqual(del.body.subscriptions, []);
});

test('nodes: a redacted secret is kept whatever else changes; prototype names refused everywhere', async (t) => {
  const h = harness(t);
  const added0 = await call(h, 'POST', '/nodes', { links: `${SS}\nsocks5://u:p%40ss@192.0.2.20:1080#s5` });
  const [ssName, s5Name] = added0.body.added as string[];
  const moved = await call(h, 'PUT', `/nodes/${encodeURIComponent(ssName!)}`, {
    name: 'hk2',
    uri: 'ss://aes-256-gcm:***@203.0.113.12:9999#moved',
  });
  assert.equal(moved.status, 200, JSON.stringify(moved.body));
  const socks = await call(h, 'PUT', `/nodes/${encodeURIComponent(s5Name!)}`, {
    uri: 'socks5://u:***@192.0.2.21:1081',
  });
  assert.equal(socks.status, 200, JSON.stringify(socks.body));
  const office = await call(h, 'PUT', '/nodes/office', { uri: 'socks5://user:***@192.0.2.10:1081' });
  assert.equal(office.status, 200);
  const nodes = h.applied.at(-1)!.routing!.nodes;
  assert.deepEqual(nodes.hk2!.spec, {
    kind: 'shadowsocks',
    name: 'hk2', // the data plane names a node by its key
    host: '203.0.113.12',
    port: 9999,
    method: 'aes-256-gcm',
    password: 'secret',
  });
  assert.equal((nodes[s5Name!]!.spec as { password?: string }).password, 'p@ss');
  assert.equal((nodes.office!.spec as { password?: string }).password, 'pw');
  assert.doesNotMatch(readFileSync(h.path, 'utf8'), /\*\*\*/, 'no literal *** stored');

  const before = readFileSync(h.path, 'utf8');
  for (const name of ['__proto__', 'constructor', 'prototype']) {
    const r = await call(h, 'PUT', '/nodes/office', { name });
    assert.equal(r.status, 400, name);
    assert.match(JSON.stringify(r.body), new RegExp(`'${name}' cannot be a key or a name`), name);
  }
  const rule = JSON.parse('{"rules": [{"__proto__": {"outbound": "reject"}, "port": ["25"], "outbound": "direct"}]}');
  assert.match(JSON.stringify((await call(h, 'PUT', '/rules', rule)).body), /'__proto__' cannot be a key/);
  assert.equal(readFileSync(h.path, 'utf8'), before, 'nothing saved');
  const added = await call(h, 'POST', '/nodes', { links: 'socks5://192.0.2.30:1080#constructor' });
  assert.deepEqual(added.body.added, ['constructor-2']);
});

test('subscriptions: a huge or endless answer is cut off at 4 MiB while it streams, never buffered whole', async (t) => {
  const h = harness(t); // the real fetcher
  let sent = 0;
  const server = http.createServer((req, res) => {
    const chunk = Buffer.alloc(64 << 10, 'A');
    res.writeHead(200, req.url === '/declared' ? { 'content-length': String(1.5 * 2 ** 30) } : {});
    const pump = (): void => {
      while (!res.destroyed && res.write(chunk)) sent += chunk.length;
      if (!res.destroyed) res.once('drain', pump);
    };
    res.on('close', () => res.removeAllListeners('drain'));
    pump();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const rss0 = process.memoryUsage().rss;
  for (const path of ['/endless', '/declared']) {
    sent = 0;
    const r = await call(h, 'POST', '/subscriptions', { url: `${base}${path}` });
    assert.equal(r.status, 400, path);
    assert.match(r.body.errors![0]!.message, /the subscription is larger than 4 MiB/, path);
    assert.ok(sent < 16 << 20, `${path}: the server sent ${sent >> 20} MiB before the fetch was aborted`);
  }
  assert.ok(process.memoryUsage().rss - rss0 < 200 << 20, 'memory stayed bounded');
  assert.equal(readFileSync(h.path, 'utf8'), ORIGINAL);
});

test('dns, connections, close, flush', async (t) => {
  const h = harness(t);
  const bad = await call(h, 'PUT', '/dns', { nameservers: ['not-an-ip'], cache: 'no' });
  assert.equal(bad.status, 400);
  assert.deepEqual(bad.body.errors!.map((e) => e.field).sort(), ['dns.cache', 'dns.nameservers']);
  const ok = await call(h, 'PUT', '/dns', {
    nameservers: ['192.0.2.53', '192.0.2.54:5353'],
    cache: false,
    fakeIp: true,
  });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.deepEqual(ok.body.dns, { nameservers: ['192.0.2.53', '192.0.2.54:5353'], cache: false, fakeIp: true });
  // The DNS server LAN hosts use (port 53 on every address) and the fake-IP range now in force.
  const server = ok.body.dnsServer as { listen: unknown; fakeIpRange: unknown };
  assert.deepEqual([server.listen, server.fakeIpRange], [{ host: null, port: 53 }, '198.18.0.0/15']);
  assert.deepEqual((await call(h, 'POST', '/dns/flush')).body, { flushed: 1 });
  const conns = (await call(h, 'GET', '/connections')).body as unknown as {
    id: string;
    node: string;
    startedAt: string;
  }[];
  assert.equal(conns[0]!.id, '1234-7');
  assert.equal(conns[0]!.node, 'office');
  assert.ok(!Number.isNaN(Date.parse(conns[0]!.startedAt)));
  assert.equal((await call(h, 'DELETE', '/connections/1234-7')).status, 200);
  assert.equal((await call(h, 'DELETE', '/connections/1234-8')).status, 404);
});

test('links: names, uniqueness, subscription decoding', () => {
  assert.equal(baseName(parseNodeUri('socks5://192.0.2.1:1080')), 'socks5-192.0.2.1-1080');
  assert.equal(
    baseName(parseNodeUri('socks5://192.0.2.1:1080#%E9%A6%99%E6%B8%AF%2001')),
    'socks5-192.0.2.1-1080',
    'a label with no ASCII words: type-host-port',
  );
  assert.equal(baseName(parseNodeUri('socks5://192.0.2.1:1080#direct')), 'socks5-192.0.2.1-1080');
  const taken = new Set(['a']);
  assert.equal(uniqueName('a', taken), 'a-2');
  assert.equal(uniqueName('a', taken), 'a-3');
  assert.equal(uniqueName('reject', taken), 'reject-2');
  const b64 = Buffer.from('ss://x@h:1#a\nsocks5://h:2#b').toString('base64');
  assert.deepEqual(
    decodeSubscription(`${b64.slice(0, 10)}\n${b64.slice(10)}`).entries.map((e) => e.uri),
    ['ss://x@h:1#a', 'socks5://h:2#b'],
  );
  assert.deepEqual(decodeSubscription('socks5://h:2#b').entries, [{ uri: 'socks5://h:2#b' }]);
  const { links, skipped } = parseLinks('socks5://h:2#b\ngarbage');
  assert.equal(links.length, 1);
  assert.deepEqual(
    skipped.map((p) => p.line),
    [2],
  );
});

test('fieldOf maps config paths to form fields', () => {
  assert.equal(fieldOf('rules[3].cidr[0]', []), 'rules[3].cidr');
  assert.equal(fieldOf('rules[3]', []), 'rules[3]');
  assert.equal(fieldOf('in-interfaces[1]', SETTINGS_FIELDS), 'lan.interfaces');
  assert.equal(fieldOf('default-udp', SETTINGS_FIELDS), 'udpNode');
  assert.equal(fieldOf('default', SETTINGS_FIELDS), 'tcpNode');
  assert.equal(fieldOf('nodes.x', SETTINGS_FIELDS), '');
});

test('console passwd edit keeps the file and its comments; atomic write creates private files', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-console-pw-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = withPasswordHash(
    ORIGINAL,
    'scrypt$1024$8$1$AAAAAAAAAAAAAAAAAAAAAA$BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB',
    'gw.yaml',
  );
  assert.ok(out.startsWith('# Gateway for the lab\nmode: tproxy # TPROXY keeps client addresses\n'));
  assert.match(out, /\nconsole:\n {2}password-hash: scrypt\$1024/);
  assert.equal(parseDoc(out).errors.length, 0);
  assert.throws(() => withPasswordHash('- a\n- b\n', 'h', 'x.yaml'), /mapping/);
  const p = join(dir, 'new.yaml');
  writeFileAtomic(p, 'a: 1\n');
  assert.equal(statSync(p).mode & 0o777, 0o600);
  assert.equal(readFileSync(p, 'utf8'), 'a: 1\n');
});

test('an edit changes only the edited line: flow lists, comment spacing and other rules stay byte-identical (#18)', async (t) => {
  const text = `# Gateway
mode: tproxy          # keeps client addresses
capture: prerouting
in-interfaces: [eth1,  eth2]   # two LAN ports
nodes:
  office: socks5://user:pw@192.0.2.10:1080
rules:
  # LAN first
  - cidr: [192.168.0.0/16, 10.0.0.0/8]   # private
    outbound: direct
  - domain-suffix: [example.com]  # work
    outbound: direct
  - domain-keyword: [video, stream]
    outbound: office
default: direct
`;
  const h = harness(t, text);
  const r = await call(h, 'PUT', '/rules', {
    rules: [
      { cidr: ['192.168.0.0/16', '10.0.0.0/8'], outbound: 'direct' },
      { 'domain-suffix': ['example.com'], outbound: 'office' },
      { 'domain-keyword': ['video', 'stream'], outbound: 'office' },
    ],
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const before = text.split('\n');
  const after = readFileSync(h.path, 'utf8').split('\n');
  assert.equal(after.length, before.length);
  const changed = before.flatMap((line, i) => (line === after[i] ? [] : [[line, after[i]]]));
  assert.deepEqual(changed, [['    outbound: direct', '    outbound: office']]);
  assert.equal(after[11], '    outbound: office');
});

test('UDP capture from the console: on writes udp: true and applies it; off removes the key; REDIRECT refuses it on the udp field', async (t) => {
  const h = harness(t, ORIGINAL.replace('capture: prerouting', 'capture: prerouting\nproxy-user: none'));
  const on = await call(h, 'PUT', '/settings', { udp: true });
  assert.equal(on.status, 200, JSON.stringify(on.body));
  assert.equal(on.body.udp, true);
  assert.equal(h.applied.at(-1)?.udp, true);
  assert.match(readFileSync(h.path, 'utf8'), /\nudp: true\n/);
  const off = await call(h, 'PUT', '/settings', { udp: false });
  assert.equal(off.body.udp, false);
  assert.equal(h.applied.at(-1)?.udp, false);
  assert.doesNotMatch(readFileSync(h.path, 'utf8'), /udp:/);
  const redirect = await call(h, 'PUT', '/settings', { mode: 'redirect', udp: true });
  assert.equal(redirect.status, 400);
  assert.equal(redirect.body.errors?.[0]?.field, 'udp');
  assert.doesNotMatch(readFileSync(h.path, 'utf8'), /udp:|redirect/);
});

test('node test URL: saved under console.test-url, shown in the state; not a URL: refused on its field', async (t) => {
  const h = harness(t);
  const r = await call(h, 'PUT', '/settings', { testUrl: 'http://192.0.2.80/generate_204' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.testUrl, 'http://192.0.2.80/generate_204');
  assert.match(readFileSync(h.path, 'utf8'), /console:\n {2}test-url: http:\/\/192\.0\.2\.80\/generate_204\n/);
  const bad = await call(h, 'PUT', '/settings', { testUrl: 'ftp://x' });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.errors?.[0]?.field, 'testUrl');
});

test('export/import through the API: redacted export, preview then apply, hostile imports change nothing', async (t) => {
  const h = harness(t);
  const ex = await call(h, 'GET', '/config/export');
  assert.equal(ex.status, 200);
  const yaml = (ex.body as { yaml: string }).yaml;
  assert.ok(!yaml.includes('user:pw@'), yaml);
  assert.match(yaml, /office: "socks5:\/\/user:\*\*\*@192\.0\.2\.10:1080"/);
  assert.equal(
    ((await call(h, 'GET', '/config/export', undefined, 'secrets=1')).body as { yaml: string }).yaml,
    ORIGINAL,
  );
  // Preview: the diff, nothing applied or written.
  const edited = yaml
    .replace('default: direct', 'default: office')
    .replace('nodes:\n', 'nodes:\n  extra: socks5://192.0.2.20:1080\n');
  const preview = await call(h, 'POST', '/config/import', { yaml: edited });
  assert.equal(preview.status, 200, JSON.stringify(preview.body));
  assert.deepEqual(preview.body.diff, {
    nodes: { added: ['extra'], removed: [], changed: [] },
    groups: { added: [], removed: [], changed: [] },
    rules: { before: 1, after: 1 },
    settings: ['default'],
    unchanged: false,
  });
  assert.equal(preview.body.applied, false);
  assert.equal(h.applied.length, 0);
  assert.equal(readFileSync(h.path, 'utf8'), ORIGINAL);
  // Hostile: bad YAML, prototype keys, a list, an invalid setting, too large: 400, nothing changed.
  for (const [text, re] of [
    ['mode: [tproxy\n', /^YAML: /],
    ['nodes:\n  __proto__: socks5://192.0.2.1:1080\n', /__proto__/],
    ['constructor: {}\n', /constructor/],
    ['- 1\n', /YAML mapping/],
    ['mode: sideways\n', /sideways|redirect/],
    [`x: "${'a'.repeat(600 << 10)}"\n`, /larger than/],
  ] as const) {
    for (const apply of [false, true]) {
      const r = await call(h, 'POST', '/config/import', { yaml: text, apply });
      assert.equal(r.status, 400, `${text.slice(0, 40)}: ${JSON.stringify(r.body).slice(0, 200)}`);
      assert.match(r.body.errors?.map((e) => e.message).join('\n') ?? '', re);
    }
  }
  assert.equal(h.applied.length, 0);
  assert.equal(readFileSync(h.path, 'utf8'), ORIGINAL);
  // Apply: saved and applied; the redacted password came back from the stored file.
  const applied = await call(h, 'POST', '/config/import', { yaml: edited, apply: true });
  assert.equal(applied.status, 200, JSON.stringify(applied.body));
  assert.equal(applied.body.applied, true);
  assert.equal(h.applied.at(-1)?.routing?.defaultOutbound, 'office');
  const saved = readFileSync(h.path, 'utf8');
  assert.match(saved, /office: "?socks5:\/\/user:pw@192\.0\.2\.10:1080/);
  assert.match(saved, /# the office node/);
  assert.match(saved, /extra: socks5:\/\/192\.0\.2\.20:1080/);
});
