// `tranproxy doctor` checks are data: an id, a title and a run function over a SystemProbe,
// so tests can run every check against a fake system.
import type { SystemProbe } from '../kernel/probe.js';

export type Status = 'OK' | 'WARN' | 'FAIL';

/** What `doctor --json` prints, one per check. `fix` is null when there is nothing to fix. */
export interface CheckResult {
  check: string;
  status: Status;
  detail: string;
  fix: string | null;
}

export type Verdict = Omit<CheckResult, 'check'>;

export interface Check {
  /** Stable id: the `check` field of the JSON output. */
  id: string;
  /** One line: what is checked. */
  title: string;
  run(probe: SystemProbe): Verdict | Promise<Verdict>;
}

export const ok = (detail: string): Verdict => ({ status: 'OK', detail, fix: null });
export const warn = (detail: string, fix: string): Verdict => ({ status: 'WARN', detail, fix });
export const fail = (detail: string, fix: string): Verdict => ({ status: 'FAIL', detail, fix });
