// Subscription formats (base64 in every spelling, plain, Clash YAML, SIP008) become
// {label, uri} entries the common link parser takes; labels are kept exactly as written;
// a refresh keeps names stable and never drops a node in use (planRefresh, isDue).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfigFile } from '../../src/config/file.js';
import { ConfigStore } from '../../src/console/apply.js';
import { ConsoleApi } from '../../src/console/api.js';
import { baseName, importSummary, parseEntries, parseLinks } from '../../src/console/links.js';
import { decodeSubscription } from '../../src/console/subscription-formats.js';
import { isDue, planRefresh, type SubNode } from '../../src/console/subscriptions.js';
import { runConfigOf, type RunConfig } from '../../src/config/run-config.js';
import { createLogger } from '../../src/observe/log.js';
import { parseNodeUri } from '../../src/outbound/uri.js';
import type { SupervisorControl } from '../../src/proxy/supervisor.js';

const ss = (pw: string, host: string, tag: string) =>
  `ss://${Buffer.from(`aes-256-gcm:${pw}`).toString('base64url')}@${host}:8388#${encodeURIComponent(tag)}`;
const LIST = [
  ss('a', '192.0.2.1', '🇭🇰 香港 01'),
  ss('b', '192.0.2.2', 'JP Tokyo'),
  'socks5://192.0.2.3:1080#plain',
  'hysteria2://pw@192.0.2.4:443#hy',
  'tuic://u:p@192.0.2.5:443#tu',
].join('\r\n');

test('base64 link lists in every spelling decode to the same entries', () => {
  const std = Buffer.from(LIST).toString('base64');
  const want = decodeSubscription(LIST).entries;
  assert.equal(want.length, 5);
  for (const body of [
    std,
    std.replace(/=+$/, ''),
    Buffer.from(LIST).toString('base64url'),
    std.replace(/(.{76})/g, '$1\r\n'),
    std.replace(/(.{64})/g, '$1\n'),
    `\uFEFF${std}\n`,
  ]) {
    const got = decodeSubscription(body);
    assert.equal(got.format, 'base64');
    assert.deepEqual(got.entries, want);
  }
  assert.equal(decodeSubscription(LIST).format, 'links');
  assert.throws(() => decodeSubscription('<html>blocked</html>'), /not a link list/);
});

test('a list imports what it can: labels exactly as written, skips with reasons', () => {
  const { links, skipped } = parseEntries(decodeSubscription(Buffer.from(LIST).toString('base64')).entries);
  assert.deepEqual(
    links.map((l) => l.label),
    ['🇭🇰 香港 01', 'JP Tokyo', 'plain'],
  );
  assert.deepEqual(skipped, [
    { line: 4, label: 'hy', reason: 'hysteria2 not supported' },
    { line: 5, label: 'tu', reason: 'tuic not supported' },
  ]);
  assert.equal(
    importSummary(links.length, skipped),
    '3 imported, 2 skipped: hysteria2 not supported; tuic not supported',
  );
  // safe keys beside the labels: flags become their letters, words stay, else type-host-port
  assert.deepEqual(
    links.map((l) => baseName(l.spec, l.label)),
    ['HK-01', 'JP-Tokyo', 'plain'],
  );
  assert.equal(baseName(parseNodeUri('socks5://192.0.2.9:1080'), '香港 01'), 'socks5-192.0.2.9-1080');
  assert.equal(
    baseName(parseNodeUri('socks5://192.0.2.9:1080'), '🇺🇸 US 美国 obfs'),
    'US-obfs',
    'a flag and the same letters written after it count once',
  );
  // a label with raw spaces and Unicode (as some providers write it) stays one link
  const raw = parseLinks(`socks5://192.0.2.3:1080#HK 02 ✈️ ${ss('c', '192.0.2.6', 'x')}`);
  assert.deepEqual(
    raw.links.map((l) => [l.label, l.uri]),
    [
      ['HK 02 ✈️', 'socks5://192.0.2.3:1080#HK%2002%20%E2%9C%88%EF%B8%8F'],
      ['x', ss('c', '192.0.2.6', 'x')],
    ],
  );
});

