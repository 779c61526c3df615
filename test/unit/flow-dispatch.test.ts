// Admission and dispatch of flows without sockets: fake outbounds (our own seam) record what
// they were asked; the router is the real one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { FlowError } from '../../src/errors.js';
import { admit, isLoopForNamedTarget } from '../../src/flow/admission.js';
import { connectTcp, route, type Dispatch, type InboundFlow } from '../../src/flow/dispatch.js';
import { rejectOutbound } from '../../src/outbound/builtin.js';
import { OutboundError, type Destination, type TcpOutbound } from '../../src/outbound/types.js';
import { createLogger } from '../../src/observe/log.js';
import { compileRules } from '../../src/route/index.js';

function fakeTcp(name: string, failWith?: string): TcpOutbound & { asked: Destination[] } {
  const asked: Destination[] = [];
  return {
    name,
    kind: name === 'direct' ? 'direct' : 'fake',
    asked,
    connect(dst) {
      asked.push(dst);
      return failWith
        ? Promise.reject(new OutboundError(name, failWith, `${failWith} from ${name}`))
        : Promise.resolve(new PassThrough());
    },
  };
}

function setup(opts: { nodeA?: string; nodeB?: string; fallbacks?: [string, string][] } = {}) {
  const lines: string[] = [];
  const log = createLogger('text', (l) => lines.push(l.trimEnd()));
  const direct = fakeTcp('direct');
  const nodeA = fakeTcp('node-a', opts.nodeA);
  const nodeB = fakeTcp('node-b', opts.nodeB);
  const all = new Map<string, TcpOutbound>([
    ['direct', direct],
    ['reject', rejectOutbound],
    ['node-a', nodeA],
    ['node-b', nodeB],
  ]);
  const resolved: string[] = [];
  const d: Dispatch<TcpOutbound> = {
    router: compileRules(
      [
        { domainSuffix: 'ads.test', outbound: 'reject' },
        { domainSuffix: 'direct.test', outbound: 'direct' },
        { port: 9999, outbound: 'ghost' },
      ],
      'node-a',
      ['node-a', 'node-b', 'ghost'],
    ),
    outbounds: all,
    fallbacks: new Map(opts.fallbacks ?? []),
    fakeIp: {
      lookup: (ip) => ({ '198.18.0.5': 'www.direct.test', '198.18.0.6': 'api.remote.test' })[ip],
      resolveReal: async (domain) => {
        resolved.push(domain);
        return domain === 'www.direct.test' ? ['192.0.2.20'] : [];
      },
    },
  };
  return { d, lines, log, direct, nodeA, nodeB, resolved };
}

const tcp = (ip: string, port: number, domain?: string): InboundFlow => ({
  network: 'tcp',
  src: { address: '10.0.0.2', port: 40000 },
  dst: { ip, port, family: 4, ...(domain ? { domain } : {}) },
});

test('admission: the limit is checked before the destination is read; refused flows say why', () => {
  const policy = { maxConnections: 2, ownPorts: [15001, 9090] };
  const isLocal = (a: string) => a === '10.0.0.1' || a === '127.0.0.1';
  let asked = 0;
  const dst = (address: string, port: number) => () => {
    asked++;
    return { address, port, family: 4 as const };
  };
  assert.deepEqual(admit(policy, 2, dst('192.0.2.1', 80), isLocal), { ok: false, reason: 'max-connections' });
  assert.equal(asked, 0);
  assert.deepEqual(admit(policy, 1, dst('192.0.2.1', 80), isLocal), {
    ok: true,
    dst: { address: '192.0.2.1', port: 80, family: 4 },
  });
  assert.deepEqual(
    admit(policy, 0, () => ({ error: 'ENOENT' }), isLocal),
    { ok: false, reason: 'no-original-destination', error: 'ENOENT' },
  );
  // Loop guard: one of our ports at one of our addresses; the same port elsewhere is fine.
  assert.equal(admit(policy, 0, dst('10.0.0.1', 9090), isLocal).ok, false);
  assert.equal((admit(policy, 0, dst('10.0.0.1', 15001), isLocal) as { reason: string }).reason, 'loop');
  assert.equal(admit(policy, 0, dst('192.0.2.1', 9090), isLocal).ok, true);
  assert.equal(admit(policy, 0, dst('10.0.0.1', 8080), isLocal).ok, true);
  // A destination named by a Host header must not reach loopback services at all.
  assert.equal(isLoopForNamedTarget(policy, { address: '127.0.0.53', port: 53 }, isLocal), true);
  assert.equal(isLoopForNamedTarget(policy, { address: '::1', port: 8080 }, isLocal), true);
  assert.equal(isLoopForNamedTarget(policy, { address: '192.0.2.1', port: 8080 }, isLocal), false);
});

test('dispatch: the router names an outbound (direct, reject and nodes alike) and the rule', () => {
  const { d, direct, nodeA } = setup();
  const byDomain = route(d, tcp('192.0.2.1', 443, 'www.direct.test'));
  assert.equal(byDomain.outbound, direct);
  assert.equal(byDomain.rule, 'rules[1]');
  const byDefault = route(d, tcp('192.0.2.1', 443));
  assert.equal(byDefault.outbound, nodeA);
  assert.equal(byDefault.rule, 'default');
  const rejected = route(d, tcp('192.0.2.1', 443, 'x.ads.test'));
  assert.equal(rejected.outbound, rejectOutbound);
  // Without a router every flow goes direct, with no rule.
  const plain = route({ outbounds: d.outbounds }, tcp('192.0.2.1', 443, 'x.ads.test'));
  assert.equal(plain.outbound, direct);
  assert.equal(plain.rule, undefined);
});

