// Spawning programs inside a named network namespace, for netlab and the demo.
// `ip netns exec` and `setpriv` both exec(2) the next program, so the pid we get is the
// program's own pid: signalling it reaches the real process, not a wrapper.
import { spawn, type ChildProcess } from 'node:child_process';
import { ToolFailedError, ToolMissingError } from '../errors.js';

export interface NetnsSpawnOptions {
  /** Extra environment, merged over the current one (PATH must survive for `ip`). */
  env?: NodeJS.ProcessEnv;
  /** Drop to this uid/gid (via setpriv, after entering the netns, which needs root). */
  uid?: number;
  gid?: number;
}

function argv(netns: string, cmd: string, args: readonly string[], opts: NetnsSpawnOptions): string[] {
  const priv: string[] = [];
  if (opts.uid !== undefined || opts.gid !== undefined) {
    priv.push('setpriv');
    if (opts.uid !== undefined) priv.push(`--reuid=${opts.uid}`);
    if (opts.gid !== undefined) priv.push(`--regid=${opts.gid}`, '--clear-groups');
    priv.push('--');
  }
  return ['netns', 'exec', netns, ...priv, cmd, ...args];
}

/**
 * Start a long-running program in `netns`. It leads its own process group (detached), so
 * `process.kill(-pid)` also reaches anything it forks; stdin/stdout/stderr are pipes.
 */
export function spawnInNetns(
  netns: string,
  cmd: string,
  args: readonly string[],
  opts: NetnsSpawnOptions = {},
): ChildProcess {
  return spawn('ip', argv(netns, cmd, args, opts), {
    env: { ...process.env, ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
}

export interface NetnsRunOptions extends NetnsSpawnOptions {
  input?: string;
  allowFailure?: boolean;
  /** Kill the program (SIGKILL) after this long; the result then has status null. */
  timeoutMs?: number;
}

export interface NetnsRunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Run a program in `netns` to completion. Throws on failure unless allowFailure. */
export function runInNetns(
  netns: string,
  cmd: string,
  args: readonly string[],
  opts: NetnsRunOptions = {},
): Promise<NetnsRunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', argv(netns, cmd, args, opts), {
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer =
      opts.timeoutMs !== undefined
        ? setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, opts.timeoutMs)
        : undefined;
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(err.code === 'ENOENT' ? new ToolMissingError('ip', 'iproute2') : err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const status = timedOut ? null : code;
      if (timedOut) stderr += `\n(timed out after ${opts.timeoutMs} ms)`;
      if (status === 0 || opts.allowFailure) return resolve({ status, stdout, stderr });
      // `ip netns exec` reports a missing program this way (exit 1).
      if (/^exec of ".*" failed: No such file/m.test(stderr)) {
        return reject(new ToolMissingError(cmd, cmd));
      }
      reject(new ToolFailedError(cmd, args, status, stderr));
    });
    child.stdin!.on('error', () => {});
    child.stdin!.end(opts.input ?? '');
  });
}
