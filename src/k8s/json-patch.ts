// RFC 6902 JSON Patch from the difference of two JSON values. Objects are compared key by
// key; arrays that differ are replaced whole (the admission patch stays short and cannot
// misplace an index when the API server's copy differs in order from ours).
import { isObject } from './types.js';

export type PathSegment = string | number;

export interface PatchOp {
  op: 'add' | 'remove' | 'replace';
  /** Segments; `pointer()` turns them into a JSON Pointer (RFC 6901). */
  path: PathSegment[];
  value?: unknown;
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isObject(a)) {
    if (!isObject(b)) return false;
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]));
  }
  return false;
}

/** The operations that turn `before` into `after`. */
export function diff(before: unknown, after: unknown, base: PathSegment[] = []): PatchOp[] {
  if (deepEqual(before, after)) return [];
  if (!isObject(before) || !isObject(after)) return [{ op: 'replace', path: base, value: after }];
  const ops: PatchOp[] = [];
  for (const k of Object.keys(before)) {
    if (before[k] !== undefined && after[k] === undefined) ops.push({ op: 'remove', path: [...base, k] });
  }
  for (const k of Object.keys(after)) {
    if (after[k] === undefined) continue;
    if (before[k] === undefined) ops.push({ op: 'add', path: [...base, k], value: after[k] });
    else ops.push(...diff(before[k], after[k], [...base, k]));
  }
  return ops;
}

/** RFC 6901: `~` → `~0`, `/` → `~1`. */
export function pointer(path: readonly PathSegment[]): string {
  return path.map((s) => `/${String(s).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');
}

/** The patch as the API server wants it: `[{op, path: "/a/b", value}]`. */
export function toJsonPatch(ops: readonly PatchOp[]): Array<{ op: string; path: string; value?: unknown }> {
  return ops.map((o) =>
    o.op === 'remove' ? { op: o.op, path: pointer(o.path) } : { op: o.op, path: pointer(o.path), value: o.value },
  );
}
