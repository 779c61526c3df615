// `tranproxy doctor`: run the checks against a system probe and present the results.
import type { ProbeRun, SystemProbe } from '../kernel/probe.js';
import { CHECKS } from './checks.js';
import type { Check, CheckResult, Status } from './types.js';

export { CHECKS } from './checks.js';
export type { Check, CheckResult, Status, Verdict } from './types.js';

/** Several checks read the same dumps: run each distinct command once per doctor run. */
export function memoizedProbe(p: SystemProbe): SystemProbe {
  const runs = new Map<string, ProbeRun | undefined>();
  const tools = new Map<string, boolean>();
  const files = new Map<string, string | undefined>();
  return {
    readFile: (path) => {
      if (!files.has(path)) files.set(path, p.readFile(path));
      return files.get(path);
    },
    listDir: (path) => p.listDir(path),
    hasTool: (tool) => {
      if (!tools.has(tool)) tools.set(tool, p.hasTool(tool));
      return tools.get(tool)!;
    },
    run: (tool, args, input) => {
      const key = JSON.stringify([tool, args, input ?? null]);
      if (!runs.has(key)) runs.set(key, p.run(tool, args, input));
      return runs.get(key);
    },
    transparentSocket: (family) => p.transparentSocket(family),
    uid: p.uid,
  };
}

/** Run every check in order. A check that throws is reported as WARN (a doctor bug, not a host problem). */
export async function runDoctor(probe: SystemProbe, checks: readonly Check[] = CHECKS): Promise<CheckResult[]> {
  const p = memoizedProbe(probe);
  const out: CheckResult[] = [];
  for (const c of checks) {
    try {
      const v = await c.run(p);
      out.push({ check: c.id, status: v.status, detail: v.detail, fix: v.fix });
    } catch (e) {
      out.push({
        check: c.id,
        status: 'WARN',
        detail: `the check could not run: ${e instanceof Error ? e.message : String(e)}`,
        fix: 'report this as a tranproxy bug, with the output of `tranproxy doctor --json`',
      });
    }
  }
  return out;
}

/** 1 when any check failed, else 0. */
export function exitStatusOf(results: readonly CheckResult[]): number {
  return results.some((r) => r.status === 'FAIL') ? 1 : 0;
}

/** Human-readable report: one line per check, its fix indented below, a summary last. */
export function formatText(results: readonly CheckResult[]): string {
  const width = Math.max(...results.map((r) => r.check.length), 5);
  const lines: string[] = [];
  for (const r of results) {
    lines.push(`${r.status.padEnd(4)}  ${r.check.padEnd(width)}  ${r.detail}`);
    if (r.fix) lines.push(`${' '.repeat(6 + width)}  fix: ${r.fix}`);
  }
  const count = (s: Status): number => results.filter((r) => r.status === s).length;
  lines.push('', `${results.length} checks: ${count('OK')} OK, ${count('WARN')} WARN, ${count('FAIL')} FAIL`);
  return `${lines.join('\n')}\n`;
}
