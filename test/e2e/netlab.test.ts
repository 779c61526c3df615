// Proves the netlab Lab: links, dual-stack reachability, routed chains, and that every
// namespace and process it made is gone after destroy — also on failure and on Ctrl-C.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sweepStaleLabs } from '../../src/netlab/lab.js';
import {
  assertNoLeftovers,
  labNamespaces,
  snapshotHost,
  startPeer,
  startTlsServer,
  waitForPort,
  withLab,
  Lab,
} from '../helpers/lab.js';

const labNetns = labNamespaces;
/** Running, not a zombie: an orphan killed with its netns is reaped by init a little later. */
function alive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0] !== 'Z';
  } catch {
    return false;
  }
}
/** Processes killed by destroy die asynchronously: allow them a moment. */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 20));
  return !alive(pid);
}

test('two linked hosts reach each other over IPv4 and IPv6 (ping, curl to http.server)', async () => {
  await withLab(async (lab) => {
    const a = lab.addHost('a');
    const b = lab.addHost('b');
    const ifs = lab.link(a, b, { a: ['10.71.1.1/24', 'fd71:1::1/64'], b: ['10.71.1.2/24', 'fd71:1::2/64'] });
    assert.deepEqual(ifs, { a: 'eth0', b: 'eth0' });

    await a.run('ping', ['-c1', '-W2', '10.71.1.2']);
    await b.run('ping', ['-c1', '-W2', 'fd71:1::1']);

    const srv = b.spawn('python3', ['-m', 'http.server', '8080', '--bind', '::', '--directory', '/etc']);
    await waitForPort(b, 8080);
    for (const url of ['http://10.71.1.2:8080/hostname', 'http://[fd71:1::2]:8080/hostname']) {
      const r = await a.run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', url]);
      assert.equal(r.stdout, '200', url);
    }
    await srv.waitForOutput(/"GET \/hostname HTTP\/1.1" 200/);
  });
});

test('three-host chain: client -> forwarding router -> server, both families, no NAT', async () => {
  await withLab(async (lab) => {
    const client = lab.addHost('client');
    const router = lab.addHost('router');
    const server = lab.addHost('server');
    lab.link(client, router, { a: ['10.72.1.2/24', 'fd72:1::2/64'], b: ['10.72.1.1/24', 'fd72:1::1/64'] });
    lab.link(router, server, { a: ['10.72.2.1/24', 'fd72:2::1/64'], b: ['10.72.2.2/24', 'fd72:2::2/64'] });
    router.enableForwarding();
    client.addRoute('default', '10.72.1.1');
    client.addRoute('default', 'fd72:1::1');
    server.addRoute('10.72.1.0/24', '10.72.2.1');
    server.addRoute('fd72:1::/64', 'fd72:2::1');

    const echo = await startPeer(server, 'echo_headers', 8080);
    for (const [url, clientAddr] of [
      ['http://10.72.2.2:8080/v4', '10.72.1.2'],
      ['http://[fd72:2::2]:8080/v6', 'fd72:1::2'],
    ] as const) {
      const r = await client.run('curl', ['-sS', '--max-time', '5', '-H', 'X-Test: a:b', url]);
      const doc = JSON.parse(r.stdout);
      assert.equal(doc.client.address, clientAddr, 'routed, not NATed');
      assert.deepEqual(
        doc.headers.find((h: string[]) => h[0] === 'X-Test'),
        ['X-Test', 'a:b'],
      );
    }
    assert.match(echo.output(), /listening :: 8080/);

    // TCP echo with half-close, UDP echo, TLS with SNI: the peers the other e2e tests rely on.
    await startPeer(server, 'tcp_echo', 7000);
    const tcp = await client.run('nc', ['-N', '-w', '5', '10.72.2.2', '7000'], { input: 'ping-pong\n' });
    assert.equal(tcp.stdout, 'ping-pong\n');
    await startPeer(server, 'udp_echo', 7001);
    const udp = await client.run('nc', ['-u', '-w', '1', 'fd72:2::2', '7001'], { input: 'dgram\n' });
    assert.equal(udp.stdout, 'dgram\n');
    const tls = await startTlsServer(server, 8443, { names: ['tls.test'] });
    const r = await client.run('curl', [
      '-sS',
      '--max-time',
      '5',
      '--cacert',
      tls.certFile,
      '--resolve',
      'tls.test:8443:10.72.2.2',
      'https://tls.test:8443/s',
    ]);
    assert.equal(JSON.parse(r.stdout).tls.sni, 'tls.test');
  });
});

