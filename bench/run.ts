// tranproxy benchmarks against the anchors, side by side in one run.
//
//   node --import tsx bench/run.ts [--quick] [--only a,c|CASE-NAME] [--rounds N] [--out FILE] [--[no-]profile]
//
// Builds its own netns lab (client ns ⇄ server ns on a veth pair; client ⇄ gateway ⇄ server
// for TPROXY), runs every case for tranproxy and the anchors alternately (A B C, A B C, …),
// prints medians and ratios and writes bench/RESULTS.md. Needs root, `npm run build`
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
// The anchors run at their best: HAProxy with its default threads and an `option splice-auto`
// variant ("best HAProxy" is the better of the two per metric), nginx with worker_processes
// auto, tranproxy with --workers = CPUs. Every variant's memory is read from smaps_rollup.
//
// A full run (and --profile) ends with a --cpu-prof of tranproxy's data-plane child during a
// bulk transfer and during keep-alive HTTP, summarised in RESULTS.md ("where the time goes").
// BENCH_DEBUG=1 prints socket and conntrack counts of the lab namespaces after each wrk run.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Lab, type Host, type LabProcess } from '../src/netlab/lab.js';
import { haproxyRedirect, haproxyTproxy, nginxFast, nginxSeed } from './lib/configs.js';
import { buildGatewayLab, gatewayCase } from './cases/gateway.js';
import { fmtNum } from './lib/parse.js';
import {
  cpuSeconds,
  descendants,
  fdCount,
  memOf,
  readLog,
  rssKb,
  sleep,
  startLogged,
  waitForListen,
  waitForLog,
} from './lib/proc.js';
import { renderProfile, summarizeProfile, type ProfileSummary } from './lib/profile.js';
import { addBestOf, medianOf, newCase, pairedRatio, record, renderCase, type CaseResult } from './lib/report.js';
import {
  ADDR,
  alternate,
  BEST_HAPROXY,
  type CaseId,
  cpuOf,
  type Ctx,
  HAPROXY,
  HAPROXY_TCP_BEST,
  haproxyPair,
  iperf,
  logPath,
  MAIN,
  MEM_METRICS,
  MEM_NOTE,
  NODE,
  NPROC,
  type Options,
  PORT,
  recordIdleMemory,
  ROOT,
  type RunningProxy,
  setTmpDir,
  setTpCommon,
  startHaproxy,
  startHttpServer,
  startIperfServer,
  startNginx,
  startTranproxy,
  tmpDir,
  TP,
  tpCmd,
  tpCommon,
  UID,
  type VariantDef,
  wrk,
} from './lib/runner.js';

const HOLD_SERVER = join(ROOT, 'bench/peers/hold-server.mjs');
const HOLD_CLIENT = join(ROOT, 'bench/peers/hold-client.mjs');
const PROF_PRELOAD = join(ROOT, 'bench/lib/cpu-prof-preload.cjs');

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

function throughputCase(ctx: Ctx, id: 'a' | 'b'): { c: CaseResult; run: () => Promise<void> } {
  const tp = id === 'b';
  const title = tp ? '(b) Bulk TCP through TPROXY on a gateway (iperf3)' : '(a) Bulk TCP through REDIRECT (iperf3)';
  const { iperfSecs: secs } = ctx.opts;
  const c = newCase(
    {
      id,
      title,
      method: tp
        ? [
            `client ns → gateway ns → server ns over two veth pairs; the gateway captures port ${PORT.iperf} in PREROUTING with TPROXY`,
            `(\`tranproxy rules\` plan: mangle prerouting \`tproxy to :PORT\`, fwmark → local route table). iperf3 ${secs} s per test, 1 stream and \`-P 4\`;`,
            "both proxies run as root on the gateway and connect upstream from the client's own address (tranproxy: `--preserve-source`, its default in this mode;",
            'HAProxy: `source 0.0.0.0 usesrc clientip`). "no proxy" is plain forwarding through the same gateway.',
          ]
        : [
            `client ns ⇄ server ns over one veth pair; the client's own traffic to port ${PORT.iperf} is captured in OUTPUT with REDIRECT`,
            `(nft \`redirect to :PORT\`); each proxy runs in the client ns under its own uid, excluded from capture. iperf3 ${secs} s per test, 1 stream and \`-P 4\`.`,
          ],
      variants: [],
      subject: 'tranproxy',
      anchors: [BEST_HAPROXY.key, 'none'],
    },
    [
      { key: 'g1', label: '1 stream Gbit/s', better: 'higher' },
      { key: 'g4', label: '4 streams Gbit/s', better: 'higher' },
      { key: 'cpu1', label: 'proxy CPU s/GB, 1 stream', better: 'lower' },
      { key: 'cpu4', label: 'proxy CPU s/GB, 4 streams', better: 'lower' },
      ...MEM_METRICS,
    ],
  );
  const client = tp ? ctx.tcli! : ctx.cli!;
  const server = tp ? ctx.tsrv! : ctx.srv!;
  const proxyHost = tp ? ctx.gw! : ctx.cli!;
  const dst = tp ? ADDR.tsrv : ADDR.srv;
  const variants: VariantDef[] = tp
    ? [
        {
          key: 'tranproxy',
          label: 'tranproxy',
          detail: `${tpCmd(TP.tproxy())} (supervisor + data-plane child, as root)`,
          start: () => startTranproxy(proxyHost, TP.tproxy()),
        },
        ...haproxyPair({
          key: 'haproxy',
          label: HAPROXY,
          detail: `\`mode tcp\`, \`bind :${PORT.haproxy} transparent\`, \`source 0.0.0.0 usesrc clientip\`, \`server s 0.0.0.0:0\`, as root; rules: \`tranproxy rules apply --mode tproxy --capture prerouting --listen-port ${PORT.haproxy} -P ${PORT.iperf}\``,
          start: (o) =>
            startHaproxy(proxyHost, haproxyTproxy(PORT.haproxy, 9000, o), PORT.haproxy, undefined, [
              '--mode',
              'tproxy',
              '--capture',
              'prerouting',
              '-P',
              String(PORT.iperf),
              '--family',
              'ipv4',
              '--listen-port',
              String(PORT.haproxy),
            ]),
        }),
        { key: 'none', label: 'no proxy', detail: 'routed through the gateway, no rules' },
      ]
    : [
        {
          key: 'tranproxy',
          label: 'tranproxy',
          detail: `${tpCmd(TP.redirect())} (supervisor as root, data-plane child as uid ${UID.tranproxy})`,
          start: () => startTranproxy(proxyHost, TP.redirect()),
        },
        ...haproxyPair({
          key: 'haproxy',
          label: HAPROXY,
          detail: `\`mode tcp\`, \`server s 0.0.0.0:0\` (follows SO_ORIGINAL_DST), as uid ${UID.haproxy}; rules: \`tranproxy rules apply --proxy-user ${UID.haproxy}:${UID.haproxy} --listen-port ${PORT.haproxy} -P ${PORT.iperf}\``,
          start: (o) =>
            startHaproxy(proxyHost, haproxyRedirect(PORT.haproxy, 9000, o), PORT.haproxy, UID.haproxy, [
              '--proxy-user',
              `${UID.haproxy}:${UID.haproxy}`,
              '-P',
              String(PORT.iperf),
              '--family',
              'ipv4',
              '--listen-port',
              String(PORT.haproxy),
            ]),
        }),
        { key: 'none', label: 'no proxy', detail: 'no rules' },
      ];
  c.variants = variants.map(({ key, label, detail }) => ({ key, label, detail }));
  c.notes.push(
    tp
      ? `Both proxies really relay from the client's address: after every proxied test the runner checks that the iperf3 server logged the connection as coming from ${ADDR.tcli}.`
      : `HAProxy ${'2.6'}'s \`server s 0.0.0.0:0\` does follow SO_ORIGINAL_DST here: every test through it reaches the iperf3 server (nothing listens on ${PORT.iperf} in the client ns, and 0.0.0.0:0 itself is not connectable), and its CPU time shows it relayed the bytes.`,
    'A proxied test only counts if the proxy used CPU in proportion (≥ 0.05 s per second of test): traffic that bypassed the proxy fails the round instead of flattering it.',
    'The no-proxy rows vary most: the kernel path alone is fast enough that the load generators and other work on the 2 CPUs decide it.',
    MEM_NOTE,
  );
  const run = async (): Promise<void> => {
    const srv = await startIperfServer(server);
    try {
      await alternate(ctx, c, variants, async (v, proxy, round) => {
        recordIdleMemory(c, v.key, round, proxy);
        const line: string[] = [];
        for (const streams of [1, 4]) {
          const cpu0 = cpuOf(proxy);
          const r = await iperf(client, server, srv, dst, streams, secs);
          const cpu = cpuOf(proxy) - cpu0;
          if (proxy && cpu < 0.05 * secs)
            throw new Error(`the proxy used ${cpu.toFixed(2)} s of CPU: the traffic did not go through it`);
          if (tp && proxy) {
            // The proxies connect upstream from the client's own address: the server must see it.
            const from = [...readLog(srv.log).matchAll(/Accepted connection from ([\d.]+)/g)].pop()?.[1];
            if (from !== ADDR.tcli)
              throw new Error(
                `the server saw the test come from ${from ?? 'nowhere'}, not from the client ${ADDR.tcli}`,
              );
          }
          record(c, `g${streams}`, v.key, round, r.gbps);
          if (proxy) record(c, `cpu${streams}`, v.key, round, cpu / (r.bytes / 1e9));
          line.push(
            `${streams}×: ${r.gbps.toFixed(2)} Gbit/s${proxy ? ` (proxy ${cpu.toFixed(2)} CPU s, ${(cpu / (r.bytes / 1e9)).toFixed(2)} s/GB)` : ''}`,
          );
        }
        ctx.log(`  [${id}] round ${round} ${v.label.padEnd(24)} ${line.join('  ')}`);
      });
    } finally {
      await srv.proc.stop();
    }
    addBestOf(c, BEST_HAPROXY.key, BEST_HAPROXY.label, ['haproxy', 'haproxy-splice']);
  };
  return { c, run };
}

