// Issue 7 end to end: admin API and metrics, workers, SIGHUP reload that keeps established
// connections, graceful shutdown that drains before the rules go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Host, Lab, LabProcess } from '../../src/netlab/lab.js';
import { peerPath, startPeer, startTranproxy, tranproxyBin, withLab } from '../helpers/lab.js';
import { childProcesses } from '../helpers/procs.js';
import { until } from '../helpers/wait.js';

const SERVER = '10.75.1.2';

async function twoHosts(lab: Lab): Promise<{ client: Host; server: Host }> {
  const client = lab.addHost('client');
  const server = lab.addHost('server');
  lab.link(client, server, { a: ['10.75.1.1/24'], b: [`${SERVER}/24`] });
  await startPeer(server, 'echo_headers', 80);
  await startPeer(server, 'tcp_echo', 7);
  return { client, server };
}

async function get(h: Host, url: string, extra: string[] = []): Promise<{ status: number | null; stdout: string }> {
  return h.run('curl', ['-sS', '--max-time', '5', ...extra, url], { allowFailure: true });
}

/** A long-lived connection through the proxy, driven line by line. */
function hold(h: Host): { proc: LabProcess; say(line: string): Promise<void> } {
  const proc = h.spawn('python3', ['-u', peerPath('hold_client.py'), SERVER, '7']);
  let n = 0;
  return {
    proc,
    async say(line: string) {
      n++;
      proc.child.stdin!.write(`${line}\n`);
      await proc.waitForOutput(new RegExp(`(?:echo: ${line}\\n[\\s\\S]*){1}`), 5000);
      void n;
    },
  };
}

test('admin API: readiness, metrics over 2 engine threads, live connections, POST /quitquitquit', async () => {
  await withLab(async (lab) => {
    const { client } = await twoHosts(lab);
    const proxy = await startTranproxy(client, [
      'run',
      '-P',
      '80',
      '-P',
      '7',
      '--family',
      'ipv4',
      '--workers',
      '2',
      '--admin',
      '-H',
      'x-a:1',
    ]);
    assert.match(proxy.output(), /workers=2 .*admin=127\.0\.0\.1:15000/);
    const workers = childProcesses(proxy.pid).filter((c) => c.args.includes('child.js'));
    // --workers 2 with the engine serving every flow: one process, two engine threads.
    assert.deepEqual(
      workers.map((w) => w.uid),
      [1337],
      'one data-plane process of this proxy, as 1337',
    );
    for (let i = 0; i < 6; i++) assert.equal((await get(client, `http://${SERVER}/m${i}`)).status, 0);
    assert.match((await get(client, 'http://127.0.0.1:15000/readyz')).stdout, /ready/);
    assert.match((await get(client, 'http://127.0.0.1:15000/healthz')).stdout, /ok/);
    const h = hold(client);
    await h.proc.waitForOutput(/connected/);
    // Port 7 is an injection port here: a first byte that is not a token character keeps the
    // connection raw (a letter would make it HTTP, and 'hello' would get a 400).
    await h.say('<hello>');
    // Each engine thread posts its flow records every 20 ms: the held flow's connect (one thread)
    // can be counted before the last GET's end (the other thread), so wait for every figure.
    const want = [
      /tranproxy_connections_total\{listener="0\.0\.0\.0:15001",outbound="direct",result="eof"\} 6/,
      /tranproxy_connections_active\{listener="0\.0\.0\.0:15001"\} 1/,
      /tranproxy_http_requests_injected_total 6/,
      /tranproxy_upstream_connect_seconds_count\{outbound="direct"\} 7/,
      /tranproxy_bytes_total\{direction="up"\} \d+/,
      /tranproxy_rule_applies_total 1/,
    ];
    let metrics = '';
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; ) {
      metrics = (await get(client, 'http://127.0.0.1:15000/metrics')).stdout;
      if (want.every((re) => re.test(metrics))) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const re of want) assert.match(metrics, re);
    const conns = JSON.parse((await get(client, 'http://127.0.0.1:15000/connections')).stdout) as {
      dst: string;
      ageMs: number;
      worker: number;
      id: number;
    }[];
    assert.equal(conns.length, 1);
    assert.equal(conns[0]!.dst, `${SERVER}:7`);
    // Close by id: a state change, so it needs the intent header (or the token) like quitquitquit.
    const byId = `http://127.0.0.1:15000/connections/${conns[0]!.worker}-${conns[0]!.id}`;
    assert.match((await get(client, byId, ['-X', 'DELETE'])).stdout, /refused: missing X-Tranproxy header/);
    await h.say('still-open');
    assert.equal((await get(client, byId, ['-X', 'DELETE', '-H', 'X-Tranproxy: 1'])).stdout.trim(), 'closed');
    h.proc.child.stdin!.write('after-close\n');
    await h.proc.waitForOutput(/closed/, 5000);
    assert.match((await get(client, byId, ['-X', 'DELETE', '-H', 'X-Tranproxy: 1'])).stdout, /no such connection/);
    assert.equal((await get(client, 'http://127.0.0.1:15000/quitquitquit')).stdout.trim(), 'use POST');
    h.proc.child.stdin!.end();
    assert.match(
      (await get(client, 'http://127.0.0.1:15000/quitquitquit', ['-X', 'POST'])).stdout,
      /refused: missing X-Tranproxy header/,
    );
    await get(client, 'http://127.0.0.1:15000/quitquitquit', ['-X', 'POST', '-H', 'X-Tranproxy: 1']);
    assert.equal(await proxy.stop('SIGCONT'), 0);
    assert.doesNotMatch((await client.run('nft', ['list', 'ruleset'])).stdout, /tranproxy/);
  });
});

