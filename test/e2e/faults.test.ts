// Issue 8 fault tests through the whole proxy (REDIRECT sidecar and TPROXY gateway): the
// upstream server resets, blackholes or vanishes mid-stream; the client must see a reset or
// close within the configured timeout, the proxy must keep serving, and the worker's file
// descriptors must come back to their baseline. Then the supervisor is SIGKILLed
// mid-traffic and restarted: the rules are not duplicated, forwarding state is right.
//
// Node down → fallback node: covered by test/e2e/gateway.test.ts ("node down: its fallback
// node carries the flow").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import type { Host, Lab, LabProcess } from '../../src/netlab/lab.js';
import { fdCount, peerPath, startTranproxy, withLab } from '../helpers/lab.js';
import { fdsBackTo, stopGracefully, workerPid } from '../helpers/procs.js';
import { steady } from '../helpers/wait.js';

const IDLE_S = 2;
const CONNECT_S = 2;
/** Slack on top of a timeout before we call it missed: the machine is shared and slow. */
const SLACK_MS = 6000;
const TIMEOUTS = ['--idle-timeout', `${IDLE_S}s`, '--connect-timeout', `${CONNECT_S}s`];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Client {
  proc: LabProcess;
  send(line: string): void;
  /** Resolves with 'eof' | 'reset' | … once the connection ends, and how long after `since`. */
  closed(since: number, timeoutMs: number): Promise<{ kind: string; ms: number }>;
}

async function connectClient(host: Host, ip: string, port: number): Promise<Client> {
  const proc = host.spawn('python3', ['-u', peerPath('fault_client.py'), ip, String(port)]);
  await proc.waitForOutput(/^(connected|closed .*)$/m, 20_000);
  return {
    proc,
    send: (line) => void proc.child.stdin!.write(`${line}\n`),
    async closed(since, timeoutMs) {
      const m = await proc.waitForOutput(/^closed (\S+)$/m, timeoutMs);
      return { kind: m.split(' ')[1]!, ms: Date.now() - since };
    },
  };
}

async function echoOnce(c: Client, text: string): Promise<void> {
  c.send(text);
  await c.proc.waitForOutput(new RegExp(`^echo: ${text}$`, 'm'), 15_000);
}

async function faultServer(host: Host, port: number): Promise<LabProcess> {
  const p = host.spawn('python3', ['-u', peerPath('fault_server.py'), String(port), '0.0.0.0']);
  await p.waitForOutput(/^listening .*$/m);
  return p;
}

interface Topology {
  /** Where the client runs (REDIRECT: the proxy's own netns; TPROXY: a LAN host). */
  client: Host;
  /** Where tranproxy runs. */
  proxyHost: Host;
  server: Host;
  serverIp: string;
  /** The server's interface (in its netns), to take the server off the network. */
  serverIf: string;
  proxyArgs: string[];
  /** Put back what taking the server's link down removed (its routes). */
  relink(): void;
}

function redirectTopology(lab: Lab): Topology {
  const app = lab.addHost('app');
  const server = lab.addHost('server');
  const l = lab.link(app, server, { a: ['10.81.1.1/24'], b: ['10.81.1.2/24'] });
  return {
    client: app,
    proxyHost: app,
    server,
    serverIp: '10.81.1.2',
    serverIf: l.b,
    proxyArgs: ['run', '--mode', 'redirect', '--family', 'ipv4', '-P', '7000-7001', ...TIMEOUTS],
    relink: () => {},
  };
}

function tproxyTopology(lab: Lab): Topology {
  const lan = lab.addHost('lan');
  const gw = lab.addHost('gw');
  const server = lab.addHost('server');
  const l1 = lab.link(lan, gw, { a: ['10.82.1.2/24'], b: ['10.82.1.1/24'] });
  const l2 = lab.link(gw, server, { a: ['10.82.2.1/24'], b: ['10.82.2.2/24'] });
  lan.addRoute('default', '10.82.1.1');
  server.addRoute('default', '10.82.2.1');
  return {
    client: lan,
    proxyHost: gw,
    server,
    serverIp: '10.82.2.2',
    serverIf: l2.b,
    proxyArgs: [
      'run',
      '--mode',
      'tproxy',
      '--capture',
      'prerouting',
      '-i',
      l1.b,
      '--family',
      'ipv4',
      '--no-bypass-private',
      '-P',
      '7000-7001',
      ...TIMEOUTS,
    ],
    // Replies to the preserved client address go back through the gateway.
    relink: () => server.addRoute('default', '10.82.2.1'),
  };
}

const BLACKHOLE = [
  'table inet tpxfault {',
  '  chain in { type filter hook input priority -300; policy drop; }',
  '  chain out { type filter hook output priority -300; policy drop; }',
  '}',
].join('\n');