function httpCases(ctx: Ctx, which: Set<CaseId>): { cases: CaseResult[]; run: () => Promise<void> } {
  const secs = ctx.opts.wrkSecs;
  const cli = ctx.cli!;
  const srv = ctx.srv!;
  const url = `http://${ADDR.srv}/`;
  const common = [
    `wrk \`-t1 -c50 -d${secs}s --latency\` in the client ns to \`${url}\` (port ${PORT.http} captured with REDIRECT in OUTPUT); the server is nginx in the server ns`,
    '(1 worker, `return 200 "ok"`, keepalive_requests 1000000). Every proxy adds three headers (a: 1, b: 2, c: 3) — checked before each run',
    `through \`/check\`, which echoes them — and runs under its own uid with one worker per CPU (${NPROC}: tranproxy \`--workers ${NPROC}\`, nginx \`worker_processes auto\`,`,
    'HAProxy its default nbthread). The anchors log nothing (tranproxy writes one log line per connection).',
    'Each proxy start is followed by a 1 s keep-alive warm-up run (not measured), then the measured run(s).',
  ];
  const variants: VariantDef[] = [
    {
      key: 'tranproxy',
      label: 'tranproxy',
      detail: `${tpCmd(TP.http())} (data-plane child as uid ${UID.tranproxy}, log to a file)`,
      start: () => startTranproxy(cli, TP.http()),
    },
    {
      key: 'nginx-seed',
      label: 'nginx as nginx-tranproxy',
      detail:
        `nginx 1.22, worker_processes auto, as uid ${UID.nginx}: \`resolver\`, \`proxy_pass http://$host:${PORT.http}$request_uri\`, \`proxy_set_header\` ×3, ` +
        "defaults otherwise (HTTP/1.0 upstream, one upstream connection per request) — the configuration nginx-tranproxy generates; the Host is the server's IP, so no DNS query is made",
      start: () =>
        startNginx(cli, 'seed', (p) => nginxSeed(p, PORT.nginx, PORT.http, '127.0.0.1'), PORT.nginx, UID.nginx, [
          '--proxy-user',
          `${UID.nginx}:${UID.nginx}`,
          '-P',
          String(PORT.http),
          '--family',
          'ipv4',
          '--listen-port',
          String(PORT.nginx),
        ]),
    },
    {
      key: 'nginx-fast',
      label: 'nginx, upstream keepalive',
      detail:
        `nginx 1.22, worker_processes auto, as uid ${UID.nginx}: \`upstream { server ${ADDR.srv}:${PORT.http}; keepalive 64; }\`, \`proxy_http_version 1.1\`, ` +
        '`proxy_set_header Connection ""`, `proxy_set_header` ×3 — its fastest form (a fixed upstream: not a transparent proxy, it ignores the original destination)',
      start: () =>
        startNginx(cli, 'fast', (p) => nginxFast(p, PORT.nginx, `${ADDR.srv}:${PORT.http}`), PORT.nginx, UID.nginx, [
          '--proxy-user',
          `${UID.nginx}:${UID.nginx}`,
          '-P',
          String(PORT.http),
          '--family',
          'ipv4',
          '--listen-port',
          String(PORT.nginx),
        ]),
    },
    {
      key: 'tranproxy-tcp',
      label: 'tranproxy, no headers',
      detail: `${tpCmd(TP.httpPlain())}: no header injection, so a plain TCP relay (spliced under the default \`--relay auto\`); compared with HAProxy in tcp mode`,
      start: () => startTranproxy(cli, TP.httpPlain()),
      only: ['d'],
      plain: true,
    },
    ...haproxyPair({
      key: 'haproxy-tcp',
      label: `${HAPROXY}, tcp mode`,
      detail: `\`mode tcp\`, \`server s 0.0.0.0:0\` (follows SO_ORIGINAL_DST), as uid ${UID.haproxy}; no headers (tcp mode cannot add any)`,
      start: (o) =>
        startHaproxy(cli, haproxyRedirect(PORT.haproxy, 9000, o), PORT.haproxy, UID.haproxy, [
          '--proxy-user',
          `${UID.haproxy}:${UID.haproxy}`,
          '-P',
          String(PORT.http),
          '--family',
          'ipv4',
          '--listen-port',
          String(PORT.haproxy),
        ]),
      only: ['d'],
      plain: true,
    }),
    { key: 'none', label: 'no proxy', detail: 'no rules; no headers added', plain: true },
  ];
  const inC = variants.filter((v) => !v.only || v.only.includes('c'));
  const base = (vs: VariantDef[], anchors: string[]) => ({
    variants: vs.map(({ key, label, detail }) => ({ key, label, detail })),
    subject: 'tranproxy',
    anchors,
  });
  const metrics = [
    { key: 'rps', label: 'req/s', better: 'higher' as const },
    { key: 'p50', label: 'p50 ms', better: 'lower' as const },
    { key: 'p99', label: 'p99 ms', better: 'lower' as const },
    ...MEM_METRICS,
  ];
  const cCase = newCase(
    {
      id: 'c',
      title: '(c) HTTP/1.1 keep-alive, 3 injected headers (wrk)',
      method: common,
      ...base(inC, ['nginx-seed', 'nginx-fast', 'none']),
    },
    metrics,
  );
  const dCase = newCase(
    {
      id: 'd',
      title: '(d) New connections per second (wrk, `Connection: close`)',
      method: [
        ...common,
        'Each request on a new connection (`-H "Connection: close"`): the server closes after answering, wrk reconnects; requests/s = connections/s.',
        'More variants add no headers, for the connections/s target against HAProxy in tcp mode (which cannot add headers): "tranproxy, no headers" and HAProxy in tcp mode',
        '(default threads, and with `option splice-auto`; "best HAProxy, tcp mode" is the better of the two).',
      ],
      ...base(variants, ['nginx-seed', 'nginx-fast', HAPROXY_TCP_BEST.key, 'none']),
    },
    metrics.map((m) => (m.key === 'rps' ? { ...m, label: 'conn/s' } : m)),
  );
  dCase.notes.push(
    'Observed (BENCH_DEBUG=1 counts TIME_WAIT sockets after each run): through tranproxy, wrk is the side that closes first — tranproxy relays the response ' +
      "and then, as a separate event, the server's FIN — so the TIME_WAIT sockets sit on the client's ephemeral ports towards port 80, the same port space " +
      "tranproxy's upstream connections draw from; nginx terminates HTTP and closes the client connection itself, so its TIME_WAITs sit on its own listen port.",
    'The lab namespaces use ip_local_port_range 20000–65535 and tcp_tw_reuse=1 so that no variant runs out of ports (without them every variant, even ' +
      '"no proxy", collapsed to a few hundred conn/s after the first rounds).',
  );
  cCase.notes.push(
    '"nginx, upstream keepalive" is the fastest nginx can do this job, but it is not a transparent proxy: it sends everything to one fixed upstream.',
  );
  for (const c of [cCase, dCase]) c.notes.push(MEM_NOTE);
  const cases = [...(which.has('c') ? [cCase] : []), ...(which.has('d') ? [dCase] : [])];
  const run = async (): Promise<void> => {
    const server = await startHttpServer(srv);
    try {
      for (let round = 1; round <= ctx.opts.rounds; round++) {
        for (const v of variants) {
          const vCases = cases.filter((c) => !v.only || v.only.includes(c.id as CaseId));
          if (vCases.length === 0) continue;
          let proxy: RunningProxy | undefined;
          const fail = (c: CaseResult, e: unknown): void => {
            const msg = `round ${round}, ${v.label}: ${(e as Error).message}`;
            c.errors.push(msg);
            ctx.log(`  FAILED ${msg}`);
          };
          try {
            proxy = v.start ? await v.start() : undefined;
            for (const c of vCases) recordIdleMemory(c, v.key, round, proxy);
            const check = await cli.run('curl', ['-sS', '--max-time', '5', `${url}check`], { allowFailure: true });
            const want = v.plain ? 'a= b= c=' : 'a=1 b=2 c=3';
            if (check.stdout.trim() !== want)
              throw new Error(`header check: got '${check.stdout.trim()}' ${check.stderr.trim()}, want '${want}'`);
            await wrk(cli, url, 1, false); // warm-up (JIT, pools), not measured
            for (const c of vCases) {
              try {
                const cpu0 = cpuOf(proxy);
                const r = await wrk(cli, url, secs, c.id === 'd');
                const cpu = cpuOf(proxy) - cpu0;
                if (process.env.BENCH_DEBUG) {
                  for (const h of [cli, srv]) {
                    const ss = await h.run('ss', ['-s'], { allowFailure: true });
                    const ct = await h.run('sysctl', ['-n', 'net.netfilter.nf_conntrack_count'], {
                      allowFailure: true,
                    });
                    const tw = await h.run('ss', ['-Htan', 'state', 'time-wait'], { allowFailure: true });
                    const byLocal = new Map<string, number>();
                    for (const l of tw.stdout.split('\n').filter(Boolean)) {
                      const [local, peer] = l.trim().split(/\s+/).slice(-2) as [string, string];
                      const k =
                        local.endsWith(':80') || /:(15001|15004)$/.test(local)
                          ? `local ${local.replace(/^.*:/, ':')}`
                          : `to ${peer.replace(/^.*:/, ':')}`;
                      byLocal.set(k, (byLocal.get(k) ?? 0) + 1);
                    }
                    ctx.log(
                      `    ${h.name}: ${/TCP:.*$/m.exec(ss.stdout)?.[0]} conntrack ${ct.stdout.trim()} TIME_WAIT ${[...byLocal].map(([k, n]) => `${k}: ${n}`).join(', ')}`,
                    );
                  }
                }
                if (r.errors + r.non2xx > 0.01 * r.requests) {
                  throw new Error(
                    `${r.errors} socket errors and ${r.non2xx} non-2xx responses in ${r.requests} requests`,
                  );
                }
                if (r.errors + r.non2xx > 0) {
                  const errLines = proxy?.errorLog
                    ? readLog(proxy.errorLog)
                        .split('\n')
                        .filter((l) => l.includes('[error]'))
                    : [];
                  const why = errLines.length
                    ? `; its error.log: ${errLines.length} × e.g. "${errLines[0]!.replace(/^.*?\[error\] \d+#\d+: (\*\d+ )?/, '').replace(/, client:.*$/, '')}"`
                    : '';
                  c.notes.push(
                    `round ${round}, ${v.label}: ${r.errors} socket errors and ${r.non2xx} non-2xx responses in ${r.requests.toLocaleString('en-US')} requests (kept: under 1%)${why}`,
                  );
                }
                if (proxy && cpu < 0.05 * secs)
                  throw new Error(`the proxy used ${cpu.toFixed(2)} s of CPU: the traffic did not go through it`);
                record(c, 'rps', v.key, round, r.rps);
                record(c, 'p50', v.key, round, r.p50ms);
                record(c, 'p99', v.key, round, r.p99ms);
                const errs = r.errors + r.non2xx ? ` (${r.errors} socket errors, ${r.non2xx} non-2xx)` : '';
                ctx.log(
                  `  [${c.id}] round ${round} ${v.label.padEnd(36)} ${fmtNum(r.rps)} ${c.id === 'd' ? 'conn' : 'req'}/s  p50 ${fmtNum(r.p50ms)} ms  p99 ${fmtNum(r.p99ms)} ms${proxy ? `  proxy CPU ${cpu.toFixed(2)} s` : ''}${errs}`,
                );
              } catch (e) {
                fail(c, e);
              }
            }
          } catch (e) {
            for (const c of vCases) fail(c, e);
          } finally {
            try {
              await proxy?.stop();
            } catch (e) {
              for (const c of vCases) fail(c, e);
            }
          }
        }
      }
    } finally {
      await server.stop('SIGQUIT');
    }
    addBestOf(dCase, HAPROXY_TCP_BEST.key, HAPROXY_TCP_BEST.label, ['haproxy-tcp', 'haproxy-tcp-splice']);
  };
  return { cases, run };
}

