// Shared pieces of the fuzz targets: bounded fast-check parameters, the committed corpus
// (replayed before the random runs), and chunkings of a byte string.
//
// Knobs (environment): FUZZ_SEED=<n>|random (default: a fixed seed, so CI is reproducible),
// FUZZ_SCALE=<k> multiplies the number of runs and the time cap (long local campaigns:
// FUZZ_SEED=random FUZZ_SCALE=50). A failure prints fast-check's seed and path to replay it;
// add the shrunk input to test/fuzz/corpus/<target>/ when it was a real bug.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';

export { fc };

const CORPUS_ROOT = fileURLToPath(new URL('./corpus/', import.meta.url));
const SCALE = Number(process.env.FUZZ_SCALE ?? 1) || 1;
const SEED = process.env.FUZZ_SEED === 'random' ? undefined : Number(process.env.FUZZ_SEED ?? 0x7a11) | 0;

/** Wall-clock budget of one target file (each file imports this module once). */
const FILE_BUDGET_MS = 9000 * SCALE;
const fileDeadline = Date.now() + FILE_BUDGET_MS;

/**
 * fast-check parameters for one property: `numRuns` (scaled) and a time cap — the smaller of
 * `timeCapMs` and what is left of the file's 9-second budget — so a target stays inside its
 * CI budget on a slow machine (an interrupted run passes: it found nothing in the time).
 * Call it right before fc.assert (inside the test), so the budget is measured then.
 */
export function params<T>(numRuns: number, timeCapMs = 5000): fc.Parameters<T> {
  const left = fileDeadline - Date.now();
  return {
    numRuns: Math.max(1, Math.round(numRuns * SCALE)),
    ...(SEED === undefined ? {} : { seed: SEED }),
    interruptAfterTimeLimit: Math.max(300, Math.min(timeCapMs * SCALE, left)),
    markInterruptAsFailure: false,
  };
}

export interface CorpusEntry {
  name: string;
  data: Buffer;
}

/** The committed inputs of one target (test/fuzz/corpus/<target>/*), sorted by name. */
export function corpus(target: string): CorpusEntry[] {
  const dir = join(CORPUS_ROOT, target);
  let names: string[];
  try {
    names = readdirSync(dir)
      .filter((n) => !n.startsWith('.') && n !== 'README.md')
      .sort();
  } catch {
    return [];
  }
  return names.map((name) => ({ name, data: readFileSync(join(dir, name)) }));
}

/** Cut `b` at the given offsets (taken modulo its length); each piece is a fresh copy. */
export function splitAt(b: Buffer, cuts: readonly number[]): Buffer[] {
  if (b.length === 0) return [];
  const points = [...new Set(cuts.map((c) => c % b.length).filter((c) => c > 0))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, b.length]) {
    out.push(Buffer.from(b.subarray(prev, p)));
    prev = p;
  }
  return out;
}

/** Chunkings used on every corpus entry: whole, byte by byte, and a few fixed sizes. */
export function fixedChunkings(b: Buffer): Buffer[][] {
  const bySize = (n: number): Buffer[] => {
    const out: Buffer[] = [];
    for (let i = 0; i < b.length; i += n) out.push(Buffer.from(b.subarray(i, i + n)));
    return out;
  };
  return [[Buffer.from(b)], bySize(1), bySize(2), bySize(7), bySize(64), bySize(1000)];
}

/** Arbitrary cut offsets (for splitAt). */
export const cutsArb = fc.array(fc.nat({ max: 1 << 16 }), { maxLength: 12 });

/** Bytes, mostly short, sometimes long. */
export const bytesArb = (maxLength = 512): fc.Arbitrary<Buffer> =>
  fc.oneof(fc.uint8Array({ maxLength }), fc.uint8Array({ maxLength, size: 'max' })).map((u) => Buffer.from(u));

/**
 * Mutations of a seed input: byte flips, insertions of interesting fragments, deletions,
 * truncation. Good at reaching deep parser states that uniform random bytes never reach.
 */
export function mutated(seed: Buffer, fragments: readonly string[] = []): fc.Arbitrary<Buffer> {
  const frag = fragments.length
    ? fc.constantFrom(...fragments.map((f) => Buffer.from(f, 'latin1')))
    : fc.constant(Buffer.alloc(0));
  const op = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), frag }),
    fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 16 }) }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  );
  return fc.array(op, { minLength: 1, maxLength: 6 }).map((ops) => {
    let b = Buffer.from(seed);
    for (const o of ops) {
      const at = b.length ? o.at % (b.length + 1) : 0;
      if (o.kind === 'flip' && b.length) b[at % b.length] = o.byte;
      else if (o.kind === 'insert') b = Buffer.concat([b.subarray(0, at), o.frag, b.subarray(at)]);
      else if (o.kind === 'delete') b = Buffer.concat([b.subarray(0, at), b.subarray(at + o.len)]);
      else if (o.kind === 'truncate') b = b.subarray(0, at);
    }
    return Buffer.from(b);
  });
}
