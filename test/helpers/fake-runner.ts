// A ToolRunner that runs nothing: it records every command (with its netns and stdin), answers
// from a script, and can fail the Nth call. Non-zero answers throw ToolFailedError exactly as
// the system runner does (unless allowFailure). Modelled on knftables' fake.go.
import { ToolFailedError } from '../../src/errors.js';
import type { RunOptions, RunResult, ToolRunner } from '../../src/kernel/exec.js';

export interface FakeCall {
  tool: string;
  args: string[];
  netns?: string;
  input?: string;
}

/** An answer for a call, or undefined to fall through to the next responder (default: success, no output). */
export type Responder = (call: FakeCall, index: number) => Partial<RunResult> | undefined;

export interface FakeRunnerOptions {
  /** Tools `has` reports as installed; default: every tool. */
  tools?: readonly string[];
  /** Asked in order for every call. */
  responders?: Responder[];
}

export class FakeRunner implements ToolRunner {
  readonly calls: FakeCall[] = [];
  private readonly responders: Responder[];
  private readonly tools: Set<string> | undefined;
  private failAt = new Map<number, string>();

  constructor(opts: FakeRunnerOptions = {}) {
    this.responders = [...(opts.responders ?? [])];
    this.tools = opts.tools ? new Set(opts.tools) : undefined;
  }

  /** Answer calls whose command line starts with the words of `prefix` ("nft list tables") with `result`. */
  on(prefix: string, result: Partial<RunResult> | ((call: FakeCall) => Partial<RunResult>)): this {
    this.responders.push((c) => {
      if (!startsWithWords(c, prefix)) return undefined;
      return typeof result === 'function' ? result(c) : result;
    });
    return this;
  }

  /** Make the nth call (1-based, counted from construction) exit 1 with `stderr`. */
  failCall(n: number, stderr = 'fake failure'): this {
    this.failAt.set(n, stderr);
    return this;
  }

  /** Make the first call whose command line starts with `prefix` exit 1 (counted when it happens). */
  failFirst(prefix: string, stderr = 'fake failure'): this {
    let done = false;
    this.responders.unshift((c) => {
      if (done || !startsWithWords(c, prefix)) return undefined;
      done = true;
      return { status: 1, stderr };
    });
    return this;
  }

  has(tool: string): boolean {
    return this.tools === undefined || this.tools.has(tool);
  }

  run(tool: string, args: readonly string[], opts: RunOptions = {}): RunResult {
    const call: FakeCall = {
      tool,
      args: [...args],
      ...(opts.netns !== undefined ? { netns: opts.netns } : {}),
      ...(opts.input !== undefined ? { input: opts.input } : {}),
    };
    this.calls.push(call);
    const n = this.calls.length;
    let answer: Partial<RunResult> | undefined;
    const failure = this.failAt.get(n);
    if (failure !== undefined) answer = { status: 1, stderr: failure };
    for (const r of this.responders) {
      if (answer) break;
      answer = r(call, n);
    }
    const result: RunResult = { status: 0, stdout: '', stderr: '', ...answer };
    if (result.status !== 0 && !opts.allowFailure) throw new ToolFailedError(tool, args, result.status, result.stderr);
    return result;
  }

  /** Calls whose command line starts with `prefix`. */
  matching(prefix: string): FakeCall[] {
    return this.calls.filter((c) => startsWithWords(c, prefix));
  }

  /** Every call as text, one command a line, its stdin indented under it: the golden-file format. */
  transcript(): string {
    return this.calls.map(describeCall).join('');
  }
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** "nft list" matches `nft list tables` but "ip" does not match `ip6tables`. */
function startsWithWords(c: FakeCall, prefix: string): boolean {
  const line = commandLine(c);
  return line === prefix || line.startsWith(`${prefix} `);
}

export function commandLine(c: FakeCall): string {
  return [c.tool, ...c.args].map(quote).join(' ');
}

function describeCall(c: FakeCall): string {
  const head = `${c.netns !== undefined ? `[netns ${c.netns}] ` : ''}${commandLine(c)}\n`;
  if (c.input === undefined) return head;
  const body = c.input.endsWith('\n') ? c.input.slice(0, -1) : c.input;
  return (
    head +
    body
      .split('\n')
      .map((l) => `  | ${l}\n`)
      .join('')
  );
}
