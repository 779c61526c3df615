// HTTP/1.x Host sniffer: a table of request heads, every split offset, limits, and junk.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HTTP_SNIFF_LIMIT, normalizeHostName, sniff, sniffHttp, type SniffResult } from '../../src/sniff/index.js';

const b = (s: string) => Buffer.from(s, 'latin1');

const CASES: [string, string, SniffResult][] = [
  ['plain', 'GET / HTTP/1.1\r\nHost: example.com\r\n\r\n', { domain: 'example.com' }],
  ['port split off', 'GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n', { domain: 'example.com' }],
  [
    'lower-cased, trailing dot',
    'GET / HTTP/1.1\r\nhOsT:   WWW.Example.COM.  \r\nAccept: */*\r\n\r\n',
    { domain: 'www.example.com' },
  ],
  [
    'Host not first',
    'POST /x HTTP/1.1\r\nContent-Length: 0\r\nX-Host: evil.com\r\nHost: api.example.org\r\n\r\n',
    { domain: 'api.example.org' },
  ],
  ['HTTP/1.0, bare LF', 'HEAD / HTTP/1.0\nHost: old.example\n\n', { domain: 'old.example' }],
  [
    'absolute-form wins',
    'GET http://user:pw@Abs.Example:81/p?q HTTP/1.1\r\nHost: other.example\r\n\r\n',
    { domain: 'abs.example' },
  ],
  [
    'CONNECT authority',
    'CONNECT tunnel.example:443 HTTP/1.1\r\nHost: tunnel.example:443\r\n\r\n',
    { domain: 'tunnel.example' },
  ],
  ['OPTIONS *', 'OPTIONS * HTTP/1.1\r\nHost: star.example\r\n\r\n', { domain: 'star.example' }],
  ['IPv6 literal', 'GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n', 'no-domain'],
  ['IPv6 literal without port', 'GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n', 'no-domain'],
  ['IPv4 literal', 'GET / HTTP/1.1\r\nHost: 10.1.2.3:80\r\n\r\n', 'no-domain'],
  ['no Host', 'GET / HTTP/1.0\r\nAccept: */*\r\n\r\n', 'no-domain'],
  ['empty Host', 'GET / HTTP/1.1\r\nHost:\r\n\r\n', 'no-domain'],
  ['two Hosts', 'GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n', 'no-domain'],
  ['folded Host', 'GET / HTTP/1.1\r\nHost: a.example\r\n b.example\r\n\r\n', 'no-domain'],
  ['junk in Host', 'GET / HTTP/1.1\r\nHost: a b.example\r\n\r\n', 'no-domain'],
  ['bad port', 'GET / HTTP/1.1\r\nHost: a.example:8x\r\n\r\n', 'no-domain'],
  ['lower-case method', 'get / HTTP/1.1\r\nHost: a.example\r\n\r\n', 'not-this-protocol'],
  ['HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'not-this-protocol'],
  ['not a request line', 'HELLO world\r\n', 'not-this-protocol'],
  ['SSH', 'SSH-2.0-OpenSSH_9.2\r\n', 'not-this-protocol'],
  ['TLS', '\x16\x03\x01\x00\x10\x01', 'not-this-protocol'],
];

test('sniffHttp: table', () => {
  for (const [what, text, want] of CASES) assert.deepEqual(sniffHttp(b(text)), want, what);
});

test('sniffHttp: every split offset answers need-more, then the final answer', () => {
  for (const [what, text, want] of CASES) {
    if (want === 'not-this-protocol') continue;
    const full = b(text);
    for (let i = 0; i < full.length; i++) assert.equal(sniffHttp(full.subarray(0, i)), 'need-more', `${what} @${i}`);
    // A body (or pipelined request) after the head changes nothing.
    assert.deepEqual(sniffHttp(Buffer.concat([full, b('GET / HTTP/1.1\r\nHost: x.example\r\n\r\n')])), want, what);
  }
});

test('sniffHttp: non-HTTP is recognised early', () => {
  assert.equal(sniffHttp(b('\x16')), 'not-this-protocol');
  assert.equal(sniffHttp(b('G')), 'need-more');
  assert.equal(sniffHttp(b('GET')), 'need-more');
  assert.equal(sniffHttp(b('GET /')), 'need-more');
  assert.equal(sniffHttp(b('GET / HTTP/2')), 'not-this-protocol');
  assert.equal(sniffHttp(b('GET / X')), 'not-this-protocol');
  assert.equal(sniffHttp(b('GET  /')), 'not-this-protocol');
  assert.equal(sniffHttp(b('ABCDEFGHIJKLMNOPQRSTUVWXYZ')), 'not-this-protocol');
  assert.equal(sniffHttp(b('GET / HTTP/1.1\rX')), 'not-this-protocol');
});

test('sniffHttp: the limit ends the wait', () => {
  const head = 'GET / HTTP/1.1\r\nHost: big.example\r\n';
  const padded = b(`${head}X-Pad: ${'p'.repeat(HTTP_SNIFF_LIMIT)}`);
  assert.deepEqual(sniffHttp(padded), { domain: 'big.example' }); // Host seen before the limit
  assert.equal(sniffHttp(padded.subarray(0, 200)), 'need-more');
  assert.deepEqual(sniffHttp(padded.subarray(0, 200), { maxBytes: 200 }), { domain: 'big.example' });
  const hostAfter = b(`GET / HTTP/1.1\r\nX-Pad: ${'p'.repeat(HTTP_SNIFF_LIMIT)}\r\nHost: late.example\r\n\r\n`);
  assert.equal(sniffHttp(hostAfter), 'no-domain');
  assert.equal(sniffHttp(b(`GET /${'u'.repeat(HTTP_SNIFF_LIMIT)}`)), 'no-domain');
  assert.deepEqual(sniff(hostAfter), { protocol: 'http' });
});

test('sniff: combined verdicts', () => {
  assert.equal(sniff(Buffer.alloc(0)), 'need-more');
  assert.equal(sniff(b('GET / HTTP/1.1\r\n')), 'need-more');
  assert.deepEqual(sniff(b('GET / HTTP/1.1\r\nHost: c.example\r\n\r\n')), { protocol: 'http', domain: 'c.example' });
  assert.deepEqual(sniff(b('GET / HTTP/1.1\r\n\r\n')), { protocol: 'http' });
  assert.deepEqual(sniff(b('\x00\x00\x00\x01')), { protocol: 'unknown' });
});

test('normalizeHostName', () => {
  assert.equal(normalizeHostName('Example.COM.'), 'example.com');
  assert.equal(normalizeHostName('a-b_c.example'), 'a-b_c.example');
  assert.equal(normalizeHostName('localhost'), 'localhost');
  for (const bad of [
    '',
    '.',
    'a..b',
    '.a',
    'a b',
    '1.2.3.4',
    'example.123',
    `${'x'.repeat(64)}.com`,
    `${'a.'.repeat(127)}com`,
    'ä.example',
  ]) {
    assert.equal(normalizeHostName(bad), undefined, bad);
  }
});

test('sniffHttp: damaged heads never throw', () => {
  let seed = 42;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  for (let round = 0; round < 3000; round++) {
    const base = b(CASES[round % CASES.length]![1]);
    for (let f = 0; f < 3; f++) base[Math.floor(rand() * base.length)] = Math.floor(rand() * 256);
    const r = sniffHttp(base.subarray(0, Math.floor(rand() * (base.length + 1))));
    assert.ok(typeof r === 'string' || typeof r.domain === 'string');
  }
});
