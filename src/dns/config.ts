// From the config file's `dns:` section (config/schema.ts DnsConfig) to forwarder options,
// so `tranproxy run` only has to supply what the file cannot: the logger, the outbound
// object `dns.via` names, the bypass mark, and nameservers when the file lists none.
import type { DnsConfig } from '../config/schema.js';
import type { Logger } from '../observe/log.js';
import type { TcpOutbound } from '../outbound/types.js';
import type { DnsForwarderOptions } from './forwarder.js';

export const DEFAULT_DNS_PORT = 53;

export interface DnsWiring {
  log: Logger;
  /** The outbound `cfg.via` names (undefined or ignored for 'direct'). */
  via?: TcpOutbound;
  /** SO_MARK for direct upstream sockets (the run's bypass mark). */
  mark?: number;
  /** Used when the file lists no nameservers (e.g. -N flags or resolv.conf's). */
  fallbackNameservers?: readonly string[];
  /** Families to listen on when `listen` gives only a port (default both). */
  families?: readonly (4 | 6)[];
  /** Where to keep the fake-IP map across restarts (optional). */
  fakeIpPersistPath?: string;
}

const hostPort = (host: string, port: number) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

export function dnsForwarderOptions(cfg: DnsConfig, w: DnsWiring): DnsForwarderOptions {
  const port = cfg.listen?.port ?? DEFAULT_DNS_PORT;
  const listen = cfg.listen?.host
    ? [{ address: cfg.listen.host, port }]
    : (w.families ?? [4, 6]).map((f) => ({ address: f === 4 ? '0.0.0.0' : '::', port }));
  const upstreams =
    cfg.nameservers.length > 0
      ? cfg.nameservers.map((n) => hostPort(n.host, n.port))
      : [...(w.fallbackNameservers ?? [])];
  const fake = cfg.fakeIp?.enabled ? cfg.fakeIp : undefined;
  return {
    listen,
    upstreams,
    cache: cfg.cache,
    log: w.log,
    ...(cfg.via !== 'direct' && w.via ? { via: w.via } : {}),
    ...(w.mark ? { mark: w.mark } : {}),
    ...(fake
      ? { fakeIp: { range: fake.range, ...(w.fakeIpPersistPath ? { persistPath: w.fakeIpPersistPath } : {}) } }
      : {}),
  };
}
