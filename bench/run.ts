// tranproxy benchmarks against the anchors, side by side in one run.
//
//   node --import tsx bench/run.ts [--quick] [--only a,c|CASE-NAME] [--rounds N] [--out FILE] [--[no-]profile]
//
// Builds its own netns lab (client ns ⇄ server ns on a veth pair; client ⇄ gateway ⇄ server
// for TPROXY), runs every case for tranproxy and the anchors alternately (A B C, B C A, …),
// prints medians and ratios and writes the generated part of bench/RESULTS.md (between its marker comments;
// the hand-written sections after the end marker are kept). Needs root, `npm run build`
// (dist/cli/main.js), haproxy, nginx, iperf3 and wrk (scripts/setup-deps.sh).
//
// Cases: a  bulk TCP through REDIRECT (iperf3 1 and 4 streams) — tranproxy, HAProxy, no proxy
//        b  bulk TCP through TPROXY on a gateway — tranproxy, HAProxy, no proxy
//        c  HTTP keep-alive req/s and latency with 3 injected headers — tranproxy, nginx ×2, none
//        d  new HTTP connections per second (Connection: close) — same variants as c
//        e  memory per idle inspected connection (8,000 held open) — tranproxy (3 headers), HAProxy
//        f  CPU seconds per GB relayed, from the proxies' utime+stime during a (and b)
//        g  DNS answers from the cache (dnsperf -c 10, 50 names) — tranproxy's forwarder, dnsmasq
//        h  DNS fake-IP answers — tranproxy (fake-ip), dnsmasq answering from --address
//        i  DNS uncached (every query asked upstream) — tranproxy (cache off), dnsmasq (cache-size 0)
//        j  start-up and SIGHUP reload with a 200k and a 1M-entry domain list (no anchor)
//        k  sidecar idle memory, all processes — tranproxy, nginx as nginx-tranproxy, HAProxy
//        l  gateway through a Shadowsocks node (aes-256-gcm): bulk and conn/s — tranproxy, ss-redir
//        m  the same with chacha20-ietf-poly1305 — tranproxy, ss-redir
//        n  gateway through a SOCKS5 node (microsocks) — tranproxy, redsocks
//
// The anchors run at their best: HAProxy with its default threads and, for bulk, a variant that
// splices ("best HAProxy" is the better of the two per metric), nginx with worker_processes
// auto, tranproxy with --workers = CPUs. Every variant's memory is read from smaps_rollup.
//
// A full run (and --profile) ends with a --cpu-prof of tranproxy's data-plane child during a
// bulk transfer and during keep-alive HTTP, summarised in RESULTS.md ("where the time goes").
// Cases c, d, l, m and n also report the proxy's CPU seconds per 1,000 requests (every process and
// thread of the variant, utime+stime during the measured wrk run).
// Diagnostics (off by default; bench/lib/proc.ts workCost): BENCH_DEBUG=1 prints socket and
// conntrack counts of the lab namespaces after each wrk run and splits the CPU per request into user
// and system time and by thread; BENCH_SYSCALLS=1 counts syscalls per request (strace -c, which
// slows the proxy); BENCH_PERF_DIR=DIR records `perf record -g` of each measured wrk run;
// BENCH_CPU_PROF_DIR=DIR with BENCH_TRANPROXY_NODE_OPTIONS="--require $PWD/bench/lib/cpu-prof-preload.cjs"
// writes a V8 CPU profile of each tranproxy process for the measured run (the directory must be
// writable by the data plane's uid).
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Lab, type Host } from '../src/netlab/lab.js';
import { buildGatewayLab, gatewayCase } from './cases/gateway.js';
import { dnsCase } from './cases/dns.js';
import { httpCases } from './cases/http.js';
import { memoryCase, sidecarCase } from './cases/memory.js';
import { profileTranproxy } from './cases/profile.js';
import { ruleSetCase } from './cases/rules.js';
import { cpuCase, throughputCase } from './cases/throughput.js';
import { fmtNum } from './lib/parse.js';
import { medianOf, pairedRatio, renderCase, replaceGenerated, type CaseResult } from './lib/report.js';
import {
  ADDR,
  BEST_HAPROXY,
  type CaseId,
  type Ctx,
  MAIN,
  NODE,
  NPROC,
  type Options,
  ROOT,
  setTmpDir,
  setTpCommon,
  tpCommon,
} from './lib/runner.js';

