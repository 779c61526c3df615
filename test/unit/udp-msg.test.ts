// recvmmsg layout and control-message parsing, with fake buffer addresses (no syscalls).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeSockaddr } from '../../src/kernel/sockaddr.js';
import {
  CONTROL_SLOT,
  IOVEC_SIZE,
  MMSGHDR_SIZE,
  MMSG_LEN,
  MSG_CONTROL,
  MSG_CONTROLLEN,
  MSG_FLAGS,
  MSG_IOV,
  MSG_IOVLEN,
  MSG_NAME,
  MSG_NAMELEN,
  NAME_SLOT,
  RecvBatchLayout,
  assertSupportedAbi,
  encodeCmsg,
  findOrigDst,
  parseCmsgs,
} from '../../src/kernel/udp-msg.js';
import { decodeWorkerBatch, encodeWorkerBatch } from '../../src/kernel/udp-worker-protocol.js';
import { IP_ORIGDSTADDR, IPV6_ORIGDSTADDR, MSG_TRUNC, SOL_IP, SOL_IPV6 } from '../../src/kernel/linux.js';

/** Distinct fake addresses per buffer, so pointer arithmetic can be checked. */
function fakeAddresses(): (b: Buffer) => bigint {
  const seen = new Map<Buffer, bigint>();
  return (b) => {
    if (!seen.has(b)) seen.set(b, 0x10_0000_0000n * BigInt(seen.size + 1));
    return seen.get(b)!;
  };
}

/** What the kernel does for slot `i`: write name, control, payload and the lengths. */
function kernelFill(l: RecvBatchLayout, i: number, src: Buffer, control: Buffer, payload: Buffer, flags = 0): void {
  src.copy(l.names, i * NAME_SLOT);
  control.copy(l.controls, i * CONTROL_SLOT);
  payload.copy(l.data, i * l.slotSize, 0, Math.min(payload.length, l.slotSize));
  const m = i * MMSGHDR_SIZE;
  l.vec.writeUInt32LE(src.length, m + MSG_NAMELEN);
  l.vec.writeBigUInt64LE(BigInt(control.length), m + MSG_CONTROLLEN);
  l.vec.writeInt32LE(flags, m + MSG_FLAGS);
  l.vec.writeUInt32LE(payload.length, m + MMSG_LEN);
}

test('this machine has the LP64 little-endian layout the codec assumes; others are refused', () => {
  assertSupportedAbi();
  assert.throws(() => assertSupportedAbi('ia32', 'LE'), /64-bit little-endian/);
  assert.throws(() => assertSupportedAbi('s390x', 'BE'), /64-bit little-endian/);
});

test('IP_ORIGDSTADDR and IPV6_ORIGDSTADDR are found among other control messages', () => {
  const v4 = encodeCmsg(SOL_IP, IP_ORIGDSTADDR, encodeSockaddr({ address: '198.51.100.7', port: 5353 }));
  assert.equal(v4.length, 32, 'CMSG_SPACE(16)');
  assert.equal(v4.readBigUInt64LE(0), 32n, 'cmsg_len = CMSG_LEN(16)');
  const v6 = encodeCmsg(SOL_IPV6, IPV6_ORIGDSTADDR, encodeSockaddr({ address: '2001:db8::7', port: 443 }));
  assert.equal(v6.length, 48, 'CMSG_SPACE(28)');
  assert.equal(v6.readBigUInt64LE(0), 44n, 'cmsg_len = CMSG_LEN(28), padded to 8');
  const ttl = encodeCmsg(SOL_IP, 2 /* IP_TTL */, Buffer.from([64, 0, 0, 0]));

  assert.deepEqual(findOrigDst(v4), { address: '198.51.100.7', port: 5353, family: 4 });
  assert.deepEqual(findOrigDst(Buffer.concat([ttl, v6])), { address: '2001:db8::7', port: 443, family: 6 });
  assert.deepEqual(
    parseCmsgs(Buffer.concat([ttl, v4])).map((c) => [c.level, c.type, c.data.length]),
    [
      [0, 2, 4],
      [0, 20, 16],
    ],
  );
  // Same numbers at the wrong level are not an original destination.
  assert.equal(
    findOrigDst(encodeCmsg(SOL_IPV6, IP_ORIGDSTADDR, encodeSockaddr({ address: '10.0.0.1', port: 1 }))),
    undefined,
  );
  assert.equal(findOrigDst(Buffer.alloc(0)), undefined);
});

test('malformed or truncated control data stops the walk instead of reading past it', () => {
  const v4 = encodeCmsg(SOL_IP, IP_ORIGDSTADDR, encodeSockaddr({ address: '10.0.0.1', port: 53 }));
  assert.equal(findOrigDst(v4.subarray(0, 24)), undefined, 'cut in the middle (MSG_CTRUNC)');
  const zero = Buffer.alloc(32); // cmsg_len 0 would loop forever if trusted
  assert.deepEqual(parseCmsgs(zero), []);
  const huge = Buffer.from(v4);
  huge.writeBigUInt64LE(1000n, 0);
  assert.deepEqual(parseCmsgs(huge), []);
});

