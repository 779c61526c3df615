// Fuzz target: the streaming HTTP request-head rewriter (src/http/rewriter.ts).
// Properties: it never throws; the bytes forwarded and the verdict do not depend on how the
// input is chunked; in every forwarded head each injected header appears exactly once and
// no client byte sequence (CR/LF in values, obs-fold, spoofed injected names) adds a line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileInjectConfig, type InjectConfig } from '../../src/http/inject-config.js';
import { RequestRewriter } from '../../src/http/rewriter.js';
import { bytesArb, corpus, cutsArb, fc, fixedChunkings, mutated, params, splitAt } from './harness.js';

const CFG: InjectConfig = {
  headers: [
    { name: 'X-Client-Hostname', value: 'pod-a' },
    { name: 'X-Team', value: 'a:b' },
  ],
  forwardedFor: { value: '10.0.0.7', mode: 'append' },
  maxHeadBytes: 65536,
};
const CONFIGS: Record<string, InjectConfig> = {
  append: CFG,
  replace: { ...CFG, forwardedFor: { value: '10.0.0.7', mode: 'replace' } },
  none: { headers: [], maxHeadBytes: 65536 },
  small: { ...CFG, maxHeadBytes: 160 },
};

interface Outcome {
  out: Buffer;
  end: string;
  requests: number;
}

/** Feed chunks as the relay does; never lets an exception escape unnoticed. */
function feed(cfg: InjectConfig, chunks: readonly Buffer[]): Outcome {
  const rw = new RequestRewriter(compileInjectConfig(cfg));
  const out: Buffer[] = [];
  let end = 'open';
  for (const c of chunks) {
    if (end.startsWith('reject')) {
      assert.equal(rw.push(c).length, 0, 'no events after a reject');
      continue;
    }
    for (const ev of rw.push(c)) {
      if (ev.kind === 'forward') {
        for (const ch of ev.chunks) {
          assert.ok(Buffer.isBuffer(ch) && ch.length > 0, 'forwarded chunks are non-empty buffers');
          out.push(Buffer.from(ch)); // copy now: views may point into the pushed buffers
        }
      } else if (ev.kind === 'passthrough') {
        assert.equal(end, 'open');
        end = 'passthrough';
      } else {
        assert.ok(end === 'open', 'reject after passthrough');
        assert.ok(ev.status === 400 || ev.status === 431);
        const raw = /first line holds/.test(ev.reason);
        assert.ok(raw ? ev.response.length === 0 : ev.response.toString('latin1').startsWith(`HTTP/1.1 ${ev.status} `));
        // A refused non-HTTP first line went up raw as far as it had come (the relay resets the upstream).
        end = raw ? 'reject raw-first-line' : `reject ${ev.status}`;
      }
    }
  }
  return { out: Buffer.concat(out), end, requests: rw.requests };
}

function sameOutcome(a: Outcome, b: Outcome, what: string): void {
  assert.equal(b.end, a.end, `${what}: verdict`);
  assert.equal(b.requests, a.requests, `${what}: request count`);
  if (a.end === 'reject raw-first-line') return;
  assert.ok(b.out.equals(a.out), `${what}: forwarded bytes differ (${a.out.length} vs ${b.out.length})`);
}

// ── a reference framer for the output (independent of the rewriter's code) ──

const REQUEST_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^\x00-\x20\x7f]+ HTTP\/1\.\d$/;

interface Head {
  lines: string[];
}

/**
 * Split forwarded output into heads, skipping Content-Length and chunked bodies. Stops at an
 * incomplete message or after an Upgrade/CONNECT head (the rest is not HTTP).
 */
