// The mixed inbound's parsers (src/inbound/http-proxy.ts, socks5-server.ts): what they take,
// and hostile input (truncated, oversize, bad versions, smuggling shapes) refused cleanly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_PROXY_HEAD_BYTES, parseAuthority, parseProxyHead, proxyResponse } from '../../src/inbound/http-proxy.js';
import {
  chooseMethod,
  credentialsMatch,
  decodeSocksUdpPacket,
  encodeSocksReply,
  parseGreeting,
  parseSocksRequest,
  parseUserPass,
} from '../../src/inbound/socks5-server.js';
import { mulberry32 } from '../helpers/prng.js';

const head = (s: string) => Buffer.from(s, 'latin1');

test('CONNECT host:port, with Basic credentials', () => {
  const auth = Buffer.from('alice:pa:ss').toString('base64');
  const r = parseProxyHead(
    head(`CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Authorization: Basic ${auth}\r\n\r\nTLS…`),
  );
  assert.ok(r !== 'need-more' && r.ok);
  assert.equal(r.kind, 'connect');
  assert.equal(r.host, 'example.com');
  assert.equal(r.port, 443);
  assert.deepEqual(r.auth, { username: 'alice', password: 'pa:ss' });
  const full = `CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`;
  assert.equal(r.length, full.length, 'the tunnel bytes after the head are not consumed');
});

test('CONNECT to an IPv6 literal; CONNECT without a port is refused', () => {
  const r = parseProxyHead(head('CONNECT [2001:db8::1]:8443 HTTP/1.1\r\n\r\n'));
  assert.ok(r !== 'need-more' && r.ok);
  assert.equal(r.host, '2001:db8::1');
  assert.equal(r.port, 8443);
  const bad = parseProxyHead(head('CONNECT example.com HTTP/1.1\r\n\r\n'));
  assert.ok(bad !== 'need-more' && !bad.ok);
  assert.equal(bad.status, 400);
});

test('absolute-form GET becomes origin form: Host from the URL, hop-by-hop and proxy headers removed', () => {
  const r = parseProxyHead(
    head(
      'GET http://Target.example:8080/a/b?q=1 HTTP/1.1\r\nHost: wrong\r\nUser-Agent: curl\r\n' +
        'Proxy-Connection: Keep-Alive\r\nProxy-Authorization: Basic YTpi\r\nConnection: keep-alive, X-Secret\r\n' +
        'X-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nAccept: */*\r\n\r\n',
    ),
  );
  assert.ok(r !== 'need-more' && r.ok);
  assert.equal(r.kind, 'forward');
  assert.equal(r.host, 'Target.example');
  assert.equal(r.port, 8080);
  assert.equal(
    r.upstreamHead!.toString('latin1'),
    'GET /a/b?q=1 HTTP/1.1\r\nHost: Target.example:8080\r\nUser-Agent: curl\r\nAccept: */*\r\nConnection: close\r\n\r\n',
  );
  assert.deepEqual(r.auth, { username: 'a', password: 'b' });
});

test('absolute-form without a path or port: / and port 80', () => {
  const r = parseProxyHead(head('HEAD http://10.0.0.1 HTTP/1.0\r\n\r\n'));
  assert.ok(r !== 'need-more' && r.ok);
  assert.equal(r.port, 80);
  assert.match(r.upstreamHead!.toString(), /^HEAD \/ HTTP\/1\.0\r\nHost: 10\.0\.0\.1\r\n/);
});

test('an incomplete head asks for more; one past 16 KiB is 431, complete or not', () => {
  assert.equal(parseProxyHead(head('CONNECT a:1 HTTP/1.1\r\nHost: a')), 'need-more');
  assert.equal(parseProxyHead(head('')), 'need-more');
  const big = head(`GET http://a/ HTTP/1.1\r\nX: ${'y'.repeat(MAX_PROXY_HEAD_BYTES)}`);
  const r = parseProxyHead(big);
  assert.ok(r !== 'need-more' && !r.ok);
  assert.equal(r.status, 431);
  const bigComplete = Buffer.concat([big, head('\r\n\r\n')]);
  const r2 = parseProxyHead(bigComplete);
  assert.ok(r2 !== 'need-more' && !r2.ok && r2.status === 431);
});

