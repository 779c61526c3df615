// What `tranproxy lab up` created, kept in /run/tranproxy/labs/<name>.json so that `down`
// removes exactly that (and restores the root namespace's sysctls), and process logs in
// /run/tranproxy/labs/<name>/. Each resource is plain data: it says how to undo itself.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const STATE_DIR = '/run/tranproxy/labs';

/** One thing `up` did; `netns: null` is the root namespace (where `lab up` runs). */
export type Resource =
  | { kind: 'netns'; netns: string }
  | { kind: 'link'; netns: string | null; name: string; what: string }
  | { kind: 'master'; netns: string | null; name: string }
  | { kind: 'addr'; netns: string | null; dev: string; cidr: string }
  | { kind: 'up'; netns: string | null; dev: string }
  | { kind: 'sysctl'; netns: string | null; key: string; old: string }
  | { kind: 'route'; netns: string | null; family: 4 | 6; args: string[] }
  | { kind: 'nft'; netns: string | null; table: string; old?: string }
  | { kind: 'process'; netns: string; host: string; pid: number; start: string; argv: string[]; log: string };

export interface LabState {
  version: 1;
  name: string;
  /** The lab file `up` was given (absolute). */
  file: string;
  updated: string;
  /** In the order they were made. */
  resources: Resource[];
}

export function statePath(name: string): string {
  return join(STATE_DIR, `${name}.json`);
}

export function logDir(name: string): string {
  return join(STATE_DIR, name);
}

export function readState(name: string): LabState | undefined {
  const p = statePath(name);
  if (!existsSync(p)) return undefined;
  try {
    const s = JSON.parse(readFileSync(p, 'utf8')) as LabState;
    return s && s.version === 1 && Array.isArray(s.resources) ? s : undefined;
  } catch {
    return undefined;
  }
}

export function writeState(state: LabState): void {
  mkdirSync(STATE_DIR, { recursive: true, mode: 0o755 });
  const p = statePath(state.name);
  const tmp = `${p}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ ...state, updated: new Date().toISOString() }, null, 2)}\n`, { mode: 0o644 });
  renameSync(tmp, p);
}

export function removeState(name: string): void {
  rmSync(statePath(name), { force: true });
  rmSync(logDir(name), { recursive: true, force: true });
}

/** Identity of a resource: a newer record of the same thing replaces the older (a sysctl keeps its first old value). */
export function resourceKey(r: Resource): string {
  switch (r.kind) {
    case 'netns':
      return `netns ${r.netns}`;
    case 'link':
    case 'master':
      return `${r.kind} ${r.netns ?? ''} ${r.name}`;
    case 'addr':
      return `addr ${r.netns ?? ''} ${r.dev} ${r.cidr}`;
    case 'up':
      return `up ${r.netns ?? ''} ${r.dev}`;
    case 'sysctl':
      return `sysctl ${r.netns ?? ''} ${r.key}`;
    case 'route':
      return `route ${r.netns ?? ''} ${r.family} ${r.args.join(' ')}`;
    case 'nft':
      return `nft ${r.netns ?? ''} ${r.table}`;
    case 'process':
      return `process ${r.netns} ${JSON.stringify(r.argv)}`;
  }
}

/** `old` followed by `added`, one record per identity. */
export function mergeResources(old: readonly Resource[], added: readonly Resource[]): Resource[] {
  const out = [...old];
  for (const r of added) {
    const k = resourceKey(r);
    const i = out.findIndex((o) => resourceKey(o) === k);
    if (i < 0) out.push(r);
    else if (r.kind !== 'sysctl' && r.kind !== 'nft') {
      out.splice(i, 1);
      out.push(r);
    }
  }
  return out;
}
