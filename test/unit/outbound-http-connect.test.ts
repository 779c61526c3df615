import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connectAuthority, encodeConnectRequest, parseConnectResponse } from '../../src/outbound/http-connect.js';

test('CONNECT request: authority, Host, Basic credentials', () => {
  assert.equal(connectAuthority('::1', 443), '[::1]:443');
  assert.equal(connectAuthority('example.com', 80), 'example.com:80');
  assert.equal(
    encodeConnectRequest('example.com:443').toString(),
    'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n',
  );
  assert.equal(
    encodeConnectRequest('[fd00::1]:22', { username: 'Aladdin', password: 'open sesame' }).toString(),
    'CONNECT [fd00::1]:22 HTTP/1.1\r\nHost: [fd00::1]:22\r\nProxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n',
  );
  assert.throws(() => encodeConnectRequest('evil.com:80\r\nX: y'), /whitespace or control/);
});

test('200 response: every split needs more until the blank line; bytes after it are not consumed', () => {
  const head = Buffer.from('HTTP/1.1 200 Connection established\r\nProxy-Agent: tinyproxy/1.11.1\r\n\r\n');
  for (let i = 0; i < head.length; i++)
    assert.equal(parseConnectResponse(head.subarray(0, i)), 'need-more', `prefix ${i}`);
  const r = parseConnectResponse(Buffer.concat([head, Buffer.from('SSH-2.0-banner\r\n')]));
  assert.ok(r !== 'need-more' && r.ok);
  assert.equal(r.length, head.length);
  assert.equal(r.status, 200);
  assert.equal(r.statusLine, 'HTTP/1.1 200 Connection established');
  assert.deepEqual(r.headers, [['Proxy-Agent', 'tinyproxy/1.11.1']]);
});

test('status line forms: HTTP/1.0, empty reason, non-200 statuses parse (the outbound refuses them)', () => {
  for (const [text, status] of [
    ['HTTP/1.0 200 OK\r\n\r\n', 200],
    ['HTTP/1.1 200 \r\n\r\n', 200],
    ['HTTP/1.1 200\r\n\r\n', 200],
    [
      'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="x"\r\nContent-Length: 0\r\n\r\n',
      407,
    ],
    ['HTTP/1.1 403 Access violation\r\n\r\n', 403],
    ['HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\n\r\n<html>', 502],
  ] as const) {
    const r = parseConnectResponse(Buffer.from(text, 'latin1'));
    assert.ok(r !== 'need-more' && r.ok, text);
    assert.equal(r.status, status);
  }
});

test('strict rejections, found as early as possible', () => {
  for (const [text, why] of [
    ['SSH-2.0-OpenSSH\r\n', /does not start with HTTP/],
    ['\x05\x00', /does not start with HTTP/],
    ['HTTP/2 200\r\n\r\n', /does not start with HTTP\/1/],
    ['HTTP/1.1 20 OK\r\n\r\n', /malformed status line/],
    ['HTTP/1.1 200 OK\nVia: x\n\n', /bare LF/],
    ['HTTP/1.1 200 OK\n', /bare LF/],
    ['HTTP/1.1 200 OK\r\nVia: x\rY\r\n\r\n', /bare CR/],
    ['HTTP/1.1 200 OK\r\nVia: x\r\n folded\r\n\r\n', /line folding/],
    ['HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n', /malformed header line/],
    ['HTTP/1.1 200 OK\r\n: x\r\n\r\n', /malformed header line/],
    ['HTTP/1.1 200 OK\r\nX: \x00\r\n\r\n', /malformed header line/],
  ] as const) {
    const r = parseConnectResponse(Buffer.from(text, 'latin1'));
    assert.ok(r !== 'need-more' && !r.ok, JSON.stringify(text));
    assert.match(r.error, why, JSON.stringify(text));
  }
});

test('head size limit', () => {
  const big = Buffer.from(`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(20000)}`);
  const r = parseConnectResponse(big);
  assert.ok(r !== 'need-more' && !r.ok && /longer than 16384/.test(r.error));
  const small = parseConnectResponse(Buffer.from('HTTP/1.1 200 OK\r\nX: aaaaaaaaaa\r\n\r\n'), 20);
  assert.ok(small !== 'need-more' && !small.ok);
});

test('error text of hostile status lines is printable and bounded', () => {
  const r = parseConnectResponse(Buffer.from(`HTTP/1.1 2x0 \x1b[31m${'z'.repeat(500)}\r\n\r\n`, 'latin1'));
  assert.ok(r !== 'need-more' && !r.ok);
  assert.doesNotMatch(r.error, /\x1b/);
  assert.ok(r.error.length < 300);
});
