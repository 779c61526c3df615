// Typed arrays laid out in one byte buffer and read back as views into it (no copy, nothing
// rebuilt): how a compiled domain list crosses to the data plane.
//
//   u32 count, then per array: u32 kind, u32 length (elements); each array's data follows,
//   starting at a multiple of 8 bytes from the buffer's start.

export type PackedArray = Uint8Array | Uint16Array | Uint32Array | Int32Array;

const KINDS = [Uint8Array, Uint16Array, Uint32Array, Int32Array] as const;

function kindOf(a: PackedArray): number {
  const k = KINDS.findIndex((K) => a instanceof K);
  if (k < 0) throw new TypeError('packed arrays: not a supported typed array');
  return k;
}

const align8 = (n: number) => (n + 7) & ~7;

/** Where each piece of `arrays` goes when packed: the header, then each array's bytes. */
export function packedPieces(arrays: readonly PackedArray[]): { length: number; pieces: [Uint8Array, number][] } {
  const header = new Uint8Array(align8(4 + 8 * arrays.length));
  const head = new DataView(header.buffer);
  head.setUint32(0, arrays.length, true);
  const pieces: [Uint8Array, number][] = [[header, 0]];
  let at = header.length;
  arrays.forEach((a, i) => {
    head.setUint32(4 + 8 * i, kindOf(a), true);
    head.setUint32(8 + 8 * i, a.length, true);
    pieces.push([new Uint8Array(a.buffer, a.byteOffset, a.byteLength), at]);
    at = align8(at + a.byteLength);
  });
  return { length: at, pieces };
}

/** The arrays packArrays wrote into `buf` (views into it); throws TypeError when they do not fit. */
export function unpackArrays(buf: Uint8Array): PackedArray[] {
  const bad = () => new TypeError('packed arrays: truncated or malformed');
  if ((buf.byteOffset & 7) !== 0 || buf.length < 4) throw bad();
  const head = new DataView(buf.buffer, buf.byteOffset, buf.length);
  const count = head.getUint32(0, true);
  if (count > 64 || buf.length < 4 + 8 * count) throw bad();
  const out: PackedArray[] = [];
  let data = align8(4 + 8 * count);
  for (let i = 0; i < count; i++) {
    const K = KINDS[head.getUint32(4 + 8 * i, true)];
    const length = head.getUint32(8 + 8 * i, true);
    if (!K || data + length * K.BYTES_PER_ELEMENT > buf.length) throw bad();
    out.push(new K(buf.buffer as ArrayBuffer, buf.byteOffset + data, length));
    data = align8(data + length * K.BYTES_PER_ELEMENT);
  }
  return out;
}
