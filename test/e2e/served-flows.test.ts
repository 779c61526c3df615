// Issue 6/8: kernel-only flows. With nothing to inspect (no headers, no routing), the splice
// engine accepts, finds the original destination, connects and relays by itself: no Node
// socket per connection. Checked twice in a netns lab:
//   - the engine alone (test/helpers/served-engine-driver.ts, run inside the lab): echo and
//     byte counts, live list and close by id, max connections, connect refused / timed out,
//     idle timeout, the loop guard, and accept resting on EMFILE then resuming;
//   - through `tranproxy run`: the ready line says relay=kernel (relay=splice with headers,
//     relay=js with --relay js), and flows are logged and counted as the JS path does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { startPeer, startTranproxy, withLab, type Host, type LabProcess } from '../helpers/lab.js';
import { stopGracefully } from '../helpers/procs.js';

/** Greets every connection with one byte, then echoes nothing (a server that speaks first). */
const GREETER = `
const net = require('node:net');
net.createServer((s) => { s.on('error', () => {}); s.write('g'); }).listen(Number(process.argv[1]), '0.0.0.0', () => console.log('listening'));
`;

const DRIVER = fileURLToPath(new URL('../helpers/served-engine-driver.ts', import.meta.url));

const HOSTINGS = [
  { threads: 1, hosting: 'inline', name: '1 thread, inline on the main thread' },
  { threads: 1, hosting: 'worker', name: '1 worker thread' },
  { threads: 2, hosting: 'worker', name: '2 worker threads' },
] as const;

for (const { threads, hosting, name } of HOSTINGS)
  test(`the splice engine (${name}) serves a listener itself: echo, server-speaks-first, list/close, limits, connect failures, idle, EMFILE pause and resume`, {
    timeout: 120_000,
  }, async () => {
    await withLab(async (lab) => {
      const client = lab.addHost('client');
      const server = lab.addHost('server');
      lab.link(client, server, { a: ['10.77.1.1/24'], b: ['10.77.1.2/24'] });
      await startPeer(server, 'tcp_echo', 7000, '0.0.0.0');
      const greeter = server.spawn(process.execPath, ['-e', GREETER, '7001']);
      await greeter.waitForOutput(/^listening/m);
      const cfg = {
        serverIp: '10.77.1.2',
        echoPort: 7000,
        greetPort: 7001,
        deadPort: 7999,
        silentIp: '10.77.1.99',
        ownIp: '10.77.1.1',
        listenPort: 15001,
        threads,
        hosting,
      };
      // A modest descriptor limit, so that step 7 can exhaust it quickly.
      const p = client.spawn('prlimit', [
        '--nofile=2048:2048',
        process.execPath,
        '--import',
        'tsx',
        DRIVER,
        JSON.stringify(cfg),
      ]);
      await p.waitForOutput(/^(done|FAILED:)/m, 100_000).catch(() => undefined);
      const out = p.output();
      assert.match(out, /^done$/m, out);
      for (const step of [
        'echo 60 flows',
        'server speaks first',
        'list shows',
        'beyond max-connections',
        'connect refused',
        'idle flow closed',
        'a connection straight to the listener',
        'out of descriptors',
        ...(threads > 1 ? [`${threads} threads accepted`] : []),
      ]) {
        assert.match(out, new RegExp(`^ok ${step}`, 'm'));
      }
      for (const line of out.split('\n').filter((l) => l.startsWith('ok '))) console.log(`# ${line}`);
    });
  });

