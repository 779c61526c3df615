// What every benchmark case shares: the lab's addresses and ports, starting tranproxy and the
// anchors (HAProxy, nginx) as RunningProxy, iperf3 and wrk, and the alternating round loop.
import os from 'node:os';
import { chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Host, Lab, LabProcess } from '../../src/netlab/lab.js';
import { type HaproxyOpts, nginxServer } from './configs.js';
import { parseIperf, parseWrk, type IperfResult, type WrkResult } from './parse.js';
import {
  cpuSeconds,
  descendants,
  fdCount,
  memOf,
  readLog,
  sleep,
  startLogged,
  waitForListen,
  waitForLog,
} from './proc.js';
import { record, type CaseResult } from './report.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
// BENCH_DIST: run a snapshot of dist/ (others may rebuild dist/ during a long run on a shared tree).
export const MAIN = join(process.env.BENCH_DIST ?? join(ROOT, 'dist'), 'cli/main.js');
export const NODE = process.execPath;

// Documentation ranges (RFC 5737), only ever inside the lab's own namespaces: a gateway's
// default capture excludes private destinations (10/8, 192.168/16, …), these it captures.
export const ADDR = {
  cli: '192.0.2.1',
  srv: '192.0.2.2',
  tcli: '198.51.100.1',
  gwLan: '198.51.100.2',
  gwWan: '203.0.113.1',
  tsrv: '203.0.113.2',
} as const;
export const PORT = { iperf: 5201, http: 80, hold: 7000, tranproxy: 15001, haproxy: 15002, nginx: 15004 } as const;
export const UID = { tranproxy: 1337, haproxy: 1338, nginx: 1339 } as const;

export type CaseId = 'a' | 'b' | 'c' | 'd' | 'e' | 'f' | 'g' | 'h' | 'i' | 'j' | 'k' | 'l' | 'm' | 'n';

export interface Options {
  quick: boolean;
  only: Set<CaseId>;
  rounds: number;
  iperfSecs: number;
  wrkSecs: number;
  holdCount: number;
  out: string;
  keepLogs: boolean;
  profile: boolean;
}

// ---------------------------------------------------------------------------------------------
// Proxies

export interface RunningProxy {
  /** Every process of the proxy (CPU and RSS are summed over these). */
  pids: number[];
  /** The process that relays (tranproxy's data-plane child, HAProxy itself, nginx's worker). */
  dataPid: number;
  /** Where the proxy logs its errors (nginx's error.log), for failure notes. */
  errorLog?: string;
  stop(): Promise<void>;
}

export interface VariantDef {
  key: string;
  label: string;
  detail: string;
  /** undefined: no proxy. */
  start?: () => Promise<RunningProxy>;
  /** Only in these cases (default: every case of its group). */
  only?: CaseId[];
  /** Adds no headers (a plain TCP relay). */
  plain?: boolean;
}

let TMP = '';
let seq = 0;
/** The run's scratch directory (configs, logs), made by main(). */
export const tmpDir = (): string => TMP;
/** A fresh number for file names in the scratch directory. */
export const nextSeq = (): number => ++seq;
export function setTmpDir(dir: string): void {
  TMP = dir;
}
export const logPath = (name: string): string => join(TMP, `${String(++seq).padStart(3, '0')}-${name}.log`);

export async function tranproxyCli(host: Host, args: string[]): Promise<void> {
  await host.run(NODE, [MAIN, ...args], { timeoutMs: 30_000 });
}

export async function rulesRemove(host: Host): Promise<void> {
  await host.run(NODE, [MAIN, 'rules', 'remove'], { allowFailure: true, timeoutMs: 30_000 });
}

/** CPUs: tranproxy's `--workers`, nginx's `worker_processes auto`, HAProxy's default nbthread. */
export const NPROC = os.availableParallelism();
/** Flags every tranproxy run gets: one data-plane process per CPU, like the anchors at their best. */
let TP_COMMON: string[] = [];
export function setTpCommon(args: string[]): void {
  TP_COMMON = args;
}
export const tpCommon = (): string[] => TP_COMMON;

/** Capture of `port` to `listen` (IPv4), as `tranproxy run` and `rules apply` spell it; TPROXY on the gateway's PREROUTING. */
export const captureArgs = (port: number, listen: number, mode: 'redirect' | 'tproxy' = 'redirect'): string[] => [
  ...(mode === 'tproxy' ? ['--mode', 'tproxy', '--capture', 'prerouting'] : []),
  ...['-P', String(port), '--family', 'ipv4', '--listen-port', String(listen)],
];