function framedHeads(out: Buffer, max = Infinity): Head[] {
  const heads: Head[] = [];
  const s = out.toString('latin1');
  let i = 0;
  while (heads.length < max) {
    while (s[i] === '\r' || s[i] === '\n') i++;
    if (i >= s.length) break;
    const m = /\r?\n\r?\n/.exec(s.slice(i));
    if (!m) break;
    const headText = s.slice(i, i + m.index);
    i += m.index + m[0].length;
    const lines = headText.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
    if (!REQUEST_LINE.test(lines[0]!)) break; // not HTTP/1.x: raw passthrough from here
    heads.push({ lines });
    const fields = lines.slice(1);
    const get = (n: string) =>
      fields.filter((l) => l.toLowerCase().startsWith(`${n}:`)).map((l) => l.slice(n.length + 1).trim());
    if (lines[0]!.startsWith('CONNECT ') || get('upgrade').some((v) => v !== '')) break;
    const te = get('transfer-encoding');
    if (te.length) {
      // chunked: size line, data, CRLF ... 0, trailers, blank line
      for (;;) {
        const nl = s.indexOf('\n', i);
        if (nl < 0) return heads;
        const size = parseInt(s.slice(i, nl), 16);
        if (!Number.isSafeInteger(size) || size < 0) return heads; // incomplete tail
        i = nl + 1;
        if (size === 0) {
          const t = s.indexOf('\r\n\r\n', i - 2);
          if (t < 0) return heads;
          i = t + 4;
          break;
        }
        i += size + 2;
        if (i > s.length) return heads;
      }
    } else {
      const cl = get('content-length');
      if (cl.length) {
        const n = Number(cl[0]);
        if (!Number.isSafeInteger(n)) return heads;
        i += n;
      }
    }
  }
  return heads;
}

const nameOf = (line: string): string => line.slice(0, Math.max(0, line.indexOf(':'))).toLowerCase();

/**
 * The exact transform, checked head by head against the input framed the same way: the
 * client's lines in order, minus the replaced ones, then X-Forwarded-For (merged in append
 * mode) and the configured headers, each once. So nothing a client sends can add, split or
 * merge a line, and every injected header appears exactly once per request.
 */
function checkHeads(cfg: InjectConfig, input: Buffer, o: Outcome): void {
  // After a passthrough the rest is raw bytes, whatever they look like.
  const heads = framedHeads(o.out, o.end === 'passthrough' ? o.requests : Infinity);
  assert.equal(heads.length, o.requests, 'every rewritten head is in the output, and nothing else looks like one');
  const inHeads = framedHeads(input, o.requests);
  assert.equal(inHeads.length, o.requests, 'the input frames into as many heads');
  const replaced = new Set(cfg.headers.map((h) => h.name.toLowerCase()));
  if (cfg.forwardedFor) replaced.add('x-forwarded-for');
  for (let k = 0; k < heads.length; k++) {
    const got = heads[k]!.lines;
    for (const l of got) {
      assert.ok(!l.includes('\r'), `bare CR in a forwarded head: ${JSON.stringify(l)}`);
      assert.ok(!/^[ \t]/.test(l), `obs-fold line forwarded: ${JSON.stringify(l)}`);
    }
    const [reqLine, ...fields] = inHeads[k]!.lines;
    const expected = [reqLine!, ...fields.filter((l) => !replaced.has(nameOf(l)))];
    if (cfg.forwardedFor) {
      const client = fields
        .filter((l) => nameOf(l) === 'x-forwarded-for')
        .map((l) => l.slice(l.indexOf(':') + 1).replace(/^[ \t]+|[ \t]+$/g, ''))
        .filter(Boolean);
      const vals = cfg.forwardedFor.mode === 'append' ? [...client, cfg.forwardedFor.value] : [cfg.forwardedFor.value];
      expected.push(`X-Forwarded-For: ${vals.join(', ')}`);
    }
    for (const h of cfg.headers) expected.push(`${h.name}: ${h.value}`);
    assert.deepEqual(got, expected, `head ${k}`);
  }
}

// ── generators ───────────────────────────────────────────────────────────────

// Mostly well-formed, so that streams of several requests get through and the injection
// properties are exercised; hostile shapes come in at a lower weight (and from mutation).
const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
// (without noBias fast-check's small-value bias picks the rare, hostile alternatives far more often than their weight)
const pick = <T>(...alts: { weight: number; arbitrary: fc.Arbitrary<T> }[]): fc.Arbitrary<T> =>
  fc.noBias(fc.oneof(...alts));
