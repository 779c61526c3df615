// Pure layout code for recvmmsg(2): the `struct mmsghdr` vector a batch receive fills in,
// and the control-message (cmsg) walk that finds IP_ORIGDSTADDR / IPV6_ORIGDSTADDR.
// No syscalls here: the caller supplies buffer addresses, so the unit tests use fake ones.
//
// Layouts are those of 64-bit Linux (LP64: x64, arm64, riscv64, loong64, ppc64le, s390x is
// big-endian and rejected): pointers and size_t are 8 bytes, little-endian.
import { decodeSockaddr, type Endpoint } from './sockaddr.js';
import { IP_ORIGDSTADDR, IPV6_ORIGDSTADDR, MSG_CTRUNC, MSG_TRUNC, SOL_IP, SOL_IPV6 } from './linux.js';

// struct msghdr { void *name; socklen_t namelen; struct iovec *iov; size_t iovlen;
//                 void *control; size_t controllen; int flags; }           56 bytes
// struct mmsghdr { struct msghdr hdr; unsigned int len; }                   64 bytes
// struct iovec { void *base; size_t len; }                                  16 bytes
// struct cmsghdr { size_t len; int level; int type; data[] }  data at 16, CMSG_ALIGN = 8
export const MSG_NAME = 0;
export const MSG_NAMELEN = 8;
export const MSG_IOV = 16;
export const MSG_IOVLEN = 24;
export const MSG_CONTROL = 32;
export const MSG_CONTROLLEN = 40;
export const MSG_FLAGS = 48;
export const MMSG_LEN = 56;
export const MMSGHDR_SIZE = 64;
export const IOVEC_SIZE = 16;
export const CMSGHDR_SIZE = 16;

/** Room for one sockaddr_in6 (28) rounded up. */
export const NAME_SLOT = 32;
/** Room for IP(V6)_ORIGDSTADDR (CMSG_SPACE(28) = 48) plus one more small cmsg. */
export const CONTROL_SLOT = 128;
/** Largest UDP payload (65535 − 8; IPv6 jumbograms aside). */
export const MAX_DATAGRAM = 65535;

export function assertSupportedAbi(arch: string = process.arch, endianness: 'LE' | 'BE' = leOrBe()): void {
  const lp64 = ['x64', 'arm64', 'riscv64', 'loong64', 'ppc64', 'mips64el'];
  if (!lp64.includes(arch) || endianness !== 'LE') {
    throw new Error(
      `transparent UDP needs a 64-bit little-endian Linux (struct msghdr layout); this is ${arch} ${endianness}`,
    );
  }
}

function leOrBe(): 'LE' | 'BE' {
  return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 'LE' : 'BE';
}

/**
 * The buffers of one batch receive: `count` slots, each with its own sockaddr, control and
 * payload area, plus the mmsghdr and iovec vectors pointing at them. Memory is allocated
 * once and reused for every batch (untouched payload pages are never resident).
 */
export class RecvBatchLayout {
  readonly vec: Buffer;
  readonly iov: Buffer;
  readonly names: Buffer;
  readonly controls: Buffer;
  readonly data: Buffer;

  constructor(
    readonly count: number,
    readonly slotSize: number,
    /** Address of a buffer's first byte (koffi.address in production). */
    addressOf: (b: Buffer) => bigint,
    alloc: (n: number) => Buffer = (n) => Buffer.alloc(n),
  ) {
    this.vec = alloc(count * MMSGHDR_SIZE);
    this.iov = alloc(count * IOVEC_SIZE);
    this.names = alloc(count * NAME_SLOT);
    this.controls = alloc(count * CONTROL_SLOT);
    // Payload area: not zeroed (a datagram only ever exposes the bytes the kernel wrote).
    this.data = Buffer.allocUnsafeSlow(count * slotSize);
    const iovAddr = addressOf(this.iov);
    const namesAddr = addressOf(this.names);
    const controlsAddr = addressOf(this.controls);
    const dataAddr = addressOf(this.data);
    for (let i = 0; i < count; i++) {
      this.iov.writeBigUInt64LE(dataAddr + BigInt(i * slotSize), i * IOVEC_SIZE);
      this.iov.writeBigUInt64LE(BigInt(slotSize), i * IOVEC_SIZE + 8);
      const m = i * MMSGHDR_SIZE;
      this.vec.writeBigUInt64LE(namesAddr + BigInt(i * NAME_SLOT), m + MSG_NAME);
      this.vec.writeBigUInt64LE(iovAddr + BigInt(i * IOVEC_SIZE), m + MSG_IOV);
      this.vec.writeBigUInt64LE(1n, m + MSG_IOVLEN);
      this.vec.writeBigUInt64LE(controlsAddr + BigInt(i * CONTROL_SLOT), m + MSG_CONTROL);
    }
    this.reset(count);
  }

