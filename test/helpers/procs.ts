// Process inspection for e2e tests: the supervisor's worker, /proc status fields.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';

/** Child pids of `pid` (every thread's children). */
export function childPids(pid: number): number[] {
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const tid of tids) {
    try {
      out.push(...readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number));
    } catch {
      /* thread gone */
    }
  }
  return out;
}

/** The data-plane worker of a supervisor started with --workers 1: its only child. */
export function workerPid(supervisorPid: number): number {
  const kids = childPids(supervisorPid);
  assert.equal(kids.length, 1, `one data-plane worker under ${supervisorPid}, found [${kids.join(',')}]`);
  return kids[0]!;
}

/**
 * The children of `supervisorPid` with their real uid and command line: the data-plane
 * workers of that supervisor only (never a machine-wide `ps -u`, which counts other runs').
 */
export function childProcesses(supervisorPid: number): { pid: number; uid: number; args: string }[] {
  const out: { pid: number; uid: number; args: string }[] = [];
  for (const pid of childPids(supervisorPid)) {
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
      out.push({ pid, uid: Number(procStatus(pid).Uid?.split(/\s+/)[0]), args });
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** Fields of /proc/PID/status, e.g. status(pid).CapEff === '0000000000001000'. */
export function procStatus(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

/** Resident set size of `pid` in KiB. */
export function rssKiB(pid: number): number {
  return Number(/(\d+)/.exec(procStatus(pid).VmRSS ?? '0')![1]);
}

/**
 * SIGTERM a tranproxy supervisor and wait (generously: shared, slow machines) for it to
 * drain and remove its rules; resolves with its exit code (null if it had to be killed).
 */
export async function stopGracefully(
  p: {
    pid: number;
    child: import('node:child_process').ChildProcess;
    stop(sig?: NodeJS.Signals): Promise<number | null>;
  },
  timeoutMs = 20_000,
): Promise<number | null> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return p.child.exitCode;
  const exited = new Promise<void>((r) => p.child.once('exit', () => r()));
  process.kill(p.pid, 'SIGTERM');
  const t = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), timeoutMs).unref());
  if ((await Promise.race([exited, t])) === 'timeout') return p.stop('SIGKILL').then(() => null);
  return p.child.exitCode;
}

/** Polls until `pid` holds at most `baseline` descriptors (or the time is up); the last count seen. */
export async function fdsBackTo(pid: number, baseline: number, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let n = readdirSync(`/proc/${pid}/fd`).length;
  while (n > baseline && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    n = readdirSync(`/proc/${pid}/fd`).length;
  }
  return n;
}
