// Bulk TCP throughput of the relays on loopback, side by side in one run:
//   iperf3 -c → 127.0.0.1:A (a plain port-forward in a child process) → 127.0.0.1:B iperf3 -s
// forwarders: js (relay()), splice (relayAuto() with the splice engine), pipe (Node's
// stream pipe(), the DESIGN.md anchor), haproxy (if installed; `mode tcp`, nbthread 1),
// and no proxy at all. 1 and 4 parallel streams, each a fixed byte count (-n), repeated;
// the median is reported with the forwarder's CPU time per GB.
// No firewall, no root: the forward is non-transparent (fixed target).
//
// Run:   node --import tsx bench/zero-copy.bench.ts [--gb 2] [--reps 3] [--modes direct,js,splice,...]
//        [--splice-threads 1] [--pipe-size BYTES] [--reverse]
// Memory per idle proxied connection instead: --idle 5000
//        (a mode splice@<pipe KiB>x<threads>, e.g. splice@64x2, runs an engine variant)
// Child: node --import tsx bench/zero-copy.bench.ts --forward js|splice|pipe --listen A --to B
import net from 'node:net';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { relay } from '../src/relay/relay.js';
import { relayAuto } from '../src/relay/zero-copy.js';
import { createSpliceEngine, spliceAvailable } from '../src/relay/engine/engine.js';

const { values: args } = parseArgs({
  options: {
    forward: { type: 'string' },
    listen: { type: 'string' },
    to: { type: 'string' },
    gb: { type: 'string', default: '2' },
    reps: { type: 'string', default: '3' },
    modes: { type: 'string', default: 'direct,pipe,js,splice,haproxy' },
    streams: { type: 'string', default: '1,4' },
    'splice-threads': { type: 'string', default: '1' },
    'pipe-size': { type: 'string', default: String(1 << 20) },
    reverse: { type: 'boolean', default: false },
    idle: { type: 'string' },
    gc: { type: 'boolean', default: false },
  },
});

// ---- child: the forwarder ----

async function forwarder(mode: string, listenPort: number, toPort: number): Promise<void> {
  // splice[@<pipe KiB>][x<threads>], e.g. splice@64x2: variants run side by side.
  const variant = /^splice(?:@(\d+))?(?:x(\d+))?$/.exec(mode);
  if (variant && !spliceAvailable()) throw new Error('splice unavailable');
  const engine = variant
    ? createSpliceEngine({
        threads: Number(variant[2] ?? args['splice-threads']),
        pipeSize: variant[1] ? Number(variant[1]) << 10 : Number(args['pipe-size']),
      })
    : null;
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    client.on('error', () => {});
    const up = net.connect({ port: toPort, host: '127.0.0.1', allowHalfOpen: true });
    up.on('error', () => client.destroy());
    up.once('connect', () => {
      if (mode === 'pipe') {
        client.pipe(up);
        up.pipe(client);
        client.resume();
      } else if (mode === 'js') void relay(client, up, { idleTimeoutMs: 600_000 });
      else void relayAuto(client, up, { idleTimeoutMs: 600_000, engine });
    });
  });
  server.listen(listenPort, '127.0.0.1');
  await once(server, 'listening');
  // --gc (idle-memory runs, with --expose-gc): collect garbage often, so that RSS shows
  // what live connections hold rather than what the collector has not reclaimed yet.
  const gc = (globalThis as { gc?: () => void }).gc;
  if (args.gc && gc) setInterval(gc, 250).unref();
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => {
    server.close();
    void (engine?.close() ?? Promise.resolve()).then(() => process.exit(0));
  });
}

// ---- parent: the driver ----

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
    s.on('error', reject);
  });
}

async function waitLine(child: ChildProcess, line: string): Promise<void> {
  let buf = '';
  for await (const chunk of child.stdout!) {
    buf += String(chunk);
    if (buf.includes(line)) return;
  }
  throw new Error(`child exited before printing '${line}'`);
}

async function waitPort(port: number, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), r(true)));
      s.once('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** utime + stime of a process and all its threads, in seconds. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ
}

interface Proxy {
  port: number;
  pid: number | undefined;
  stop(): Promise<void>;
}

