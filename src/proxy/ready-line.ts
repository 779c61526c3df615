// The fields of the 'ready:' log line, one format for the supervisor and `run --one-process`.
import type { RunConfig } from '../config/run-config.js';
import type { LogFields } from '../observe/log.js';
import type { RelayPath } from './protocol.js';

export interface ReadyState {
  listeners: { label: string }[];
  proxyListeners: { label: string }[];
  firewall: string;
  /** The data plane's uid:gid ('self': this process's). */
  user: string;
  caps: string;
  families: string[];
  relay: RelayPath | undefined;
  fdLimit: number;
  admin: string | undefined;
  /** How the data plane runs, when not the default supervisor + workers. */
  layout?: string;
}

export function readyFields(cfg: RunConfig, s: ReadyState): LogFields {
  return {
    mode: cfg.mode,
    capture: cfg.capture.join(','),
    protocols: cfg.udp ? 'tcp,udp' : 'tcp',
    listen: s.listeners.map((l) => l.label).join(','),
    proxy: s.proxyListeners.map((l) => l.label).join(',') || undefined,
    'proxy-auth': cfg.proxyMode ? (cfg.proxyMode.auth ? 'on' : 'off') : undefined,
    ports: cfg.ports.length
      ? cfg.ports.map((p) => (p.from === p.to ? `${p.from}` : `${p.from}-${p.to}`)).join(',')
      : 'all',
    firewall: s.firewall,
    user: s.user,
    caps: s.caps,
    families: s.families.join(','),
    workers: cfg.workers > 1 ? cfg.workers : undefined,
    layout: s.layout,
    relay: s.relay,
    'fd-limit': s.fdLimit,
    'max-connections': cfg.maxConnections,
    admin: s.admin,
    default: cfg.routing ? cfg.routing.defaultOutbound : undefined,
    nodes: cfg.routing ? Object.keys(cfg.routing.nodes).join(',') || undefined : undefined,
    rules: cfg.routing ? cfg.routing.rules.length : undefined,
    inject: cfg.inject
      ? [
          ...cfg.inject.headers.map((h) => h.name),
          ...(cfg.inject.forwardedFor ? [`X-Forwarded-For(${cfg.inject.forwardedFor.mode})`] : []),
        ].join(',')
      : undefined,
  };
}

/** Said on SIGTERM once the listening sockets are shut. */
export function stoppingLine(drainMs: number): string {
  return `stopping: new connections are refused; draining for up to ${drainMs / 1000}s`;
}
