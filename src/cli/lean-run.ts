// `tranproxy run` (a supervisor and its data-plane workers) without the option parsers
// resident: a short-lived child parses the arguments and the config file (parse-child.ts),
// this process supervises with the result and parses in a child again for SIGHUP. What needs
// them at run time (the console, rule sets fetched from URLs) is served by run.ts as before.
import { readFileSync } from 'node:fs';
import { TranproxyError } from '../errors.js';
import type { RunConfig } from '../config/run-config.js';
import type { LoadedConfig } from '../proxy/one-process.js';
import { ParseFailed, parseInChild } from './parse-child.js';

/** The configuration with its rules' domain lists made whole again (they crossed packed). */
async function revived(loaded: LoadedConfig): Promise<RunConfig> {
  const { cfg, lists } = loaded;
  if (!lists || !cfg.routing) return cfg;
  const { reviveRuleLists } = await import('../route/index.js');
  return { ...cfg, routing: { ...cfg.routing, rules: reviveRuleLists(cfg.routing.rules, lists) } };
}

/** SIGHUP's configuration: the parser's error (file, line, column) is the reload's. */
async function reloaded(args: string[]): Promise<RunConfig> {
  const p = await parseInChild(args, { quiet: true });
  if ('full' in p)
    throw new TranproxyError(
      'the console, rule sets and large domain lists (over ~10,000 entries) cannot be added on reload: restart tranproxy',
    );
  return revived(p);
}

/** The config file `run ARGS` names (`-c FILE`, `-cFILE`, `--config FILE`, `--config=FILE`), if any. */
export function configPathOf(args: readonly string[]): string | undefined {
  const end = args.indexOf('--');
  const own = end < 0 ? args : args.slice(0, end);
  for (let i = 0; i < own.length; i++) {
    const a = own[i]!;
    if (a === '-c' || a === '--config') return own[i + 1];
    if (a.startsWith('--config=')) return a.slice('--config='.length);
    if (a.startsWith('-c') && !a.startsWith('--')) return a.slice(2);
  }
  return undefined;
}

/**
 * Whether the file names domain lists or rule sets (read as text: no YAML here). Those can be
 * large: parsed in a child and again here, a 1M-entry list took 1.7x as long to start and 4x to
 * reload, so such a file runs in run's own process as before.
 */
export function namesLists(args: readonly string[]): boolean {
  const path = configPathOf(args.slice(1));
  if (path === undefined) return false;
  try {
    return /domain-list|rule-set/.test(readFileSync(path, 'utf8'));
  } catch {
    return false; // the parser says what is wrong with it
  }
}

/** Serves `run args`; falls back to run.ts (resolves false) when the parser says it needs it. */
export async function runSupervised(args: string[]): Promise<false> {
  if (namesLists(args)) return false;
  let first: LoadedConfig;
  try {
    const p = await parseInChild(args);
    if ('full' in p) return false;
    first = p;
  } catch (e) {
    if (!(e instanceof ParseFailed)) process.stderr.write(`tranproxy: ${(e as Error).message}\n`);
    process.exit(e instanceof ParseFailed ? e.status : 1);
  }
  try {
    const [{ Supervisor }, { createLogger }] = await Promise.all([
      import('../proxy/supervisor.js'),
      import('../observe/log.js'),
    ]);
    const supervisor = new Supervisor(await revived(first), createLogger(first.cfg.logFormat), {
      fixedOnReload: first.fixedOnReload,
      ...(first.reloadable ? { reload: () => reloaded(args) } : {}),
    });
    process.exit(await supervisor.run());
  } catch (e) {
    if (e instanceof TranproxyError) process.stderr.write(`tranproxy: ${e.message}\n`);
    else
      process.stderr.write(`tranproxy: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(e instanceof TranproxyError ? e.exitCode : 1);
  }
}