  /** Restore the in/out lengths the kernel overwrites, for the first `n` slots. */
  reset(n: number): void {
    for (let i = 0; i < n; i++) {
      const m = i * MMSGHDR_SIZE;
      this.vec.writeUInt32LE(NAME_SLOT, m + MSG_NAMELEN);
      this.vec.writeUInt32LE(CONTROL_SLOT, m + MSG_CONTROLLEN); // a size_t: no BigInt per slot per batch
      this.vec.writeUInt32LE(0, m + MSG_CONTROLLEN + 4);
      this.vec.writeInt32LE(0, m + MSG_FLAGS);
      this.vec.writeUInt32LE(0, m + MMSG_LEN);
    }
  }

  /** Slot `i` after recvmmsg returned more than `i` messages, as views into the batch. */
  raw(i: number): RawSlot {
    const m = i * MMSGHDR_SIZE;
    const len = this.vec.readUInt32LE(m + MMSG_LEN);
    const nameLen = Math.min(this.vec.readUInt32LE(m + MSG_NAMELEN), NAME_SLOT);
    const controlLen = Math.min(Number(this.vec.readBigUInt64LE(m + MSG_CONTROLLEN)), CONTROL_SLOT);
    const flags = this.vec.readInt32LE(m + MSG_FLAGS);
    const start = i * this.slotSize;
    return {
      name: this.names.subarray(i * NAME_SLOT, i * NAME_SLOT + nameLen),
      control: this.controls.subarray(i * CONTROL_SLOT, i * CONTROL_SLOT + controlLen),
      payload: this.data.subarray(start, start + Math.min(len, this.slotSize)),
      truncated: (flags & MSG_TRUNC) !== 0 || len > this.slotSize,
      controlTruncated: (flags & MSG_CTRUNC) !== 0,
    };
  }

  /** Decode slot `i`; the payload is copied (the slot is overwritten by the next batch). */
  read(i: number): ReceivedDatagram {
    return decodeSlot(this.raw(i), true);
  }
}

export interface RawSlot {
  name: Buffer;
  control: Buffer;
  payload: Buffer;
  truncated: boolean;
  controlTruncated: boolean;
}

export function decodeSlot(r: RawSlot, copy: boolean): ReceivedDatagram {
  return {
    src: r.name.length >= 16 ? decodeSockaddr(r.name) : undefined,
    origDst: findOrigDst(r.control),
    payload: copy ? Buffer.from(r.payload) : r.payload,
    truncated: r.truncated,
    controlTruncated: r.controlTruncated,
  };
}

export interface ReceivedDatagram {
  src: Endpoint | undefined;
  origDst: Endpoint | undefined;
  payload: Buffer;
  /** The datagram was larger than the slot (MSG_TRUNC): payload is incomplete. */
  truncated: boolean;
  controlTruncated: boolean;
}

export interface Cmsg {
  level: number;
  type: number;
  data: Buffer;
}

const align8 = (n: number) => (n + 7) & ~7;

/** Walk a control buffer (msg_control, msg_controllen bytes) like CMSG_FIRSTHDR/CMSG_NXTHDR. */
export function parseCmsgs(control: Buffer): Cmsg[] {
  const out: Cmsg[] = [];
  let off = 0;
  while (off + CMSGHDR_SIZE <= control.length) {
    const len = Number(control.readBigUInt64LE(off));
    if (len < CMSGHDR_SIZE || off + len > control.length) break; // malformed or truncated
    out.push({
      level: control.readInt32LE(off + 8),
      type: control.readInt32LE(off + 12),
      data: control.subarray(off + CMSGHDR_SIZE, off + len),
    });
    off += align8(len);
  }
  return out;
}

/** The original destination of a TPROXYed datagram, from its control messages. */
export function findOrigDst(control: Buffer): Endpoint | undefined {
  for (const c of parseCmsgs(control)) {
    if (
      (c.level === SOL_IP && c.type === IP_ORIGDSTADDR && c.data.length >= 16) ||
      (c.level === SOL_IPV6 && c.type === IPV6_ORIGDSTADDR && c.data.length >= 28)
    ) {
      return decodeSockaddr(c.data);
    }
  }
  return undefined;
}

/** Build one cmsg (CMSG_SPACE-padded): for tests and for composing sendmsg control data. */
export function encodeCmsg(level: number, type: number, data: Buffer): Buffer {
  const len = CMSGHDR_SIZE + data.length;
  const b = Buffer.alloc(align8(len));
  b.writeBigUInt64LE(BigInt(len), 0);
  b.writeInt32LE(level, 8);
  b.writeInt32LE(type, 12);
  data.copy(b, CMSGHDR_SIZE);
  return b;
}
