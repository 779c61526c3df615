// Running the demo without root: re-execute in a user namespace where we are root over our
// own network and mount namespaces (`unshare --user --map-root-user --net --mount`), or say
// exactly why that cannot work here and what would fix it.
import { existsSync, readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import { TranproxyError } from '../errors.js';
import { hasTool, runSync, spawnCommand } from '../kernel/exec.js';

/** Set in the re-executed demo: it runs in a user namespace we made and must mount /run. */
export const USERNS_MARKER = 'TRANPROXY_DEMO_USERNS';

export const UNSHARE_ARGS = ['--user', '--map-root-user', '--net', '--mount'] as const;

/** Why a rootless demo is impossible here, with the fix; undefined when it should work. */
export interface Obstacle {
  reason: string;
  fix: string;
}

function readSysctl(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Kernel switches that forbid unprivileged user namespaces, checked before trying. */
export function userNamespaceObstacle(): Obstacle | undefined {
  if (!hasTool('unshare')) {
    return { reason: "'unshare' is not installed", fix: 'apt-get install util-linux' };
  }
  if (readSysctl('/proc/sys/kernel/unprivileged_userns_clone') === '0') {
    return {
      reason: 'this kernel forbids unprivileged user namespaces (kernel.unprivileged_userns_clone = 0)',
      fix: 'as root: sysctl -w kernel.unprivileged_userns_clone=1',
    };
  }
  if (readSysctl('/proc/sys/user/max_user_namespaces') === '0') {
    return {
      reason: 'user namespaces are disabled (user.max_user_namespaces = 0)',
      fix: 'as root: sysctl -w user.max_user_namespaces=15000',
    };
  }
  if (readSysctl('/proc/sys/kernel/apparmor_restrict_unprivileged_userns') === '1') {
    return {
      reason: 'AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)',
      fix: 'as root: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0',
    };
  }
  // Nothing forbids it on paper: try it (a container's seccomp profile may still say no).
  const probe = runSync('unshare', [...UNSHARE_ARGS, '--', 'true'], { allowFailure: true });
  if (probe.status !== 0) {
    const said = probe.stderr.trim().split('\n').pop() || `exit ${probe.status}`;
    return {
      reason:
        `'unshare ${UNSHARE_ARGS.join(' ')}' fails here: ${said}` +
        (/No space left/i.test(said)
          ? ' (user.max_user_namespaces is used up)'
          : ' (a seccomp profile or security module forbids user namespaces)'),
      fix: /No space left/i.test(said)
        ? 'as root: raise user.max_user_namespaces'
        : 'allow user namespaces for this user',
    };
  }
  return undefined;
}

export function rootlessError(o: Obstacle): TranproxyError {
  const uid = process.getuid?.() ?? -1;
  return new TranproxyError(
    `demo: building the lab needs root; as uid ${uid} it re-executes itself in a user namespace, ` +
      `but ${o.reason}. Fix: ${o.fix}, or run it as root (sudo tranproxy demo).`,
  );
}

/**
 * Run `node MAIN ARGS...` in a fresh user+net+mount namespace, stdio shared, signals
 * forwarded; resolves with its exit status (128+n when killed by signal n).
 */
export function reexecInUserNamespace(mainJs: string, args: readonly string[]): Promise<number> {
  if (process.env[USERNS_MARKER]) {
    // We are the re-executed demo and still not root: never loop.
    throw new TranproxyError(
      `demo: re-executed in a user namespace but running as uid ${process.getuid?.()}, not 0; giving up`,
    );
  }
  const obstacle = userNamespaceObstacle();
  if (obstacle) throw rootlessError(obstacle);
  process.env[USERNS_MARKER] = '1';
  // unshare without --fork execs node: the child's pid is the demo's own pid.
  const child: ChildProcess = spawnCommand(['unshare', ...UNSHARE_ARGS, '--', process.execPath, mainJs, ...args]);
  return new Promise((resolve) => {
    const forward = (sig: NodeJS.Signals) => {
      try {
        child.kill(sig);
      } catch {
        /* gone */
      }
    };
    const sigs = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
    for (const s of sigs) process.on(s, forward);
    const done = (status: number) => {
      for (const s of sigs) process.removeListener(s, forward);
      resolve(status);
    };
    child.on('error', (e) => {
      process.stderr.write(`tranproxy: demo: cannot run unshare: ${e.message}\n`);
      done(1);
    });
    child.on('exit', (code, signal) => done(code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0)));
  });
}

/** Inside the re-executed demo: a private tmpfs on /run, so `ip netns add` can bind-mount there. */
export function prepareUserNamespace(): void {
  const r = runSync('mount', ['-t', 'tmpfs', '-o', 'mode=0755', 'tranproxy-demo', '/run'], { allowFailure: true });
  if (r.status !== 0) {
    throw new TranproxyError(
      `demo: cannot mount a tmpfs on /run inside the user namespace: ${r.stderr.trim() || `exit ${r.status}`}`,
    );
  }
}

/** True when uid/gid `id` has a mapping in this process's user namespace. */
export function idMapped(id: number, kind: 'uid' | 'gid'): boolean {
  const file = `/proc/self/${kind}_map`;
  if (!existsSync(file)) return true;
  const text = readSysctl(file) ?? '';
  return text.split('\n').some((line) => {
    const [inside, , count] = line.trim().split(/\s+/).map(Number);
    return inside !== undefined && count !== undefined && id >= inside && id < inside + count;
  });
}
