// Issue 8 least privilege: once set-up is done the data plane runs as an unprivileged user
// with only the capabilities its mode needs, read from /proc/<worker>/status (Uid, Gid,
// CapEff, CapPrm, CapInh, CapAmb, CapBnd, NoNewPrivs), and traffic still flows: REDIRECT
// sidecar and gateway with none, TPROXY preserve-source with CAP_NET_ADMIN only, TPROXY
// UDP with CAP_NET_ADMIN + CAP_NET_BIND_SERVICE (replies leave from port 53).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Host, Lab } from '../../src/netlab/lab.js';
import { startPeer, startTranproxy, withLab } from '../helpers/lab.js';
import { procStatus, stopGracefully, workerPid } from '../helpers/procs.js';
import { CAPABILITY_BIT, type Capability } from '../../src/kernel/privdrop.js';

function capHex(caps: Capability[]): string {
  const bits = caps.reduce((n, c) => n | (1n << BigInt(CAPABILITY_BIT[c])), 0n);
  return bits.toString(16).padStart(16, '0');
}

/** The worker's identity and every capability set are exactly these. */
function assertWorker(supervisorPid: number, uid: number, gid: number, caps: Capability[]): Record<string, string> {
  const s = procStatus(workerPid(supervisorPid));
  assert.equal(s.Uid, `${uid}\t${uid}\t${uid}\t${uid}`, 'real, effective, saved and fs uid');
  assert.equal(s.Gid, `${gid}\t${gid}\t${gid}\t${gid}`);
  assert.equal(s.Groups, '', 'no supplementary groups');
  const want = capHex(caps);
  for (const set of ['CapEff', 'CapPrm', 'CapBnd']) assert.equal(s[set], want, `${set} = ${caps.join(',') || 'none'}`);
  // Inheritable and ambient carry exactly the kept ones (needed to keep them across exec as non-root).
  assert.equal(s.CapAmb, want);
  assert.equal(s.NoNewPrivs, '1', 'no_new_privs: no setuid binary can give privileges back');
  return s;
}

async function curlJson(h: Host, url: string): Promise<{ client: { address: string } }> {
  const r = await h.run('curl', ['-sS', '--max-time', '8', url], { allowFailure: true });
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  assert.ok(line, `curl ${url}: ${r.stderr}`);
  return JSON.parse(line) as { client: { address: string } };
}

test('REDIRECT sidecar: the worker runs as 1337:1337 with no capability at all, and relays', async () => {
  await withLab(async (lab) => {
    const app = lab.addHost('app');
    const server = lab.addHost('server');
    lab.link(app, server, { a: ['10.85.1.1/24'], b: ['10.85.1.2/24'] });
    await startPeer(server, 'echo_headers', 80);
    const proxy = await startTranproxy(app, ['run', '-P', '80', '--family', 'ipv4']);
    assert.match(proxy.output(), /ready:.* user=1337:1337 caps=none/);
    assertWorker(proxy.pid, 1337, 1337, []);
    assert.equal((await curlJson(app, 'http://10.85.1.2/')).client.address, '10.85.1.1');
    await proxy.waitForOutput(/conn .*dst=10\.85\.1\.2:80/);
    assert.equal(await stopGracefully(proxy), 0);
  });
});

test('output capture with --proxy-user none: the worker keeps CAP_NET_ADMIN only for SO_MARK, and its own upstream connections are not captured again', async () => {
  await withLab(async (lab) => {
    const app = lab.addHost('app');
    const server = lab.addHost('server');
    lab.link(app, server, { a: ['10.85.2.1/24'], b: ['10.85.2.2/24'] });
    await startPeer(server, 'echo_headers', 80);
    // Every port captured: the proxy's connection to :80 would loop back into it unless the
    // bypass mark (set by the unprivileged worker with CAP_NET_ADMIN) exempts it.
    const proxy = await startTranproxy(app, ['run', '--proxy-user', 'none', '--family', 'ipv4']);
    assert.match(proxy.output(), /ready:.* user=65534:65534 caps=net_admin/);
    assertWorker(proxy.pid, 65534, 65534, ['net_admin']);
    assert.equal((await curlJson(app, 'http://10.85.2.2/')).client.address, '10.85.2.1');
    await proxy.waitForOutput(/conn .*dst=10\.85\.2\.2:80 .*close=eof/);
    assert.equal(
      proxy.output().match(/conn .*dst=10\.85\.2\.2:80 /g)?.length,
      1,
      'exactly one proxied connection: no loop',
    );
    assert.doesNotMatch(proxy.output(), /reason=loop/);
    assert.equal(await stopGracefully(proxy), 0);
  });
});

