// A UDP server socket that answers in batches, for the DNS forwarder: recvmmsg(2) drains up
// to 32 datagrams a call when the event loop reports the fd readable (koffi's uv_poll, as
// the transparent UDP listener does), the answers the handler gives at once go back in one
// sendmmsg(2), later ones with sendto(2). Per query that is no libuv request, no callback
// and no RemoteInfo object: what keeps Node's dgram at a third of dnsmasq's rate.
import {
  addressOf,
  hasEventLoopPoll,
  pollReadable,
  sysBind,
  sysClose,
  sysGetsockname,
  sysRecvmmsg,
  sysSendmmsg,
  sysSendto,
  sysSetsockoptInt,
  sysShutdown,
  sysSocket,
} from './ffi.js';
import {
  AF_INET,
  AF_INET6,
  EAGAIN,
  IPV6_V6ONLY,
  MSG_DONTWAIT,
  SHUT_RDWR,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOL_IPV6,
} from './linux.js';
import { decodeSockaddr, encodeSockaddr } from './sockaddr.js';
import {
  IOVEC_SIZE,
  MMSGHDR_SIZE,
  MSG_IOV,
  MSG_IOVLEN,
  MSG_NAME,
  MSG_NAMELEN,
  NAME_SLOT,
  RecvBatchLayout,
  assertSupportedAbi,
} from './udp-msg.js';

const BATCH = 32;
const MAX_BATCHES_PER_WAKE = 16;
/** Largest query read (bigger ones are truncated: MSG_TRUNC, dropped). */
const RECV_SLOT = 4096;
/** Answers up to this size go out in the batch; bigger ones alone with sendto. */
const SEND_SLOT = 4096;

export interface BatchUdpOptions {
  family: 4 | 6;
  address: string;
  port: number;
  ipv6Only?: boolean;
  /**
   * One datagram: `payload` and `from` (a raw sockaddr) are views into the batch, valid during
   * the call only (copy them to answer later with send()). Return the answer to send now.
   */
  onDatagram: (payload: Buffer, from: Buffer) => Buffer | undefined;
  onError: (message: string) => void;
}

export interface BatchUdpSocket {
  readonly port: number;
  /** Send `payload` to `to` (a raw sockaddr); false when dropped (full socket buffer, error). */
  send(to: Buffer, payload: Buffer): boolean;
  close(): void;
}

/** True when batches can be driven from the event loop (koffi ≥ 2.15 on 64-bit Linux). */
export function batchUdpAvailable(): boolean {
  try {
    assertSupportedAbi();
    return hasEventLoopPoll();
  } catch {
    return false;
  }
}

function boundSocket(o: BatchUdpOptions): number {
  const fd = sysSocket(o.family === 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC);
  try {
    if (o.family === 6) sysSetsockoptInt(fd, SOL_IPV6, IPV6_V6ONLY, o.ipv6Only ? 1 : 0, 'IPV6_V6ONLY');
    sysBind(fd, encodeSockaddr({ address: o.address, port: o.port }), `udp ${o.address}:${o.port}`);
    return fd;
  } catch (e) {
    sysClose(fd);
    throw e;
  }
}

/** The sendmmsg side: one slot per answer, msg_name pointing at the query's own source slot. */
class SendBatch {
  readonly vec = Buffer.alloc(BATCH * MMSGHDR_SIZE);
  private readonly iov = Buffer.alloc(BATCH * IOVEC_SIZE);
  private readonly data = Buffer.allocUnsafeSlow(BATCH * SEND_SLOT);
  private readonly dataAddr: bigint;
  /** Address of each receive slot's sockaddr (BigInts made once, not per answer). */
  private readonly nameAddrs: bigint[];
  readonly vecAddr: bigint;
  count = 0;

