// Streaming request-head rewriter: a table of tricky inputs, each fed whole, byte by byte
// and in random splits (all three must agree), plus the event-level contract the relay
// relies on (ordering, early forwarding, passthrough, zero-copy views).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileInjectConfig, type InjectConfig } from '../../src/http/inject-config.js';
import { RequestRewriter, type RewriteEvent } from '../../src/http/rewriter.js';
import { mulberry32 } from '../helpers/prng.js';

const BASE: InjectConfig = {
  headers: [{ name: 'X-Client-Hostname', value: 'pod-a' }],
  forwardedFor: { value: '10.0.0.7', mode: 'append' },
  maxHeadBytes: 65536,
};
const INJ = 'X-Forwarded-For: 10.0.0.7\r\nX-Client-Hostname: pod-a\r\n';

interface Result {
  out: string;
  terminal: Exclude<RewriteEvent, { kind: 'forward' }> | null;
  requests: number;
}

/**
 * Feed chunks like the relay would: forward events are written upstream; after
 * 'passthrough' the remaining chunks are relayed raw; after 'reject' nothing more is sent.
 * Then the server's `response` bytes, if any (they may release held bytes).
 */
function feed(cfg: InjectConfig, chunks: Buffer[], response?: string): Result {
  const rw = new RequestRewriter(compileInjectConfig(cfg));
  const out: Buffer[] = [];
  let terminal: Result['terminal'] = null;
  for (const c of [...chunks, ...(response === undefined ? [] : [null])]) {
    if (terminal?.kind === 'passthrough' && c !== null) {
      out.push(c);
      continue;
    }
    if (terminal) break;
    const evs = c === null ? rw.pushResponse(Buffer.from(response!, 'latin1')) : rw.push(c);
    assert.ok(c === null || evs.length <= 2, 'at most a forward and a terminal event per push');
    for (let i = 0; i < evs.length; i++) {
      const ev = evs[i]!;
      assert.equal(terminal, null, 'nothing after a terminal event');
      if (ev.kind === 'forward') {
        assert.equal(i, 0, 'the forward event comes first');
        assert.ok(ev.chunks.length > 0);
        for (const b of ev.chunks) {
          assert.ok(Buffer.isBuffer(b));
          out.push(b);
        }
      } else {
        terminal = ev;
      }
    }
  }
  return { out: Buffer.concat(out).toString('latin1'), terminal, requests: rw.requests };
}

function splits(input: Buffer, rnd: () => number): Buffer[] {
  const chunks: Buffer[] = [];
  let i = 0;
  while (i < input.length) {
    const n = 1 + Math.floor(rnd() * Math.min(40, input.length));
    chunks.push(input.subarray(i, i + n));
    i += n;
  }
  return chunks;
}

/** Run whole, byte by byte and in 5 random splits; assert they agree; return the whole-run result. */
function run(input: string | Buffer, cfg: InjectConfig = BASE, response?: string): Result {
  const buf = typeof input === 'string' ? Buffer.from(input, 'latin1') : input;
  const whole = feed(cfg, [buf], response);
  const bytes = feed(
    cfg,
    [...buf].map((b) => Buffer.from([b])),
    response,
  );
  // A refused non-HTTP first line went up raw as far as it had come (the relay then resets the upstream).
  const watched = (r: Result) => r.terminal?.kind === 'reject' && /first line holds/.test(r.terminal.reason);
  const strip = (r: Result) => ({
    out: watched(r) ? '' : r.out,
    terminal: r.terminal && { ...r.terminal, response: undefined },
    requests: r.requests,
  });
  assert.deepEqual(strip(bytes), strip(whole), 'byte-by-byte feeding differs from one chunk');
  const rnd = mulberry32(buf.length * 7919 + 1);
  for (let k = 0; k < 5; k++) {
    assert.deepEqual(strip(feed(cfg, splits(buf, rnd), response)), strip(whole), 'random split differs from one chunk');
  }
  return whole;
}

function ok(input: string | Buffer, expected: string, cfg: InjectConfig = BASE, response?: string): Result {
  const r = run(input, cfg, response);
  assert.equal(
    r.terminal,
    null,
    `unexpected ${r.terminal?.kind}: ${r.terminal && 'reason' in r.terminal ? r.terminal.reason : ''}`,
  );
  assert.equal(r.out, expected);
  return r;
}

