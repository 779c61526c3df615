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
import { FlowError } from '../errors.js';
import type { Logger } from '../observe/log.js';
import type { Router } from '../route/index.js';
import { destinationFor, route, type Dispatch, type FakeIpMap, type Route } from './dispatch.js';
import { formatEndpoint } from '../kernel/sockaddr.js';
import type { UdpFlowInfo, UdpOutbound, UdpSession } from '../udp/types.js';

/** A flow the routing refused; `code` is short and stable (relay logs it as error=CODE). */
export class UdpRefusedError extends FlowError {
  declare readonly code: 'rejected-by-rule' | 'udp-unsupported' | 'unknown-outbound';
  constructor(code: 'rejected-by-rule' | 'udp-unsupported' | 'unknown-outbound', message: string) {
    super(code, message);
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
  fakeIp?: FakeIpMap;
}

export function routedUdpOutbound(
  router: Router,
  outbounds: ReadonlyMap<string, UdpOutbound>,
  direct: UdpOutbound,
  opts: RoutedUdpOptions = {},
): UdpOutbound {
  const { log } = opts;
  const builtins = new Map<string, UdpOutbound>([
    ['direct', direct],
    ['reject', rejectUdpOutbound],
  ]);
  const dispatch: Dispatch<UdpOutbound> = {
    router,
    outbounds: { get: (name) => builtins.get(name) ?? outbounds.get(name) },
    ...(opts.fakeIp ? { fakeIp: opts.fakeIp } : {}),
  };
  return {
    name: opts.name ?? 'routed',
    kind: 'routed',
    async open(original: UdpFlowInfo): Promise<UdpSession> {
      const r = route(dispatch, {
        network: 'udp',
        src: original.src,
        dst: {
          ip: original.dst.address,
          port: original.dst.port,
          family: original.dst.family,
          ...(original.domain ? { domain: original.domain } : {}),
        },
      });
      const domain = r.dst.domain;
      const flow: UdpFlowInfo = {
        id: original.id,
        src: original.src,
        dst: original.dst,
        ...(domain ? { domain } : {}),
      };
      const fields = {
        src: formatEndpoint(flow.src),
        dst: formatEndpoint(flow.dst),
        ...(domain ? { domain } : {}),
        via: r.via,
        ...(r.rule ? { route: r.rule } : {}),
      };
      const refusal = refusalOf(r, fields.dst, opts.unsupported);
      if (refusal) {
        log?.info('udp route', {
          ...fields,
          refused: refusal.code,
          ...(refusal.code === 'rejected-by-rule' ? {} : { reason: refusal.message }),
        });
        throw refusal;
      }
      log?.info('udp route', fields);
      const outbound = r.outbound!;
      const dst = await destinationFor(dispatch, r, outbound);
      // Replies of a direct session carry no source: the relay sends them from the fake address.
      return outbound.open(dst.ip === flow.dst.address ? flow : { ...flow, dst: { ...flow.dst, address: dst.ip } });
    },
  };
}

/** `reject` for UDP: every flow is refused. */
const rejectUdpOutbound: UdpOutbound = {
  name: 'reject',
  kind: 'reject',
  open: (flow) =>
    Promise.reject(new UdpRefusedError('rejected-by-rule', `UDP to ${formatEndpoint(flow.dst)} rejected`)),
};

/** Why a routed flow cannot be carried: the route says reject, or names no UDP outbound. */
function refusalOf(
  r: Route<UdpOutbound>,
  dst: string,
  unsupported: ReadonlyMap<string, string> | undefined,
): UdpRefusedError | undefined {
  const by = r.rule ?? 'default';
  if (r.outbound?.kind === 'reject') return new UdpRefusedError('rejected-by-rule', `UDP to ${dst} rejected by ${by}`);
  if (r.outbound) return undefined;
  const why = unsupported?.get(r.via);
  return why
    ? new UdpRefusedError('udp-unsupported', `${why}: UDP to ${dst} (routed by ${by}) is refused`)
    : new UdpRefusedError('unknown-outbound', `no UDP outbound named '${r.via}' (routed by ${by})`);
}
