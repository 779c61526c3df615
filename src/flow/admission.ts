// Admission of a new TCP flow: the connection limit, the original destination, the loop
// guard, in that order. Pure (no sockets, no logger) so the JS data plane and the splice
// engine's worker thread decide the same way:
//
//   const a = admit(policy, activeFlows, () => readOriginalDst(fd), (ip) => local.has(ip));
//   if (!a.ok) refuse(a.reason, a.error);  // close the fd, write a 'refused' record
//   else relay to a.dst
import type { Endpoint } from '../kernel/sockaddr.js';

export interface AdmissionPolicy {
  /** Flows at once; the next one is refused with 'max-connections'. */
  maxConnections: number;
  /** Ports of our own services (listener, admin, console): a destination on one at a local address is a loop. */
  ownPorts: readonly number[];
}

export type AdmissionRefusal = 'max-connections' | 'no-original-destination' | 'loop';

export type Admission =
  | { ok: true; dst: Endpoint }
  | { ok: false; reason: AdmissionRefusal; dst?: Endpoint; error?: string };

/**
 * Decides a just-accepted flow. `originalDst` is asked only below the limit (it is a
 * syscall); it returns the destination or why there is none. `isLocal` says whether an
 * address is one of this host's.
 */
export function admit(
  policy: AdmissionPolicy,
  active: number,
  originalDst: () => Endpoint | { error: string },
  isLocal: (address: string) => boolean,
): Admission {
  if (active >= policy.maxConnections) return { ok: false, reason: 'max-connections' };
  const dst = originalDst();
  if ('error' in dst) return { ok: false, reason: 'no-original-destination', error: dst.error };
  if (isLoop(policy, dst, isLocal)) return { ok: false, reason: 'loop', dst };
  return { ok: true, dst };
}

/**
 * Connecting to ourselves would loop until file descriptors run out, and a client must not
 * reach our admin API or console through us (from our address, with our uid).
 */
export function isLoop(
  policy: Pick<AdmissionPolicy, 'ownPorts'>,
  dst: { address: string; port: number },
  isLocal: (address: string) => boolean,
): boolean {
  return policy.ownPorts.includes(dst.port) && isLocal(dst.address);
}

/** A destination named by a request (Host header) must not reach this host's own loopback services either. */
export function isLoopForNamedTarget(
  policy: Pick<AdmissionPolicy, 'ownPorts'>,
  dst: { address: string; port: number },
  isLocal: (address: string) => boolean,
): boolean {
  return isLoop(policy, dst, isLocal) || dst.address.startsWith('127.') || dst.address === '::1';
}