const CASE_NAMES: Record<CaseId, string> = {
  a: 'redirect-throughput',
  b: 'tproxy-throughput',
  c: 'http-keepalive',
  d: 'http-new-connections',
  e: 'idle-memory',
  f: 'cpu-per-gb',
  g: 'dns-cached',
  h: 'dns-fake-ip',
  i: 'dns-uncached',
  j: 'rule-set-load',
  k: 'sidecar-memory',
  l: 'gateway-ss-aes',
  m: 'gateway-ss-chacha',
  n: 'gateway-socks5',
};
const GATEWAY_CASES = { l: 'aes', m: 'chacha', n: 'socks' } as const;
const DNS_CASES = ['g', 'h', 'i'] as const;

function usage(): never {
  process.stderr.write(
    'usage: node --import tsx bench/run.ts [--quick] [--only a,b,…|NAME] [--rounds N] [--out FILE] [--keep-logs] [--[no-]profile]\n' +
      `cases: ${Object.entries(CASE_NAMES)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}\n`,
  );
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  let quick = false;
  let only: Set<CaseId> | undefined;
  let rounds: number | undefined;
  let out: string | undefined;
  let keepLogs = false;
  let profile: boolean | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) usage();
      return v;
    };
    if (a === '--quick') quick = true;
    else if (a === '--keep-logs') keepLogs = true;
    else if (a === '--profile') profile = true;
    else if (a === '--no-profile') profile = false;
    else if (a === '--only') {
      only ??= new Set();
      for (const part of value().split(',')) {
        const id = (Object.keys(CASE_NAMES) as CaseId[]).find((k) => k === part || CASE_NAMES[k] === part);
        if (!id) usage();
        only.add(id);
      }
    } else if (a === '--rounds') {
      rounds = Number(value());
      if (!Number.isInteger(rounds) || rounds < 1) usage();
    } else if (a === '--out') out = value();
    else usage();
  }
  const partial = quick || only !== undefined || rounds !== undefined;
  return {
    quick,
    only: only ?? new Set(Object.keys(CASE_NAMES) as CaseId[]),
    rounds: rounds ?? 3,
    iperfSecs: quick ? 1 : 5,
    wrkSecs: quick ? 2 : 5,
    holdCount: quick ? 1000 : 8000,
    // A quick or partial run never overwrites the full results.
    out: out ?? join(ROOT, partial ? 'bench/RESULTS-partial.md' : 'bench/RESULTS.md'),
    keepLogs,
    profile: profile ?? !partial,
  };
}

// ---------------------------------------------------------------------------------------------
// Lab

/**
 * Settings for the connection-rate case, in our own namespaces only (never the host's): it
 * makes hundreds of thousands of short connections. Through a proxy, wrk closes first (it has
 * the whole response before the FIN), so its side keeps TIME_WAIT for 60 s per connection: more
 * ephemeral ports, and TIME_WAIT reuse for outgoing connections (tcp_tw_reuse=1, the usual
 * setting for load generators), keep it from running out of ports. The conntrack table is
 * shared by every netns on the machine, so closed connections leave it quickly.
 */
function tuneNetns(h: Host): void {
  h.sysctl('net.ipv4.ip_local_port_range', '20000 65535'); // above every port the lab listens on
  h.sysctl('net.ipv4.tcp_tw_reuse', '1');
  for (const [k, v] of [
    ['time_wait', '1'],
    ['close', '1'],
    ['fin_wait', '5'],
    ['close_wait', '5'],
    ['last_ack', '5'],
  ]) {
    try {
      h.sysctl(`net.netfilter.nf_conntrack_tcp_timeout_${k}`, v);
    } catch {
      /* conntrack not loaded: nothing is tracked then */
    }
  }
}

