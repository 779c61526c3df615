// Issue 16: flows through one SOCKS5 or Shadowsocks node (--upstream, no rules) are served by the splice
// engine itself: its loop accepts, sniffs the domain, connects to the node, speaks SOCKS5 on
// the raw descriptor and splices, with no Node socket per flow. In the gateway lab, with real
// microsocks (with and without auth) and a hostile node (garbage, early close, refusal).
// relay=kernel in the ready line is what tells the engine's path from the JS one (which
// says relay=splice: it hands the pair to the engine only after its own handshake).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Host } from '../../src/netlab/lab.js';
import { gatewayLabAddresses, gatewayRunArgs, microsocks, withGatewayLab } from '../helpers/gateway-lab.js';
import { startPeer, startTranproxy, waitForPort } from '../helpers/lab.js';
import { stopGracefully } from '../helpers/procs.js';
import { until } from '../helpers/wait.js';

const NET = 66;
const { node: NODE_IP, remote: REMOTE, nodeSideOfRemote: NODE_SIDE_OF_REMOTE } = gatewayLabAddresses(NET);

/** Connects, writes argv[3], prints what came back and how it ended: "DATA|end", "DATA|ECONNRESET", … */
const CLIENT = `
const net = require('node:net');
// "x*N" stands for N x's (arguments have a size limit).
const arg = (a) => (a && a.startsWith('x*') ? 'x'.repeat(Number(a.slice(2))) : a);
const send = arg(process.argv[3]);
const until = arg(process.argv[4]);
const s = net.connect({ host: process.argv[1], port: Number(process.argv[2]) });
const got = [];
let shown = false;
const show = (how) => { if (shown) return; shown = true; console.log(Buffer.concat(got).toString() + '|' + how); s.destroy(); };
s.on('connect', () => { if (send) s.write(send); });
s.on('data', (d) => { got.push(d); if (until && Buffer.concat(got).toString().includes(until)) show('match'); });
s.on('end', () => show('end'));
s.on('error', (e) => show(e.code));
setTimeout(() => show('timeout'), Number(process.argv[5] || 5000));
`;

async function exchange(h: Host, port: number, send: string, until = ''): Promise<string> {
  const r = await h.run(process.execPath, ['-e', CLIENT, REMOTE, String(port), send, until], { allowFailure: true });
  return r.stdout.trim();
}

/** A SOCKS5 node that misbehaves by port: 1090 garbage, 1091 closes after the greeting, 1092 refuses, 1093 answers with the target's banner in the same segment. */
const HOSTILE = `
const net = require('node:net');
const modes = { 1090: 'garbage', 1091: 'close', 1092: 'refuse', 1093: 'banner' };
for (const [port, mode] of Object.entries(modes)) {
  net.createServer((s) => {
    s.on('error', () => {});
    let step = 0;
    s.on('data', () => {
      if (++step > 2) return;
      if (mode === 'garbage') return s.write('HTTP/1.1 400 Bad Request\\r\\n\\r\\n');
      if (mode === 'close') return s.destroy();
      if (step === 1) return s.write(Buffer.from([5, 0]));
      const ok = Buffer.from([5, mode === 'refuse' ? 5 : 0, 0, 1, 0, 0, 0, 0, 0, 0]);
      s.write(mode === 'banner' ? Buffer.concat([ok, Buffer.from('banner\\n')]) : ok);
    });
  }).listen(Number(port), process.argv[2]);
}
console.log('listening');
`;

/** The data-plane child of the supervisor `pid` (asserts there is exactly one). */
function dataPlanePid(pid: number): number {
  const children = readdirSync(`/proc/${pid}/task`).flatMap((t) =>
    readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean),
  );
  assert.equal(children.length, 1, `supervisor ${pid} should have one data-plane child, has ${children.join(',')}`);
  return Number(children[0]);
}

