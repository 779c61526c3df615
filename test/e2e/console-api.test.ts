// Issue 9, the console's HTTP API end to end (no browser): a real gateway in a netns lab
// with a real Shadowsocks node, driven with fetch from inside the gateway's namespace.
//
//   lan ─ gw (tranproxy --console 127.0.0.1:8080) ─ node (ss-server) ─ web (HTTP + TCP echo)
//
// The gateway has no route to `web`: a LAN host reaches it only with the switch on and the
// ss node as the TCP node. Every change is checked three ways: the API's answer, the config
// file, and the kernel (`nft list ruleset` in the gateway).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Host, LabProcess } from '../../src/netlab/lab.js';
import { buildConsoleLab, setConsolePassword, startNodeLabPeers } from '../helpers/console-lab.js';
import { peerPath, startTranproxy, tranproxyBin, waitForPort, withLab } from '../helpers/lab.js';

const NET = 76;
const NODE_IP = `10.${NET}.2.2`;
const WEB = `10.${NET}.3.2`;
const NODE_SIDE_OF_WEB = `10.${NET}.3.1`;
const LAN_CLIENT = `10.${NET}.1.2`;
const CONSOLE = '127.0.0.1:8080';
const PASSWORD = 'api test password';
const SS_PORT = 8388;
const SS_LINK = `ss://${Buffer.from('aes-256-gcm:api-secret').toString('base64url')}@${NODE_IP}:${SS_PORT}#lab-ss`;
const CHECK_TARGET = `${WEB}:80`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Reply {
  status: number;
  headers: Record<string, string>;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON from the API under test
}

// One request per `node` run inside the gateway netns (the test process stays in the host's).
const CLIENT = `
const [method, url, body, headers] = JSON.parse(process.argv[1]);
fetch(url, { method, headers: { 'content-type': 'application/json', ...headers }, ...(body === null ? {} : { body: JSON.stringify(body) }) })
  .then(async (r) => {
    const text = await r.text();
    let json; try { json = JSON.parse(text); } catch { json = text; }
    console.log(JSON.stringify({ status: r.status, headers: Object.fromEntries(r.headers), body: json }));
  }, (e) => { console.log(JSON.stringify({ status: 0, headers: {}, body: String(e) })); });
`;

class Api {
  cookie = '';
  csrf = '';
  constructor(private readonly gw: Host) {}

  async call(
    method: string,
    path: string,
    body: unknown = null,
    extra: { csrf?: string | null; origin?: string } = {},
  ): Promise<Reply> {
    const headers: Record<string, string> = {};
    if (this.cookie) headers.cookie = this.cookie;
    const csrf = extra.csrf === undefined ? this.csrf : extra.csrf;
    if (csrf && method !== 'GET') headers['x-csrf-token'] = csrf;
    if (extra.origin) headers.origin = extra.origin;
    const r = await this.gw.run(
      process.execPath,
      ['-e', CLIENT, JSON.stringify([method, `http://${CONSOLE}${path}`, body, headers])],
      { allowFailure: true },
    );
    const line = r.stdout.trim().split('\n').pop() ?? '';
    assert.ok(line.startsWith('{'), `no answer from the console: ${r.stdout} ${r.stderr}`);
    const reply = JSON.parse(line) as Reply;
    const setCookie = reply.headers['set-cookie'];
    if (setCookie) this.cookie = setCookie.split(';')[0]!;
    return reply;
  }

  async login(password = PASSWORD): Promise<Reply> {
    const r = await this.call('POST', '/api/login', { password }, { csrf: null });
    if (r.status === 200) this.csrf = r.body.csrf;
    return r;
  }
}

async function nftRuleset(gw: Host): Promise<string> {
  return (await gw.run('nft', ['list', 'ruleset'])).stdout;
}