function rejected(
  input: string,
  status: 400 | 431,
  reason: RegExp,
  forwarded = '',
  cfg: InjectConfig = BASE,
  response?: string,
): void {
  const r = run(input, cfg, response);
  assert.ok(r.terminal && r.terminal.kind === 'reject', `expected reject, got ${r.terminal?.kind ?? 'none'}`);
  assert.equal(r.terminal.status, status);
  assert.match(r.terminal.reason, reason);
  const text = status === 400 ? 'HTTP/1.1 400 Bad Request' : 'HTTP/1.1 431 Request Header Fields Too Large';
  assert.equal(r.terminal.response.toString(), `${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  assert.equal(r.out, forwarded);
}

function passthrough(input: string | Buffer, expected: string, cfg: InjectConfig = BASE, response?: string): Result {
  const r = run(input, cfg, response);
  assert.equal(r.terminal?.kind, 'passthrough');
  assert.equal(r.out, expected);
  return r;
}

// ---- the table ------------------------------------------------------------------------------

test('simple GET: headers injected at the end of the header section', () => {
  const r = ok('GET / HTTP/1.1\r\nHost: a\r\n\r\n', `GET / HTTP/1.1\r\nHost: a\r\n${INJ}\r\n`);
  assert.equal(r.requests, 1);
});

test('obs-fold is rejected with 400', () => {
  rejected('GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n', 400, /obs-fold/);
  rejected('GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n', 400, /obs-fold/);
  rejected('GET / HTTP/1.1\r\n Host: a\r\n\r\n', 400, /whitespace before the first header/);
});

test('a colon inside a value is a value character (client and injected values)', () => {
  const cfg: InjectConfig = { ...BASE, headers: [{ name: 'X-Url', value: 'http://b:81/x:y' }] };
  ok(
    'GET / HTTP/1.1\r\nHost: a:8080\r\nX-Time: 12:34:56\r\nX-Url: http://spoof:1/\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a:8080\r\nX-Time: 12:34:56\r\nX-Forwarded-For: 10.0.0.7\r\nX-Url: http://b:81/x:y\r\n\r\n',
    cfg,
  );
});

test('header names match case-insensitively (replaced custom header, framing headers)', () => {
  ok(
    'GET / HTTP/1.1\r\nx-client-hostname: spoof\r\nHost: a\r\nX-CLIENT-HOSTNAME: spoof2\r\n\r\n',
    `GET / HTTP/1.1\r\nHost: a\r\n${INJ}\r\n`,
  );
  // lower/mixed-case Content-Length still frames the body: the body text that looks like a
  // request line is not rewritten and the next real head is.
  ok(
    'POST /a HTTP/1.1\r\ncontent-LENGTH: 9\r\n\r\nGET /x HTGET /b HTTP/1.1\r\n\r\n',
    `POST /a HTTP/1.1\r\ncontent-LENGTH: 9\r\n${INJ}\r\nGET /x HTGET /b HTTP/1.1\r\n${INJ}\r\n`,
  );
});

test('bare LF line endings are accepted and kept; injected lines use CRLF', () => {
  ok('GET / HTTP/1.1\nHost: a\nX-Client-Hostname: spoof\n\n', `GET / HTTP/1.1\nHost: a\n${INJ}\n`);
  ok('GET / HTTP/1.1\r\nHost: a\n\r\n', `GET / HTTP/1.1\r\nHost: a\n${INJ}\r\n`);
  ok('GET / HTTP/1.1\nHost: a\r\n\n', `GET / HTTP/1.1\nHost: a\r\n${INJ}\n`);
});

test('duplicate Content-Length is rejected, even with equal values', () => {
  rejected('POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc', 400, /more than one Content-Length/);
  rejected(
    'POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\nabcd',
    400,
    /more than one Content-Length/,
  );
});

test('Transfer-Encoding together with Content-Length is rejected', () => {
  rejected(
    'POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    400,
    /together with Content-Length/,
  );
  rejected(
    'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n',
    400,
    /together with Content-Length/,
  );
});

test('Transfer-Encoding whose final coding is not chunked is rejected', () => {
  rejected('POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nxx', 400, /final coding is not chunked/);
  rejected('POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\nxx', 400, /final coding is not chunked/);
  rejected(
    'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\nxx',
    400,
    /final coding is not chunked/,
  );
  rejected(
    'POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n',
    400,
    /final coding is not chunked/,
  );
  rejected('POST / HTTP/1.1\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n', 400, /final coding is not chunked/);
  rejected('POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n', 400, /final coding is not chunked/);
  // gzip then chunked is fine: the chunked walk frames the body.
  ok(
    'POST / HTTP/1.1\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /n HTTP/1.1\r\n\r\n',
    `POST / HTTP/1.1\r\nTransfer-Encoding: gzip, CHUNKED\r\n${INJ}\r\n3\r\nabc\r\n0\r\n\r\nGET /n HTTP/1.1\r\n${INJ}\r\n`,
  );
});

test('Transfer-Encoding in an HTTP/1.0 request is rejected', () => {
  rejected('POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, /HTTP\/1\.0/);
});

test('invalid Content-Length values are rejected', () => {
  for (const v of ['abc', '-1', '+5', '1,1', '5 5', '0x10', '', '12345678901234567']) {
    rejected(`POST / HTTP/1.1\r\nContent-Length: ${v}\r\n\r\n`, 400, /invalid Content-Length/);
  }
  // OWS around a valid value is fine
  ok('POST / HTTP/1.1\r\nContent-Length: \t2 \r\n\r\nhi', `POST / HTTP/1.1\r\nContent-Length: \t2 \r\n${INJ}\r\nhi`);
});

test('Content-Length: 0 and no framing header mean no body', () => {
  ok(
    'POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\nPOST /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n',
    `POST / HTTP/1.1\r\nContent-Length: 0\r\n${INJ}\r\nPOST /2 HTTP/1.1\r\n${INJ}\r\nGET /3 HTTP/1.1\r\n${INJ}\r\n`,
  );
});

test('X-Forwarded-For append with 0, 1 and 2 client lines', () => {
  ok('GET / HTTP/1.1\r\nHost: a\r\n\r\n', `GET / HTTP/1.1\r\nHost: a\r\n${INJ}\r\n`);
  ok(
    'GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nHost: a\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1, 10.0.0.7\r\nX-Client-Hostname: pod-a\r\n\r\n',
  );
  ok(
    'GET / HTTP/1.1\r\nx-forwarded-for:1.1.1.1 \r\nHost: a\r\nX-FORWARDED-FOR:  2.2.2.2, 3.3.3.3\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.7\r\nX-Client-Hostname: pod-a\r\n\r\n',
  );
  // an empty client line contributes nothing
  ok('GET / HTTP/1.1\r\nX-Forwarded-For:\r\n\r\n', `GET / HTTP/1.1\r\n${INJ}\r\n`);
  // bare-LF head keeps its LF blank line after a merged line
  ok(
    'GET / HTTP/1.1\nX-Forwarded-For: 1.1.1.1\n\n',
    'GET / HTTP/1.1\nX-Forwarded-For: 1.1.1.1, 10.0.0.7\r\nX-Client-Hostname: pod-a\r\n\n',
  );
});

test('X-Forwarded-For replace drops every client line', () => {
  const cfg: InjectConfig = { ...BASE, forwardedFor: { value: '10.0.0.7', mode: 'replace' } };
  ok(
    'GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nHost: a\r\nx-forwarded-for: 2.2.2.2\r\n\r\n',
    `GET / HTTP/1.1\r\nHost: a\r\n${INJ}\r\n`,
    cfg,
  );
});

test('without a forwarded-for option, client X-Forwarded-For lines are left alone', () => {
  const cfg: InjectConfig = { headers: [{ name: 'X-Client-Hostname', value: 'pod-a' }], maxHeadBytes: 65536 };
  ok(
    'GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n',
    'GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nX-Client-Hostname: pod-a\r\n\r\n',
    cfg,
  );
});

test('custom headers replace same-named client headers, keeping other lines and their order', () => {
  const cfg: InjectConfig = {
    headers: [
      { name: 'X-Team', value: 'payments' },
      { name: 'X-Client-Hostname', value: 'pod-a' },
    ],
    maxHeadBytes: 65536,
  };
  ok(
    'GET / HTTP/1.1\r\nX-Team: evil\r\nHost: a\r\nAccept: */*\r\nx-client-hostname: spoof\r\nUser-Agent: t\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nUser-Agent: t\r\nX-Team: payments\r\nX-Client-Hostname: pod-a\r\n\r\n',
    cfg,
  );
  // a header whose name only shares a prefix or length is kept
  ok(
    'GET / HTTP/1.1\r\nX-Teams: keep\r\nX-Tea: keep\r\nY-Team: keep\r\n\r\n',
    'GET / HTTP/1.1\r\nX-Teams: keep\r\nX-Tea: keep\r\nY-Team: keep\r\nX-Team: payments\r\nX-Client-Hostname: pod-a\r\n\r\n',
    cfg,
  );
});

test('HTTP/1.0 requests are rewritten too', () => {
  ok('GET / HTTP/1.0\r\n\r\n', `GET / HTTP/1.0\r\n${INJ}\r\n`);
});

test('absolute-form request target is kept intact', () => {
  ok(
    'GET http://example.com:8080/p?q=1&r=a:b HTTP/1.1\r\nHost: example.com:8080\r\n\r\n',
    `GET http://example.com:8080/p?q=1&r=a:b HTTP/1.1\r\nHost: example.com:8080\r\n${INJ}\r\n`,
  );
});

