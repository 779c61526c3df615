// Node groups: selection (url-test tolerance, fallback order, health transitions) with fake
// probes, a real HTTP probe through a direct-style outbound, and the file's validation.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { ConfigError, parseConfigText } from '../../src/config/file.js';
import { routingOf } from '../../src/config/routing.js';
import {
  GroupOutbound,
  httpProbe,
  pickFallback,
  pickUrlTest,
  type GroupSpec,
  type MemberHealth,
} from '../../src/outbound/group.js';
import type { TcpOutbound } from '../../src/outbound/types.js';
import { directOutbound, rejectOutbound } from '../../src/outbound/builtin.js';

const h = (entries: Record<string, MemberHealth>) => new Map(Object.entries(entries));

test('url-test keeps the current member unless another is faster by more than the tolerance', () => {
  const members = ['a', 'b', 'c'];
  assert.equal(
    pickUrlTest(members, h({ a: { alive: true, delayMs: 100 }, b: { alive: true, delayMs: 60 } }), 'a', 50),
    'a',
  );
  assert.equal(
    pickUrlTest(members, h({ a: { alive: true, delayMs: 100 }, b: { alive: true, delayMs: 49 } }), 'a', 50),
    'b',
  );
  assert.equal(
    pickUrlTest(
      members,
      h({ a: { alive: false }, b: { alive: true, delayMs: 300 }, c: { alive: true, delayMs: 200 } }),
      'a',
      50,
    ),
    'c',
  );
  assert.equal(
    pickUrlTest(members, h({ a: { alive: false }, b: { alive: false } }), 'b', 50),
    'b',
    'nothing alive: stays',
  );
});

test('fallback takes the first member not known to be down, in order', () => {
  const members = ['a', 'b', 'c'];
  assert.equal(pickFallback(members, h({}), 'a'), 'a');
  assert.equal(
    pickFallback(
      members,
      h({ a: { alive: false }, b: { alive: true, delayMs: 900 }, c: { alive: true, delayMs: 1 } }),
      'a',
    ),
    'b',
  );
  assert.equal(pickFallback(members, h({ a: { alive: false }, b: { alive: false }, c: { alive: false } }), 'c'), 'c');
});

/** A group over fake members whose probe results the test sets. */
function fakeGroup(type: GroupSpec['type'], members: string[]) {
  const results = new Map<string, number | Error>();
  const changes: string[] = [];
  const outbound = (name: string): TcpOutbound => ({
    name,
    kind: 'fake',
    connect: () => Promise.reject(new Error(`${name} used`)),
  });
  const spec: GroupSpec = { type, members, url: 'http://probe/', intervalMs: 60_000, toleranceMs: 50 };
  const probe = async (m: TcpOutbound) => {
    const r = results.get(m.name);
    if (r === undefined || r instanceof Error) throw r ?? new Error('no result');
    return r;
  };
  const g = new GroupOutbound('g', spec, new Map(members.map((m) => [m, outbound(m)])), probe, (grp, from, reason) =>
    changes.push(`${from}->${grp.now} (${reason})`),
  );
  return { g, results, changes };
}

test('fallback moves off a member that goes down and back when it returns; connect goes to the chosen member', async () => {
  const { g, results, changes } = fakeGroup('fallback', ['hk', 'jp']);
  results.set('hk', 10).set('jp', 20);
  await g.checkNow();
  assert.equal(g.now, 'hk');
  results.set('hk', new Error('ECONNREFUSED'));
  await g.checkNow();
  assert.equal(g.now, 'jp');
  await assert.rejects(
    g.connect({ ip: '192.0.2.1', port: 80, family: 4 }, { source: { address: '192.0.2.9', port: 1 } }),
    /jp used/,
  );
  assert.deepEqual(g.state().members, [
    { name: 'hk', alive: false, error: 'ECONNREFUSED' },
    { name: 'jp', alive: true, delayMs: 20 },
  ]);
  results.set('hk', 30);
  await g.checkNow();
  assert.equal(g.now, 'hk');
  assert.deepEqual(changes, ['hk->jp (hk down: ECONNREFUSED)', 'jp->hk (back up)']);
});