test('dispatch: reject is an outbound whose connect fails with EREJECTED', async () => {
  const { d, log } = setup();
  const r = route(d, tcp('192.0.2.1', 443, 'x.ads.test'));
  await assert.rejects(connectTcp(d, r, { source: r.dst && { address: '10.0.0.2', port: 1 }, log }), (e) => {
    assert.ok(e instanceof FlowError);
    assert.equal(e.code, 'EREJECTED');
    assert.equal(e.outbound, 'reject');
    return true;
  });
});

test('dispatch: an unreachable node hands the flow to its fallback, and says so', async () => {
  const { d, log, lines, nodeB } = setup({ nodeA: 'ECONNREFUSED', fallbacks: [['node-a', 'node-b']] });
  const r = route(d, tcp('192.0.2.1', 443, 'example.com'));
  const c = await connectTcp(d, r, { source: { address: '10.0.0.2', port: 1 }, log });
  assert.equal(c.via, 'node-b');
  assert.equal(c.fallbackFrom, 'node-a');
  assert.deepEqual(nodeB.asked, [{ ip: '192.0.2.1', port: 443, family: 4, domain: 'example.com' }]);
  assert.deepEqual(lines, [
    'tranproxy WARN: node unreachable, using fallback node=node-a error=ECONNREFUSED fallback=node-b',
  ]);
});

test('dispatch: no fallback when the node answered (refusal by the node) or the client is gone', async () => {
  const refusedByNode = setup({ nodeA: 'EAUTH', fallbacks: [['node-a', 'node-b']] });
  const r = route(refusedByNode.d, tcp('192.0.2.1', 443));
  await assert.rejects(connectTcp(refusedByNode.d, r, { source: { address: '10.0.0.2', port: 1 } }), {
    code: 'EAUTH',
    outbound: 'node-a',
  });
  assert.equal(refusedByNode.nodeB.asked.length, 0);
  const gone = setup({ nodeA: 'ETIMEDOUT', fallbacks: [['node-a', 'node-b']] });
  await assert.rejects(
    connectTcp(gone.d, route(gone.d, tcp('192.0.2.1', 443)), {
      source: { address: '10.0.0.2', port: 1 },
      clientGone: () => true,
    }),
    { code: 'ETIMEDOUT', outbound: 'node-a' },
  );
  // A fallback cycle ends: each outbound is tried once.
  const cycle = setup({
    nodeA: 'ECONNREFUSED',
    nodeB: 'ECONNREFUSED',
    fallbacks: [
      ['node-a', 'node-b'],
      ['node-b', 'node-a'],
    ],
  });
  await assert.rejects(
    connectTcp(cycle.d, route(cycle.d, tcp('192.0.2.1', 443)), { source: { address: '10.0.0.2', port: 1 } }),
    {
      code: 'ECONNREFUSED',
      outbound: 'node-b',
    },
  );
  assert.equal(cycle.nodeA.asked.length, 1);
});

test('dispatch: a route to an outbound that does not exist fails with ENOOUTBOUND', async () => {
  const { d } = setup();
  const r = route(d, tcp('192.0.2.1', 9999));
  assert.equal(r.outbound, undefined);
  await assert.rejects(connectTcp(d, r, { source: { address: '10.0.0.2', port: 1 } }), {
    code: 'ENOOUTBOUND',
    outbound: 'ghost',
  });
});

test('dispatch: fake-IP hit routes by its domain; direct connects to the real address, a node gets the name', async () => {
  const { d, direct, nodeA, resolved } = setup();
  const toDirect = route(d, tcp('198.18.0.5', 443, 'sniffed.example'));
  assert.equal(toDirect.dst.domain, 'www.direct.test');
  assert.equal(toDirect.fake, true);
  await connectTcp(d, toDirect, { source: { address: '10.0.0.2', port: 1 } });
  assert.deepEqual(direct.asked, [{ ip: '192.0.2.20', port: 443, family: 4, domain: 'www.direct.test' }]);
  const toNode = route(d, tcp('198.18.0.6', 443));
  await connectTcp(d, toNode, { source: { address: '10.0.0.2', port: 1 } });
  assert.deepEqual(nodeA.asked, [{ ip: '198.18.0.6', port: 443, family: 4, domain: 'api.remote.test' }]);
  assert.deepEqual(resolved, ['www.direct.test']);
});

test('dispatch: fake-IP miss keeps the sniffed domain and the address; no real address means ENOTFOUND', async () => {
  const { d, direct, resolved } = setup();
  const miss = route(d, tcp('192.0.2.7', 443, 'www.direct.test'));
  assert.equal(miss.fake, false);
  await connectTcp(d, miss, { source: { address: '10.0.0.2', port: 1 } });
  assert.deepEqual(direct.asked, [{ ip: '192.0.2.7', port: 443, family: 4, domain: 'www.direct.test' }]);
  assert.deepEqual(resolved, []);
  const noReal = setup();
  noReal.d.fakeIp = { lookup: () => 'gone.direct.test', resolveReal: async () => [] };
  await assert.rejects(
    connectTcp(noReal.d, route(noReal.d, tcp('198.18.0.9', 443)), { source: { address: '10.0.0.2', port: 1 } }),
    { code: 'ENOTFOUND', outbound: 'direct' },
  );
});