test('CONNECT: head rewritten; the tunnel bytes are held until the server answers 2xx, then raw', () => {
  const tunnel = '\x16\x03\x01\x00\x05hello GET / HTTP/1.1\r\n\r\n';
  const connect = `CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n${tunnel}`;
  const head = `CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n${INJ}\r\n`;
  // No answer yet: only the CONNECT head has gone up.
  assert.equal(ok(connect, head).requests, 1);
  const r = passthrough(connect, head + tunnel, BASE, 'HTTP/1.1 200 Connection established\r\n\r\n');
  assert.equal(r.requests, 1);
  // Refused by the server: what followed is HTTP again, judged as such (here: not a request line).
  rejected(connect, 400, /malformed request line/, head, BASE, 'HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
});

test('Upgrade: the client alone cannot switch the connection; only a 101 from the server does', () => {
  const frames = '\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58GET / HTTP/1.1\r\nX-Client-Hostname: spoof\r\n\r\n';
  const up = 'GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n';
  passthrough(
    `${up}\r\n${frames}`,
    `${up}${INJ}\r\n${frames}`,
    BASE,
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n',
  );
  // Issue 14 item 1: the server answers 200, not 101 — the next request is stamped, the spoof dropped.
  const next = 'GET /b HTTP/1.1\r\nX-Client-Hostname: spoofed\r\n\r\n';
  ok(
    `${up}\r\n${next}`,
    `${up}${INJ}\r\nGET /b HTTP/1.1\r\n${INJ}\r\n`,
    BASE,
    'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello',
  );
  // A body that looks like a 101 does not switch; nor does a 101 to a request that did not ask.
  ok(
    `${up}\r\n${next}`,
    `${up}${INJ}\r\nGET /b HTTP/1.1\r\n${INJ}\r\n`,
    BASE,
    'HTTP/1.1 200 OK\r\nContent-Length: 36\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n',
  );
  ok(
    `GET /1 HTTP/1.1\r\n\r\n${up}\r\n${next}`,
    `GET /1 HTTP/1.1\r\n${INJ}\r\n${up}${INJ}\r\nGET /b HTTP/1.1\r\n${INJ}\r\n`,
    BASE,
    'HTTP/1.1 101 Switching Protocols\r\n\r\n',
  );
  // after an ordinary (chunked) response and an interim 100; case-insensitive name
  const lower = 'GET /ws HTTP/1.1\r\nupgrade: websocket\r\n';
  passthrough(
    `GET /1 HTTP/1.1\r\n\r\n${lower}\r\n${frames}`,
    `GET /1 HTTP/1.1\r\n${INJ}\r\n${lower}${INJ}\r\n${frames}`,
    BASE,
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nHTTP/\r\n0\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n',
  );
});

test('h2c is refused unless allowed: Upgrade: h2c and the prior-knowledge preface', () => {
  rejected('GET / HTTP/1.1\r\nUpgrade: websocket, H2C\r\nConnection: Upgrade\r\n\r\n', 400, /h2c refused/);
  const preface = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00';
  rejected(preface, 400, /h2c\) refused/);
  const allow: InjectConfig = { ...BASE, allowH2c: true };
  const up =
    'GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n';
  passthrough(
    `${up}\r\nPRI * HTTP/2.0\r\n`,
    `${up}${INJ}\r\nPRI * HTTP/2.0\r\n`,
    allow,
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n',
  );
  assert.equal(passthrough(preface, preface, allow).requests, 0);
  // judged from its first line alone, even when more than maxHeadBytes follow at once
  const odd = `PRI * HTTP/2.0\r\n${'x'.repeat(3000)}`;
  passthrough(odd, odd, { ...allow, maxHeadBytes: 1024 });
  // only as the first request of a connection
  rejected(`GET / HTTP/1.1\r\n\r\n${preface}`, 400, /h2c\) refused/, `GET / HTTP/1.1\r\n${INJ}\r\n`, allow);
});