/** Socket and pipe descriptors of `pid`. */
function socketsAndPipes(pid: number): { sockets: number; pipes: number } {
  const n = { sockets: 0, pipes: 0 };
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const kind = /^(socket|pipe):/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
      if (kind === 'socket') n.sockets++;
      else if (kind === 'pipe') n.pipes++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

/** Each engine thread keeps up to 64 empty pipes (2 descriptors each) for its next flows. */
const PIPE_POOLS_FDS = 2 * 2 * 64;

test('through one SOCKS5 node the engine serves every flow: relay=kernel, node address at the target, domain, auth, /connections and close, fds back to baseline', {
  timeout: 90_000,
}, async () => {
  await withGatewayLab({ net: NET, tmpPrefix: 'tpx-node-engine-', remoteNames: ['www.remote.test'] }, async (g) => {
    await startPeer(g.remote, 'echo_headers', 80);
    await startPeer(g.remote, 'tcp_echo', 7);
    for (const [port, auth] of [
      [1080, undefined],
      [1081, ['alice', 's3cret']],
    ] as const) {
      await microsocks(g.node, NODE_IP, port, auth ? [...auth] : undefined);
      const uri = `socks5://${auth ? `${auth[0]}:${auth[1]}@` : ''}${NODE_IP}:${port}`;
      const proxy = await startTranproxy(
        g.gw,
        gatewayRunArgs(g, ['--upstream', uri, '--workers', '2', '--admin', '127.0.0.1:15000']),
      );
      // The engine's path; --workers 2 became two engine threads in one data-plane process.
      assert.match(proxy.output(), /ready: .* relay=kernel( |$)/m, proxy.output());
      const child = dataPlanePid(proxy.pid);
      const r = await g.lan.run('curl', ['-sS', '--max-time', '6', `http://${REMOTE}/via-node`]);
      assert.match(r.stdout, new RegExp(`"address": ?"${NODE_SIDE_OF_REMOTE.replace(/\./g, '\\.')}"`), r.stdout);
      await proxy.waitForOutput(/conn .*dst=10\.66\.3\.2:80 .*via=upstream route=default .*close=eof relay=splice/);
      // The sniffed domain is what the node is asked for (it resolves it through its hosts file).
      const named = await g.lan.run('curl', [
        '-sS',
        '--max-time',
        '6',
        '--resolve',
        `www.remote.test:80:${REMOTE}`,
        'http://www.remote.test/',
      ]);
      assert.match(named.stdout, /www\.remote\.test/);
      await proxy.waitForOutput(/conn .*domain=www\.remote\.test via=upstream route=default .*close=eof/);
      if (auth) {
        await stopGracefully(proxy);
        continue;
      }
      const baseline = socketsAndPipes(child);
      const echoes = await Promise.all(
        Array.from({ length: 20 }, (_, i) => exchange(g.lan, 7, `echo ${i}\n`, `echo ${i}\n`)),
      );
      for (const [i, e] of echoes.entries()) assert.equal(e, `echo ${i}\n|match`);
      // A held flow: listed with its node, then closed by id.
      let rows: { worker: number; id: number; via?: string; rule?: string; dst: string }[] = [];
      const listUntil = async (n: number): Promise<void> => {
        for (let i = 0; i < 50; i++) {
          const c = await g.gw.run('curl', ['-sf', 'http://127.0.0.1:15000/connections']);
          rows = JSON.parse(c.stdout) as typeof rows;
          if (rows.length === n) return;
          await new Promise((res) => setTimeout(res, 100));
        }
      };
      // First the echo flows gone (the engine may not have ended them all yet): else one of them,
      // also to port 7, could be the one row listed and closed instead of the held flow.
      await listUntil(0);
      assert.equal(rows.length, 0, `no echo flow left: ${JSON.stringify(rows)}`);
      const holder = g.lan.spawn(process.execPath, ['-e', CLIENT, REMOTE, '7', 'held\n', 'never', '30000']);
      await listUntil(1);
      assert.equal(rows.length, 1, JSON.stringify(rows));
      assert.equal(rows[0]!.via, 'upstream');
      assert.equal(rows[0]!.rule, 'default');
      assert.equal(rows[0]!.dst, `${REMOTE}:7`);
      const del = await g.gw.run('curl', [
        '-s',
        '-X',
        'DELETE',
        '-H',
        'X-Tranproxy: 1',
        `http://127.0.0.1:15000/connections/${rows[0]!.worker}-${rows[0]!.id}`,
      ]);
      assert.match(del.stdout, /closed/, `${JSON.stringify(rows)} ${del.stdout}`);
      await holder.waitForOutput(/held\n\|end/);
      await proxy.waitForOutput(/conn .*dst=10\.66\.3\.2:7 .*via=upstream .*close=aborted/);
      // Sockets back to the baseline; pipes may stay in the threads' pools, whose size follows how
      // many flows ran at once (the 20 echoes), not a count a baseline can hold.
      await until(
        () =>
          `sockets back to the baseline: ${JSON.stringify(socketsAndPipes(child))} after, ${JSON.stringify(baseline)} before`,
        () => socketsAndPipes(child).sockets <= baseline.sockets,
        8000,
        100,
      );
      assert.ok(
        socketsAndPipes(child).pipes <= baseline.pipes + PIPE_POOLS_FDS,
        `pipes beyond the pools: ${JSON.stringify(socketsAndPipes(child))} after, ${JSON.stringify(baseline)} before`,
      );
      const metrics = await g.gw.run('curl', ['-sf', 'http://127.0.0.1:15000/metrics']);
      assert.match(
        metrics.stdout,
        /tranproxy_connections_total\{listener="[^"]+",outbound="upstream",result="eof"\} \d+/,
      );
      assert.match(metrics.stdout, /tranproxy_upstream_connect_seconds_count\{outbound="upstream"\} 2\d/);
      assert.equal(await stopGracefully(proxy), 0, proxy.output());
    }
  });
});

test('a hostile SOCKS5 node: garbage, an early close and a refusal reset the client with the reason logged; bytes right behind the reply reach the client', {
  timeout: 90_000,
}, async () => {
  await withGatewayLab({ net: NET, tmpPrefix: 'tpx-node-engine-' }, async (g) => {
    const script = join(g.tmp, 'hostile.js');
    writeFileSync(script, HOSTILE);
    const hostile = g.node.spawn(process.execPath, [script, NODE_IP]);
    await hostile.waitForOutput(/^listening/m);
    const cases: [number, string, RegExp][] = [
      [1090, 'ECONNRESET', /close=connect-failed error=EHANDSHAKE detail=.*sent an invalid method selection reply/],
      [1091, 'ECONNRESET', /close=connect-failed error=EHANDSHAKE detail=.*closed the connection during the handshake/],
      [1092, 'ECONNRESET', /close=connect-failed error=EREFUSED detail=.*connection refused \(SOCKS reply 5\)/],
      [1093, 'match', /conn .*via=upstream route=default .*down=7 .*relay=splice/],
    ];
    for (const [port, outcome, line] of cases) {
      const proxy = await startTranproxy(g.gw, gatewayRunArgs(g, ['--upstream', `socks5://${NODE_IP}:${port}`]));
      assert.match(proxy.output(), /ready: .* relay=kernel( |$)/m);
      const got = await exchange(g.lan, 7, 'hi', 'banner\n');
      assert.equal(got, outcome === 'match' ? 'banner\n|match' : `|${outcome}`, `node port ${port}`);
      await proxy.waitForOutput(line);
      await stopGracefully(proxy);
    }
  });
});

/** Fake Shadowsocks nodes: 1094 answers anything with bytes that are no AEAD stream, 1095 closes without a word. */
const HOSTILE_SS = `
const net = require('node:net');
net.createServer((s) => { s.on('error', () => {}); s.once('data', () => s.write(require('node:crypto').randomBytes(200))); }).listen(1094, process.argv[2]);
net.createServer((s) => { s.on('error', () => {}); s.once('data', () => s.end()); }).listen(1095, process.argv[2]);
console.log('listening');
`;

test('through one Shadowsocks node (each cipher) the engine seals and opens the stream itself; a node sending garbage or closing unanswered ends the flow with the reason', {
  timeout: 90_000,
}, async () => {
  await withGatewayLab({ net: NET, tmpPrefix: 'tpx-node-engine-' }, async (g) => {
    await startPeer(g.remote, 'echo_headers', 80);
    await startPeer(g.remote, 'tcp_echo', 7);
    for (const [i, method] of ['aes-128-gcm', 'aes-256-gcm', 'chacha20-ietf-poly1305'].entries()) {
      const port = 8388 + i;
      g.node.spawn('ss-server', ['-s', NODE_IP, '-p', String(port), '-k', 'pa:ss', '-m', method]);
      await waitForPort(g.node, port);
      const uri = `ss://${Buffer.from(`${method}:pa:ss`).toString('base64url')}@${NODE_IP}:${port}#n${i}`;
      // The last one on two engine threads: the ciphers run in worker threads, not inline.
      const workers = i === 2 ? ['--workers', '2'] : [];
      const proxy = await startTranproxy(g.gw, gatewayRunArgs(g, ['--upstream', uri, ...workers]));
      assert.match(proxy.output(), /ready: .* relay=kernel( |$)/m, proxy.output());
      const r = await g.lan.run('curl', ['-sS', '--max-time', '6', `http://${REMOTE}/ss`]);
      assert.match(
        r.stdout,
        new RegExp(`"address": ?"${NODE_SIDE_OF_REMOTE.replace(/\./g, '\\.')}"`),
        `${method} ${r.stdout}`,
      );
      await proxy.waitForOutput(/conn .*dst=10\.66\.3\.2:80 .*via=upstream route=default .*close=eof relay=engine/);
      // 200 KB up and back: many chunks each way, split across reads.
      const echoed = await exchange(g.lan, 7, 'x*200000', 'x*200000');
      assert.equal(echoed, `${'x'.repeat(200_000)}|match`, method);
      // Counted as the client sees them, not with the cipher's salt and tags.
      await proxy.waitForOutput(/conn .*dst=10\.66\.3\.2:7 .*up=200000 down=200000 .*relay=engine/);
      await stopGracefully(proxy);
    }
    const script = join(g.tmp, 'hostile-ss.js');
    writeFileSync(script, HOSTILE_SS);
    const hostile = g.node.spawn(process.execPath, [script, NODE_IP]);
    await hostile.waitForOutput(/^listening/m);
    const link = (port: number) => `ss://${Buffer.from('aes-256-gcm:pa:ss').toString('base64url')}@${NODE_IP}:${port}`;
    for (const [port, line] of [
      [1094, /close=upstream-error error=EAUTH detail=.*chunk length failed authentication/],
      [1095, /close=upstream-error error=ENOREPLY detail=.*closed the connection without answering/],
    ] as const) {
      const proxy = await startTranproxy(g.gw, gatewayRunArgs(g, ['--upstream', link(port)]));
      assert.equal(await exchange(g.lan, 7, 'hi', 'never'), '|ECONNRESET', `node port ${port}`);
      await proxy.waitForOutput(line);
      await stopGracefully(proxy);
    }
  });
});
