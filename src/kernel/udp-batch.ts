// A UDP server socket that answers in batches, for the DNS forwarder: recvmmsg(2) drains up
// to 32 datagrams a call when the event loop reports the fd readable (koffi's uv_poll, as
// the transparent UDP listener does), the answers the handler gives at once go back in one
// sendmmsg(2), later ones with sendto(2). Per query that is no libuv request, no callback
// and no RemoteInfo object: what keeps Node's dgram at a third of dnsmasq's rate.
import {
  addressOf,
  errnoName,
  hasEventLoopPoll,
  pollReadable,
  rawConnect,
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
  MSG_TRUNC,
  SHUT_RDWR,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOL_IPV6,
  SOL_SOCKET,
  SO_MARK,
} from './linux.js';
import { decodeSockaddr, encodeSockaddr } from './sockaddr.js';
import { SyscallError } from '../errors.js';
import {
  IOVEC_SIZE,
  MMSGHDR_SIZE,
  MSG_IOV,
  MSG_IOVLEN,
  MMSG_LEN,
  MSG_FLAGS,
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
  /** After each wake-up's datagrams were handled (e.g. to flush what they queued elsewhere). */
  onDrained?: () => void;
}

export interface BatchUdpSocket {
  readonly port: number;
  /** Send `payload` to `to` (a raw sockaddr); false when dropped (full socket buffer, error). */
  send(to: Buffer, payload: Buffer): boolean;
  /** Queue `payload` for `to` (both copied); sent by flush(), or at once when the batch is full. */
  queue(to: Buffer, payload: Buffer): void;
  /** Send what queue() holds, in one sendmmsg(2). */
  flush(): void;
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
  /** Address of each receive slot's sockaddr, as low and high 32-bit halves (no BigInt per answer). */
  private readonly nameLo: number[];
  private readonly nameHi: number[];
  readonly vecAddr: bigint;
  count = 0;

  constructor(namesAddr: bigint) {
    this.dataAddr = addressOf(this.data);
    this.vecAddr = addressOf(this.vec);
    const nameAddrs = Array.from({ length: BATCH }, (_, i) => namesAddr + BigInt(i * NAME_SLOT));
    this.nameLo = nameAddrs.map((a) => Number(a & 0xffffffffn));
    this.nameHi = nameAddrs.map((a) => Number(a >> 32n));
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
    this.vec.writeUInt32LE(nameLen === 0 ? 0 : this.nameLo[slot]!, m + MSG_NAME); // 0: connected
    this.vec.writeUInt32LE(nameLen === 0 ? 0 : this.nameHi[slot]!, m + MSG_NAME + 4);
    this.vec.writeUInt32LE(nameLen, m + MSG_NAMELEN);
  }
}

/**
 * sendmmsg(2) of the prepared batch from message `from` on; a failing message is skipped
 * (sendmmsg stops at it and reports it on the next call), a full socket buffer drops the rest
 * as UDP would. Returns how many were handed to the kernel.
 */
function sendBatch(
  fd: number,
  vecAddr: bigint,
  count: number,
  onError: (message: string, errno: number) => void,
): number {
  let sent = 0;
  for (let at = 0; at < count; ) {
    const n = sysSendmmsg(fd, vecAddr + BigInt(at * MMSGHDR_SIZE), count - at, MSG_DONTWAIT);
    if (n > 0) {
      at += n;
      sent += n;
    } else if (n === -EAGAIN || n === 0) break;
    else {
      onError(`sendmmsg: errno ${-n}`, -n);
      at++;
    }
  }
  return sent;
}

/** Answers sent later than their query's batch: destinations copied into the batch's own names. */
class LaterBatch {
  private readonly names = Buffer.alloc(BATCH * NAME_SLOT);
  readonly batch = new SendBatch(addressOf(this.names));

  add(to: Buffer, payload: Buffer): void {
    const i = this.batch.count;
    const len = Math.min(to.length, NAME_SLOT);
    to.copy(this.names, i * NAME_SLOT, 0, len);
    this.batch.add(i, len, payload);
  }
}