test('client headers equal to an injected one after folding case and _ to - are dropped', () => {
  ok(
    'GET / HTTP/1.1\r\nX_Client_Hostname: spoofed\r\nx-client_hostname: s2\r\nX_Client-Hostnamex: kept\r\n\r\n',
    `GET / HTTP/1.1\r\nX_Client-Hostnamex: kept\r\n${INJ}\r\n`,
  );
  // X_Forwarded_For is X-Forwarded-For to a CGI server: merged like one in append mode
  ok(
    'GET / HTTP/1.1\r\nX_Forwarded_For: 1.2.3.4\r\n\r\n',
    'GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4, 10.0.0.7\r\nX-Client-Hostname: pod-a\r\n\r\n',
  );
  // Framing headers are matched exactly: Content_Length frames nothing (nginx and Node ignore it too).
  ok(
    'POST / HTTP/1.1\r\nContent_Length: 5\r\n\r\nGET / HTTP/1.1\r\n\r\n',
    `POST / HTTP/1.1\r\nContent_Length: 5\r\n${INJ}\r\nGET / HTTP/1.1\r\n${INJ}\r\n`,
  );
});

test('pipelined requests: every head is rewritten', () => {
  const r = ok(
    'GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 4\r\n\r\nbodyGET /3 HTTP/1.1\r\nX-Client-Hostname: x\r\n\r\n',
    `GET /1 HTTP/1.1\r\nHost: a\r\n${INJ}\r\nPOST /2 HTTP/1.1\r\nContent-Length: 4\r\n${INJ}\r\nbodyGET /3 HTTP/1.1\r\n${INJ}\r\n`,
  );
  assert.equal(r.requests, 3);
});

