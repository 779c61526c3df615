// Dispatch: where a flow goes. Fake-IP lookup, the router's rule, the outbound of that name
// ('direct' and 'reject' are outbounds like the nodes), and for TCP the connect with the
// node's fallbacks. One place for TCP and UDP, for captured flows and proxy inbounds:
//
//   const r = route(dispatch, { network: 'tcp', src, dst: { ip, port, family, domain } });
//   const { stream, via } = await connectTcp(dispatch, r, { source: src, log });
import type { Duplex } from 'node:stream';
import { errorCode, FLOW_CODES, FlowError } from '../errors.js';
import type { Logger } from '../observe/log.js';
import { NODE_UNREACHABLE, type ConnectContext, type Destination, type TcpOutbound } from '../outbound/types.js';
import type { Router } from '../route/index.js';

/** Fake-IP DNS: map a destination back to its domain, and find real addresses for direct flows. */
export interface FakeIpMap {
  lookup(ip: string): string | undefined;
  resolveReal(domain: string, family: 4 | 6): Promise<string[]>;
}

/** What dispatch needs of an outbound, TCP or UDP. */
export interface NamedOutbound {
  readonly name: string;
  readonly kind: string;
}

export interface Dispatch<O extends NamedOutbound> {
  /** Without a router every flow goes to the outbound named 'direct'. */
  router?: Router;
  /** Every outbound a route may name, 'direct' and 'reject' included. */
  outbounds: { get(name: string): O | undefined };
  /** Node name → the outbound to try when that node cannot be reached. */
  fallbacks?: ReadonlyMap<string, string>;
  fakeIp?: FakeIpMap;
}

/** A flow as an inbound (capture listener, proxy inbound) hands it to dispatch. */
export interface InboundFlow {
  network: 'tcp' | 'udp';
  src: { address: string; port: number };
  /**
   * Where the client wants to go; `domain` when known (sniffed Host/SNI, or named by a proxy
   * request). `ip` may be '' for a name-only destination: then no CIDR rule matches.
   */
  dst: Destination;
}

export interface Route<O extends NamedOutbound> {
  /** Name of the chosen outbound. */
  via: string;
  /** The outbound of that name; undefined when there is none (for this network). */
  outbound: O | undefined;
  /** The rule that chose it, `rules[3]` or `default`; undefined without a router. */
  rule?: string;
  /** The destination, with the domain fake-IP or sniffing gave it. */
  dst: Destination;
  /** The destination address is a fake-IP one: only the domain leads anywhere. */
  fake: boolean;
}

/** The domain a fake-IP destination stands for (no sniffing needed then). */
export function fakeDomain(d: Dispatch<NamedOutbound>, ip: string): string | undefined {
  return d.fakeIp?.lookup(ip);
}

/** Chooses the outbound for a flow. */
export function route<O extends NamedOutbound>(d: Dispatch<O>, flow: InboundFlow): Route<O> {
  const fakeName = fakeDomain(d, flow.dst.ip);
  const domain = fakeName ?? flow.dst.domain;
  const dst: Destination = {
    ip: flow.dst.ip,
    port: flow.dst.port,
    family: flow.dst.family,
    ...(domain ? { domain } : {}),
  };
  if (!d.router) return { via: 'direct', outbound: d.outbounds.get('direct'), dst, fake: false };
  const decision = d.router.route({ dst, src: flow.src.address, network: flow.network });
  const via = decision.action;
  return {
    via,
    outbound: d.outbounds.get(via),
    rule: decision.rule === 'default' ? 'default' : `rules[${decision.rule}]`,
    dst,
    fake: fakeName !== undefined,
  };
}

/**
 * Where `outbound` must connect for this route: the 'direct' outbound connects to the flow's own
 * address, so a fake one is replaced by the domain's real address.
 */
export async function destinationFor(
  d: Dispatch<NamedOutbound>,
  r: Route<NamedOutbound>,
  outbound: NamedOutbound,
): Promise<Destination> {
  if (!r.fake || outbound !== d.outbounds.get('direct') || !r.dst.domain || !d.fakeIp) return r.dst;
  const real = (await d.fakeIp.resolveReal(r.dst.domain, r.dst.family).catch(() => []))[0];
  if (!real) throw new FlowError(FLOW_CODES.notFound, `no address for ${r.dst.domain}`, outbound.name);
  return { ...r.dst, ip: real };
}

export interface Connected {
  stream: Duplex;
  /** The outbound that carried the flow. */
  via: string;
  /** The outbound chosen but unreachable, when a fallback carried the flow. */
  fallbackFrom?: string;
}

export interface TcpConnectContext extends ConnectContext {
  /** Where "node unreachable, using fallback" is written. */
  log?: Logger;
  /** The client went away: no fallback is tried for it. */
  clientGone?: () => boolean;
}

/**
 * Connects the route's outbound, then its fallbacks in order while a node cannot be reached.
 * Rejects with a FlowError whose `outbound` is the name that failed (EREJECTED for 'reject').
 */
export async function connectTcp(
  d: Dispatch<TcpOutbound>,
  r: Route<TcpOutbound>,
  ctx: TcpConnectContext,
): Promise<Connected> {
  let name = r.via;
  const tried = new Set<string>();
  for (;;) {
    tried.add(name);
    const outbound = d.outbounds.get(name);
    if (!outbound) throw new FlowError(FLOW_CODES.noOutbound, `no outbound named ${name}`, name);
    try {
      const stream = await outbound.connect(await destinationFor(d, r, outbound), ctx);
      return { stream, via: name, ...(tried.size > 1 ? { fallbackFrom: r.via } : {}) };
    } catch (e) {
      const code = errorCode(e);
      const next = d.fallbacks?.get(name);
      // Only an unreachable node warrants another path; a refusal by the node (the target
      // is down, auth failed) would fail the same way elsewhere.
      if (next && !tried.has(next) && NODE_UNREACHABLE.has(code) && !ctx.clientGone?.()) {
        ctx.log?.warn('node unreachable, using fallback', { node: name, error: code, fallback: next });
        name = next;
        continue;
      }
      throw new FlowError(code, (e as Error).message, name, { cause: e });
    }
  }
}