const CLASH = `
port: 7890
proxies:
  - { name: "🇺🇸 US obfs", type: ss, server: 192.0.2.10, port: 8388, cipher: aes-128-gcm, password: "p@ss", plugin: obfs, plugin-opts: { mode: http, host: bing.com } }
  - name: "🇸🇬 SG ws"
    type: ss
    server: 192.0.2.11
    port: 443
    cipher: chacha20-ietf-poly1305
    password: pw
    plugin: v2ray-plugin
    plugin-opts: { mode: websocket, tls: true, host: cdn.example, path: /ws }
  - { name: "vm", type: vmess, server: v.example, port: 443, uuid: 11111111-2222-3333-4444-555555555555, alterId: 0, cipher: auto, tls: true, servername: sni.example, network: ws, ws-opts: { path: /v, headers: { Host: h.example } } }
  - { name: "vl", type: vless, server: 192.0.2.12, port: 443, uuid: 11111111-2222-3333-4444-555555555555, tls: true, servername: s.example, network: ws, ws-opts: { path: /l }, skip-cert-verify: true }
  - { name: "tj 日本", type: trojan, server: 192.0.2.13, port: 443, password: "t pw", sni: t.example, alpn: [h2, http/1.1] }
  - { name: "s5", type: socks5, server: 192.0.2.14, port: 1080, username: u, password: p }
  - { name: "hp", type: http, server: 192.0.2.15, port: 3128 }
  - { name: "hy2", type: hysteria2, server: 192.0.2.16, port: 443, password: x }
  - { name: "broken", type: ss, server: 192.0.2.17 }
proxy-groups: []
`;

test('Clash YAML proxies: become standard links, labels beside them', () => {
  const { format, entries } = decodeSubscription(CLASH);
  assert.equal(format, 'clash');
  assert.deepEqual(
    entries.map((e) => e.label),
    ['🇺🇸 US obfs', '🇸🇬 SG ws', 'vm', 'vl', 'tj 日本', 's5', 'hp', 'hy2', 'broken'],
  );
  const [obfs, v2, vm, vl, tj, s5, hp, hy2, broken] = entries;
  const obfsSpec = parseNodeUri(obfs!.uri);
  assert.deepEqual(obfsSpec.kind === 'shadowsocks' && [obfsSpec.password, obfsSpec.plugin], [
    'p@ss',
    { name: 'obfs-local', opts: 'obfs=http;obfs-host=bing.com' },
  ]);
  const v2Spec = parseNodeUri(v2!.uri);
  assert.deepEqual(v2Spec.kind === 'shadowsocks' && v2Spec.plugin, {
    name: 'v2ray-plugin',
    opts: 'mode=websocket;tls;host=cdn.example;path=/ws',
  });
  const vmJson = JSON.parse(Buffer.from(vm!.uri.slice('vmess://'.length), 'base64').toString());
  assert.deepEqual(vmJson, {
    v: '2',
    ps: 'vm',
    add: 'v.example',
    port: '443',
    id: '11111111-2222-3333-4444-555555555555',
    aid: '0',
    scy: 'auto',
    net: 'ws',
    type: 'none',
    host: 'h.example',
    path: '/v',
    tls: 'tls',
    sni: 'sni.example',
    alpn: '',
  });
  assert.equal(
    vl!.uri,
    'vless://11111111-2222-3333-4444-555555555555@192.0.2.12:443?encryption=none&security=tls&sni=s.example&type=ws&path=%2Fl&allowInsecure=1#vl',
  );
  assert.equal(
    tj!.uri,
    'trojan://t%20pw@192.0.2.13:443?security=tls&sni=t.example&alpn=h2%2Chttp%2F1.1&type=tcp#tj%20%E6%97%A5%E6%9C%AC',
  );
  assert.equal(s5!.uri, 'socks5://u:p@192.0.2.14:1080#s5');
  assert.equal(hp!.uri, 'http://192.0.2.15:3128#hp');
  assert.equal(hy2!.skip, 'hysteria2 not supported');
  assert.equal(broken!.skip, 'ss: missing server or port');
  const { links, skipped } = parseEntries(entries);
  // vmess/vless/trojan links parse once their outbounds exist; until then they are skipped with the parser's reason
  const labels = ['🇺🇸 US obfs', '🇸🇬 SG ws', 'vm', 'vl', 'tj 日本', 's5', 'hp'];
  assert.deepEqual(
    links.map((l) => l.label),
    links.length === 7 ? labels : labels.filter((l) => !['vm', 'vl', 'tj 日本'].includes(l)),
  );
  assert.ok(skipped.some((s) => s.label === 'hy2' && s.reason === 'hysteria2 not supported'));
  assert.throws(() => decodeSubscription('proxies: [\n'), /does not parse/);
  assert.throws(() => decodeSubscription('proxies: 3\n'), /no proxies: list/);
});

