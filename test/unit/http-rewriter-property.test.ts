// Property-style test: random keep-alive connections (seeded PRNG) of many requests —
// mixed line endings, replaced/merged headers, Content-Length and chunked bodies full of
// bytes that look like heads, trailers, an optional Upgrade tail — fed in many random
// splits. The forwarded bytes must equal both the single-chunk run and an independently
// built expectation, which makes every body come through byte-identical.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileInjectConfig, type InjectConfig } from '../../src/http/inject-config.js';
import { RequestRewriter } from '../../src/http/rewriter.js';
import { mulberry32 } from '../helpers/prng.js';

const CFG: InjectConfig = {
  headers: [
    { name: 'X-Client-Hostname', value: 'pod-a' },
    { name: 'X-Team', value: 'a:b' },
  ],
  forwardedFor: { value: '10.0.0.7', mode: 'append' },
  maxHeadBytes: 65536,
};
const REST = 'X-Client-Hostname: pod-a\r\nX-Team: a:b\r\n';

type Rnd = () => number;
const int = (rnd: Rnd, n: number): number => Math.floor(rnd() * n);
const pick = <T>(rnd: Rnd, xs: readonly T[]): T => xs[int(rnd, xs.length)]!;
function randCase(rnd: Rnd, s: string): string {
  return [...s].map((ch) => (rnd() < 0.5 ? ch.toUpperCase() : ch.toLowerCase())).join('');
}

/** Random bytes salted with things a sloppy parser would take for framing. */
function nastyBytes(rnd: Rnd, n: number): Buffer {
  const traps = ['\r\n\r\n', '\n\n', 'GET / HTTP/1.1\r\n', 'Content-Length: 99\r\n', '0\r\n\r\n', '\r\n'];
  const parts: Buffer[] = [];
  let len = 0;
  while (len < n) {
    const p =
      rnd() < 0.15
        ? Buffer.from(pick(rnd, traps), 'latin1')
        : Buffer.from(Array.from({ length: 1 + int(rnd, 64) }, () => int(rnd, 256)));
    parts.push(p);
    len += p.length;
  }
  return Buffer.concat(parts).subarray(0, n);
}

interface Conn {
  input: Buffer;
  expected: Buffer;
  requests: number;
  upgraded: boolean;
}