interface Gw {
  lan: Host;
  gw: Host;
  server: Host;
  lanIf: string;
}

function gatewayLab(lab: Lab): Gw {
  const lan = lab.addHost('lan');
  const gw = lab.addHost('gw');
  const server = lab.addHost('server');
  const l = lab.link(lan, gw, { a: ['10.86.1.2/24'], b: ['10.86.1.1/24'] });
  lab.link(gw, server, { a: ['10.86.2.1/24'], b: ['10.86.2.2/24'] });
  lan.addRoute('default', '10.86.1.1');
  server.addRoute('default', '10.86.2.1');
  return { lan, gw, server, lanIf: l.b };
}

const UDP_PING = [
  'import socket,sys',
  's=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)',
  's.settimeout(2)',
  'for i in range(5):',
  '  s.sendto(b"ping",("10.86.2.2",53))',
  '  try:',
  '    d,a=s.recvfrom(100); print(d.decode(),a[0],a[1]); sys.exit(0)',
  '  except socket.timeout: pass',
  'print("no reply"); sys.exit(1)',
].join('\n');

test('gateway: REDIRECT worker as 65534 with no capability; TPROXY preserve-source keeps CAP_NET_ADMIN only; TPROXY UDP adds CAP_NET_BIND_SERVICE; traffic flows in each', async () => {
  await withLab(async (lab) => {
    const g = gatewayLab(lab);
    await startPeer(g.server, 'echo_headers', 80);
    const udpEcho = await startPeer(g.server, 'udp_echo', 53, '0.0.0.0');
    const base = ['--capture', 'prerouting', '-i', g.lanIf, '--family', 'ipv4', '--no-bypass-private', '-P', '80'];

    // REDIRECT on a gateway: nothing privileged is left to do in the data plane.
    const redirect = await startTranproxy(g.gw, ['run', '--mode', 'redirect', ...base]);
    assert.match(redirect.output(), /ready:.* user=65534:65534 caps=none/);
    assertWorker(redirect.pid, 65534, 65534, []);
    assert.equal(
      (await curlJson(g.lan, 'http://10.86.2.2/')).client.address,
      '10.86.2.1',
      'REDIRECT: the server sees the gateway',
    );
    assert.equal(await stopGracefully(redirect), 0);

    // TPROXY, preserve-source (the default on a gateway): IP_TRANSPARENT on upstream sockets.
    const tproxy = await startTranproxy(g.gw, ['run', '--mode', 'tproxy', ...base]);
    assert.match(tproxy.output(), /ready:.* user=65534:65534 caps=net_admin/);
    assertWorker(tproxy.pid, 65534, 65534, ['net_admin']);
    assert.equal(
      (await curlJson(g.lan, 'http://10.86.2.2/')).client.address,
      '10.86.1.2',
      'TPROXY: the server sees the LAN client',
    );
    await tproxy.waitForOutput(/conn .*src=10\.86\.1\.2:\d+ dst=10\.86\.2\.2:80 .*close=eof/);
    assert.equal(await stopGracefully(tproxy), 0);

    // TPROXY UDP: transparent reply sockets bound to the original destination, port 53.
    const udp = await startTranproxy(g.gw, [
      'run',
      '--mode',
      'tproxy',
      ...base,
      '-P',
      '53',
      '--udp',
      '--proxy-user',
      'none',
    ]);
    assert.match(udp.output(), /ready:.* user=65534:65534 caps=net_admin,net_bind_service/);
    assertWorker(udp.pid, 65534, 65534, ['net_admin', 'net_bind_service']);
    const ping = await g.lan.run('python3', ['-c', UDP_PING], { allowFailure: true });
    assert.equal(
      ping.stdout.trim(),
      'ping 10.86.2.2 53',
      `the reply comes from the original destination: ${ping.stderr}`,
    );
    await udpEcho.waitForOutput(/^10\.86\.2\.1 \d+$/m); // UDP is relayed from the gateway's address
    assert.equal((await curlJson(g.lan, 'http://10.86.2.2/')).client.address, '10.86.1.2');
    assert.equal(await stopGracefully(udp), 0);
  });
});
