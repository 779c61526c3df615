// The engine's inspected-flow state machine (src/relay/engine/inspected.ts) on in-memory
// sockets: what it reads and writes per event, the rewriter's verdicts carried out (stamping,
// pipelining, refusals after the responses in flight, Upgrade hand-off), half-close, and the
// system calls it saves (no read just to see EAGAIN or EOF, no shutdown a close makes redundant).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileInjectConfig, type InjectConfig } from '../../src/http/inject-config.js';
import { RequestRewriter } from '../../src/http/rewriter.js';
import {
  InspectedFlow,
  InspectScratch,
  LINGER_MS,
  NO_READ,
  SHORT_DRAINED,
  SHORT_EOF,
  UNTIL_EAGAIN,
  type InspectHost,
  type InspectIo,
  type InspectedReason,
} from '../../src/relay/engine/inspected.js';
import { EAGAIN } from '../../src/kernel/linux.js';

const CLIENT = 10;
const UPSTREAM = 11;

/** One end of a connection: what the peer sent (read by the flow) and what the flow wrote. */
class FakeSocket {
  private queued = Buffer.alloc(0);
  /** The peer's FIN, after the queued bytes. */
  fin = false;
  /** Bytes the socket still takes before a write would block. */
  room = Number.POSITIVE_INFINITY;
  written = '';
  reads = 0;
  writes = 0;
  shut = false;
  /** Writes with MSG_MORE, and whether their bytes still wait for a FIN, a close or a push. */
  moreWrites = 0;
  waiting = false;
  pushes = 0;

  deliver(s: string): void {
    this.queued = Buffer.concat([this.queued, Buffer.from(s, 'latin1')]);
  }

  read(into: Buffer, len: number): number {
    this.reads++;
    if (this.queued.length === 0) return this.fin ? 0 : -EAGAIN;
    const n = this.queued.copy(into, 0, 0, Math.min(len, this.queued.length));
    this.queued = this.queued.subarray(n);
    return n;
  }

  write(b: Buffer, off: number, len: number, more = false): number {
    this.writes++;
    if (more) this.moreWrites++;
    this.waiting = more;
    if (this.room <= 0) return -EAGAIN;
    const n = Math.min(len, this.room);
    this.room -= n;
    this.written += b.toString('latin1', off, off + n);
    return n;
  }
}

function harness(cfg: Partial<InjectConfig> = {}, headTimeoutMs = 0) {
  const client = new FakeSocket();
  const upstream = new FakeSocket();
  const socks = new Map([
    [CLIENT, client],
    [UPSTREAM, upstream],
  ]);
  const sock = (fd: number): FakeSocket => {
    const s = socks.get(fd);
    if (!s) throw new Error(`fd ${fd} is closed`);
    return s;
  };
  const io = (s: InspectScratch): InspectIo => ({
    read: (fd, len) => sock(fd).read(s.read, len),
    write: (fd, b, off, len, more) => sock(fd).write(b, off, len, more),
    shutdown: (fd) => {
      sock(fd).shut = true;
      sock(fd).waiting = false;
    },
    push: (fd) => {
      sock(fd).pushes++;
      sock(fd).waiting = false;
    },
  });
  const conn = {
    fds: [CLIENT, UPSTREAM] as [number, number],
    last: 0,
    closed: false,
    up: { eof: false, shut: false, bytes: 0 },
    down: { eof: false, shut: false, bytes: 0 },
  };
  const state = {
    now: 1000,
    ended: undefined as { reason: InspectedReason; error?: string; reset?: boolean } | undefined,
    upstreamClosed: undefined as 'fin' | 'rst' | undefined,
    spliced: 0,
  };
  const host: InspectHost = {
    now: () => state.now,
    finish: (_c, reason, error, reset) => {
      if (conn.closed) return;
      conn.closed = true;
      state.ended = { reason, ...(error ? { error } : {}), ...(reset ? { reset } : {}) };
    },
    closeUpstream: (_c, reset) => {
      state.upstreamClosed = reset ? 'rst' : 'fin';
      socks.delete(UPSTREAM);
      conn.fds[1] = -1;
    },
    toSplice: () => void state.spliced++,
  };
  const rewriter = new RequestRewriter(
    compileInjectConfig({ headers: [{ name: 'a', value: '1' }], maxHeadBytes: 65536, ...cfg }),
  );
  const flow = new InspectedFlow(conn, host, new InspectScratch(io), { rewriter, headTimeoutMs });
  /** How the flow ended (a call: TypeScript would narrow a property read after an assert). */
  const ended = () => state.ended;
  return { client, upstream, conn, state, flow, ended };
}

const REQ = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: h\r\n${extra}\r\n`;
const STAMPED = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: h\r\n${extra}a: 1\r\n\r\n`;
const RESP = (body: string): string => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;