test('hostile heads are refused with a status, never thrown', () => {
  const cases: [string, number][] = [
    ['GET /origin-form HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['GET https://a/ HTTP/1.1\r\n\r\n', 400],
    ['GET http://user@a/ HTTP/1.1\r\n\r\n', 400],
    ['GET http://a:99999/ HTTP/1.1\r\n\r\n', 400],
    ['GET http://a b/ HTTP/1.1\r\n\r\n', 400],
    ['GET http://a/ HTTP/2.0\r\n\r\n', 505],
    ['GET http://a/ HTTP/1.1\r\nX: a\nY: b\r\n\r\n', 400],
    ['GET http://a/ HTTP/1.1\r\nX: a\0\r\n\r\n', 400],
    ['GET http://a/ HTTP/1.1\r\n folded\r\n\r\n', 400],
    ['GET http://a/ HTTP/1.1\r\nNo colon\r\n\r\n', 400],
    ['POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n', 400],
    ['POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n', 400],
    ['CONNECT [zz::1]:443 HTTP/1.1\r\n\r\n', 400],
    ['\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n', 400],
  ];
  for (const [text, status] of cases) {
    const r = parseProxyHead(head(text));
    assert.ok(r !== 'need-more' && !r.ok, JSON.stringify(text));
    assert.equal(r.status, status, JSON.stringify(text));
  }
});

test('Proxy-Authorization that is not one well-formed Basic credential is malformed', () => {
  for (const value of ['Bearer abc', 'Basic !!!', `Basic ${Buffer.from('nocolon').toString('base64')}`]) {
    const r = parseProxyHead(head(`CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: ${value}\r\n\r\n`));
    assert.ok(r !== 'need-more' && r.ok);
    assert.equal(r.auth, 'malformed', value);
  }
});

test('random bytes never throw and never read past the bound', () => {
  const rnd = mulberry32(17);
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.alloc(Math.floor(rnd() * 200));
    for (let j = 0; j < b.length; j++) b[j] = rnd() < 0.1 ? 0x0d + (rnd() < 0.5 ? 0 : -3) : Math.floor(rnd() * 256);
    parseProxyHead(b);
    parseGreeting(b);
    parseUserPass(b);
    parseSocksRequest(b);
    decodeSocksUdpPacket(b);
  }
});

test('authority parsing', () => {
  assert.deepEqual(parseAuthority('a.b:1', undefined), { host: 'a.b', port: 1 });
  assert.deepEqual(parseAuthority('[::1]', 80), { host: '::1', port: 80 });
  assert.equal(typeof parseAuthority('a..b:1', undefined), 'string');
  assert.equal(typeof parseAuthority('-a:1', undefined), 'string');
  assert.equal(typeof parseAuthority('a:0', undefined), 'string');
});

test('proxy responses: 407 carries Proxy-Authenticate; errors close', () => {
  assert.match(proxyResponse(407), /^HTTP\/1\.1 407 .*\r\nProxy-Authenticate: Basic realm="tranproxy"\r\n/s);
  assert.match(proxyResponse(502, 'connection refused'), /Connection: close\r\n.*Content-Length: 19\r\n\r\n/s);
  assert.equal(proxyResponse(200), 'HTTP/1.1 200 Connection established\r\n\r\n');
});

