// DNS wire codec: packets written by hand from the RFC 1035 §4.1 layout (header, question,
// records, compression pointers), packets from our own builder, and damaged packets: every
// truncation and random byte flips must end in a DnsWireError, never another exception.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  bigIntToIpv6,
  buildQuery,
  buildResponse,
  cacheVerdict,
  clientUdpLimit,
  DnsWireError,
  encodeName,
  fitUdp,
  formErrFor,
  ipRdata,
  ipv6ToBigInt,
  isResponseTo,
  parseHeader,
  parseMessage,
  RCODE,
  rdataText,
  readName,
  reverseNameToIp,
  rewriteTtls,
  soaMinimum,
  tryParseMessage,
  TYPE,
  withId,
  withoutOpt,
  normalizeName,
  peekQuery,
  withQuestionOf,
  optSpan,
  sameQuestionBytes,
} from '../../src/dns/wire.js';

/** Hex with spaces, comments after '#' and 'quoted ascii'. */
function bytes(text: string): Buffer {
  const out: number[] = [];
  for (const line of text.split('\n')) {
    const code = line.replace(/#.*$/, '');
    for (const tok of code.match(/'[^']*'|\S+/g) ?? []) {
      if (tok.startsWith("'")) out.push(...Buffer.from(tok.slice(1, -1), 'latin1'));
      else out.push(parseInt(tok, 16));
    }
  }
  return Buffer.from(out);
}

// A query as `dig example.com` (no EDNS) writes it: id 0x1234, RD.
const QUERY = bytes(`
  12 34  01 00  00 01  00 00  00 00  00 00   # id, flags RD, qd=1 an=0 ns=0 ar=0
  07 'example' 03 'com' 00                   # QNAME (offset 12)
  00 01  00 01                               # QTYPE A, QCLASS IN
`);

// Its answer: a CNAME whose target reuses the question's suffix, an A record whose owner
// points into the CNAME's RDATA, and an OPT record with DO set.
const RESPONSE = bytes(`
  12 34  81 80  00 01  00 02  00 00  00 01   # QR RD RA, qd=1 an=2 ns=0 ar=1
  07 'example' 03 'com' 00  00 01  00 01     # question (12..28)
  c0 0c  00 05  00 01  00 00 0e 10  00 06    # example.com CNAME, TTL 3600, rdlen 6 (29..40)
  03 'www' c0 0c                             # www.example.com (41..46)
  c0 29  00 01  00 01  00 00 01 2c  00 04    # www.example.com (ptr 41) A, TTL 300
  5d b8 d8 22                                # 93.184.216.34
  00  00 29  04 d0  00 00 80 00  00 00       # OPT: udp 1232, DO
`);

// NXDOMAIN with the zone's SOA in the authority section (RFC 2308).
const NXDOMAIN = bytes(`
  be ef  81 83  00 01  00 00  00 01  00 00   # QR RD RA NXDOMAIN, ns=1
  04 'nope' 07 'example' 03 'com' 00         # question name at 12, 'example' at 17
  00 01  00 01
  c0 11  00 06  00 01  00 00 0e 10  00 2c    # example.com SOA, TTL 3600, rdlen 44
  02 'ns' 05 'icann' 03 'org' 00             # MNAME at 46 (14 bytes); 'icann' at 49
  03 'noc' 03 'dns' c0 31                    # RNAME noc.dns.icann.org (10 bytes)
  78 a1 b2 c3  00 00 1c 20  00 00 0e 10      # serial, refresh 7200, retry 3600
  00 12 75 00  00 00 01 2c                   # expire 1209600, minimum 300
`);

test('hand-written query: header, question', () => {
  const m = parseMessage(QUERY);
  assert.equal(m.header.id, 0x1234);
  assert.equal(m.header.qr, false);
  assert.equal(m.header.rd, true);
  assert.equal(m.header.opcode, 0);
  assert.deepEqual(
    m.questions.map(({ name, type, class: c }) => ({ name, type, c })),
    [{ name: 'example.com', type: TYPE.A, c: 1 }],
  );
  assert.equal(m.questions[0]!.start, 12);
  assert.equal(m.questions[0]!.end, QUERY.length);
  assert.equal(m.edns, undefined);
  assert.equal(m.size, QUERY.length);
});

test('hand-written response: compression pointers, TTLs, OPT', () => {
  const m = parseMessage(RESPONSE);
  assert.equal(m.header.qr, true);
  assert.equal(m.header.ra, true);
  assert.equal(m.header.rcode, RCODE.NOERROR);
  assert.deepEqual(
    m.answers.map((r) => [r.name, r.type, r.ttl, rdataText(RESPONSE, r)]),
    [
      ['example.com', TYPE.CNAME, 3600, 'www.example.com'],
      ['www.example.com', TYPE.A, 300, '93.184.216.34'],
    ],
  );
  assert.equal(m.edns?.udpSize, 1232);
  assert.equal(m.edns?.do, true);
  assert.equal(m.edns?.version, 0);
  assert.equal(m.additional.length, 1);
  assert.ok(isResponseTo(m, parseMessage(QUERY)));
  assert.deepEqual(cacheVerdict(RESPONSE, m), { kind: 'positive', ttl: 300 });
});

test('hand-written NXDOMAIN: SOA minimum drives the negative TTL', () => {
  const m = parseMessage(NXDOMAIN);
  assert.equal(m.header.rcode, RCODE.NXDOMAIN);
  const soa = m.authority[0]!;
  assert.equal(soa.name, 'example.com');
  assert.equal(rdataText(NXDOMAIN, soa), `ns.icann.org noc.dns.icann.org ${0x78a1b2c3} 7200 3600 1209600 300`);
  assert.equal(soaMinimum(NXDOMAIN, soa), 300);
  assert.deepEqual(cacheVerdict(NXDOMAIN, m), { kind: 'negative', ttl: 300 });
  // Without an SOA a negative answer is not cached.
  const bare = Buffer.from(NXDOMAIN.subarray(0, 34));
  bare.writeUInt16BE(0, 8);
  assert.equal(cacheVerdict(bare, parseMessage(bare)), undefined);
});

test('verdicts: SERVFAIL, TC and NODATA', () => {
  const q = parseMessage(QUERY);
  const servfail = buildResponse(QUERY, q, { rcode: RCODE.SERVFAIL });
  assert.equal(cacheVerdict(servfail, parseMessage(servfail)), undefined);
  const tc = Buffer.from(RESPONSE);
  tc.writeUInt16BE(tc.readUInt16BE(2) | 0x0200, 2);
  assert.equal(cacheVerdict(tc, parseMessage(tc)), undefined);
  const nodata = Buffer.from(NXDOMAIN);
  nodata.writeUInt16BE(0x8180, 2);
  assert.deepEqual(cacheVerdict(nodata, parseMessage(nodata)), { kind: 'negative', ttl: 300 });
});

test('malformed: loops, forward pointers, truncation, bad labels, long names', () => {
  const code = (b: Buffer) => {
    const r = tryParseMessage(b);
    return r.ok ? 'ok' : r.error.code;
  };
  assert.equal(code(Buffer.from([1, 2, 3])), 'short-header');
  // qdcount=1 but nothing follows.
  assert.equal(code(bytes('00 01 01 00 00 01 00 00 00 00 00 00')), 'truncated');
  // A pointer to itself, and a pointer forwards.
  assert.equal(code(bytes('00 01 01 00 00 01 00 00 00 00 00 00  c0 0c 00 01 00 01')), 'bad-pointer');
  assert.equal(code(bytes('00 01 01 00 00 01 00 00 00 00 00 00  c0 12 00 01 00 01 00')), 'bad-pointer');
  // Two names pointing at each other: the second pointer must point before its own segment.
  assert.equal(
    code(
      bytes(`00 01 81 80 00 01 00 01 00 00 00 00
    01 'a' c0 12 00 01 00 01   c0 0c 00 01 00 01 00 00 00 01 00 00`),
    ),
    'bad-pointer',
  );
  // Extended label type 0x40.
  assert.equal(code(bytes('00 01 01 00 00 01 00 00 00 00 00 00  41 00 00 01 00 01')), 'bad-label');
  // Label length past the end.
  assert.equal(code(bytes("00 01 01 00 00 01 00 00 00 00 00 00  09 'abc'")), 'truncated');
  // RDATA length past the end.
  const cut = Buffer.from(RESPONSE.subarray(0, 60));
  assert.equal(code(cut), 'truncated');
  // Name longer than 255 bytes.
  const long = Buffer.concat([
    bytes('00 01 01 00 00 01 00 00 00 00 00 00'),
    ...Array.from({ length: 5 }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x61)])),
    bytes('00 00 01 00 01'),
  ]);
  assert.equal(code(long), 'name-too-long');
  // Two OPT records.
  const twoOpt = Buffer.concat([RESPONSE, bytes('00 00 29 04 d0 00 00 00 00 00 00')]);
  twoOpt.writeUInt16BE(2, 10);
  assert.equal(code(twoOpt), 'bad-opt');
});

