import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeSockaddr, encodeSockaddr, ipv6FromBytes, unmapAddress } from '../../src/kernel/sockaddr.js';

test('IPv4 sockaddr_in round-trips with network byte order port', () => {
  const b = encodeSockaddr({ address: '10.1.2.3', port: 8080 });
  assert.equal(b.length, 16);
  assert.deepEqual([...b.subarray(0, 8)], [2, 0, 0x1f, 0x90, 10, 1, 2, 3]);
  assert.deepEqual(decodeSockaddr(b), { address: '10.1.2.3', port: 8080, family: 4 });
});

test('IPv6 sockaddr_in6 round-trips and compresses the longest zero run', () => {
  for (const [input, canonical] of [
    ['fd00::1', 'fd00::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['::1', '::1'],
    ['::', '::'],
    ['fe80::1%eth0', 'fe80::1'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
  ] as const) {
    const b = encodeSockaddr({ address: input, port: 443 });
    assert.equal(b.length, 28);
    assert.equal(b.readUInt16LE(0), 10);
    assert.deepEqual(decodeSockaddr(b), { address: canonical, port: 443, family: 6 }, input);
  }
});

test('IPv4-mapped IPv6 decodes as plain IPv4', () => {
  const b = encodeSockaddr({ address: '::ffff:192.0.2.7', port: 80 });
  assert.deepEqual(decodeSockaddr(b), { address: '192.0.2.7', port: 80, family: 4 });
  assert.equal(ipv6FromBytes(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4])), '1.2.3.4');
  assert.equal(unmapAddress('::ffff:10.0.0.1'), '10.0.0.1');
  assert.equal(unmapAddress('fd00::1'), 'fd00::1');
});

test('non-IP input is rejected', () => {
  assert.throws(() => encodeSockaddr({ address: 'example.com', port: 1 }), /not an IP address/);
  const bad = Buffer.alloc(16);
  bad.writeUInt16LE(1, 0);
  assert.throws(() => decodeSockaddr(bad), /unsupported address family/);
});
