// Runners for system tools. The only place (with kernel/ffi) that spawns processes.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { PermissionError, ToolFailedError, ToolMissingError } from '../errors.js';

/** Debian package that provides each tool we run, for actionable errors. */
const PACKAGE_OF: Record<string, string> = {
  ip: 'iproute2',
  nft: 'nftables',
  iptables: 'iptables',
  'iptables-save': 'iptables',
  'iptables-restore': 'iptables',
  ip6tables: 'iptables',
  'ip6tables-save': 'iptables',
  'ip6tables-restore': 'iptables',
  sysctl: 'procps',
  unshare: 'util-linux',
  nsenter: 'util-linux',
};

export interface RunOptions {
  /** Text written to the tool's standard input. */
  input?: string;
  /** Run inside this named network namespace (`ip netns exec NAME`). */
  netns?: string;
  /** Do not throw on a non-zero exit; return the result instead. */
  allowFailure?: boolean;
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

function commandLine(tool: string, args: readonly string[], netns?: string): [string, string[]] {
  return netns ? ['ip', ['netns', 'exec', netns, tool, ...args]] : [tool, [...args]];
}

function looksLikePermissionProblem(stderr: string): boolean {
  return /Operation not permitted|Permission denied|must be root|you must be root/i.test(stderr);
}

function check(tool: string, args: readonly string[], r: RunResult, opts: RunOptions): RunResult {
  if (r.status === 0 || opts.allowFailure) return r;
  if (looksLikePermissionProblem(r.stderr)) {
    throw new PermissionError(`${tool} ${args.join(' ')}: ${r.stderr.trim()} — run as root or grant CAP_NET_ADMIN`);
  }
  throw new ToolFailedError(tool, args, r.status, r.stderr);
}

/** Run a tool to completion, synchronously. For set-up and tear-down paths only. */
export function runSync(tool: string, args: readonly string[], opts: RunOptions = {}): RunResult {
  const [cmd, argv] = commandLine(tool, args, opts.netns);
  const res = spawnSync(cmd, argv, { input: opts.input, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (res.error) {
    if ((res.error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ToolMissingError(cmd, PACKAGE_OF[cmd] ?? cmd);
    }
    throw res.error;
  }
  const r: RunResult = { status: res.status, stdout: res.stdout ?? '', stderr: res.stderr ?? '' };
  // `ip netns exec` reports a missing program as: exec of "nft" failed: No such file or directory
  if (opts.netns && r.status !== 0 && r.stderr.includes(`exec of "${tool}" failed`)) {
    throw new ToolMissingError(tool, PACKAGE_OF[tool] ?? tool);
  }
  return check(tool, args, r, opts);
}

/** Run a tool to completion, asynchronously. */
export function run(tool: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [cmd, argv] = commandLine(tool, args, opts.netns);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err: NodeJS.ErrnoException) => {
      reject(err.code === 'ENOENT' ? new ToolMissingError(cmd, PACKAGE_OF[cmd] ?? cmd) : err);
    });
    child.on('close', (status) => {
      try {
        resolve(check(tool, args, { status, stdout, stderr }, opts));
      } catch (e) {
        reject(e);
      }
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** True when `tool` can be found on PATH. */
export function hasTool(tool: string): boolean {
  const res = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
  return res.status === 0;
}

/**
 * The seam between set-up code (firewall, publish, netlab) and the system tools it runs:
 * systemRunner in production, a recording fake in tests.
 */
export interface ToolRunner {
  /** Like runSync: throws ToolFailedError on a non-zero exit unless allowFailure. */
  run(tool: string, args: readonly string[], opts?: RunOptions): RunResult;
  /** Whether the tool is installed. */
  has(tool: string): boolean;
}

export const systemRunner: ToolRunner = { run: runSync, has: hasTool };

/** Start a user's program with our stdio (the `-- cmd args` of `tranproxy run`). */
export function spawnCommand(argv: readonly string[]): import('node:child_process').ChildProcess {
  const [cmd, ...args] = argv;
  if (!cmd) throw new TypeError('empty command');
  return spawn(cmd, args, { stdio: 'inherit' });
}

/**
 * This program again (node, its flags, its script) with `args` and extra environment; its
 * stderr is ours, or with `captureStderr` returned as `stderr`. Resolves with its exit status
 * and what it printed on stdout.
 */
export function runSelf(
  args: readonly string[],
  env: Record<string, string>,
  opts: { captureStderr?: boolean } = {},
): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', opts.captureStderr ? 'pipe' : 'inherit'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status: status ?? 1, stdout, stderr }));
  });
}

/** Whether a process with this pid exists (signal 0; EPERM means it exists but is not ours). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Descriptors held open on /dev/null so that running a tool still works after a flood of
 * connections used up RLIMIT_NOFILE: release() just before the tool runs (synchronously, so
 * nothing else takes them), refill() after.
 */
export class FdReserve {
  private fds: number[] = [];

  constructor(private readonly count = 16) {
    this.refill();
  }

  get size(): number {
    return this.fds.length;
  }

  refill(): void {
    while (this.fds.length < this.count) {
      try {
        this.fds.push(openSync('/dev/null', 'r'));
      } catch {
        return; // out of descriptors now: try again next time
      }
    }
  }

  release(): void {
    for (const fd of this.fds) closeSync(fd);
    this.fds = [];
  }
}
