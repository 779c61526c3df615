// ShadowsocksStream over loopback sockets, relayed like a gateway flow: a client that ends
// without sending anything is its own doing, not a node failure (ENOREPLY).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { masterKey, ShadowsocksStream } from '../../src/outbound/shadowsocks.js';
import { encodeSocksAddress, ATYP_IPV4 } from '../../src/outbound/socks5.js';
import { relay, type RelayResult } from '../../src/relay/relay.js';

/** A node that reads the request, then closes without answering (as ss-server does when the target closes at once). */
async function silentNode(): Promise<net.Server> {
  const s = net.createServer({ allowHalfOpen: true }, (c) => {
    c.on('data', () => {});
    c.on('end', () => c.end());
    c.on('error', () => {});
  });
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return s;
}

/** One client through relay() → ShadowsocksStream → the node; `send` is what the client writes before its EOF. */
async function relayedClient(node: net.Server, send: string): Promise<RelayResult> {
  let result: Promise<RelayResult> | undefined;
  const gw = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    const sock = net.connect({
      port: (node.address() as net.AddressInfo).port,
      host: '127.0.0.1',
      allowHalfOpen: true,
    });
    result = once(sock, 'connect').then(() => {
      const up = new ShadowsocksStream(sock, {
        outbound: 'n',
        where: '127.0.0.1',
        method: 'aes-256-gcm',
        master: masterKey('aes-256-gcm', 'secret'),
        header: encodeSocksAddress({ host: '192.0.2.9', port: 80, type: ATYP_IPV4 }),
      });
      return relay(client, up, { idleTimeoutMs: 10_000 });
    });
  });
  gw.listen(0, '127.0.0.1');
  await once(gw, 'listening');
  try {
    const c = net.connect({ port: (gw.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
    c.on('error', () => {});
    await once(c, 'connect');
    c.end(send);
    c.resume();
    await new Promise((r) => c.on('close', r)); // once() would reject on the reset a failed flow gets
    for (let i = 0; i < 100 && !result; i++) await new Promise((r) => setTimeout(r, 10));
    return await result!;
  } finally {
    gw.close();
  }
}

test('shadowsocks: a client that connects and sends nothing ends as eof, not as the node failing', async () => {
  const node = await silentNode();
  try {
    const r = await relayedClient(node, '');
    assert.equal(r.reason, 'eof', JSON.stringify(r));
    assert.equal(r.error, undefined);
    // The same node after a request the client did send: no reply is the node's (ENOREPLY).
    const sent = await relayedClient(node, 'GET / HTTP/1.1\r\n\r\n');
    assert.equal(sent.reason, 'upstream-error');
    assert.equal(sent.error, 'ENOREPLY');
  } finally {
    node.close();
  }
});