function buildLab(lab: Lab, direct: boolean, gateway: boolean): Pick<Ctx, 'cli' | 'srv' | 'tcli' | 'gw' | 'tsrv'> {
  const hosts: Pick<Ctx, 'cli' | 'srv' | 'tcli' | 'gw' | 'tsrv'> = {};
  if (direct) {
    hosts.cli = lab.addHost('cli');
    hosts.srv = lab.addHost('srv');
    lab.link(hosts.cli, hosts.srv, { a: [`${ADDR.cli}/24`], b: [`${ADDR.srv}/24`] });
    tuneNetns(hosts.cli);
    tuneNetns(hosts.srv);
  }
  if (gateway) {
    hosts.tcli = lab.addHost('tcli');
    hosts.gw = lab.addHost('gw');
    hosts.tsrv = lab.addHost('tsrv');
    lab.link(hosts.tcli, hosts.gw, { a: [`${ADDR.tcli}/24`], b: [`${ADDR.gwLan}/24`] });
    lab.link(hosts.gw, hosts.tsrv, { a: [`${ADDR.gwWan}/24`], b: [`${ADDR.tsrv}/24`] });
    hosts.tcli.addRoute('default', ADDR.gwLan);
    hosts.tsrv.addRoute('default', ADDR.gwWan);
    hosts.gw.enableForwarding();
    for (const h of [hosts.tcli, hosts.gw, hosts.tsrv]) tuneNetns(h);
  }
  return hosts;
}

// ---------------------------------------------------------------------------------------------
// Report

function firstLine(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      .split('\n')[0]!
      .trim();
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string };
    return ((err.stdout || err.stderr) ?? '').split('\n')[0]!.trim() || '?';
  }
}

function toolVersion(cmd: string, args: string[]): string {
  // nginx -v prints to stderr
  try {
    const r = execFileSync('sh', ['-c', `${cmd} ${args.join(' ')} 2>&1; true`], { encoding: 'utf8' });
    return r.split('\n')[0]!.trim();
  } catch {
    return '?';
  }
}

function machine(): string[] {
  const cpus = os.cpus();
  const commit = firstLine('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']);
  const dirty = firstLine('sh', ['-c', `git -C '${ROOT}' status --porcelain -- src | wc -l`]);
  return [
    `- machine: ${os.availableParallelism()} CPUs (nproc) — ${cpus[0]?.model ?? '?'}; ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM; kernel ${os.release()}`,
    `- software: node ${process.version}; ${toolVersion('haproxy', ['-v'])}; ${toolVersion('nginx', ['-v'])}; ${toolVersion('iperf3', ['-v'])}; ${toolVersion('wrk', ['-v'])}`,
    `- tranproxy: commit ${commit}${dirty !== '0' ? ` (+ ${dirty} uncommitted files under src/ in the working tree)` : ''}, run from \`dist/\` (\`npm run build\`)`,
  ];
}