test('every truncation and random damage ends in DnsWireError or a parse', () => {
  let seed = 42;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (const pkt of [QUERY, RESPONSE, NXDOMAIN]) {
    for (let n = 0; n < pkt.length; n++) {
      const r = tryParseMessage(pkt.subarray(0, n));
      assert.equal(r.ok, false, `prefix ${n} of ${pkt.length} parsed`);
    }
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.from(pkt);
      const flips = 1 + Math.floor(rand() * 4);
      for (let k = 0; k < flips; k++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      try {
        const m = parseMessage(b);
        for (const r of [...m.answers, ...m.authority]) {
          try {
            rdataText(b, r);
          } catch (e) {
            assert.ok(e instanceof DnsWireError, String(e));
          }
        }
      } catch (e) {
        assert.ok(e instanceof DnsWireError, String(e));
      }
    }
  }
});

test('builder: query round trip, EDNS and flags', () => {
  const q = buildQuery({
    id: 0xabcd,
    name: 'Mixed.Example.ORG.',
    type: TYPE.AAAA,
    cd: true,
    edns: { udpSize: 1232, do: true },
  });
  const m = parseMessage(q);
  assert.equal(m.header.id, 0xabcd);
  assert.equal(m.header.rd, true);
  assert.equal(m.header.cd, true);
  assert.equal(m.questions[0]!.name, 'Mixed.Example.ORG');
  assert.equal(m.questions[0]!.type, TYPE.AAAA);
  assert.equal(m.edns?.udpSize, 1232);
  assert.equal(m.edns?.do, true);
  // The hand-written query is byte for byte what the builder writes.
  assert.deepEqual(buildQuery({ id: 0x1234, name: 'example.com', type: TYPE.A }), QUERY);
});

