// Where tranproxy's data plane spends its time: V8 CPU profiles taken during bulk and HTTP runs.
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fmtNum } from '../lib/parse.js';
import { readLog, sleep } from '../lib/proc.js';
import { renderProfile, summarizeProfile, type ProfileSummary } from '../lib/profile.js';
import {
  ADDR,
  type Ctx,
  iperf,
  ROOT,
  startHttpServer,
  startIperfServer,
  startTranproxy,
  tmpDir,
  TP,
  wrk,
} from '../lib/runner.js';

// One data-plane process (the last --workers wins), so its profile sees all of the load.
const ONE_WORKER = ['--workers', '1'];
const PROF_PRELOAD = join(ROOT, 'bench/lib/cpu-prof-preload.cjs');

/**
 * CPU profile of tranproxy's data-plane child (a preload via NODE_OPTIONS reaches it through
 * fork) during one 1-stream iperf3 test, one keep-alive wrk run and one Connection: close wrk
 * run, each with a fresh proxy; returns the Markdown section.
 */
export async function profileTranproxy(ctx: Ctx): Promise<string[]> {
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
        [...TP.redirect(), ...ONE_WORKER],
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
        [...(which === 'close-plain' ? TP.httpPlain() : TP.http()), ...ONE_WORKER],
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
