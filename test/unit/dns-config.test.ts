// The config file's dns: section → forwarder options; and the upstream address syntax.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dnsForwarderOptions } from '../../src/dns/config.js';
import { parseUpstream, TcpFramer, frame } from '../../src/dns/upstream.js';
import type { TcpOutbound } from '../../src/outbound/types.js';

const log = { info() {}, warn() {}, error() {} };
const node: TcpOutbound = { name: 'proxy', kind: 'socks5', connect: () => Promise.reject(new Error('unused')) };

test('dns section → forwarder options', () => {
  const o = dnsForwarderOptions(
    {
      listen: { host: undefined, port: 5353 },
      nameservers: [
        { host: '1.1.1.1', port: 53 },
        { host: '2606:4700::1111', port: 5353 },
      ],
      via: 'proxy',
      cache: true,
      fakeIp: { enabled: true, range: '198.18.0.0/15' },
    },
    { log, via: node, mark: 0x539, fakeIpPersistPath: '/var/lib/tranproxy/fake-ip.json' },
  );
  assert.deepEqual(o.listen, [
    { address: '0.0.0.0', port: 5353 },
    { address: '::', port: 5353 },
  ]);
  assert.deepEqual(o.upstreams, ['1.1.1.1:53', '[2606:4700::1111]:5353']);
  assert.equal(o.via, node);
  assert.equal(o.mark, 0x539);
  assert.equal(o.cache, true);
  assert.deepEqual(o.fakeIp, { range: '198.18.0.0/15', persistPath: '/var/lib/tranproxy/fake-ip.json' });

  const d = dnsForwarderOptions(
    { nameservers: [], via: 'direct', cache: false, fakeIp: { enabled: false, range: '198.18.0.0/15' } },
    { log, via: node, fallbackNameservers: ['10.0.0.1'], families: [4] },
  );
  assert.deepEqual(d.listen, [{ address: '0.0.0.0', port: 53 }]);
  assert.deepEqual(d.upstreams, ['10.0.0.1']);
  assert.equal(d.via, undefined, "'direct' means no node");
  assert.equal(d.fakeIp, undefined);
  assert.equal(d.cache, false);

  const one = dnsForwarderOptions(
    { listen: { host: '192.168.1.1', port: 53 }, nameservers: [], via: 'direct', cache: true },
    { log },
  );
  assert.deepEqual(one.listen, [{ address: '192.168.1.1', port: 53 }]);
});

test('upstream addresses: ip, ip:port, [v6]:port, bare v6', () => {
  assert.deepEqual(parseUpstream('8.8.8.8'), { host: '8.8.8.8', port: 53, family: 4, label: '8.8.8.8:53' });
  assert.deepEqual(parseUpstream('127.0.0.1:5353'), {
    host: '127.0.0.1',
    port: 5353,
    family: 4,
    label: '127.0.0.1:5353',
  });
  assert.deepEqual(parseUpstream('[::1]:5300'), { host: '::1', port: 5300, family: 6, label: '[::1]:5300' });
  assert.deepEqual(parseUpstream('2001:db8::53'), {
    host: '2001:db8::53',
    port: 53,
    family: 6,
    label: '[2001:db8::53]:53',
  });
  assert.equal(parseUpstream('[fe80::1]').port, 53);
  for (const bad of ['dns.google', '1.2.3.4:0', '1.2.3.4:70000', '', '[::1]:x', '300.1.1.1'])
    assert.throws(() => parseUpstream(bad), TypeError, bad);
});

test('TCP framing: messages split and glued anywhere', () => {
  const msgs = [Buffer.from('hello'), Buffer.alloc(0), Buffer.alloc(70_000 % 65536, 7), Buffer.from('x')];
  const wire = Buffer.concat(msgs.map(frame));
  for (const step of [1, 2, 3, 7, 1000, wire.length]) {
    const f = new TcpFramer();
    const out: Buffer[] = [];
    for (let i = 0; i < wire.length; i += step) out.push(...f.push(wire.subarray(i, i + step)));
    assert.deepEqual(out, msgs, `step ${step}`);
    assert.equal(f.buffered, 0);
  }
});
