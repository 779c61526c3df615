// libc bindings for the zero-copy relay (splice(2) through pipes, driven by epoll), made
// through koffi. Kept apart from ffi.ts so that the splice engine and the other users of
// ffi.ts never edit the same block; loaded lazily and separately in every thread that needs
// it (koffi works inside worker_threads: each isolate gets its own function objects).
//
// Hot-path calls (splice, epoll_wait) return the raw result, or −errno on failure, and
// take buffers by address (uintptr_t) so koffi does no marshalling at all.
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { SyscallError } from '../errors.js';

type KoffiFn = (...args: unknown[]) => number | bigint;

interface SpliceLibc {
  splice: KoffiFn;
  pipe2: KoffiFn;
  fcntl: KoffiFn;
  epollCreate1: KoffiFn;
  epollCtl: KoffiFn;
  epollWait: KoffiFn;
  eventfd: KoffiFn;
  read: KoffiFn;
  write: KoffiFn;
  close: KoffiFn;
  shutdown: KoffiFn;
  setsockopt: KoffiFn;
  getsockopt: KoffiFn;
  accept4: KoffiFn;
  socket: KoffiFn;
  connect: KoffiFn;
  bind: KoffiFn;
  getsockname: KoffiFn;
  errno: () => number;
  address: (b: Buffer) => bigint;
}

let libc: SpliceLibc | undefined;
let loadError: Error | undefined;

function load(): SpliceLibc {
  if (libc) return libc;
  if (loadError) throw loadError;
  try {
    const require = createRequire(import.meta.url);
    const koffi = require('koffi') as {
      load(path: string): { func(sig: string): KoffiFn };
      errno(): number;
      address(v: unknown): bigint;
    };
    const lib = koffi.load('libc.so.6');
    libc = {
      splice: lib.func(
        'intptr_t splice(int fd_in, uintptr_t off_in, int fd_out, uintptr_t off_out, size_t len, unsigned int flags)',
      ),
      pipe2: lib.func('int pipe2(uintptr_t fds, int flags)'),
      // fcntl is variadic; every command used here takes one int argument, which the
      // Linux x86-64 and AArch64 ABIs pass exactly like a fixed int parameter.
      fcntl: lib.func('int fcntl(int fd, int cmd, int arg)'),
      epollCreate1: lib.func('int epoll_create1(int flags)'),
      epollCtl: lib.func('int epoll_ctl(int epfd, int op, int fd, uintptr_t event)'),
      epollWait: lib.func('int epoll_wait(int epfd, uintptr_t events, int maxevents, int timeout)'),
      eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
      read: lib.func('intptr_t read(int fd, uintptr_t buf, size_t count)'),
      write: lib.func('intptr_t write(int fd, uintptr_t buf, size_t count)'),
      close: lib.func('int close(int fd)'),
      shutdown: lib.func('int shutdown(int fd, int how)'),
      setsockopt: lib.func('int setsockopt(int fd, int level, int name, uintptr_t val, uint32_t len)'),
      getsockopt: lib.func('int getsockopt(int fd, int level, int name, uintptr_t val, uintptr_t len)'),
      accept4: lib.func('int accept4(int fd, uintptr_t addr, uintptr_t addrlen, int flags)'),
      socket: lib.func('int socket(int domain, int type, int protocol)'),
      connect: lib.func('int connect(int fd, uintptr_t addr, uint32_t len)'),
      bind: lib.func('int bind(int fd, uintptr_t addr, uint32_t len)'),
      getsockname: lib.func('int getsockname(int fd, uintptr_t addr, uintptr_t len)'),
      errno: () => koffi.errno(),
      address: (b) => koffi.address(b),
    };
    return libc;
  } catch (e) {
    loadError = e as Error;
    throw e;
  }
}

// ---- constants (Linux, generic + x86-64/AArch64) ----
export const SPLICE_F_MOVE = 1;
export const SPLICE_F_NONBLOCK = 2;
export const SPLICE_F_MORE = 4;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const F_DUPFD_CLOEXEC = 1030;
export const F_SETPIPE_SZ = 1031;
export const F_GETPIPE_SZ = 1032;
export const F_GETFL = 3;
export const EPOLL_CLOEXEC = O_CLOEXEC;
export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;
export const EPOLL_CTL_MOD = 3;
export const EPOLLIN = 0x001;
export const EPOLLOUT = 0x004;
export const EPOLLERR = 0x008;
export const EPOLLHUP = 0x010;
export const EPOLLRDHUP = 0x2000;
export const EPOLLET = 0x80000000;
export const EFD_CLOEXEC = O_CLOEXEC;
export const EFD_NONBLOCK = O_NONBLOCK;
export const SHUT_WR = 1;
export const SOL_SOCKET = 1;
export const SO_TYPE = 3;
export const SO_ERROR = 4;
export const SO_LINGER = 13;
export const SO_PROTOCOL = 38;
export const SOCK_STREAM = 1;
export const IPPROTO_TCP = 6;
export const EINTR = 4;
export const EAGAIN = 11;
export const EINPROGRESS = 115;
export const EMFILE = 24;
export const ENFILE = 23;
export const ENOBUFS = 105;
export const ENOMEM = 12;
export const SOCK_NONBLOCK = O_NONBLOCK;
export const SOCK_CLOEXEC = O_CLOEXEC;
export const SOL_IP = 0;
export const SOL_IPV6 = 41;
export const SOL_TCP = 6;
export const TCP_NODELAY = 1;
export const SO_MARK = 36;
export const IP_TRANSPARENT = 19;
export const IPV6_TRANSPARENT = 75;
export const SO_ORIGINAL_DST = 80; // also IP6T_SO_ORIGINAL_DST