/** An anchor's REDIRECT rules: its own uid excluded from capture, `port` sent to its `listen` port. */
export const anchorRules = (uid: number, port: number, listen: number): string[] => [
  ...['--proxy-user', `${uid}:${uid}`],
  ...captureArgs(port, listen),
];

const THREE_HEADERS = ['-H', 'a:1', '-H', 'b:2', '-H', 'c:3'];

export const TP = {
  redirect: () => [...captureArgs(PORT.iperf, PORT.tranproxy), ...TP_COMMON],
  tproxy: () => [...captureArgs(PORT.iperf, PORT.tranproxy, 'tproxy'), ...TP_COMMON],
  http: () => [...captureArgs(PORT.http, PORT.tranproxy), ...THREE_HEADERS, ...TP_COMMON],
  /** Port 80 without header injection: a plain TCP relay (the splice engine under --relay auto). */
  httpPlain: () => [...captureArgs(PORT.http, PORT.tranproxy), ...TP_COMMON],
  /** Held connections, inspected: the same 3 headers as the HTTP cases. */
  hold: () => [...captureArgs(PORT.hold, PORT.tranproxy), '--max-connections', '9000', ...THREE_HEADERS, ...TP_COMMON],
  /** The same, as the sidecar's one process runs it (its default: one engine thread). */
  holdOne: () => [...captureArgs(PORT.hold, PORT.tranproxy), '--max-connections', '9000', ...THREE_HEADERS],
};
export const tpCmd = (args: string[]): string => `\`tranproxy run ${args.join(' ')}\``;

/** `tranproxy run ARGS` in `host`; ready when it prints its ready line (rules applied). */
export async function startTranproxy(host: Host, args: string[], env?: NodeJS.ProcessEnv): Promise<RunningProxy> {
  const log = logPath('tranproxy');
  // BENCH_TRANPROXY_NODE_OPTIONS: V8 flags for tranproxy's processes (experiments).
  const nodeOpts = process.env.BENCH_TRANPROXY_NODE_OPTIONS;
  const e = nodeOpts ? { ...env, NODE_OPTIONS: `${env?.NODE_OPTIONS ?? ''} ${nodeOpts}`.trim() } : env;
  const p = startLogged(host, log, NODE, [MAIN, 'run', ...args], e ? { env: e } : {});
  try {
    await waitForLog(p, log, /^tranproxy:? ready:.*$/m, 20_000);
  } catch (e) {
    await p.stop();
    await rulesRemove(host);
    throw e;
  }
  const kids = descendants(p.pid);
  // The data plane: the child holding the listeners (most fds), should there be other children.
  const data = kids.reduce((best, k) => (fdCount(k) > fdCount(best) ? k : best), kids[0] ?? p.pid);
  return {
    pids: [p.pid, ...kids],
    dataPid: data,
    stop: async () => {
      await p.stop('SIGTERM');
      await rulesRemove(host); // in case the supervisor was killed before removing its rules
    },
  };
}

/** HAProxy in the foreground (-db) as `uid` (undefined: root); then `tranproxy rules apply RULES`. */
export async function startHaproxy(
  host: Host,
  config: string,
  listenPort: number,
  uid: number | undefined,
  rules: string[],
): Promise<RunningProxy> {
  const cfg = join(TMP, `haproxy-${++seq}.cfg`);
  writeFileSync(cfg, config, { mode: 0o644 });
  const log = logPath('haproxy');
  const p = startLogged(host, log, 'haproxy', ['-db', '-f', cfg], uid === undefined ? {} : { uid, gid: uid });
  try {
    await waitForListen(host, listenPort, p, log);
    await tranproxyCli(host, ['rules', 'apply', ...rules]);
  } catch (e) {
    await rulesRemove(host);
    await p.stop();
    throw e;
  }
  return {
    pids: [p.pid],
    dataPid: p.pid,
    stop: async () => {
      await rulesRemove(host);
      await p.stop();
    },
  };
}