  constructor(namesAddr: bigint) {
    this.dataAddr = addressOf(this.data);
    this.vecAddr = addressOf(this.vec);
    this.nameAddrs = Array.from({ length: BATCH }, (_, i) => namesAddr + BigInt(i * NAME_SLOT));
    const iovAddr = addressOf(this.iov);
    for (let i = 0; i < BATCH; i++) {
      this.iov.writeBigUInt64LE(this.dataAddr + BigInt(i * SEND_SLOT), i * IOVEC_SIZE);
      this.vec.writeBigUInt64LE(iovAddr + BigInt(i * IOVEC_SIZE), i * MMSGHDR_SIZE + MSG_IOV);
      this.vec.writeBigUInt64LE(1n, i * MMSGHDR_SIZE + MSG_IOVLEN);
    }
  }

  /** Queue `payload` to the source of received slot `slot` (whose sockaddr is `nameLen` bytes). */
  add(slot: number, nameLen: number, payload: Buffer): void {
    const i = this.count++;
    payload.copy(this.data, i * SEND_SLOT);
    this.iov.writeUInt32LE(payload.length, i * IOVEC_SIZE + 8); // iov_len: the high half stays 0
    const m = i * MMSGHDR_SIZE;
    this.vec.writeBigUInt64LE(this.nameAddrs[slot]!, m + MSG_NAME);
    this.vec.writeUInt32LE(nameLen, m + MSG_NAMELEN);
  }
}

export function openBatchUdpSocket(o: BatchUdpOptions): BatchUdpSocket {
  const fd = boundSocket(o);
  const port = decodeSockaddr(sysGetsockname(fd)).port;
  const recv = new RecvBatchLayout(BATCH, RECV_SLOT, addressOf);
  const recvAddr = addressOf(recv.vec);
  const send = new SendBatch(addressOf(recv.names));
  let closed = false;
  const flush = () => {
    // sendmmsg stops at the first message that fails (reported by the next call, which then
    // sends nothing): skip that one and go on. A full socket buffer drops the rest, as UDP would.
    for (let sent = 0; sent < send.count; ) {
      const n = sysSendmmsg(fd, send.vecAddr + BigInt(sent * MMSGHDR_SIZE), send.count - sent, MSG_DONTWAIT);
      if (n > 0) sent += n;
      else if (n === -EAGAIN || n === 0) break;
      else {
        o.onError(`sendmmsg: errno ${-n}`);
        sent++;
      }
    }
    send.count = 0;
  };
  const answerSlot = (i: number) => {
    const r = recv.raw(i);
    if (r.truncated || r.name.length < 16) return;
    const answer = o.onDatagram(r.payload, r.name);
    if (!answer) return;
    if (answer.length <= SEND_SLOT) send.add(i, r.name.length, answer);
    else sysSendto(fd, answer, MSG_DONTWAIT, Buffer.from(r.name));
  };
  const drain = () => {
    for (let b = 0; b < MAX_BATCHES_PER_WAKE && !closed; b++) {
      const n = sysRecvmmsg(fd, recvAddr, BATCH, MSG_DONTWAIT);
      try {
        for (let i = 0; i < n; i++) answerSlot(i);
        flush(); // before the next recvmmsg overwrites the source addresses
      } finally {
        send.count = 0;
        recv.reset(n); // the kernel overwrote the slots' lengths, even if a handler threw
      }
      if (n < BATCH) return;
    }
  };
  const poller = pollReadable(
    fd,
    () => {
      try {
        drain();
      } catch (e) {
        o.onError((e as Error).message);
      }
    },
    (status) => o.onError(`poll error ${status}`),
  );
  return {
    port,
    send: (to, payload) => !closed && sysSendto(fd, payload, MSG_DONTWAIT, to) >= 0,
    close: () => {
      if (closed) return;
      closed = true;
      poller.close(); // out of epoll before close(2)
      sysShutdown(fd, SHUT_RDWR);
      sysClose(fd);
      recv.reset(0); // keeps the batch buffers referenced until the fd is gone
    },
  };
}