test('empty lines between requests are forwarded and the next head is still rewritten', () => {
  ok(
    'POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi\r\n\r\nGET /2 HTTP/1.1\r\n\r\n',
    `POST / HTTP/1.1\r\nContent-Length: 2\r\n${INJ}\r\nhi\r\n\r\nGET /2 HTTP/1.1\r\n${INJ}\r\n`,
  );
});

test('chunked body with extensions and trailers is walked untouched', () => {
  const body =
    '5;name=val\r\nhello\r\n' +
    '6 ; a ; b="q;x"\r\n world\r\n' +
    '00C\r\n\r\n\r\n\r\nGET /x\r\n' +
    '0;last\r\nX-Trailer: t\r\nX-Client-Hostname: trailer-not-touched\r\n\r\n';
  const r = ok(
    `POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${body}GET /next HTTP/1.1\r\n\r\n`,
    `POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n${INJ}\r\n${body}GET /next HTTP/1.1\r\n${INJ}\r\n`,
  );
  assert.equal(r.requests, 2);
});

test('malformed chunked framing is rejected (bad size, bare LF, missing CRLF, bad trailer)', () => {
  const head = 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n';
  const fwd = `POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n${INJ}\r\n`;
  rejected(`${head}zz\r\n`, 400, /malformed chunk size/, fwd);
  rejected(`${head}-1\r\n`, 400, /malformed chunk size/, fwd);
  rejected(`${head}\r\n`, 400, /malformed chunk size/, fwd);
  rejected(`${head}5\nhello\r\n0\r\n\r\n`, 400, /malformed chunk size/, `${fwd}5`);
  rejected(`${head}5;a\nhello\r\n0\r\n\r\n`, 400, /chunk extension/, `${fwd}5;a`);
  rejected(`${head}3\r\nabcd\r\n`, 400, /missing CRLF after chunk data/, `${fwd}3\r\nabc`);
  rejected(`${head}fffffffffffffffff\r\n`, 400, /chunk size too large/, `${fwd}fffffffffffff`);
  rejected(`${head}0\r\n trailer\r\n\r\n`, 400, /obs-fold/, `${fwd}0\r\n`);
  rejected(`${head}0\r\nX-T: a\nb\r\n\r\n`, 400, /invalid character in trailer/, `${fwd}0\r\nX-T: a`);
  rejected(`${head}0\r\nno colon\r\n\r\n`, 400, /malformed trailer line/, `${fwd}0\r\nno`);
});

test('endless chunk extensions and oversized trailer sections are cut off', () => {
  const head = 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n';
  const fwd = `POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n${INJ}\r\n`;
  const ext = `5;${'e'.repeat(16400)}`;
  rejected(`${head}${ext}\r\nhello\r\n0\r\n\r\n`, 400, /chunk extensions too long/, `${fwd}${ext.slice(0, 16384)}`);
  const cfg: InjectConfig = { ...BASE, maxHeadBytes: 1024 };
  const trailer = `X-T: ${'t'.repeat(1100)}\r\n`;
  rejected(
    `${head}0\r\n${trailer}\r\n`,
    431,
    /trailer section larger than 1024/,
    `${fwd}0\r\n${trailer.slice(0, 1023)}`,
    cfg,
  );
});

test('an empty Upgrade header does not switch the connection to passthrough', () => {
  ok(
    'GET / HTTP/1.1\r\nUpgrade:\r\n\r\nGET /2 HTTP/1.1\r\n\r\n',
    `GET / HTTP/1.1\r\nUpgrade:\r\n${INJ}\r\nGET /2 HTTP/1.1\r\n${INJ}\r\n`,
  );
});

