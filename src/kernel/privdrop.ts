// Start a Node module as another user with only the capabilities it is given.
//
// Capabilities are per thread in Linux and Node starts its threads (libuv pool, V8
// platform, worker_threads) before any JavaScript runs, so dropping them from inside Node
// would leave every other thread privileged. Instead the worker is exec'd through setpriv
// (util-linux): uid/gid, supplementary groups, inheritable + ambient + bounding sets and
// no_new_privs are set before Node starts, and every thread it creates inherits them.
// child_process.fork() keeps working through the extra exec: the IPC channel and the
// inherited listener descriptors are plain fds, which setpriv leaves open.
import { fork, type ChildProcess, type ForkOptions } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { ToolMissingError } from '../errors.js';

/** Capabilities a data plane may keep (capabilities(7) names, without the CAP_ prefix). */
export type Capability = 'net_admin' | 'net_raw' | 'net_bind_service';

/** Bit numbers, as in /proc/PID/status CapEff. */
export const CAPABILITY_BIT: Record<Capability, number> = { net_bind_service: 10, net_admin: 12, net_raw: 13 };

export interface DropSpec {
  uid: number;
  gid: number;
  /** Everything else is removed from the permitted, effective, inheritable, ambient and bounding sets. */
  caps: readonly Capability[];
}

const SETPRIV_PATHS = ['/usr/bin/setpriv', '/bin/setpriv', '/usr/sbin/setpriv'];

function setprivPath(): string {
  for (const p of SETPRIV_PATHS) {
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  throw new ToolMissingError('setpriv', 'util-linux');
}

/** setpriv arguments for `spec`, ending with `--` (the program follows). */
export function setprivArgs(spec: DropSpec): string[] {
  const set = ['-all', ...spec.caps.map((c) => `+${c}`)].join(',');
  return [
    `--reuid=${spec.uid}`,
    `--regid=${spec.gid}`,
    '--clear-groups',
    `--inh-caps=${set}`,
    // Ambient capabilities survive the exec into node as a non-root user.
    `--ambient-caps=${set}`,
    `--bounding-set=${set}`,
    '--no-new-privs',
    '--',
  ];
}

/** `child_process.fork(modulePath)`, exec'd through setpriv when `drop` is given. */
export function forkModule(
  modulePath: string,
  opts: ForkOptions & { execArgv: string[] },
  drop: DropSpec | undefined,
): ChildProcess {
  if (!drop) return fork(modulePath, [], opts);
  return fork(modulePath, [], {
    ...opts,
    execPath: setprivPath(),
    execArgv: [...setprivArgs(drop), process.execPath, ...opts.execArgv],
  });
}

/** True when `id` is mapped in this process's user namespace (always, outside one). */
export function idMapped(id: number, kind: 'uid' | 'gid'): boolean {
  let text: string;
  try {
    text = readFileSync(`/proc/self/${kind}_map`, 'utf8');
  } catch {
    return true;
  }
  return text
    .split('\n')
    .map((l) => l.trim().split(/\s+/).map(Number))
    .some(([inside, , count]) => inside !== undefined && count !== undefined && id >= inside && id < inside + count);
}