const NAMES = [
  'Host',
  'Accept',
  'X-Client-Hostname',
  'x-client-hostname',
  'X-CLIENT-HOSTNAME',
  'X-Team',
  'x-team',
  'X-Forwarded-For',
  'x-forwarded-for',
  'X-Teams',
  'X-Client-Hostnames',
  'Connection',
  'Expect',
  'Cookie',
];
const BENIGN = [
  '',
  'a',
  'a:b',
  '1.2.3.4',
  '1.2.3.4, 5.6.7.8',
  '\t padded \t',
  '\xff\xfe',
  'keep-alive',
  '100-continue',
  'GET / HTTP/1.1',
];
const HOSTILE = [
  'evil\r\nX-Client-Hostname: injected',
  'v\nX-Team: injected',
  'x\rX-Team: y',
  'a\x00b',
  'a\x7fb',
  'a\x01b',
];

const headerArb = fc.tuple(
  pick(
    w(150, fc.constantFrom(...NAMES)),
    w(50, fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}$/)),
    w(1, fc.constantFrom('X-Forwarded-For ', 'X A', '')),
  ),
  pick(
    w(150, fc.constantFrom(...BENIGN)),
    w(50, fc.stringMatching(/^[\x20-\x7e]{0,24}$/)),
    w(1, fc.constantFrom(...HOSTILE)),
  ),
  pick(w(200, fc.constantFrom(':', ': ', ':\t')), w(1, fc.constant(' :'))),
);

type Body = { kind: 'none' } | { kind: 'cl' | 'both'; data: Buffer } | { kind: 'chunked'; parts: Buffer[] };

const requestArb = fc.record({
  method: pick(
    w(100, fc.constantFrom('GET', 'POST', 'HEAD', 'PUT', 'OPTIONS', 'M-SEARCH')),
    w(1, fc.constantFrom('CONNECT', 'PRI', 'G\x00T')),
  ),
  target: fc.constantFrom('/', '/a?b=c:d', 'http://h.example/x', 'h.example:443', '*', '/%0d%0a'),
  version: pick(
    w(100, fc.constant('HTTP/1.1')),
    w(10, fc.constant('HTTP/1.0')),
    w(2, fc.constantFrom('HTTP/2.0', 'HTTP/1.1 ', 'http/1.1', 'HTTP/1.10')),
  ),
  eol: fc.constantFrom('\r\n', '\r\n', '\n'),
  headers: fc.array(headerArb, { maxLength: 8 }),
  fold: fc.noBias(fc.integer({ min: 0, max: 30 })).map((n) => n === 0),
  body: pick<Body>(
    w(12, fc.constant({ kind: 'none' as const })),
    w(6, fc.record({ kind: fc.constant('cl' as const), data: bytesArb(64) })),
    w(
      6,
      fc.record({
        kind: fc.constant('chunked' as const),
        parts: fc.array(
          bytesArb(32).filter((b) => b.length > 0),
          { maxLength: 3 },
        ),
      }),
    ),
    w(1, fc.record({ kind: fc.constant('both' as const), data: bytesArb(8) })),
  ),
  upgrade: fc.noBias(fc.integer({ min: 0, max: 15 })).map((n) => n === 0),
});

type Req = typeof requestArb extends fc.Arbitrary<infer T> ? T : never;

function render(r: Req): Buffer {
  const e = r.eol;
  let head = `${r.method} ${r.target} ${r.version}${e}`;
  for (const [n, v, sep] of r.headers) head += `${n}${sep}${v}${e}`;
  if (r.fold) head += ` folded${e}`;
  if (r.upgrade) head += `Upgrade: websocket${e}Connection: Upgrade${e}`;
  let body: Buffer = Buffer.alloc(0);
  if (r.body.kind === 'cl') {
    head += `Content-Length: ${r.body.data.length}${e}`;
    body = r.body.data;
  } else if (r.body.kind === 'chunked') {
    head += `Transfer-Encoding: chunked${e}`;
    body = Buffer.concat([
      ...r.body.parts.flatMap((p) => [Buffer.from(`${p.length.toString(16)}\r\n`), p, Buffer.from('\r\n')]),
      Buffer.from('0\r\n\r\n'),
    ]);
  } else if (r.body.kind === 'both') {
    head += `Content-Length: ${r.body.data.length}${e}Transfer-Encoding: chunked${e}`;
    body = r.body.data;
  }
  return Buffer.concat([Buffer.from(`${head}${e}`, 'latin1'), body]);
}

const connectionArb = fc.array(requestArb, { minLength: 1, maxLength: 5 }).map((rs) => Buffer.concat(rs.map(render)));
const configArb = fc.constantFrom(...Object.keys(CONFIGS));