test('builder: fake answers point at the question, echo its bytes, keep EDNS', () => {
  const raw = buildQuery({ id: 7, name: 'ExAmPlE.com', type: TYPE.A, edns: { udpSize: 4096 } });
  const qm = parseMessage(raw);
  const resp = buildResponse(raw, qm, {
    rcode: RCODE.NOERROR,
    answers: [{ type: TYPE.A, ttl: 1, rdata: ipRdata('198.18.0.5') }],
  });
  const m = parseMessage(resp);
  assert.equal(m.header.id, 7);
  assert.equal(m.header.qr, true);
  assert.equal(m.header.rd, true);
  assert.equal(m.header.ra, true);
  assert.equal(m.questions[0]!.name, 'ExAmPlE.com');
  assert.equal(m.answers[0]!.name, 'ExAmPlE.com');
  assert.equal(rdataText(resp, m.answers[0]!), '198.18.0.5');
  assert.equal(m.answers[0]!.ttl, 1);
  assert.ok(m.edns);
  // Compression pointer to offset 12: 2 bytes of owner name.
  assert.equal(resp.readUInt16BE(m.answers[0]!.start), 0xc00c);
  const v6 = buildResponse(raw, qm, {
    rcode: RCODE.NOERROR,
    answers: [{ type: TYPE.AAAA, ttl: 5, rdata: ipRdata('fc00::1:2') }],
  });
  const m6 = parseMessage(v6);
  assert.equal(rdataText(v6, m6.answers[0]!), 'fc00::1:2');
});