test('a member in use whose probe fails is left at once, not when the slowest probe of the round returns', async () => {
  for (const type of ['url-test', 'fallback'] as const) {
    let releaseSlow!: () => void;
    const slow = new Promise<number>((_, reject) => (releaseSlow = () => reject(new Error('timeout'))));
    const probes: Record<string, () => Promise<number>> = {
      dead: () => Promise.reject(new Error('ECONNREFUSED')),
      fast: () => Promise.resolve(15),
      slow: () => slow,
    };
    const outbound = (name: string): TcpOutbound => ({
      name,
      kind: 'fake',
      connect: () => Promise.reject(new Error(name)),
    });
    const members = ['dead', 'fast', 'slow'];
    const g = new GroupOutbound(
      'g',
      { type, members, url: 'http://probe/', intervalMs: 60_000, toleranceMs: 50 },
      new Map(members.map((m) => [m, outbound(m)])),
      (m) => probes[m.name]!(),
    );
    const round = g.checkNow();
    await new Promise((r) => setImmediate(r));
    assert.equal(g.now, 'fast', `${type}: the dead member is left while 'slow' is still being probed`);
    releaseSlow();
    await round;
    assert.equal(g.now, 'fast', type);
  }
});

test('url-test switches to the faster member only beyond the tolerance', async () => {
  const { g, results, changes } = fakeGroup('url-test', ['a', 'b']);
  results.set('a', 100).set('b', 70);
  await g.checkNow();
  assert.equal(g.now, 'a', '30 ms faster is within the 50 ms tolerance');
  results.set('b', 20);
  await g.checkNow();
  assert.equal(g.now, 'b');
  assert.deepEqual(changes, ['a->b (faster)']);
});

test('select: chosen by hand among its members only; probes do not change it', async () => {
  const { g, results } = fakeGroup('select', ['a', 'b']);
  results.set('a', new Error('down')).set('b', 5);
  await g.checkNow();
  assert.equal(g.now, 'a');
  g.select('b');
  assert.equal(g.now, 'b');
  assert.throws(() => g.select('zz'), /'zz' is not a member of 'g' \(members: a, b\)/);
  const other = fakeGroup('url-test', ['a']).g;
  assert.throws(() => other.select('a'), /only select groups/);
});

/** An outbound that connects straight to 127.0.0.1 (what a member does, minus the node). */
const loopback: TcpOutbound = {
  name: 'lo',
  kind: 'test',
  connect: (dst) =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port: dst.port }, () => resolve(s));
      s.once('error', reject);
    }),
};

