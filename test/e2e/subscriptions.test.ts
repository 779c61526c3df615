// Subscriptions end to end: a provider in the node's namespace serves a base64 link list,
// Clash YAML and SIP008 JSON over HTTP; the console of a real gateway imports each (labels
// as written, skips with reasons, the Clash-like User-Agent), a LAN host then reaches the
// remote through a node that came from the Clash file (Shadowsocks behind obfs), and a
// refresh that drops that node keeps it, says so, and traffic keeps flowing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Host } from '../../src/netlab/lab.js';
import { gatewayLabAddresses, withGatewayLab } from '../helpers/gateway-lab.js';
import { startPeer, startTranproxy, tranproxyBin, waitForPort } from '../helpers/lab.js';

const IP = gatewayLabAddresses(92);
const CONSOLE = '127.0.0.1:8080';
const PASSWORD = 'subscription test';
const PROVIDER = `http://${IP.node}:8000`;

// A provider that logs each request's User-Agent (one JSON line per request) and serves files.
const PROVIDER_PY = `
import http.server, json, sys
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        print(json.dumps({"path": self.path, "ua": self.headers.get("User-Agent")}), flush=True)
        return super().do_GET()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer.allow_reuse_address = True
s = http.server.ThreadingHTTPServer((sys.argv[1], 8000), lambda *a: H(*a, directory=sys.argv[2]))
print("listening", flush=True)
s.serve_forever()
`;

// One request per `node -e` run inside the gateway's netns (the console listens on its loopback).
const CLIENT = `
const [method, url, body, headers] = JSON.parse(process.argv[1]);
fetch(url, { method, headers: { 'content-type': 'application/json', ...headers }, ...(body === null ? {} : { body: JSON.stringify(body) }) })
  .then(async (r) => console.log(JSON.stringify({ status: r.status, cookie: r.headers.get('set-cookie'), body: await r.json().catch(() => null) })),
        (e) => console.log(JSON.stringify({ status: 0, body: String(e) })));
`;

class Api {
  private cookie = '';
  private csrf = '';
  constructor(private readonly gw: Host) {}
  async call(method: string, path: string, body: unknown = null): Promise<{ status: number; body: any }> {
    // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON under test
    const headers: Record<string, string> = {};
    if (this.cookie) headers.cookie = this.cookie;
    if (this.csrf) headers['x-csrf-token'] = this.csrf;
    const r = await this.gw.run(
      process.execPath,
      ['-e', CLIENT, JSON.stringify([method, `http://${CONSOLE}/api${path}`, body, headers])],
      { allowFailure: true },
    );
    const reply = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
    if (reply.cookie) this.cookie = reply.cookie.split(';')[0];
    return reply;
  }
  async login(): Promise<void> {
    const r = await this.call('POST', '/login', { password: PASSWORD });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    this.csrf = r.body.csrf;
  }
}

const ssLink = (pw: string, port: number, label: string, plugin = '') =>
  `ss://${Buffer.from(`aes-256-gcm:${pw}`).toString('base64url')}@${IP.node}:${port}${plugin ? `/?plugin=${encodeURIComponent(plugin)}` : ''}#${encodeURIComponent(label)}`;

function clashYaml(withObfs: boolean): string {
  return [
    'mixed-port: 7890',
    'proxies:',
    ...(withObfs
      ? [
          `  - { name: "🇺🇸 US 美国 obfs", type: ss, server: ${IP.node}, port: 8389, cipher: aes-256-gcm, password: obfs-pw, plugin: obfs, plugin-opts: { mode: http, host: www.bing.com } }`,
        ]
      : []),
    `  - { name: "🇯🇵 Tokyo", type: ss, server: ${IP.node}, port: 8388, cipher: aes-256-gcm, password: plain-pw }`,
    `  - { name: "tu", type: tuic, server: ${IP.node}, port: 443, uuid: 11111111-2222-3333-4444-555555555555, password: x }`,
    'proxy-groups: []',
    '',
  ].join('\n');
}

async function curlClient(lan: Host, url: string): Promise<string | undefined> {
  const r = await lan.run('curl', ['-sS', '--max-time', '8', url], { allowFailure: true });
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  return line ? (JSON.parse(line) as { client: { address: string } }).client.address : undefined;
}