async function faultSuite(t: Topology, label: string, extra: string[] = []): Promise<void> {
  const proxy = await startTranproxy(t.proxyHost, [...t.proxyArgs, ...extra]);
  const worker = workerPid(proxy.pid);
  let server = await faultServer(t.server, 7000);

  // Warm up (lazy sockets, timers), then take the baseline with nothing proxied.
  const warm = await connectClient(t.client, t.serverIp, 7000);
  await echoOnce(warm, 'warm');
  warm.proc.child.stdin!.end();
  await proxy.waitForOutput(/conn .*dst=10\.8\d\.\d\.2:7000 .*close=eof/, 15_000);
  const baseline = await steady("the worker's fd count", () => fdCount(worker));

  // (a) The server resets mid-stream: the client learns at once (reset or close).
  const a = await connectClient(t.client, t.serverIp, 7000);
  await echoOnce(a, 'before-reset');
  const t0 = Date.now();
  server.child.stdin!.write('rst\n');
  await server.waitForOutput(/^rst [1-9]\d*$/m);
  const ra = await a.closed(t0, SLACK_MS);
  assert.ok(['reset', 'eof'].includes(ra.kind), `${label} reset: client saw ${ra.kind}`);
  await proxy.waitForOutput(/conn .*dst=10\.8\d\.\d\.2:7000 .*close=upstream-error/, 10_000);

  // (b) The server blackholes mid-stream: nothing comes back, so the idle timeout ends it.
  const b = await connectClient(t.client, t.serverIp, 7000);
  await echoOnce(b, 'before-blackhole');
  await t.server.run('nft', ['-f', '-'], { input: BLACKHOLE });
  const t1 = Date.now();
  b.send('into-the-void');
  const rb = await b.closed(t1, IDLE_S * 1000 + SLACK_MS);
  assert.ok(['reset', 'eof'].includes(rb.kind), `${label} blackhole: client saw ${rb.kind}`);
  assert.doesNotMatch(b.proc.output(), /echo: into-the-void/);
  await proxy.waitForOutput(/close=idle/, 10_000);
  await t.server.run('nft', ['delete', 'table', 'inet', 'tpxfault']);

  // (c) The server vanishes: its process is killed (the kernel closes its sockets)…
  const c = await connectClient(t.client, t.serverIp, 7000);
  await echoOnce(c, 'before-kill');
  const t2 = Date.now();
  await server.stop('SIGKILL');
  const rc = await c.closed(t2, SLACK_MS);
  assert.ok(['reset', 'eof'].includes(rc.kind), `${label} killed: client saw ${rc.kind}`);
  // … and then the whole host drops off the network: the connect timeout ends the attempt.
  await t.server.run('ip', ['link', 'set', 'dev', t.serverIf, 'down']);
  const t3 = Date.now();
  const d = await connectClient(t.client, t.serverIp, 7000);
  const rd = await d.closed(t3, CONNECT_S * 1000 + SLACK_MS);
  assert.ok(['reset', 'eof'].includes(rd.kind), `${label} host gone: client saw ${rd.kind}`);
  // The connect timeout's own line: a looser pattern was met already by (a)'s upstream-error line.
  await proxy.waitForOutput(/conn .*dst=10\.8\d\.\d\.2:7000 .*close=connect-failed error=ETIMEDOUT/, 10_000);

  // The proxy is unaffected: same processes, new connections work, no fd left behind.
  await t.server.run('ip', ['link', 'set', 'dev', t.serverIf, 'up']);
  t.relink();
  server = await faultServer(t.server, 7001);
  // The proxy host's neighbour entry for the server went FAILED while the link was down
  // (connects then fail with EHOSTUNREACH until it is resolved again): wait until the server
  // answers a ping, which is the network coming back, not the proxy.
  for (let i = 0; i < 20; i++) {
    if ((await t.proxyHost.run('ping', ['-c1', '-W1', t.serverIp], { allowFailure: true })).status === 0) break;
    await sleep(250);
  }
  const e = await connectClient(t.client, t.serverIp, 7001);
  await echoOnce(e, 'after-faults');
  e.proc.child.stdin!.end();
  assert.equal(workerPid(proxy.pid), worker, 'the worker was not restarted');
  const after = await fdsBackTo(worker, baseline);
  console.log(
    `# ${label}: reset → client ${ra.kind} after ${ra.ms} ms; blackhole → ${rb.kind} after ${rb.ms} ms (idle ${IDLE_S}s); ` +
      `killed → ${rc.kind} after ${rc.ms} ms; host down → ${rd.kind} after ${rd.ms} ms (connect ${CONNECT_S}s); worker fds ${baseline} → ${after}`,
  );
  assert.ok(after <= baseline, `${label}: worker fds back to baseline ${baseline} (now ${after})`);
  assert.equal(await stopGracefully(proxy), 0);
  await server.stop();
}

test('REDIRECT: upstream reset, blackhole and vanish mid-stream end the client within the timeouts; the proxy keeps serving, no fd leak', async () => {
  await withLab(async (lab) => faultSuite(redirectTopology(lab), 'redirect'));
});

