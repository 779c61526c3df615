// The libc calls Node does not expose, made through koffi. Loaded lazily so that code
// that never needs a syscall (rendering plans, parsing flags) runs anywhere.
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { SyscallError } from '../errors.js';

type KoffiFn = (...args: unknown[]) => number;

interface Libc {
  socket: KoffiFn;
  setsockopt: KoffiFn;
  getsockopt: KoffiFn;
  bind: KoffiFn;
  listen: KoffiFn;
  close: KoffiFn;
  shutdown: KoffiFn;
  recvmmsg: KoffiFn;
  sendmmsg: KoffiFn;
  sendto: KoffiFn;
  poll: KoffiFn;
  getsockname: KoffiFn;
  getrlimit: KoffiFn;
  setrlimit: KoffiFn;
  errno: () => number;
  address: (b: Buffer) => bigint;
  /** koffi ≥ 2.15: a libuv uv_poll_t on the calling thread's event loop (undocumented API). */
  nodePoll: KoffiNodePoll | undefined;
}

type KoffiNodePoll = (
  fd: number,
  opts: { readable?: boolean; writable?: boolean; disconnect?: boolean },
  cb: (status: number, ev: { readable: boolean; writable: boolean; disconnect: boolean }) => void,
) => { stop(): void; close(): void; unref(): void; ref(): void };

let libc: Libc | undefined;

function load(): Libc {
  if (libc) return libc;
  const require = createRequire(import.meta.url);
  // koffi ships prebuilt binaries in its npm package; no install script is needed.
  const koffi = require('koffi') as {
    load(path: string): { func(sig: string): KoffiFn };
    errno(): number;
    address(v: unknown): bigint;
    node?: { poll?: KoffiNodePoll };
  };
  const lib = koffi.load('libc.so.6');
  libc = {
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    setsockopt: lib.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)'),
    getsockopt: lib.func('int getsockopt(int fd, int level, int name, void *val, void *len)'),
    bind: lib.func('int bind(int fd, const void *addr, uint32_t len)'),
    listen: lib.func('int listen(int fd, int backlog)'),
    close: lib.func('int close(int fd)'),
    shutdown: lib.func('int shutdown(int fd, int how)'),
    // Buffers are passed by address (uintptr_t) where the kernel writes through pointers
    // stored inside them (mmsghdr vectors): koffi never copies or reorders that memory.
    recvmmsg: lib.func('int recvmmsg(int fd, uintptr_t msgvec, unsigned int vlen, int flags, void *timeout)'),
    sendmmsg: lib.func('int sendmmsg(int fd, uintptr_t msgvec, unsigned int vlen, int flags)'),
    sendto: lib.func(
      'intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)',
    ),
    poll: lib.func('int poll(uintptr_t fds, uint64_t nfds, int timeout)'),
    getsockname: lib.func('int getsockname(int fd, void *addr, void *len)'),
    getrlimit: lib.func('int getrlimit(int resource, void *rlim)'),
    setrlimit: lib.func('int setrlimit(int resource, const void *rlim)'),
    errno: () => koffi.errno(),
    address: (b) => koffi.address(b),
    nodePoll: typeof koffi.node?.poll === 'function' ? koffi.node.poll : undefined,
  };
  return libc;
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([name, num]) => [num, name]));

function fail(syscall: string, detail = ''): never {
  const errno = load().errno();
  throw new SyscallError(syscall, errno, ERRNO_NAMES.get(errno) ?? `E${errno}`, detail);
}

export function sysSocket(domain: number, type: number, protocol = 0): number {
  const fd = load().socket(domain, type, protocol);
  if (fd < 0) fail('socket');
  return fd;
}

export function sysSetsockoptInt(fd: number, level: number, name: number, value: number, what: string): void {
  const b = Buffer.alloc(4);
  b.writeInt32LE(value, 0);
  if (load().setsockopt(fd, level, name, b, 4) !== 0) fail('setsockopt', what);
}

/** getsockopt into a buffer of `size` bytes; returns the bytes the kernel filled in. */
export function sysGetsockopt(fd: number, level: number, name: number, size: number, what: string): Buffer {
  const val = Buffer.alloc(size);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(size, 0);
  if (load().getsockopt(fd, level, name, val, len) !== 0) fail('getsockopt', what);
  return val.subarray(0, len.readUInt32LE(0));
}

export function sysBind(fd: number, sockaddr: Buffer, what: string): void {
  if (load().bind(fd, sockaddr, sockaddr.length) !== 0) fail('bind', what);
}

export function sysListen(fd: number, backlog: number): void {
  if (load().listen(fd, backlog) !== 0) fail('listen');
}

