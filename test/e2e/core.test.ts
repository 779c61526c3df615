// Issue 2 end to end: REDIRECT output capture and TPROXY prerouting capture in netns labs,
// IPv4 and IPv6, loops, cleanup after SIGTERM / SIGKILL, and CLI errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { Host, Lab, LabProcess } from '../../src/netlab/lab.js';
import { tranproxyBin, waitForPort, withLab } from '../helpers/lab.js';
import { childProcesses } from '../helpers/procs.js';
import { until } from '../helpers/wait.js';

const NODE = process.execPath;
const READY = /tranproxy: ready:.*/;

function tranproxy(host: Host, args: string[]): LabProcess {
  return host.spawn(NODE, [tranproxyBin(), ...args]);
}

async function curl(
  host: Host,
  url: string,
  extra: string[] = [],
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return host.run('curl', ['-sS', '--max-time', '5', ...extra, url], { allowFailure: true });
}

async function httpServer(host: Host, port: number): Promise<LabProcess> {
  // python's http.server binds dual-stack with --bind :: and logs each client address.
  const p = host.spawn('python3', [
    '-u',
    '-m',
    'http.server',
    String(port),
    '--bind',
    '::',
    '--directory',
    '/usr/share/doc/curl',
  ]);
  await waitForPort(host, port);
  return p;
}

async function rulesIn(host: Host): Promise<string> {
  const nft = await host.run('nft', ['list', 'ruleset'], { allowFailure: true });
  const rules = await host.run('ip', ['rule', 'list'], { allowFailure: true });
  return nft.stdout + rules.stdout;
}

/** client ── server, both v4 and v6 on one link. */
function twoHosts(lab: Lab): { client: Host; server: Host } {
  const client = lab.addHost('client');
  const server = lab.addHost('server');
  lab.link(client, server, { a: ['10.71.1.1/24', 'fd71:1::1/64'], b: ['10.71.1.2/24', 'fd71:1::2/64'] });
  return { client, server };
}

test('REDIRECT output capture relays v4 and v6, logs the original destination, bypasses excluded ports, no loop', async () => {
  await withLab(async (lab) => {
    const { client, server } = twoHosts(lab);
    await httpServer(server, 80);
    await httpServer(server, 8081);
    // All ports captured (so the proxy's own upstream connection to :80 would loop if it
    // were captured), except 8081.
    const proxy = tranproxy(client, ['run', '--mode', 'redirect', '--exclude-port', '8081']);
    await proxy.waitForOutput(READY);

    const r4 = await curl(client, 'http://10.71.1.2/copyright');
    assert.equal(r4.status, 0, r4.stderr);
    assert.match(r4.stdout, /curl/i);
    await proxy.waitForOutput(/conn .*dst=10\.71\.1\.2:80 up=\d+ down=\d+ dur=\d+ms close=eof/);

    const r6 = await curl(client, 'http://[fd71:1::2]/copyright');
    assert.equal(r6.status, 0, r6.stderr);
    await proxy.waitForOutput(/conn .*dst=\[fd71:1::2\]:80 .*close=eof/);

    const bypass = await curl(client, 'http://10.71.1.2:8081/copyright');
    assert.equal(bypass.status, 0, bypass.stderr);
    // A captured request after the bypassed one: once its line is there, a (wrong) line for the
    // bypassed connection, which closed first, would be there too.
    const after = await curl(client, 'http://10.71.1.2/copyright');
    assert.equal(after.status, 0, after.stderr);
    await until(
      "the second captured request's conn line",
      () => (proxy.output().match(/conn .*dst=10\.71\.1\.2:80 /g)?.length ?? 0) >= 2,
    );
    assert.doesNotMatch(proxy.output(), /dst=10\.71\.1\.2:8081/);
    // Exactly one proxied connection per captured request: no loop.
    assert.equal(proxy.output().match(/conn .*dst=10\.71\.1\.2:80 /g)?.length, 2);

    const status = await proxy.stop('SIGTERM');
    assert.equal(status, 0);
    assert.doesNotMatch(await rulesIn(client), /tranproxy/);
  });
});

test('the proxy runs as its own uid and root traffic is still captured', async () => {
  await withLab(async (lab) => {
    const { client, server } = twoHosts(lab);
    await httpServer(server, 80);
    const proxy = tranproxy(client, ['run', '-P', '80', '--family', 'ipv4']);
    await proxy.waitForOutput(READY);
    assert.match(proxy.output(), /user=1337:1337/);
    const workers = childProcesses(proxy.pid).filter((c) => c.args.includes('child.js'));
    assert.deepEqual(
      workers.map((w) => w.uid),
      [1337],
      "this proxy's one data-plane worker runs as 1337",
    );
    const r = await curl(client, 'http://10.71.1.2/copyright');
    assert.equal(r.status, 0, r.stderr);
    await proxy.waitForOutput(/conn .*dst=10\.71\.1\.2:80/);
    await proxy.stop();
  });
});