test('the mmsghdr vector points every slot at its own name, iovec, payload and control area', () => {
  const addr = fakeAddresses();
  const l = new RecvBatchLayout(4, 2048, addr);
  assert.equal(l.vec.length, 4 * 64);
  for (let i = 0; i < 4; i++) {
    const m = i * MMSGHDR_SIZE;
    assert.equal(l.vec.readBigUInt64LE(m + MSG_NAME), addr(l.names) + BigInt(i * NAME_SLOT));
    assert.equal(l.vec.readUInt32LE(m + MSG_NAMELEN), NAME_SLOT);
    assert.equal(l.vec.readBigUInt64LE(m + MSG_IOV), addr(l.iov) + BigInt(i * IOVEC_SIZE));
    assert.equal(l.vec.readBigUInt64LE(m + MSG_IOVLEN), 1n);
    assert.equal(l.vec.readBigUInt64LE(m + MSG_CONTROL), addr(l.controls) + BigInt(i * CONTROL_SLOT));
    assert.equal(l.vec.readBigUInt64LE(m + MSG_CONTROLLEN), BigInt(CONTROL_SLOT));
    assert.equal(l.iov.readBigUInt64LE(i * IOVEC_SIZE), addr(l.data) + BigInt(i * 2048));
    assert.equal(l.iov.readBigUInt64LE(i * IOVEC_SIZE + 8), 2048n);
  }
});

test('received slots decode to client, original destination and a payload copy; reset restores the lengths', () => {
  const l = new RecvBatchLayout(2, 16, fakeAddresses());
  const ctl = encodeCmsg(SOL_IP, IP_ORIGDSTADDR, encodeSockaddr({ address: '192.0.2.1', port: 53 }));
  kernelFill(l, 0, encodeSockaddr({ address: '10.0.0.2', port: 40000 }), ctl, Buffer.from('query'));
  kernelFill(l, 1, encodeSockaddr({ address: '10.0.0.3', port: 40001 }), ctl, Buffer.alloc(20, 1), MSG_TRUNC);
  const d0 = l.read(0);
  assert.deepEqual(d0.src, { address: '10.0.0.2', port: 40000, family: 4 });
  assert.deepEqual(d0.origDst, { address: '192.0.2.1', port: 53, family: 4 });
  assert.equal(d0.payload.toString(), 'query');
  assert.equal(d0.truncated, false);
  l.data.fill(0);
  assert.equal(d0.payload.toString(), 'query', 'a copy survives the next batch');
  const d1 = l.read(1);
  assert.equal(d1.truncated, true);
  assert.equal(d1.payload.length, 16);

  l.reset(2);
  for (let i = 0; i < 2; i++) {
    assert.equal(l.vec.readUInt32LE(i * MMSGHDR_SIZE + MSG_NAMELEN), NAME_SLOT);
    assert.equal(l.vec.readBigUInt64LE(i * MMSGHDR_SIZE + MSG_CONTROLLEN), BigInt(CONTROL_SLOT));
    assert.equal(l.vec.readUInt32LE(i * MMSGHDR_SIZE + MMSG_LEN), 0);
  }
});

test('worker batches round-trip v4 and v6 datagrams, empty payloads and the truncation flag', () => {
  const l = new RecvBatchLayout(3, 64, fakeAddresses());
  kernelFill(
    l,
    0,
    encodeSockaddr({ address: '10.0.0.2', port: 1 }),
    encodeCmsg(SOL_IP, IP_ORIGDSTADDR, encodeSockaddr({ address: '192.0.2.1', port: 53 })),
    Buffer.from('a'),
  );
  kernelFill(
    l,
    1,
    encodeSockaddr({ address: 'fd00::2', port: 2 }),
    encodeCmsg(SOL_IPV6, IPV6_ORIGDSTADDR, encodeSockaddr({ address: '2001:db8::1', port: 443 })),
    Buffer.alloc(0),
  );
  kernelFill(l, 2, encodeSockaddr({ address: '10.0.0.4', port: 3 }), Buffer.alloc(0), Buffer.alloc(100, 7), MSG_TRUNC);
  const out = [...decodeWorkerBatch(Buffer.from(encodeWorkerBatch(l, 3)))];
  assert.equal(out.length, 3);
  assert.deepEqual(
    [out[0]!.src, out[0]!.origDst, out[0]!.payload.toString()],
    [{ address: '10.0.0.2', port: 1, family: 4 }, { address: '192.0.2.1', port: 53, family: 4 }, 'a'],
  );
  assert.deepEqual(
    [out[1]!.src?.address, out[1]!.origDst, out[1]!.payload.length],
    ['fd00::2', { address: '2001:db8::1', port: 443, family: 6 }, 0],
  );
  assert.deepEqual([out[2]!.origDst, out[2]!.truncated, out[2]!.payload.length], [undefined, true, 64]);
});
