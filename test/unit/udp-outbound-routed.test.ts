// routedUdpOutbound: each new flow is routed (network 'udp') to direct, a node, or refused
// (reject rule, node without UDP, unknown); fake-IP destinations route by their domain.
// Fake outbounds record what they were asked to open; log lines are captured.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Endpoint } from '../../src/kernel/sockaddr.js';
import { createLogger } from '../../src/observe/log.js';
import { compileRules } from '../../src/route/index.js';
import { routedUdpOutbound, UdpRefusedError } from '../../src/flow/udp-routed.js';
import { UdpRelay } from '../../src/udp/relay.js';
import type { UdpFlowInfo, UdpOutbound, UdpSession } from '../../src/udp/types.js';

const v4 = (address: string, port: number): Endpoint => ({ address, port, family: 4 });

function fakeOutbound(name: string, kind = 'fake'): UdpOutbound & { opened: UdpFlowInfo[] } {
  const opened: UdpFlowInfo[] = [];
  return {
    name,
    kind,
    opened,
    open(flow) {
      opened.push(flow);
      const session: UdpSession = { send: () => {}, onMessage: () => {}, onClose: () => {}, close: () => {} };
      return Promise.resolve(session);
    },
  };
}

function setup() {
  const lines: string[] = [];
  const log = createLogger('text', (l) => lines.push(l.trimEnd()));
  const router = compileRules(
    [
      { port: 5353, network: 'udp', outbound: 'direct' },
      { cidr: '192.0.2.66', outbound: 'reject' },
      { port: 8080, outbound: 'web' },
      { domainSuffix: 'direct.test', outbound: 'direct' },
      { port: 9999, outbound: 'ghost' },
    ],
    'node-a',
    ['node-a', 'web', 'ghost'],
  );
  const direct = fakeOutbound('direct', 'direct');
  const nodeA = fakeOutbound('node-a', 'socks5');
  const fake = new Map([
    ['198.18.0.5', 'www.direct.test'],
    ['198.18.0.6', 'api.remote.test'],
  ]);
  const resolved: string[] = [];
  const routed = routedUdpOutbound(router, new Map([['node-a', nodeA]]), direct, {
    log,
    unsupported: new Map([['web', "node 'web' is an HTTP CONNECT proxy, which carries TCP only"]]),
    fakeIp: {
      lookup: (ip) => fake.get(ip),
      resolveReal: async (d) => {
        resolved.push(d);
        return d === 'www.direct.test' ? ['192.0.2.20'] : [];
      },
    },
  });
  return { lines, routed, direct, nodeA, resolved };
}

const flow = (dst: Endpoint, id = 1): UdpFlowInfo => ({ id, src: v4('10.0.0.2', 40000 + id), dst });

test('routed UDP: rules pick direct or a node; the decision is logged per flow', async () => {
  const { lines, routed, direct, nodeA } = setup();
  assert.equal(routed.kind, 'routed');
  assert.equal(routed.name, 'routed');
  await routed.open(flow(v4('192.0.2.1', 5353)));
  await routed.open(flow(v4('192.0.2.1', 53), 2));
  assert.deepEqual(
    direct.opened.map((f) => f.dst.port),
    [5353],
  );
  assert.deepEqual(
    nodeA.opened.map((f) => f.dst.port),
    [53],
  );
  assert.deepEqual(lines, [
    'tranproxy: udp route src=10.0.0.2:40001 dst=192.0.2.1:5353 via=direct route=rules[0]',
    'tranproxy: udp route src=10.0.0.2:40002 dst=192.0.2.1:53 via=node-a route=default',
  ]);
});

test('routed UDP: reject rule, node without UDP and unknown outbound refuse the flow with a reason', async () => {
  const { lines, routed, direct, nodeA } = setup();
  await assert.rejects(
    routed.open(flow(v4('192.0.2.66', 53))),
    (e: UdpRefusedError) => e instanceof UdpRefusedError && e.code === 'rejected-by-rule',
  );
  await assert.rejects(routed.open(flow(v4('192.0.2.1', 8080))), (e: UdpRefusedError) => {
    assert.equal(e.code, 'udp-unsupported');
    assert.match(
      e.message,
      /'web' is an HTTP CONNECT proxy, which carries TCP only: UDP to 192\.0\.2\.1:8080 \(routed by rules\[2\]\) is refused/,
    );
    return true;
  });
  await assert.rejects(routed.open(flow(v4('192.0.2.1', 9999))), { code: 'unknown-outbound' });
  assert.equal(direct.opened.length + nodeA.opened.length, 0);
  assert.match(
    lines[0]!,
    /^tranproxy: udp route src=\S+ dst=192\.0\.2\.66:53 via=reject route=rules\[1\] refused=rejected-by-rule$/,
  );
  assert.match(
    lines[1]!,
    /via=web route=rules\[2\] refused=udp-unsupported reason="node 'web' is an HTTP CONNECT proxy/,
  );
  assert.match(lines[2]!, /via=ghost route=rules\[4\] refused=unknown-outbound/);
});

test('routed UDP: fake-IP flows route by domain; direct goes to the real address, a node gets the name', async () => {
  const { lines, routed, direct, nodeA, resolved } = setup();
  await routed.open(flow(v4('198.18.0.5', 53)));
  assert.deepEqual(resolved, ['www.direct.test']);
  assert.deepEqual(direct.opened[0]!.dst, v4('192.0.2.20', 53));
  assert.match(lines[0]!, /dst=198\.18\.0\.5:53 domain=www\.direct\.test via=direct route=rules\[3\]/);
  await routed.open(flow(v4('198.18.0.6', 53), 2));
  assert.deepEqual(nodeA.opened[0]!.dst, v4('198.18.0.6', 53));
  assert.equal(nodeA.opened[0]!.domain, 'api.remote.test');
  // A domain without a real address: the flow fails (direct, fake address leads nowhere).
  const noReal = routedUdpOutbound(compileRules([], 'direct', []), new Map(), fakeOutbound('direct'), {
    fakeIp: { lookup: () => 'gone.test', resolveReal: async () => [] },
  });
  await assert.rejects(noReal.open(flow(v4('198.18.0.9', 53))), { code: 'ENOTFOUND' });
});

test('routed UDP in the relay: a refused flow is dropped and logged closed with the code', async () => {
  const { lines, routed } = setup();
  const log = createLogger('text', (l) => lines.push(l.trimEnd()));
  const replies: string[] = [];
  const relay = new UdpRelay({
    outbound: routed,
    log,
    idleTimeoutMs: 1000,
    reply: (_f, _c, p) => (replies.push(p.toString()), true),
  });
  relay.onDatagram(v4('10.0.0.2', 5000), v4('192.0.2.66', 53), Buffer.from('q'));
  await new Promise((r) => setImmediate(r));
  assert.equal(relay.flows, 0);
  assert.ok(
    lines.some((l) =>
      /^tranproxy: udp src=10\.0\.0\.2:5000 dst=192\.0\.2\.66:53 .*close=error out=routed error=rejected-by-rule$/.test(
        l,
      ),
    ),
    lines.join('\n'),
  );
  relay.close();
});