test('a head split over two reads is held, then stamped and sent upstream in one write', () => {
  const h = harness({}, 5000);
  h.client.deliver('GET / HTTP/1.1\r\nHo');
  h.flow.start(SHORT_DRAINED, NO_READ);
  assert.equal(h.upstream.written, '', 'nothing of an unfinished head goes upstream');
  assert.equal(h.flow.headDeadline, 1000 + 5000, 'the head timeout runs from its first bytes');
  h.state.now = 2000;
  h.client.deliver('st: h\r\n\r\n');
  h.flow.onEvent(0, SHORT_DRAINED, false);
  assert.equal(h.upstream.written, STAMPED('/'));
  assert.equal(h.upstream.writes, 1, 'the head and the injected block go in one write');
  assert.equal(h.flow.headDeadline, 0, 'a complete head stops the timer');
  assert.equal(h.flow.requests, 1);
});

test('a short read after an event without FIN is the last one; without the event, read until EAGAIN', () => {
  const h = harness();
  h.client.deliver(REQ('/'));
  h.flow.onEvent(0, SHORT_DRAINED, false);
  assert.equal(h.client.reads, 1, 'no read just to see EAGAIN');
  h.client.deliver(REQ('/2'));
  h.flow.onEvent(0, UNTIL_EAGAIN, false);
  assert.equal(h.client.reads, 3, 'read, then EAGAIN');
  assert.equal(h.upstream.written, STAMPED('/') + STAMPED('/2'));
});

test('pipelined requests in one read are each stamped; the responses go back unchanged', () => {
  const h = harness();
  h.client.deliver(REQ('/1') + REQ('/2', 'a: forged\r\n'));
  h.flow.onEvent(0, SHORT_DRAINED, false);
  assert.equal(h.upstream.written, STAMPED('/1') + STAMPED('/2'), "each head stamped, the client's a: replaced");
  assert.equal(h.flow.requests, 2);
  h.upstream.deliver(RESP('one') + RESP('two'));
  h.flow.onEvent(1, SHORT_DRAINED, false);
  assert.equal(h.client.written, RESP('one') + RESP('two'));
  assert.equal(h.upstream.reads, 1);
  assert.equal(h.state.ended, undefined, 'the connection stays open (keep-alive)');
});

test('the server FIN seen with its last bytes: the response and the FIN go out in one pass, the close sends the other FIN', () => {
  const h = harness();
  h.client.deliver(REQ('/'));
  h.flow.start(SHORT_DRAINED, NO_READ);
  h.upstream.deliver(RESP('ok'));
  h.upstream.fin = true;
  h.flow.onEvent(1, SHORT_EOF, false);
  assert.equal(h.client.written, RESP('ok'));
  assert.ok(h.client.shut, "the server's FIN is relayed right after its bytes");
  assert.equal(h.client.moreWrites, 1, 'the response waits (MSG_MORE) for the FIN: one segment for both');
  assert.equal(h.client.pushes, 0, 'the shutdown sends it: no push');
  assert.equal(h.upstream.reads, 1, 'no read to find the EOF the event announced');
  assert.equal(h.state.ended, undefined, 'the client may still send');
  h.client.fin = true;
  h.flow.onEvent(0, SHORT_EOF, false);
  assert.deepEqual(h.state.ended, { reason: 'eof' });
  assert.equal(h.upstream.shut, false, 'both sides done: close(2) sends the FIN, no shutdown(2) first');
  assert.equal(h.conn.up.bytes, REQ('/').length);
  assert.equal(h.conn.down.bytes, RESP('ok').length);
});

test("a client's half-close reaches the server after its bytes, and the server still answers", () => {
  const h = harness();
  h.client.deliver(REQ('/'));
  h.client.fin = true;
  h.flow.onEvent(0, SHORT_EOF, false);
  assert.equal(h.upstream.written, STAMPED('/'));
  assert.ok(h.upstream.shut, "the client's FIN follows its request upstream");
  assert.equal(h.client.reads, 1);
  h.upstream.deliver(RESP('late'));
  h.flow.onEvent(1, SHORT_DRAINED, false);
  assert.equal(h.client.written, RESP('late'));
  assert.equal(h.state.ended, undefined);
  h.upstream.fin = true;
  h.flow.onEvent(1, SHORT_EOF, false);
  assert.deepEqual(h.state.ended, { reason: 'eof' });
  assert.ok(!h.client.shut && h.client.moreWrites === 0, 'nothing new for the client: the close sends the FIN');
});

test('a response sent with MSG_MORE whose FIN cannot follow (the client took only part) is pushed', () => {
  const h = harness();
  h.client.deliver(REQ('/'));
  h.flow.onEvent(0, SHORT_DRAINED, false);
  h.client.room = 5;
  h.upstream.deliver(RESP('abcdef'));
  h.upstream.fin = true;
  h.flow.onEvent(1, SHORT_EOF, false);
  assert.equal(h.client.written, RESP('abcdef').slice(0, 5));
  assert.equal(h.client.moreWrites, 1);
  assert.equal(h.client.shut, false, 'the FIN waits for the rest of the response');
  assert.equal(h.client.pushes, 1, 'so the bytes written are sent now, not held back');
  assert.equal(h.client.waiting, false);
  h.client.room = Number.POSITIVE_INFINITY;
  h.flow.onEvent(0, NO_READ, true);
  assert.equal(h.client.written, RESP('abcdef'));
  assert.ok(h.client.shut, 'then the FIN');
});

