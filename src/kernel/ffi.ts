// The libc calls Node does not expose, made through koffi: the one loader. Loaded lazily so
// that code that never needs a syscall (rendering plans, parsing flags) runs anywhere, and
// separately in every thread that uses it (each isolate gets its own function objects).
//
// Hot-path calls return the raw result, or −errno on failure (raw*), and take buffers by
// address (uintptr_t) so koffi does no marshalling; set-up calls throw SyscallError (sys*).
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { SyscallError } from '../errors.js';
import {
  EAGAIN,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  EINTR,
  EPOLL_CLOEXEC,
  EPOLL_CTL_DEL,
  EPOLL_DATA_OFFSET,
  F_DUPFD_CLOEXEC,
  MSG_MORE,
  MSG_PEEK,
  O_CLOEXEC,
  O_NONBLOCK,
  RLIMIT_NOFILE,
  SHUT_RDWR,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  SOL_IP,
  SOL_IPV6,
  SOL_SOCKET,
  SO_LINGER,
  SO_ORIGINAL_DST,
} from './linux.js';

type KoffiFn = (...args: unknown[]) => number | bigint;

interface Libc {
  socket: KoffiFn;
  setsockopt: KoffiFn;
  getsockopt: KoffiFn;
  bind: KoffiFn;
  listen: KoffiFn;
  connect: KoffiFn;
  accept4: KoffiFn;
  close: KoffiFn;
  shutdown: KoffiFn;
  recvmmsg: KoffiFn;
  sendmmsg: KoffiFn;
  sendto: KoffiFn;
  recvfrom: KoffiFn;
  poll: KoffiFn;
  getsockname: KoffiFn;
  getrlimit: KoffiFn;
  setrlimit: KoffiFn;
  splice: KoffiFn;
  pipe2: KoffiFn;
  fcntl: KoffiFn;
  epollCreate1: KoffiFn;
  epollCtl: KoffiFn;
  epollWait: KoffiFn;
  eventfd: KoffiFn;
  memfdCreate: KoffiFn;
  read: KoffiFn;
  write: KoffiFn;
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

interface Koffi {
  load(path: string): { func(sig: string): KoffiFn };
  errno(): number;
  address(v: unknown): bigint;
  node?: { poll?: KoffiNodePoll };
}

let libc: Libc | undefined;
let loadError: Error | undefined;

function load(): Libc {
  if (libc) return libc;
  if (loadError) throw loadError;
  try {
    // koffi ships prebuilt binaries in its npm package; no install script is needed.
    const koffi = createRequire(import.meta.url)('koffi') as Koffi;
    libc = bind(koffi, koffi.load('libc.so.6'));
    return libc;
  } catch (e) {
    loadError = e as Error;
    throw e;
  }
}

// Pointers are uintptr_t everywhere: callers pass addressOf(buffer) (the Buffer must stay
// referenced during the call), so the kernel may write through pointers stored inside them.
function bind(koffi: Koffi, lib: { func(sig: string): KoffiFn }): Libc {
  return {
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    setsockopt: lib.func('int setsockopt(int fd, int level, int name, uintptr_t val, uint32_t len)'),
    getsockopt: lib.func('int getsockopt(int fd, int level, int name, uintptr_t val, uintptr_t len)'),
    bind: lib.func('int bind(int fd, uintptr_t addr, uint32_t len)'),
    listen: lib.func('int listen(int fd, int backlog)'),
    connect: lib.func('int connect(int fd, uintptr_t addr, uint32_t len)'),
    accept4: lib.func('int accept4(int fd, uintptr_t addr, uintptr_t addrlen, int flags)'),
    close: lib.func('int close(int fd)'),
    shutdown: lib.func('int shutdown(int fd, int how)'),
    recvmmsg: lib.func('int recvmmsg(int fd, uintptr_t msgvec, unsigned int vlen, int flags, void *timeout)'),
    sendmmsg: lib.func('int sendmmsg(int fd, uintptr_t msgvec, unsigned int vlen, int flags)'),
    sendto: lib.func('intptr_t sendto(int fd, uintptr_t buf, size_t len, int flags, uintptr_t addr, uint32_t addrlen)'),
    recvfrom: lib.func(
      'intptr_t recvfrom(int fd, uintptr_t buf, size_t len, int flags, uintptr_t addr, uintptr_t addrlen)',
    ),
    poll: lib.func('int poll(uintptr_t fds, uint64_t nfds, int timeout)'),
    getsockname: lib.func('int getsockname(int fd, uintptr_t addr, uintptr_t len)'),
    getrlimit: lib.func('int getrlimit(int resource, uintptr_t rlim)'),
    setrlimit: lib.func('int setrlimit(int resource, uintptr_t rlim)'),
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
    memfdCreate: lib.func('int memfd_create(const char *name, unsigned int flags)'),
    read: lib.func('intptr_t read(int fd, uintptr_t buf, size_t count)'),
    write: lib.func('intptr_t write(int fd, uintptr_t buf, size_t count)'),
    errno: () => koffi.errno(),
    address: (b) => koffi.address(b),
    nodePoll: typeof koffi.node?.poll === 'function' ? koffi.node.poll : undefined,
  };
}

/** Loads the bindings; throws when koffi or libc cannot be loaded. */
export function loadLibc(): void {
  load();
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([name, num]) => [num, name]));

