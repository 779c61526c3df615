// Soak test (not run in CI): `npm run soak -- --minutes 30 [--sample-seconds 60]`, as root.
//
// Builds its own lab of network namespaces, runs two proxies and mixed traffic through them
// for N minutes, samples each data-plane worker's RSS and fds and the clients' counters
// every sample period, prints a summary table, and exits non-zero on any client error, a
// restarted worker, descriptors not back to their idle baseline, or RSS growth.
//
//   app ──────────── server     REDIRECT sidecar (-H X-Soak: 1): HTTP keep-alive with
//                      │        injection, bulk 4 MiB echoes, short connections
//   lan ── gw ─────────┘        TPROXY gateway (--udp): short connections, UDP echoes
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Lab, type Host, type LabProcess } from '../src/netlab/lab.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const BIN = `${ROOT}dist/cli/main.js`;
const peer = (name: string) => `${ROOT}test/peers/${name}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Options {
  minutes: number;
  sampleSeconds: number;
  /** RSS at the end may be at most this many times the first sample. */
  rssFactor: number;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { minutes: 30, sampleSeconds: 60, rssFactor: 1.5 };
  for (let i = 0; i < argv.length; i++) {
    const v = Number(argv[i + 1]);
    if (argv[i] === '--minutes' && v > 0) o.minutes = v;
    else if (argv[i] === '--sample-seconds' && v > 0) o.sampleSeconds = v;
    else if (argv[i] === '--rss-factor' && v > 1) o.rssFactor = v;
    else if (argv[i] === '--help' || argv[i] === '-h') {
      console.log('usage: npm run soak -- [--minutes 30] [--sample-seconds 60] [--rss-factor 1.5]   (as root)');
      process.exit(0);
    } else continue;
    i++;
  }
  return o;
}

function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      out.push(...readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number));
    } catch {
      /* thread gone */
    }
  }
  return out;
}

function rssMiB(pid: number): number {
  const kib = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  return Math.round(kib / 102.4) / 10;
}

const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

interface Proxy {
  name: string;
  host: Host;
  proc: LabProcess;
  worker: number;
  idleFds: number;
}

async function startProxy(name: string, host: Host, args: string[]): Promise<Proxy> {
  const proc = host.spawn(process.execPath, [BIN, 'run', ...args]);
  await proc.waitForOutput(/^tranproxy:? ready:.*$/m, 30_000);
  const [worker] = childPids(proc.pid);
  if (!worker) throw new Error(`${name}: no data-plane worker`);
  await sleep(500);
  return { name, host, proc, worker, idleFds: fds(worker) };
}

async function startPeer(host: Host, args: string[]): Promise<LabProcess> {
  const p = host.spawn('python3', ['-u', ...args]);
  await p.waitForOutput(/^listening .*$/m);
  return p;
}

type Counters = Record<string, { ok: number; err: number; bytes?: number }> & { errors?: Record<string, number> };

function lastStats(p: LabProcess): Counters {
  const lines = p.output().match(/^stats .*$/gm);
  return lines ? (JSON.parse(lines[lines.length - 1]!.slice(6)) as Counters) : {};
}

interface Row {
  minute: string;
  cells: Record<string, string>;
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) {
    console.error('soak: needs root (network namespaces, firewall rules); run it with sudo');
    return 2;
  }
  const lab = await Lab.create({ prefix: 'soak' });
  const problems: string[] = [];
  try {
    const app = lab.addHost('app');
    const lan = lab.addHost('lan');
    const gw = lab.addHost('gw');
    const server = lab.addHost('server');
    lab.link(app, server, { a: ['10.91.1.1/24'], b: ['10.91.1.2/24'] });
    const lanLink = lab.link(lan, gw, { a: ['10.91.2.2/24'], b: ['10.91.2.1/24'] });
    lab.link(gw, server, { a: ['10.91.3.1/24'], b: ['10.91.3.2/24'] });
    lan.addRoute('default', '10.91.2.1');
    server.addRoute('10.91.2.0/24', '10.91.3.1'); // replies to the LAN's own addresses (TPROXY keeps them)

    await startPeer(server, [peer('echo_headers.py'), '80', '0.0.0.0']);
    await startPeer(server, [peer('echo_async.py'), '7000', '0.0.0.0']);
    await startPeer(server, [peer('udp_echo.py'), '5353', '0.0.0.0']);

    const sidecar = await startProxy('sidecar', app, [
      '-P',
      '80',
      '-P',
      '7000',
      '--family',
      'ipv4',
      '-H',
      'X-Soak: 1',
      '--idle-timeout',
      '60s',
    ]);
    const gateway = await startProxy('gateway', gw, [
      '--mode',
      'tproxy',
      '--capture',
      'prerouting',
      '-i',
      lanLink.b,
      '--family',
      'ipv4',
      '--no-bypass-private',
      '-P',
      '7000',
      '-P',
      '5353',
      '--udp',
      '--proxy-user',
      'none',
      '--idle-timeout',
      '60s',
      '--udp-idle-timeout',
      '10s',
    ]);
    const proxies = [sidecar, gateway];

    const appTraffic = {
      http: { host: '10.91.1.2', port: 80, conns: 8, header: 'X-Soak: 1' },
      bulk: { host: '10.91.1.2', port: 7000, conns: 2, bytes: 4 << 20 },
      short: { host: '10.91.1.2', port: 7000, conns: 4 },
    };
    const lanTraffic = {
      short: { host: '10.91.3.2', port: 7000, conns: 4 },
      udp: { host: '10.91.3.2', port: 5353, rate: 20 },
    };
    const exited = (c: LabProcess) =>
      new Promise<void>((r) => (c.child.exitCode !== null ? r() : c.child.once('exit', () => r())));

    // Warm-up: the relay engines start their threads, pipes and event fds on first use.
    // The idle baseline is taken after it, once UDP flows have expired.
    const warm = (cfg: object) => [
      peer('soak_client.mjs'),
      JSON.stringify({ ...cfg, durationMs: 5000, reportMs: 5000 }),
    ];
    await Promise.all(
      [app.spawn(process.execPath, warm(appTraffic)), lan.spawn(process.execPath, warm(lanTraffic))].map(exited),
    );
    await sleep(13_000);
    for (const p of proxies) p.idleFds = fds(p.worker);

    const durationMs = o.minutes * 60_000;
    const reportMs = o.sampleSeconds * 1000;
    const clientArgs = (cfg: object) => [peer('soak_client.mjs'), JSON.stringify({ ...cfg, durationMs, reportMs })];
    const appClient = app.spawn(process.execPath, clientArgs(appTraffic));
    const lanClient = lan.spawn(process.execPath, clientArgs(lanTraffic));
    console.log(
      `soak: ${o.minutes} min of mixed traffic, a sample every ${o.sampleSeconds} s; idle worker fds after warm-up: sidecar ${sidecar.idleFds}, gateway ${gateway.idleFds}`,
    );

    const rows: Row[] = [];
    const firstRss: Record<string, number> = {};
    const started = Date.now();
    const sample = () => {
      const cells: Record<string, string> = {};
      for (const p of proxies) {
        const alive = childPids(p.proc.pid);
        if (!alive.includes(p.worker)) {
          problems.push(`${p.name}: worker ${p.worker} gone (now ${alive.join(',') || 'none'})`);
          continue;
        }
        const rss = rssMiB(p.worker);
        firstRss[p.name] ??= rss;
        cells[`${p.name} rss`] = `${rss} MiB`;
        cells[`${p.name} fds`] = String(fds(p.worker));
      }
      const a = lastStats(appClient);
      const l = lastStats(lanClient);
      cells['http ok/err'] = `${a.http?.ok ?? 0}/${a.http?.err ?? 0}`;
      cells['bulk MiB/err'] = `${Math.round((a.bulk?.bytes ?? 0) / 1048576)}/${a.bulk?.err ?? 0}`;
      cells['short ok/err'] = `${(a.short?.ok ?? 0) + (l.short?.ok ?? 0)}/${(a.short?.err ?? 0) + (l.short?.err ?? 0)}`;
      cells['udp ok/lost'] = `${l.udp?.ok ?? 0}/${l.udp?.err ?? 0}`;
      rows.push({ minute: ((Date.now() - started) / 60_000).toFixed(1), cells });
      console.log(
        `t=${rows[rows.length - 1]!.minute} min  ${Object.entries(cells)
          .map(([k, v]) => `${k}=${v}`)
          .join('  ')}`,
      );
    };
    // Sample just after each client report (reports come every sample period).
    for (let t = reportMs; t <= durationMs; t += reportMs) {
      await sleep(Math.max(0, started + t + 1500 - Date.now()));
      sample();
    }
    await Promise.all([appClient, lanClient].map((c) => c.waitForOutput(/^stats .*$/m, 60_000)));
    await Promise.all([appClient, lanClient].map(exited));

    // Idle again (UDP flows expire after 10 s): every worker back to its warm idle baseline.
    await sleep(3000);
    const after: Record<string, number> = {};
    for (const p of proxies) {
      const deadline = Date.now() + 30_000;
      while (fds(p.worker) > p.idleFds && Date.now() < deadline) await sleep(500);
      after[p.name] = fds(p.worker);
      if (after[p.name]! > p.idleFds)
        problems.push(`${p.name}: ${after[p.name]} fds after the traffic stopped, ${p.idleFds} before (leak)`);
    }
    const finalA = lastStats(appClient);
    const finalL = lastStats(lanClient);
    for (const [who, s] of [
      ['app', finalA],
      ['lan', finalL],
    ] as const) {
      for (const [kind, c] of Object.entries(s)) {
        if (kind === 'errors') continue;
        const cc = c as { ok: number; err: number };
        if (cc.err > 0) problems.push(`${who} ${kind}: ${cc.err} errors ${JSON.stringify(s.errors ?? {})}`);
        if (cc.ok === 0) problems.push(`${who} ${kind}: nothing succeeded`);
      }
    }
    for (const p of proxies) {
      const first = firstRss[p.name];
      const last = rows.length ? Number(rows[rows.length - 1]!.cells[`${p.name} rss`]?.split(' ')[0]) : NaN;
      if (first !== undefined && last > first * o.rssFactor)
        problems.push(`${p.name}: RSS grew from ${first} to ${last} MiB (more than ×${o.rssFactor})`);
    }

    // Summary table.
    const cols = ['minute', ...Object.keys(rows[0]?.cells ?? {})];
    const table = rows.map((r) => [r.minute, ...cols.slice(1).map((c) => r.cells[c] ?? '-')]);
    const width = cols.map((c, i) => Math.max(c.length, ...table.map((r) => r[i]!.length)));
    const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(width[i]!)).join(' | ')} |`;
    console.log(`\n${line(cols)}`);
    console.log(`|${width.map((w) => '-'.repeat(w + 2)).join('|')}|`);
    for (const r of table) console.log(line(r));
    for (const p of proxies) {
      const reasons: Record<string, number> = {};
      for (const m of p.proc.output().matchAll(/^tranproxy: conn .* close=(\S+)(?: relay=(\S+))?/gm)) {
        const k = `${m[1]}${m[2] ? `/${m[2]}` : ''}`;
        reasons[k] = (reasons[k] ?? 0) + 1;
      }
      console.log(
        `${p.name} connections by close reason/relay: ${
          Object.entries(reasons)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ') || 'none logged'
        }`,
      );
    }
    console.log(
      `\nworker fds idle before → after: ${proxies.map((p) => `${p.name} ${p.idleFds} → ${after[p.name]}`).join(', ')}`,
    );
    console.log(
      `totals: http ${finalA.http?.ok ?? 0} ok, bulk ${Math.round((finalA.bulk?.bytes ?? 0) / 1048576)} MiB in ${finalA.bulk?.ok ?? 0} echoes, short ${(finalA.short?.ok ?? 0) + (finalL.short?.ok ?? 0)}, udp ${finalL.udp?.ok ?? 0} answered`,
    );
    for (const p of proxies) await p.proc.stop('SIGTERM');
  } catch (e) {
    problems.push(`soak aborted: ${(e as Error).message}`);
  } finally {
    await lab.destroy();
  }
  if (problems.length) {
    console.log(`\nFAIL:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    return 1;
  }
  console.log('\nOK: no errors, no descriptor leak, RSS flat');
  return 0;
}

process.exit(await main());