test('SIP008 JSON servers become ss links with their plugins', () => {
  const body = JSON.stringify({
    version: 1,
    servers: [
      {
        id: 'x',
        remarks: '🇩🇪 Frankfurt',
        server: '192.0.2.20',
        server_port: 8388,
        password: 'pw',
        method: 'aes-256-gcm',
        plugin: 'obfs-local',
        plugin_opts: 'obfs=tls;obfs-host=a.example',
      },
      { remarks: 'v6', server: '2001:db8::1', server_port: 8389, password: 'pw', method: 'aes-128-gcm' },
      { remarks: 'no port', server: '192.0.2.21', password: 'pw', method: 'aes-128-gcm' },
    ],
  });
  const { format, entries } = decodeSubscription(body);
  assert.equal(format, 'sip008');
  const { links, skipped } = parseEntries(entries);
  assert.deepEqual(
    links.map((l) => [l.label, l.spec.host, l.spec.port]),
    [
      ['🇩🇪 Frankfurt', '192.0.2.20', 8388],
      ['v6', '2001:db8::1', 8389],
    ],
  );
  assert.deepEqual(links[0]!.spec.kind === 'shadowsocks' && links[0]!.spec.plugin, {
    name: 'obfs-local',
    opts: 'obfs=tls;obfs-host=a.example',
  });
  assert.deepEqual(skipped, [{ line: 3, label: 'no port', reason: 'missing server, server_port, method or password' }]);
  assert.throws(() => decodeSubscription('{"servers": 1}'), /SIP008/);
});

const node = (name: string, uri: string, label?: string): SubNode => ({ name, uri, ...(label ? { label } : {}) });

test('refresh decision: names stay, a dropped node in use is kept, an unused one goes', () => {
  const old = [
    node('HK-01', ss('a', '192.0.2.1', '🇭🇰 香港 01'), '🇭🇰 香港 01'),
    node('JP-Tokyo', ss('b', '192.0.2.2', 'JP Tokyo'), 'JP Tokyo'),
    node('US', ss('u', '192.0.2.9', 'US'), 'US'),
  ];
  // The provider rotated HK's server (same label), dropped JP and US, added SG.
  const fresh = parseLinks([ss('a2', '192.0.2.100', '🇭🇰 香港 01'), ss('s', '192.0.2.3', 'SG')].join('\n')).links;
  const users: Record<string, string[]> = { 'JP-Tokyo': ['tcpNode (default)', 'rules[0]'] };
  const plan = planRefresh(old, fresh, new Set(['office', 'SG']), (n) => users[n] ?? []);
  assert.deepEqual(
    plan.nodes,
    ['HK-01', 'SG-2', 'JP-Tokyo'],
    'HK keeps its key; SG is new (SG taken by another node); JP kept',
  );
  assert.deepEqual(plan.kept, [{ name: 'JP-Tokyo', label: 'JP Tokyo', users: ['tcpNode (default)', 'rules[0]'] }]);
  assert.deepEqual(plan.remove, ['US']);
  assert.deepEqual(plan.added, ['SG-2']);
  assert.deepEqual(
    plan.write.map((w) => [w.name, w.uri]),
    [
      ['HK-01', ss('a2', '192.0.2.100', '🇭🇰 香港 01')],
      ['SG-2', ss('s', '192.0.2.3', 'SG')],
    ],
  );
  // Matched by link when the label changed; nothing to write when nothing changed.
  const same = planRefresh(
    [node('x', 'socks5://192.0.2.3:1080#old')],
    parseLinks('socks5://192.0.2.3:1080#new').links,
    new Set(),
    () => [],
  );
  assert.deepEqual([same.nodes, same.remove, same.write.map((w) => w.label)], [['x'], [], ['new']]);
  const none = planRefresh(
    [node('x', 'socks5://192.0.2.3:1080#a', 'a')],
    parseLinks('socks5://192.0.2.3:1080#a').links,
    new Set(),
    () => [],
  );
  assert.deepEqual(none.write, []);
});

