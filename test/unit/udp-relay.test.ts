// Flow table expiry and the UDP relay's flow logic, with a fake clock and a fake outbound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Endpoint } from '../../src/kernel/sockaddr.js';
import { decodeSockaddr } from '../../src/kernel/sockaddr.js';
import { createLogger } from '../../src/observe/log.js';
import { FlowTable, flowKey, sweepInterval } from '../../src/udp/flow-table.js';
import { UdpRelay, type UdpRelayOptions } from '../../src/udp/relay.js';
import type { UdpFlowInfo, UdpOutbound, UdpSession } from '../../src/udp/types.js';

const v4 = (address: string, port: number): Endpoint => ({ address, port, family: 4 });
const v6 = (address: string, port: number): Endpoint => ({ address, port, family: 6 });
const tick = () => new Promise((r) => setImmediate(r));

test('flow table: entries expire after the idle timeout counted from their last use', () => {
  let now = 1000;
  const t = new FlowTable<string>({ idleTimeoutMs: 100, now: () => now });
  t.set('a', 'A');
  now += 50;
  t.set('b', 'B');
  now += 49;
  assert.deepEqual(t.sweep(), []);
  now += 1; // a: idle 100
  assert.deepEqual(t.sweep(), [['a', 'A']]);
  assert.equal(t.size, 1);
  now += 40;
  assert.equal(t.use('b'), 'B'); // activity resets b's clock
  now += 99;
  assert.deepEqual(t.sweep(), []);
  assert.equal(t.idleFor('b'), 99);
  assert.equal(t.touch('b'), true);
  assert.equal(t.touch('zz'), false);
  now += 100;
  assert.deepEqual(t.sweep(), [['b', 'B']]);
  assert.equal(t.size, 0);
  t.set('c', 'C');
  assert.deepEqual(t.drain(), [['c', 'C']]);
  assert.throws(() => new FlowTable({ idleTimeoutMs: 0 }), RangeError);
});

test('flow table: the default clock is monotonic (a wall-clock step ahead does not make every flow idle)', () => {
  const realNow = Date.now;
  let wall = realNow();
  Date.now = () => wall; // the wall clock, as a table built now would read it
  try {
    const t = new FlowTable<string>({ idleTimeoutMs: 60_000 });
    t.set('a', 'A');
    wall += 3 * 3600_000;
    assert.deepEqual(t.sweep(), []);
    assert.ok((t.idleFor('a') ?? Infinity) < 60_000);
  } finally {
    Date.now = realNow;
  }
});

test('flow keys separate clients, ports and destinations; sweep interval is bounded', () => {
  const keys = new Set([
    flowKey(v4('10.0.0.1', 1), v4('192.0.2.1', 53)),
    flowKey(v4('10.0.0.1', 2), v4('192.0.2.1', 53)),
    flowKey(v4('10.0.0.1', 1), v4('192.0.2.1', 54)),
    flowKey(v6('fd00::1', 1), v6('2001:db8::1', 53)),
  ]);
  assert.equal(keys.size, 4);
  assert.equal(sweepInterval(60_000), 1000);
  assert.equal(sweepInterval(1000), 250);
  assert.equal(sweepInterval(10), 50);
});

class FakeSession implements UdpSession {
  sent: string[] = [];
  closed = false;
  message?: (p: Buffer, from?: Endpoint) => void;
  closeCb?: (reason: string, error?: string) => void;
  send(p: Buffer) {
    this.sent.push(p.toString());
  }
  onMessage(cb: (p: Buffer, from?: Endpoint) => void) {
    this.message = cb;
  }
  onClose(cb: (reason: string, error?: string) => void) {
    this.closeCb = cb;
  }
  close() {
    this.closed = true;
  }
}

/** An outbound whose opens are resolved by the test. */
function fakeOutbound() {
  const opens: { flow: UdpFlowInfo; resolve: (s: UdpSession) => void; reject: (e: Error) => void }[] = [];
  const outbound: UdpOutbound = {
    name: 'fake',
    kind: 'fake',
    open: (flow) => new Promise((resolve, reject) => opens.push({ flow, resolve, reject })),
  };
  return { outbound, opens };
}

function relayWith(over: Partial<UdpRelayOptions> & { outbound: UdpOutbound }) {
  let now = 0;
  const lines: string[] = [];
  const replies: { from: string; to: string; payload: string }[] = [];
  const relay = new UdpRelay({
    log: createLogger('text', (l) => lines.push(l.trim())),
    idleTimeoutMs: 1000,
    reply: (from, client, payload) => {
      const to = decodeSockaddr(client);
      replies.push({
        from: `${from.address}:${from.port}`,
        to: `${to.address}:${to.port}`,
        payload: payload.toString(),
      });
      return true;
    },
    now: () => now,
    ...over,
  });
  return { relay, lines, replies, advance: (ms: number) => (now += ms) };
}

test('relay: the first datagram opens one session; datagrams queued meanwhile go out in order', async () => {
  const { outbound, opens } = fakeOutbound();
  const { relay, replies } = relayWith({ outbound });
  const client = v4('10.0.0.2', 40000);
  const dst = v4('192.0.2.1', 53);
  relay.onDatagram(client, dst, Buffer.from('one'));
  relay.onDatagram(client, dst, Buffer.from('two'));
  assert.equal(opens.length, 1);
  assert.deepEqual(opens[0]!.flow.src, client);
  assert.deepEqual(opens[0]!.flow.dst, dst);
  const s = new FakeSession();
  opens[0]!.resolve(s);
  await tick();
  relay.onDatagram(client, dst, Buffer.from('three'));
  assert.deepEqual(s.sent, ['one', 'two', 'three']);
  // Replies leave from the original destination, or from where the outbound says.
  s.message!(Buffer.from('answer'));
  s.message!(Buffer.from('other'), v4('198.51.100.9', 3478));
  assert.deepEqual(replies, [
    { from: '192.0.2.1:53', to: '10.0.0.2:40000', payload: 'answer' },
    { from: '198.51.100.9:3478', to: '10.0.0.2:40000', payload: 'other' },
  ]);
  assert.equal(relay.flows, 1);
  assert.deepEqual(relay.stats, { flowsTotal: 1, datagramsUp: 3, datagramsDown: 2, drops: {} });
});

