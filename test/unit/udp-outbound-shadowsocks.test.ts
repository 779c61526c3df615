// Shadowsocks AEAD UDP outbound against an in-test node on loopback that decrypts with the
// codec under test's counterpart (decryptUdpPacket) and answers with encryptUdpPacket: each
// cipher both ways, the target address (IP or domain), fresh salts, the reply's source,
// replies under a wrong key dropped, and a node without UDP (port unreachable) ending the session.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import type { Endpoint } from '../../src/kernel/sockaddr.js';
import { decryptUdpPacket, encryptUdpPacket, masterKey, SS_CIPHERS } from '../../src/outbound/shadowsocks.js';
import { ATYP_DOMAIN, ATYP_IPV4, type SocksAddress } from '../../src/outbound/socks5.js';
import { createUdpOutbound } from '../../src/outbound/udp-outbound.js';
import { parseNodeUri, SS_METHODS, type SsMethod } from '../../src/outbound/uri.js';
import type { UdpFlowInfo, UdpSession } from '../../src/udp/types.js';
import { until } from '../helpers/wait.js';

const v4 = (address: string, port: number): Endpoint => ({ address, port, family: 4 });
const flow = (dst: Endpoint, domain?: string): UdpFlowInfo => ({
  id: 7,
  src: v4('10.0.0.2', 40000),
  dst,
  ...(domain ? { domain } : {}),
});

/** A Shadowsocks UDP "node" that echoes payloads back as if from `replyFrom` (default: the target). */
async function ssNode(method: SsMethod, password: string) {
  const master = masterKey(method, password);
  const sock = dgram.createSocket('udp4');
  const seen: { address: SocksAddress; payload: string; salt: string }[] = [];
  const node = {
    sock,
    seen,
    replyFrom: undefined as SocksAddress | undefined,
    wrongKey: false,
  };
  sock.on('message', (m, r) => {
    const d = decryptUdpPacket(method, master, m);
    if (!d.ok) return;
    seen.push({
      address: d.address,
      payload: d.payload.toString(),
      salt: m.subarray(0, SS_CIPHERS[method].saltLen).toString('hex'),
    });
    const key = node.wrongKey ? masterKey(method, `${password}-not`) : master;
    sock.send(
      encryptUdpPacket(method, key, node.replyFrom ?? d.address, Buffer.concat([Buffer.from('echo:'), d.payload])),
      r.port,
      r.address,
    );
  });
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  return node;
}

function collect(session: UdpSession) {
  const msgs: { text: string; from?: Endpoint }[] = [];
  const waiters: (() => void)[] = [];
  session.onMessage((p, from) => {
    msgs.push({ text: p.toString(), ...(from ? { from } : {}) });
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<[string, string | undefined]>((r) =>
    session.onClose((reason, error) => r([reason, error])),
  );
  const waitFor = (n: number, ms = 2000) =>
    new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`only ${msgs.length} of ${n} datagrams within ${ms} ms`)), ms);
      const check = () => {
        if (msgs.length >= n) {
          clearTimeout(t);
          resolve();
        } else waiters.push(check);
      };
      check();
    });
  return { msgs, closed, waitFor };
}

for (const method of SS_METHODS) {
  test(`shadowsocks UDP ${method}: round trip, fresh salt per datagram, reply source, wrong key dropped`, async () => {
    const node = await ssNode(method, 'pa:ss');
    try {
      const ob = createUdpOutbound(parseNodeUri(`ss://${method}:pa%3Ass@127.0.0.1:${node.sock.address().port}#ss1`))!;
      assert.equal(ob.kind, 'shadowsocks');
      assert.equal(ob.name, 'ss1');
      const s = await ob.open(flow(v4('192.0.2.10', 5353)));
      const c = collect(s);
      s.send(Buffer.from('one'));
      s.send(Buffer.from('two'));
      await c.waitFor(2);
      assert.deepEqual(c.msgs.map((m) => m.text).sort(), ['echo:one', 'echo:two']);
      assert.ok(
        c.msgs.every((m) => m.from === undefined),
        'replies from the destination carry no `from`',
      );
      assert.deepEqual(node.seen[0]!.address, { host: '192.0.2.10', port: 5353, type: ATYP_IPV4 });
      assert.notEqual(node.seen[0]!.salt, node.seen[1]!.salt, 'a fresh salt per datagram');
      // Another remote (full cone): the source comes from the reply's header.
      node.replyFrom = { host: '192.0.2.99', port: 7, type: ATYP_IPV4 };
      s.send(Buffer.from('three'));
      await c.waitFor(3);
      assert.deepEqual(c.msgs[2], { text: 'echo:three', from: v4('192.0.2.99', 7) });
      // A reply the client cannot decrypt is dropped, the session lives on.
      node.replyFrom = undefined;
      node.wrongKey = true;
      s.send(Buffer.from('bad'));
      await until('the node to answer "bad" with the wrong key', () => node.seen.length === 4);
      node.wrongKey = false;
      s.send(Buffer.from('four'));
      await c.waitFor(4);
      // The undecryptable answer came first on the same path: it was dropped, not delivered.
      assert.deepEqual(
        c.msgs.slice(2).map((m) => m.text),
        ['echo:three', 'echo:four'],
      );
      s.close();
      s.close();
    } finally {
      node.sock.close();
    }
  });
}

test('shadowsocks UDP: the domain is sent when known; a node without UDP ends the session as refused', async () => {
  const node = await ssNode('aes-256-gcm', 'pw');
  const port = node.sock.address().port;
  try {
    const ob = createUdpOutbound(parseNodeUri(`ss://aes-256-gcm:pw@127.0.0.1:${port}`))!;
    const s = await ob.open(flow(v4('198.18.0.3', 53), 'dns.test'));
    const c = collect(s);
    s.send(Buffer.from('q'));
    await c.waitFor(1);
    assert.deepEqual(node.seen[0]!.address, { host: 'dns.test', port: 53, type: ATYP_DOMAIN });
    assert.deepEqual(c.msgs, [{ text: 'echo:q' }]);
    s.close();
  } finally {
    node.sock.close();
  }
  // Nothing listens on the port now: ICMP port unreachable → ECONNREFUSED → the session ends.
  const ob = createUdpOutbound(parseNodeUri(`ss://aes-256-gcm:pw@127.0.0.1:${port}`))!;
  const s = await ob.open(flow(v4('192.0.2.10', 53)));
  const c = collect(s);
  s.send(Buffer.from('x'));
  const t = setInterval(() => s.send(Buffer.from('x')), 50);
  try {
    const [reason, error] = await c.closed;
    assert.equal(reason, 'refused');
    assert.equal(error, 'ECONNREFUSED');
  } finally {
    clearInterval(t);
  }
  s.send(Buffer.from('after')); // no-op
});