function render(
  opts: Options,
  cases: CaseResult[],
  started: Date,
  elapsedS: number,
  load: { before: string; after: string },
  extra: string[],
): string {
  const cmd = `node --import tsx bench/run.ts${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(' ')}` : ''}`;
  const lines = [
    '# tranproxy benchmarks',
    '',
    `Generated by \`bench/run.ts\`. Every case runs tranproxy and its anchors alternately in one run (A B C, B C A, … — ${opts.rounds} rounds, each round starting one later), so`,
    'drift on the machine hits every variant alike; medians are over the rounds. The ratios are what matters: absolute numbers depend on the machine,',
    'and all load generators, servers and proxies share its CPUs.',
    '',
    `- date: ${started
      .toISOString()
      .replace('T', ' ')
      .replace(/\.\d+Z$/, ' UTC')}; the run took ${Math.round(elapsedS)} s`,
    `- command: \`${cmd}\` (as root, from the repository root, after \`npm run build\`)`,
    ...machine(),
    `- load average (1/5/15 min) before: ${load.before}; after: ${load.after} — other work on the machine shows up here`,
    '',
  ];
  lines.push('## Summary', '');
  const byId = (id: string): CaseResult | undefined => cases.find((c) => c.id === id);
  const med = (c: CaseResult, m: string, v: string): string => fmtNum(medianOf(c, m, v));
  /** "0.97× of X" from the medians, with the median of the per-round ratios after it. */
  const ratioText = (c: CaseResult, m: string, anchor: string, label: string, subject = 'tranproxy'): string => {
    const a = medianOf(c, m, subject);
    const b = medianOf(c, m, anchor);
    if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return `– of ${label}`;
    const metric = c.metrics.find((x) => x.key === m)!;
    const paired = pairedRatio(metric, subject, anchor);
    return `${(a / b).toFixed(2)}×${Number.isFinite(paired) ? ` (${paired.toFixed(2)}×)` : ''} of ${label}`;
  };
  /** "; CPU per request X ms vs LABEL Y ms (ratio)" when the case measured it for both. */
  const cpuK = (c: CaseResult, subject: string, anchor: string, label: string): string => {
    const a = medianOf(c, 'cpuk', subject);
    const b = medianOf(c, 'cpuk', anchor);
    if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '';
    return `; CPU per request ${fmtNum(a)} ms vs ${label} ${fmtNum(b)} ms (${(a / b).toFixed(2)}×)`;
  };
  const summary: string[] = [];
  for (const id of ['a', 'b'] as const) {
    const c = byId(id);
    if (!c) continue;
    for (const s of [1, 4]) {
      const m = `g${s}`;
      summary.push(
        `| ${id === 'a' ? 'REDIRECT' : 'TPROXY'} throughput, ${s} stream${s > 1 ? 's' : ''} | ${med(c, m, 'tranproxy')} Gbit/s | HAProxy ${med(c, m, 'haproxy')}, with splice ${med(c, m, 'haproxy-splice')}, no proxy ${med(c, m, 'none')} | ${ratioText(c, m, BEST_HAPROXY.key, 'best HAProxy')}; ${ratioText(c, m, 'none', 'no proxy')} |`,
      );
    }
  }
  for (const id of ['c', 'd'] as const) {
    const c = byId(id);
    if (!c) continue;
    const unit = id === 'c' ? 'req/s' : 'conn/s';
    summary.push(
      `| ${id === 'c' ? 'HTTP keep-alive, 3 headers added' : 'new HTTP connections'} | ${med(c, 'rps', 'tranproxy')} ${unit}, p99 ${med(c, 'p99', 'tranproxy')} ms | nginx as nginx-tranproxy ${med(c, 'rps', 'nginx-seed')} (p99 ${med(c, 'p99', 'nginx-seed')} ms), nginx with upstream keepalive ${med(c, 'rps', 'nginx-fast')} (p99 ${med(c, 'p99', 'nginx-fast')} ms), no proxy ${med(c, 'rps', 'none')} | ${unit}: ${ratioText(c, 'rps', 'nginx-seed', 'nginx as nginx-tranproxy')}; ${ratioText(c, 'rps', 'nginx-fast', 'nginx with keepalive')}${cpuK(c, 'tranproxy', 'nginx-seed', 'nginx as nginx-tranproxy')} |`,
    );
    if (id === 'd' && c.metrics.some((m) => m.values.has('haproxy-tcp'))) {
      const hb = 'haproxy-tcp';
      summary.push(
        `| new TCP connections, no headers (HTTP Connection: close) | tranproxy ${med(c, 'rps', 'tranproxy-tcp')} conn/s, p99 ${med(c, 'p99', 'tranproxy-tcp')} ms | HAProxy tcp mode ${med(c, 'rps', hb)} (p99 ${med(c, 'p99', hb)} ms) | conn/s: ${ratioText(c, 'rps', hb, 'HAProxy', 'tranproxy-tcp')}; with 3 headers added: ${ratioText(c, 'rps', hb, 'HAProxy')}${cpuK(c, 'tranproxy-tcp', hb, 'HAProxy')} |`,
      );
    }
  }
  const e = byId('e');
  if (e) {
    const hb = 'haproxy';
    summary.push(
      `| memory per idle inspected connection (3 headers) ↓ | anon ${med(e, 'kbAnon', 'tranproxy')} KB, RSS ${med(e, 'kbRss', 'tranproxy')} KB, PSS ${med(e, 'kbPss', 'tranproxy')} KB (all processes) | HAProxy anon ${med(e, 'kbAnon', hb)} KB, RSS ${med(e, 'kbRss', hb)} KB, PSS ${med(e, 'kbPss', hb)} KB | anon: ${ratioText(e, 'kbAnon', hb, 'HAProxy')}; RSS: ${ratioText(e, 'kbRss', hb, 'HAProxy')} |`,
    );
  }
  const k = byId('k');
  if (k) {
    const mem = (v: string): string => `${med(k, 'rss', v)} / ${med(k, 'pss', v)} / ${med(k, 'anon', v)} MB`;
    summary.push(
      `| sidecar idle memory, all processes, RSS / PSS / anon ↓ | ${mem('tranproxy')}${k.metrics[0]!.values.has('tranproxy-one') ? `; \`--one-process\` (init-container layout) ${mem('tranproxy-one')}` : ''} | nginx as nginx-tranproxy ${mem('nginx-seed')}; HAProxy ${mem('haproxy')} | anon: ${ratioText(k, 'anon', 'nginx-seed', 'nginx')}, ${ratioText(k, 'anon', 'haproxy', 'HAProxy')}; PSS: ${ratioText(k, 'pss', 'nginx-seed', 'nginx')} (targets: anon ≤ 16 MB, PSS ≤ 50 MB) |`,
    );
  }
  for (const id of ['l', 'm', 'n'] as const) {
    const c = byId(id);
    if (!c) continue;
    const anchor = id === 'n' ? 'redsocks' : 'ss-redir';
    const what = { l: 'Shadowsocks aes-256-gcm', m: 'Shadowsocks chacha20', n: 'SOCKS5' }[id];
    summary.push(
      `| gateway via ${what} node: bulk 1 / 4 streams, conn/s | ${med(c, 'g1', 'tranproxy')} / ${med(c, 'g4', 'tranproxy')} Gbit/s, ${med(c, 'cps', 'tranproxy')} conn/s; idle anon ${med(c, 'anon', 'tranproxy')} MB | ${anchor} ${med(c, 'g1', anchor)} / ${med(c, 'g4', anchor)} Gbit/s, ${med(c, 'cps', anchor)} conn/s; idle anon ${med(c, 'anon', anchor)} MB | 1 stream ${ratioText(c, 'g1', anchor, anchor)}; 4 streams ${ratioText(c, 'g4', anchor, anchor)}; conn/s ${ratioText(c, 'cps', anchor, anchor)}${cpuK(c, 'tranproxy', anchor, anchor)} |`,
    );
  }
  const f = byId('f');
  if (f) {
    for (const m of f.metrics.filter((x) => (x.values.get('tranproxy')?.size ?? 0) > 0)) {
      summary.push(
        `| CPU ${m.label} ↓ | ${med(f, m.key, 'tranproxy')} | best HAProxy ${med(f, m.key, BEST_HAPROXY.key)} | ${ratioText(f, m.key, BEST_HAPROXY.key, 'best HAProxy')} |`,
      );
    }
  }
  const j = byId('j');
  if (j) {
    for (const v of j.variants) {
      summary.push(
        `| ${v.label} domain list ↓ | ready in ${med(j, 'ready', v.key)} s (CPU: supervisor ${med(j, 'cpuSup', v.key)} s, child ${med(j, 'cpuChild', v.key)} s), SIGHUP reload ${med(j, 'reload', v.key)} s; RSS supervisor ${med(j, 'rssSup', v.key)} MB (${med(j, 'rssSupReload', v.key)} after reload), child ${med(j, 'rssChild', v.key)} MB | — | goal: 1M entries < 2 s, < 300 MB |`,
      );
    }
  }
  for (const id of DNS_CASES) {
    const c = byId(id);
    if (!c) continue;
    const label = { g: 'DNS, cached answers', h: 'DNS, fake-IP answers', i: 'DNS, uncached (upstream every query)' }[
      id
    ];
    summary.push(
      `| ${label} | ${med(c, 'qps', 'tranproxy')} q/s, avg ${med(c, 'avg', 'tranproxy')} ms, worst ${med(c, 'max', 'tranproxy')} ms | dnsmasq ${med(c, 'qps', 'dnsmasq')} q/s, avg ${med(c, 'avg', 'dnsmasq')} ms, worst ${med(c, 'max', 'dnsmasq')} ms | q/s: ${ratioText(c, 'qps', 'dnsmasq', 'dnsmasq')}; avg latency: ${ratioText(c, 'avg', 'dnsmasq', 'dnsmasq')} |`,
    );
  }
  if (summary.length) {
    lines.push(
      'Medians over the rounds; ratios are tranproxy ÷ anchor (ratio of the medians, and in parentheses the median of the per-round ratios).',
      '',
    );
  }
  if (summary.length)
    lines.push('| case | tranproxy | anchors | tranproxy ÷ anchor |', '|---|---|---|---|', ...summary, '');
  for (const c of cases) lines.push(renderCase(c));
  if (extra.length) lines.push(...extra, '');
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('bench/run.ts needs root (network namespaces, nftables)');
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`);
  for (const tool of ['haproxy', 'nginx', 'iperf3', 'wrk', 'curl', 'nft', 'ss', 'dnsperf', 'dnsmasq']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], {
        stdio: 'ignore',
        env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` },
      });
    } catch {
      throw new Error(`${tool} is missing: run scripts/setup-deps.sh`);
    }
  }
  process.env.PATH = `${process.env.PATH}:/usr/sbin:/sbin`;
  const gatewayTools = ['ss-server', 'ss-redir', 'microsocks', 'redsocks'];
  if (['l', 'm', 'n'].some((id) => opts.only.has(id as CaseId)))
    for (const tool of gatewayTools) {
      try {
        execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
      } catch {
        throw new Error(`${tool} is missing: run scripts/setup-deps.sh (gateway cases l, m, n)`);
      }
    }
  if (execFileSync(NODE, [MAIN, 'run', '--help'], { encoding: 'utf8' }).includes('--workers'))
    setTpCommon(['--workers', String(NPROC)]);
  // BENCH_TRANPROXY_ARGS="--relay js": extra flags for every tranproxy run (experiments; recorded in the set-up lines).
  if (process.env.BENCH_TRANPROXY_ARGS)
    setTpCommon([...tpCommon(), ...process.env.BENCH_TRANPROXY_ARGS.split(/\s+/).filter(Boolean)]);
  const want = new Set(opts.only);
  if (want.has('f')) want.add('a'); // (f) is measured during (a)

  const started = new Date();
  const t0 = Date.now();
  const loadBefore = os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' / ');
  const TMP = mkdtempSync(join(os.tmpdir(), 'tpx-bench-'));
  setTmpDir(TMP);
  chmodSync(TMP, 0o755); // proxies running as other uids open their logs and configs here
  const removeTmp = (): void => {
    if (!opts.keepLogs) rmSync(TMP, { recursive: true, force: true });
  };
  process.on('exit', removeTmp);

  const lab = await Lab.create({ prefix: 'tpxbench' });
  // Lab's own hooks destroy the lab on these signals; this one makes sure we then exit.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}: lab removed, exiting\n`);
      process.exit(130);
    });
  }
  const log = (line: string): void => {
    process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);
  };
  const cases: CaseResult[] = [];
  const extra: string[] = [];
  try {
    const hosts = buildLab(
      lab,
      opts.profile || ['a', 'c', 'd', 'e', 'j', 'k', ...DNS_CASES].some((id) => want.has(id as CaseId)),
      want.has('b'),
    );
    const ctx: Ctx = { opts, lab, log, ...hosts };
    log(
      `lab ${lab.prefix} built; ${opts.rounds} rounds, iperf3 ${opts.iperfSecs} s, wrk ${opts.wrkSecs} s, ${opts.holdCount} idle connections; logs in ${TMP}`,
    );
    const tput: CaseResult[] = [];
    for (const id of ['a', 'b'] as const) {
      if (!want.has(id)) continue;
      log(`(${id}) ${CASE_NAMES[id]}`);
      const t = throughputCase(ctx, id);
      cases.push(t.c);
      tput.push(t.c);
      await t.run();
    }
    if (want.has('c') || want.has('d')) {
      log(`(c, d) ${CASE_NAMES.c}, ${CASE_NAMES.d}`);
      const h = httpCases(ctx, want);
      cases.push(...h.cases);
      await h.run();
    }
    if (want.has('e')) {
      log(`(e) ${CASE_NAMES.e}`);
      const m = memoryCase(ctx);
      cases.push(m.c);
      await m.run();
    }
    if (want.has('k')) {
      log(`(k) ${CASE_NAMES.k}`);
      const k = sidecarCase(ctx);
      cases.push(k.c);
      await k.run();
    }
    const gwIds = (Object.keys(GATEWAY_CASES) as Array<keyof typeof GATEWAY_CASES>).filter((id) => want.has(id));
    const gwHosts = gwIds.length ? buildGatewayLab(lab, tuneNetns) : undefined;
    for (const id of gwIds) {
      log(`(${id}) ${CASE_NAMES[id]}`);
      const g = gatewayCase(ctx, gwHosts!, id, GATEWAY_CASES[id]);
      cases.push(g.c);
      await g.run();
    }
    if (want.has('f') && tput.length) cases.push(cpuCase(tput));
    if (want.has('j')) {
      log(`(j) ${CASE_NAMES.j}`);
      const r = ruleSetCase(ctx);
      cases.push(r.c);
      await r.run();
    }
    for (const id of DNS_CASES) {
      if (!want.has(id)) continue;
      log(`(${id}) ${CASE_NAMES[id]}`);
      const d = dnsCase(ctx, id);
      cases.push(d.c);
      await d.run();
    }
    if (opts.profile && ctx.cli) {
      log('profile: V8 CPU profile of the tranproxy data plane');
      try {
        extra.push(...(await profileTranproxy(ctx)));
      } catch (e) {
        extra.push('## Where the time goes', '', `The profiling run failed: ${(e as Error).message.split('\n')[0]}`);
        log(`  FAILED profile: ${(e as Error).message}`);
      }
    }
  } finally {
    await lab.destroy();
  }
  const elapsed = (Date.now() - t0) / 1000;
  const text = render(
    opts,
    cases,
    started,
    elapsed,
    {
      before: loadBefore,
      after: os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' / '),
    },
    extra,
  );
  // Only the part between the markers is replaced: the hand-written sections after it stay.
  writeFileSync(opts.out, replaceGenerated(existsSync(opts.out) ? readFileSync(opts.out, 'utf8') : undefined, text));
  process.stdout.write(`\n${text}\nbench: wrote ${opts.out} (${Math.round(elapsed)} s)\n`);
  if (cases.some((c) => c.errors.length)) process.exitCode = 1;
}

main().catch((e: Error) => {
  process.stderr.write(`bench: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
