// Process plumbing for the benchmark runner: programs started inside lab hosts with their
// output going to a log file (not through a pipe into this process, which shares the CPUs
// being measured), readiness waits, and /proc readings (CPU ticks, RSS, descendants).
import { spawn } from 'node:child_process';
import { chownSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Host, LabProcess } from '../../src/netlab/lab.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Clock ticks per second of /proc/PID/stat times (CONFIG_HZ-independent USER_HZ). */
export const CLK_TCK = 100;

export interface IdOpts {
  uid?: number;
  gid?: number;
  env?: NodeJS.ProcessEnv;
}

/**
 * Start `cmd args` in `host` with stdout+stderr appended to `logFile` (created, and owned by
 * `uid` when given, so the program can open it after dropping privileges). The lab tracks
 * the process and kills it on destroy; `ip netns exec`, setpriv and `sh -c exec` all exec,
 * so the returned pid is the program's own.
 */
export function startLogged(host: Host, logFile: string, cmd: string, args: string[], opts: IdOpts = {}): LabProcess {
  writeFileSync(logFile, '');
  if (opts.uid !== undefined) chownSync(logFile, opts.uid, opts.gid ?? opts.uid);
  return host.spawn('sh', ['-c', 'exec "$@" >>"$0" 2>&1', logFile, cmd, ...args], opts);
}

export function exited(p: LabProcess): boolean {
  return p.child.exitCode !== null || p.child.signalCode !== null;
}

export function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Wait until `re` matches the log file; fails if the process exits first or on timeout. */
export async function waitForLog(p: LabProcess, file: string, re: RegExp, timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = readLog(file);
    const m = re.exec(text);
    if (m) return m[0];
    if (exited(p))
      throw new Error(
        `process exited (${p.child.exitCode ?? p.child.signalCode}) before ${re}; log ${file}:\n${text.slice(-2000)}`,
      );
    if (Date.now() > deadline) throw new Error(`no ${re} within ${timeoutMs} ms; log ${file}:\n${text.slice(-2000)}`);
    await sleep(50);
  }
}

/** Wait until a TCP socket listens on `port` inside `host` (ss; no probe traffic). */
export async function waitForListen(
  host: Host,
  port: number,
  p?: LabProcess,
  logFile?: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await host.run('ss', ['-Hltn', `sport = :${port}`], { allowFailure: true });
    if (r.status === 0 && r.stdout.trim()) return;
    if (p && exited(p))
      throw new Error(
        `${host.name}: process exited before listening on ${port}; log:\n${logFile ? readLog(logFile).slice(-2000) : p.output()}`,
      );
    if (Date.now() > deadline)
      throw new Error(
        `${host.name}: nothing listens on tcp port ${port}${logFile ? `; log:\n${readLog(logFile).slice(-2000)}` : ''}`,
      );
    await sleep(50);
  }
}

interface Stat {
  ppid: number;
  ticks: number;
}

function stat(pid: number): Stat | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[12]) };
  } catch {
    return undefined;
  }
}

/** utime+stime of a process, in seconds (0 if it is gone). */
export function cpuSeconds(pid: number): number {
  return (stat(pid)?.ticks ?? 0) / CLK_TCK;
}

