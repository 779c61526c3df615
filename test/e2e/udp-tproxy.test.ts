// UDP over TPROXY end to end: client ── gw (TPROXY prerouting, startUdpTproxy) ── server
// (udp_echo). The relay runs in a child process inside the gw netns
// (test/helpers/udp-tproxy-runner.ts), next to its nft rules.
//
// Source addresses: the UDP source is NOT spoofed — the server sees the gateway's address;
// the client gets its replies FROM the original destination (transparent reply socket).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import type { Host, Lab, LabProcess } from '../../src/netlab/lab.js';
import { fdCount, startPeer, withLab } from '../helpers/lab.js';
import type { RunnerConfig } from '../helpers/udp-tproxy-runner.js';

const RUNNER = fileURLToPath(new URL('../helpers/udp-tproxy-runner.ts', import.meta.url));
const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : false;
const PORT = 15001;
const MARK = 0x539;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** client ── gw ── server, v4 and v6 (addresses as in core.test.ts's TPROXY test). */
function gateway(lab: Lab): { client: Host; gw: Host; server: Host; lanIf: string } {
  const client = lab.addHost('client');
  const gw = lab.addHost('gw');
  const server = lab.addHost('server');
  const lan = lab.link(client, gw, { a: ['10.72.1.2/24', 'fd72:1::2/64'], b: ['10.72.1.1/24', 'fd72:1::1/64'] });
  lab.link(gw, server, { a: ['10.72.2.1/24', 'fd72:2::1/64'], b: ['10.72.2.2/24', 'fd72:2::2/64'] });
  client.addRoute('default', '10.72.1.1');
  client.addRoute('default', 'fd72:1::1');
  server.addRoute('default', '10.72.2.1');
  server.addRoute('default', 'fd72:2::1');
  gw.enableForwarding();
  return { client, gw, server, lanIf: lan.b };
}

/**
 * Resolve the client's neighbours first: on a fresh veth the client's first IPv6 packet can
 * wait ~1 s for its router's neighbour solicitation to be retransmitted (seen before the
 * packet ever reaches the proxy), which would look like a lost first datagram.
 */
async function warmUp(client: Host): Promise<void> {
  await client.run('ping', ['-c1', '-W2', '10.72.1.1'], { allowFailure: true });
  await client.run('ping', ['-6', '-c1', '-W2', 'fd72:1::1'], { allowFailure: true });
}

async function startRunner(gw: Host, cfg: RunnerConfig): Promise<LabProcess> {
  const p = gw.spawn(process.execPath, ['--import', 'tsx', RUNNER, JSON.stringify(cfg)]);
  await p.waitForOutput(/^ready.*$/m, 20_000);
  return p;
}

interface RunnerStats {
  flows: number;
  flowsTotal: number;
  datagramsUp: number;
  datagramsDown: number;
  drops: Record<string, number>;
}

async function stats(p: LabProcess): Promise<RunnerStats> {
  const count = () => p.output().match(/^stats .*$/gm)?.length ?? 0;
  const before = count();
  p.child.stdin!.write('stats\n');
  for (let i = 0; i < 100 && count() === before; i++) await sleep(50);
  const lines = p.output().match(/^stats .*$/gm) ?? [];
  assert.ok(lines.length > before, `no stats answer; output:\n${p.output()}`);
  return JSON.parse(lines[lines.length - 1]!.slice(6)) as RunnerStats;
}

// COUNT sockets (distinct source ports) each send "hello I" to HOST PORT; unanswered ones
// resend every second until TIMEOUT. Prints {answered, replies: {I: [payload, from, fromPort, localPort]}}.
const UDP_CLIENT = `
import json, select, socket, sys, time
host, port, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
socks = []
for i in range(count):
    s = socket.socket(fam, socket.SOCK_DGRAM); s.bind(('', 0)); socks.append(s)
pending = {s.fileno(): (i, s) for i, s in enumerate(socks)}
out = {}
end = time.time() + timeout
while pending and time.time() < end:
    for i, s in pending.values():
        s.sendto(b'hello %d' % i, (host, port))
    until = min(end, time.time() + 1)
    while pending and time.time() < until:
        r, _, _ = select.select(list(pending), [], [], max(0, until - time.time()))
        for fd in r:
            i, s = pending.pop(fd)
            data, src = s.recvfrom(65535)
            out[i] = [data.decode(), src[0], src[1], s.getsockname()[1]]
print(json.dumps({'answered': len(out), 'replies': out, 'unanswered': [s.getsockname()[1] for i, s in pending.values()]}))
`;

interface ClientResult {
  answered: number;
  /** Local ports of the sockets that got no answer. */
  unanswered: number[];
  replies: Record<string, [string, string, number, number]>;
}

async function udpClient(client: Host, host: string, port: number, count = 1, timeoutS = 5): Promise<ClientResult> {
  const r = await client.run('python3', ['-c', UDP_CLIENT, host, String(port), String(count), String(timeoutS)], {
    timeoutMs: (timeoutS + 10) * 1000,
  });
  return JSON.parse(r.stdout) as ClientResult;
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** The fd count of `pid` once it holds still for 300 ms: a process just ready may still close
 *  a descriptor of its start-up (a rule child's pipe), which would otherwise count as a leak's room. */
async function settledFdCount(pid: number): Promise<number> {
  let last = fdCount(pid);
  for (let i = 0; i < 20; i++) {
    await sleep(300);
    const now = fdCount(pid);
    if (now === last) return now;
    last = now;
  }
  return last;
}

async function rulesIn(host: Host): Promise<string> {
  const nft = await host.run('nft', ['list', 'ruleset'], { allowFailure: true });
  const rules = await host.run('ip', ['rule', 'list'], { allowFailure: true });
  return nft.stdout + rules.stdout;
}

async function stopRunner(gw: Host, runner: LabProcess): Promise<void> {
  assert.equal(await runner.stop('SIGTERM'), 0, runner.output());
  const m = /^stopped fds-before=(\d+) fds-after=(\d+)$/m.exec(runner.output());
  assert.ok(m, runner.output());
  // ≤: the count before may include a transient fd of the runner's own start-up (module loading).
  assert.ok(Number(m[2]) <= Number(m[1]), `close() released every fd it opened: ${m[0]}`);
  const after = await rulesIn(gw);
  assert.doesNotMatch(after, /tranproxy/);
  assert.doesNotMatch(after, /lookup 100/);
}

test('UDP TPROXY on a gateway: echo v4 and v6, reply from the original destination, flows logged and expired, fds back to baseline', {
  skip,
}, async () => {
  await withLab(async (lab) => {
    const { client, gw, server, lanIf } = gateway(lab);
    await warmUp(client);
    const echo = await startPeer(server, 'udp_echo', 5353);
    const runner = await startRunner(gw, {
      port: PORT,
      families: [4, 6],
      // Both flows must still be live when counted, after a second client process (python start-up
      // on a loaded machine) and a wait for the server's line: 1.5 s was under 5x that time.
      idleTimeoutMs: 4000,
      mark: MARK,
      ports: [[5353, 5353]],
      inInterfaces: [lanIf],
    });
    assert.match(runner.output(), /ready backends=4:event-loop,6:event-loop/);
    const baseline = await settledFdCount(runner.pid);

    const r4 = await udpClient(client, '10.72.2.2', 5353);
    assert.equal(r4.answered, 1, JSON.stringify(r4));
    const [payload4, from4, fromPort4, clientPort4] = r4.replies['0']!;
    assert.equal(payload4, 'hello 0');
    assert.deepEqual([from4, fromPort4], ['10.72.2.2', 5353], 'the reply comes from the original destination');
    // Not spoofed: the server sees the gateway.
    await echo.waitForOutput(/^10\.72\.2\.1 \d+$/m);
    assert.doesNotMatch(echo.output(), /^10\.72\.1\.2 /m);

    const r6 = await udpClient(client, 'fd72:2::2', 5353);
    assert.equal(r6.answered, 1, JSON.stringify(r6));
    const [payload6, from6, fromPort6, clientPort6] = r6.replies['0']!;
    assert.equal(payload6, 'hello 0');
    assert.deepEqual([from6, fromPort6], ['fd72:2::2', 5353]);
    await echo.waitForOutput(/^fd72:2::1 \d+$/m);

    const s = await stats(runner);
    assert.equal(s.flowsTotal, 2);
    assert.equal(s.flows, 2);

    // Both flows end on the idle timeout, each with one line naming the original destination.
    await runner.waitForOutput(
      new RegExp(
        `udp src=10\\.72\\.1\\.2:${clientPort4} dst=10\\.72\\.2\\.2:5353 up=7 down=7 packets=1/1 dur=\\d+ms close=idle out=direct`,
      ),
      10_000,
    );
    await runner.waitForOutput(
      new RegExp(
        `udp src=\\[fd72:1::2\\]:${clientPort6} dst=\\[fd72:2::2\\]:5353 up=7 down=7 packets=1/1 dur=\\d+ms close=idle`,
      ),
      10_000,
    );
    assert.equal((await stats(runner)).flows, 0);
    // Upstream sockets are gone with their flows, reply sockets after their own idle time.
    await waitFor(`fd count back to ${baseline} (now ${fdCount(runner.pid)})`, () => fdCount(runner.pid) <= baseline);

    // A datagram to the proxy's own port on the gateway's address is not relayed to itself.
    const loop = await udpClient(client, '10.72.1.1', PORT, 1, 1);
    assert.equal(loop.answered, 0);
    await waitFor('loop drop', async () => ((await stats(runner)).drops.loop ?? 0) >= 1);
    assert.equal((await stats(runner)).flowsTotal, 2);

    await stopRunner(gw, runner);
  });
});

test('UDP TPROXY: 200 concurrent flows (distinct client ports) all answered, then all expire', { skip }, async () => {
  await withLab(async (lab) => {
    const { client, gw, server, lanIf } = gateway(lab);
    await warmUp(client);
    const echo = await startPeer(server, 'udp_echo', 5353);
    const runner = await startRunner(gw, {
      port: PORT,
      families: [4],
      idleTimeoutMs: 3000,
      mark: MARK,
      ports: [[5353, 5353]],
      inInterfaces: [lanIf],
    });
    const baseline = await settledFdCount(runner.pid);

    const r = await udpClient(client, '10.72.2.2', 5353, 200, 10);
    assert.equal(
      r.answered,
      200,
      `unanswered ports ${JSON.stringify(r.unanswered)}; stats ${JSON.stringify(await stats(runner))}`,
    );
    const ports = new Set<number>();
    for (const [i, [payload, from, fromPort, localPort]] of Object.entries(r.replies)) {
      assert.equal(payload, `hello ${i}`);
      assert.deepEqual([from, fromPort], ['10.72.2.2', 5353]);
      ports.add(localPort);
    }
    assert.equal(ports.size, 200);
    const s = await stats(runner);
    assert.equal(s.flowsTotal, 200, JSON.stringify(s));
    assert.equal(s.flows, 200);
    assert.ok(s.datagramsDown >= 200);
    // 200 flows upstream: the server saw 200 distinct gateway ports.
    const serverPorts = new Set(echo.output().match(/^10\.72\.2\.1 (\d+)$/gm) ?? []);
    assert.equal(serverPorts.size, 200);

    await waitFor('all flows idle', async () => (await stats(runner)).flows === 0, 15_000);
    assert.equal(runner.output().match(/udp src=10\.72\.1\.2:\d+ dst=10\.72\.2\.2:5353 .*close=idle/g)?.length, 200);
    await waitFor(`fd count back to ${baseline} (now ${fdCount(runner.pid)})`, () => fdCount(runner.pid) <= baseline);
    await stopRunner(gw, runner);
  });
});

test('UDP TPROXY with the worker-thread receive backend and no mark: v4 and v6, clean stop', { skip }, async () => {
  await withLab(async (lab) => {
    const { client, gw, server, lanIf } = gateway(lab);
    await warmUp(client);
    await startPeer(server, 'udp_echo', 5353);
    const runner = await startRunner(gw, {
      port: PORT,
      families: [4, 6],
      idleTimeoutMs: 60_000,
      backend: 'worker',
      ports: [[5353, 5353]],
      inInterfaces: [lanIf],
    });
    assert.match(runner.output(), /ready backends=4:worker,6:worker/);
    for (const host of ['10.72.2.2', 'fd72:2::2']) {
      const r = await udpClient(client, host, 5353, 20);
      assert.equal(r.answered, 20, host);
      assert.ok(Object.values(r.replies).every(([, from, port]) => from === host && port === 5353));
    }
    assert.equal((await stats(runner)).flows, 40);
    // Stopping ends the live flows (logged as shutdown) and the workers exit.
    await stopRunner(gw, runner);
    assert.equal(runner.output().match(/udp src=.* close=shutdown/g)?.length, 40);
  });
});

// Rough rate measurement, for the report: TPX_UDP_BENCH=1 node --import tsx --test test/e2e/udp-tproxy.test.ts
const SINK = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', int(sys.argv[1])))
print('listening', flush=True)
while True: s.recv(65535)
`;
const BLAST = `
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect((sys.argv[1], int(sys.argv[2])))
p = b'x' * int(sys.argv[4]); n = 0; end = time.time() + float(sys.argv[3])
while time.time() < end:
    for _ in range(200):
        try: s.send(p)
        except OSError: pass
    n += 200
print(n)
`;

test('UDP TPROXY receive rate (opt-in: TPX_UDP_BENCH=1)', {
  skip: skip || (process.env.TPX_UDP_BENCH ? false : 'set TPX_UDP_BENCH=1'),
}, async () => {
  for (const backend of ['event-loop', 'worker'] as const) {
    await withLab(async (lab) => {
      const { client, gw, server, lanIf } = gateway(lab);
      await warmUp(client);
      const sink = server.spawn('python3', ['-c', SINK, '9999']);
      await sink.waitForOutput(/listening/);
      const runner = await startRunner(gw, {
        port: PORT,
        families: [4],
        idleTimeoutMs: 60_000,
        backend,
        mark: MARK,
        ports: [[9999, 9999]],
        inInterfaces: [lanIf],
      });
      const secs = 3;
      const sent = Number(
        (await client.run('python3', ['-c', BLAST, '10.72.2.2', '9999', String(secs), '64'])).stdout.trim(),
      );
      await sleep(300);
      const s = await stats(runner);
      console.log(
        `udp-bench backend=${backend} sent=${Math.round(sent / secs)}/s relayed=${Math.round(s.datagramsUp / secs)}/s drops=${JSON.stringify(s.drops)}`,
      );
      await stopRunner(gw, runner);
    });
  }
});