async function startProxy(mode: string, target: number, gc = false): Promise<Proxy> {
  if (mode === 'direct') return { port: target, pid: undefined, stop: async () => {} };
  const port = await freePort();
  let child: ChildProcess;
  let dir: string | undefined;
  if (mode === 'haproxy') {
    dir = mkdtempSync(join(tmpdir(), 'zc-haproxy-'));
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(
      cfg,
      `global\n    maxconn 9000\n    nbthread 1\n\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1h\n    timeout server 1h\n\n` +
        `listen fwd\n    bind 127.0.0.1:${port}\n    server s 127.0.0.1:${target}\n`,
    );
    child = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
    await waitPort(port);
  } else {
    child = spawn(
      process.execPath,
      [
        ...process.execArgv,
        ...(gc ? ['--expose-gc'] : []),
        new URL(import.meta.url).pathname,
        ...(gc ? ['--gc'] : []),
        '--forward',
        mode,
        '--listen',
        String(port),
        '--to',
        String(target),
        '--splice-threads',
        args['splice-threads']!,
        '--pipe-size',
        args['pipe-size']!,
      ],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    await waitLine(child, 'ready');
  }
  return {
    port,
    pid: child.pid,
    stop: async () => {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One iperf3 test; retried a few times, as iperf3's one-test-at-a-time server sometimes
 *  refuses a control connection while it still tears the previous test down. */
function iperf(port: number, streams: number, bytes: number): { gbps: number; bytes: number } {
  for (let attempt = 1; ; attempt++) {
    try {
      return iperfOnce(port, streams, bytes);
    } catch (e) {
      if (attempt >= 4) throw e;
      spawnSync('sleep', ['1']);
    }
  }
}

function iperfOnce(port: number, streams: number, bytes: number): { gbps: number; bytes: number } {
  const r = spawnSync(
    'iperf3',
    [
      '-c',
      '127.0.0.1',
      '-p',
      String(port),
      '-P',
      String(streams),
      '-n',
      String(bytes),
      '-J',
      ...(args.reverse ? ['-R'] : []),
    ],
    {
      encoding: 'utf8',
      timeout: 300_000,
    },
  );
  const j = JSON.parse(r.stdout || '{}') as {
    error?: string;
    end?: { sum_received?: { bits_per_second: number; bytes: number } };
  };
  if (j.error || !j.end?.sum_received) throw new Error(`iperf3: ${j.error ?? r.stderr ?? 'no result'}`);
  return { gbps: j.end.sum_received.bits_per_second / 1e9, bytes: j.end.sum_received.bytes };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function driver(): Promise<void> {
  const gb = Number(args.gb);
  const reps = Number(args.reps);
  const streamsList = args.streams!.split(',').map(Number);
  let modes = args.modes!.split(',');
  if (spawnSync('iperf3', ['--version']).error) throw new Error('iperf3 is needed (apt-get install iperf3)');
  if (modes.includes('haproxy') && spawnSync('haproxy', ['-v']).error) {
    console.log('# haproxy not installed: skipped');
    modes = modes.filter((m) => m !== 'haproxy');
  }
  if (modes.some((m) => m.startsWith('splice')) && !spliceAvailable()) {
    console.log('# splice unavailable: skipped');
    modes = modes.filter((m) => !m.startsWith('splice'));
  }
  const target = await freePort();
  const server = spawn('iperf3', ['-s', '-B', '127.0.0.1', '-p', String(target)], { stdio: 'ignore' });
  try {
    await waitPort(target);
    await new Promise((r) => setTimeout(r, 200));
    console.log(
      `# loopback bulk TCP, ${gb} GB per stream, median of ${reps}, ${args.reverse ? 'server → client (-R)' : 'client → server'}; splice threads ${args['splice-threads']}, pipe ${Number(args['pipe-size']) >> 10} KiB`,
    );
    console.log(
      `${'mode'.padEnd(12)} ${'streams'.padStart(7)} ${'Gbit/s'.padStart(8)} ${'runs'.padEnd(24)} ${'proxy CPU s/GB'.padStart(14)}`,
    );
    const table = new Map<string, number>();
    for (const streams of streamsList) {
      // Every forwarder runs for the whole round and the modes take turns within each
      // repetition, so that load from elsewhere on the machine spreads over all of them.
      const proxies = new Map<string, Proxy>();
      try {
        for (const mode of modes) proxies.set(mode, await startProxy(mode, target));
        const runs = new Map<string, number[]>(modes.map((m) => [m, []]));
        const cpu = new Map<string, number[]>(modes.map((m) => [m, []]));
        for (const mode of modes) iperf(proxies.get(mode)!.port, streams, 256 << 20); // warm-up
        for (let i = 0; i < reps; i++) {
          for (const mode of i % 2 ? [...modes].reverse() : modes) {
            const proxy = proxies.get(mode)!;
            const c0 = proxy.pid ? cpuSeconds(proxy.pid) : 0;
            const r = iperf(proxy.port, streams, Math.round(gb * streams * 2 ** 30));
            const c1 = proxy.pid ? cpuSeconds(proxy.pid) : 0;
            runs.get(mode)!.push(r.gbps);
            cpu.get(mode)!.push((c1 - c0) / (r.bytes / 2 ** 30));
          }
        }
        for (const mode of modes) {
          const m = median(runs.get(mode)!);
          table.set(`${mode}/${streams}`, m);
          const pid = proxies.get(mode)!.pid;
          console.log(
            `${mode.padEnd(12)} ${String(streams).padStart(7)} ${m.toFixed(2).padStart(8)} ${runs
              .get(mode)!
              .map((x) => x.toFixed(2))
              .join(' ')
              .padEnd(24)} ${pid ? median(cpu.get(mode)!).toFixed(3).padStart(14) : '-'.padStart(14)}`,
          );
        }
      } finally {
        for (const p of proxies.values()) await p.stop();
      }
    }
    for (const streams of streamsList) {
      const s = table.get(`splice/${streams}`);
      const ratios = ['js', 'pipe', 'haproxy', 'direct']
        .filter((m) => table.has(`${m}/${streams}`) && s !== undefined)
        .map((m) => `${(s! / table.get(`${m}/${streams}`)!).toFixed(2)}× ${m}`);
      if (ratios.length) console.log(`# splice, ${streams} stream(s): ${ratios.join(', ')}`);
    }
  } finally {
    server.kill('SIGTERM');
  }
}

/** Resident memory of a process, in KiB. */
function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** --idle N: memory per idle proxied connection (N held open through each forwarder). */
async function idleDriver(n: number): Promise<void> {
  let modes = args.modes!.split(',').filter((m) => m !== 'direct');
  if (modes.includes('haproxy') && spawnSync('haproxy', ['-v']).error) modes = modes.filter((m) => m !== 'haproxy');
  const held = new Set<net.Socket>();
  const upstream = net.createServer({ allowHalfOpen: true }, (s) => {
    held.add(s);
    s.on('error', () => {});
    s.on('close', () => held.delete(s));
    s.on('end', () => s.destroy());
    s.write('hi'); // a byte each way first, like a real connection
    s.on('data', () => {});
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const target = (upstream.address() as net.AddressInfo).port;
  console.log(`# memory per idle proxied connection, ${n} connections held open (forwarder RSS growth / N)`);
  try {
    for (const mode of modes) {
      const proxy = await startProxy(mode, target, true);
      const clients: net.Socket[] = [];
      try {
        await new Promise((r) => setTimeout(r, 500));
        const before = rssKiB(proxy.pid!);
        for (let i = 0; i < n; i += 100) {
          await Promise.all(
            Array.from({ length: Math.min(100, n - i) }, async () => {
              const c = net.connect({ port: proxy.port, host: '127.0.0.1' });
              c.on('error', () => {});
              clients.push(c);
              await once(c, 'connect');
              c.write('x');
              await once(c, 'data');
            }),
          );
        }
        await new Promise((r) => setTimeout(r, 2000));
        const after = rssKiB(proxy.pid!);
        console.log(
          `${mode.padEnd(12)} ${(((after - before) * 1024) / n / 1024).toFixed(2).padStart(8)} KiB/conn   (RSS ${before} → ${after} KiB)`,
        );
      } finally {
        for (const c of clients) c.destroy();
        await proxy.stop();
        while (held.size > 0) await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    upstream.close();
  }
}

if (args.forward) await forwarder(args.forward, Number(args.listen), Number(args.to));
else if (args.idle) await idleDriver(Number(args.idle));
else await driver();
