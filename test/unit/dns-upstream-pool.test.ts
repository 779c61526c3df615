// Issue 17 item 8: upstream UDP queries share a few connected sockets (ids remapped, answers
// matched by id and question) instead of one socket per query. Against a real UDP server on
// loopback: concurrent queries each get their own answer, a spoofed or stray answer is ignored,
// sockets are renewed (new source ports), and a closed port fails at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { parseUpstream, UdpUpstreamPool } from '../../src/dns/upstream.js';
import { buildQuery, buildResponse, CLASS_IN, parseMessage, RCODE, TYPE } from '../../src/dns/wire.js';

/** A nameserver answering every A query with 192.0.2.N where N is the name's first label length; it records source ports and ids. */
async function server(t: { after(fn: () => void): void }, opts: { spoofFirst?: boolean; delayMs?: number } = {}) {
  const sock = dgram.createSocket('udp4');
  const seen = { ports: new Set<number>(), ids: [] as number[] };
  sock.on('message', (m, r) => {
    const q = parseMessage(m);
    seen.ports.add(r.port);
    seen.ids.push(q.header.id);
    const name = q.questions[0]!.name;
    const answer = buildResponse(m, q, {
      rcode: RCODE.NOERROR,
      answers: [{ type: TYPE.A, ttl: 60, rdata: Buffer.from([192, 0, 2, name.indexOf('.')]) }],
    });
    const send = () => {
      if (opts.spoofFirst) {
        // Same id, another question; then another id: both must be ignored.
        const evil = buildQuery({ id: q.header.id, name: 'evil.test', type: TYPE.A, class: CLASS_IN });
        sock.send(buildResponse(evil, parseMessage(evil), { rcode: RCODE.NOERROR }), r.port, r.address);
        const wrongId = Buffer.from(answer);
        wrongId.writeUInt16BE((q.header.id + 1) & 0xffff, 0);
        sock.send(wrongId, r.port, r.address);
      }
      sock.send(answer, r.port, r.address);
    };
    if (opts.delayMs) setTimeout(send, opts.delayMs);
    else send();
  });
  await new Promise<void>((res) => sock.bind(0, '127.0.0.1', res));
  t.after(() => sock.close());
  return { seen, up: parseUpstream(`127.0.0.1:${(sock.address() as AddressInfo).port}`) };
}

const query = (name: string) => {
  const q = buildQuery({ id: 7, name, type: TYPE.A, class: CLASS_IN, rd: true });
  return { q, msg: parseMessage(q) };
};

test('concurrent queries on shared sockets: each gets the answer to its own question; ids are remapped; sockets renewed', async (t) => {
  const { seen, up } = await server(t, { delayMs: 5 });
  const pool = new UdpUpstreamPool(up, undefined, { sockets: 2, queriesPerSocket: 10 });
  t.after(() => pool.close());
  const names = Array.from({ length: 60 }, (_, i) => `${'x'.repeat(1 + (i % 9))}.q${i}.test`);
  const answers = await Promise.all(
    names.map((n) => {
      const { q, msg } = query(n);
      return pool.exchange(q, msg, 2000);
    }),
  );
  answers.forEach((a, i) => {
    assert.equal(a.msg.questions[0]!.name, names[i]);
    assert.equal(a.response[a.response.length - 1], 1 + (i % 9), `${names[i]} got its own address`);
  });
  assert.ok(new Set(seen.ids).size > 50, 'the upstream saw random ids, not the caller id 7 every time');
  assert.ok(seen.ports.size >= 6, `sockets were renewed every 10 queries: ${seen.ports.size} source ports for 60`);
  assert.ok(seen.ports.size < 60, 'sockets are shared, not one per query');
});

test('a stray or spoofed answer (other question, other id) is ignored; the real one is taken', async (t) => {
  const { up } = await server(t, { spoofFirst: true });
  const pool = new UdpUpstreamPool(up);
  t.after(() => pool.close());
  const { q, msg } = query('abc.real.test');
  const a = await pool.exchange(q, msg, 2000);
  assert.equal(a.msg.questions[0]!.name, 'abc.real.test');
  assert.equal(a.msg.answers.length, 1);
});

test('a closed port fails at once (ICMP port unreachable), not after the timeout; a silent one times out', async (t) => {
  const closed = dgram.createSocket('udp4');
  await new Promise<void>((res) => closed.bind(0, '127.0.0.1', res));
  const port = (closed.address() as AddressInfo).port;
  closed.close();
  const pool = new UdpUpstreamPool(parseUpstream(`127.0.0.1:${port}`));
  t.after(() => pool.close());
  const t0 = Date.now();
  const { q, msg } = query('a.test');
  await assert.rejects(pool.exchange(q, msg, 3000), (e: Error & { code?: string }) => e.code === 'refused');
  assert.ok(Date.now() - t0 < 1500, `refused in ${Date.now() - t0} ms`);

  const silent = dgram.createSocket('udp4');
  await new Promise<void>((res) => silent.bind(0, '127.0.0.1', res));
  t.after(() => silent.close());
  const quiet = new UdpUpstreamPool(parseUpstream(`127.0.0.1:${(silent.address() as AddressInfo).port}`));
  t.after(() => quiet.close());
  await assert.rejects(quiet.exchange(q, msg, 200), (e: Error & { code?: string }) => e.code === 'timeout');
});