test('rewrites: id, TTLs, question case, OPT removal', () => {
  const m = parseMessage(RESPONSE);
  const re = parseMessage(withId(RESPONSE, 0x4321));
  assert.equal(re.header.id, 0x4321);
  const aged = rewriteTtls(RESPONSE, m, 100);
  assert.deepEqual(
    parseMessage(aged).answers.map((r) => r.ttl),
    [3500, 200],
  );
  assert.deepEqual(
    parseMessage(rewriteTtls(RESPONSE, m, 1000)).answers.map((r) => r.ttl),
    [2600, 0],
  );
  assert.deepEqual(
    parseMessage(rewriteTtls(RESPONSE, m, 0, 600)).answers.map((r) => r.ttl),
    [600, 300],
  );
  // OPT's TTL field (flags) is left alone.
  assert.equal(parseMessage(aged).edns?.do, true);

  const client = buildQuery({ id: 1, name: 'eXaMpLe.CoM', type: TYPE.A });
  const patched = withQuestionOf(RESPONSE, m, client, parseMessage(client));
  const pm = parseMessage(patched);
  assert.equal(pm.questions[0]!.name, 'eXaMpLe.CoM');
  assert.equal(pm.answers[0]!.name, 'eXaMpLe.CoM');
  assert.equal(pm.answers[1]!.name, 'www.eXaMpLe.CoM');
  const other = buildQuery({ id: 1, name: 'other.com', type: TYPE.A });
  assert.equal(withQuestionOf(RESPONSE, m, other, parseMessage(other)), RESPONSE);

  const stripped = withoutOpt(RESPONSE, m);
  const sm = parseMessage(stripped);
  assert.equal(sm.edns, undefined);
  assert.equal(sm.header.arcount, 0);
  assert.equal(stripped.length, RESPONSE.length - 11);
  assert.equal(sm.answers.length, 2);
});

test('fitUdp: TC=1 with the question when too big for the client', () => {
  const name = 'big.example';
  const raw = buildQuery({ id: 9, name, type: TYPE.TXT });
  const qm = parseMessage(raw);
  assert.equal(clientUdpLimit(qm), 512);
  const txt = Buffer.concat(
    Array.from({ length: 4 }, () => Buffer.concat([Buffer.from([200]), Buffer.alloc(200, 0x78)])),
  );
  const big = buildResponse(raw, qm, { rcode: 0, answers: [{ type: TYPE.TXT, ttl: 60, rdata: txt }] });
  assert.ok(big.length > 512);
  const small = fitUdp(big, raw, qm, 512);
  const m = parseMessage(small);
  assert.equal(m.header.tc, true);
  assert.equal(m.header.id, 9);
  assert.equal(m.answers.length, 0);
  assert.equal(m.questions[0]!.name, name);
  assert.equal(fitUdp(big, raw, qm, 4096), big);
  const e = buildQuery({ id: 9, name, type: TYPE.TXT, edns: { udpSize: 1232 } });
  assert.equal(clientUdpLimit(parseMessage(e)), 1232);
  assert.ok(parseMessage(fitUdp(big, e, parseMessage(e), 512)).edns);
});

