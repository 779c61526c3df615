// A UDP outbound that routes each new flow: the router (network 'udp'; no sniffing, so only
// a domain already known for the flow, e.g. from fake-IP, can match domain rules) names
// direct, reject or a node; the flow's session is opened on that outbound.
// A refused flow (reject rule, or a node that cannot carry UDP) makes open() reject with a
// UdpRefusedError: the relay drops the flow's datagrams and logs it closed with the code.
//
// One line per routed flow, when it is routed (the relay's end-of-flow line names this
// outbound, 'routed', so this line says where the flow went):
//   udp route src=10.0.0.2:5000 dst=192.0.2.1:53 via=node-a route=rules[1]
//   udp route src=… dst=… via=reject route=rules[0] refused=rejected-by-rule
//   udp route src=… dst=… via=web route=default refused=udp-unsupported reason="node 'web' is an HTTP CONNECT proxy…"
import type { Logger } from '../observe/log.js';
import type { Router } from '../route/index.js';
import { formatEndpoint } from '../kernel/sockaddr.js';
import type { UdpFlowInfo, UdpOutbound, UdpSession } from './types.js';

/** A flow the routing refused; `code` is short and stable (relay logs it as error=CODE). */
export class UdpRefusedError extends Error {
  constructor(
    readonly code: 'rejected-by-rule' | 'udp-unsupported' | 'unknown-outbound',
    message: string,
  ) {
    super(message);
    this.name = 'UdpRefusedError';
  }
}

export interface RoutedUdpOptions {
  /** Where route decisions and refusals are logged; none by default. */
  log?: Logger;
  /**
   * Nodes that exist for TCP but cannot carry UDP, with the reason (e.g. HTTP CONNECT);
   * flows routed to them are refused with it. A name neither here nor in `outbounds` is
   * refused as an unknown outbound.
   */
  unsupported?: ReadonlyMap<string, string>;
  /** Name in logs; default 'routed'. */
  name?: string;
  /**
   * Fake-IP DNS: a destination in the fake range names its domain (routing by domain, the
   * domain sent to the node); a flow routed direct goes to the domain's real address.
   */
  fakeIp?: {
    lookup(ip: string): string | undefined;
    resolveReal(domain: string, family: 4 | 6): Promise<string[]>;
  };
}

export function routedUdpOutbound(
  router: Router,
  outbounds: ReadonlyMap<string, UdpOutbound>,
  direct: UdpOutbound,
  opts: RoutedUdpOptions = {},
): UdpOutbound {
  const { log } = opts;
  return {
    name: opts.name ?? 'routed',
    kind: 'routed',
    open(original: UdpFlowInfo): Promise<UdpSession> {
      const fakeDomain = opts.fakeIp?.lookup(original.dst.address);
      const flow: UdpFlowInfo = fakeDomain
        ? { id: original.id, src: original.src, dst: original.dst, domain: fakeDomain }
        : original;
      const decision = router.route({
        dst: {
          ip: flow.dst.address,
          port: flow.dst.port,
          family: flow.dst.family,
          ...(flow.domain ? { domain: flow.domain } : {}),
        },
        src: flow.src.address,
        network: 'udp',
      });
      const route = decision.rule === 'default' ? 'default' : `rules[${decision.rule}]`;
      const fields = {
        src: formatEndpoint(flow.src),
        dst: formatEndpoint(flow.dst),
        ...(flow.domain ? { domain: flow.domain } : {}),
        via: decision.action,
        route,
      };
      let refusal: UdpRefusedError | undefined;
      let outbound: UdpOutbound | undefined;
      if (decision.action === 'reject')
        refusal = new UdpRefusedError('rejected-by-rule', `UDP to ${fields.dst} rejected by ${route}`);
      else if (decision.action === 'direct') outbound = direct;
      else {
        outbound = outbounds.get(decision.action);
        if (!outbound) {
          const why = opts.unsupported?.get(decision.action);
          refusal = why
            ? new UdpRefusedError('udp-unsupported', `${why}: UDP to ${fields.dst} (routed by ${route}) is refused`)
            : new UdpRefusedError(
                'unknown-outbound',
                `no UDP outbound named '${decision.action}' (routed by ${route})`,
              );
        }
      }
      if (refusal) {
        log?.info('udp route', {
          ...fields,
          refused: refusal.code,
          ...(refusal.code === 'rejected-by-rule' ? {} : { reason: refusal.message }),
        });
        return Promise.reject(refusal);
      }
      log?.info('udp route', fields);
      if (fakeDomain && outbound === direct) return openDirectByName(direct, flow, fakeDomain, opts.fakeIp!);
      try {
        return outbound!.open(flow);
      } catch (e) {
        return Promise.reject(e);
      }
    },
  };
}

/** A fake-IP flow routed direct: the fake address leads nowhere, the domain's real one does. */
async function openDirectByName(
  direct: UdpOutbound,
  flow: UdpFlowInfo,
  domain: string,
  fakeIp: NonNullable<RoutedUdpOptions['fakeIp']>,
): Promise<UdpSession> {
  const real = (await fakeIp.resolveReal(domain, flow.dst.family).catch(() => []))[0];
  if (!real) throw Object.assign(new Error(`no address for ${domain}`), { code: 'ENOTFOUND' });
  // Replies of a direct session carry no source: the relay sends them from the fake address.
  return direct.open({ id: flow.id, src: flow.src, dst: { ...flow.dst, address: real }, domain });
}