test('destroy leaves the host netns list and links exactly as before, and kills every process', async () => {
  const before = snapshotHost();
  const lab = await Lab.create();
  const a = lab.addHost('a');
  const b = lab.addHost('b');
  lab.link(a, b, { a: ['10.73.1.1/24'], b: ['10.73.1.2/24'] });
  lab.link(a, b, { a: ['10.73.2.1/24'], b: ['10.73.2.2/24'] });
  const plain = a.spawn('sleep', ['1000']);
  // Ignores SIGTERM, and forks a grandchild: only SIGKILL of the group/netns gets both.
  const stubborn = b.spawn('sh', ['-c', 'trap "" TERM; sleep 1000 & echo child=$!; wait']);
  const grandchild = Number((await stubborn.waitForOutput(/child=\d+/)).slice(6));
  const asNobody = a.spawn('sleep', ['1000'], { uid: 65534, gid: 65534 });
  const status = spawnSync('ps', ['-o', 'uid=', '-p', String(asNobody.pid)], { encoding: 'utf8' }).stdout.trim();
  assert.equal(status, '65534');
  // A program started by run() that is still running when the lab goes away.
  const running = a.run('sleep', ['1000'], { allowFailure: true });
  for (const pid of [plain.pid, stubborn.pid, grandchild, asNobody.pid]) assert.ok(alive(pid));
  assert.equal(labNetns(lab.prefix).length, 2);

  await lab.destroy();
  await lab.destroy(); // idempotent
  for (const pid of [plain.pid, stubborn.pid, grandchild, asNobody.pid]) assert.ok(await gone(pid), `pid ${pid} alive`);
  assert.equal((await running).status, null);
  assert.deepEqual(labNetns(lab.prefix), []);
  assertNoLeftovers(before, lab.prefix);
});

test('withLab destroys the lab when the body throws', async () => {
  const before = snapshotHost();
  let prefix = '';
  let pid = 0;
  await assert.rejects(
    withLab(async (lab) => {
      prefix = lab.prefix;
      const h = lab.addHost('x');
      pid = h.spawn('sleep', ['1000']).pid;
      throw new Error('boom');
    }),
    /boom/,
  );
  assert.ok(prefix);
  assert.deepEqual(labNetns(prefix), []);
  assert.ok(await gone(pid));
  assertNoLeftovers(before, prefix);
});

test('run() timeouts, failures, and waitForOutput on early exit', async () => {
  await withLab(async (lab) => {
    const h = lab.addHost('h');
    const t = await h.run('sleep', ['5'], { timeoutMs: 200, allowFailure: true });
    assert.equal(t.status, null);
    await assert.rejects(h.run('sh', ['-c', 'echo oops >&2; exit 3']), /exit 3.*oops/s);
    await assert.rejects(h.run('no-such-program-tpx', []), /not found/);
    const p = h.spawn('sh', ['-c', 'echo bye; exit 4']);
    await assert.rejects(p.waitForOutput(/never/), /exited \(4\).*bye/s);
    assert.equal(await p.stop(), 4);
    assert.equal((await h.run('id', ['-u'], { uid: 65534, gid: 65534 })).stdout.trim(), '65534');
    assert.equal((await h.run('sh', ['-c', 'echo $TPX_X'], { env: { TPX_X: 'y' } })).stdout.trim(), 'y');
    assert.equal((await h.run('sysctl', ['-n', 'net.ipv6.conf.all.disable_ipv6'])).stdout.trim(), '0');
  });
});

test('Ctrl-C (SIGINT) of a process holding a lab removes its namespaces and processes', async () => {
  const before = snapshotHost();
  const labUrl = new URL('../../src/netlab/lab.ts', import.meta.url).href;
  const script = `
    const { Lab } = await import(${JSON.stringify(labUrl)});
    const lab = await Lab.create();
    const h = lab.addHost('demo');
    const p = h.spawn('sleep', ['1000']);
    console.log('ready', lab.prefix, p.pid);
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: fileURLToPath(new URL('../../', import.meta.url)),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (/ready \S+ \d+\n/.test(out)) resolve(out);
    });
    child.on('exit', () => reject(new Error(`child exited early: ${out}`)));
  });
  const [, prefix, pidStr] = /ready (\S+) (\d+)/.exec(line)!;
  assert.equal(labNetns(prefix!).length, 1);
  const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_c, sig) => r(sig)));
  child.kill('SIGINT');
  assert.equal(await exited, 'SIGINT', 'dies of the signal as it would have');
  assert.deepEqual(labNetns(prefix!), []);
  assert.ok(await gone(Number(pidStr)));
  assertNoLeftovers(before, prefix!);
});

test('sweepStaleLabs removes netns of dead owners only', () => {
  const dead = spawnSync('true').pid!;
  // A tag of this run only: a parallel run's sweep test never sees (or sweeps) these.
  const tag = `sw${randomBytes(3).toString('hex')}`;
  const mine = `${tag}-${process.pid.toString(36)}-abcd-x`;
  const stale = `${tag}-${dead.toString(36)}-abcd-x`;
  try {
    for (const ns of [mine, stale]) spawnSync('ip', ['netns', 'add', ns]);
    assert.deepEqual(sweepStaleLabs(tag), [stale]);
    assert.deepEqual(labNamespaces(tag), [mine]);
  } finally {
    for (const ns of [mine, stale]) spawnSync('ip', ['netns', 'del', ns]);
  }
});
