// The sockets and threads a data plane serves with: the capture listeners (bound by the
// supervisor, or by `run --one-process` itself), proxy mode's listeners, and how --workers
// splits into processes and engine threads.
import { PermissionError, SyscallError, TranproxyError } from '../errors.js';
import { closeFd, createListenerFd } from '../kernel/sockets.js';
import type { RunConfig } from '../config/run-config.js';
import { inboundMarkOf } from '../config/own-traffic.js';
import type { Logger } from '../observe/log.js';
import { engineNodeOf, engineServes } from './served-plane.js';
import { spliceAvailable } from '../relay/engine/available.js';

export interface Listener {
  fd: number;
  family: 4 | 6;
  label: string;
}

/**
 * With the web console, listeners are always made IP_TRANSPARENT (the supervisor has
 * CAP_NET_ADMIN) so the console can switch REDIRECT ↔ TPROXY live without rebinding: a
 * transparent listener accepts REDIRECTed connections just the same, and rebinding the port
 * while the old generation still holds it would either fail or (SO_REUSEPORT) split new
 * connections between the generations. Only the rules and the new workers change.
 */
export function transparentListeners(cfg: RunConfig): boolean {
  return cfg.mode === 'tproxy' || cfg.console !== undefined;
}

export function bindListeners(cfg: RunConfig, log: Logger): Listener[] {
  const out: Listener[] = [];
  for (const fam of cfg.families) {
    const family = fam === 'ipv4' ? 4 : 6;
    const address = family === 4 ? '0.0.0.0' : '::';
    try {
      const fd = createListenerFd({ family, address, port: cfg.listenPort, transparent: transparentListeners(cfg) });
      out.push({ fd, family, label: family === 4 ? `0.0.0.0:${cfg.listenPort}` : `[::]:${cfg.listenPort}` });
    } catch (e) {
      const code = e instanceof SyscallError ? e.code : '';
      if (family === 6 && cfg.families.length === 2 && (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL')) {
        log.warn('IPv6 is not available here; capturing IPv4 only', { error: code });
        continue;
      }
      for (const l of out) closeFd(l.fd);
      if (code === 'EADDRINUSE') {
        throw new TranproxyError(
          `listen port ${cfg.listenPort} is already in use: stop what holds it or choose another --listen-port`,
        );
      }
      if (code === 'EPERM' || code === 'EACCES') {
        throw new PermissionError(`${(e as Error).message}: TPROXY listeners need root or CAP_NET_ADMIN`);
      }
      throw e;
    }
  }
  return out;
}

/** Proxy mode's listeners: plain sockets on the addresses given (a LAN address, usually). */
export function bindProxyListeners(cfg: RunConfig): Listener[] {
  const out: Listener[] = [];
  for (const { host, port } of cfg.proxyMode?.listen ?? []) {
    const family = host.includes(':') ? 6 : 4;
    const label = family === 6 ? `[${host}]:${port}` : `${host}:${port}`;
    try {
      out.push({ fd: createListenerFd({ family, address: host, port, transparent: false }), family, label });
    } catch (e) {
      for (const l of out) closeFd(l.fd);
      const code = e instanceof SyscallError ? e.code : (e as Error).message;
      throw new TranproxyError(
        `--listen-proxy ${label}: ${code}${code === 'EADDRINUSE' ? ': the port is taken' : code === 'EADDRNOTAVAIL' ? ': no interface has this address' : ''}`,
      );
    }
  }
  return out;
}

/**
 * --workers N: when the splice engine serves every flow, one process with N engine threads
 * (one epoll loop each, sharing the listeners: one process's memory instead of N); else N
 * data-plane processes sharing the listeners.
 */
export function workerLayout(cfg: RunConfig): { processes: number; threads: number } {
  const served =
    spliceAvailable() && engineServes({ ...cfg, inboundMark: inboundMarkOf(cfg), node: engineNodeOf(cfg) });
  return served ? { processes: 1, threads: cfg.workers } : { processes: cfg.workers, threads: 1 };
}
