import { nginxFast } from '../lib/configs.js';
import { fmtNum } from '../lib/parse.js';
import { readLog, workCost } from '../lib/proc.js';
import { addBestOf, newCase, record, type CaseResult } from '../lib/report.js';
import {
  anchorRules,
  ADDR,
  type CaseId,
  cpuOf,
  type Ctx,
  HAPROXY,
  MEM_METRICS,
  CPU_PER_K_NOTE,
  MEM_NOTE,
  NPROC,
  PORT,
  recordIdleMemory,
  type RunningProxy,
  startHttpServer,
  startNginx,
  startTranproxy,
  TP,
  tpCmd,
  UID,
  type VariantDef,
  wrk,
} from '../lib/runner.js';
import { startHaproxyRedirect, startNginxSeed } from '../lib/anchors.js';

/** `args` with one engine thread instead of the bench's one per CPU. */
const oneThread = (args: string[]): string[] => {
  const i = args.indexOf('--workers');
  return i < 0 ? [...args, '--workers', '1'] : [...args.slice(0, i), '--workers', '1', ...args.slice(i + 2)];
};

export function httpCases(ctx: Ctx, which: Set<CaseId>): { cases: CaseResult[]; run: () => Promise<void> } {
  const secs = ctx.opts.wrkSecs;
  const cli = ctx.cli!;
  const srv = ctx.srv!;
  const url = `http://${ADDR.srv}/`;
  const common = [
    `wrk \`-t1 -c50 -d${secs}s --latency\` in the client ns to \`${url}\` (port ${PORT.http} captured with REDIRECT in OUTPUT); the server is nginx in the server ns`,
    '(1 worker, `return 200 "ok"`, keepalive_requests 1000000). Every proxy adds three headers (a: 1, b: 2, c: 3) — checked before each run',
    `through \`/check\`, which echoes them — and runs under its own uid with one worker per CPU (${NPROC}: tranproxy \`--workers ${NPROC}\` and its default \`--workers 1\`, the better median of the two reported as "tranproxy at its best", nginx \`worker_processes auto\`,`,
    'HAProxy its default nbthread). The anchors log nothing (tranproxy writes one log line per connection).',
    'Each proxy start is followed by a 1 s keep-alive warm-up run (not measured), then the measured run(s).',
  ];
  const variants: VariantDef[] = [
    {
      key: 'tranproxy-n',
      label: `tranproxy --workers ${NPROC}`,
      detail: `${tpCmd(TP.http())} (data-plane child as uid ${UID.tranproxy}, log to a file)`,
      start: () => startTranproxy(cli, TP.http()),
    },
    {
      key: 'tranproxy-1',
      label: 'tranproxy --workers 1',
      detail: `${tpCmd(oneThread(TP.http()))}: the default, one engine thread whose loop runs on the main thread`,
      start: () => startTranproxy(cli, oneThread(TP.http())),
    },
    {
      key: 'nginx-seed',
      label: 'nginx as nginx-tranproxy',
      detail:
        `nginx 1.22, worker_processes auto, as uid ${UID.nginx}: \`resolver\`, \`proxy_pass http://$host:${PORT.http}$request_uri\`, \`proxy_set_header\` ×3, ` +
        "defaults otherwise (HTTP/1.0 upstream, one upstream connection per request) — the configuration nginx-tranproxy generates; the Host is the server's IP, so no DNS query is made",
      start: () => startNginxSeed(cli, 'seed'),
    },
    {
      key: 'nginx-fast',
      label: 'nginx, upstream keepalive',
      detail:
        `nginx 1.22, worker_processes auto, as uid ${UID.nginx}: \`upstream { server ${ADDR.srv}:${PORT.http}; keepalive 64; }\`, \`proxy_http_version 1.1\`, ` +
        '`proxy_set_header Connection ""`, `proxy_set_header` ×3 — its fastest form (a fixed upstream: not a transparent proxy, it ignores the original destination)',
      start: () =>
        startNginx(
          cli,
          'fast',
          (p) => nginxFast(p, PORT.nginx, `${ADDR.srv}:${PORT.http}`),
          PORT.nginx,
          UID.nginx,
          anchorRules(UID.nginx, PORT.http, PORT.nginx),
        ),
    },
    {
      key: 'tranproxy-tcp',
      label: 'tranproxy, no headers',
      detail: `${tpCmd(TP.httpPlain())}: no header injection, so a plain TCP relay (spliced under the default \`--relay auto\`); compared with HAProxy in tcp mode`,
      start: () => startTranproxy(cli, TP.httpPlain()),
      only: ['d'],
      plain: true,
    },
    {
      key: 'haproxy-tcp',
      label: `${HAPROXY}, tcp mode`,
      detail: `\`mode tcp\`, \`server s 0.0.0.0:0\` (follows SO_ORIGINAL_DST), default threads (${NPROC}), as uid ${UID.haproxy}; no headers (tcp mode cannot add any)`,
      start: () => startHaproxyRedirect(cli, PORT.http),
      only: ['d'],
      plain: true,
    },
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
    { key: 'cpuk', label: 'proxy CPU s per 1k req', better: 'lower' as const },
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
        `(default threads; no splicing variant here: a connection that carries a few hundred bytes gains nothing from splice(2)).`,
      ],
      ...base(variants, ['nginx-seed', 'nginx-fast', 'haproxy-tcp', 'none']),
    },
    metrics.map((m) => (m.key === 'rps' ? { ...m, label: 'conn/s' } : m)),
  );
  dCase.notes.push(
    "Observed (BENCH_DEBUG=1 counts TIME_WAIT sockets after each run): through tranproxy, wrk is the side that closes first — tranproxy passes the server's FIN on " +
      "with the response — so the TIME_WAIT sockets sit on the client's ephemeral ports towards port 80, the same port space " +
      "tranproxy's upstream connections draw from; nginx terminates HTTP and closes the client connection itself, so its TIME_WAITs sit on its own listen port.",
    'The lab namespaces use ip_local_port_range 20000–65535 and tcp_tw_reuse=1 so that no variant runs out of ports (without them every variant, even ' +
      '"no proxy", collapsed to a few hundred conn/s after the first rounds).',
  );
  cCase.notes.push(
    '"nginx, upstream keepalive" is the fastest nginx can do this job, but it is not a transparent proxy: it sends everything to one fixed upstream.',
  );
  for (const c of [cCase, dCase]) c.notes.push(CPU_PER_K_NOTE, MEM_NOTE);
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
                const {
                  result: r,
                  cpuPerK,
                  detail,
                } = await workCost(
                  proxy?.pids ?? [],
                  () => wrk(cli, url, secs, c.id === 'd'),
                  (w) => w.requests,
                );
                const cpu = cpuOf(proxy) - cpu0;
                if (detail) ctx.log(`  [${c.id}] ${v.label}: ${detail}`);
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
                if (proxy) record(c, 'cpuk', v.key, round, cpuPerK);
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
    // Like "best HAProxy": tranproxy at its best of one thread and one per CPU (on a small
    // machine the load generator and the server take cores a second engine thread would use).
    for (const c of cases) addBestOf(c, 'tranproxy', 'tranproxy at its best', ['tranproxy-n', 'tranproxy-1']);
  };
  return { cases, run };
}