test('a head over maxHeadBytes is rejected with 431', () => {
  const cfg: InjectConfig = { ...BASE, maxHeadBytes: 1024 };
  const big = `GET / HTTP/1.1\r\nX-Big: ${'a'.repeat(1100)}\r\n\r\n`;
  rejected(big, 431, /larger than 1024/, '', cfg);
  // never terminated at all
  rejected(`GET / HTTP/1.1\r\nX-Big: ${'a'.repeat(2000)}`, 431, /larger than 1024/, '', cfg);
  // earlier requests on the connection still go through
  rejected(`GET /ok HTTP/1.1\r\n\r\n${big}`, 431, /larger than 1024/, `GET /ok HTTP/1.1\r\n${INJ}\r\n`, cfg);
  // a bad request line is judged first, however the bytes are chunked
  rejected(`GET  / HTTP/1.1\r\nX-Big: ${'a'.repeat(2000)}\r\n\r\n`, 400, /malformed request line/, '', cfg);
  rejected(`GET / HTTP/1.1\r\nX-Big: ${'a'.repeat(2000)}\r\nbad line\r\n\r\n`, 431, /larger than 1024/, '', cfg);
  // exactly at the limit is fine
  const line = 'GET / HTTP/1.1\r\nX-Fill: ';
  const exact = `${line}${'b'.repeat(1024 - line.length - 4)}\r\n\r\n`;
  assert.equal(exact.length, 1024);
  ok(exact, `${exact.slice(0, -2)}${INJ}\r\n`, cfg);
});

test('malformed request lines are rejected with 400', () => {
  rejected('GET  / HTTP/1.1\r\n\r\n', 400, /malformed request line/);
  rejected('GET / HTTP/1.1 extra\r\n\r\n', 400, /malformed request line/);
  rejected('GET /\r\n\r\n', 400, /malformed request line/);
  rejected('GET / HTTP/1.1x\r\n\r\n', 400, /malformed request line/);
  rejected('GET / http/1.1\r\n\r\n', 400, /malformed request line/);
  rejected('GET /a\x01b HTTP/1.1\r\n\r\n', 400, /malformed request line/);
  rejected('GET / HTTP/3.0\r\n\r\n', 400, /unsupported HTTP version/);
  // on a later request of the connection too
  rejected(
    'GET / HTTP/1.1\r\n\r\nGET\t/ HTTP/1.1\r\n\r\n',
    400,
    /malformed request line/,
    `GET / HTTP/1.1\r\n${INJ}\r\n`,
  );
});

test('malformed header lines are rejected with 400', () => {
  rejected('GET / HTTP/1.1\r\nHost a\r\n\r\n', 400, /malformed header line/);
  rejected('GET / HTTP/1.1\r\nHost : a\r\n\r\n', 400, /malformed header line/);
  rejected('GET / HTTP/1.1\r\n: a\r\n\r\n', 400, /malformed header line/);
  rejected('GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n', 400, /invalid character in header value/);
  rejected('GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n', 400, /invalid character in header value/);
  rejected('GET / HTTP/1.1\r\nX-A: a\r\r\n\r\n', 400, /invalid character in header value/);
  rejected('GET / HTTP/1.1\r\n\rX-A: a\r\n\r\n', 400, /bare CR/);
});

test('obs-text (bytes >= 0x80) in values is kept byte for byte', () => {
  ok('GET / HTTP/1.1\r\nX-Name: caf\xc3\xa9\r\n\r\n', `GET / HTTP/1.1\r\nX-Name: caf\xc3\xa9\r\n${INJ}\r\n`);
});

test('an empty configuration forwards heads unchanged (still framing-checked)', () => {
  const cfg: InjectConfig = { headers: [], maxHeadBytes: 65536 };
  const input = 'GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc';
  const r = ok(input, input, cfg);
  assert.equal(r.requests, 2);
  rejected('GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n', 400, /more than one/, '', cfg);
});

// ---- non-HTTP and detection -------------------------------------------------------------------

const CLIENT_HELLO = Buffer.from(
  '16030100c8010000c403035f1e2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80910' +
    '000020c02bc02fc02cc030cca9cca8c013c014009c009d002f0035000a010000' +
    '7b0000000f000d00000a6578616d706c652e636f6d00170000ff01000100000a000800060017001800190' +
    '00b00020100002300000010000e000c02683208687474702f312e31000500050100000000000d00140012' +
    '040308040401050308050501080606010201',
  'hex',
);

test('a TLS ClientHello is passed through untouched, at once', () => {
  const r = run(CLIENT_HELLO);
  assert.equal(r.out, CLIENT_HELLO.toString('latin1'));
  assert.equal(r.terminal?.kind, 'passthrough', 'its first line ended (an LF byte) without "HTTP/"');
  assert.equal(r.requests, 0);
  const rw = new RequestRewriter(compileInjectConfig(BASE));
  const evs = rw.push(CLIENT_HELLO.subarray(0, 1));
  assert.deepEqual(
    evs.map((e) => e.kind),
    ['forward'],
    'forwarded from the first byte',
  );
  // 64 KiB without LF: no lenient parser takes that as a request line any more.
  assert.deepEqual(
    rw.push(Buffer.alloc(65536, 0x17)).map((e) => e.kind),
    ['forward', 'passthrough'],
  );
});

