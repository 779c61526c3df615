// Wire format between the UDP receive worker (udp-worker.ts) and the main thread: one
// transferred ArrayBuffer per recvmmsg batch. Pure, so it is unit-tested without sockets.
//   per datagram: u32 payloadLen | u8 nameLen | u8 controlLen | u8 flags | u8 0 | name | control | payload
import { decodeSlot, type RawSlot, type RecvBatchLayout, type ReceivedDatagram } from './udp-msg.js';

export interface WorkerInit {
  fds: number[];
  batch: number;
  slotSize: number;
  /** Int32 [0]: stop flag (main → worker); [1]: batches posted and not yet consumed. */
  control: SharedArrayBuffer;
  maxInflight: number;
}

const HEAD = 8;
const F_TRUNC = 1;
const F_CTRUNC = 2;

/** Pack the first `n` slots of a batch layout (raw: decoding happens on the main thread). */
export function encodeWorkerBatch(layout: RecvBatchLayout, n: number): ArrayBuffer {
  const items: RawSlot[] = [];
  let size = 0;
  for (let i = 0; i < n; i++) {
    const r = layout.raw(i);
    items.push(r);
    size += HEAD + r.name.length + r.control.length + r.payload.length;
  }
  const out = Buffer.from(new ArrayBuffer(size));
  let off = 0;
  for (const r of items) {
    out.writeUInt32LE(r.payload.length, off);
    out[off + 4] = r.name.length;
    out[off + 5] = r.control.length;
    out[off + 6] = (r.truncated ? F_TRUNC : 0) | (r.controlTruncated ? F_CTRUNC : 0);
    out[off + 7] = 0;
    off += HEAD;
    off += r.name.copy(out, off);
    off += r.control.copy(out, off);
    off += r.payload.copy(out, off);
  }
  return out.buffer as ArrayBuffer;
}

/** Unpack a batch; payloads are views into `b` (a fresh buffer per batch). */
export function* decodeWorkerBatch(b: Buffer): Generator<ReceivedDatagram> {
  let off = 0;
  while (off + HEAD <= b.length) {
    const len = b.readUInt32LE(off);
    const nameLen = b[off + 4]!;
    const controlLen = b[off + 5]!;
    const flags = b[off + 6]!;
    off += HEAD;
    const name = b.subarray(off, off + nameLen);
    off += nameLen;
    const control = b.subarray(off, off + controlLen);
    off += controlLen;
    const payload = b.subarray(off, off + len);
    off += len;
    yield decodeSlot(
      { name, control, payload, truncated: (flags & F_TRUNC) !== 0, controlTruncated: (flags & F_CTRUNC) !== 0 },
      false,
    );
  }
}