test('TPROXY prerouting on a gateway: server sees the client address, v4 and v6, no loop to the listener', async () => {
  await withLab(async (lab) => {
    const client = lab.addHost('client');
    const gw = lab.addHost('gw');
    const server = lab.addHost('server');
    const lan = lab.link(client, gw, { a: ['10.72.1.2/24', 'fd72:1::2/64'], b: ['10.72.1.1/24', 'fd72:1::1/64'] });
    lab.link(gw, server, { a: ['10.72.2.1/24', 'fd72:2::1/64'], b: ['10.72.2.2/24', 'fd72:2::2/64'] });
    client.addRoute('default', '10.72.1.1');
    client.addRoute('default', 'fd72:1::1');
    server.addRoute('default', '10.72.2.1');
    server.addRoute('default', 'fd72:2::1');
    const http = await httpServer(server, 80);
    const sysctl = async (k: string) => (await gw.run('sysctl', ['-n', k])).stdout.trim();
    assert.equal(await sysctl('net.ipv4.ip_forward'), '0');

    // Lab addresses are private: a gateway bypasses those unless told otherwise.
    const proxy = tranproxy(gw, [
      'run',
      '--mode',
      'tproxy',
      '--capture',
      'prerouting',
      '-i',
      lan.b,
      '-P',
      '80',
      '--no-bypass-private',
    ]);
    await proxy.waitForOutput(READY);
    // A gateway forwards what it does not capture.
    assert.equal(await sysctl('net.ipv4.ip_forward'), '1');
    assert.equal(await sysctl('net.ipv6.conf.all.forwarding'), '1');

    const r4 = await curl(client, 'http://10.72.2.2/copyright');
    assert.equal(r4.status, 0, r4.stderr);
    await proxy.waitForOutput(/conn id=\d+ src=10\.72\.1\.2:\d+ dst=10\.72\.2\.2:80 .*close=eof/);
    // The server's access log shows the client's own address: full transparency.
    await http.waitForOutput(/10\.72\.1\.2 - - .*GET \/copyright/);

    const r6 = await curl(client, 'http://[fd72:2::2]/copyright');
    assert.equal(r6.status, 0, r6.stderr);
    await proxy.waitForOutput(/conn id=\d+ src=\[fd72:1::2\]:\d+ dst=\[fd72:2::2\]:80 .*close=eof/);
    await http.waitForOutput(/fd72:1::2 - - .*GET \/copyright/);

    // A client aiming at the proxy's own port is refused, not relayed to itself.
    const loop = await curl(client, 'http://10.72.1.1:15001/');
    assert.notEqual(loop.status, 0);
    await proxy.waitForOutput(/refused .*reason=loop/);

    assert.match(await rulesIn(gw), /table inet tranproxy/);
    await proxy.stop('SIGTERM');
    const after = await rulesIn(gw);
    assert.doesNotMatch(after, /tranproxy/);
    assert.doesNotMatch(after, /lookup 233/);
    assert.equal(await sysctl('net.ipv4.ip_forward'), '0', 'old forwarding value restored');
    assert.equal(await sysctl('net.ipv6.conf.all.forwarding'), '0');
  });
});

test('after SIGKILL the rules stay until `rules remove`; a restart then starts cleanly', async () => {
  await withLab(async (lab) => {
    const { client, server } = twoHosts(lab);
    await httpServer(server, 80);
    const first = tranproxy(client, ['run', '-P', '80']);
    await first.waitForOutput(READY);
    process.kill(first.pid, 'SIGKILL');
    await until(
      'the first run to exit on SIGKILL',
      () => first.child.exitCode !== null || first.child.signalCode !== null,
    );
    assert.match(await rulesIn(client), /table inet tranproxy/, 'a SIGKILLed run cannot clean up');
    // The orphaned data plane exits with its supervisor, freeing the port.
    const second = tranproxy(client, ['run', '-P', '80']);
    await second.waitForOutput(READY, 15_000);
    const r = await curl(client, 'http://10.71.1.2/copyright');
    assert.equal(r.status, 0, r.stderr);
    process.kill(second.pid, 'SIGKILL');
    await until(
      'the second run to exit on SIGKILL',
      () => second.child.exitCode !== null || second.child.signalCode !== null,
    );
    const rm = await client.run(NODE, [tranproxyBin(), 'rules', 'remove']);
    assert.equal(rm.status, 0);
    assert.doesNotMatch(await rulesIn(client), /tranproxy/);
    const again = await client.run(NODE, [tranproxyBin(), 'rules', 'remove']);
    assert.equal(again.status, 0, 'remove is idempotent');
  });
});