function genConnection(rnd: Rnd): Conn {
  const inp: Buffer[] = [];
  const exp: Buffer[] = [];
  const both = (b: Buffer | string): void => {
    const buf = typeof b === 'string' ? Buffer.from(b, 'latin1') : b;
    inp.push(buf);
    exp.push(buf);
  };
  const n = 1 + int(rnd, 8);
  let requests = 0;
  let upgraded = false;
  for (let r = 0; r < n; r++) {
    if (r > 0) for (let k = int(rnd, 3); k > 0; k--) both(pick(rnd, ['\r\n', '\n']));
    const eol = rnd() < 0.3 ? '\n' : '\r\n';
    const upgrade = r === n - 1 && rnd() < 0.25;
    const bodyKind = upgrade ? 'none' : pick(rnd, ['none', 'cl', 'chunked'] as const);
    const method =
      bodyKind === 'none'
        ? pick(rnd, ['GET', 'HEAD', 'DELETE', 'OPTIONS', 'PROPFIND'])
        : pick(rnd, ['POST', 'PUT', 'PATCH']);
    const target = pick(rnd, ['/', '/a/b?c=d:e', 'http://h.example:8080/x', '/%20x']);
    const reqLine = `${method} ${target} HTTP/1.${rnd() < 0.15 && bodyKind !== 'chunked' ? 0 : 1}${eol}`;

    const ows = (): string => pick(rnd, ['', ' ', '  ', '\t', ' \t']);
    const lines: { text: string; keep: boolean; xff?: string }[] = [];
    lines.push({ text: `${randCase(rnd, 'Host')}:${ows()}h.example:8080${ows()}${eol}`, keep: true });
    for (let k = int(rnd, 4); k > 0; k--) {
      const v = pick(rnd, ['1.1.1.1', '2.2.2.2, 3.3.3.3', '', 'fe80::1']);
      lines.push({ text: `${randCase(rnd, 'X-Forwarded-For')}:${ows()}${v}${ows()}${eol}`, keep: false, xff: v });
    }
    if (rnd() < 0.5) lines.push({ text: `${randCase(rnd, 'x-client-hostname')}: spoof${eol}`, keep: false });
    if (rnd() < 0.3) lines.push({ text: `${randCase(rnd, 'X-TEAM')}:evil${eol}`, keep: false });
    if (rnd() < 0.5) lines.push({ text: `X-Time: 12:34:56${eol}`, keep: true });
    if (rnd() < 0.3) lines.push({ text: `X-Teams: near-miss${eol}`, keep: true });
    if (rnd() < 0.3) lines.push({ text: `X-Fill: ${'f'.repeat(int(rnd, 3000))}${eol}`, keep: true });
    if (rnd() < 0.3) lines.push({ text: `Expect: 100-continue${eol}`, keep: true });
    let body: Buffer = Buffer.alloc(0);
    if (bodyKind === 'cl') {
      body = nastyBytes(rnd, int(rnd, 3000));
      lines.push({ text: `${randCase(rnd, 'Content-Length')}:${ows()}${body.length}${ows()}${eol}`, keep: true });
    } else if (bodyKind === 'chunked') {
      lines.push({
        text: `${randCase(rnd, 'Transfer-Encoding')}: ${pick(rnd, ['chunked', 'gzip, chunked', 'Chunked'])}${eol}`,
        keep: true,
      });
      const parts: Buffer[] = [];
      for (let k = int(rnd, 5); k > 0; k--) {
        const data = nastyBytes(rnd, 1 + int(rnd, 2000));
        const size = data.length.toString(16);
        const sizeText = rnd() < 0.3 ? size.toUpperCase().padStart(size.length + int(rnd, 3), '0') : size;
        const ext = pick(rnd, ['', ';a', ';a=b', ' ; name="v;x"', ';x;y=z']);
        parts.push(Buffer.from(`${sizeText}${ext}\r\n`, 'latin1'), data, Buffer.from('\r\n', 'latin1'));
      }
      parts.push(Buffer.from(`0${pick(rnd, ['', ';end'])}\r\n`, 'latin1'));
      for (let k = int(rnd, 3); k > 0; k--)
        parts.push(Buffer.from(`X-Trailer-${k}: v:${k}\r\nX-Client-Hostname: t\r\n`, 'latin1'));
      parts.push(Buffer.from('\r\n', 'latin1'));
      body = Buffer.concat(parts);
    }
    if (upgrade) lines.push({ text: `Upgrade: websocket${eol}Connection: Upgrade${eol}`, keep: true });
    // shuffle
    for (let i = lines.length - 1; i > 0; i--) {
      const j = int(rnd, i + 1);
      [lines[i], lines[j]] = [lines[j]!, lines[i]!];
    }

    inp.push(Buffer.from(reqLine + lines.map((l) => l.text).join('') + eol, 'latin1'));
    const xffVals = lines.filter((l) => l.xff !== undefined && l.xff !== '').map((l) => l.xff!);
    const injected = `X-Forwarded-For: ${[...xffVals, '10.0.0.7'].join(', ')}\r\n${REST}`;
    exp.push(
      Buffer.from(
        reqLine +
          lines
            .filter((l) => l.keep)
            .map((l) => l.text)
            .join('') +
          injected +
          eol,
        'latin1',
      ),
    );
    both(body);
    requests++;
    if (upgrade) {
      both(nastyBytes(rnd, int(rnd, 500)));
      upgraded = true;
    }
  }
  return { input: Buffer.concat(inp), expected: Buffer.concat(exp), requests, upgraded };
}

/**
 * The server's side, sent after all the client's bytes: a 204 to every request
 * but the last, which gets 101 (an Upgrade then switches; any other request makes the
 * framer give up, and nothing switches).
 */
function serverAnswers(requests: number): Buffer {
  const ok = 'HTTP/1.1 204 No Content\r\n\r\n';
  return Buffer.from(
    ok.repeat(Math.max(0, requests - 1)) + (requests > 0 ? 'HTTP/1.1 101 Switching Protocols\r\n\r\n' : ''),
    'latin1',
  );
}

function feed(chunks: Buffer[]): { out: Buffer; requests: number; passthrough: boolean } {
  const rw = new RequestRewriter(compileInjectConfig(CFG));
  const out: Buffer[] = [];
  let passthrough = false;
  const apply = (evs: ReturnType<RequestRewriter['push']>): void => {
    for (const ev of evs) {
      if (ev.kind === 'forward') out.push(...ev.chunks);
      else if (ev.kind === 'passthrough') passthrough = true;
      else assert.fail(`unexpected reject: ${ev.reason}`);
    }
  };
  for (const c of chunks) {
    if (passthrough) {
      out.push(c);
      continue;
    } // the relay's raw path
    apply(rw.push(c));
  }
  assert.equal(passthrough, false, 'no passthrough before the server has answered');
  apply(rw.pushResponse(serverAnswers(rw.requests)));
  return { out: Buffer.concat(out), requests: rw.requests, passthrough };
}