/**
 * CPU profile of tranproxy's data-plane child (a preload via NODE_OPTIONS reaches it through
 * fork) during one 1-stream iperf3 test, one keep-alive wrk run and one Connection: close wrk
 * run, each with a fresh proxy; returns the Markdown section.
 */
async function profileTranproxy(ctx: Ctx): Promise<string[]> {
  const cli = ctx.cli!;
  const srv = ctx.srv!;
  const dir = join(tmpDir(), 'cpu-prof');
  mkdirSync(dir);
  chmodSync(dir, 0o1777); // the child writes here as uid 1337
  // `--cpu-prof` is not allowed in NODE_OPTIONS: a preload runs the profiler, toggled by SIGUSR2.
  const env = { NODE_OPTIONS: `--require ${PROF_PRELOAD}`, BENCH_CPU_PROF_DIR: dir };
  /** Start a fresh tranproxy, warm it up, profile `load` only, stop it; the summary. */
  const profiled = async <T>(
    args: string[],
    warmUp: () => Promise<unknown>,
    load: () => Promise<T>,
  ): Promise<{ result: T; summary: ProfileSummary }> => {
    const proxy = await startTranproxy(cli, args, env);
    const child = proxy.dataPid;
    const file = join(dir, `${child}.cpuprofile`);
    let result: T;
    try {
      await warmUp();
      process.kill(child, 'SIGUSR2');
      await sleep(200);
      result = await load();
      process.kill(child, 'SIGUSR2');
      for (let i = 0; i < 100 && !existsSync(file); i++) await sleep(100);
    } finally {
      await proxy.stop();
    }
    if (!existsSync(file)) throw new Error(`no profile of the data-plane child (pid ${child}) in ${dir}`);
    return { result, summary: summarizeProfile(readLog(file)) };
  };
  const out = [
    '## Where the time goes (tranproxy data plane, V8 CPU profile)',
    '',
    'V8 CPU profiles of the data-plane child during one measured-style run each, after a 1 s warm-up (the profiler is started by a preload,',
    '`bench/lib/cpu-prof-preload.cjs`, sampling every 0.5 ms; it slows the proxy somewhat, and the numbers above were taken without it).',
    'Self time: time spent in the function itself. `writeBuffer` and `writev` are the native bindings of a socket write: their self time is the',
    'write(2)/writev(2) system call, i.e. the kernel copying the bytes and running the TCP send path — on a veth pair or loopback that often includes',
    'the receiving side\'s protocol processing too. Reads (read(2) from libuv\'s event loop) fall under `(program)`. "busy" is the sampled time minus',
    "V8's `(idle)` (waiting in epoll); it is less than the CPU time /proc charges the process in (f), probably because network softirq work done on",
    "the proxy's CPU while it waits in epoll is charged to its system time but sampled as idle.",
    'FFI calls made through koffi all appear under one name, that of the last function koffi bound in the process (V8 names native functions by',
    "their shared entry point; checked with a two-function test) — in the current build `setrlimit`, which therefore stands for the data plane's",
    "FFI calls such as getsockopt(SO_ORIGINAL_DST), not for setrlimit(2). `dispatch` is the profiler's own inspector session.",
    '',
  ];
  const secs = ctx.opts.iperfSecs;
  // BENCH_PROFILE=bulk,keepalive,close,close-plain picks profiles (while iterating on one).
  const pick = new Set((process.env.BENCH_PROFILE ?? 'bulk,keepalive,close,close-plain').split(','));
  const iperfSrv = pick.has('bulk') ? await startIperfServer(srv) : undefined;
  if (iperfSrv)
    try {
      const { result, summary } = await profiled(
        TP.redirect(),
        () => iperf(cli, srv, iperfSrv, ADDR.srv, 1, 1),
        () => iperf(cli, srv, iperfSrv, ADDR.srv, 1, secs),
      );
      out.push(
        ...renderProfile(
          `Bulk TCP, iperf3 1 stream through REDIRECT, ${secs} s (${result.gbps.toFixed(2)} Gbit/s while profiled)`,
          summary,
        ),
      );
    } finally {
      await iperfSrv.proc.stop();
    }
  const http = await startHttpServer(srv);
  const url = `http://${ADDR.srv}/`;
  try {
    for (const which of ['keepalive', 'close', 'close-plain'] as const) {
      if (!pick.has(which)) continue;
      const close = which !== 'keepalive';
      const { result, summary } = await profiled(
        which === 'close-plain' ? TP.httpPlain() : TP.http(),
        () => wrk(cli, url, 1, false),
        () => wrk(cli, url, ctx.opts.wrkSecs, close),
      );
      const title =
        which === 'close-plain'
          ? `New connections, wrk -c50 with \`Connection: close\`, no headers added (TCP relay, spliced; ${fmtNum(result.rps)} conn/s while profiled)`
          : close
            ? `New connections, wrk -c50 with \`Connection: close\` and 3 injected headers (${fmtNum(result.rps)} conn/s while profiled)`
            : `HTTP keep-alive with 3 injected headers, wrk -c50 (${fmtNum(result.rps)} req/s while profiled)`;
      out.push(...renderProfile(title, summary));
    }
  } finally {
    await http.stop('SIGQUIT');
  }
  return out;
}