test('SIGHUP reload: new headers for new connections, established ones kept, a bad config rejected', async () => {
  await withLab(async (lab) => {
    const { client } = await twoHosts(lab);
    const dir = mkdtempSync(join(tmpdir(), 'tpx-reload-'));
    try {
      const file = join(dir, 'sidecar.yaml');
      const write = (gen: string) =>
        writeFileSync(file, `ports: [80, 7]\nfamily: ipv4\nheaders:\n  - "X-Gen: ${gen}"\n`);
      write('1');
      const proxy = await startTranproxy(client, ['run', '--config', file]);
      const gen = async () => (/"X-Gen", "(\d)"/.exec((await get(client, `http://${SERVER}/`)).stdout) ?? [])[1];
      assert.equal(await gen(), '1');
      const h = hold(client);
      await h.proc.waitForOutput(/connected/);
      await h.say('<before>'); // not a token character first: a raw (non-HTTP) connection on an injection port

      write('2');
      proxy.child.kill('SIGHUP');
      await proxy.waitForOutput(/reloaded: workers=1 draining=1/);
      assert.equal(await gen(), '2');
      await h.say('after-reload'); // the established connection still relays

      writeFileSync(file, 'ports: [80\n'); // broken YAML
      proxy.child.kill('SIGHUP');
      await proxy.waitForOutput(/reload rejected, keeping the running configuration: .*sidecar\.yaml:\d+:\d+/);
      assert.equal(await gen(), '2');
      await h.say('after-bad-reload');
      writeFileSync(file, 'ports: [80, 7]\nfamily: ipv4\nmode: tproxy\n');
      proxy.child.kill('SIGHUP');
      await proxy.waitForOutput(/reload rejected.*mode.*cannot change on reload/);
      h.proc.child.stdin!.end();
      await proxy.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('SIGTERM drains in-flight connections before the rules go', async () => {
  await withLab(async (lab) => {
    const { client } = await twoHosts(lab);
    const proxy = await startTranproxy(client, ['run', '-P', '7', '--family', 'ipv4', '--drain-timeout', '20s']);
    const h = hold(client);
    await h.proc.waitForOutput(/connected/);
    await h.say('one');
    proxy.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    // Still draining: rules in place, the connection alive.
    assert.match((await client.run('nft', ['list', 'ruleset'])).stdout, /tranproxy/);
    await h.say('during-drain');
    h.proc.child.stdin!.end();
    assert.equal(await proxy.stop('SIGCONT'), 0);
    assert.doesNotMatch((await client.run('nft', ['list', 'ruleset'])).stdout, /tranproxy/);
  });
});

// "Stop accepting" means refused at once: the listening socket is shut, so a connection made
// during the drain is not left in the kernel's backlog to wait for the drain's end and a reset.
const CAPTURE = ['-P', '7', '-P', '80', '--family', 'ipv4'];
const LAYOUTS: Record<string, string[]> = {
  'engine relay': ['--relay', 'auto'],
  'JS relay': ['--relay', 'js'],
  'one process, rules applied first': ['--one-process', '--firewall', 'none'],
};
for (const [layout, flags] of Object.entries(LAYOUTS)) {
  test(`SIGTERM (${layout}): a connection made during the drain is refused at once; the held one ends at --drain-timeout and is logged`, async () => {
    await withLab(async (lab) => {
      const { client } = await twoHosts(lab);
      const oneProcess = flags.includes('--one-process');
      if (oneProcess) await client.run(process.execPath, [tranproxyBin(), 'rules', 'apply', ...CAPTURE]);
      const proxy = await startTranproxy(client, ['run', ...CAPTURE, ...flags, '--drain-timeout', '2s']);
      const h = hold(client);
      await h.proc.waitForOutput(/connected/);
      await h.say('one');
      const exited = new Promise<number | null>((r) => proxy.child.once('exit', (code) => r(code)));
      proxy.child.kill('SIGTERM');
      await proxy.waitForOutput(/stopping: new connections are refused; draining for up to 2s/, 5000);
      // The line comes once the listening socket is shut (and that happens while draining).
      await until('the proxy to stop listening on :15001', async () => {
        const r = await client.run('ss', ['-Hlnt', 'sport = :15001']);
        return r.stdout.trim() === '';
      });
      assert.equal(proxy.child.exitCode ?? proxy.child.signalCode, null, 'shut during the drain, not by the exit');
      const late = await get(client, `http://${SERVER}/`, ['--connect-timeout', '4']);
      assert.equal(late.status, 7, `curl: connection refused (exit 7), not left waiting (28): ${late.stdout}`);
      await h.say('during-drain');
      // At the deadline the proxy closes the held flow itself and exits 0; its end is logged.
      assert.equal(await exited, 0);
      // 'exit' can come before the last output is read from the pipe.
      await proxy.waitForOutput(new RegExp(`dst=${SERVER.replace(/\./g, '\\.')}:7 .*(?:aborted|drain)`), 5000);
      if (oneProcess) await client.run(process.execPath, [tranproxyBin(), 'rules', 'remove']);
      assert.doesNotMatch((await client.run('nft', ['list', 'ruleset'])).stdout, /tranproxy/);
    });
  });
}

/** N CONNECT tunnels through an HTTP proxy to HOST:PORT (an echo server), each proven with an echo; then held. */
const HOLD_TUNNELS = `
import socket,sys,time
proxy,port,host,dport,n=sys.argv[1],int(sys.argv[2]),sys.argv[3],sys.argv[4],int(sys.argv[5])
held=[]
for i in range(n):
    c=socket.create_connection((proxy,port),timeout=5)
    c.sendall(('CONNECT %s:%s HTTP/1.1\\r\\n\\r\\n'%(host,dport)).encode())
    r=b''
    while b'\\r\\n\\r\\n' not in r: r+=c.recv(100)
    assert r.startswith(b'HTTP/1.1 200'),r
    c.sendall(b'tunnel%d\\n'%i)
    assert c.recv(100)==b'tunnel%d\\n'%i
    held.append(c)
print('held %d'%len(held),flush=True)
time.sleep(60)
`;

test('SIGTERM (proxy mode): each flow still held through the mixed inbound at --drain-timeout is logged before the exit', async () => {
  await withLab(async (lab) => {
    const { client } = await twoHosts(lab);
    const N = 20;
    const proxy = await startTranproxy(client, [
      'run',
      '-P',
      '80',
      '--family',
      'ipv4',
      '--listen-proxy',
      '127.0.0.1:7890',
      '--drain-timeout',
      '1s',
    ]);
    const tunnels = client.spawn('python3', ['-c', HOLD_TUNNELS, '127.0.0.1', '7890', SERVER, '7', String(N)]);
    await tunnels.waitForOutput(new RegExp(`held ${N}`), 10_000);
    const exited = new Promise<number | null>((r) => proxy.child.once('exit', (code) => r(code)));
    proxy.child.kill('SIGTERM');
    assert.equal(await exited, 0);
    // 'exit' can come before the last output is read from the pipe.
    const endLine = new RegExp(`conn .*inbound=http .*dst=${SERVER.replace(/\./g, '\\.')}:7 .*close=`, 'g');
    await until(
      () => `${N} end lines; got ${proxy.output().match(endLine)?.length ?? 0}:\n${proxy.output()}`,
      () => (proxy.output().match(endLine)?.length ?? 0) === N,
      3000,
    );
    await tunnels.stop();
  });
});