test('refresh timing: interval from updated-at, off never, failures retried later', () => {
  const now = Date.parse('2026-12-07T12:00:00Z');
  assert.equal(isDue({ intervalMs: 3600_000, updatedAt: '2026-12-07T11:30:00Z' }, now), false);
  assert.equal(isDue({ intervalMs: 3600_000, updatedAt: '2026-12-07T10:59:00Z' }, now), true);
  assert.equal(isDue({ intervalMs: 0, updatedAt: null }, now), false);
  assert.equal(isDue({ intervalMs: 3600_000, updatedAt: null }, now), true);
  assert.equal(
    isDue({ intervalMs: 3600_000, updatedAt: '2026-12-07T10:00:00Z' }, now, now + 1000),
    false,
    'a failed try waits for its retry time',
  );
});

function harness(
  t: { after(fn: () => void): void },
  text: string,
  fetchText: (url: string, o: { userAgent: string }) => Promise<string>,
) {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-subs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'gw.yaml');
  writeFileSync(path, text, { mode: 0o600 });
  const build = (f: Parameters<ConstructorParameters<typeof ConfigStore>[1]>[0]) =>
    runConfigOf({ ...f.run, firewall: 'none' }, [], undefined, f);
  let cfg: RunConfig = build(loadConfigFile(path));
  const control = {
    config: () => cfg,
    apply: async (next: RunConfig) => void (cfg = next),
    rulesInKernel: () => true,
    onApplied: () => () => {},
  } as unknown as SupervisorControl;
  const lines: string[] = [];
  const log = createLogger('text', (l: string) => void lines.push(l));
  const api = new ConsoleApi({ store: new ConfigStore(path, build, control), control, log, fetchText });
  return { path, api, lines };
}