function memoryCase(ctx: Ctx): { c: CaseResult; run: () => Promise<void> } {
  const n = ctx.opts.holdCount;
  const cli = ctx.cli!;
  const srv = ctx.srv!;
  const c = newCase(
    {
      id: 'e',
      title: `(e) Memory per idle proxied connection (${n.toLocaleString('en-US')} held open, inspected: 3 injected headers)`,
      method: [
        `A Node client in the client ns opens ${n.toLocaleString('en-US')} connections to a server in the server ns (port ${PORT.hold}, captured with REDIRECT),`,
        '200 connecting at a time; on each it sends one keep-alive HTTP/1.1 request and waits for the whole answer, then holds the connection idle.',
        'tranproxy inspects every one (3 injected headers, `-H a:1 -H b:2 -H c:3`; the server answers whether they arrived and the runner checks all did);',
        "HAProxy relays them in tcp mode. Memory is /proc/PID/smaps_rollup (Rss, Pss, Anonymous) summed over all the variant's processes",
        '(tranproxy: supervisor + data-plane children), read 2 s after the last connection is held, minus the same read before',
        '(after a warm-up of 200 connections opened and closed, then 1.5 s idle), ÷ connections. The idle columns are that before-read.',
      ],
      variants: [],
      subject: 'tranproxy',
      anchors: [BEST_HAPROXY.key],
    },
    [
      { key: 'kbRss', label: 'RSS KB/conn', better: 'lower' },
      { key: 'kbPss', label: 'PSS KB/conn', better: 'lower' },
      { key: 'kbAnon', label: 'anon KB/conn', better: 'lower' },
      ...MEM_METRICS,
      { key: 'loadedRss', label: `RSS MB, ${n} conns`, better: 'lower' },
      { key: 'loadedAnon', label: `anon MB, ${n} conns`, better: 'lower' },
    ],
  );
  const variants: VariantDef[] = [
    {
      key: 'tranproxy',
      label: 'tranproxy',
      detail: `${tpCmd(TP.hold())} (children as uid ${UID.tranproxy})`,
      start: () => startTranproxy(cli, TP.hold()),
    },
    ...haproxyPair({
      key: 'haproxy',
      label: HAPROXY,
      detail: `\`mode tcp\`, \`server s 0.0.0.0:0\`, maxconn 9000, as uid ${UID.haproxy}`,
      start: (o) =>
        startHaproxy(cli, haproxyRedirect(PORT.haproxy, 9000, o), PORT.haproxy, UID.haproxy, [
          '--proxy-user',
          `${UID.haproxy}:${UID.haproxy}`,
          '-P',
          String(PORT.hold),
          '--family',
          'ipv4',
          '--listen-port',
          String(PORT.haproxy),
        ]),
      plain: true,
    }),
  ];
  c.variants = variants.map(({ key, label, detail }) => ({ key, label, detail }));
  c.notes.push(
    'Each held connection is two sockets in the proxy (client side and upstream); the runner checks the proxy holds ≥ 2 fds per connection.',
    "Kernel socket memory (buffers, TCP state) is not in a process's RSS and is the same for both proxies; this is the proxies' own user-space cost.",
    "tranproxy's memory is read as it is (no forced GC): garbage not yet collected counts, as it would in production.",
  );
  const fds = (pids: number[]): number => pids.reduce((s, p) => s + fdCount(p), 0);
  const holdArgs = (count: number, extra: string[]): string[] => [
    HOLD_CLIENT,
    ADDR.srv,
    String(PORT.hold),
    String(count),
    '200',
    '--http',
    ...extra,
  ];
  const run = async (): Promise<void> => {
    const log = logPath('hold-server');
    const server = startLogged(srv, log, NODE, [HOLD_SERVER, String(PORT.hold), '0.0.0.0', '--http']);
    try {
      await waitForListen(srv, PORT.hold, server, log);
      await alternate(ctx, c, variants, async (v, proxy, round) => {
        if (!proxy) return;
        const warm = await cli.run(NODE, holdArgs(200, ['--close']), { timeoutMs: 60_000 });
        if (!/held 200 failed 0/.test(warm.stdout))
          throw new Error(`warm-up: ${warm.stdout.trim()} ${warm.stderr.trim()}`);
        await sleep(1500);
        const base = memOf(proxy.pids);
        const holder = cli.spawn(NODE, holdArgs(n, []));
        try {
          const line = await holder.waitForOutput(/held \d+ failed \d+ injected \d+/, 180_000);
          const [held, injected] = [/held (\d+)/, /injected (\d+)/].map((re) => Number(re.exec(line)![1])) as [
            number,
            number,
          ];
          if (held < n) throw new Error(`only ${line}`);
          if (!v.plain && injected !== held) throw new Error(`headers injected on ${injected} of ${held} connections`);
          await sleep(2000);
          const loaded = memOf(proxy.pids);
          const open = fds(proxy.pids);
          if (open < 2 * held)
            throw new Error(`the proxy holds ${open} fds for ${held} connections: they do not go through it`);
          record(c, 'kbRss', v.key, round, (loaded.rss - base.rss) / held);
          record(c, 'kbPss', v.key, round, (loaded.pss - base.pss) / held);
          record(c, 'kbAnon', v.key, round, (loaded.anon - base.anon) / held);
          record(c, 'rss', v.key, round, base.rss / 1024);
          record(c, 'pss', v.key, round, base.pss / 1024);
          record(c, 'anon', v.key, round, base.anon / 1024);
          record(c, 'loadedRss', v.key, round, loaded.rss / 1024);
          record(c, 'loadedAnon', v.key, round, loaded.anon / 1024);
          const mb = (kb: number): string => (kb / 1024).toFixed(1);
          ctx.log(
            `  [e] round ${round} ${v.label.padEnd(24)} ${held} conns (${injected} injected), ${open} fds: RSS ${mb(base.rss)} → ${mb(loaded.rss)} MB, ` +
              `PSS ${mb(base.pss)} → ${mb(loaded.pss)}, anon ${mb(base.anon)} → ${mb(loaded.anon)} = ${((loaded.anon - base.anon) / held).toFixed(2)} KB anon/conn`,
          );
        } finally {
          await holder.stop();
          await sleep(500);
        }
      });
    } finally {
      await server.stop();
    }
    addBestOf(c, BEST_HAPROXY.key, BEST_HAPROXY.label, ['haproxy', 'haproxy-splice']);
  };
  return { c, run };
}