test('SOCKS5 greeting: incremental, bad version and empty method lists refused', () => {
  assert.equal(parseGreeting(Buffer.from([5])), 'need-more');
  assert.equal(parseGreeting(Buffer.from([5, 2, 0])), 'need-more');
  assert.deepEqual(parseGreeting(Buffer.from([5, 2, 0, 2, 9])), { ok: true, length: 4, methods: [0, 2] });
  const v4 = parseGreeting(Buffer.from([4, 1, 0]));
  assert.ok(v4 !== 'need-more' && !v4.ok);
  const none = parseGreeting(Buffer.from([5, 0]));
  assert.ok(none !== 'need-more' && !none.ok);
  assert.equal(chooseMethod([0, 2], true), 2);
  assert.equal(chooseMethod([0], true), 0xff, 'no auth offered to a server that requires it');
  assert.equal(chooseMethod([0, 2], false), 0);
  assert.equal(chooseMethod([2], false), 0xff);
});

test('RFC 1929 username/password: lengths from the message, truncation waits', () => {
  const msg = Buffer.from([1, 3, ...Buffer.from('bob'), 4, ...Buffer.from('pw:x')]);
  for (let n = 0; n < msg.length; n++) assert.equal(parseUserPass(msg.subarray(0, n)), 'need-more');
  assert.deepEqual(parseUserPass(msg), { ok: true, length: msg.length, username: 'bob', password: 'pw:x' });
  const badVersion = parseUserPass(Buffer.from([5, 1, 0x61, 0]));
  assert.ok(badVersion !== 'need-more' && !badVersion.ok);
  assert.equal(credentialsMatch({ username: 'bob', password: 'pw:x' }, { username: 'bob', password: 'pw:x' }), true);
  assert.equal(credentialsMatch({ username: 'bob', password: 'pw' }, { username: 'bob', password: 'pw:x' }), false);
  assert.equal(credentialsMatch({ username: 'bo', password: 'b' }, { username: 'bob', password: '' }), false);
});

test('SOCKS5 request: domain, IPv4, IPv6; bad version, unknown ATYP and control bytes refused', () => {
  const dom = Buffer.from([5, 1, 0, 3, 11, ...Buffer.from('example.com'), 0x01, 0xbb]);
  for (let n = 0; n < dom.length; n++) assert.equal(parseSocksRequest(dom.subarray(0, n)), 'need-more');
  const r = parseSocksRequest(dom);
  assert.ok(r !== 'need-more' && r.ok);
  assert.equal(r.cmd, 1);
  assert.deepEqual(r.address, { host: 'example.com', port: 443, type: 3 });
  const v4 = parseSocksRequest(Buffer.from([5, 3, 0, 1, 10, 0, 0, 1, 0, 53]));
  assert.ok(v4 !== 'need-more' && v4.ok && v4.cmd === 3 && v4.address.host === '10.0.0.1');
  const v6 = parseSocksRequest(Buffer.from([5, 1, 0, 4, ...Buffer.alloc(15), 1, 0, 80]));
  assert.ok(v6 !== 'need-more' && v6.ok && v6.address.host === '::1');
  for (const bad of [
    [4, 1, 0, 1, 1, 2, 3, 4, 0, 80],
    [5, 1, 0, 9, 1, 2, 3, 4, 0, 80],
    [5, 1, 0, 3, 0, 0, 80],
    [5, 1, 0, 3, 3, 0x61, 0x00, 0x62, 0, 80],
    [5, 1, 0, 3, 3, 0x61, 0x20, 0x62, 0, 80],
  ]) {
    const x = parseSocksRequest(Buffer.from(bad));
    assert.ok(x !== 'need-more' && !x.ok, JSON.stringify(bad));
  }
});

test('SOCKS5 replies carry the bound address', () => {
  assert.deepEqual(
    [...encodeSocksReply(0, { address: '::ffff:10.1.2.3', port: 1080 })],
    [5, 0, 0, 1, 10, 1, 2, 3, 4, 56],
  );
  assert.deepEqual([...encodeSocksReply(5)], [5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
  assert.equal(encodeSocksReply(0, { address: 'fd00::1', port: 1 }).length, 22);
});