test('a client that takes nothing gets the response queued and written on its next EPOLLOUT', () => {
  const h = harness();
  h.client.deliver(REQ('/'));
  h.flow.onEvent(0, SHORT_DRAINED, false);
  h.client.room = 5;
  h.upstream.deliver(RESP('abcdef'));
  h.flow.onEvent(1, SHORT_DRAINED, false);
  assert.equal(h.client.written, RESP('abcdef').slice(0, 5));
  h.upstream.deliver(RESP('gh'));
  h.flow.onEvent(1, SHORT_DRAINED, false);
  assert.equal(h.client.written.length, 5, 'nothing more while the socket is full');
  h.client.room = Number.POSITIVE_INFINITY;
  h.flow.onEvent(0, NO_READ, true);
  assert.equal(h.client.written, RESP('abcdef') + RESP('gh'), 'in order, nothing lost');
});

test('431 on the first head: the upstream is closed unused, the client answered, then closed after the linger', () => {
  const h = harness({ maxHeadBytes: 1024 });
  h.client.deliver(`GET / HTTP/1.1\r\nHost: h\r\nX-Big: ${'x'.repeat(2000)}\r\n\r\n`);
  h.flow.onEvent(0, SHORT_DRAINED, false);
  assert.match(h.client.written, /^HTTP\/1\.1 431 /);
  assert.equal(h.state.upstreamClosed, 'fin');
  assert.equal(h.upstream.written, '', 'not a byte of the refused head upstream');
  assert.ok(h.client.shut);
  assert.equal(h.state.ended, undefined, 'the client may still be sending: read and dropped for a while');
  h.flow.onTimer(1000 + LINGER_MS);
  assert.equal(h.ended()?.reason, 'rejected');
  assert.match(h.ended()?.error ?? '', /^431 /);
});

test('431 after a forwarded request: answered only after its response, then the upstream is reset', () => {
  const h = harness({ maxHeadBytes: 1024 });
  h.client.deliver(`${REQ('/ok')}GET /big HTTP/1.1\r\nX-Big: ${'x'.repeat(2000)}\r\n\r\n`);
  h.flow.onEvent(0, SHORT_DRAINED, false);
  assert.equal(h.upstream.written, STAMPED('/ok'), 'the good request is forwarded');
  assert.equal(h.client.written, '', 'the refusal waits for the response in flight');
  assert.equal(h.state.upstreamClosed, undefined);
  h.upstream.deliver(RESP('fine'));
  h.flow.onEvent(1, SHORT_DRAINED, false);
  assert.equal(h.state.upstreamClosed, 'rst', 'a reset: the server must not read a cut request at EOF');
  assert.match(h.client.written, /^HTTP\/1\.1 200 OK\r\nContent-Length: 4\r\n\r\nfineHTTP\/1\.1 431 /);
  h.client.fin = true;
  h.flow.onEvent(0, SHORT_EOF, false);
  assert.equal(h.ended()?.reason, 'rejected');
});

test('Upgrade: bytes after the request are held until the 101, then sent, and the flow goes back to splicing', () => {
  const h = harness();
  const up = 'Upgrade: websocket\r\nConnection: Upgrade\r\n';
  h.client.deliver(`${REQ('/ws', up)}RAW-FRAME`);
  h.flow.onEvent(0, SHORT_DRAINED, false);
  assert.equal(h.upstream.written, STAMPED('/ws', up), 'the frame waits for the answer');
  assert.equal(h.state.spliced, 0);
  const switched = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n';
  h.upstream.deliver(switched);
  h.flow.onEvent(1, SHORT_DRAINED, false);
  assert.equal(h.client.written, switched);
  assert.equal(h.upstream.written, `${STAMPED('/ws', up)}RAW-FRAME`);
  assert.equal(h.state.spliced, 1, 'handed back to the splice pump once nothing is queued');
  h.client.deliver('MORE');
  h.flow.onEvent(0, SHORT_DRAINED, false);
  assert.equal(h.upstream.written.endsWith('MORE'), false, 'after the hand-off the flow touches nothing');
});

test('a head not complete in time gets a 408 (nothing was forwarded)', () => {
  const h = harness({}, 3000);
  h.client.deliver('GET / HTTP/1.1\r\n');
  h.flow.onEvent(0, SHORT_DRAINED, false);
  h.flow.onTimer(1000 + 2999);
  assert.equal(h.client.written, '');
  h.flow.onTimer(1000 + 3000);
  assert.match(h.client.written, /^HTTP\/1\.1 408 /);
  assert.equal(h.state.upstreamClosed, 'fin');
});

test('a socket error ends the flow with a reset', () => {
  const h = harness();
  h.flow.onSocketError(1, 'ECONNRESET');
  assert.deepEqual(h.state.ended, { reason: 'upstream-error', error: 'ECONNRESET', reset: true });
});
