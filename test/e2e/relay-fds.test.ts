// Issue 6: no descriptor leaks through the real proxy. 1,000 connections (echoed with a
// half-close, reset by the client mid-way, or closed without a byte) go through `tranproxy
// run` (REDIRECT in a netns lab), with `--relay js` and with `--relay splice`; then the data
// plane's socket and pipe descriptors must be back where they were before.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { spliceAvailable } from '../../src/relay/engine/engine.js';
import { fdCount, startPeer, startTranproxy, withLab, type Host, type LabProcess } from '../helpers/lab.js';

const PORT = 7000;
const CONNECTIONS = 1000;
/** The splice engine keeps up to 64 empty pipes (2 descriptors each) for reuse: not a leak. */
const PIPE_POOL_FDS = 2 * 64;

/**
 * Client run inside the lab's client namespace: `n` connections, `conc` at a time, to
 * `ip:port`. Every 20th is reset after its first bytes, every 20th (offset) closes without
 * sending; the rest send 8 KiB, half-close and must get exactly those bytes back, then EOF.
 */
const CLIENT = `
const net = require('node:net');
const [ip, port, n, conc] = process.argv.slice(1).map((v, i) => (i === 0 ? v : Number(v)));
const payload = Buffer.alloc(8192, 'x');
let started = 0, echoed = 0, reset = 0, empty = 0, bad = 0;
function one(i) {
  return new Promise((resolve) => {
    const s = net.connect({ host: ip, port, allowHalfOpen: true });
    const kind = i % 20 === 0 ? 'reset' : i % 20 === 10 ? 'empty' : 'echo';
    let got = 0;
    s.on('error', () => {});
    s.on('close', () => resolve());
    s.on('connect', () => {
      if (kind === 'empty') { empty++; return s.end(); }
      s.write(payload);
      if (kind === 'reset') { s.once('data', () => { reset++; s.resetAndDestroy(); }); return; }
      s.end();
    });
    s.on('data', (d) => { got += d.length; });
    s.on('end', () => {
      if (kind === 'echo') got === payload.length ? echoed++ : bad++;
      s.end();
    });
  });
}
(async () => {
  const workers = Array.from({ length: conc }, async () => { while (started < n) await one(started++); });
  await Promise.all(workers);
  console.log(JSON.stringify({ echoed, reset, empty, bad }));
})();
`;

interface ClientResult {
  echoed: number;
  reset: number;
  empty: number;
  bad: number;
}

async function connections(client: Host, n: number, conc: number): Promise<ClientResult> {
  const r = await client.run(process.execPath, ['-e', CLIENT, '10.76.1.2', String(PORT), String(n), String(conc)], {
    timeoutMs: 120_000,
  });
  return JSON.parse(r.stdout.trim()) as ClientResult;
}

/** The data-plane child of the supervisor `pid`. */
function dataPlanePid(pid: number): number {
  const children = readdirSync(`/proc/${pid}/task`).flatMap((t) =>
    readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean),
  );
  assert.equal(children.length, 1, `supervisor ${pid} should have one data-plane child, has ${children.join(',')}`);
  return Number(children[0]);
}

/** Descriptors of `pid` by kind: socket, pipe, anon_inode:[eventpoll], … */
function fdKinds(pid: number): Map<string, number> {
  const kinds = new Map<string, number>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const kind = target.replace(/:\[\d+\]$/, '').replace(/^\/.*/, 'file');
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
  }
  return kinds;
}

const show = (m: Map<string, number>): string => [...m].map(([k, v]) => `${k}=${v}`).join(' ');

async function settledFds(pid: number, ok: (k: Map<string, number>) => boolean): Promise<Map<string, number>> {
  const end = Date.now() + 8000;
  let k = fdKinds(pid);
  while (!ok(k) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 100));
    k = fdKinds(pid);
  }
  return k;
}

function connLines(proxy: LabProcess): string[] {
  return proxy
    .output()
    .split('\n')
    .filter((l) => / conn id=/.test(l));
}

for (const engine of ['js', 'splice'] as const) {
  test(`--relay ${engine}: ${CONNECTIONS} connections through the proxy leak no socket or pipe`, {
    skip: engine === 'splice' && !spliceAvailable() && 'splice(2) via koffi is not available here',
    timeout: 240_000,
  }, async () => {
    await withLab(async (lab) => {
      const client = lab.addHost('client');
      const server = lab.addHost('server');
      lab.link(client, server, { a: ['10.76.1.1/24'], b: ['10.76.1.2/24'] });
      await startPeer(server, 'tcp_echo', PORT, '0.0.0.0');
      const proxy = await startTranproxy(client, [
        'run',
        '--mode',
        'redirect',
        '--family',
        'ipv4',
        '-P',
        String(PORT),
        '--relay',
        engine,
      ]);
      const child = dataPlanePid(proxy.pid);

      // Warm-up: the splice engine's worker, epoll and eventfd exist from the first flow on.
      const warm = await connections(client, 100, 50);
      assert.equal(warm.bad, 0);
      const before = await settledFds(child, (k) => (k.get('socket') ?? 0) <= 4);
      const beforeTotal = fdCount(child);

      const r = await connections(client, CONNECTIONS, 50);
      assert.deepEqual(r, { echoed: 900, reset: 50, empty: 50, bad: 0 }, 'every echo connection got its bytes back');

      const after = await settledFds(child, (k) => (k.get('socket') ?? 0) === (before.get('socket') ?? 0));
      const detail = `before: ${show(before)}; after: ${show(after)}`;
      assert.equal(after.get('socket') ?? 0, before.get('socket') ?? 0, `socket descriptors leaked: ${detail}`);
      for (const kind of new Set([...before.keys(), ...after.keys()])) {
        if (kind === 'socket' || kind === 'pipe') continue;
        assert.equal(after.get(kind) ?? 0, before.get(kind) ?? 0, `${kind} descriptors changed: ${detail}`);
      }
      if (engine === 'js') {
        assert.equal(after.get('pipe') ?? 0, before.get('pipe') ?? 0, `pipe descriptors leaked: ${detail}`);
        assert.equal(fdCount(child), beforeTotal, detail);
      } else {
        // Pipes: at most the engine's reuse pool beyond what was open before.
        const extra = (after.get('pipe') ?? 0) - (before.get('pipe') ?? 0);
        assert.ok(
          extra <= PIPE_POOL_FDS,
          `pipe descriptors leaked (${extra} more, pool holds at most ${PIPE_POOL_FDS}): ${detail}`,
        );
      }

      // Every connection was logged, through the engine asked for, with its byte counts.
      const logEnd = Date.now() + 10_000;
      while (connLines(proxy).length < CONNECTIONS + 100 && Date.now() < logEnd)
        await new Promise((res) => setTimeout(res, 100));
      const lines = connLines(proxy);
      assert.equal(lines.length, CONNECTIONS + 100);
      const spliced = lines.filter((l) => / relay=splice/.test(l)).length;
      if (engine === 'js') assert.equal(spliced, 0);
      else assert.equal(spliced, CONNECTIONS + 100, 'every flow went through the splice engine');
      const echoedLines = lines.filter((l) => / up=8192 down=8192 .*close=eof/.test(l)).length;
      assert.ok(echoedLines >= 990, `byte counts in the log: ${echoedLines} lines with up=8192 down=8192`);
      assert.equal(await proxy.stop('SIGTERM'), 0);
    });
  });
}
