// Sockets with kernel options Node cannot set: transparent listeners for TPROXY, outbound
// sockets with SO_MARK or a spoofed (transparent) source, and SO_ORIGINAL_DST for REDIRECT.
import type { Socket } from 'node:net';
import { SyscallError } from '../errors.js';
import { SOCKADDR_IN6_SIZE, SOCKADDR_IN_SIZE, decodeSockaddr, encodeSockaddr, type Endpoint } from './sockaddr.js';
import {
  rawShutdown,
  sysBind,
  sysClose,
  sysDupCloexec,
  sysGetsockopt,
  sysListen,
  sysSetsockoptInt,
  sysSocket,
} from './ffi.js';
import {
  AF_INET,
  AF_INET6,
  IP_TRANSPARENT,
  IPV6_TRANSPARENT,
  IPV6_V6ONLY,
  SO_MARK,
  SO_ORIGINAL_DST,
  SO_REUSEADDR,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_STREAM,
  SOL_IP,
  SOL_IPV6,
  SHUT_RD,
  SOL_SOCKET,
} from './linux.js';

/** The OS file descriptor behind a connected Node socket (libuv handle). */
export function socketFd(socket: Socket): number {
  const handle = (socket as unknown as { _handle?: { fd?: number } })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new SyscallError('fd', 9, 'EBADF', 'socket has no file descriptor');
  return fd;
}

/**
 * Destination a REDIRECTed connection was originally sent to (pre-NAT), from conntrack.
 * `family` is the family of the accepted socket (listeners are single-family).
 */
export function originalDestination(socket: Socket, family: 4 | 6): Endpoint {
  const fd = socketFd(socket);
  const raw =
    family === 4
      ? sysGetsockopt(fd, SOL_IP, SO_ORIGINAL_DST, SOCKADDR_IN_SIZE, 'SO_ORIGINAL_DST')
      : sysGetsockopt(fd, SOL_IPV6, SO_ORIGINAL_DST, SOCKADDR_IN6_SIZE, 'IP6T_SO_ORIGINAL_DST');
  return decodeSockaddr(raw);
}

export interface ListenerSpec {
  family: 4 | 6;
  address: string;
  port: number;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT: accept connections for any destination (TPROXY). */
  transparent: boolean;
  backlog?: number;
}

/**
 * A bound, listening TCP socket made with raw syscalls, ready for
 * `net.createServer().listen({ fd })` or to be handed to a child process.
 * IPv6 listeners are v6-only so each family has its own listener and its own SO_ORIGINAL_DST.
 */
export function createListenerFd(spec: ListenerSpec): number {
  const fd = sysSocket(spec.family === 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC);
  try {
    sysSetsockoptInt(fd, SOL_SOCKET, SO_REUSEADDR, 1, 'SO_REUSEADDR');
    if (spec.family === 6) sysSetsockoptInt(fd, SOL_IPV6, IPV6_V6ONLY, 1, 'IPV6_V6ONLY');
    if (spec.transparent) setTransparent(fd, spec.family);
    sysBind(fd, encodeSockaddr(spec), `${spec.family === 6 ? `[${spec.address}]` : spec.address}:${spec.port}`);
    sysListen(fd, spec.backlog ?? 4096);
    return fd;
  } catch (e) {
    sysClose(fd);
    throw e;
  }
}

function setTransparent(fd: number, family: 4 | 6): void {
  if (family === 4) sysSetsockoptInt(fd, SOL_IP, IP_TRANSPARENT, 1, 'IP_TRANSPARENT (needs CAP_NET_ADMIN)');
  else sysSetsockoptInt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1, 'IPV6_TRANSPARENT (needs CAP_NET_ADMIN)');
}

export interface OutboundSpec {
  family: 4 | 6;
  /** SO_MARK value (needs CAP_NET_ADMIN); the firewall plan skips packets with it. */
  mark?: number;
  /** Bind to this (foreign) source address before connecting: full transparency. */
  transparentSource?: string;
  udp?: boolean;
}

/**
 * An unconnected socket carrying the requested options, for `new net.Socket({ fd }).connect()`.
 * Returns undefined when no option is needed, so callers use Node's own sockets then.
 */
export function createOutboundFd(spec: OutboundSpec): number | undefined {
  if (!spec.mark && !spec.transparentSource) return undefined;
  const fd = sysSocket(spec.family === 4 ? AF_INET : AF_INET6, (spec.udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC);
  try {
    if (spec.mark) sysSetsockoptInt(fd, SOL_SOCKET, SO_MARK, spec.mark, 'SO_MARK (needs CAP_NET_ADMIN)');
    if (spec.transparentSource) {
      setTransparent(fd, spec.family);
      sysBind(
        fd,
        encodeSockaddr({ address: spec.transparentSource, port: 0 }),
        `transparent source ${spec.transparentSource}`,
      );
    }
    return fd;
  } catch (e) {
    sysClose(fd);
    throw e;
  }
}

export function closeFd(fd: number): void {
  sysClose(fd);
}

/**
 * Takes a listening socket out of LISTEN for every process holding it (shutdown(SHUT_RD) on a
 * listener is a disconnect): connections not yet accepted are reset and new ones refused,
 * instead of waiting in the backlog. Whoever still polls it must have stopped accepting.
 */
export function stopListening(fd: number): void {
  rawShutdown(fd, SHUT_RD); // fails only if it no longer listens: nothing left to do
}

/** A second descriptor for the same socket (close-on-exec); closing one leaves the other open. */
export function dupFd(fd: number): number {
  return sysDupCloexec(fd);
}

export { SOCK_DGRAM };
