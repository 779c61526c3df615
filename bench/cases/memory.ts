import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { Host } from '../../src/netlab/lab.js';
import { descendants, fdCount, memOf, sleep, startLogged, waitForListen, waitForLog } from '../lib/proc.js';
import { addBestOf, newCase, record, type CaseResult } from '../lib/report.js';
import {
  ADDR,
  alternate,
  captureArgs,
  type Ctx,
  HAPROXY,
  logPath,
  MAIN,
  MEM_METRICS,
  NODE,
  NPROC,
  PORT,
  ROOT,
  type RunningProxy,
  rulesRemove,
  startHttpServer,
  startTranproxy,
  TP,
  tpCmd,
  tranproxyCli,
  UID,
  type VariantDef,
} from '../lib/runner.js';
import { startHaproxyRedirect, startNginxSeed } from '../lib/anchors.js';

const HOLD_SERVER = join(ROOT, 'bench/peers/hold-server.mjs');
const HOLD_CLIENT = join(ROOT, 'bench/peers/hold-client.mjs');

export function memoryCase(ctx: Ctx): { c: CaseResult; run: () => Promise<void> } {
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
        '(tranproxy: supervisor + data-plane children, or the one process), read 2 s after the last connection is held, minus the same read before',
        '(after a warm-up of 200 connections opened and closed, then 1.5 s idle), ÷ connections. The idle columns are that before-read.',
      ],
      variants: [],
      subject: 'tranproxy',
      anchors: ['haproxy'],
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
  const oneProcess = hasOneProcess();
  const variants: VariantDef[] = [
    {
      key: oneProcess ? 'tranproxy-n' : 'tranproxy',
      label: oneProcess ? `tranproxy, ${NPROC} workers` : 'tranproxy',
      detail: `${tpCmd(TP.hold())} (children as uid ${UID.tranproxy})`,
      start: () => startTranproxy(cli, TP.hold()),
    },
    ...(oneProcess
      ? [
          {
            key: 'tranproxy-one',
            label: 'tranproxy --one-process',
            detail: `the sidecar's init-container layout: \`tranproxy rules apply ${captureArgs(PORT.hold, PORT.tranproxy).join(' ')}\` as root, then \`tranproxy run --firewall none --one-process ${TP.holdOne().join(' ')}\` as uid ${UID.tranproxy} with \`NODE_OPTIONS=${INJECTED_NODE_OPTIONS}\` as \`tranproxy inject\` sets it (one process, one engine thread)`,
            start: () =>
              startOneProcess(cli, TP.holdOne(), captureArgs(PORT.hold, PORT.tranproxy), {
                ...process.env,
                NODE_OPTIONS: INJECTED_NODE_OPTIONS,
              }),
          },
        ]
      : []),
    {
      key: 'haproxy',
      label: HAPROXY,
      detail: `\`mode tcp\`, \`server s 0.0.0.0:0\`, maxconn 9000, default threads (${NPROC}), as uid ${UID.haproxy} (no splicing variant: idle connections hold no pipes)`,
      start: () => startHaproxyRedirect(cli, PORT.hold),
      plain: true,
    },
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
    await runHolds();
    if (oneProcess) addBestOf(c, 'tranproxy', 'tranproxy at its best', ['tranproxy-n', 'tranproxy-one']);
  };
  const runHolds = async (): Promise<void> => {
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
  };
  return { c, run };
}

/** What `tranproxy inject` puts in the sidecar's environment (src/k8s/sidecar.ts V8_ENV). */
const INJECTED_NODE_OPTIONS = '--max-semi-space-size=1';

/** Whether this build has the init-container layout (`run --one-process`). */
function hasOneProcess(): boolean {
  return execFileSync(NODE, [MAIN, 'run', '--help'], { encoding: 'utf8' }).includes('--one-process');
}

/** The init-container layout: the rules applied first (as an init container would), then one unprivileged process. */
async function startOneProcess(
  host: Host,
  args: string[],
  capture: string[],
  env?: NodeJS.ProcessEnv,
): Promise<RunningProxy> {
  await tranproxyCli(host, ['rules', 'apply', ...capture]);
  const log = logPath('tranproxy-one');
  const p = startLogged(host, log, NODE, [MAIN, 'run', '--firewall', 'none', '--one-process', ...args], {
    uid: UID.tranproxy,
    gid: UID.tranproxy,
    ...(env ? { env } : {}),
  });
  try {
    await waitForLog(p, log, /^tranproxy:? ready:.*$/m, 20_000);
  } catch (e) {
    await p.stop();
    await rulesRemove(host);
    throw e;
  }
  return {
    pids: [p.pid, ...descendants(p.pid)],
    dataPid: p.pid,
    stop: async () => {
      await p.stop('SIGTERM');
      await rulesRemove(host);
    },
  };
}

/** (k) Idle memory of a sidecar: every process of `tranproxy run -P 80 -H a:1 --Set-Forwarded-For default`. */
export function sidecarCase(ctx: Ctx): { c: CaseResult; run: () => Promise<void> } {
  const cli = ctx.cli!;
  const srv = ctx.srv!;
  const sidecar = ['-P', String(PORT.http), '-H', 'a:1', '--Set-Forwarded-For', 'default'];
  const c = newCase(
    {
      id: 'k',
      title: '(k) Sidecar idle memory, all processes',
      method: [
        `Each variant starts in the client ns as a sidecar for port ${PORT.http} (REDIRECT in OUTPUT), relays one request to the nginx server in the server ns`,
        '(`/check`: proves it relays, and for tranproxy and nginx that the header arrived), then sits idle for 2 s; then /proc/PID/smaps_rollup',
        '(Rss, Pss, Anonymous) is summed over all its processes (tranproxy: supervisor + data-plane child, or the one process of `--one-process`; nginx: master + workers; HAProxy: one process).',
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
    ...(hasOneProcess()
      ? [
          {
            key: 'tranproxy-one',
            label: 'tranproxy --one-process',
            detail: `the init-container layout: \`tranproxy rules apply -P ${PORT.http}\` (as root, then gone), then \`tranproxy run --firewall none --one-process ${sidecar.join(' ')}\` as uid ${UID.tranproxy}: one process`,
            start: () => startOneProcess(cli, sidecar, ['-P', String(PORT.http)]),
          },
        ]
      : []),
    {
      key: 'nginx-seed',
      label: 'nginx as nginx-tranproxy',
      detail: `nginx 1.22, worker_processes auto (${NPROC}), \`proxy_pass http://$host:${PORT.http}$request_uri\`, 3 × \`proxy_set_header\`, as uid ${UID.nginx}`,
      start: () => startNginxSeed(cli, 'sidecar'),
    },
    {
      key: 'haproxy',
      label: HAPROXY,
      detail: `\`mode tcp\`, \`server s 0.0.0.0:0\`, default threads (${NPROC}), as uid ${UID.haproxy} (tcp mode adds no header)`,
      start: () => startHaproxyRedirect(cli, PORT.http),
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