test('a first byte that could start a request commits the connection to HTTP: no escape to passthrough', () => {
  // Issue 14 item 2: long methods, tabs, leading whitespace, other text protocols.
  ok(
    'AAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.1\r\nX-Client-Hostname: x\r\n\r\n',
    `AAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.1\r\n${INJ}\r\n`,
  );
  rejected('GET\t/a HTTP/1.1\r\nX-Client-Hostname: spoofed\r\n\r\n', 400, /malformed request line/);
  rejected('SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n', 400, /malformed request line/);
  rejected('*3\r\n$3\r\nSET\r\n', 400, /malformed request line/);
  rejected(' GET / HTTP/1.1\r\n\r\n', 400, /malformed request line/);
  rejected('\x1cGET / HTTP/1.1\r\n\r\n', 400, /malformed request line/);
  rejected('\xa0GET / HTTP/1.1\r\n\r\n', 400, /malformed request line/);
  rejected('\r\n\x00\x01binary', 400, /malformed request line/, '\r\n');
  // Bytes no HTTP method starts with pass untouched once their first line has ended...
  passthrough('\x00\x01binary\nGET / HTTP/1.1\r\n\r\n', '\x00\x01binary\nGET / HTTP/1.1\r\n\r\n');
  passthrough('{"json": 1}\n', '{"json": 1}\n');
  // ...unless that line holds "HTTP/": python's http.server reads "\x16GET / HTTP/1.1" as a GET.
  for (const start of [
    '\x16GET / HTTP/1.1\r\nX-Client-Hostname: spoofed\r\n\r\n',
    '{x / HTTP/1.1\n\n',
    '\x00\x01 / HTTP/',
  ]) {
    const r = run(start);
    assert.ok(r.terminal?.kind === 'reject', JSON.stringify(start));
    assert.equal(r.terminal.response.length, 0);
    assert.ok(!r.out.includes('HTTP/'), 'the line with HTTP/ never went up whole');
  }
});

test('--http-only refuses a connection that does not start like HTTP, and answers nothing', () => {
  const rw = new RequestRewriter(compileInjectConfig({ ...BASE, httpOnly: true }));
  const evs = rw.push(CLIENT_HELLO);
  assert.equal(evs.length, 1);
  assert.ok(evs[0]!.kind === 'reject');
  assert.equal(evs[0].response.length, 0);
  assert.match(evs[0].reason, /--http-only/);
});

test('detection waits for enough bytes: "GE" is undecided', () => {
  const rw = new RequestRewriter(compileInjectConfig(BASE));
  assert.deepEqual(rw.push(Buffer.from('GE')), []);
  assert.deepEqual(rw.push(Buffer.from('T / HTTP/1.1\r')), []);
  const evs = rw.push(Buffer.from('\n\r\n'));
  assert.equal(evs.length, 1);
  assert.equal(evs[0]!.kind, 'forward');
  const out = Buffer.concat((evs[0] as { chunks: Buffer[] }).chunks).toString();
  assert.equal(out, `GET / HTTP/1.1\r\n${INJ}\r\n`);
});

test('a text protocol that only looks like HTTP is answered as soon as its first line ends', () => {
  const rw = new RequestRewriter(compileInjectConfig(BASE));
  const evs = rw.push(Buffer.from('SET key value\r\n'));
  assert.deepEqual(
    evs.map((e) => e.kind),
    ['reject'],
  );
  assert.equal((evs[0] as { status: number }).status, 400);
});

// ---- event contract -------------------------------------------------------------------------

function kinds(evs: RewriteEvent[]): string[] {
  return evs.map((e) => e.kind);
}
function text(evs: RewriteEvent[]): string {
  return Buffer.concat(evs.flatMap((e) => (e.kind === 'forward' ? e.chunks : []))).toString('latin1');
}

test('Expect: 100-continue: the head is forwarded at once, the body when it comes', () => {
  const rw = new RequestRewriter(compileInjectConfig(BASE));
  const head = 'POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n';
  let evs = rw.push(Buffer.from(head));
  assert.deepEqual(kinds(evs), ['forward']);
  assert.equal(text(evs), `POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n${INJ}\r\n`);
  evs = rw.push(Buffer.from('hel'));
  assert.equal(text(evs), 'hel');
  evs = rw.push(Buffer.from('loGET / HTTP/1.1\r\n\r\n'));
  assert.equal(text(evs), `loGET / HTTP/1.1\r\n${INJ}\r\n`);
  assert.equal(rw.requests, 2);
});