/** Every descendant of `pid` (children, grandchildren…), from a scan of /proc. */
export function descendants(pid: number): number[] {
  const kids = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = stat(Number(name));
    if (!st) continue;
    const list = kids.get(st.ppid) ?? [];
    list.push(Number(name));
    kids.set(st.ppid, list);
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const c of kids.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

/** Resident set size in KiB (VmRSS), 0 if the process is gone. */
export function rssKb(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/** Comm name of a process ('' if gone). */
export function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** Memory of a process from /proc/PID/smaps_rollup, in KiB. */
export interface MemKb {
  rss: number;
  /** Proportional set size: shared pages divided among the processes that map them. */
  pss: number;
  /** Anonymous pages (heap, stacks): private memory the program itself allocated. */
  anon: number;
}

/** smaps_rollup of one process (zeros if it is gone). */
export function smapsRollup(pid: number): MemKb {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
    return { rss: kb('Rss'), pss: kb('Pss'), anon: kb('Anonymous') };
  } catch {
    return { rss: 0, pss: 0, anon: 0 };
  }
}

/** smaps_rollup summed over processes (a proxy's master and workers, supervisor and child). */
export function memOf(pids: number[]): MemKb {
  const sum = { rss: 0, pss: 0, anon: 0 };
  for (const p of pids) {
    const m = smapsRollup(p);
    sum.rss += m.rss;
    sum.pss += m.pss;
    sum.anon += m.anon;
  }
  return sum;
}

/** What a measured run cost the proxy: CPU seconds per 1,000 units of work, and diagnostics when asked. */
export interface WorkCost<T> {
  result: T;
  /** CPU seconds (every process of the proxy) per 1,000 units. */
  cpuPerK: number;
  /** BENCH_DEBUG / BENCH_SYSCALLS: user+sys and per-thread CPU ms per unit; the syscalls per unit. */
  detail?: string;
}

/**
 * Runs `run` (a load against the proxy `pids`) and reports its CPU cost per unit (`units(result)`,
 * e.g. requests). Diagnostics, all off by default: BENCH_DEBUG=1 splits the cost into user and
 * system time and by thread; BENCH_SYSCALLS=1 counts syscalls per unit with `strace -c` (slows the
 * proxy: read the counts, not the rates); BENCH_PERF_DIR=DIR records `perf record -g` there;
 * BENCH_CPU_PROF_DIR with cpu-prof-preload.cjs in the proxy's NODE_OPTIONS takes a V8 CPU profile.
 */
export async function workCost<T>(
  pids: number[],
  run: () => Promise<T>,
  units: (r: T) => number,
): Promise<WorkCost<T>> {
  const before = pids.map(threadTimes);
  const diag = await startDiagnostics(pids);
  const result = await run();
  const census = await diag();
  const after = pids.map(threadTimes);
  const n = units(result);
  let total = 0;
  const parts: string[] = [];
  pids.forEach((pid, i) => {
    let user = 0;
    let sys = 0;
    const threads: string[] = [];
    for (const [name, t] of after[i]!) {
      const t0 = before[i]!.get(name) ?? { user: 0, sys: 0 };
      user += t.user - t0.user;
      sys += t.sys - t0.sys;
      const ms = ((t.user - t0.user + t.sys - t0.sys) * 1000) / n;
      if (ms >= 0.001) threads.push(`${name} ${ms.toFixed(3)}`);
    }
    total += user + sys;
    if (user + sys > 0)
      parts.push(
        `pid ${pid}: user ${((user * 1000) / n).toFixed(3)} + sys ${((sys * 1000) / n).toFixed(3)} ms (${threads.join(', ')})`,
      );
  });
  const detail = [
    ...(process.env.BENCH_DEBUG ? [`CPU per unit: ${parts.join('; ')}`] : []),
    ...(census ? [census(n)] : []),
  ];
  return { result, cpuPerK: (total * 1000) / n, ...(detail.length ? { detail: detail.join('\n') } : {}) };
}

/** utime and stime of each thread of a process (by name, the main thread marked), in seconds. */
function threadTimes(pid: number): Map<string, { user: number; sys: number }> {
  const out = new Map<string, { user: number; sys: number }>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = `${s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'))}${tid === String(pid) ? ' (main)' : ''}`;
      const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
      const t = out.get(name) ?? { user: 0, sys: 0 };
      t.user += Number(rest[11]) / CLK_TCK;
      t.sys += Number(rest[12]) / CLK_TCK;
      out.set(name, t);
    } catch {
      /* the thread ended */
    }
  }
  return out;
}

type Census = ((units: number) => string) | undefined;

/** Starts what the BENCH_* diagnostics ask for; the returned call stops it (and reads the syscall census). */
async function startDiagnostics(pids: number[]): Promise<() => Promise<Census>> {
  if (pids.length === 0) return async () => undefined;
  if (process.env.BENCH_CPU_PROF_DIR) {
    const node = pids.filter((pid) => comm(pid) === 'node'); // SIGUSR2 would end anything else
    for (const pid of node) process.kill(pid, 'SIGUSR2');
    return async () => {
      for (const pid of node) process.kill(pid, 'SIGUSR2');
      await sleep(3000); // the profiles are written
      return undefined;
    };
  }
  const perfDir = process.env.BENCH_PERF_DIR;
  const straceOut = process.env.BENCH_SYSCALLS
    ? join(tmpdir(), `tpx-strace-${process.pid}-${Date.now()}.txt`)
    : undefined;
  if (!perfDir && !straceOut) return async () => undefined;
  const tids = pids.flatMap((pid) => {
    try {
      return readdirSync(`/proc/${pid}/task`);
    } catch {
      return [];
    }
  });
  const tool = perfDir
    ? spawn(
        'perf',
        ['record', '-F', '1999', '-g', '-o', join(perfDir, `${pids[0]}-${Date.now()}.data`), '-p', pids.join(',')],
        { stdio: 'ignore' },
      )
    : spawn('strace', ['-c', '-o', straceOut!, ...tids.flatMap((t) => ['-p', t])], { stdio: 'ignore' });
  await sleep(500); // attached
  return async () => {
    tool.kill('SIGINT');
    await new Promise((r) => tool.once('exit', r));
    return straceOut ? (units) => syscallsPer(straceOut, units) : undefined;
  };
}

/** `strace -c`'s table as calls per unit, most frequent first. */
function syscallsPer(file: string, units: number): string {
  const rows = readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 5 && /^\d/.test(f[0]!) && !Number.isNaN(Number(f[3])) && f.at(-1) !== 'total');
  unlinkSync(file);
  const calls = rows.map((f) => ({ name: f.at(-1)!, n: Number(f[3]) / units })).sort((a, b) => b.n - a.n);
  const total = calls.reduce((s, c) => s + c.n, 0);
  return `syscalls per unit: ${total.toFixed(1)} (${calls.map((c) => `${c.name} ${c.n.toFixed(2)}`).join(', ')})`;
}
