// DNS response cache with a fake clock: TTL decrement, expiry at the minimum TTL, negative
// caching from the SOA, what is never cached, TTL caps, LRU eviction, cache keys.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cacheKey, DnsCache } from '../../src/dns/cache.js';
import {
  buildQuery,
  buildResponse,
  encodeName,
  ipRdata,
  parseMessage,
  RCODE,
  TYPE,
  type AnswerRecord,
} from '../../src/dns/wire.js';

function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

function response(name: string, rcode: number, answers: AnswerRecord[], authority: AnswerRecord[] = []) {
  const q = buildQuery({ id: 77, name, type: TYPE.A, edns: { udpSize: 1232 } });
  const buf = buildResponse(q, parseMessage(q), { rcode, answers, authority });
  return { buf, msg: parseMessage(buf) };
}

function soa(zone: string, ttl: number, minimum: number): AnswerRecord {
  const fixed = Buffer.alloc(20);
  [1, 7200, 3600, 1209600, minimum].forEach((v, i) => {
    fixed.writeUInt32BE(v, i * 4);
  });
  return {
    name: zone,
    type: TYPE.SOA,
    ttl,
    rdata: Buffer.concat([encodeName(`ns.${zone}`), encodeName(`hostmaster.${zone}`), fixed]),
  };
}

const ttls = (b: Buffer) => {
  const m = parseMessage(b);
  return [...m.answers, ...m.authority].map((r) => r.ttl);
};

test('served TTLs fall with time; the entry dies at the minimum TTL', () => {
  const c = clock();
  const cache = new DnsCache({ now: c.now });
  const r = response('a.example', RCODE.NOERROR, [
    { type: TYPE.CNAME, ttl: 3600, rdata: encodeName('b.example') },
    { name: 'b.example', type: TYPE.A, ttl: 60, rdata: ipRdata('192.0.2.1') },
  ]);
  const key = cacheKey({ name: 'A.Example.', type: TYPE.A, class: 1, do: false });
  assert.equal(cache.set(key, r.buf, r.msg), true);
  let hit = cache.get(key)!;
  assert.deepEqual(ttls(hit.response), [3600, 60]);
  assert.equal(hit.response.readUInt16BE(0), 0, 'stored without the id');
  assert.equal(hit.remaining, 60);
  c.t += 10_999;
  hit = cache.get(key)!;
  assert.deepEqual(ttls(hit.response), [3590, 50]);
  assert.equal(hit.remaining, 50);
  c.t += 49_000; // 59.999 s
  assert.deepEqual(ttls(cache.get(key)!.response), [3541, 1]);
  c.t += 1;
  assert.equal(cache.get(key), undefined);
  assert.equal(cache.size, 0);
  assert.equal(cache.hits, 3);
  assert.equal(cache.misses, 1);
});

test('negative answers live min(SOA TTL, SOA minimum), capped; without SOA they are not kept', () => {
  const c = clock();
  const cache = new DnsCache({ now: c.now, maxNegativeTtl: 900 });
  const nx = response('nope.example', RCODE.NXDOMAIN, [], [soa('example', 3600, 300)]);
  assert.equal(cache.set('nx', nx.buf, nx.msg), true);
  const hit = cache.get('nx')!;
  assert.equal(hit.negative, true);
  assert.equal(parseMessage(hit.response).header.rcode, RCODE.NXDOMAIN);
  assert.deepEqual(ttls(hit.response), [900], 'the SOA TTL served is capped too');
  c.t += 299_999;
  assert.ok(cache.get('nx'));
  c.t += 1;
  assert.equal(cache.get('nx'), undefined);

  const nodata = response('v4only.example', RCODE.NOERROR, [], [soa('example', 60, 3600)]);
  assert.equal(cache.set('nodata', nodata.buf, nodata.msg), true);
  assert.equal(cache.get('nodata')!.remaining, 60);

  const bare = response('nope.example', RCODE.NXDOMAIN, []);
  assert.equal(cache.set('bare', bare.buf, bare.msg), false);
});