test('FORMERR for a readable header, nothing for junk or responses', () => {
  const junk = bytes('ab cd 01 00 00 05 00 00 00 00 00 00 ff');
  const r = formErrFor(junk)!;
  const h = parseHeader(r);
  assert.equal(h.id, 0xabcd);
  assert.equal(h.qr, true);
  assert.equal(h.rcode, RCODE.FORMERR);
  assert.equal(h.qdcount, 0);
  assert.equal(formErrFor(Buffer.from([1, 2, 3])), undefined);
  assert.equal(formErrFor(RESPONSE), undefined);
});

test('names: escapes, limits, root', () => {
  assert.deepEqual(encodeName(''), Buffer.from([0]));
  assert.deepEqual(encodeName('.'), Buffer.from([0]));
  const odd = encodeName('a\\.b.c\\032d');
  assert.deepEqual(odd, Buffer.from([3, 0x61, 0x2e, 0x62, 3, 0x63, 0x20, 0x64, 0]));
  assert.equal(readName(odd, 0).name, 'a\\046b.c\\032d');
  assert.deepEqual(encodeName(readName(odd, 0).name), odd);
  assert.throws(() => encodeName('a..b'), DnsWireError);
  assert.throws(() => encodeName(`${'x'.repeat(64)}.com`), DnsWireError);
  assert.throws(() => encodeName(Array(130).fill('ab').join('.')), DnsWireError);
});

test('addresses: IPv6 text, reverse names', () => {
  for (const ip of ['::', '::1', 'fc00::', '2001:db8::8:800:200c:417a', '1:2:3:4:5:6:7:8', '1:0:0:2::3']) {
    assert.equal(bigIntToIpv6(ipv6ToBigInt(ip)), ip);
  }
  assert.equal(bigIntToIpv6(ipv6ToBigInt('::ffff:1.2.3.4')), '::ffff:102:304');
  assert.equal(reverseNameToIp('5.0.18.198.in-addr.arpa'), '198.18.0.5');
  assert.equal(reverseNameToIp('5.0.18.198.IN-ADDR.ARPA.'), '198.18.0.5');
  assert.equal(reverseNameToIp('300.0.18.198.in-addr.arpa'), undefined);
  assert.equal(reverseNameToIp('0.18.198.in-addr.arpa'), undefined);
  const nibbles = '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c.f.ip6.arpa';
  assert.equal(reverseNameToIp(nibbles), 'fc00::1');
});

test('peekQuery: a plain query read without a full parse agrees with parseMessage (property)', () => {
  const label = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/);
  fc.assert(
    fc.property(
      fc.array(label, { minLength: 0, maxLength: 5 }),
      fc.record({
        id: fc.integer({ min: 0, max: 0xffff }),
        type: fc.integer({ min: 1, max: 300 }),
        rd: fc.boolean(),
        cd: fc.boolean(),
      }),
      fc.option(fc.record({ udpSize: fc.integer({ min: 0, max: 0xffff }), do: fc.boolean() }), { nil: undefined }),
      (labels, h, edns) => {
        const buf = buildQuery({ name: labels.join('.'), ...h, ...(edns ? { edns } : {}) });
        const m = parseMessage(buf);
        const p = peekQuery(buf);
        assert.ok(p);
        assert.deepEqual(
          {
            id: p.id,
            rd: p.rd,
            cd: p.cd,
            name: p.name,
            type: p.type,
            class: p.class,
            end: p.questionEnd,
            edns: p.edns,
          },
          {
            id: m.header.id,
            rd: m.header.rd,
            cd: m.header.cd,
            name: normalizeName(m.questions[0]!.name),
            type: m.questions[0]!.type,
            class: m.questions[0]!.class,
            end: m.questions[0]!.end,
            edns: m.edns ? { udpSize: m.edns.udpSize, do: m.edns.do } : undefined,
          },
        );
      },
    ),
    { numRuns: 400 },
  );
});

