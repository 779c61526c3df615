// Where firewall changes act (the current network namespace or a named one) and through
// which runner the tools run (the system's, or a recording fake in tests).
import { systemRunner, type RunOptions, type RunResult, type ToolRunner } from '../kernel/exec.js';

export interface Target {
  /** Run tools inside this named network namespace (`ip netns exec NAME`). */
  netns?: string;
  /** Default: the system runner. */
  runner?: ToolRunner;
}

/** Run `tool` for `target`: its runner, inside its namespace. */
export function runAt(
  target: Target | undefined,
  tool: string,
  args: readonly string[],
  opts: RunOptions = {},
): RunResult {
  const netns = target?.netns;
  return (target?.runner ?? systemRunner).run(tool, args, netns === undefined ? opts : { ...opts, netns });
}

/** Whether `tool` is installed, as the target's runner sees it. */
export function hasToolAt(target: Target | undefined, tool: string): boolean {
  return (target?.runner ?? systemRunner).has(tool);
}