test('relay: idle flows end with one log line each; activity in either direction keeps them', async () => {
  const { outbound, opens } = fakeOutbound();
  const { relay, lines, advance } = relayWith({ outbound });
  relay.onDatagram(v4('10.0.0.2', 1), v4('192.0.2.1', 53), Buffer.from('abc'));
  relay.onDatagram(v6('fd00::2', 2), v6('2001:db8::1', 443), Buffer.from('x'));
  const s1 = new FakeSession();
  opens[0]!.resolve(s1);
  opens[1]!.resolve(new FakeSession());
  await tick();
  advance(900);
  s1.message!(Buffer.from('reply!')); // downstream activity
  advance(100);
  assert.equal(relay.sweep(), 1, 'only the v6 flow is idle');
  assert.match(
    lines[0]!,
    /^tranproxy: udp src=\[fd00::2\]:2 dst=\[2001:db8::1\]:443 up=1 down=0 packets=1\/0 dur=1000ms close=idle out=fake$/,
  );
  advance(899);
  assert.equal(relay.sweep(), 0);
  advance(1);
  assert.equal(relay.sweep(), 1);
  assert.equal(
    lines[1],
    'tranproxy: udp src=10.0.0.2:1 dst=192.0.2.1:53 up=3 down=6 packets=1/1 dur=1900ms close=idle out=fake',
  );
  assert.equal(s1.closed, true, 'the session is released');
  assert.equal(relay.flows, 0);
  // A later datagram from the same client starts a new flow.
  relay.onDatagram(v4('10.0.0.2', 1), v4('192.0.2.1', 53), Buffer.from('again'));
  assert.equal(opens.length, 3);
});

test('relay: open failures and session errors end the flow; a session opened after the end is closed', async () => {
  const { outbound, opens } = fakeOutbound();
  const { relay, lines } = relayWith({ outbound });
  relay.onDatagram(v4('10.0.0.2', 1), v4('192.0.2.1', 53), Buffer.from('a'));
  opens[0]!.reject(Object.assign(new Error('no route'), { code: 'EHOSTUNREACH' }));
  await tick();
  assert.match(lines[0]!, /close=error out=fake error=EHOSTUNREACH$/);

  relay.onDatagram(v4('10.0.0.2', 2), v4('192.0.2.1', 53), Buffer.from('b'));
  const s = new FakeSession();
  opens[1]!.resolve(s);
  await tick();
  s.closeCb!('refused', 'ECONNREFUSED');
  assert.match(lines[1]!, /src=10\.0\.0\.2:2 .*close=refused out=fake error=ECONNREFUSED$/);
  assert.equal(relay.flows, 0);

  relay.onDatagram(v4('10.0.0.2', 3), v4('192.0.2.1', 53), Buffer.from('c'));
  relay.close();
  assert.match(lines[2]!, /src=10\.0\.0\.2:3 .*packets=1\/0 .*close=shutdown/);
  const late = new FakeSession();
  opens[2]!.resolve(late);
  await tick();
  assert.equal(late.closed, true);
  relay.onDatagram(v4('10.0.0.2', 4), v4('192.0.2.1', 53), Buffer.from('d'));
  assert.equal(opens.length, 3, 'closed relays open nothing');
});

test('relay: loop, flow limit and pending limit drop datagrams and count them', async () => {
  const { outbound, opens } = fakeOutbound();
  const { relay } = relayWith({ outbound, maxFlows: 2, maxPending: 2, isSelf: (d) => d.port === 15001 });
  relay.onDatagram(v4('10.0.0.2', 1), v4('10.0.0.1', 15001), Buffer.from('loop'));
  relay.onDatagram(v4('10.0.0.2', 1), v4('192.0.2.1', 53), Buffer.from('1'));
  relay.onDatagram(v4('10.0.0.2', 1), v4('192.0.2.1', 53), Buffer.from('2'));
  relay.onDatagram(v4('10.0.0.2', 1), v4('192.0.2.1', 53), Buffer.from('3'));
  relay.onDatagram(v4('10.0.0.2', 2), v4('192.0.2.1', 53), Buffer.from('x'));
  relay.onDatagram(v4('10.0.0.2', 3), v4('192.0.2.1', 53), Buffer.from('y'));
  assert.deepEqual(relay.stats.drops, { loop: 1, 'pending-full': 1, 'flows-full': 1 });
  assert.equal(opens.length, 2);
  const s = new FakeSession();
  opens[0]!.resolve(s);
  await tick();
  assert.deepEqual(s.sent, ['1', '2']);
});

test('relay: a reply socket that cannot be made ends the flow', async () => {
  const { outbound, opens } = fakeOutbound();
  const { relay, lines } = relayWith({
    outbound,
    reply: () => {
      throw new Error('bind failed: EADDRINUSE');
    },
  });
  relay.onDatagram(v4('10.0.0.2', 1), v4('192.0.2.1', 53), Buffer.from('q'));
  const s = new FakeSession();
  opens[0]!.resolve(s);
  await tick();
  s.message!(Buffer.from('r'));
  assert.equal(relay.flows, 0);
  assert.equal(relay.stats.drops['reply-failed'], 1);
  assert.match(lines[0]!, /close=error out=fake error="bind failed: EADDRINUSE"$/);
});
