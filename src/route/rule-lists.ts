// How a generation's rules cross to the data plane: every distinct domain list is packed once
// into one byte buffer (its compiled typed arrays, see packed.ts), and the rules carry small
// references into it; the data plane reads the bytes and uses the arrays as they are.
import { DomainList, type DomainListRef } from './domain-list.js';
import { packedPieces, unpackArrays } from './packed.js';
import type { RuleSpec } from './router.js';

export interface PackedRuleLists {
  /** The rules, each domain list replaced by a DomainListRef (plain data: JSON carries it). */
  rules: RuleSpec[];
  /** Bytes the lists take packed; 0 when no rule has a list. */
  length: number;
  /** Hands over the packed bytes piece by piece (views of the lists' arrays, no copy) with their offsets. */
  write(to: (piece: Uint8Array, offset: number) => void): void;
}

const asArray = <T>(v: T | readonly T[]): readonly T[] => (Array.isArray(v) ? v : [v as T]);

/** The rules with their domain lists packed (a list several rules share, once). */
export function packRuleLists(rules: readonly RuleSpec[]): PackedRuleLists {
  const refs = new Map<DomainList, DomainListRef>();
  const pieces: [Uint8Array, number][] = [];
  let total = 0;
  for (const r of rules) {
    for (const v of asArray(r.domainList ?? [])) {
      if (!(v instanceof DomainList) || refs.has(v)) continue;
      const packed = packedPieces(v.arrays());
      for (const [piece, at] of packed.pieces) pieces.push([piece, total + at]);
      refs.set(v, { source: v.source, offset: total, length: packed.length });
      total += packed.length;
    }
  }
  const packed = rules.map((r) =>
    r.domainList === undefined
      ? r
      : { ...r, domainList: asArray(r.domainList).map((v) => (v instanceof DomainList ? refs.get(v)! : v)) },
  );
  return {
    rules: packed,
    length: total,
    write: (to) => {
      for (const [piece, at] of pieces) to(piece, at);
    },
  };
}

/** The packed bytes in one buffer (tests, and anything not going through a file). */
export function packedBytes(p: PackedRuleLists): Uint8Array {
  const out = new Uint8Array(p.length);
  p.write((piece, at) => out.set(piece, at));
  return out;
}

/**
 * The rules with every reference into `bytes` (packRuleLists) made a DomainList again:
 * views into `bytes`, nothing copied or rebuilt; one DomainList per packed list.
 * Throws TypeError when a reference does not fit the bytes.
 */
export function reviveRuleLists(rules: readonly RuleSpec[], bytes: Uint8Array): RuleSpec[] {
  const seen = new Map<number, DomainList>();
  const revive = (v: DomainList | DomainListRef): DomainList => {
    if (v instanceof DomainList) return v;
    let dl = seen.get(v.offset);
    if (!dl) {
      if (!(v.offset >= 0 && v.length > 0 && v.offset + v.length <= bytes.length))
        throw new TypeError(`domain list ${v.source}: outside the packed lists`);
      dl = DomainList.fromArrays(v.source, unpackArrays(bytes.subarray(v.offset, v.offset + v.length)));
      seen.set(v.offset, dl);
    }
    return dl;
  };
  return rules.map((r) => (r.domainList === undefined ? r : { ...r, domainList: asArray(r.domainList).map(revive) }));
}
