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
  errno: () => number;
}

let libc: Libc | undefined;

function load(): Libc {
  if (libc) return libc;
  const require = createRequire(import.meta.url);
  // koffi ships prebuilt binaries in its npm package; no install script is needed.
  const koffi = require('koffi') as {
    load(path: string): { func(sig: string): KoffiFn };
    errno(): number;
  };
  const lib = koffi.load('libc.so.6');
  libc = {
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    setsockopt: lib.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)'),
    getsockopt: lib.func('int getsockopt(int fd, int level, int name, void *val, void *len)'),
    bind: lib.func('int bind(int fd, const void *addr, uint32_t len)'),
    listen: lib.func('int listen(int fd, int backlog)'),
    close: lib.func('int close(int fd)'),
    errno: () => koffi.errno(),
  };
  return libc;
}

const ERRNO_NAMES = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, num]) => [num, name]),
);

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
