// Fake-IP pool: deterministic allocation inside the range, both directions of the map, LRU
// reuse when the pool is full (lookups by the data plane count as use), IPv6, saved maps.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeIpPool, FakeIpRangeError } from '../../src/dns/fake-ip.js';

function inV4(ip: string, net: string, prefix: number): boolean {
  const n = (s: string) => s.split('.').reduce((v, o) => v * 256 + Number(o), 0);
  const size = 2 ** (32 - prefix);
  return Math.floor(n(ip) / size) === Math.floor(n(net) / size);
}

test('allocation is deterministic, stable, inside the range, and maps both ways', () => {
  const a = new FakeIpPool({ range: '198.18.0.0/15' });
  const b = new FakeIpPool({ range: '198.18.0.0/15' });
  const names = Array.from({ length: 500 }, (_, i) => `host${i}.example.com`);
  const ips = names.map((n) => a.allocate(n, 4)!);
  // Another pool (a restart) given the same names in the same order hands out the same addresses;
  // in another order, all but the few that collided in the hash and probed onwards.
  assert.deepEqual(
    names.map((n) => b.allocate(n, 4)!),
    ips,
  );
  const c = new FakeIpPool({ range: '198.18.0.0/15' });
  const again = [...names]
    .reverse()
    .map((n) => c.allocate(n, 4)!)
    .reverse();
  const same = again.filter((ip, i) => ip === ips[i]).length;
  assert.ok(same >= names.length - 5, `${same} of ${names.length} stable`);
  assert.equal(new Set(ips).size, names.length, 'one address per domain');
  for (const ip of ips) {
    assert.ok(inV4(ip, '198.18.0.0', 15), ip);
    assert.notEqual(ip, '198.18.0.0');
    assert.notEqual(ip, '198.19.255.255');
  }
  assert.equal(a.allocate('HOST7.Example.com.', 4), ips[7], 'case and trailing dot fold');
  assert.equal(a.lookup(ips[7]!), 'host7.example.com');
  assert.equal(a.lookup(`::ffff:${ips[7]}`), 'host7.example.com', 'IPv4-mapped form from a dual-stack socket');
  assert.equal(a.lookup('198.18.0.0'), undefined);
  assert.equal(a.lookup('10.0.0.1'), undefined);
  assert.equal(a.lookup('not an ip'), undefined);
  assert.equal(a.contains('198.19.1.1'), true);
  assert.equal(a.contains('198.20.0.1'), false);
  assert.equal(a.addressOf('host9.example.com', 4), ips[9]);
  assert.equal(a.size, 500);
});

test('a full pool gives the least recently used address to the new domain', () => {
  // A /30 has two usable addresses (.1 and .2).
  const p = new FakeIpPool({ range: '10.99.0.0/30' });
  const a = p.allocate('a.test', 4)!;
  const b = p.allocate('b.test', 4)!;
  assert.deepEqual([a, b].sort(), ['10.99.0.1', '10.99.0.2']);
  // The data plane looked a up: b is now the least recently used.
  assert.equal(p.lookup(a), 'a.test');
  const c = p.allocate('c.test', 4)!;
  assert.equal(c, b, 'c reuses b');
  assert.equal(p.lookup(b), 'c.test');
  assert.equal(p.addressOf('b.test', 4), undefined);
  assert.equal(p.lookup(a), 'a.test');
  assert.equal(p.evictions, 1);
  // Asking again for a known domain is use too.
  p.allocate('c.test', 4);
  const d = p.allocate('d.test', 4)!;
  assert.equal(d, a);
  assert.equal(p.size, 2);
});

test('maxEntries bounds the map below the range size', () => {
  const p = new FakeIpPool({ range: '198.18.0.0/15', maxEntries: 3 });
  for (const n of ['a', 'b', 'c', 'd']) p.allocate(n, 4);
  assert.equal(p.size, 3);
  assert.equal(p.addressOf('a', 4), undefined);
  assert.ok(p.addressOf('d', 4));
});

test('IPv6 only with a v6 range', () => {
  const none = new FakeIpPool({ range: '198.18.0.0/15' });
  assert.equal(none.allocate('a.test', 6), undefined);
  assert.equal(none.hasV6, false);
  const p = new FakeIpPool({ range: '198.18.0.0/15', range6: 'fc00:18::/64' });
  const ip = p.allocate('a.test', 6)!;
  assert.match(ip, /^fc00:18::|^fc00:18:0:0:/);
  assert.equal(p.lookup(ip), 'a.test');
  assert.equal(p.lookup(ip.toUpperCase()), 'a.test');
  assert.notEqual(ip, 'fc00:18::');
  assert.equal(p.contains('fc00:18::1'), true);
  assert.equal(p.contains('fc00:19::1'), false);
  // The same domain has independent v4 and v6 entries.
  assert.ok(p.allocate('a.test', 4));
  assert.equal(p.size, 2);
});

test('saved entries come back; foreign ones are skipped', () => {
  const p = new FakeIpPool({ range: '198.18.0.0/15' });
  for (const n of ['a', 'b', 'c']) p.allocate(`${n}.test`, 4);
  const saved = p.entries();
  const q = new FakeIpPool({ range: '198.18.0.0/15' });
  const n = q.restore([
    ...saved,
    ['x.test', '10.0.0.1'],
    ['y.test', 'junk'],
    [1 as unknown as string, '198.18.0.9'],
    ['dup.test', saved[0]![1]],
  ]);
  assert.equal(n, 3);
  for (const [d, ip] of saved) assert.equal(q.lookup(ip), d);
  assert.deepEqual(
    q
      .entries()
      .map(([d]) => d)
      .sort(),
    ['a.test', 'b.test', 'c.test'],
  );
});

test('bad ranges are refused with the reason', () => {
  assert.throws(() => new FakeIpPool({ range: 'fc00::/64' }), FakeIpRangeError);
  assert.throws(() => new FakeIpPool({ range: '198.18.0.0' }), /ADDRESS\/PREFIX/);
  assert.throws(() => new FakeIpPool({ range: '198.18.0.0/33' }), /prefix/);
  assert.throws(() => new FakeIpPool({ range: '198.18.0.0/15', range6: '10.0.0.0/8' }), /IPv6/);
  // A host bits set in the network part are ignored, like the kernel does.
  const p = new FakeIpPool({ range: '198.18.7.9/15' });
  assert.ok(inV4(p.allocate('a', 4)!, '198.18.0.0', 15));
  // /32 has exactly one address.
  const one = new FakeIpPool({ range: '10.1.2.3/32' });
  assert.equal(one.allocate('a', 4), '10.1.2.3');
  assert.equal(one.allocate('b', 4), '10.1.2.3');
  assert.equal(one.lookup('10.1.2.3'), 'b');
});
