// The configuration of `tranproxy run <args>` as a short-lived child parses it: `tranproxy run`
// itself with TRANPROXY_PARSE_ONLY=1, which prints it as JSON and exits. The long-running
// process that asked keeps no commander, zod or YAML code resident.
import { runSelf } from '../kernel/exec.js';
import { TranproxyError } from '../errors.js';
import type { LoadedConfig } from '../proxy/one-process.js';
import { PARSE_ONLY_ENV } from './default-command.js';

/** What the parser prints: the configuration, or that it needs `run`'s own process (run.ts). */
export type ParsedRun = LoadedConfig | { full: true };

/** The parser exited with this status (it printed why). */
export class ParseFailed extends TranproxyError {
  constructor(
    readonly status: number,
    message = `the configuration was refused (exit ${status})`,
  ) {
    super(message);
  }
}

/**
 * Runs the parser on `args`; its errors go to our stderr as they are, or with `quiet` become
 * the ParseFailed's message (its other lines, warnings, still go to our stderr).
 */
export async function parseInChild(args: string[], opts: { quiet?: boolean } = {}): Promise<ParsedRun> {
  // The default command was applied already: the parser must not add it twice.
  const env = { [PARSE_ONLY_ENV]: '1', TRANPROXY_DEFAULT_COMMAND: '' };
  const { status, stdout, stderr } = await runSelf(args, env, { captureStderr: opts.quiet === true });
  if (status !== 0) {
    // The error is the parser's last "tranproxy: …" line(s); what came before are warnings.
    const at = stderr.lastIndexOf('tranproxy: ');
    if (at < 0) {
      process.stderr.write(stderr);
      throw new ParseFailed(status);
    }
    process.stderr.write(stderr.slice(0, at));
    throw new ParseFailed(status, stderr.slice(at + 'tranproxy: '.length).trimEnd());
  }
  process.stderr.write(stderr);
  try {
    const { lists: b64, ...wire } = JSON.parse(stdout) as Omit<LoadedConfig, 'lists'> & { lists?: string };
    if ('full' in wire || b64 === undefined) return wire;
    // A fresh buffer: the lists' typed arrays are views that need its aligned offsets.
    const bytes = Buffer.from(b64, 'base64');
    const lists = new Uint8Array(bytes.length);
    lists.set(bytes);
    return { ...wire, lists };
  } catch (e) {
    throw new TranproxyError(`reading the parsed configuration: ${(e as Error).message}`);
  }
}
