// Response framer: where each response ends (so a refusal is placed between responses and
// an Upgrade/CONNECT switches only on the server's word), fed whole, byte by byte and at
// every split point — all must agree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  FR_DECLINED,
  FR_NONE,
  FR_SWITCHED,
  REQ_CONNECT,
  REQ_HEAD,
  REQ_UPGRADE,
  ResponseFramer,
} from '../../src/http/response-framer.js';

interface Run {
  verdicts: number[];
  completeAfter: boolean[];
  pending: number;
  eofComplete: boolean;
}

/** Feed `chunks` to a framer that expects `reqs` (flags); record verdicts and complete() after each chunk. */
function feed(reqs: number[], chunks: Buffer[]): Run {
  const f = new ResponseFramer();
  for (const r of reqs) f.expect(r);
  if (reqs.some((r) => (r & (REQ_UPGRADE | REQ_CONNECT)) !== 0)) f.awaiting = true;
  const verdicts: number[] = [];
  const completeAfter: boolean[] = [];
  for (const c of chunks) {
    const v = f.push(c);
    if (v !== FR_NONE) verdicts.push(v);
    completeAfter.push(f.complete(false));
  }
  return { verdicts, completeAfter, pending: f.pending, eofComplete: f.complete(true) };
}

/** Whole, byte by byte and every two-way split agree on verdicts and the final state. */
function frame(reqs: number[], text: string): Run {
  const b = Buffer.from(text, 'latin1');
  const whole = feed(reqs, [b]);
  const key = (r: Run) => JSON.stringify({ v: r.verdicts, c: r.completeAfter.at(-1), p: r.pending, e: r.eofComplete });
  assert.equal(
    key(
      feed(
        reqs,
        [...b].map((x) => Buffer.from([x])),
      ),
    ),
    key(whole),
    'byte by byte',
  );
  for (let i = 1; i < b.length; i++) {
    assert.equal(key(feed(reqs, [b.subarray(0, i), b.subarray(i)])), key(whole), `split at ${i}`);
  }
  return whole;
}

const done = (r: Run): boolean => r.completeAfter.at(-1)!;

test('Content-Length, chunked (extensions, trailers), no-body statuses and HEAD end where they should', () => {
  assert.ok(done(frame([0], 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello')));
  assert.ok(!done(frame([0], 'HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello')), 'one body byte missing');
  assert.ok(
    done(
      frame(
        [0],
        'HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n5;x=y\r\nhello\r\nA\r\n0123456789\r\n0\r\nT: v\r\n\r\n',
      ),
    ),
  );
  assert.ok(
    !done(frame([0], 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n')),
    'trailer section not ended',
  );
  assert.ok(
    done(
      frame(
        [0, 0],
        'HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n',
      ),
    ),
  );
  assert.ok(
    done(frame([REQ_HEAD], 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n')),
    'HEAD: no body whatever the length says',
  );
  const twoOfThree = frame(
    [0, 0, 0],
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.0 404 Not Found\nContent-Length: 0\n\n',
  );
  assert.equal(twoOfThree.pending, 1);
  assert.ok(!done(twoOfThree), 'a request still waits for its response');
});

test('interim 1xx responses do not answer the request; 100 then 200 does', () => {
  const r = frame(
    [0],
    'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
  );
  assert.ok(done(r));
  assert.equal(r.pending, 0);
  assert.ok(!done(frame([0], 'HTTP/1.1 100 Continue\r\n\r\n')));
});

test('close-delimited bodies are complete only at EOF', () => {
  const r = frame(
    [0, 0],
    'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.0 200 OK\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n',
  );
  assert.ok(!done(r));
  assert.ok(r.eofComplete);
  assert.ok(
    frame([0], 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz').eofComplete,
    'TE without chunked: until EOF',
  );
});

test('only a 101 to an Upgrade or a 2xx to CONNECT switches; other final answers decline', () => {
  assert.deepEqual(
    frame([REQ_UPGRADE], 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00').verdicts,
    [FR_SWITCHED],
  );
  assert.deepEqual(
    frame(
      [0, REQ_UPGRADE],
      'HTTP/1.1 200 OK\r\nContent-Length: 36\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n',
    ).verdicts,
    [FR_SWITCHED],
  );
  assert.deepEqual(frame([REQ_CONNECT], 'HTTP/1.1 200 Connection established\r\n\r\n\x16\x03').verdicts, [FR_SWITCHED]);
  assert.deepEqual(
    frame([REQ_UPGRADE], 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n').verdicts,
    [FR_DECLINED],
  );
  assert.deepEqual(
    frame([REQ_CONNECT], 'HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n').verdicts,
    [FR_DECLINED],
  );
  // A body that looks like a 101 is body.
  assert.deepEqual(
    frame(
      [REQ_UPGRADE],
      'HTTP/1.1 426 Upgrade Required\r\nContent-Length: 36\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n',
    ).verdicts,
    [FR_DECLINED],
  );
});

test('what cannot be followed makes the framer give up: no switch, no completion before EOF', () => {
  for (const bad of [
    'HTTP/1.1 101 Switching Protocols\r\n\r\n', // a switch the request did not ask for
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx',
    'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
    'HTTP/2 200\r\n\r\n',
    'SSH-2.0-x\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
  ]) {
    const r = frame([0, REQ_UPGRADE], `${bad}HTTP/1.1 101 Switching Protocols\r\n\r\n`);
    assert.deepEqual(r.verdicts, [FR_DECLINED], bad);
    assert.ok(!done(r) && !r.eofComplete, bad);
  }
  const huge = `HTTP/1.1 200 OK\r\nX: ${'a'.repeat(70000)}\r\n\r\n`;
  assert.ok(!feed([0], [Buffer.from(huge)]).eofComplete, 'a head over the limit');
});

test('a large body is skipped by arithmetic: one state change per chunk', () => {
  const f = new ResponseFramer();
  f.expect(0);
  f.push(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n'));
  const block = Buffer.alloc(65536, 0x48); // 'H' everywhere: nothing in it is looked at
  let sent = 0;
  while (sent + block.length <= 10_000_000) {
    f.push(block);
    sent += block.length;
  }
  assert.ok(!f.complete(false));
  f.push(Buffer.alloc(10_000_000 - sent));
  assert.ok(f.complete(false));
});