/** (k) Idle memory of a sidecar: every process of `tranproxy run -P 80 -H a:1 --Set-Forwarded-For default`. */
function sidecarCase(ctx: Ctx): { c: CaseResult; run: () => Promise<void> } {
  const cli = ctx.cli!;
  const srv = ctx.srv!;
  const sidecar = ['-P', String(PORT.http), '-H', 'a:1', '--Set-Forwarded-For', 'default'];
  const redirectRules = (uid: number, port: number): string[] => [
    '--proxy-user',
    `${uid}:${uid}`,
    '-P',
    String(PORT.http),
    '--family',
    'ipv4',
    '--listen-port',
    String(port),
  ];
  const c = newCase(
    {
      id: 'k',
      title: '(k) Sidecar idle memory, all processes',
      method: [
        `Each variant starts in the client ns as a sidecar for port ${PORT.http} (REDIRECT in OUTPUT), relays one request to the nginx server in the server ns`,
        '(`/check`: proves it relays, and for tranproxy and nginx that the header arrived), then sits idle for 2 s; then /proc/PID/smaps_rollup',
        '(Rss, Pss, Anonymous) is summed over all its processes (tranproxy: supervisor + data-plane child; nginx: master + workers; HAProxy: one process).',
        'The issue #16 targets for tranproxy: anonymous ≤ 16 MB, PSS ≤ 50 MB.',
      ],
      variants: [],
      subject: 'tranproxy',
      anchors: ['nginx-seed', 'haproxy'],
    },
    [
      ...MEM_METRICS.map((m) => ({ ...m, label: m.label.replace('idle ', '') })),
      { key: 'procs', label: 'processes', better: 'lower' as const },
    ],
  );
  const variants: VariantDef[] = [
    {
      key: 'tranproxy',
      label: 'tranproxy',
      detail: `\`tranproxy run ${sidecar.join(' ')}\` (its defaults: one data-plane child, as uid ${UID.tranproxy})`,
      start: () => startTranproxy(cli, sidecar),
    },
    {
      key: 'nginx-seed',
      label: 'nginx as nginx-tranproxy',
      detail: `nginx 1.22, worker_processes auto (${NPROC}), \`proxy_pass http://$host:${PORT.http}$request_uri\`, 3 × \`proxy_set_header\`, as uid ${UID.nginx}`,
      start: () =>
        startNginx(
          cli,
          'sidecar',
          (p) => nginxSeed(p, PORT.nginx, PORT.http, '127.0.0.1'),
          PORT.nginx,
          UID.nginx,
          redirectRules(UID.nginx, PORT.nginx),
        ),
    },
    {
      key: 'haproxy',
      label: HAPROXY,
      detail: `\`mode tcp\`, \`server s 0.0.0.0:0\`, default threads (${NPROC}), as uid ${UID.haproxy} (tcp mode adds no header)`,
      start: () =>
        startHaproxy(
          cli,
          haproxyRedirect(PORT.haproxy, 9000),
          PORT.haproxy,
          UID.haproxy,
          redirectRules(UID.haproxy, PORT.haproxy),
        ),
      plain: true,
    },
  ];
  c.variants = variants.map(({ key, label, detail }) => ({ key, label, detail }));
  c.notes.push(
    "PSS divides shared pages among every process that maps them, on the whole machine: tranproxy's node binary pages are shared with the bench runner",
    '(also node) and any other node process running, so its PSS here is lower than in a pod of its own; RSS and anonymous memory do not depend on that.',
    "nginx's workers share copy-on-write anonymous pages with their master: its summed anon counts them twice, its PSS does not.",
  );
  const url = `http://${ADDR.srv}/check`;
  const run = async (): Promise<void> => {
    const server = await startHttpServer(srv);
    try {
      await alternate(ctx, c, variants, async (v, proxy, round) => {
        if (!proxy) return;
        const check = await cli.run('curl', ['-sS', '--max-time', '5', url], { allowFailure: true });
        const got = check.stdout.trim();
        if (!(v.plain ? /^a= / : /^a=1 /).test(got))
          throw new Error(`header check: got '${got}' ${check.stderr.trim()}`);
        await sleep(2000);
        const m = memOf(proxy.pids);
        record(c, 'rss', v.key, round, m.rss / 1024);
        record(c, 'pss', v.key, round, m.pss / 1024);
        record(c, 'anon', v.key, round, m.anon / 1024);
        record(c, 'procs', v.key, round, proxy.pids.length);
        const per = proxy.pids.map((p) => {
          const x = memOf([p]);
          return `${p}: ${(x.rss / 1024).toFixed(1)}/${(x.pss / 1024).toFixed(1)}/${(x.anon / 1024).toFixed(1)}`;
        });
        ctx.log(
          `  [k] round ${round} ${v.label.padEnd(24)} RSS ${(m.rss / 1024).toFixed(1)} MB, PSS ${(m.pss / 1024).toFixed(1)}, anon ${(m.anon / 1024).toFixed(1)} (per process RSS/PSS/anon: ${per.join('; ')})`,
        );
      });
    } finally {
      await server.stop('SIGQUIT');
    }
  };
  return { c, run };
}