export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

function fail(syscall: string, detail = ''): never {
  const errno = load().errno();
  throw new SyscallError(syscall, errno, errnoName(errno), detail);
}

/** A raw result: non-negative as is, −errno on failure. */
function raw(n: number | bigint): number {
  const v = Number(n);
  return v >= 0 ? v : -load().errno();
}

/** Address of a Buffer's first byte. The Buffer must stay referenced while it is used. */
export function addressOf(b: Buffer): bigint {
  return load().address(b);
}

// ---- set-up calls: throw SyscallError ----

export function sysSocket(domain: number, type: number, protocol = 0): number {
  const fd = Number(load().socket(domain, type, protocol));
  if (fd < 0) fail('socket');
  return fd;
}

export function sysSetsockoptInt(fd: number, level: number, name: number, value: number, what: string): void {
  const b = Buffer.alloc(4);
  b.writeInt32LE(value, 0);
  if (Number(load().setsockopt(fd, level, name, addressOf(b), 4)) !== 0) fail('setsockopt', what);
}

/** getsockopt into a buffer of `size` bytes; returns the bytes the kernel filled in. */
export function sysGetsockopt(fd: number, level: number, name: number, size: number, what: string): Buffer {
  const val = Buffer.alloc(size);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(size, 0);
  if (Number(load().getsockopt(fd, level, name, addressOf(val), addressOf(len))) !== 0) fail('getsockopt', what);
  return val.subarray(0, len.readUInt32LE(0));
}

export function sysBind(fd: number, sockaddr: Buffer, what: string): void {
  if (Number(load().bind(fd, addressOf(sockaddr), sockaddr.length)) !== 0) fail('bind', what);
}

export function sysListen(fd: number, backlog: number): void {
  if (Number(load().listen(fd, backlog)) !== 0) fail('listen');
}

export function sysClose(fd: number): void {
  load().close(fd);
}

/**
 * shutdown(2), errors ignored: on an unconnected UDP socket it fails with ENOTCONN but still
 * marks the socket shut down and wakes every thread blocked in recv/poll on it.
 */
export function sysShutdown(fd: number, how = SHUT_RDWR): void {
  load().shutdown(fd, how);
}

