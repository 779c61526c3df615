// Where a proxy-mode request goes: the shared flow dispatch (router, nodes, groups, fallbacks),
// with the name the client asked for as the destination (so domain rules match it). The
// 'direct' outbound here resolves that name, and refuses this host's own services.
import { isIP } from 'node:net';
import { FlowError } from '../errors.js';
import { connectTcp, route, type Connected, type Dispatch } from '../flow/dispatch.js';
import { isLoopForNamedTarget } from '../flow/admission.js';
import { formatEndpoint, type Endpoint } from '../kernel/sockaddr.js';
import { LocalAddresses } from '../kernel/local-addresses.js';
import { rejectOutbound } from '../outbound/builtin.js';
import { connectDirect } from '../outbound/direct.js';
import type { TcpOutbound } from '../outbound/types.js';
import type { Logger } from '../observe/log.js';
import type { Router } from '../route/index.js';

export interface ProxyTarget {
  /** Domain name or IP address, as the client asked. */
  host: string;
  port: number;
}

/** The outbound chosen for a request, and how to connect through it. */
export interface ProxyRoute {
  via: string;
  rule?: string;
  domain?: string;
  /** Rejects with a FlowError: EREJECTED (a rule), ELOOP (this host's own services) or the outbound's code. */
  connect(signal: AbortSignal): Promise<Connected>;
}

export type ProxyDialer = (target: ProxyTarget, src: Endpoint) => ProxyRoute;

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

export function proxyDialer(opts: ProxyDialOptions): ProxyDialer {
  const local = new LocalAddresses();
  const policy = { ownPorts: opts.ownPorts };
  const direct: TcpOutbound = {
    name: 'direct',
    kind: 'direct',
    async connect(dst, ctx) {
      let ep: Endpoint;
      const host = dst.domain ?? dst.ip;
      try {
        const literal = isIP(host);
        const r = literal ? { address: host, family: literal as 4 | 6 } : await opts.resolve(host);
        ep = { address: r.address, port: dst.port, family: r.family };
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? 'ENOTFOUND';
        throw new FlowError(code, `cannot resolve ${host}: ${code}`, 'direct');
      }
      // The admin API and console listen on loopback: a LAN client must not reach them through us.
      if (isLoopForNamedTarget(policy, ep, (a) => local.has(a)) || ep.address.startsWith('::ffff:127.'))
        throw new FlowError('ELOOP', `${formatEndpoint(ep)} is this host's own service`, 'direct');
      return connectDirect(ep, {
        connectTimeoutMs: opts.connectTimeoutMs,
        mark: opts.mark || undefined,
        ...(ctx.signal ? { signal: ctx.signal } : {}),
      });
    },
  };
  const routing = opts.routing;
  const builtins = new Map([
    ['direct', direct],
    ['reject', rejectOutbound],
  ]);
  const dispatch: Dispatch<TcpOutbound> = {
    outbounds: { get: (name) => builtins.get(name) ?? routing?.outbounds.get(name) },
    ...(routing ? { router: routing.router } : {}),
    ...(routing?.fallbacks ? { fallbacks: routing.fallbacks } : {}),
  };
  return (asked, src) => {
    const fake = isIP(asked.host) ? routing?.fakeIp?.lookup(asked.host) : undefined;
    const target = fake ? { host: fake, port: asked.port } : asked;
    const domain = isIP(target.host) ? undefined : target.host.replace(/\.$/, '').toLowerCase();
    const r = route(dispatch, {
      network: 'tcp',
      src,
      dst: {
        ip: target.host,
        port: target.port,
        family: isIP(target.host) === 6 ? 6 : 4,
        ...(domain ? { domain } : {}),
      },
    });
    return {
      via: r.via,
      ...(r.rule ? { rule: r.rule } : {}),
      ...(domain ? { domain } : {}),
      connect: (signal) =>
        connectTcp(dispatch, r, { source: src, signal, log: opts.log, clientGone: () => signal.aborted }),
    };
  };
}
