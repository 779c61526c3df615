// Test-only entry for test/e2e/served-flows.test.ts: runs INSIDE a lab netns (REDIRECT must
// capture its clients' connections). Drives the splice engine's kernel-only flows directly:
// it applies a REDIRECT output plan that skips the bypass mark, has the engine serve a
// listener (marked upstream sockets), and is its own client (its plain sockets are
// captured). Each step asserts; the script prints `ok STEP …` lines and `done`, or the
// failed assertion and exits 1. The rules are removed on every exit path.
//   node --import tsx served-engine-driver.ts '{"serverIp":"10.77.1.2",...}'
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { applyPlan, removeRules } from '../../src/firewall/apply.js';
import type { CapturePlan } from '../../src/firewall/plan.js';
import { BASE } from '../golden/plans.js';
import { createListenerFd } from '../../src/kernel/sockets.js';
import { createSpliceEngine, type FlowRecord } from '../../src/relay/engine/engine.js';

export interface DriverConfig {
  serverIp: string;
  /** An echo server there. */
  echoPort: number;
  /** A server there that greets (one byte 'g') each connection first. */
  greetPort: number;
  /** A port there nothing listens on. */
  deadPort: number;
  /** An address on the link with no host behind it (connects to it time out). */
  silentIp: string;
  /** This namespace's own address. */
  ownIp: string;
  listenPort: number;
  /** Engine threads sharing the listener (default 1). */
  threads?: number;
  /** Where one thread's loop runs (default: a worker thread). */
  hosting?: 'worker' | 'inline';
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as DriverConfig;
const MARK = 0x539;
const MAX = 120;
const IDLE_MS = 3000; // long enough that held flows of steps 2-3 never idle out on a loaded machine
const CONNECT_MS = 700;

const plan: CapturePlan = {
  ...BASE,
  proxyPort: cfg.listenPort,
  includePorts: [cfg.echoPort, cfg.greetPort, cfg.deadPort].map((p) => ({ from: p, to: p })),
  bypassMark: MARK,
};

/** N clients that connect when told ('go' on stdin) and each echo 100 bytes. */
const CLIENTS = `
const net = require('node:net');
const [ip, port, n] = process.argv.slice(1);
console.log('waiting');
process.stdin.once('data', async () => {
  const one = () => new Promise((resolve) => {
    const s = net.connect({ host: ip, port: Number(port), allowHalfOpen: true });
    let got = 0;
    s.on('error', () => resolve(false));
    s.on('data', (d) => (got += d.length));
    s.on('end', () => { s.end(); resolve(got === 100); });
    s.on('connect', () => s.end(Buffer.alloc(100, 'c')));
  });
  const r = await Promise.all(Array.from({ length: Number(n) }, one));
  console.log('result ' + JSON.stringify({ echoed: r.filter(Boolean).length }));
  process.exit(0);
});
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const records: FlowRecord[] = [];
let active: Record<string, number> = {};
const ends = () => records.filter((r): r is Extract<FlowRecord, { t: 'end' }> => r.t === 'end');
const refusals = () => records.filter((r): r is Extract<FlowRecord, { t: 'refused' }> => r.t === 'refused');
const activeNow = () => Object.values(active).reduce((a, b) => a + b, 0);
/** Live counts come with record batches (at most every RECORD_FLUSH_MS): a count read right
 * after flows ended may still be the one from before they began. Wait for their end records. */
async function ended(what: string, endsBefore: number, n: number): Promise<void> {
  await until(what, () => ends().length >= endsBefore + n && activeNow() === 0);
}

async function until(what: string, cond: () => boolean, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}; records: ${JSON.stringify(records.slice(-5))}`);
    await sleep(20);
  }
}

/** One client connection to ip:port through the proxy. */
function connectTo(ip: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: ip, port, allowHalfOpen: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** What the client saw at the end: its bytes, and how it ended. */
function ending(s: net.Socket): Promise<{ data: Buffer; how: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let how = 'eof';
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', (e: NodeJS.ErrnoException) => (how = e.code ?? e.message));
    s.on('end', () => s.end());
    s.on('close', () => resolve({ data: Buffer.concat(chunks), how }));
  });
}

/** A connection the proxy ends at once: the reset may come before Node saw the connect. */
function refusedOutcome(ip: string, port: number): Promise<{ data: Buffer; how: string }> {
  const s = net.connect({ host: ip, port, allowHalfOpen: true });
  return ending(s);
}

async function echo(bytes: number): Promise<Buffer> {
  const s = await connectTo(cfg.serverIp, cfg.echoPort);
  const done = ending(s);
  s.end(Buffer.alloc(bytes, 'e'));
  const r = await done;
  return r.data;
}

async function held(): Promise<net.Socket> {
  const s = await connectTo(cfg.serverIp, cfg.echoPort);
  s.write('h');
  await new Promise<void>((resolve) => s.once('data', () => resolve()));
  return s;
}