test('peekQuery: anything but the plain shape is left to the full parse', () => {
  const plain = buildQuery({ id: 1, name: 'www.example.com', type: TYPE.A });
  assert.ok(peekQuery(plain));
  const variant = (edit: (b: Buffer) => void) => {
    const b = Buffer.from(plain);
    edit(b);
    return peekQuery(b);
  };
  assert.equal(
    variant((b) => (b[2]! |= 0x80)),
    undefined,
    'a response (QR)',
  );
  assert.equal(
    variant((b) => (b[2]! |= 0x10)),
    undefined,
    'opcode 2',
  );
  assert.equal(
    variant((b) => b.writeUInt16BE(2, 4)),
    undefined,
    'two questions',
  );
  assert.equal(
    variant((b) => b.writeUInt16BE(1, 6)),
    undefined,
    'an answer record',
  );
  assert.equal(
    variant((b) => b.writeUInt16BE(1, 10)),
    undefined,
    'an additional record that is not there',
  );
  assert.equal(
    variant((b) => (b[13] = 0x2e)),
    undefined,
    "a '.' inside a label (escaped in presentation form)",
  );
  assert.equal(
    variant((b) => (b[13] = 0xc3)),
    undefined,
    'a non-ASCII byte',
  );
  assert.equal(peekQuery(plain.subarray(0, plain.length - 1)), undefined, 'cut short');
  const pointer = Buffer.concat([plain.subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
  assert.equal(peekQuery(pointer), undefined, 'a compression pointer in the question');
  const tsig = Buffer.concat([plain, Buffer.from([0, 0, 250, 0, 255, 0, 0, 0, 0, 0, 0])]);
  tsig.writeUInt16BE(1, 10);
  assert.equal(peekQuery(tsig), undefined, 'an additional record that is not OPT');
  const long = buildQuery({ id: 1, name: Array.from({ length: 4 }, () => 'a'.repeat(62)).join('.'), type: TYPE.A });
  assert.equal(peekQuery(long)?.name.length, 4 * 62 + 3, 'a 253-character name');
});

test('optSpan finds the OPT record without decoding (as parseMessage places it), and refuses records past the end', () => {
  const query = buildQuery({ id: 1, name: 'www.example.com', type: TYPE.A, edns: { udpSize: 1232 } });
  const qmsg = parseMessage(query);
  const resp = buildResponse(query, qmsg, {
    rcode: RCODE.NOERROR,
    answers: [{ type: TYPE.A, ttl: 60, rdata: ipRdata('192.0.2.1') }],
  });
  const m = parseMessage(resp);
  const end = m.questions[0]!.end;
  assert.deepEqual(optSpan(resp, end), [m.edns!.record!.start, m.edns!.record!.end]);
  const noEdns = withoutOpt(resp, m);
  assert.deepEqual(optSpan(noEdns, end), [0, 0]);
  assert.equal(optSpan(resp.subarray(0, resp.length - 3), end), undefined);
});

test('sameQuestionBytes: the name up to letter case, type and class exactly, QR set and one question', () => {
  const ours = buildQuery({ id: 1, name: 'a-b.example', type: TYPE.A });
  const end = parseMessage(ours).questions[0]!.end;
  const answerTo = (name: string, type: number = TYPE.A) => {
    const q = buildQuery({ id: 1, name, type });
    return buildResponse(q, parseMessage(q), { rcode: RCODE.NOERROR });
  };
  assert.equal(sameQuestionBytes(answerTo('A-B.Example'), ours, end), true);
  assert.equal(sameQuestionBytes(answerTo('a-c.example'), ours, end), false);
  assert.equal(sameQuestionBytes(answerTo('a-b.example', TYPE.AAAA), ours, end), false);
  assert.equal(sameQuestionBytes(ours, ours, end), false, 'a query is not an answer');
});