function randomSplit(rnd: Rnd, b: Buffer): Buffer[] {
  const style = int(rnd, 4);
  const chunks: Buffer[] = [];
  let i = 0;
  while (i < b.length) {
    const n =
      style === 0
        ? 1 + int(rnd, 3) // tiny
        : style === 1
          ? 1 + int(rnd, 64)
          : style === 2
            ? 1 + int(rnd, 4096)
            : rnd() < 0.5
              ? 1
              : 1 + int(rnd, 1500); // mixed
    // copy, so no test can pass by accident through shared memory with the whole input
    chunks.push(Buffer.from(b.subarray(i, i + n)));
    i += n;
  }
  return chunks;
}

test('random splits of random keep-alive connections forward exactly the expected bytes', () => {
  const rnd = mulberry32(0x7a4e5);
  let totalRequests = 0;
  let totalSplits = 0;
  let upgrades = 0;
  for (let c = 0; c < 150; c++) {
    const conn = genConnection(rnd);
    const whole = feed([conn.input]);
    assert.equal(whole.requests, conn.requests, `connection ${c}: request count`);
    assert.equal(whole.passthrough, conn.upgraded);
    assert.ok(whole.out.equals(conn.expected), `connection ${c}: single-chunk output differs from the expectation`);
    for (let s = 0; s < 12; s++) {
      const split = feed(randomSplit(rnd, conn.input));
      assert.equal(split.requests, conn.requests, `connection ${c} split ${s}: request count`);
      assert.ok(split.out.equals(whole.out), `connection ${c} split ${s}: output differs from the single-chunk run`);
      totalSplits++;
    }
    totalRequests += conn.requests;
    if (conn.upgraded) upgrades++;
  }
  // the generator really exercised what it claims
  assert.ok(totalRequests > 400, `only ${totalRequests} requests generated`);
  assert.ok(upgrades > 5);
  assert.equal(totalSplits, 1800);
});

test('every split point of one pipelined connection gives the same output', () => {
  const rnd = mulberry32(42);
  let conn: Conn;
  do conn = genConnection(rnd);
  while (conn.requests < 4 || conn.input.length > 6000);
  const whole = feed([conn.input]);
  assert.ok(whole.out.equals(conn.expected));
  for (let i = 1; i < conn.input.length; i++) {
    const two = feed([Buffer.from(conn.input.subarray(0, i)), Buffer.from(conn.input.subarray(i))]);
    assert.ok(two.out.equals(whole.out), `split at ${i} differs`);
  }
});

/** Like feed(), but reports the terminal event instead of failing on reject. */
function feedAny(cfg: InjectConfig, chunks: Buffer[]): string {
  const rw = new RequestRewriter(compileInjectConfig(cfg));
  const out: Buffer[] = [];
  let end = 'open';
  const apply = (evs: ReturnType<RequestRewriter['push']>): void => {
    for (const ev of evs) {
      if (end.startsWith('reject')) break;
      if (ev.kind === 'forward') out.push(...ev.chunks);
      else end = ev.kind === 'passthrough' ? 'passthrough' : `reject ${ev.status} ${ev.reason}`;
    }
  };
  for (const c of chunks) {
    if (end === 'passthrough') {
      out.push(c);
      continue;
    }
    if (end !== 'open') break;
    apply(rw.push(c));
  }
  if (end === 'open') apply(rw.pushResponse(serverAnswers(rw.requests)));
  return `${end} requests=${rw.requests} ${Buffer.concat(out).toString('hex')}`;
}

test('damaged connections: never throws, and the verdict and output do not depend on chunking', () => {
  const rnd = mulberry32(0xbad5eed);
  const small: InjectConfig = { ...CFG, maxHeadBytes: 512 + int(rnd, 2048) };
  const verdicts = new Set<string>();
  for (let c = 0; c < 300; c++) {
    const conn = genConnection(rnd);
    const bytes = [...conn.input];
    for (let k = 1 + int(rnd, 4); k > 0; k--) {
      const at = int(rnd, bytes.length);
      const op = int(rnd, 3);
      const byte = pick(rnd, [0x0d, 0x0a, 0x20, 0x09, 0x3a, 0x00, 0x3b, int(rnd, 256)]);
      if (op === 0) bytes[at] = byte;
      else if (op === 1) bytes.splice(at, 0, byte);
      else bytes.splice(at, 1);
    }
    const input = Buffer.from(bytes.slice(0, rnd() < 0.2 ? int(rnd, bytes.length) : bytes.length));
    const cfg = c % 3 === 0 ? small : CFG;
    const whole = feedAny(cfg, [input]);
    verdicts.add(whole.split(' requests=')[0]!.replace(/^reject (\d+) .*/, 'reject $1'));
    for (let s = 0; s < 4; s++) {
      assert.equal(feedAny(cfg, randomSplit(rnd, input)), whole, `connection ${c} split ${s}`);
    }
  }
  // the damage produced every kind of outcome
  for (const v of ['open', 'passthrough', 'reject 400', 'reject 431'])
    assert.ok(verdicts.has(v), `no '${v}' outcome among ${[...verdicts].join(', ')}`);
});