test('SERVFAIL, REFUSED, TC and TTL 0 are not cached', () => {
  const cache = new DnsCache({ now: clock().now });
  for (const rcode of [RCODE.SERVFAIL, RCODE.REFUSED, RCODE.FORMERR]) {
    const r = response('x.example', rcode, []);
    assert.equal(cache.set('k', r.buf, r.msg), false);
  }
  const zero = response('x.example', RCODE.NOERROR, [{ type: TYPE.A, ttl: 0, rdata: ipRdata('192.0.2.1') }]);
  assert.equal(cache.set('k', zero.buf, zero.msg), false);
  const ok = response('x.example', RCODE.NOERROR, [{ type: TYPE.A, ttl: 30, rdata: ipRdata('192.0.2.1') }]);
  const tc = Buffer.from(ok.buf);
  tc.writeUInt16BE(tc.readUInt16BE(2) | 0x0200, 2);
  assert.equal(cache.set('k', tc, parseMessage(tc)), false);
  assert.equal(cache.size, 0);
});

test('huge TTLs are capped at maxTtl, both for lifetime and served TTLs', () => {
  const c = clock();
  const cache = new DnsCache({ now: c.now, maxTtl: 100 });
  const r = response('x.example', RCODE.NOERROR, [{ type: TYPE.A, ttl: 604_800, rdata: ipRdata('192.0.2.1') }]);
  cache.set('k', r.buf, r.msg);
  c.t += 30_000;
  assert.deepEqual(ttls(cache.get('k')!.response), [70]);
  c.t += 70_000;
  assert.equal(cache.get('k'), undefined);
});

test('LRU eviction past maxEntries; a get makes an entry recent', () => {
  const cache = new DnsCache({ now: clock().now, maxEntries: 2 });
  const r = (n: string) => response(n, RCODE.NOERROR, [{ type: TYPE.A, ttl: 300, rdata: ipRdata('192.0.2.1') }]);
  for (const n of ['a', 'b']) cache.set(n, r(n).buf, r(n).msg);
  assert.ok(cache.get('a'));
  cache.set('c', r('c').buf, r('c').msg);
  assert.equal(cache.size, 2);
  assert.ok(cache.get('a'));
  assert.equal(cache.get('b'), undefined, 'b was least recently used');
  assert.ok(cache.get('c'));
  assert.equal(cache.evictions, 1);
  cache.clear();
  assert.equal(cache.size, 0);
});

test('cache keys: case and trailing dot fold; type, class, DO and CD do not', () => {
  const k = (name: string, type: number, cls = 1, d = false, cd = false) =>
    cacheKey({ name, type, class: cls, do: d, cd });
  assert.equal(k('WWW.Example.COM.', 1), k('www.example.com', 1));
  assert.notEqual(k('a', 1), k('a', 28));
  assert.notEqual(k('a', 1), k('a', 1, 3));
  assert.notEqual(k('a', 1), k('a', 1, 1, true));
  assert.notEqual(k('a', 1), k('a', 1, 1, false, true));
});

test('the default clock is monotonic: a wall-clock step neither expires nor extends an entry', () => {
  const realNow = Date.now;
  let wall = realNow();
  Date.now = () => wall; // the wall clock, as a cache built now would read it
  try {
    const cache = new DnsCache();
    const r = response('step.example', RCODE.NOERROR, [{ type: TYPE.A, ttl: 60, rdata: ipRdata('192.0.2.9') }]);
    const key = cacheKey({ name: 'step.example', type: TYPE.A, class: 1, do: false });
    assert.equal(cache.set(key, r.buf, r.msg), true);
    wall += 3 * 3600_000; // NTP steps the clock 3 hours ahead
    assert.ok(cache.get(key), 'still cached after the wall clock jumped ahead');
    wall -= 6 * 3600_000; // and 3 hours behind where it was
    assert.equal(cache.get(key)!.remaining, 60, 'its TTL did not grow');
  } finally {
    Date.now = realNow;
  }
});
