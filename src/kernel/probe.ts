// Read-only probes of the host for `tranproxy doctor`: files under /proc and /sys, read-only
// tool runs (`nft list`, `nft -c`, `iptables-save`, `ip rule show`) and socket options tried
// on a socket that is never bound. Nothing here changes the host.
//
// Two cautions the callers rely on:
// - `iptables-legacy-save -t TABLE` (and `iptables-legacy -t TABLE -L`) instantiate an empty
//   legacy table in the namespace: never name a table, read /proc/net/ip_tables_names first.
// - without /proc/net/ip_tables_names, legacy tools try `modprobe ip_tables`: the caller only
//   runs the legacy save tools when that file exists.
import { readdirSync, readFileSync } from 'node:fs';
import { ToolMissingError } from '../errors.js';
import { hasTool, runSync } from './exec.js';
import {
  AF_INET,
  AF_INET6,
  IP_TRANSPARENT,
  IPV6_TRANSPARENT,
  SO_MARK,
  SOCK_CLOEXEC,
  SOCK_STREAM,
  SOL_IP,
  SOL_IPV6,
  SOL_SOCKET,
} from './linux.js';

export interface ProbeRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** What setting kernel-only socket options on a fresh, unbound socket gave. */
export type SocketProbe = { ok: true } | { ok: false; code: string; message: string };

/** Everything the doctor reads from the system; tests pass a fake. */
export interface SystemProbe {
  /** File contents, undefined when missing or unreadable. */
  readFile(path: string): string | undefined;
  /** Entry names of a directory, undefined when missing. */
  listDir(path: string): string[] | undefined;
  /** True when the tool is on PATH. */
  hasTool(tool: string): boolean;
  /** Run a read-only tool command; undefined when the tool is not installed. */
  run(tool: string, args: readonly string[], input?: string): ProbeRun | undefined;
  /** IP_TRANSPARENT (4) / IPV6_TRANSPARENT (6), then SO_MARK, on an unbound TCP socket. */
  transparentSocket(family: 4 | 6): Promise<SocketProbe>;
  /** Effective user id of this process. */
  uid: number;
}

async function transparentSocket(family: 4 | 6): Promise<SocketProbe> {
  let ffi: typeof import('./ffi.js');
  try {
    ffi = await import('./ffi.js');
  } catch (e) {
    return { ok: false, code: 'EFFI', message: `cannot load the FFI layer: ${(e as Error).message}` };
  }
  let fd = -1;
  try {
    fd = ffi.sysSocket(family === 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC);
    if (family === 4) ffi.sysSetsockoptInt(fd, SOL_IP, IP_TRANSPARENT, 1, 'IP_TRANSPARENT');
    else ffi.sysSetsockoptInt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1, 'IPV6_TRANSPARENT');
    ffi.sysSetsockoptInt(fd, SOL_SOCKET, SO_MARK, 0x539, 'SO_MARK');
    return { ok: true };
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    return { ok: false, code: typeof code === 'string' ? code : 'EUNKNOWN', message: (e as Error).message };
  } finally {
    if (fd >= 0) ffi.sysClose(fd);
  }
}

/** The real system, as seen from this process's namespaces. */
export const systemProbe: SystemProbe = {
  readFile(path) {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  },
  listDir(path) {
    try {
      return readdirSync(path);
    } catch {
      return undefined;
    }
  },
  hasTool,
  run(tool, args, input) {
    try {
      return runSync(tool, args, { allowFailure: true, input });
    } catch (e) {
      if (e instanceof ToolMissingError) return undefined;
      throw e;
    }
  },
  transparentSocket,
  uid: process.geteuid?.() ?? -1,
};
