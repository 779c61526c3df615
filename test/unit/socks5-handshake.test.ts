// The SOCKS5 greeting/authentication both SOCKS5 outbounds share (negotiateSocks5Auth in
// src/outbound/socks5.ts), against a scripted node on loopback: what is sent, and the error
// code and message for each way a node can answer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { Handshake } from '../../src/outbound/node-conn.js';
import { negotiateSocks5Auth } from '../../src/outbound/socks5.js';
import { OutboundError } from '../../src/outbound/types.js';

/**
 * A node that answers each message the client sends with the next of `replies` (closing
 * after the last), and records what it received. Returns the handshake's outcome.
 */
async function negotiate(
  creds: { username?: string; password?: string },
  replies: number[][],
): Promise<{ got: number[][]; error?: OutboundError }> {
  const got: number[][] = [];
  const server = net.createServer((s) => {
    let i = 0;
    s.on('data', (d: Buffer) => {
      got.push([...d]);
      const r = replies[i++];
      if (r) s.write(Buffer.from(r));
      if (i >= replies.length) s.end();
    });
    s.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await once(sock, 'connect');
  const hs = new Handshake(sock, 'n1', 'node:1080', 2000, undefined);
  try {
    await negotiateSocks5Auth(hs, creds);
    hs.done().destroy();
    return { got };
  } catch (e) {
    assert.ok(e instanceof OutboundError, String(e));
    return { got, error: e };
  } finally {
    sock.destroy();
    server.close();
  }
}

test('no credentials: offers only no-auth; a node that wants auth is EAUTH with the fix', async () => {
  assert.deepEqual(await negotiate({}, [[5, 0]]), { got: [[5, 1, 0]] });
  const r = await negotiate({}, [[5, 0xff]]);
  assert.equal(r.error?.code, 'EAUTH');
  assert.equal(r.error?.message, 'n1: node node:1080 requires authentication (add user:password to the node URI)');
});

test('credentials: RFC 1929 sent when the node picks it; rejected and refused methods', async () => {
  const ok = await negotiate({ username: 'u', password: 'pw' }, [
    [5, 2],
    [1, 0],
  ]);
  assert.deepEqual(ok, {
    got: [
      [5, 2, 0, 2],
      [1, 1, 0x75, 2, 0x70, 0x77],
    ],
  });
  const wrong = await negotiate({ username: 'u', password: 'x' }, [
    [5, 2],
    [1, 1],
  ]);
  assert.equal(wrong.error?.code, 'EAUTH');
  assert.equal(wrong.error?.message, 'n1: node node:1080 rejected the user name or password (status 1)');
  const none = await negotiate({ username: 'u' }, [[5, 0xff]]);
  assert.equal(none.error?.message, 'n1: node node:1080 accepted none of the offered authentication methods');
  // The node picks no-auth although credentials were offered: fine, nothing more is sent.
  assert.deepEqual(await negotiate({ username: 'u' }, [[5, 0]]), { got: [[5, 2, 0, 2]] });
});

test('a method that was not offered is EHANDSHAKE; a bad reply names the message', async () => {
  const gssapi = await negotiate({}, [[5, 1]]);
  assert.equal(gssapi.error?.code, 'EHANDSHAKE');
  assert.equal(gssapi.error?.message, 'n1: node node:1080 chose authentication method 1, which was not offered');
  const v4 = await negotiate({}, [[4, 0]]);
  assert.equal(
    v4.error?.message,
    'n1: node node:1080 sent an invalid method selection reply: version 4 (not a SOCKS5 server)',
  );
  const closed = await negotiate({ username: 'u', password: 'p' }, [[5, 2]]);
  assert.equal(closed.error?.code, 'EAUTH');
  assert.match(closed.error!.message, /closed the connection after authentication/);
});