test('subscriptions over HTTP in each format: labels kept, skips explained, Clash User-Agent, a dropped node in use kept', {
  timeout: 180_000,
}, async () => {
  await withGatewayLab({ net: 92, tmpPrefix: 'tpx-subs-' }, async (g) => {
    await startPeer(g.remote, 'echo_headers', 80);
    g.node.spawn('ss-server', ['-s', IP.node, '-p', '8388', '-k', 'plain-pw', '-m', 'aes-256-gcm']);
    g.node.spawn('ss-server', [
      '-s',
      IP.node,
      '-p',
      '8389',
      '-k',
      'obfs-pw',
      '-m',
      'aes-256-gcm',
      '--plugin',
      'obfs-server',
      '--plugin-opts',
      'obfs=http',
    ]);
    const site = join(g.tmp, 'site');
    mkdirSync(site);
    const list = [
      ssLink('plain-pw', 8388, '🇭🇰 香港 01'),
      'hysteria2://pw@10.92.2.2:443#hy2',
      ssLink('plain-pw', 8388, 'HK 02 ✈️'),
    ].join('\r\n');
    writeFileSync(
      join(site, 'b64'),
      Buffer.from(list)
        .toString('base64url')
        .replace(/(.{60})/g, '$1\r\n'),
    );
    writeFileSync(join(site, 'clash.yaml'), clashYaml(true));
    writeFileSync(
      join(site, 'sip008.json'),
      JSON.stringify({
        version: 1,
        servers: [
          {
            id: '1',
            remarks: '🇩🇪 Frankfurt',
            server: IP.node,
            server_port: 8388,
            password: 'plain-pw',
            method: 'aes-256-gcm',
          },
        ],
      }),
    );
    const provider = g.node.spawn('python3', ['-c', PROVIDER_PY, IP.node, site]);
    await provider.waitForOutput(/^listening$/m);
    await waitForPort(g.node, 8388);
    await waitForPort(g.node, 8389);

    const config = join(g.tmp, 'gateway.yaml');
    writeFileSync(
      config,
      [
        'mode: tproxy',
        'capture: prerouting',
        `in-interfaces: [${g.lanIf}]`,
        'family: ipv4',
        'bypass-private: false',
        'connect-timeout: 3s',
        'default: direct',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    const passwd = await g.gw.run(
      process.execPath,
      [tranproxyBin(), 'console', 'passwd', '--config', config, '--password-stdin'],
      { input: `${PASSWORD}\n` },
    );
    assert.equal(passwd.status, 0, passwd.stderr);
    const proxy = await startTranproxy(g.gw, ['run', '--config', config, '--console', CONSOLE, '--workers', '1'], {
      timeoutMs: 20_000,
    });
    await proxy.waitForOutput(/console ready:/);
    const api = new Api(g.gw);
    await api.login();

    // ── base64 (URL-safe, no padding, CRLF-wrapped) link list
    const b64 = await api.call('POST', '/subscriptions', { url: `${PROVIDER}/b64` });
    assert.equal(b64.status, 200, JSON.stringify(b64.body));
    assert.equal(b64.body.report.format, 'base64');
    assert.equal(b64.body.report.summary, '2 imported, 1 skipped: hysteria2 not supported');
    // ── Clash YAML
    const clash = await api.call('POST', '/subscriptions', { url: `${PROVIDER}/clash.yaml` });
    assert.equal(clash.status, 200, JSON.stringify(clash.body));
    assert.equal(clash.body.report.format, 'clash');
    assert.equal(clash.body.report.summary, '2 imported, 1 skipped: tuic not supported');
    // ── SIP008
    const sip = await api.call('POST', '/subscriptions', { url: `${PROVIDER}/sip008.json`, interval: '30m' });
    assert.equal(sip.status, 200, JSON.stringify(sip.body));
    assert.equal(sip.body.report.format, 'sip008');
    assert.equal(sip.body.report.summary, '1 imported');

    const nodes = sip.body.nodes as { name: string; label: string; type: string; plugin?: string }[];
    assert.deepEqual(
      nodes.map((n) => [n.name, n.label]),
      [
        ['HK-01', '🇭🇰 香港 01'],
        ['HK-02', 'HK 02 ✈️'],
        ['US-obfs', '🇺🇸 US 美国 obfs'],
        ['JP-Tokyo', '🇯🇵 Tokyo'],
        ['DE-Frankfurt', '🇩🇪 Frankfurt'],
      ],
    );
    assert.equal(nodes[2]!.plugin, 'obfs-local');
    const file = readFileSync(config, 'utf8');
    assert.match(file, /label: 🇺🇸 US 美国 obfs/, 'labels are in the file as written');
    assert.match(file, /interval: 30m/);
    const uas = provider
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { path: string; ua: string });
    assert.deepEqual(
      uas.map((u) => u.path),
      ['/b64', '/clash.yaml', '/sip008.json'],
    );
    assert.ok(
      uas.every((u) => /^clash\.meta/.test(u.ua)),
      JSON.stringify(uas),
    );

    // ── A LAN host through the node the Clash file brought (ss behind obfs)
    assert.equal((await api.call('PUT', '/settings', { tcpNode: 'US-obfs' })).status, 200);
    assert.equal(await curlClient(g.lan, `http://${IP.remote}/`), IP.nodeSideOfRemote);
    await proxy.waitForOutput(/conn .*via=US-obfs route=default/);

    // ── The provider drops it: the refresh keeps it (in use), says so; traffic still flows
    writeFileSync(join(site, 'clash.yaml'), clashYaml(false));
    const ref = await api.call('POST', '/subscriptions/refresh', { url: `${PROVIDER}/clash.yaml` });
    assert.equal(ref.status, 200, JSON.stringify(ref.body));
    assert.equal(
      ref.body.report.summary,
      '1 imported, 1 skipped: tuic not supported; kept 1 no longer listed but in use: 🇺🇸 US 美国 obfs (tcpNode (default))',
    );
    const sub = (ref.body.subscriptions as { url: string; kept?: string[] }[]).find((s) =>
      s.url.endsWith('/clash.yaml'),
    )!;
    assert.deepEqual(sub.kept, ['US-obfs']);
    await proxy.waitForOutput(
      /no longer lists node '🇺🇸 US 美国 obfs' \(US-obfs\), which is in use by tcpNode \(default\): kept the last good copy/,
    );
    assert.equal(await curlClient(g.lan, `http://${IP.remote}/`), IP.nodeSideOfRemote, 'still through the kept node');

    // ── A provider that answers with something else changes nothing and says why
    writeFileSync(join(site, 'clash.yaml'), '<html>down for maintenance</html>');
    const broken = await api.call('POST', '/subscriptions/refresh', { url: `${PROVIDER}/clash.yaml` });
    assert.equal(broken.status, 400);
    assert.match(broken.body.errors[0].message, /not a link list/);
    const after = await api.call('GET', '/state');
    assert.deepEqual(
      (after.body.nodes as { name: string }[]).map((n) => n.name),
      ['HK-01', 'HK-02', 'US-obfs', 'JP-Tokyo', 'DE-Frankfurt'],
    );
    await proxy.stop();
  });
});