const FRAGMENTS = [
  '\r\n',
  '\n',
  '\r',
  '\r\n\r\n',
  ' ',
  '\t',
  ':',
  'Content-Length: 5\r\n',
  'Transfer-Encoding: chunked\r\n',
  'X-Client-Hostname: spoof\r\n',
  'Upgrade: h2c\r\n',
  '0\r\n\r\n',
  'GET / HTTP/1.1\r\n',
  '\x00',
  'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
];

function checkAll(cfgName: string, input: Buffer, chunkings: Buffer[][]): void {
  const cfg = CONFIGS[cfgName]!;
  const whole = feed(cfg, [input]);
  for (const [k, chunks] of chunkings.entries()) sameOutcome(whole, feed(cfg, chunks), `${cfgName} chunking ${k}`);
  checkHeads(cfg, input, whole);
}

// ── properties ───────────────────────────────────────────────────────────────

test('corpus replays: chunking-independent, injected headers once, no line injection', () => {
  const entries = corpus('http-rewriter');
  assert.ok(entries.length >= 10, 'the corpus is there');
  for (const { name, data } of entries) {
    for (const cfgName of Object.keys(CONFIGS)) {
      try {
        checkAll(cfgName, data, fixedChunkings(data));
      } catch (e) {
        throw new Error(`corpus ${name} (${cfgName}): ${(e as Error).message}`, { cause: e });
      }
    }
  }
});

test('generated request streams: same output for any chunking; injected once; no CR/LF injection', () => {
  fc.assert(
    fc.property(configArb, connectionArb, cutsArb, cutsArb, (cfgName, input, c1, c2) => {
      checkAll(cfgName, input, [splitAt(input, c1), splitAt(input, c2), fixedChunkings(input)[1]!]);
    }),
    params(5000),
  );
});

test('mutated request streams: never throw, chunking-independent, heads still safe', () => {
  fc.assert(
    fc.property(
      configArb,
      connectionArb.chain((b) => mutated(b, FRAGMENTS)),
      cutsArb,
      (cfgName, input, cuts) => {
        checkAll(cfgName, input, [splitAt(input, cuts)]);
      },
    ),
    params(10000),
  );
});

test('arbitrary bytes: never throw, chunking-independent', () => {
  fc.assert(
    fc.property(configArb, bytesArb(2048), cutsArb, (cfgName, input, cuts) => {
      const cfg = CONFIGS[cfgName]!;
      sameOutcome(feed(cfg, [input]), feed(cfg, splitAt(input, cuts)), cfgName);
    }),
    params(10000),
  );
});

test('injection config: any header name/value either is refused or injects exactly that one line', () => {
  const str = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 12 }),
    fc.constantFrom('X-A', 'x-a', 'Host', 'Content-Length', 'a\r\nb', 'v\n', ' ', 'a:b'),
  );
  fc.assert(
    fc.property(str, str, (name, value) => {
      let compiled: ReturnType<typeof compileInjectConfig>;
      try {
        compiled = compileInjectConfig({ headers: [{ name, value }], maxHeadBytes: 65536 });
      } catch (e) {
        assert.equal((e as Error).name, 'UsageError', `unexpected ${(e as Error).name}: ${(e as Error).message}`);
        return;
      }
      // (a client header of the same name would be replaced: the probe request has one other header)
      fc.pre(name.toLowerCase() !== 'x-probe');
      const o = feed({ headers: [{ name, value }], maxHeadBytes: 65536 }, [
        Buffer.from('GET / HTTP/1.1\r\nX-Probe: h\r\n\r\n'),
      ]);
      assert.equal(o.requests, 1);
      const lines = o.out.toString('latin1').split('\r\n');
      assert.deepEqual(lines.slice(0, 2), ['GET / HTTP/1.1', 'X-Probe: h']);
      assert.equal(lines.length, 5, 'one injected line, then the blank line');
      assert.ok(compiled.blockCRLF.toString('utf8').startsWith(`${name}: `));
      const block = compiled.blockCRLF.toString('utf8');
      assert.ok(block.endsWith('\r\n\r\n') && !/[\r\n]/.test(block.slice(0, -4)), 'no CR/LF inside the injected line');
    }),
    params(3000, 4000),
  );
});