test('httpProbe: a 204 is healthy with its time; other statuses, closed ports and silence are failures', async () => {
  const server = http.createServer((req, res) => {
    if (req.url === '/generate_204') res.writeHead(204).end();
    else if (req.url === '/slow') setTimeout(() => res.writeHead(204).end(), 2000).unref();
    else res.writeHead(503).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  try {
    const ms = await httpProbe(loopback, `http://127.0.0.1:${port}/generate_204`, 2000);
    assert.ok(ms > 0 && ms < 2000, `delay ${ms}`);
    await assert.rejects(httpProbe(loopback, `http://127.0.0.1:${port}/other`, 2000), /HTTP status 503/);
    await assert.rejects(httpProbe(loopback, `http://127.0.0.1:${port}/slow`, 200), /timed out/);
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    await assert.rejects(httpProbe(loopback, `http://127.0.0.1:${closedPort}/`, 2000), /ECONNREFUSED/);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

const NODES = 'nodes:\n  hk1: socks5://192.0.2.1:1080\n  jp1: socks5://192.0.2.2:1080\n';

test('config: groups are outbounds for rules, default and default-udp, with their settings', () => {
  const cfg = parseConfigText(
    `${NODES}groups:\n  auto: { type: url-test, members: [hk1, jp1], url: "http://192.0.2.9/generate_204", interval: 5m, tolerance: 80 }\n  pick: { type: select, members: [auto, hk1, direct] }\nrules:\n  - { domain-suffix: example.com, outbound: auto }\ndefault: pick\ndefault-udp: auto\n`,
    'test.yaml',
  );
  assert.deepEqual(cfg.groups.auto, {
    type: 'url-test',
    members: ['hk1', 'jp1'],
    url: 'http://192.0.2.9/generate_204',
    intervalMs: 300_000,
    toleranceMs: 80,
  });
  assert.equal(cfg.groups.pick?.url, 'http://www.gstatic.com/generate_204');
  const routing = routingOf(cfg, undefined, 300);
  assert.equal(routing?.defaultOutbound, 'pick');
  assert.deepEqual(Object.keys(routing?.groups ?? {}), ['auto', 'pick']);
});

test('config: unknown members get "did you mean", cycles are refused naming the cycle', () => {
  const refuse = (text: string, re: RegExp) =>
    assert.throws(
      () => parseConfigText(text, 'test.yaml'),
      (e: unknown) => e instanceof ConfigError && re.test(e.message),
    );
  refuse(
    `${NODES}groups:\n  auto: { type: fallback, members: [hk1, jp2] }\n`,
    /groups\.auto\.members\[1\].*unknown outbound 'jp2'.*did you mean 'jp1'/s,
  );
  refuse(
    `${NODES}groups:\n  a: { type: select, members: [b] }\n  b: { type: fallback, members: [hk1, c] }\n  c: { type: url-test, members: [a] }\n`,
    /groups form a cycle: a -> b -> c -> a/,
  );
  refuse(`${NODES}groups:\n  a: { type: select, members: [a] }\n`, /cycle: a -> a/);
  refuse(`${NODES}groups:\n  a: { type: speed, members: [hk1] }\n`, /'speed' is not one of select, url-test, fallback/);
  refuse(`${NODES}groups:\n  hk1: { type: select, members: [jp1] }\n`, /'hk1' is already a node/);
  refuse(
    `${NODES}groups:\n  a: { type: select, members: [hk1] }\nrules:\n  - { port: 80, outbound: b }\n`,
    /unknown outbound 'b'/,
  );
});

test('console API: GET /api/groups lists the groups; PUT /api/groups/NAME chooses a select group member, refusals are 400 with the reason', async () => {
  const { ConsoleApi } = await import('../../src/console/api.js');
  const { createLogger } = await import('../../src/observe/log.js');
  const { g } = fakeGroup('select', ['a', 'b']);
  const control = {
    groups: async () => [g.state()],
    selectGroup: async (name: string, member: string) => {
      if (name !== 'g') throw new Error(`no group named '${name}'`);
      g.select(member);
    },
  };
  const api = new ConsoleApi({ store: {} as never, control: control as never, log: createLogger('text', () => {}) });
  const call = (method: string, path: string, body?: unknown) =>
    api.handle({ method, path, query: new URLSearchParams(), body });
  const list = await call('GET', '/groups');
  assert.equal(list.status, 200);
  assert.equal((list.body as { now: string }[])[0]?.now, 'a');
  const chosen = await call('PUT', '/groups/g', { member: 'b' });
  assert.equal(chosen.status, 200);
  assert.equal((chosen.body as { now: string }[])[0]?.now, 'b');
  assert.equal(g.now, 'b');
  const bad = await call('PUT', '/groups/g', { member: 'zz' });
  assert.equal(bad.status, 400);
  assert.match((bad.body as { error: string }).error, /'zz' is not a member of 'g'/);
  assert.equal((await call('PUT', '/groups/nope', { member: 'a' })).status, 400);
});

test('UDP: a group routes each flow to the UDP outbound of its current member, through nested groups; members without UDP are refused with the reason', async () => {
  const { udpGroupOutbounds } = await import('../../src/proxy/groups.js');
  const opened: string[] = [];
  const udp = (name: string) => ({ name, kind: 'fake', open: async () => (opened.push(name), {} as never) });
  // Real builtins as members: the UDP side asks a member's outbound what it is.
  const fake = (name: string): TcpOutbound => ({ name, kind: 'fake', connect: () => Promise.reject(new Error(name)) });
  const innerSpec: GroupSpec = {
    type: 'select',
    members: ['a', 'http1', 'direct', 'reject'],
    url: 'http://probe/',
    intervalMs: 60_000,
    toleranceMs: 50,
  };
  const inner = new GroupOutbound(
    'g',
    innerSpec,
    new Map<string, TcpOutbound>([
      ['a', fake('a')],
      ['http1', fake('http1')],
      ['direct', directOutbound(() => ({ connectTimeoutMs: 1000 }))],
      ['reject', rejectOutbound],
    ]),
    async () => 1,
  );
  const outerSpec: GroupSpec = {
    type: 'select',
    members: ['g', 'a'],
    url: 'http://probe/',
    intervalMs: 60_000,
    toleranceMs: 50,
  };
  const outer = new GroupOutbound(
    'outer',
    outerSpec,
    new Map<string, TcpOutbound>([
      ['g', inner],
      ['a', fake('a')],
    ]),
    async () => 1,
  );
  const obs = udpGroupOutbounds(
    new Map([
      ['g', inner],
      ['outer', outer],
    ]),
    new Map([['a', udp('a')]]),
    udp('direct'),
    new Map([['http1', "node 'http1' (http) cannot carry UDP"]]),
  );
  const flow = {
    id: 1,
    src: { address: '10.0.0.2', port: 5000, family: 4 as const },
    dst: { address: '192.0.2.1', port: 53, family: 4 as const },
  };
  await obs.get('outer')!.open(flow);
  assert.deepEqual(opened, ['a'], 'outer -> g -> a');
  inner.select('direct');
  await obs.get('outer')!.open(flow);
  assert.deepEqual(opened, ['a', 'direct']);
  inner.select('http1');
  await assert.rejects(obs.get('g')!.open(flow), /group 'g' uses node 'http1' \(http\) cannot carry UDP/);
  inner.select('reject');
  await assert.rejects(obs.get('g')!.open(flow), (e: Error & { code?: string }) => e.code === 'rejected-by-rule');
});