// ---------------------------------------------------------------------------------------------
// DNS (g, h, i): the gateway's forwarder against dnsmasq, dnsperf from the client namespace

const DNS = { port: 53, upstreamPort: 5300, names: 50, zone: 'bench.test' } as const;

type DnsMode = 'g' | 'h' | 'i';

/** What dnsperf printed: queries/s, average and worst latency (ms), lost queries. */
function parseDnsperf(out: string): { qps: number; avgMs: number; maxMs: number; lost: number } {
  const num = (re: RegExp): number => {
    const m = re.exec(out);
    if (!m) throw new Error(`dnsperf output not understood: ${out.slice(-400)}`);
    return Number(m[1]);
  };
  return {
    qps: num(/Queries per second:\s+([\d.]+)/),
    avgMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    maxMs: num(/Average Latency \(s\):.*max ([\d.]+)\)/) * 1000,
    lost: num(/Queries lost:\s+(\d+)/),
  };
}

/** The lab's authoritative upstream: dnsmasq answering *.bench.test from --address, TTL 1 h. */
function startDnsUpstream(srv: Host): LabProcess {
  return startLogged(srv, logPath('dns-upstream'), 'dnsmasq', [
    '-k',
    '--no-resolv',
    '--no-hosts',
    '--pid-file=',
    '--user=root',
    '--bind-interfaces',
    '--listen-address=127.0.0.1',
    '-p',
    String(DNS.upstreamPort),
    `--address=/${DNS.zone}/192.0.2.200`,
    '--local-ttl=3600',
    '--cache-size=0',
    '--log-facility=-',
  ]);
}

function dnsCase(ctx: Ctx, id: DnsMode): { c: CaseResult; run: () => Promise<void> } {
  const cli = ctx.cli!;
  const srv = ctx.srv!;
  const secs = ctx.opts.quick ? 3 : 8;
  const what = { g: 'answers from the cache', h: 'fake-IP answers', i: 'uncached answers (every query goes upstream)' }[
    id
  ];
  const c = newCase(
    {
      id,
      title: `(${id}) DNS ${what} (dnsperf -c 10)`,
      method: [
        `\`dnsperf -c 10 -l ${secs}\` in the client ns sends A queries for ${DNS.names} names (n1…n${DNS.names}.${DNS.zone}, in a loop) to the forwarder in the server ns (${ADDR.srv}:${DNS.port}).`,
        `The upstream is dnsmasq in the server ns on 127.0.0.1:${DNS.upstreamPort}, answering *.${DNS.zone} from \`--address\` with TTL 3600 and no cache of its own.`,
        id === 'g'
          ? 'Cached: both forwarders cache (tranproxy `dns.cache: true`, dnsmasq `--cache-size=1000`); the warm-up pass fills the caches.'
          : id === 'h'
            ? `Fake-IP: tranproxy answers from its fake-IP pool (\`dns.fake-ip\`, 198.18.0.0/15), dnsmasq from its own \`--address=/${DNS.zone}/…\`: neither asks upstream.`
            : 'Uncached: tranproxy `dns.cache: false`, dnsmasq `--cache-size=0`: every query is forwarded to the upstream (which runs on the same 2 CPUs for both).',
        'tranproxy is the real gateway process: `tranproxy run --config FILE --firewall none`, the forwarder in its data-plane child (as uid 1337).',
        'Each round starts the variant afresh, runs a 2 s dnsperf warm-up pass (a long-running gateway has its JIT warm), then the measured pass.',
      ],
      variants: [],
      subject: 'tranproxy',
      anchors: ['dnsmasq'],
    },
    [
      { key: 'qps', label: 'queries/s', better: 'higher' },
      { key: 'avg', label: 'avg latency ms', better: 'lower' },
      { key: 'max', label: 'worst latency ms', better: 'lower' },
      { key: 'lost', label: 'lost queries', better: 'lower' },
    ],
  );
  const dnsYaml = [
    'dns:',
    `  listen: ${DNS.port}`,
    `  nameservers: ["127.0.0.1:${DNS.upstreamPort}"]`,
    `  cache: ${id === 'i' ? 'false' : 'true'}`,
    ...(id === 'h' ? ['  fake-ip:', '    enabled: true', '    range: 198.18.0.0/15'] : []),
    '',
  ].join('\n');
  const variants: VariantDef[] = [
    {
      key: 'tranproxy',
      label: 'tranproxy',
      detail: `\`tranproxy run --config FILE --firewall none\` with \`${dnsYaml.trim().replace(/\n\s*/g, ' ')}\``,
      start: async () => {
        const file = join(tmpDir(), `dns-${id}.yaml`);
        writeFileSync(file, dnsYaml);
        chmodSync(file, 0o644);
        const p = await startTranproxy(srv, [
          '--config',
          file,
          '--firewall',
          'none',
          '--listen-port',
          String(PORT.tranproxy),
        ]);
        await waitForListen(srv, DNS.port);
        return p;
      },
    },
    {
      key: 'dnsmasq',
      label: 'dnsmasq',
      detail:
        id === 'h'
          ? `\`dnsmasq --address=/${DNS.zone}/198.18.0.1 --local-ttl=1\` (answers itself)`
          : `\`dnsmasq --server=127.0.0.1#${DNS.upstreamPort} --cache-size=${id === 'i' ? 0 : 1000}\``,
      start: async () => {
        const log = logPath('dnsmasq');
        const args = [
          '-k',
          '--no-resolv',
          '--no-hosts',
          '--pid-file=',
          '--user=root',
          '--bind-interfaces',
          `--listen-address=${ADDR.srv}`,
          '-p',
          String(DNS.port),
          '--log-facility=-',
        ];
        if (id === 'h') args.push(`--address=/${DNS.zone}/198.18.0.1`, '--local-ttl=1');
        else args.push(`--server=127.0.0.1#${DNS.upstreamPort}`, `--cache-size=${id === 'i' ? 0 : 1000}`);
        const p = startLogged(srv, log, 'dnsmasq', args);
        await waitForListen(srv, DNS.port, p, log);
        return { pids: [p.pid], dataPid: p.pid, errorLog: log, stop: async () => void (await p.stop()) };
      },
    },
  ];
  c.variants = variants.map(({ key, label, detail }) => ({ key, label, detail }));
  const queries = join(tmpDir(), 'dns-queries.txt');
  const run = async (): Promise<void> => {
    writeFileSync(queries, Array.from({ length: DNS.names }, (_, i) => `n${i + 1}.${DNS.zone} A\n`).join(''));
    chmodSync(queries, 0o644);
    const upstream = startDnsUpstream(srv);
    try {
      await alternate(ctx, c, variants, async (v, _proxy, round) => {
        const perf = (l: number) =>
          cli.run('dnsperf', ['-s', ADDR.srv, '-p', String(DNS.port), '-d', queries, '-c', '10', '-l', String(l)], {
            allowFailure: true,
            timeoutMs: (l + 30) * 1000,
          });
        await perf(2); // warm-up: JIT for tranproxy, and for (g) both caches filled
        const r = await perf(secs);
        if (r.status !== 0) throw new Error(`dnsperf failed (${r.status}): ${r.stderr || r.stdout}`);
        const d = parseDnsperf(r.stdout);
        record(c, 'qps', v.key, round, d.qps);
        record(c, 'avg', v.key, round, d.avgMs);
        record(c, 'max', v.key, round, d.maxMs);
        record(c, 'lost', v.key, round, d.lost);
        ctx.log(
          `  [${id}] round ${round} ${v.label.padEnd(10)} ${fmtNum(d.qps)} q/s, avg ${d.avgMs.toFixed(2)} ms, worst ${d.maxMs.toFixed(1)} ms, lost ${d.lost}`,
        );
      });
    } finally {
      await upstream.stop();
    }
  };
  return { c, run };
}