test('bad input: one clear line, exit 2 for usage, no rule left behind', async () => {
  await withLab(async (lab) => {
    const host = lab.addHost('solo');
    const cases: [string[], number, RegExp][] = [
      [['run', '--bogus'], 2, /unknown option '--bogus'/],
      [['run', '-P', '99999'], 2, /--port: '99999' is not a port/],
      [['run', '--exclude-cidr', '10.0.0.0/40'], 2, /is not a CIDR/],
      [['run', '--mode', 'tunnel'], 2, /--mode/],
      [['run', 'curl'], 2, /after --/],
    ];
    for (const [args, code, re] of cases) {
      const r = await host.run(NODE, [tranproxyBin(), ...args], { allowFailure: true });
      assert.equal(r.status, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
    }
    // Listen port in use.
    const holder = host.spawn('python3', [
      '-c',
      'import socket,time;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(("0.0.0.0",15001));s.listen();print("held",flush=True);time.sleep(60)',
    ]);
    await holder.waitForOutput(/held/);
    const inUse = await host.run(NODE, [tranproxyBin(), 'run', '--family', 'ipv4'], { allowFailure: true });
    assert.equal(inUse.status, 1, inUse.stderr);
    assert.match(inUse.stderr, /listen port 15001 is already in use.*--listen-port/);
    await holder.stop();
    // nft missing: PATH without sbin.
    const noNft = await host.run(
      'env',
      ['PATH=/usr/bin:/bin', NODE, tranproxyBin(), 'run', '--firewall', 'nft', '--listen-port', '15002'],
      { allowFailure: true },
    );
    assert.equal(noNft.status, 1, noNft.stderr);
    assert.match(noNft.stderr, /'nft' not found: install it \(apt-get install nftables\)/);
    // No CAP_NET_ADMIN: an unprivileged user.
    const unpriv = await host.run(
      'setpriv',
      [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        NODE,
        tranproxyBin(),
        'run',
        '--listen-port',
        '15003',
        '--proxy-user',
        '65534',
      ],
      { allowFailure: true },
    );
    assert.notEqual(unpriv.status, 0);
    assert.match(unpriv.stderr, /root|CAP_NET_ADMIN|not permitted/i);
    assert.doesNotMatch(await rulesIn(host), /tranproxy/);
  });
});

test('--help lists the contract flags', () => {
  const r = spawnSync(NODE, [tranproxyBin(), 'run', '--help'], { encoding: 'utf8' });
  assert.equal(r.status, 0);
  for (const flag of ['--mode', '--capture', '-P, --port', '--exclude-cidr', '--proxy-user', '--firewall'])
    assert.ok(r.stdout.includes(flag), flag);
});

test('rules plan prints without applying; apply, show and remove do what they say', async () => {
  await withLab(async (lab) => {
    const h = lab.addHost('rules');
    const cli = (args: string[]) => h.run(NODE, [tranproxyBin(), 'rules', ...args], { allowFailure: true });
    const plan = await cli(['plan', '-P', '80', '--exclude-cidr', '10.9.0.0/16']);
    assert.equal(plan.status, 0, plan.stderr);
    assert.match(plan.stdout, /table inet tranproxy/);
    assert.match(plan.stdout, /redirect to :15001/);
    assert.match(plan.stdout, /10\.9\.0\.0\/16/);
    assert.doesNotMatch(await rulesIn(h), /tranproxy/, 'plan is a dry run');
    const ipt = await cli(['plan', '--firewall', 'iptables', '--mode', 'tproxy', '--capture', 'prerouting']);
    assert.match(ipt.stdout, /TRANPROXY_/);
    assert.match(ipt.stdout, /TPROXY/);
    // A gateway plan leaves private destinations alone by default.
    assert.match(ipt.stdout, /-d 192\.168\.0\.0\/16 -j RETURN/);
    const all = await cli(['plan', '--mode', 'tproxy', '--capture', 'prerouting']);
    assert.match(all.stdout, /10\.0\.0\.0\/8/);

    assert.equal((await cli(['apply', '-P', '80'])).status, 0);
    const show = await cli(['show']);
    assert.match(show.stdout, /table inet tranproxy/);
    assert.match(show.stdout, /tcp dport 80/);
    assert.equal((await cli(['remove'])).status, 0);
    assert.match((await cli(['show'])).stdout, /no tranproxy rules/);
  });
});
