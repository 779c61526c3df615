// No descriptor leaks in the splice engine: 1,000 sequential and 200 concurrent proxied
// connections (clean closes, resets, idle timeouts) on loopback, then this process's
// /proc/self/fd count is back where it started. No root needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { readdirSync, readlinkSync } from 'node:fs';
import { createSpliceEngine, spliceAvailable, type SpliceEngine } from '../../src/relay/engine/engine.js';
import type { RelayResult } from '../../src/relay/relay.js';
import { steady, until } from '../helpers/wait.js';

const skip = !spliceAvailable() && 'splice(2) via koffi is not available here';

const fdCount = (): number => readdirSync('/proc/self/fd').length;
const fdList = (): string[] =>
  readdirSync('/proc/self/fd').map((f) => {
    try {
      return `${f} → ${readlinkSync(`/proc/self/fd/${f}`)}`;
    } catch {
      return f;
    }
  });

/** Waits (a while) for the descriptor count to reach `want`: other threads open and close some briefly. */
async function expectFds(want: number, before: string[], what: string): Promise<void> {
  const end = Date.now() + 5000;
  while (fdCount() !== want && Date.now() < end) await settle(50);
  const now = fdList();
  assert.equal(
    now.length,
    want,
    `${what}: new ${JSON.stringify(now.filter((x) => !before.includes(x)))}, gone ${JSON.stringify(before.filter((x) => !now.includes(x)))}`,
  );
}

/** A few connections through every worker, so that each has loaded and settled. */
async function warmUp(engine: SpliceEngine): Promise<void> {
  const r = await rig(engine, 5000);
  try {
    await Promise.all(Array.from({ length: 4 }, () => client(r.port, 1000, 'clean')));
    await until(
      () => `${engine.active} active`,
      () => engine.active === 0 && r.liveServerSockets() === 0,
    );
  } finally {
    await r.close();
  }
  await steady('the fd count after the warm-up', fdCount);
}

const settle = (ms = 50): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Rig {
  port: number;
  results: RelayResult[];
  liveServerSockets: () => number;
  close(): Promise<void>;
}

/** Echo upstream + proxy relaying through `engine`. */
async function rig(engine: SpliceEngine, idleTimeoutMs: number): Promise<Rig> {
  const serverSockets = new Set<net.Socket>();
  const upstream = net.createServer({ allowHalfOpen: true }, (s) => {
    serverSockets.add(s);
    s.on('close', () => serverSockets.delete(s));
    s.on('error', () => {});
    s.on('data', (d: Buffer) => s.write(d));
    s.on('end', () => s.end());
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const results: RelayResult[] = [];
  const proxy = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    client.on('error', () => {});
    const up = net.connect({
      port: (upstream.address() as net.AddressInfo).port,
      host: '127.0.0.1',
      allowHalfOpen: true,
    });
    up.on('error', () => client.destroy());
    up.once('connect', () => void engine.relay(client, up, { idleTimeoutMs }).then((r) => results.push(r)));
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  return {
    port: (proxy.address() as net.AddressInfo).port,
    results,
    liveServerSockets: () => serverSockets.size,
    close: async () => {
      await Promise.all([new Promise((r) => proxy.close(r)), new Promise((r) => upstream.close(r))]);
    },
  };
}

type Kind = 'clean' | 'reset' | 'idle';

/** One client: sends `size` bytes, reads the echo, then closes the way `kind` says. */
async function client(port: number, size: number, kind: Kind): Promise<void> {
  const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  c.on('error', () => {});
  await once(c, 'connect');
  let got = 0;
  const echoed = new Promise<void>((resolve) =>
    c.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= size) resolve();
    }),
  );
  c.write(Buffer.alloc(size, 7));
  await echoed;
  if (kind === 'clean') {
    const ended = once(c, 'end');
    c.end();
    await ended;
    c.destroy();
  } else if (kind === 'reset') c.resetAndDestroy();
  else {
    // Leave it to the engine's idle timeout, which closes it (FIN).
    await once(c, 'end');
    c.destroy();
  }
  if (!c.closed) await once(c, 'close');
}

const kindOf = (i: number): Kind => (i % 10 === 3 ? 'reset' : i % 50 === 7 ? 'idle' : 'clean');

async function exercise(engine: SpliceEngine, idleTimeoutMs: number): Promise<void> {
  const r = await rig(engine, idleTimeoutMs);
  try {
    for (let i = 0; i < 1000; i++) await client(r.port, 1 + ((i * 7919) % 65_536), kindOf(i));
    await Promise.all(Array.from({ length: 200 }, (_, i) => client(r.port, 1 + ((i * 104_729) % 300_000), kindOf(i))));
    await until(
      () => `${r.results.length} results, ${engine.active} active, ${r.liveServerSockets()} upstream sockets`,
      () => r.results.length === 1200 && engine.active === 0 && r.liveServerSockets() === 0,
    );
    const reasons = new Map<string, number>();
    for (const x of r.results) reasons.set(x.reason, (reasons.get(x.reason) ?? 0) + 1);
    assert.equal(reasons.get('idle'), 24, `reasons: ${JSON.stringify([...reasons])}`);
    assert.equal(reasons.get('client-error'), 120, `reasons: ${JSON.stringify([...reasons])}`);
    assert.equal(reasons.get('eof'), 1200 - 144, `reasons: ${JSON.stringify([...reasons])}`);
  } finally {
    await r.close();
  }
}

test('1,000 sequential + 200 concurrent connections leave no descriptor behind (no pipe pool)', {
  skip,
  timeout: 180_000,
}, async () => {
  // A first engine, started and closed, so that Node's own lazily opened descriptors exist.
  const first = createSpliceEngine({ threads: 1 });
  await warmUp(first);
  await first.close();
  await steady('the fd count after the first engine closed', fdCount);
  const before = fdList();
  const engine = createSpliceEngine({ threads: 2, pipePool: 0 });
  await warmUp(engine);
  const withEngine = fdList();
  await exercise(engine, 300);
  // With no pool, the engine holds nothing per connection once connections are gone.
  await expectFds(withEngine.length, withEngine, 'descriptors while the engine runs, after every connection closed');
  await engine.close();
  await expectFds(before.length, before, 'descriptors after engine.close()');
});

test('with the default pipe pool: pooled pipes only, all closed by engine.close()', {
  skip,
  timeout: 180_000,
}, async () => {
  const before = fdList();
  const engine = createSpliceEngine({ threads: 1 });
  await warmUp(engine);
  const withEngine = fdCount();
  await exercise(engine, 300);
  const held = (await steady("the pool's fd count", fdCount)) - withEngine;
  assert.ok(held >= 0 && held <= 2 * 64, `${held} descriptors held by the pool (at most 64 pipes)`);
  assert.equal(held % 2, 0, 'pipes come in pairs');
  await engine.close();
  await expectFds(before.length, before, 'descriptors after engine.close()');
});