// ---------------------------------------------------------------------------------------------
// (j) Large rule sets: start-up and reload of `tranproxy run` with a big domain list

/** A domain list of `n` entries: half bare names, a quarter domain:, 23% full:, 2% keyword: (deterministic). */
function domainListText(n: number): string {
  let seed = 12345;
  const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const word = (): string => Math.floor(rnd() * 36 ** 6).toString(36);
  const tlds = ['com', 'net', 'org', 'cn', 'io'];
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = rnd();
    const d = `${word()}${i}.${tlds[i % 5]}`;
    out.push(r < 0.5 ? d : r < 0.75 ? `domain:${d}` : r < 0.98 ? `full:www.${d}` : `keyword:${word()}${i}`);
  }
  return `${out.join('\n')}\n`;
}

function ruleSetCase(ctx: Ctx): { c: CaseResult; run: () => Promise<void> } {
  const srv = ctx.srv!;
  const sizes = [200_000, 1_000_000];
  const c = newCase(
    {
      id: 'j',
      title: '(j) Start-up and SIGHUP reload with a large domain list',
      method: [
        '`tranproxy run --config FILE --firewall none` in a lab ns with one rule `domain-list: list.txt` → direct; the list has 200,000 or 1,000,000 entries',
        '(50% bare names, 25% `domain:`, 23% `full:`, 2% `keyword:`, generated). "ready" is the wall time from spawn to the ready line; "reload" from SIGHUP to the',
        '`reloaded:` line (the new generation compiled and its data plane started); CPU is utime+stime of the supervisor and of the data-plane child',
        '(/proc/PID/stat) at ready — less sensitive to other load than wall time; RSS is VmRSS after ready and after the reload. No anchor: the goal is',
        'a million entries in under 2 s and under 300 MB.',
      ],
      variants: sizes.map((n) => ({
        key: `n${n}`,
        label: `${n.toLocaleString('en-US')} entries`,
        detail: `list of ${n.toLocaleString('en-US')} lines`,
      })),
      subject: `n${sizes[1]}`,
      anchors: [],
    },
    [
      { key: 'ready', label: 'start to ready s', better: 'lower' },
      { key: 'cpuSup', label: 'supervisor CPU s at ready', better: 'lower' },
      { key: 'cpuChild', label: 'child CPU s at ready', better: 'lower' },
      { key: 'reload', label: 'SIGHUP to reloaded s', better: 'lower' },
      { key: 'rssSup', label: 'supervisor RSS MB', better: 'lower' },
      { key: 'rssChild', label: 'child RSS MB', better: 'lower' },
      { key: 'rssSupReload', label: 'supervisor RSS MB after reload', better: 'lower' },
    ],
  );
  const run = async (): Promise<void> => {
    for (let round = 1; round <= ctx.opts.rounds; round++) {
      for (const n of sizes) {
        const key = `n${n}`;
        const dir = mkdtempSync(join(tmpDir(), 'rules-'));
        chmodSync(dir, 0o755);
        writeFileSync(join(dir, 'list.txt'), domainListText(n));
        writeFileSync(
          join(dir, 'tranproxy.yaml'),
          'rules:\n  - domain-list: list.txt\n    outbound: direct\ndefault: direct\n',
        );
        const log = logPath('tranproxy-rules');
        const t0 = Date.now();
        const p = startLogged(srv, log, NODE, [
          MAIN,
          'run',
          '--config',
          join(dir, 'tranproxy.yaml'),
          '--firewall',
          'none',
          '--listen-port',
          String(PORT.tranproxy),
        ]);
        try {
          await waitForLog(p, log, /^tranproxy:? ready:.*$/m, 120_000);
          const ready = (Date.now() - t0) / 1000;
          const kids = descendants(p.pid);
          record(c, 'ready', key, round, ready);
          record(c, 'cpuSup', key, round, cpuSeconds(p.pid));
          record(
            c,
            'cpuChild',
            key,
            round,
            kids.reduce((s, k) => s + cpuSeconds(k), 0),
          );
          record(c, 'rssSup', key, round, rssKb(p.pid) / 1024);
          record(c, 'rssChild', key, round, kids.reduce((s, k) => s + rssKb(k), 0) / 1024);
          const t1 = Date.now();
          process.kill(p.pid, 'SIGHUP');
          await waitForLog(p, log, /^tranproxy:? reloaded:.*$/m, 120_000);
          record(c, 'reload', key, round, (Date.now() - t1) / 1000);
          record(c, 'rssSupReload', key, round, rssKb(p.pid) / 1024);
          ctx.log(
            `  [j] round ${round} ${String(n).padStart(7)} entries: ready ${ready.toFixed(1)} s (CPU ${cpuSeconds(p.pid).toFixed(2)} s + child), reload ${((Date.now() - t1) / 1000).toFixed(1)} s`,
          );
        } catch (e) {
          c.errors.push(`round ${round}, ${n} entries: ${(e as Error).message.split('\n')[0]}`);
        } finally {
          await p.stop('SIGTERM');
          rmSync(dir, { recursive: true, force: true });
        }
      }
    }
  };
  return { c, run };
}

