// `tranproxy run --one-process`, the lean entry: the arguments (and the config file) are
// parsed by a short-lived child, `tranproxy run` itself with TRANPROXY_PARSE_ONLY=1, which
// prints the resulting configuration as JSON and exits; this process then serves with it.
// So the one process a pod keeps holds no commander, zod or YAML code. SIGHUP parses again.
import { runSelf } from '../kernel/exec.js';
import { TranproxyError } from '../errors.js';
import type { LoadedConfig } from '../proxy/one-process.js';
import { PARSE_ONLY_ENV } from './default-command.js';

/** Runs `tranproxy <args>` in parse-only mode; its errors go to our stderr as they are. */
async function parseInChild(args: string[]): Promise<LoadedConfig> {
  // The default command was applied already: the parser must not add it twice.
  const { status, stdout } = await runSelf(args, { [PARSE_ONLY_ENV]: '1', TRANPROXY_DEFAULT_COMMAND: '' });
  if (status !== 0) throw new ParseFailed(status);
  try {
    const { lists: b64, ...wire } = JSON.parse(stdout) as Omit<LoadedConfig, 'lists'> & { lists?: string };
    if (b64 === undefined) return wire;
    // A fresh buffer: the lists' typed arrays are views that need its aligned offsets.
    const bytes = Buffer.from(b64, 'base64');
    const lists = new Uint8Array(bytes.length);
    lists.set(bytes);
    return { ...wire, lists };
  } catch (e) {
    throw new TranproxyError(`reading the parsed configuration: ${(e as Error).message}`);
  }
}

/** The parser exited with this status (it printed why). */
class ParseFailed extends TranproxyError {
  constructor(readonly status: number) {
    super(`the configuration was refused (exit ${status})`);
  }
}

export async function runOneProcess(args: string[]): Promise<never> {
  let first: LoadedConfig;
  try {
    first = await parseInChild(args);
  } catch (e) {
    if (!(e instanceof ParseFailed)) process.stderr.write(`tranproxy: ${(e as Error).message}\n`);
    process.exit(e instanceof ParseFailed ? e.status : 1);
  }
  const { OneProcess } = await import('../proxy/one-process.js');
  const reload = first.reloadable ? () => parseInChild(args) : undefined;
  try {
    process.exit(await new OneProcess(first, reload).run());
  } catch (e) {
    process.stderr.write(`tranproxy: ${(e as Error).message}\n`);
    process.exit(e instanceof TranproxyError ? e.exitCode : 1);
  }
}