test('one forward event per push, and only the gathered head is held back', () => {
  const rw = new RequestRewriter(compileInjectConfig(BASE));
  const evs = rw.push(Buffer.from('GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\nHo'));
  assert.deepEqual(kinds(evs), ['forward']);
  assert.equal(text(evs), `GET /1 HTTP/1.1\r\n${INJ}\r\nGET /2 HTTP/1.1\r\n${INJ}\r\n`);
  assert.equal(rw.requests, 2);
  assert.equal(text(rw.push(Buffer.from('st: a\r\n\r\n'))), `GET /3 HTTP/1.1\r\nHost: a\r\n${INJ}\r\n`);
});

test('bodies and kept head lines are forwarded as views of the input, not copies', () => {
  const rw = new RequestRewriter(compileInjectConfig(BASE));
  const body = Buffer.alloc(256 * 1024, 0x61);
  const head = Buffer.from(`POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length * 2}\r\n\r\n`);
  const first = Buffer.concat([head, body]);
  let evs = rw.push(first);
  assert.deepEqual(kinds(evs), ['forward']);
  const chunks = (evs[0] as { chunks: Buffer[] }).chunks;
  for (const c of chunks.filter((c) => c.length > 200)) {
    assert.equal(c.buffer, first.buffer, 'large pieces share the input memory');
  }
  const bodyPiece = chunks[chunks.length - 1]!;
  assert.equal(bodyPiece.length, body.length);
  assert.equal(bodyPiece.byteOffset, first.byteOffset + head.length);
  // a chunk that is all body comes back as the very same Buffer
  evs = rw.push(body);
  assert.deepEqual(kinds(evs), ['forward']);
  assert.equal((evs[0] as { chunks: Buffer[] }).chunks.length, 1);
  assert.equal((evs[0] as { chunks: Buffer[] }).chunks[0], body);
});

test("a gathered head does not keep referencing the caller's buffers", () => {
  const rw = new RequestRewriter(compileInjectConfig(BASE));
  const part = Buffer.from('GET /a HTTP/1.1\r\nHost: ');
  assert.deepEqual(rw.push(part), []);
  part.fill(0x7a); // the relay may reuse its read buffer
  assert.equal(text(rw.push(Buffer.from('a\r\n\r\n'))), `GET /a HTTP/1.1\r\nHost: a\r\n${INJ}\r\n`);
});

test('a rejected request does not hold back complete earlier requests of the same chunk', () => {
  const rw = new RequestRewriter(compileInjectConfig(BASE));
  const evs = rw.push(Buffer.from('GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\nA: b\r\n c\r\n\r\n'));
  assert.deepEqual(kinds(evs), ['forward', 'reject']);
  assert.equal(text(evs), `GET /1 HTTP/1.1\r\n${INJ}\r\n`);
  assert.deepEqual(rw.push(Buffer.from('GET / HTTP/1.1\r\n\r\n')), [], 'nothing after reject');
});

test('after passthrough further pushes are relayed raw', () => {
  const rw = new RequestRewriter(compileInjectConfig(BASE));
  assert.deepEqual(kinds(rw.push(Buffer.from('CONNECT a:443 HTTP/1.1\r\n\r\n'))), ['forward']);
  assert.deepEqual(kinds(rw.push(Buffer.from('held'))), [], 'held until the server answers');
  assert.equal(rw.heldBytes, 4);
  assert.deepEqual(kinds(rw.pushResponse(Buffer.from('HTTP/1.1 200 OK\r\n\r\n'))), ['forward', 'passthrough']);
  assert.equal(rw.heldBytes, 0);
  const more = Buffer.from('GET / HTTP/1.1\r\n\r\n');
  const evs = rw.push(more);
  assert.deepEqual(kinds(evs), ['forward']);
  assert.equal((evs[0] as { chunks: Buffer[] }).chunks[0], more);
});

test('returned events and arrays belong to the caller: they can be queued and kept', () => {
  const rw = new RequestRewriter(compileInjectConfig(BASE));
  const a = rw.push(Buffer.from('GET /1 HTTP/1.1\r\n\r\n'));
  const b = rw.push(Buffer.from('GET /2 HTTP/1.1\r\n\r\n'));
  assert.notEqual(a, b);
  assert.equal(text(a), `GET /1 HTTP/1.1\r\n${INJ}\r\n`);
  assert.equal(text(b), `GET /2 HTTP/1.1\r\n${INJ}\r\n`);
  // a push with nothing to do returns an empty (shared, frozen) array
  const none = rw.push(Buffer.from('GET /3'));
  assert.deepEqual(none, []);
  assert.ok(Object.isFrozen(none));
});