export function sysClose(fd: number): void {
  load().close(fd);
}

export const SHUT_RDWR = 2;
export const MSG_DONTWAIT = 0x40;
export const EAGAIN = 11;
export const EINTR = 4;

/**
 * shutdown(2), errors ignored: on an unconnected UDP socket it fails with ENOTCONN but still
 * marks the socket shut down and wakes every thread blocked in recv/poll on it.
 */
export function sysShutdown(fd: number, how = SHUT_RDWR): void {
  load().shutdown(fd, how);
}

/** Address of a Buffer's first byte. The Buffer must stay referenced while it is used. */
export function addressOf(b: Buffer): bigint {
  return load().address(b);
}

/**
 * recvmmsg(2) into a prepared mmsghdr vector (see udp-msg.ts). Returns the number of
 * messages, 0 when nothing is queued (EAGAIN with MSG_DONTWAIT, or EINTR); throws otherwise.
 */
export function sysRecvmmsg(fd: number, vecAddr: bigint, vlen: number, flags: number): number {
  const n = load().recvmmsg(fd, vecAddr, vlen, flags, null);
  if (n >= 0) return n;
  const errno = load().errno();
  if (errno === EAGAIN || errno === EINTR) return 0;
  fail('recvmmsg');
}

/** sendmmsg(2) of a prepared mmsghdr vector: messages sent, or −errno. */
export function sysSendmmsg(fd: number, vecAddr: bigint, vlen: number, flags: number): number {
  const n = load().sendmmsg(fd, vecAddr, vlen, flags);
  return n >= 0 ? n : -load().errno();
}

/** sendto(2): bytes sent, or −errno (EAGAIN when the socket buffer is full: a drop for UDP). */
export function sysSendto(fd: number, payload: Buffer, flags: number, sockaddr: Buffer): number {
  const n = Number(load().sendto(fd, payload, payload.length, flags, sockaddr, sockaddr.length));
  return n >= 0 ? n : -load().errno();
}

/** poll(2) over a prepared `struct pollfd` array; returns ready count, 0 on timeout/EINTR. */
export function sysPoll(fdsAddr: bigint, nfds: number, timeoutMs: number): number {
  const n = load().poll(fdsAddr, nfds, timeoutMs);
  if (n >= 0) return n;
  if (load().errno() === EINTR) return 0;
  fail('poll');
}

/** The address a socket is bound to, as a raw sockaddr. */
export function sysGetsockname(fd: number): Buffer {
  const addr = Buffer.alloc(128);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(addr.length, 0);
  if (load().getsockname(fd, addr, len) !== 0) fail('getsockname');
  return addr.subarray(0, len.readUInt32LE(0));
}

export interface FdPoller {
  close(): void;
}

/** True when this koffi offers readiness polling on the Node event loop (koffi.node.poll). */
export function hasEventLoopPoll(): boolean {
  return load().nodePoll !== undefined;
}

/**
 * Call `onReadable` whenever `fd` is readable, from the Node event loop (libuv uv_poll_t;
 * the fd is made non-blocking). close() before closing the fd. Throws when unavailable.
 */
export function pollReadable(fd: number, onReadable: () => void, onError: (status: number) => void): FdPoller {
  const poll = load().nodePoll;
  if (!poll) throw new Error('koffi.node.poll is not available in this koffi version');
  const handle = poll(fd, { readable: true }, (status) => (status < 0 ? onError(status) : onReadable()));
  // koffi closes the uv_poll_t when its JS wrapper is garbage-collected, and nothing else
  // references the wrapper: hold it here until close(), or polling could stop at random.
  livePolls.add(handle);
  return {
    close: () => {
      if (!livePolls.delete(handle)) return;
      handle.close();
    },
  };
}

const livePolls = new Set<unknown>();

// ---- resource limits --------------------------------------------------------------------

const RLIMIT_NOFILE = 7;

/** Soft and hard limits on open file descriptors of this process. */
export function getFdLimit(): { soft: number; hard: number } {
  const b = Buffer.alloc(16);
  if (load().getrlimit(RLIMIT_NOFILE, b) !== 0) fail('getrlimit');
  return { soft: Number(b.readBigUInt64LE(0)), hard: Number(b.readBigUInt64LE(8)) };
}

/** Raise the soft fd limit to the hard one (children inherit it); returns the new limits. */
export function raiseFdLimit(): { soft: number; hard: number } {
  const { hard } = getFdLimit();
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(BigInt(hard), 0);
  b.writeBigUInt64LE(BigInt(hard), 8);
  if (load().setrlimit(RLIMIT_NOFILE, b) !== 0) fail('setrlimit');
  return getFdLimit();
}
