// Where a proxy-mode request goes: the same router, nodes, groups and fallbacks as captured
// flows, but the destination is the name the client asked for (so domain rules match it)
// and is resolved here only when the flow goes direct. The one seam to point at the shared
// flow dispatch once it exists.
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { formatEndpoint, type Endpoint } from '../kernel/sockaddr.js';
import { LocalAddresses } from '../kernel/local-addresses.js';
import { connectDirect, ConnectError } from '../outbound/direct.js';
import { NODE_UNREACHABLE, OutboundError, type TcpOutbound } from '../outbound/types.js';
import type { Logger } from '../observe/log.js';
import type { Router } from '../route/index.js';

export interface ProxyTarget {
  /** Domain name or IP address, as the client asked. */
  host: string;
  port: number;
}

export interface Dialed {
  stream: Duplex;
  via: string;
  rule?: string;
  domain?: string;
  fallbackFrom?: string;
}

export type ProxyDialer = (target: ProxyTarget, src: Endpoint, signal: AbortSignal) => Promise<Dialed>;

export interface ProxyDialOptions {
  routing?: {
    router: Router;
    outbounds: Map<string, TcpOutbound>;
    fallbacks?: Map<string, string>;
    /** Fake-IP DNS: a client that resolved through us and asks for the fake address means its domain. */
    fakeIp?: { lookup(ip: string): string | undefined };
  };
  resolve(name: string): Promise<{ address: string; family: 4 | 6 }>;
  connectTimeoutMs: number;
  /** SO_MARK on direct sockets; 0: none. */
  mark: number;
  /** tranproxy's own ports (listeners, admin, console): never a destination on this host. */
  ownPorts: number[];
  log: Logger;
}

/** Rejects with ConnectError: code EREJECTED (a rule), ELOOP (this host's own services) or the outbound's code. */
export function proxyDialer(opts: ProxyDialOptions): ProxyDialer {
  const local = new LocalAddresses();
  const own = new Set(opts.ownPorts);
  const direct = async (t: ProxyTarget, signal: AbortSignal, rule?: string, domain?: string) => {
    let ep: Endpoint;
    try {
      const literal = isIP(t.host);
      const r = literal ? { address: t.host, family: literal as 4 | 6 } : await opts.resolve(t.host);
      ep = { address: r.address, port: t.port, family: r.family };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'ENOTFOUND';
      throw new ConnectError(code, `cannot resolve ${t.host}: ${code}`, 'direct', rule, domain);
    }
    // The admin API and console listen on loopback: a LAN client must not reach them through us.
    if (isLoopback(ep.address) || (own.has(ep.port) && local.has(ep.address)))
      throw new ConnectError('ELOOP', `${formatEndpoint(ep)} is this host's own service`, 'direct', rule, domain);
    try {
      return await connectDirect(ep, { connectTimeoutMs: opts.connectTimeoutMs, mark: opts.mark || undefined, signal });
    } catch (e) {
      const c = e as ConnectError;
      throw new ConnectError(c.code, c.message, 'direct', rule, domain);
    }
  };
  return async (asked, src, signal) => {
    const fake = isIP(asked.host) ? opts.routing?.fakeIp?.lookup(asked.host) : undefined;
    const target = fake ? { host: fake, port: asked.port } : asked;
    const family = isIP(target.host) === 6 ? 6 : 4;
    const domain = isIP(target.host) ? undefined : target.host.replace(/\.$/, '').toLowerCase();
    const routing = opts.routing;
    if (!routing) return { stream: await direct(target, signal), via: 'direct' };
    const decision = routing.router.route({
      dst: { ip: target.host, port: target.port, family, ...(domain ? { domain } : {}) },
      src: src.address,
      network: 'tcp',
    });
    const rule = decision.rule === 'default' ? 'default' : `rules[${decision.rule}]`;
    if (decision.action === 'reject')
      throw new ConnectError('EREJECTED', `rejected by ${rule}`, 'reject', rule, domain);
    const meta = { rule, ...(domain ? { domain } : {}) };
    const tried = new Set<string>();
    for (let name = decision.action; ; ) {
      tried.add(name);
      const fallback = tried.size > 1 ? { fallbackFrom: decision.action } : {};
      if (name === 'direct')
        return { stream: await direct(target, signal, rule, domain), via: 'direct', ...meta, ...fallback };
      const outbound = routing.outbounds.get(name);
      if (!outbound) throw new ConnectError('ENOOUTBOUND', `no outbound named ${name}`, name, rule, domain);
      try {
        const stream = await outbound.connect(
          { ip: target.host, port: target.port, family, ...(domain ? { domain } : {}) },
          { source: { address: src.address, port: src.port }, signal },
        );
        return { stream, via: name, ...meta, ...fallback };
      } catch (e) {
        const code = e instanceof OutboundError ? e.code : 'ERROR';
        const next = routing.fallbacks?.get(name);
        if (next && !tried.has(next) && NODE_UNREACHABLE.has(code) && !signal.aborted) {
          opts.log.warn('node unreachable, using fallback', { node: name, error: code, fallback: next });
          name = next;
          continue;
        }
        throw new ConnectError(code, (e as Error).message, name, rule, domain);
      }
    }
  };
}

function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.');
}