/** The address a socket is bound to, as a raw sockaddr. */
export function sysGetsockname(fd: number): Buffer {
  const addr = Buffer.alloc(128);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(addr.length, 0);
  if (Number(load().getsockname(fd, addressOf(addr), addressOf(len))) !== 0) fail('getsockname');
  return addr.subarray(0, len.readUInt32LE(0));
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

export function sysEventfd(): number {
  const n = Number(load().eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (n < 0) fail('eventfd');
  return n;
}

/** MFD_CLOEXEC of memfd_create(2). */
const MFD_CLOEXEC = 1;

/** An anonymous in-memory file, close-on-exec (a child gets it only as one of its stdio fds). */
export function sysMemfd(name: string): number {
  const n = Number(load().memfdCreate(name, MFD_CLOEXEC));
  if (n < 0) fail('memfd_create');
  return n;
}

// ---- UDP batches ----

/**
 * recvmmsg(2) into a prepared mmsghdr vector (see udp-msg.ts). Returns the number of
 * messages, 0 when nothing is queued (EAGAIN with MSG_DONTWAIT, or EINTR); throws otherwise.
 */
export function sysRecvmmsg(fd: number, vecAddr: bigint, vlen: number, flags: number): number {
  const n = Number(load().recvmmsg(fd, vecAddr, vlen, flags, null));
  if (n >= 0) return n;
  const errno = load().errno();
  if (errno === EAGAIN || errno === EINTR) return 0;
  fail('recvmmsg');
}

/** sendmmsg(2) of a prepared mmsghdr vector: messages sent, or −errno. */
export function sysSendmmsg(fd: number, vecAddr: bigint, vlen: number, flags: number): number {
  return raw(load().sendmmsg(fd, vecAddr, vlen, flags));
}

/** sendto(2): bytes sent, or −errno (EAGAIN when the socket buffer is full: a drop for UDP). */
export function sysSendto(fd: number, payload: Buffer, flags: number, sockaddr: Buffer): number {
  const l = load();
  return raw(l.sendto(fd, l.address(payload), payload.length, flags, l.address(sockaddr), sockaddr.length));
}

/** poll(2) over a prepared `struct pollfd` array; returns ready count, 0 on timeout/EINTR. */
export function sysPoll(fdsAddr: bigint, nfds: number, timeoutMs: number): number {
  const n = Number(load().poll(fdsAddr, nfds, timeoutMs));
  if (n >= 0) return n;
  if (load().errno() === EINTR) return 0;
  fail('poll');
}

export interface FdPoller {
  close(): void;
  /** Whether the poll keeps the process alive (it does at first, like any libuv handle). */
  ref(): void;
  unref(): void;
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
    ref: () => livePolls.has(handle) && handle.ref(),
    unref: () => livePolls.has(handle) && handle.unref(),
  };
}

const livePolls = new Set<unknown>();

// ---- resource limits ----

/** Soft and hard limits on open file descriptors of this process. */
export function getFdLimit(): { soft: number; hard: number } {
  const b = Buffer.alloc(16);
  if (Number(load().getrlimit(RLIMIT_NOFILE, addressOf(b))) !== 0) fail('getrlimit');
  return { soft: Number(b.readBigUInt64LE(0)), hard: Number(b.readBigUInt64LE(8)) };
}

/** Raise the soft fd limit to the hard one (children inherit it); returns the new limits. */
export function raiseFdLimit(): { soft: number; hard: number } {
  const { hard } = getFdLimit();
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(BigInt(hard), 0);
  b.writeBigUInt64LE(BigInt(hard), 8);
  if (Number(load().setrlimit(RLIMIT_NOFILE, addressOf(b))) !== 0) fail('setrlimit');
  return getFdLimit();
}

// ---- hot path: raw results (−errno on failure), buffers by address ----

/** splice(2) without offsets: bytes moved, 0 at EOF, or −errno. */
export function rawSplice(fdIn: number, fdOut: number, len: number, flags: number): number {
  return raw(load().splice(fdIn, 0, fdOut, 0, len, flags));
}

/** read(2) into memory given by address: bytes read, 0 at EOF, or −errno. */
export function rawRead(fd: number, addr: bigint, len: number): number {
  return raw(load().read(fd, addr, len));
}

/** write(2) from memory given by address: bytes written, or −errno. */
export function rawWrite(fd: number, addr: bigint, len: number): number {
  return raw(load().write(fd, addr, len));
}

/**
 * send(2) with MSG_MORE: the bytes wait in the socket (no segment) until the next send, a
 * shutdown or a close pushes them, so a FIN right after rides in the same segment.
 */
export function rawSendMore(fd: number, addr: bigint, len: number): number {
  return raw(load().sendto(fd, addr, len, MSG_MORE, 0n, 0));
}

/** recv(2) with MSG_PEEK: the bytes stay queued (a later read gets them again); count, 0 at EOF, or −errno. */
export function rawPeek(fd: number, addr: bigint, len: number): number {
  return raw(load().recvfrom(fd, addr, len, MSG_PEEK, 0n, 0n));
}

/** epoll_wait(2) into a buffer given by address: ready count, or −errno. */
export function rawEpollWait(epfd: number, eventsAddr: bigint, maxEvents: number, timeoutMs: number): number {
  return raw(load().epollWait(epfd, eventsAddr, maxEvents, timeoutMs));
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
  return raw(l.epollCtl(epfd, op, fd, op === EPOLL_CTL_DEL ? 0 : l.address(scratch)));
}

/** A pipe pair [read end, write end], O_CLOEXEC|O_NONBLOCK, or −errno. */
export function rawPipe(scratch: Buffer): [number, number] | number {
  const l = load();
  const r = raw(l.pipe2(l.address(scratch), O_CLOEXEC | O_NONBLOCK));
  return r < 0 ? r : [scratch.readInt32LE(0), scratch.readInt32LE(4)];
}

/** fcntl(fd, cmd, arg): result or −errno. */
export function rawFcntl(fd: number, cmd: number, arg: number): number {
  return raw(load().fcntl(fd, cmd, arg));
}

const one = Buffer.alloc(8);
one.writeBigUInt64LE(1n, 0);

/** Adds 1 to an eventfd counter (wakes its epoll waiters). */
export function eventfdSignal(fd: number): void {
  rawWrite(fd, addressOf(one), 8);
}

/** Resets an eventfd counter (non-blocking eventfd: EAGAIN when already zero). */
export function eventfdDrain(fd: number, scratch: Buffer): void {
  rawRead(fd, addressOf(scratch), 8);
}

/** close(2): 0 or −errno. */
export function rawClose(fd: number): number {
  return raw(load().close(fd));
}

/** shutdown(2): 0 or −errno. */
export function rawShutdown(fd: number, how: number): number {
  return raw(load().shutdown(fd, how));
}

const lingerZero = Buffer.alloc(8);
lingerZero.writeInt32LE(1, 0); // l_onoff = 1, l_linger = 0

/** SO_LINGER {1, 0}: the next close(2) sends an RST and discards unsent data. */
export function setLingerZero(fd: number): number {
  return raw(load().setsockopt(fd, SOL_SOCKET, SO_LINGER, addressOf(lingerZero), 8));
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

/** setsockopt of an int option through a scratch buffer: 0 or −errno. */
export function rawSetsockoptInt(fd: number, level: number, name: number, value: number, scratch: Buffer): number {
  scratch.writeInt32LE(value, 0);
  return raw(load().setsockopt(fd, level, name, addressOf(scratch), 4));
}

/** A scratch area for one sockaddr (128 bytes) and its length word, by address. */
export interface SockaddrScratch {
  buf: Buffer;
  addr: bigint;
  lenAddr: bigint;
}

export function sockaddrScratch(): SockaddrScratch {
  const buf = Buffer.alloc(136);
  const addr = addressOf(buf);
  return { buf, addr, lenAddr: addr + 128n };
}

/** The sockaddr a call left in the scratch area (a view: copy or decode before the next call). */
export function scratchSockaddr(s: SockaddrScratch): Buffer {
  return s.buf.subarray(0, Math.min(128, s.buf.readUInt32LE(128)));
}

/** accept4(2), non-blocking and close-on-exec; the peer's sockaddr lands in `s`. fd or −errno. */
export function rawAccept(fd: number, s: SockaddrScratch): number {
  s.buf.writeUInt32LE(128, 128);
  return raw(load().accept4(fd, s.addr, s.lenAddr, SOCK_NONBLOCK | SOCK_CLOEXEC));
}

/** getsockname(2) (TPROXY: the original destination) or getsockopt(SO_ORIGINAL_DST) (REDIRECT) into `s`: 0 or −errno. */
export function rawLocalOrOriginal(fd: number, original: 4 | 6 | undefined, s: SockaddrScratch): number {
  const l = load();
  s.buf.writeUInt32LE(128, 128);
  return raw(
    original === undefined
      ? l.getsockname(fd, s.addr, s.lenAddr)
      : l.getsockopt(fd, original === 4 ? SOL_IP : SOL_IPV6, SO_ORIGINAL_DST, s.addr, s.lenAddr),
  );
}

/** A non-blocking, close-on-exec TCP socket: fd or −errno. */
export function rawTcpSocket(family: 4 | 6): number {
  return raw(load().socket(family === 4 ? 2 : 10, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
}

/** bind(2) to a sockaddr given by address: 0 or −errno. */
export function rawBind(fd: number, addr: bigint, len: number): number {
  return raw(load().bind(fd, addr, len));
}

/** connect(2) to a sockaddr given by address: 0, or −errno (−EINPROGRESS on a non-blocking socket). */
export function rawConnect(fd: number, addr: bigint, len: number): number {
  return raw(load().connect(fd, addr, len));
}