/** sizeof(struct epoll_event): packed on x86-64 (12 bytes), naturally aligned elsewhere (16). */
export const EPOLL_EVENT_SIZE = process.arch === 'x64' ? 12 : 16;
/** Offset of epoll_event.data. */
export const EPOLL_DATA_OFFSET = process.arch === 'x64' ? 4 : 8;

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([name, num]) => [num, name]));

export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

function fail(syscall: string, detail = ''): never {
  const errno = load().errno();
  throw new SyscallError(syscall, errno, errnoName(errno), detail);
}

/** Loads the bindings; throws when koffi or libc cannot be loaded. */
export function loadSpliceLibc(): void {
  load();
}

export function addressOf(b: Buffer): bigint {
  return load().address(b);
}

// ---- hot path: raw results, −errno on failure ----

/** splice(2) without offsets: bytes moved, 0 at EOF, or −errno. */
export function rawSplice(fdIn: number, fdOut: number, len: number, flags: number): number {
  const l = load();
  const n = Number(l.splice(fdIn, 0, fdOut, 0, len, flags));
  return n >= 0 ? n : -l.errno();
}

/** epoll_wait(2) into a buffer given by address: ready count, or −errno. */
export function rawEpollWait(epfd: number, eventsAddr: bigint, maxEvents: number, timeoutMs: number): number {
  const l = load();
  const n = Number(l.epollWait(epfd, eventsAddr, maxEvents, timeoutMs));
  return n >= 0 ? n : -l.errno();
}

// ---- set-up calls: throw SyscallError ----

/** A pipe pair [read end, write end], O_CLOEXEC|O_NONBLOCK. Returns −errno instead of throwing. */
export function rawPipe(scratch: Buffer): [number, number] | number {
  const l = load();
  if (Number(l.pipe2(l.address(scratch), O_CLOEXEC | O_NONBLOCK)) !== 0) return -l.errno();
  return [scratch.readInt32LE(0), scratch.readInt32LE(4)];
}

/** fcntl(fd, cmd, arg): result or −errno. */
export function rawFcntl(fd: number, cmd: number, arg: number): number {
  const l = load();
  const n = Number(l.fcntl(fd, cmd, arg));
  return n >= 0 ? n : -l.errno();
}