test('REDIRECT with the JS relay (the engine of inspected flows): the same faults, the same outcome', async () => {
  await withLab(async (lab) => faultSuite(redirectTopology(lab), 'redirect/js', ['--relay', 'js']));
});

test('TPROXY gateway: upstream reset, blackhole and vanish mid-stream end the client within the timeouts; the proxy keeps serving, no fd leak', async () => {
  await withLab(async (lab) => faultSuite(tproxyTopology(lab), 'tproxy'));
});

function netnsInode(host: Host): string {
  return String(statSync(`/run/netns/${host.netns}`).ino);
}

async function countOf(host: Host, cmd: string, args: string[], re: RegExp): Promise<number> {
  const out = (await host.run(cmd, args, { allowFailure: true })).stdout;
  return out.split('\n').filter((l) => re.test(l)).length;
}

test('SIGKILL of the supervisor mid-traffic, then restart: rules not duplicated, forwarding state kept right, traffic flows', async () => {
  await withLab(async (lab) => {
    const t = tproxyTopology(lab);
    const gw = t.proxyHost;
    const sysctl = async (k: string) => (await gw.run('sysctl', ['-n', k])).stdout.trim();
    assert.equal(await sysctl('net.ipv4.ip_forward'), '0');
    const stateFile = `/run/tranproxy/forwarding-${netnsInode(gw)}.json`;
    const server = await faultServer(t.server, 7000);

    const first = await startTranproxy(gw, t.proxyArgs);
    assert.ok(existsSync(stateFile), `forwarding state in ${stateFile}`);
    // Traffic in flight: a client echoing every 50 ms.
    const c = await connectClient(t.client, t.serverIp, 7000);
    await echoOnce(c, 'first-run');
    let n = 0;
    const pump = setInterval(() => c.send(`tick${n++}`), 50).unref(); // unref: a failed assertion must not keep the file alive
    await c.proc.waitForOutput(/^echo: tick5$/m, 15_000);
    const firstWorker = workerPid(first.pid);
    process.kill(first.pid, 'SIGKILL');
    const closed = await c.closed(Date.now(), 10_000);
    clearInterval(pump);
    // The orphaned worker follows its supervisor (IPC channel closed).
    for (let i = 0; i < 50 && existsSync(`/proc/${firstWorker}`); i++) await sleep(100);
    assert.ok(!existsSync(`/proc/${firstWorker}`), 'the worker exits with its supervisor');

    // A SIGKILLed run cannot clean up: rules, route and forwarding stay, with the old value saved.
    assert.equal(await countOf(gw, 'nft', ['list', 'tables'], /^table inet tranproxy$/), 1);
    assert.equal(await sysctl('net.ipv4.ip_forward'), '1');
    assert.deepEqual(JSON.parse(readFileSync(stateFile, 'utf8')), { 'net.ipv4.ip_forward': '0' });

    const second = await startTranproxy(gw, t.proxyArgs);
    // Exactly one table, one copy of each chain and rule, one policy rule and route.
    assert.equal(await countOf(gw, 'nft', ['list', 'tables'], /tranproxy/), 1);
    const ruleset = (await gw.run('nft', ['list', 'ruleset'])).stdout;
    assert.equal(ruleset.match(/chain mangle_prerouting/g)?.length, 1, ruleset);
    assert.equal(ruleset.match(/tproxy ip to :15001/g)?.length, 1, ruleset);
    assert.equal(await countOf(gw, 'ip', ['-4', 'rule', 'list'], /lookup 233/), 1);
    assert.equal(await countOf(gw, 'ip', ['-4', 'route', 'show', 'table', '233'], /local default/), 1);
    // The restart did not take the crashed run's "1" for the original value.
    assert.deepEqual(JSON.parse(readFileSync(stateFile, 'utf8')), { 'net.ipv4.ip_forward': '0' });

    const d = await connectClient(t.client, t.serverIp, 7000);
    await echoOnce(d, 'second-run');
    d.proc.child.stdin!.end();
    await second.waitForOutput(/conn .*dst=10\.82\.2\.2:7000 .*close=eof/, 10_000);
    assert.equal(await stopGracefully(second), 0);
    assert.equal(await countOf(gw, 'nft', ['list', 'tables'], /tranproxy/), 0);
    assert.equal(await countOf(gw, 'ip', ['-4', 'rule', 'list'], /lookup 233/), 0);
    assert.equal(await sysctl('net.ipv4.ip_forward'), '0', 'the value from before the first run is restored');
    assert.ok(!existsSync(stateFile), 'state file removed');
    console.log(
      `# SIGKILL mid-traffic: client saw ${closed.kind} after ${closed.ms} ms; restart left 1 table, 1 ip rule, 1 route`,
    );
    await server.stop();
  });
});