/** (f) is read off the CPU columns of (a) and (b). */
function cpuCase(from: CaseResult[]): CaseResult {
  const c = newCase(
    {
      id: 'f',
      title: '(f) CPU seconds per GB relayed',
      method: [
        'utime+stime of every process of the proxy (/proc/PID/stat, tranproxy: supervisor + data-plane child) over each iperf3 test of (a) and (b),',
        '÷ GB received by the iperf3 server. Kernel work done in softirq context on behalf of the proxy is not attributed to it.',
        'This is the figure least sensitive to other load on the machine: throughput depends on how much of the 2 CPUs each proxy gets',
        '(a proxy that got 2.7 CPU s in a 5 s test was waiting for a CPU, not saturated), CPU per byte much less.',
      ],
      variants: from[0]?.variants.filter((v) => v.key !== 'none') ?? [],
      subject: 'tranproxy',
      anchors: [BEST_HAPROXY.key],
    },
    from.flatMap((src) => [
      { key: `${src.id}1`, label: `(${src.id}) 1 stream s/GB`, better: 'lower' as const },
      { key: `${src.id}4`, label: `(${src.id}) 4 streams s/GB`, better: 'lower' as const },
    ]),
  );
  for (const src of from) {
    for (const streams of [1, 4]) {
      const m = src.metrics.find((x) => x.key === `cpu${streams}`)!;
      for (const [variant, values] of m.values)
        for (const [round, v] of values) record(c, `${src.id}${streams}`, variant, round, v);
    }
  }
  return c;
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
    `Generated by \`bench/run.ts\`. Every case runs tranproxy and its anchors alternately in one run (A B C, A B C, … — ${opts.rounds} rounds), so`,
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
  const summary: string[] = [];
  for (const id of ['a', 'b'] as const) {
    const c = byId(id);
    if (!c) continue;
    for (const s of [1, 4]) {
      const m = `g${s}`;
      summary.push(
        `| ${id === 'a' ? 'REDIRECT' : 'TPROXY'} throughput, ${s} stream${s > 1 ? 's' : ''} | ${med(c, m, 'tranproxy')} Gbit/s | HAProxy ${med(c, m, 'haproxy')}, with splice-auto ${med(c, m, 'haproxy-splice')}, no proxy ${med(c, m, 'none')} | ${ratioText(c, m, BEST_HAPROXY.key, 'best HAProxy')}; ${ratioText(c, m, 'none', 'no proxy')} |`,
      );
    }
  }
  for (const id of ['c', 'd'] as const) {
    const c = byId(id);
    if (!c) continue;
    const unit = id === 'c' ? 'req/s' : 'conn/s';
    summary.push(
      `| ${id === 'c' ? 'HTTP keep-alive, 3 headers added' : 'new HTTP connections'} | ${med(c, 'rps', 'tranproxy')} ${unit}, p99 ${med(c, 'p99', 'tranproxy')} ms | nginx as nginx-tranproxy ${med(c, 'rps', 'nginx-seed')} (p99 ${med(c, 'p99', 'nginx-seed')} ms), nginx with upstream keepalive ${med(c, 'rps', 'nginx-fast')} (p99 ${med(c, 'p99', 'nginx-fast')} ms), no proxy ${med(c, 'rps', 'none')} | ${unit}: ${ratioText(c, 'rps', 'nginx-seed', 'nginx as nginx-tranproxy')}; ${ratioText(c, 'rps', 'nginx-fast', 'nginx with keepalive')} |`,
    );
    if (id === 'd' && c.metrics.some((m) => m.values.has(HAPROXY_TCP_BEST.key))) {
      const hb = HAPROXY_TCP_BEST.key;
      summary.push(
        `| new TCP connections, no headers (HTTP Connection: close) | tranproxy ${med(c, 'rps', 'tranproxy-tcp')} conn/s, p99 ${med(c, 'p99', 'tranproxy-tcp')} ms | HAProxy tcp mode ${med(c, 'rps', 'haproxy-tcp')}, with splice-auto ${med(c, 'rps', 'haproxy-tcp-splice')} (best p99 ${med(c, 'p99', hb)} ms) | conn/s: ${ratioText(c, 'rps', hb, 'best HAProxy', 'tranproxy-tcp')}; with 3 headers added: ${ratioText(c, 'rps', hb, 'best HAProxy')} |`,
      );
    }
  }
  const e = byId('e');
  if (e) {
    const hb = BEST_HAPROXY.key;
    summary.push(
      `| memory per idle inspected connection (3 headers) ↓ | anon ${med(e, 'kbAnon', 'tranproxy')} KB, RSS ${med(e, 'kbRss', 'tranproxy')} KB, PSS ${med(e, 'kbPss', 'tranproxy')} KB (all processes) | best HAProxy anon ${med(e, 'kbAnon', hb)} KB, RSS ${med(e, 'kbRss', hb)} KB, PSS ${med(e, 'kbPss', hb)} KB | anon: ${ratioText(e, 'kbAnon', hb, 'best HAProxy')}; RSS: ${ratioText(e, 'kbRss', hb, 'best HAProxy')} |`,
    );
  }
  const k = byId('k');
  if (k) {
    const mem = (v: string): string => `${med(k, 'rss', v)} / ${med(k, 'pss', v)} / ${med(k, 'anon', v)} MB`;
    summary.push(
      `| sidecar idle memory, all processes, RSS / PSS / anon ↓ | ${mem('tranproxy')} | nginx as nginx-tranproxy ${mem('nginx-seed')}; HAProxy ${mem('haproxy')} | anon: ${ratioText(k, 'anon', 'nginx-seed', 'nginx')}, ${ratioText(k, 'anon', 'haproxy', 'HAProxy')}; PSS: ${ratioText(k, 'pss', 'nginx-seed', 'nginx')} (targets: anon ≤ 16 MB, PSS ≤ 50 MB) |`,
    );
  }
  for (const id of ['l', 'm', 'n'] as const) {
    const c = byId(id);
    if (!c) continue;
    const anchor = id === 'n' ? 'redsocks' : 'ss-redir';
    const what = { l: 'Shadowsocks aes-256-gcm', m: 'Shadowsocks chacha20', n: 'SOCKS5' }[id];
    summary.push(
      `| gateway via ${what} node: bulk 1 / 4 streams, conn/s | ${med(c, 'g1', 'tranproxy')} / ${med(c, 'g4', 'tranproxy')} Gbit/s, ${med(c, 'cps', 'tranproxy')} conn/s; idle anon ${med(c, 'anon', 'tranproxy')} MB | ${anchor} ${med(c, 'g1', anchor)} / ${med(c, 'g4', anchor)} Gbit/s, ${med(c, 'cps', anchor)} conn/s; idle anon ${med(c, 'anon', anchor)} MB | 1 stream ${ratioText(c, 'g1', anchor, anchor)}; 4 streams ${ratioText(c, 'g4', anchor, anchor)}; conn/s ${ratioText(c, 'cps', anchor, anchor)} |`,
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
  writeFileSync(opts.out, text);
  process.stdout.write(`\n${text}\nbench: wrote ${opts.out} (${Math.round(elapsed)} s)\n`);
  if (cases.some((c) => c.errors.length)) process.exitCode = 1;
}

main().catch((e: Error) => {
  process.stderr.write(`bench: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