export function openBatchUdpSocket(o: BatchUdpOptions): BatchUdpSocket {
  const fd = boundSocket(o);
  const port = decodeSockaddr(sysGetsockname(fd)).port;
  const recv = new RecvBatchLayout(BATCH, RECV_SLOT, addressOf);
  const recvAddr = addressOf(recv.vec);
  const send = new SendBatch(addressOf(recv.names));
  const later = new LaterBatch();
  let closed = false;
  const flush = () => {
    sendBatch(fd, send.vecAddr, send.count, o.onError);
    send.count = 0;
  };
  const flushLater = () => {
    const b = later.batch;
    if (b.count > 0 && !closed) sendBatch(fd, b.vecAddr, b.count, o.onError);
    b.count = 0;
  };
  const answerSlot = (i: number) => {
    // recv.raw(i) without its control view and object: this runs once per query.
    const m = i * MMSGHDR_SIZE;
    const len = recv.vec.readUInt32LE(m + MMSG_LEN);
    const nameLen = Math.min(recv.vec.readUInt32LE(m + MSG_NAMELEN), NAME_SLOT);
    if (len > RECV_SLOT || (recv.vec.readInt32LE(m + MSG_FLAGS) & MSG_TRUNC) !== 0 || nameLen < 16) return;
    const name = recv.names.subarray(i * NAME_SLOT, i * NAME_SLOT + nameLen);
    const answer = o.onDatagram(recv.data.subarray(i * RECV_SLOT, i * RECV_SLOT + len), name);
    if (!answer) return;
    if (answer.length <= SEND_SLOT) send.add(i, nameLen, answer);
    else sysSendto(fd, answer, MSG_DONTWAIT, Buffer.from(name));
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
        o.onDrained?.();
      } catch (e) {
        o.onError((e as Error).message);
      }
    },
    (status) => o.onError(`poll error ${status}`),
  );
  return {
    port,
    send: (to, payload) => !closed && sysSendto(fd, payload, MSG_DONTWAIT, to) >= 0,
    queue: (to, payload) => {
      if (closed) return;
      if (payload.length > SEND_SLOT) {
        sysSendto(fd, payload, MSG_DONTWAIT, to);
        return;
      }
      later.add(to, payload);
      if (later.batch.count === BATCH) flushLater();
    },
    flush: flushLater,
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

/** Largest answer read by a client socket; a bigger one is reported truncated. */
const CLIENT_RECV_SLOT = 4096;
/** Largest datagram a client socket queues (DNS queries are under 300 bytes). */
const CLIENT_SEND_SLOT = SEND_SLOT;

export interface BatchUdpClientOptions {
  family: 4 | 6;
  /** The peer: the socket is connect(2)ed, so only its datagrams arrive and ICMP errors are reported. */
  host: string;
  port: number;
  /** SO_MARK (needs CAP_NET_ADMIN). */
  mark?: number;
  /** One datagram, a view valid during the call; `truncated`: it was longer than the slot. */
  onDatagram: (payload: Buffer, truncated: boolean) => void;
  /** After each wake-up's datagrams were handled. */
  onDrained?: () => void;
  /**
   * A receive or send error, e.g. code 'ECONNREFUSED' (ICMP port unreachable); 'EPOLL': the
   * socket no longer receives (close it).
   */
  onError: (code: string, message: string) => void;
}

export interface BatchUdpClient {
  /** The local port (random, from the kernel). */
  readonly port: number;
  /** Queue a datagram (copied) for the peer; sent by flush(), or at once when the batch is full. */
  queue(payload: Buffer): void;
  /** Send what queue() holds, in one sendmmsg(2). */
  flush(): void;
  close(): void;
}

function connectedSocket(o: BatchUdpClientOptions): number {
  const fd = sysSocket(o.family === 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC);
  try {
    if (o.mark) sysSetsockoptInt(fd, SOL_SOCKET, SO_MARK, o.mark, 'SO_MARK (needs CAP_NET_ADMIN)');
    const peer = encodeSockaddr({ address: o.host, port: o.port });
    const r = rawConnect(fd, addressOf(peer), peer.length);
    if (r < 0) throw new SyscallError('connect', -r, errnoName(-r), `udp ${o.host}:${o.port}`);
    return fd;
  } catch (e) {
    sysClose(fd);
    throw e;
  }
}

/**
 * A connected UDP socket driven in batches: datagrams from the peer read with recvmmsg(2) when
 * the event loop reports it readable, datagrams to it queued and sent with one sendmmsg(2).
 */
export function openBatchUdpClient(o: BatchUdpClientOptions): BatchUdpClient {
  const fd = connectedSocket(o);
  const port = decodeSockaddr(sysGetsockname(fd)).port;
  const recv = new RecvBatchLayout(BATCH, CLIENT_RECV_SLOT, addressOf);
  const recvAddr = addressOf(recv.vec);
  const send = new SendBatch(0n);
  let closed = false;
  const onSendError = (message: string, errno: number) => o.onError(errnoName(errno), message);
  const flush = () => {
    if (send.count > 0 && !closed) sendBatch(fd, send.vecAddr, send.count, onSendError);
    send.count = 0;
  };
  const drainOnce = (): number => {
    let n: number;
    try {
      n = sysRecvmmsg(fd, recvAddr, BATCH, MSG_DONTWAIT);
    } catch (e) {
      o.onError(e instanceof SyscallError ? e.code : 'ERECV', (e as Error).message);
      return -1;
    }
    try {
      for (let i = 0; i < n && !closed; i++) {
        const r = recv.raw(i);
        o.onDatagram(r.payload, r.truncated);
      }
    } finally {
      recv.reset(n);
    }
    return n;
  };
  const poller = pollReadable(
    fd,
    () => {
      try {
        for (let b = 0; b < MAX_BATCHES_PER_WAKE && !closed; b++) {
          const n = drainOnce();
          if (n >= 0 && n < BATCH) break; // after an error, read on: more may be queued
        }
        o.onDrained?.();
      } catch (e) {
        o.onError('EHANDLER', (e as Error).message);
      }
    },
    (status) => {
      // libuv stops a poll on POLLERR (an ICMP error queued on the socket): read that error,
      // then report the socket dead.
      if (!closed) drainOnce();
      o.onError('EPOLL', `poll error ${status}`);
    },
  );
  return {
    port,
    queue: (payload) => {
      if (closed || payload.length > CLIENT_SEND_SLOT) return;
      send.add(send.count, 0, payload);
      if (send.count === BATCH) flush();
    },
    flush,
    close: () => {
      if (closed) return;
      closed = true;
      poller.close();
      sysClose(fd);
      recv.reset(0);
    },
  };
}
