// What the data plane may hold once set-up is done. The supervisor keeps root (or
// CAP_NET_ADMIN) for the firewall, the policy routing and binding the listeners; the
// workers relay bytes as an unprivileged user with only the capabilities their mode needs:
//
//   REDIRECT (either capture point)          none
//   output capture with --proxy-user none    net_admin: SO_MARK, the loop-avoidance mark
//   TPROXY with --preserve-source            net_admin: IP_TRANSPARENT on upstream sockets
//   --udp (TPROXY)                           net_admin: transparent UDP sockets and SO_MARK;
//                                            net_bind_service: replies leave from the
//                                            original destination port, often below 1024
//   DNS forwarder on a port below 1024       net_bind_service
//
// IP_TRANSPARENT is allowed with CAP_NET_ADMIN or CAP_NET_RAW, so net_raw is never needed.
import type { Capability, DropSpec } from '../kernel/privdrop.js';
import type { RunConfig } from '../config/run-config.js';

/** Who the data plane runs as when --proxy-user is none (gateway): nobody:nogroup. */
export const GATEWAY_DATA_PLANE_USER = { uid: 65534, gid: 65534 } as const;

export interface DataPlanePrivileges {
  /** The user and capabilities to drop to. */
  drop: DropSpec;
  /** SO_MARK for the worker's own sockets (0: none; it is excluded by uid or not capturable). */
  mark: number;
}

export type PrivilegeInputs = Pick<
  RunConfig,
  'mode' | 'capture' | 'proxyUser' | 'preserveSource' | 'udp' | 'bypassMark' | 'routing'
>;

export function dataPlanePrivileges(cfg: PrivilegeInputs): DataPlanePrivileges {
  const caps = new Set<Capability>();
  // Without a dedicated user, the worker's own traffic is told apart by its mark, which only
  // output capture could catch (locally made connections never pass PREROUTING).
  const needsMark = !cfg.proxyUser && cfg.capture.includes('output');
  if (needsMark) caps.add('net_admin');
  if (cfg.mode === 'tproxy' && cfg.preserveSource) caps.add('net_admin');
  if (cfg.udp) caps.add('net_admin').add('net_bind_service');
  const dns = cfg.routing?.dns;
  if (dns && (dns.listen?.port ?? 53) < 1024) caps.add('net_bind_service');
  const user = cfg.proxyUser ?? GATEWAY_DATA_PLANE_USER;
  // With CAP_NET_ADMIN anyway and no uid exclusion, mark everything (as before, harmless).
  const mark = !cfg.proxyUser && caps.has('net_admin') ? cfg.bypassMark : 0;
  return { drop: { uid: user.uid, gid: user.gid, caps: [...caps].sort() }, mark };
}