test('a refresh that drops a node in use keeps it, says so, and sends the configured User-Agent', async (t) => {
  let served = Buffer.from(
    [ss('a', '192.0.2.1', '🇭🇰 香港 01'), ss('b', '192.0.2.2', 'JP Tokyo'), 'tuic://x@192.0.2.5:1#t'].join('\n'),
  ).toString('base64');
  const agents: string[] = [];
  const h = harness(t, 'nodes: {}\n', async (_url, o) => {
    agents.push(o.userAgent);
    return served;
  });
  const url = 'http://198.51.100.9/sub';
  const call = (method: string, path: string, body?: unknown) =>
    h.api.handle({ method, path, query: new URLSearchParams(), body });
  const add = await call('POST', '/subscriptions', { url, interval: '6h', userAgent: 'ClashForAndroid/2.5' });
  assert.equal(add.status, 200, JSON.stringify(add.body));
  const body = add.body as { report: { summary: string }; nodes: { name: string; label: string }[] };
  assert.equal(body.report.summary, '2 imported, 1 skipped: tuic not supported');
  assert.deepEqual(
    body.nodes.map((n) => [n.name, n.label]),
    [
      ['HK-01', '🇭🇰 香港 01'],
      ['JP-Tokyo', 'JP Tokyo'],
    ],
  );
  assert.match(readFileSync(h.path, 'utf8'), /label: 🇭🇰 香港 01/, 'the label is in the file as written');
  assert.equal((await call('PUT', '/settings', { tcpNode: 'JP-Tokyo' })).status, 200);

  served = ss('a', '192.0.2.1', '🇭🇰 香港 01'); // JP is gone from the provider
  const ref = await call('POST', '/subscriptions/refresh', { url });
  assert.equal(ref.status, 200, JSON.stringify(ref.body));
  const rb = ref.body as {
    report: { summary: string; kept: { name: string }[] };
    tcpNode: string;
    nodes: { name: string }[];
    subscriptions: { kept: string[]; result: string }[];
  };
  assert.deepEqual(
    rb.report.kept.map((k) => k.name),
    ['JP-Tokyo'],
  );
  assert.match(rb.report.summary, /^1 imported; kept 1 no longer listed but in use: JP Tokyo \(tcpNode \(default\)\)$/);
  assert.equal(rb.tcpNode, 'JP-Tokyo');
  assert.deepEqual(
    rb.nodes.map((n) => n.name),
    ['HK-01', 'JP-Tokyo'],
  );
  assert.deepEqual(rb.subscriptions[0]!.kept, ['JP-Tokyo']);
  assert.ok(
    h.lines.some((l) =>
      /no longer lists node 'JP Tokyo' \(JP-Tokyo\), which is in use by tcpNode \(default\): kept the last good copy/.test(
        l,
      ),
    ),
    h.lines.join('\n'),
  );
  assert.deepEqual(agents, ['ClashForAndroid/2.5', 'ClashForAndroid/2.5']);
  assert.match(readFileSync(h.path, 'utf8'), /interval: 6h\n\s+user-agent: ClashForAndroid\/2.5/);

  // Renamed by hand, a kept node stays kept under its new name; deleted, it leaves the lists.
  assert.equal((await call('PUT', '/nodes/JP-Tokyo', { name: 'jp' })).status, 200);
  assert.deepEqual(
    ((await call('GET', '/state')).body as { subscriptions: { kept: string[] }[] }).subscriptions[0]!.kept,
    ['jp'],
  );
  assert.equal((await call('PUT', '/settings', { tcpNode: 'HK-01' })).status, 200);
  assert.equal((await call('DELETE', '/nodes/jp')).status, 200);
  const afterDelete = ((await call('GET', '/state')).body as { subscriptions: { kept: string[]; nodes: string[] }[] })
    .subscriptions[0]!;
  assert.deepEqual([afterDelete.nodes, afterDelete.kept], [['HK-01'], []]);
  served = [ss('a', '192.0.2.1', '🇭🇰 香港 01'), ss('b', '192.0.2.2', 'JP Tokyo')].join('\n');
  const back = await call('POST', '/subscriptions/refresh', { url });
  assert.deepEqual(
    (back.body as { nodes: { name: string }[] }).nodes.map((n) => n.name),
    ['HK-01', 'JP-Tokyo'],
    'served again: back under its label-made key',
  );
  served = ss('a', '192.0.2.1', '🇭🇰 香港 01');

  // Once nothing uses it, the next refresh lets it go; an empty or broken body changes nothing.
  assert.equal((await call('PUT', '/settings', { tcpNode: 'direct' })).status, 200);
  const gone = await call('POST', '/subscriptions/refresh', { url });
  assert.deepEqual(
    (gone.body as { nodes: { name: string }[] }).nodes.map((n) => n.name),
    ['HK-01'],
  );
  served = '<html>maintenance</html>';
  const broken = await call('POST', '/subscriptions/refresh', { url });
  assert.equal(broken.status, 400);
  const st = (await call('GET', '/state')).body as { nodes: { name: string }[]; subscriptions: { error?: string }[] };
  assert.deepEqual(
    st.nodes.map((n) => n.name),
    ['HK-01'],
  );
  assert.match(st.subscriptions[0]!.error ?? '', /not a link list/);
});