/** nginx (master + 1 worker) as `uid`, with its own prefix directory; then the rules. */
export async function startNginx(
  host: Host,
  name: string,
  config: (prefix: string) => string,
  listenPort: number,
  uid: number,
  rules: string[],
): Promise<RunningProxy> {
  const prefix = join(TMP, `nginx-${name}-${++seq}`);
  mkdirSync(prefix);
  chownSync(prefix, uid, uid);
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(conf, config(prefix), { mode: 0o644 });
  const log = logPath(`nginx-${name}`);
  const p = startLogged(host, log, 'nginx', ['-p', prefix, '-c', conf, '-e', join(prefix, 'error.log')], {
    uid,
    gid: uid,
  });
  let workers: number[] = [];
  try {
    await waitForListen(host, listenPort, p, log);
    for (let i = 0; i < 50 && workers.length === 0; i++) {
      workers = descendants(p.pid);
      if (workers.length === 0) await sleep(50);
    }
    await tranproxyCli(host, ['rules', 'apply', ...rules]);
  } catch (e) {
    await rulesRemove(host);
    await p.stop();
    throw new Error(`${(e as Error).message}\nnginx error.log:\n${readLog(join(prefix, 'error.log')).slice(-1500)}`);
  }
  return {
    pids: [p.pid, ...workers],
    dataPid: workers[0] ?? p.pid,
    errorLog: join(prefix, 'error.log'),
    stop: async () => {
      await rulesRemove(host);
      await p.stop('SIGQUIT');
    },
  };
}

export const cpuOf = (proxy: RunningProxy | undefined): number =>
  proxy ? proxy.pids.reduce((s, pid) => s + cpuSeconds(pid), 0) : 0;

export const HAPROXY = 'HAProxy 2.6';
export const BEST_HAPROXY = { key: 'haproxy-best', label: 'best HAProxy' };

/**
 * HAProxy at its best, as two variants: default threads (one per CPU), and the same with
 * splice(2) forced both ways; `addBestOf` later reports the better of the two per metric.
 */
export function haproxyPair(
  base: Omit<VariantDef, 'start'> & { start: (o: HaproxyOpts) => Promise<RunningProxy> },
): VariantDef[] {
  return [
    { ...base, detail: `${base.detail}; default threads (${NPROC})`, start: () => base.start({}) },
    {
      ...base,
      key: `${base.key}-splice`,
      label: `${base.label}, splice`,
      detail: `${base.detail}; default threads (${NPROC}), \`option splice-request\` + \`option splice-response\`, \`maxpipes 900\``,
      start: () => base.start({ splice: true }),
    },
  ];
}

/** Idle memory columns: smaps_rollup summed over every process of the variant. */
export const MEM_METRICS = [
  { key: 'rss', label: 'idle RSS MB', better: 'lower' as const },
  { key: 'pss', label: 'idle PSS MB', better: 'lower' as const },
  { key: 'anon', label: 'idle anon MB', better: 'lower' as const },
];

export function recordIdleMemory(c: CaseResult, variant: string, round: number, proxy: RunningProxy | undefined): void {
  if (!proxy) return;
  const m = memOf(proxy.pids);
  record(c, 'rss', variant, round, m.rss / 1024);
  record(c, 'pss', variant, round, m.pss / 1024);
  record(c, 'anon', variant, round, m.anon / 1024);
}

/** Why the splicing HAProxy variant forces splice instead of `option splice-auto`. */
export const SPLICE_NOTE =
  'HAProxy "splice" forces splice(2) both ways (`option splice-request`, `option splice-response`): with `option splice-auto`, HAProxy 2.6 made no splice(2) ' +
  'call at all in this lab — `perf stat -e syscalls:sys_enter_splice,syscalls:sys_enter_recvfrom -p PID` over a 3 s iperf3 through it counted 0 splice and ' +
  '54–64k recvfrom, and 2.3–2.8 Gbit/s; forced, 46–54k splice and 2 recvfrom, 4.0–4.7 Gbit/s — so splice-auto is the default-threads row again.';

export const CPU_PER_K_NOTE =
  "CPU s per 1k: utime+stime of every process and thread of the proxy during the measured wrk run, per 1,000 requests (with `Connection: close`, per 1,000 connections): what the proxy costs per unit of work, whatever share of the machine's 2 CPUs it got.";
export const MEM_NOTE =
  'Memory: /proc/PID/smaps_rollup (Rss, Pss, Anonymous) summed over every process of the variant (tranproxy: supervisor + data-plane children; ' +
  "nginx: master + workers; HAProxy: its one process), read right after it is ready, before the load. nginx's workers share copy-on-write anonymous pages " +
  'with their master, so its summed anon counts them twice; PSS does not.';