async function curlFromLan(lan: Host, url: string): Promise<string | undefined> {
  const r = await lan.run('curl', ['-sS', '--max-time', '5', url], { allowFailure: true });
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  return line ? (JSON.parse(line) as { client: { address: string } }).client.address : undefined;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

test('console API: login, CSRF, ss:// node, switch on, live connection and close, check, invalid rule, live mode switch, switch off, restart keeps settings', {
  timeout: 240_000,
}, async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'tpx-console-api-'));
  try {
    await withLab(
      async (lab) => {
        const cl = buildConsoleLab(lab, NET, { node: true });
        const { lan, gw, node, lanIf } = cl;
        await startNodeLabPeers(cl, 'api-secret', SS_PORT);

        const config = join(tmp, 'gateway.yaml');
        const original = [
          '# gateway for the console API test',
          'mode: tproxy            # clients keep their addresses',
          'capture: prerouting',
          `in-interfaces: [${lanIf}]`,
          'family: ipv4',
          'bypass-private: false   # the lab uses private addresses',
          'connect-timeout: 3s',
          'enabled: false',
          'default: direct',
          'rules:',
          '  - domain-suffix: [corp.example]',
          '    outbound: direct',
          `check-targets: ["${CHECK_TARGET}"]`,
          '',
        ].join('\n');
        writeFileSync(config, original);

        // Without a password the console refuses to start, and says how to fix it.
        const nopw = await gw.run(process.execPath, [tranproxyBin(), 'run', '--config', config, '--console', CONSOLE], {
          allowFailure: true,
        });
        assert.equal(nopw.status, 2);
        assert.match(nopw.stderr, /console passwd --config/);
        const noConfig = await gw.run(
          process.execPath,
          [tranproxyBin(), 'run', '--mode', 'tproxy', '--capture', 'prerouting', '--console', CONSOLE],
          { allowFailure: true },
        );
        assert.equal(noConfig.status, 2);
        assert.match(noConfig.stderr, /--console needs --config FILE/);

        await setConsolePassword(gw, config, PASSWORD);
        const withHash = readFileSync(config, 'utf8');
        assert.match(withHash, /\nconsole:\n {2}password-hash: scrypt\$\d+\$\d+\$\d+\$/);
        assert.ok(
          withHash.startsWith('# gateway for the console API test\nmode: tproxy # clients keep their addresses\n'),
          'comments kept',
        );
        assert.doesNotMatch(withHash, new RegExp(PASSWORD));

        let proxy: LabProcess = await startTranproxy(gw, ['run', '--config', config, '--console', CONSOLE], {
          timeoutMs: 20_000,
        });
        try {
          await proxy.waitForOutput(/console ready: url=http:\/\/127\.0\.0\.1:8080\//);
          assert.doesNotMatch(await nftRuleset(gw), /table inet tranproxy/, 'enabled: false → no rules at start');
          const api = new Api(gw);

          // ── Auth
          assert.equal((await api.call('GET', '/api/state')).status, 401);
          const wrong = await api.login('not it');
          assert.equal(wrong.status, 401);
          assert.ok(wrong.body.error);
          const ok = await api.login();
          assert.equal(ok.status, 200);
          assert.match(api.cookie, /^tpx_session=/);
          assert.equal(
            (await api.call('PUT', '/api/settings', { enabled: true }, { csrf: null })).status,
            403,
            'no CSRF token',
          );
          assert.equal(
            (await api.call('PUT', '/api/settings', { enabled: true }, { origin: 'http://evil.example' })).status,
            403,
            'foreign Origin',
          );
          assert.doesNotMatch(await nftRuleset(gw), /table inet tranproxy/, 'refused requests changed nothing');

          // ── Node: paste the ss:// link, test it
          const added = await api.call('POST', '/api/nodes', { links: SS_LINK });
          assert.equal(added.status, 200, JSON.stringify(added.body));
          assert.deepEqual(added.body.added, ['lab-ss']);
          assert.deepEqual(added.body.nodes, [
            {
              name: 'lab-ss',
              label: 'lab-ss',
              type: 'ss',
              server: NODE_IP,
              port: SS_PORT,
              uri: `ss://aes-256-gcm:***@${NODE_IP}:${SS_PORT}#lab-ss`,
            },
          ]);
          assert.match(readFileSync(config, 'utf8'), /\nnodes:\n {2}lab-ss: ss:\/\//);
          const bad = await api.call('POST', '/api/nodes', { links: 'ss://nonsense\nwireguard://k@192.0.2.1:51820' });
          assert.equal(bad.status, 400);
          assert.equal(bad.body.errors[0].field, 'links');
          assert.match(
            bad.body.errors[0].message,
            /^nothing imported: 0 imported, 2 skipped: .+; wireguard not supported$/,
          );
          // The node test is an HTTP GET through the node of the configured URL (no internet here).
          const testUrl = await api.call('PUT', '/api/settings', { testUrl: `http://${WEB}/generate_204` });
          assert.equal(testUrl.status, 200, JSON.stringify(testUrl.body));
          assert.equal(testUrl.body.testUrl, `http://${WEB}/generate_204`);
          const lat = await api.call('POST', '/api/nodes/lab-ss/test');
          assert.equal(lat.status, 200);
          assert.equal(lat.body.ok, true, JSON.stringify(lat.body));
          assert.equal(typeof lat.body.delayMs, 'number');

          // ── TCP node, switch on
          const on = await api.call('PUT', '/api/settings', { tcpNode: 'lab-ss', enabled: true });
          assert.equal(on.status, 200, JSON.stringify(on.body));
          assert.equal(on.body.enabled, true);
          assert.equal(on.body.applied, true);
          assert.equal(on.body.tcpNode, 'lab-ss');
          assert.match(await nftRuleset(gw), /table inet tranproxy/);
          assert.match(await nftRuleset(gw), /tproxy/);
          assert.equal(
            await curlFromLan(lan, `http://${WEB}/`),
            NODE_SIDE_OF_WEB,
            'the LAN host goes through the ss node',
          );

          // ── Live: a held connection appears, with its node; closing it cuts the client
          const hold = lan.spawn('python3', [peerPath('hold_client.py'), WEB, '7']);
          await hold.waitForOutput(/^connected$/m);
          hold.child.stdin!.write('ping\n');
          await hold.waitForOutput(/^echo: ping$/m);
          const conn = await until('the held connection in /api/connections', async () => {
            const r = await api.call('GET', '/api/connections');
            return (
              r.body as {
                id: string;
                src: string;
                dst: string;
                node: string;
                up: number;
                down: number;
                startedAt: string;
              }[]
            ).find((c) => c.dst === `${WEB}:7` && c.up > 0);
          });
          assert.ok(conn.up >= 5 && conn.down >= 5, `live byte counts: up ${conn.up} down ${conn.down}`);
          assert.match(conn.src, new RegExp(`^${LAN_CLIENT.replace(/\./g, '\\.')}:\\d+$`));
          assert.equal(conn.node, 'lab-ss');
          assert.match(conn.id, /^\d+-\d+$/);
          assert.ok(Date.parse(conn.startedAt) <= Date.now());
          assert.equal((await api.call('DELETE', `/api/connections/${conn.id}`)).status, 200);
          hold.child.stdin!.write('still there?\n');
          await hold.waitForOutput(/^closed$/m);
          assert.equal((await api.call('DELETE', `/api/connections/${conn.id}`)).status, 404);

          // ── Check: direct has no route from the gateway; through the node it works
          const check = await api.call('POST', '/api/check', {});
          assert.equal(check.status, 200, JSON.stringify(check.body));
          const res = check.body.results[0];
          assert.equal(res.target, CHECK_TARGET);
          assert.equal(res.direct.ok, false);
          assert.equal(res.node.ok, true, JSON.stringify(res.node));
          assert.equal(res.node.node, 'lab-ss');

          // ── Invalid rule: 400 with the field; file, rules and kernel untouched
          const fileBefore = readFileSync(config, 'utf8');
          const rulesetBefore = await nftRuleset(gw);
          const badRule = await api.call('PUT', '/api/rules', {
            rules: [
              { 'domain-suffix': ['corp.example'], outbound: 'direct' },
              { cidr: ['10.0.0.0/99'], outbound: 'direct' },
            ],
          });
          assert.equal(badRule.status, 400);
          assert.equal(badRule.body.errors[0].field, 'rules[1].cidr');
          const unknownOutbound = await api.call('PUT', '/api/rules', {
            rules: [{ cidr: ['10.0.0.0/8'], outbound: 'lab-sss' }],
          });
          assert.equal(unknownOutbound.body.errors[0].field, 'rules[0].outbound');
          assert.match(unknownOutbound.body.errors[0].message, /did you mean 'lab-ss'/);
          assert.equal(readFileSync(config, 'utf8'), fileBefore);
          assert.equal(await nftRuleset(gw), rulesetBefore);
          assert.equal(await curlFromLan(lan, `http://${WEB}/`), NODE_SIDE_OF_WEB);

          // ── Mode switched live: REDIRECT, traffic still flows through the node
          const redirect = await api.call('PUT', '/api/settings', { mode: 'redirect' });
          assert.equal(redirect.status, 200, JSON.stringify(redirect.body));
          assert.equal(redirect.body.mode, 'redirect');
          const nat = await nftRuleset(gw);
          assert.match(nat, /redirect to :15001/);
          assert.doesNotMatch(nat, /tproxy/);
          assert.equal(
            await curlFromLan(lan, `http://${WEB}/`),
            NODE_SIDE_OF_WEB,
            'REDIRECT mode: still through the node',
          );
          assert.equal((await api.call('PUT', '/api/settings', { mode: 'tproxy' })).status, 200);
          assert.equal(await curlFromLan(lan, `http://${WEB}/`), NODE_SIDE_OF_WEB, 'back to TPROXY');

          // ── Subscription (a base64 list served from the node's side), then removed again
          const subDir = join(tmp, 'sub');
          mkdirSync(subDir);
          writeFileSync(
            join(subDir, 'list'),
            Buffer.from(`socks5://${NODE_IP}:1080#sub-a\n${SS_LINK.replace('#lab-ss', '#sub-b')}\n`).toString('base64'),
          );
          const httpd = node.spawn('python3', ['-m', 'http.server', '8000', '--bind', NODE_IP, '--directory', subDir]);
          await waitForPort(node, 8000);
          const subUrl = `http://${NODE_IP}:8000/list`;
          const sub = await api.call('POST', '/api/subscriptions', { url: subUrl });
          assert.equal(sub.status, 200, JSON.stringify(sub.body));
          assert.deepEqual(sub.body.subscriptions[0].nodes, ['sub-a', 'sub-b']);
          assert.deepEqual(
            sub.body.nodes.map((n: { name: string }) => n.name),
            ['lab-ss', 'sub-a', 'sub-b'],
          );
          writeFileSync(join(subDir, 'list'), `socks5://${NODE_IP}:1081#sub-c\n`);
          const refreshed = await api.call('POST', '/api/subscriptions/refresh', { url: subUrl });
          assert.deepEqual(
            refreshed.body.nodes.map((n: { name: string }) => n.name),
            ['lab-ss', 'sub-c'],
            'replaced as a group',
          );
          const unsub = await api.call('DELETE', `/api/subscriptions?url=${encodeURIComponent(subUrl)}`);
          assert.equal(unsub.status, 200);
          assert.deepEqual(
            unsub.body.nodes.map((n: { name: string }) => n.name),
            ['lab-ss'],
          );
          await httpd.stop();

          // ── DNS: the forwarder starts on the gateway; later changes hand its port over
          const dns = await api.call('PUT', '/api/dns', { nameservers: [NODE_IP], cache: true });
          assert.equal(dns.status, 200, JSON.stringify(dns.body));
          assert.deepEqual(dns.body.dns, { nameservers: [NODE_IP], cache: true, fakeIp: false });
          await waitForPort(gw, 53, { udp: true });
          assert.deepEqual((await api.call('POST', '/api/dns/flush')).body, { flushed: 1 });
          const fake = await api.call('PUT', '/api/dns', { fakeIp: true });
          assert.equal(fake.status, 200, JSON.stringify(fake.body));
          assert.equal(fake.body.dns.fakeIp, true);
          assert.equal(
            await curlFromLan(lan, `http://${WEB}/`),
            NODE_SIDE_OF_WEB,
            'still through the node after the DNS changes',
          );

          // ── Switch off: rules gone, the proxy (and console) keep running
          const off = await api.call('PUT', '/api/settings', { enabled: false });
          assert.equal(off.status, 200);
          assert.equal(off.body.applied, false);
          assert.doesNotMatch(await nftRuleset(gw), /table inet tranproxy/);
          assert.match(readFileSync(config, 'utf8'), /\nenabled: false\n/);
          assert.notEqual(await curlFromLan(lan, `http://${WEB}/`), NODE_SIDE_OF_WEB);
          hold.child.stdin!.end();
          await hold.stop();
          await proxy.stop();

          // ── Restart: everything set through the console is still there
          proxy = await startTranproxy(gw, ['run', '--config', config, '--console', CONSOLE], { timeoutMs: 20_000 });
          await proxy.waitForOutput(/console ready/);
          const again = new Api(gw);
          assert.equal((await again.call('GET', '/api/state')).status, 401, 'sessions do not survive a restart');
          assert.equal((await again.login()).status, 200);
          const st = await again.call('GET', '/api/state');
          assert.equal(st.body.enabled, false);
          assert.equal(st.body.applied, false);
          assert.equal(st.body.tcpNode, 'lab-ss');
          assert.equal(st.body.mode, 'tproxy');
          assert.deepEqual(
            st.body.nodes.map((n: { name: string }) => n.name),
            ['lab-ss'],
          );
          assert.deepEqual(st.body.checkTargets, [CHECK_TARGET]);
          assert.deepEqual(st.body.lan.interfaces, [lanIf]);
          const finalText = readFileSync(config, 'utf8');
          assert.ok(finalText.startsWith('# gateway for the console API test\n'), 'comments survive every edit');
          assert.match(finalText, /bypass-private: false # the lab uses private addresses/);
        } catch (e) {
          process.stderr.write(`--- tranproxy output (last 6000 chars):\n${proxy.output().slice(-6000)}\n---\n`);
          throw e;
        } finally {
          await proxy.stop();
        }
        assert.doesNotMatch(await nftRuleset(gw), /table inet tranproxy/, 'nothing left behind');
      },
      { prefix: 'tpxapi' },
    );
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
