// Taking down a network namespace and what still runs in it: shared by the test labs
// (lab.ts) and `tranproxy lab down` (apply.ts). Synchronous on purpose: exit and signal
// paths cannot await.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { systemRunner, type ToolRunner } from '../kernel/exec.js';

/** Blocking sleep. */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** process.kill that ignores a process already gone (a negative pid signals its group). */
export function signalIfAlive(pid: number, sig: NodeJS.Signals | 0): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

export function netnsExists(netns: string): boolean {
  return existsSync(join('/run/netns', netns));
}

/** Pids of the processes inside `netns` (none when it does not exist). */
export function netnsPids(netns: string, runner: ToolRunner = systemRunner): number[] {
  if (!netnsExists(netns)) return [];
  return runner
    .run('ip', ['netns', 'pids', netns], { allowFailure: true })
    .stdout.split(/\s+/)
    .filter(Boolean)
    .map(Number);
}

/**
 * SIGKILL every process still inside `netns`, wait (≤1 s) until none is left, then delete
 * the netns — its interfaces go with it once no process holds it.
 */
export function killAndDeleteNetns(netns: string, runner: ToolRunner = systemRunner): void {
  for (let i = 0; i < 50; i++) {
    const pids = netnsPids(netns, runner);
    if (pids.length === 0) break;
    for (const p of pids) signalIfAlive(p, 'SIGKILL');
    sleepSync(20);
  }
  runner.run('ip', ['netns', 'del', netns], { allowFailure: true });
}