test('tranproxy run: relay=kernel without inspection and with headers, relay=js on request; kernel flows logged and counted', {
  timeout: 120_000,
}, async () => {
  await withLab(async (lab) => {
    const client = lab.addHost('client');
    const server = lab.addHost('server');
    lab.link(client, server, { a: ['10.77.2.1/24'], b: ['10.77.2.2/24'] });
    await startPeer(server, 'tcp_echo', 7000, '0.0.0.0');
    await startPeer(server, 'echo_headers', 80, '0.0.0.0');

    const cases: [string[], string][] = [
      [['-P', '80', '-P', '7000', '-H', 'x-test: 1', '--admin', '127.0.0.1:15000'], 'kernel'],
      [['-P', '7000', '--relay', 'js'], 'js'],
      [['-P', '7000', '-P', '7999', '--admin', '127.0.0.1:15000'], 'kernel'],
    ];
    for (const [args, want] of cases) {
      const proxy = await startTranproxy(client, ['run', '--family', 'ipv4', ...args]);
      assert.match(proxy.output(), new RegExp(`ready: .* relay=${want}( |$)`, 'm'), proxy.output());
      if (args.includes('-H')) await injectedFlowInEngine(client, proxy);
      if (want !== 'kernel' || args.includes('-H')) {
        assert.equal(await stopGracefully(proxy), 0, proxy.output());
        continue;
      }
      // Flows: an echo, a held one seen in /connections, a refused port.
      const ECHO = `
        const net = require('node:net');
        const s = net.connect({ host: '10.77.2.2', port: 7000, allowHalfOpen: true });
        let got = 0;
        s.on('data', (d) => (got += d.length));
        s.on('end', () => { console.log('echoed ' + got); s.end(); });
        s.on('connect', () => s.end(Buffer.alloc(5000, 'x')));`;
      const r = await client.run(process.execPath, ['-e', ECHO]);
      assert.match(r.stdout, /echoed 5000/);
      await proxy.waitForOutput(
        /conn id=\d+ src=10\.77\.2\.1:\d+ dst=10\.77\.2\.2:7000 up=5000 down=5000 dur=\d+ms close=eof relay=splice/,
      );

      const HOLD = `
        const net = require('node:net');
        const s = net.connect({ host: '10.77.2.2', port: 7000 });
        s.on('connect', () => s.write('hello'));
        s.on('data', () => console.log('held'));
        setTimeout(() => process.exit(0), 60000);`;
      const holder = client.spawn(process.execPath, ['-e', HOLD]);
      await holder.waitForOutput(/held/);
      const conns = await client.run('curl', ['-sf', 'http://127.0.0.1:15000/connections']);
      const list = JSON.parse(conns.stdout) as { dst: string; up?: number; down?: number; via?: string }[];
      assert.equal(list.length, 1, conns.stdout);
      assert.equal(list[0]!.dst, '10.77.2.2:7000');
      assert.equal(list[0]!.up, 5);
      assert.equal(list[0]!.down, 5);
      const metrics = await client.run('curl', ['-sf', 'http://127.0.0.1:15000/metrics']);
      assert.match(metrics.stdout, /tranproxy_connections_active\{listener="[^"]+"\} 1/);
      assert.match(metrics.stdout, /tranproxy_connections_total\{listener="[^"]+",outbound="direct",result="eof"\} 1/);
      assert.match(metrics.stdout, /tranproxy_bytes_total\{direction="up"\} 5000/);
      await holder.stop('SIGKILL');

      const DEAD = `
        const net = require('node:net');
        const s = net.connect({ host: '10.77.2.2', port: 7999 });
        s.on('error', (e) => console.log('client ' + e.code));
        s.on('close', () => console.log('closed'));`;
      const d = await client.run(process.execPath, ['-e', DEAD]);
      assert.match(d.stdout, /client ECONNRESET/);
      await proxy.waitForOutput(
        /conn id=\d+ .*dst=10\.77\.2\.2:7999 up=0 down=0 dur=\d+ms close=connect-failed error=ECONNREFUSED/,
      );
      assert.equal(await stopGracefully(proxy), 0, proxy.output());
    }
  });
});

/** A header-injecting flow runs in the engine: stamped, listed while held, logged and counted. */
async function injectedFlowInEngine(client: Host, proxy: LabProcess): Promise<void> {
  const GET = `
    const net = require('node:net');
    const s = net.connect({ host: '10.77.2.2', port: 80 });
    let got = '';
    s.on('connect', () => s.write('GET /a HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'));
    s.on('data', (d) => {
      got += d;
      if (got.includes('}')) { console.log(got.includes('x-test') ? 'stamped' : 'unstamped ' + got); console.log('held'); }
    });
    setTimeout(() => process.exit(0), 60000);`;
  const holder = client.spawn(process.execPath, ['-e', GET]);
  await holder.waitForOutput(/held/);
  assert.match(holder.output(), /stamped/);
  assert.doesNotMatch(holder.output(), /unstamped/);
  const conns = await client.run('curl', ['-sf', 'http://127.0.0.1:15000/connections']);
  const list = JSON.parse(conns.stdout) as { dst: string }[];
  assert.equal(list.length, 1, conns.stdout);
  assert.equal(list[0]!.dst, '10.77.2.2:80');
  await holder.stop('SIGKILL');
  await proxy.waitForOutput(/conn id=\d+ .*dst=10\.77\.2\.2:80 .*requests=1 relay=engine/);
  const metrics = await client.run('curl', ['-sf', 'http://127.0.0.1:15000/metrics']);
  assert.match(metrics.stdout, /tranproxy_http_requests_injected_total 1/);
}
