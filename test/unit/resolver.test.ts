// NameResolver against a tiny DNS responder on loopback: -N servers are used, search
// domains are tried in order, IP literals never hit DNS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { NameResolver } from '../../src/dns/resolver.js';
import { requestAuthority, parseAuthority } from '../../src/sniff/authority.js';

/** Answers A queries for names in `zone`; NXDOMAIN otherwise. Records every query name. */
async function dnsServer(zone: Record<string, string>): Promise<{ port: number; queries: string[]; close(): void }> {
  const sock = dgram.createSocket('udp4');
  const queries: string[] = [];
  sock.on('message', (msg, rinfo) => {
    const labels: string[] = [];
    let i = 12;
    while (msg[i]) {
      labels.push(msg.subarray(i + 1, i + 1 + msg[i]!).toString());
      i += msg[i]! + 1;
    }
    const qtype = msg.readUInt16BE(i + 1);
    const name = labels.join('.');
    queries.push(`${name}/${qtype}`);
    const question = msg.subarray(12, i + 5);
    const ip = qtype === 1 ? zone[name] : undefined;
    const header = Buffer.from(msg.subarray(0, 12));
    header.writeUInt16BE(ip ? 0x8180 : zone[name] ? 0x8180 : 0x8183, 2); // NOERROR / NXDOMAIN
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(ip ? 1 : 0, 6);
    header.writeUInt32BE(0, 8);
    const answer = ip
      ? Buffer.concat([
          Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]),
          Buffer.from(ip.split('.').map(Number)),
        ])
      : Buffer.alloc(0);
    sock.send(Buffer.concat([header, question, answer]), rinfo.port, rinfo.address);
  });
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  return { port: sock.address().port, queries, close: () => sock.close() };
}

test('resolves through the given nameserver, search domains first for short names', async () => {
  const dns = await dnsServer({ 'api.ns1.svc.cluster.local': '10.0.0.7', 'example.test': '192.0.2.5' });
  try {
    const r = new NameResolver({
      nameservers: [`127.0.0.1:${dns.port}`],
      search: ['ns1.svc.cluster.local', 'svc.cluster.local'],
      ndots: 5,
    });
    assert.deepEqual(await r.resolve('api'), { address: '10.0.0.7', family: 4 });
    assert.equal(dns.queries[0], 'api.ns1.svc.cluster.local/1');
    assert.deepEqual(await r.resolve('example.test.'), { address: '192.0.2.5', family: 4 });
    const before = dns.queries.length;
    assert.deepEqual(await r.resolve('[fd00::1]'), { address: 'fd00::1', family: 6 });
    assert.deepEqual(await r.resolve('10.1.1.1'), { address: '10.1.1.1', family: 4 });
    assert.equal(dns.queries.length, before, 'literals are not looked up');
    await assert.rejects(r.resolve('nowhere'), /cannot resolve 'nowhere'/);
  } finally {
    dns.close();
  }
});

test('request authority: Host header, absolute form, IP literals, defaults', () => {
  const head = (s: string) => Buffer.from(s);
  assert.deepEqual(requestAuthority(head('GET / HTTP/1.1\r\nHost: svc:8080\r\n\r\n'), 65536), {
    host: 'svc',
    port: 8080,
  });
  assert.deepEqual(requestAuthority(head('GET / HTTP/1.1\r\nhost: 10.0.0.2\r\n\r\n'), 65536), {
    host: '10.0.0.2',
    port: 80,
  });
  assert.deepEqual(requestAuthority(head('GET http://[fd00::2]:81/x HTTP/1.1\r\nHost: other\r\n\r\n'), 65536), {
    host: 'fd00::2',
    port: 81,
  });
  assert.equal(requestAuthority(head('GET / HTTP/1.1\r\nHost: a'), 65536), 'need-more');
  assert.equal(requestAuthority(head('GET / HTTP/1.1\r\nX: y\r\n\r\n'), 65536), 'none');
  assert.equal(requestAuthority(head('GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'), 65536), 'none');
  assert.equal(parseAuthority('bad host:1', 80), undefined);
  assert.equal(parseAuthority('h:99999', 80), undefined);
});