// ---------------------------------------------------------------------------------------------
// Load generators

export interface IperfServer {
  proc: LabProcess;
  log: string;
}

export async function startIperfServer(host: Host): Promise<IperfServer> {
  const log = logPath(`iperf3-server-${host.name}`);
  const proc = startLogged(host, log, 'iperf3', ['-s', '-p', String(PORT.iperf), '--forceflush']);
  await waitForListen(host, PORT.iperf, proc, log);
  return { proc, log };
}

/** One iperf3 test; on a failure the server is restarted and the test tried once more. */
export async function iperf(
  client: Host,
  server: Host,
  srv: IperfServer,
  dst: string,
  streams: number,
  secs: number,
): Promise<IperfResult> {
  const args = [
    '-c',
    dst,
    '-p',
    String(PORT.iperf),
    '-t',
    String(secs),
    '-P',
    String(streams),
    '-J',
    '--connect-timeout',
    '3000',
  ];
  let lastError = '';
  for (let attempt = 0; attempt < 2; attempt++) {
    const r = await client.run('iperf3', args, { allowFailure: true, timeoutMs: secs * 1000 + 30_000 });
    try {
      return parseIperf(r.stdout);
    } catch (e) {
      lastError = `${(e as Error).message}${r.stderr ? ` (${r.stderr.trim().slice(0, 300)})` : ''}`;
      await srv.proc.stop();
      Object.assign(srv, await startIperfServer(server));
    }
  }
  throw new Error(lastError);
}

export async function wrk(client: Host, url: string, secs: number, close: boolean): Promise<WrkResult> {
  const args = [
    '-t1',
    '-c50',
    `-d${secs}s`,
    '--latency',
    '--timeout',
    '5s',
    ...(close ? ['-H', 'Connection: close'] : []),
    url,
  ];
  const r = await client.run('wrk', args, { allowFailure: true, timeoutMs: secs * 1000 + 30_000 });
  if (r.status !== 0) throw new Error(`wrk failed (${r.status}): ${r.stderr || r.stdout}`);
  return parseWrk(r.stdout);
}

// ---------------------------------------------------------------------------------------------
// Cases

export interface Ctx {
  opts: Options;
  lab: Lab;
  cli?: Host;
  srv?: Host;
  tcli?: Host;
  gw?: Host;
  tsrv?: Host;
  log: (line: string) => void;
}

/** Runs `body` for every variant, round after round, each round starting one later (A B C, B C A, …). A failure is recorded, not fatal. */
export async function alternate(
  ctx: Ctx,
  c: CaseResult,
  variants: VariantDef[],
  body: (v: VariantDef, proxy: RunningProxy | undefined, round: number) => Promise<void>,
): Promise<void> {
  for (let round = 1; round <= ctx.opts.rounds; round++) {
    // Each round starts with the next variant, so none is always the first after a pause.
    const turn = (round - 1) % variants.length;
    for (const v of [...variants.slice(turn), ...variants.slice(0, turn)]) {
      let proxy: RunningProxy | undefined;
      try {
        proxy = v.start ? await v.start() : undefined;
        await body(v, proxy, round);
      } catch (e) {
        const msg = `round ${round}, ${v.label}: ${(e as Error).message}`;
        c.errors.push(msg);
        ctx.log(`  FAILED ${msg}`);
      } finally {
        try {
          await proxy?.stop();
        } catch (e) {
          c.errors.push(`round ${round}, ${v.label}: stop failed: ${(e as Error).message}`);
        }
      }
    }
  }
}

/** The nginx HTTP server (root master, worker as nobody) on port 80 of `srv`. */
export async function startHttpServer(srv: Host): Promise<LabProcess> {
  const prefix = join(tmpDir(), `nginx-server-${nextSeq()}`);
  mkdirSync(prefix);
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(conf, nginxServer(prefix, PORT.http), { mode: 0o644 });
  const log = logPath('nginx-server');
  const server = startLogged(srv, log, 'nginx', ['-p', prefix, '-c', conf, '-e', join(prefix, 'error.log')]);
  try {
    await waitForListen(srv, PORT.http, server, log);
  } catch (e) {
    await server.stop();
    throw e;
  }
  return server;
}
