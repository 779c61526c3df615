// `tranproxy run --one-process`, the lean entry: the arguments (and the config file) are
// parsed by a short-lived child (parse-child.ts), and this process serves with the result.
// So the one process a pod keeps holds no commander, zod or YAML code. SIGHUP parses again.
import { TranproxyError } from '../errors.js';
import type { LoadedConfig } from '../proxy/one-process.js';
import { ParseFailed, parseInChild } from './parse-child.js';

/** The configuration of `args` (run.ts prints it whole for --one-process). */
async function parsed(args: string[]): Promise<LoadedConfig> {
  const p = await parseInChild(args);
  if ('full' in p) throw new TranproxyError('the parser did not print the configuration');
  return p;
}

export async function runOneProcess(args: string[]): Promise<never> {
  let first: LoadedConfig;
  try {
    first = await parsed(args);
  } catch (e) {
    if (!(e instanceof ParseFailed)) process.stderr.write(`tranproxy: ${(e as Error).message}\n`);
    process.exit(e instanceof ParseFailed ? e.status : 1);
  }
  const { OneProcess } = await import('../proxy/one-process.js');
  const reload = first.reloadable ? () => parsed(args) : undefined;
  try {
    process.exit(await new OneProcess(first, reload).run());
  } catch (e) {
    process.stderr.write(`tranproxy: ${(e as Error).message}\n`);
    process.exit(e instanceof TranproxyError ? e.exitCode : 1);
  }
}