const THREADS = cfg.threads ?? 1;
const engine = createSpliceEngine({ threads: THREADS, ...(cfg.hosting ? { hosting: cfg.hosting } : {}) });
const listenFd = createListenerFd({ family: 4, address: '0.0.0.0', port: cfg.listenPort, transparent: false });
engine.serve(
  [
    {
      fd: listenFd,
      family: 4,
      label: 'test',
      mode: 'redirect',
      connectTimeoutMs: CONNECT_MS,
      idleMs: IDLE_MS,
      mark: MARK,
      preserveSource: false,
      ownPorts: [cfg.listenPort],
      maxConnections: MAX,
    },
  ],
  {
    records(r, a) {
      records.push(...r);
      active = a;
    },
  },
);
applyPlan(plan, 'nft');
let exitCode = 1;
try {
  // 1. Echo: bytes both ways with a half-close, one record each with the byte counts.
  const sizes = Array.from({ length: 60 }, (_, i) => (i % 3 === 0 ? 1 : i % 3 === 1 ? 16_384 : 300_000));
  for (let i = 0; i < sizes.length; i += 10) {
    const got = await Promise.all(sizes.slice(i, i + 10).map((n) => echo(n)));
    got.forEach((g, j) => {
      assert.equal(g.length, sizes[i + j], `echo of ${sizes[i + j]} bytes`);
    });
  }
  await until('60 end records', () => ends().length === 60 && activeNow() === 0);
  for (const r of ends()) {
    assert.equal(r.reason, 'eof');
    assert.equal(r.bytesUp, r.bytesDown);
    assert.equal(r.dst.address, cfg.serverIp);
    assert.equal(r.dst.port, cfg.echoPort);
    assert.ok(r.connectMs !== undefined && r.connectMs >= 0);
  }
  assert.deepEqual(
    ends()
      .map((r) => r.bytesUp)
      .sort((a, b) => a - b),
    [...sizes].sort((a, b) => a - b),
  );
  console.log('ok echo 60 flows, byte counts and destinations recorded');

  // 1b. A server that speaks first, many connections at once: its greeting may arrive before
  // the upstream socket is even in epoll, and must still be relayed.
  const greeted = async (): Promise<boolean> => {
    const s = await connectTo(cfg.serverIp, cfg.greetPort);
    const got = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 5000);
      s.once('data', (d: Buffer) => {
        clearTimeout(t);
        resolve(d.toString() === 'g');
      });
    });
    s.destroy();
    return got;
  };
  let greetOk = 0;
  for (let round = 0; round < 4; round++) {
    const endsBefore = ends().length;
    greetOk += (await Promise.all(Array.from({ length: 100 }, greeted))).filter(Boolean).length;
    // The next round only once these have ended: MAX would refuse some otherwise.
    await ended('the greeting flows ended', endsBefore, 100);
  }
  assert.ok(!refusals().some((r) => r.reason === 'max-connections'));
  assert.equal(
    greetOk,
    400,
    `every greeting of a server-speaks-first protocol reached its client (${greetOk} did); ${JSON.stringify(records.slice(-3))}`,
  );
  console.log('ok server speaks first: 400 greetings relayed, 100 connections at a time');
  if (THREADS > 1) {
    // Flow ids tell the thread (id − 1 ≡ thread mod threads): every thread accepted some.
    const perThread = new Set(ends().map((r) => (r.id - 1) % THREADS));
    assert.equal(perThread.size, THREADS, `flows by thread: ${[...perThread]}`);
    console.log(`ok ${THREADS} threads accepted flows from the one listener`);
    // Accepts come in bursts, but a thread stops taking clients once it holds more than its
    // share: 40 keep-alive flows opened at once are spread over the threads.
    const endsBefore = ends().length;
    const many = await Promise.all(Array.from({ length: 40 }, held));
    const byThread = new Array<number>(THREADS).fill(0);
    for (const c of await engine.servedConnections()) byThread[(c.id - 1) % THREADS]!++;
    for (const s of many) s.destroy();
    await ended('the held flows ended', endsBefore, 40);
    assert.ok(Math.min(...byThread) >= 40 / THREADS - 8, `40 held flows by thread: ${byThread}`);
    console.log(`ok 40 flows opened at once, held by thread: ${byThread}`);
  }

  // 2. Live list and close by id.
  const hold = [await held(), await held(), await held()];
  await until('3 active', () => activeNow() === 3);
  const list = await engine.servedConnections();
  assert.equal(list.length, 3);
  // Not matched by source port: conntrack may give a REDIRECTed flow another source port when
  // its reply tuple clashes with an old entry (many short flows from one address came before).
  assert.ok(
    list.every(
      (c) =>
        c.bytesUp === 1 &&
        c.bytesDown === 1 &&
        c.listener === 'test' &&
        c.dst.port === cfg.echoPort &&
        c.src.address === cfg.ownIp,
    ),
    JSON.stringify(list),
  );
  const victim = list[0]!;
  const endings = hold.map((s, i) => ending(s).then(() => i));
  assert.equal(await engine.closeServed(victim.id), true);
  const gone = await Promise.race(endings);
  hold.splice(gone, 1); // the others are untouched
  for (const s of hold) assert.ok(!s.destroyed && !s.readableEnded, `only the flow closed by id ended (${gone} did)`);
  assert.equal(await engine.closeServed(999_999), false);
  await until('the closed flow recorded', () => ends().some((r) => r.id === victim.id));
  assert.equal(ends().find((r) => r.id === victim.id)!.reason, 'aborted');
  console.log('ok list shows the live flows with bytes; close by id ends one');

  // 3. Max connections: 2 held + MAX - 2 more = MAX; one more is refused, the rest unaffected.
  for (let i = 0; i < MAX - 2; i += 20)
    hold.push(...(await Promise.all(Array.from({ length: Math.min(20, MAX - 2 - i) }, held))));
  await until(`${MAX} active`, () => activeNow() === MAX);
  const extraEnd = await refusedOutcome(cfg.serverIp, cfg.echoPort);
  assert.equal(extraEnd.data.length, 0);
  await until('a max-connections refusal', () => refusals().some((r) => r.reason === 'max-connections'));
  for (const s of hold) s.destroy();
  await until('none active', () => activeNow() === 0);
  assert.equal((await echo(1000)).length, 1000);
  console.log('ok beyond max-connections refused; capacity returns');

  // 4. Connect failures: refused port → client reset; silent address → reset after the connect timeout.
  const dead = await refusedOutcome(cfg.serverIp, cfg.deadPort);
  assert.equal(dead.how, 'ECONNRESET');
  await until('connect-failed ECONNREFUSED', () =>
    ends().some((r) => r.reason === 'connect-failed' && r.error === 'ECONNREFUSED'),
  );
  const t0 = Date.now();
  const silent = await refusedOutcome(cfg.silentIp, cfg.echoPort);
  const waited = Date.now() - t0;
  assert.equal(silent.how, 'ECONNRESET');
  assert.ok(waited >= CONNECT_MS - 50 && waited < CONNECT_MS + 1500, `connect timeout after ${waited} ms`);
  await until('connect-failed ETIMEDOUT', () =>
    ends().some((r) => r.reason === 'connect-failed' && r.error === 'ETIMEDOUT' && r.connectMs === undefined),
  );
  console.log(`ok connect refused → reset; silent host → reset after ${waited} ms (connect timeout ${CONNECT_MS} ms)`);

  // 5. Idle timeout.
  const idle = await held();
  const idleT0 = Date.now();
  const idleEnd = await ending(idle);
  const idleMs = Date.now() - idleT0;
  assert.ok(idleMs >= IDLE_MS - 50 && idleMs < IDLE_MS + 1500, `idle close after ${idleMs} ms`);
  assert.equal(idleEnd.how, 'eof');
  await until('an idle record', () => ends().some((r) => r.reason === 'idle'));
  console.log(`ok idle flow closed after ${idleMs} ms (idle timeout ${IDLE_MS} ms)`);

  // 6. Straight at the listener (a local destination is not captured; conntrack's original
  // destination is then the listener itself): the loop guard refuses it.
  const direct = await refusedOutcome(cfg.ownIp, cfg.listenPort);
  assert.equal(direct.data.length, 0);
  await until('a loop refusal', () => refusals().some((r) => r.reason === 'loop' && r.dst?.port === cfg.listenPort));
  console.log('ok a connection straight to the listener is refused (loop)');

  // 7. Out of descriptors: accept rests, nothing is lost, it resumes when descriptors return.
  // The clients are another process (they need descriptors of their own).
  const clients = spawn(process.execPath, ['-e', CLIENTS, cfg.serverIp, String(cfg.echoPort), '6'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let clientOut = '';
  clients.stdout.on('data', (d: Buffer) => (clientOut += d.toString()));
  await until('the client process', () => clientOut.includes('waiting'));
  const hog: number[] = [];
  try {
    for (;;) hog.push(openSync('/dev/null', 'r'));
  } catch (e) {
    assert.equal((e as NodeJS.ErrnoException).code, 'EMFILE');
  }
  const refusedBefore = refusals().filter((r) => r.reason === 'accept-error').length;
  clients.stdin.write('go\n');
  await until(
    'an accept-error (EMFILE)',
    () => refusals().filter((r) => r.reason === 'accept-error').length > refusedBefore,
  );
  await sleep(300); // the clients wait in the backlog meanwhile
  assert.ok(!clientOut.includes('result'), 'no client finished while descriptors were exhausted');
  for (const fd of hog) closeSync(fd);
  await until('the clients', () => clientOut.includes('result'), 15_000);
  const result = JSON.parse(clientOut.split('result ')[1]!.trim()) as { echoed: number };
  assert.equal(result.echoed, 6, `clients: ${clientOut}`);
  const emfile = refusals().find((r) => r.reason === 'accept-error')!;
  assert.equal(emfile.error, 'EMFILE');
  console.log(
    'ok out of descriptors: accept rested (EMFILE), all 6 waiting clients were served once descriptors returned',
  );

  exitCode = 0;
  console.log('done');
} catch (e) {
  console.log(`FAILED: ${(e as Error).stack ?? e}`);
} finally {
  removeRules();
  await engine.close();
  process.exit(exitCode);
}