/** A new descriptor for the same open file, close-on-exec. */
export function sysDupCloexec(fd: number): number {
  const n = Number(load().fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (n < 0) fail('fcntl', 'F_DUPFD_CLOEXEC');
  return n;
}

export function sysEpollCreate(): number {
  const n = Number(load().epollCreate1(EPOLL_CLOEXEC));
  if (n < 0) fail('epoll_create1');
  return n;
}

/** epoll_ctl with a scratch epoll_event buffer: 0 or −errno. */
export function rawEpollCtl(
  epfd: number,
  op: number,
  fd: number,
  events: number,
  token: number,
  scratch: Buffer,
): number {
  const l = load();
  scratch.fill(0);
  scratch.writeUInt32LE(events >>> 0, 0);
  scratch.writeUInt32LE(token >>> 0, EPOLL_DATA_OFFSET);
  const n = Number(l.epollCtl(epfd, op, fd, op === EPOLL_CTL_DEL ? 0 : l.address(scratch)));
  return n === 0 ? 0 : -l.errno();
}

export function sysEventfd(): number {
  const n = Number(load().eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (n < 0) fail('eventfd');
  return n;
}

const one = Buffer.alloc(8);
one.writeBigUInt64LE(1n, 0);

/** Adds 1 to an eventfd counter (wakes its epoll waiters). */
export function eventfdSignal(fd: number): void {
  const l = load();
  l.write(fd, l.address(one), 8);
}

/** Resets an eventfd counter (non-blocking eventfd: EAGAIN when already zero). */
export function eventfdDrain(fd: number, scratch: Buffer): void {
  const l = load();
  l.read(fd, l.address(scratch), 8);
}

/** close(2): 0 or −errno. */
export function rawClose(fd: number): number {
  const l = load();
  return Number(l.close(fd)) === 0 ? 0 : -l.errno();
}

/** shutdown(2): 0 or −errno. */
export function rawShutdown(fd: number, how: number): number {
  const l = load();
  return Number(l.shutdown(fd, how)) === 0 ? 0 : -l.errno();
}

const lingerZero = Buffer.alloc(8);
lingerZero.writeInt32LE(1, 0); // l_onoff = 1, l_linger = 0

/** SO_LINGER {1, 0}: the next close(2) sends an RST and discards unsent data. */
export function setLingerZero(fd: number): number {
  const l = load();
  return Number(l.setsockopt(fd, SOL_SOCKET, SO_LINGER, l.address(lingerZero), 8)) === 0 ? 0 : -l.errno();
}

/** getsockopt of an int option: value, or −errno (as a thrown-free result object). */
export function getsockoptInt(
  fd: number,
  level: number,
  name: number,
  scratch: Buffer,
): { value: number } | { errno: number } {
  const l = load();
  scratch.writeInt32LE(0, 0);
  scratch.writeUInt32LE(4, 8);
  const r = Number(l.getsockopt(fd, level, name, l.address(scratch), l.address(scratch) + 8n));
  if (r !== 0) return { errno: l.errno() };
  return { value: scratch.readInt32LE(0) };
}

// ---- the engine's own accept and connect (kernel-only flows): raw results, −errno ----

/** A scratch area for one sockaddr (128 bytes) and its length word, by address. */
export interface SockaddrScratch {
  buf: Buffer;
  addr: bigint;
  lenAddr: bigint;
}

export function sockaddrScratch(): SockaddrScratch {
  const buf = Buffer.alloc(136);
  const addr = load().address(buf);
  return { buf, addr, lenAddr: addr + 128n };
}

/** The sockaddr a call left in the scratch area (a view: copy or decode before the next call). */
export function scratchSockaddr(s: SockaddrScratch): Buffer {
  return s.buf.subarray(0, Math.min(128, s.buf.readUInt32LE(128)));
}

/** accept4(2), non-blocking and close-on-exec; the peer's sockaddr lands in `s`. fd or −errno. */
export function rawAccept(fd: number, s: SockaddrScratch): number {
  const l = load();
  s.buf.writeUInt32LE(128, 128);
  const n = Number(l.accept4(fd, s.addr, s.lenAddr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  return n >= 0 ? n : -l.errno();
}

/** getsockname(2) (TPROXY: the original destination) or getsockopt(SO_ORIGINAL_DST) (REDIRECT) into `s`: 0 or −errno. */
export function rawLocalOrOriginal(fd: number, original: 4 | 6 | undefined, s: SockaddrScratch): number {
  const l = load();
  s.buf.writeUInt32LE(128, 128);
  const r =
    original === undefined
      ? Number(l.getsockname(fd, s.addr, s.lenAddr))
      : Number(l.getsockopt(fd, original === 4 ? SOL_IP : SOL_IPV6, SO_ORIGINAL_DST, s.addr, s.lenAddr));
  return r === 0 ? 0 : -l.errno();
}

/** A non-blocking, close-on-exec TCP socket: fd or −errno. */
export function rawTcpSocket(family: 4 | 6): number {
  const l = load();
  const n = Number(l.socket(family === 4 ? 2 : 10, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  return n >= 0 ? n : -l.errno();
}

/** setsockopt of an int option through a scratch buffer: 0 or −errno. */
export function rawSetsockoptInt(fd: number, level: number, name: number, value: number, scratch: Buffer): number {
  const l = load();
  scratch.writeInt32LE(value, 0);
  return Number(l.setsockopt(fd, level, name, l.address(scratch), 4)) === 0 ? 0 : -l.errno();
}

/** bind(2) to a sockaddr given by address: 0 or −errno. */
export function rawBind(fd: number, addr: bigint, len: number): number {
  const l = load();
  return Number(l.bind(fd, addr, len)) === 0 ? 0 : -l.errno();
}

/** connect(2) to a sockaddr given by address: 0, or −errno (−EINPROGRESS on a non-blocking socket). */
export function rawConnect(fd: number, addr: bigint, len: number): number {
  const l = load();
  return Number(l.connect(fd, addr, len)) === 0 ? 0 : -l.errno();
}

/** A one-byte pipe-to-pipe splice: proves splice(2) works here. Closes what it opens. */
export function probeSplice(): boolean {
  const l = load();
  const scratch = Buffer.alloc(64);
  const a = rawPipe(scratch);
  if (typeof a === 'number') return false;
  const b = rawPipe(scratch);
  try {
    if (typeof b === 'number') return false;
    if (Number(l.write(a[1], l.address(one), 1)) !== 1) return false;
    return rawSplice(a[0], b[1], 1, SPLICE_F_NONBLOCK) === 1;
  } finally {
    for (const fd of [...a, ...(typeof b === 'number' ? [] : b)]) rawClose(fd);
  }
}
