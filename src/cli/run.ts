// `tranproxy run`: flags → RunConfig → Supervisor. Nothing else.
import { dirname } from 'node:path';
import { Command } from 'commander';
import { FIXED_ON_RELOAD, runConfigOf, type RunConfig } from '../config/run-config.js';
import { addSettingOptions } from '../config/settings.js';
import { loadConfigFile, type ConfigFile } from '../config/file.js';
import { checkConfigFile } from '../config/file-permissions.js';
import { createLogger } from '../observe/log.js';
import { LogRing } from '../observe/log-ring.js';
import type { SupervisorOptions } from '../proxy/supervisor.js';
import type { LoadedConfig } from '../proxy/one-process.js';
import { UsageError } from '../errors.js';
import { PARSE_ONLY_ENV } from './default-command.js';
import { addCaptureOptions } from './capture-options.js';
import { loadWithFile } from './file-options.js';

export function runCommand(): Command {
  const cmd = new Command('run')
    .description(
      'run the transparent proxy (sidecar or gateway); with -- CMD, run CMD once ready and exit with its status',
    )
    .argument('[command...]', 'program to run, after --, once the proxy and rules are ready');
  addCaptureOptions(cmd).option(
    '-c, --config <file>',
    'YAML config file (nodes, rules, and any flag); flags given on the command line win',
  );
  addSettingOptions(cmd, 'run').action(async (command: string[], opts: { config?: string }, self: Command) => {
    if (command.length > 0 && !process.argv.includes('--')) {
      throw new UsageError(
        `unexpected argument '${command[0]}': put the program to run after --, e.g. tranproxy run -P 80 -- curl http://example`,
      );
    }
    // Refuses a file others could change; warns about secrets everybody can read.
    const loaded = loadWithFile(opts.config, self);
    const { flags, warnings: permissionWarnings } = loaded;
    let file = loaded.file;
    let cfg = runConfigOf(loaded.settings, command, undefined, file);
    const loadedConfig = (c: RunConfig): LoadedConfig => ({
      cfg: c,
      fixedOnReload: FIXED_ON_RELOAD,
      reloadable: opts.config !== undefined,
    });
    // The lean entry (lean-run.ts) asked: what needs the parsers at run time is served here.
    const parseOnly = process.env[PARSE_ONLY_ENV] === '1' && !cfg.oneProcess;
    const leanWire = parseOnly && !cfg.console && !hasRuleSets(file) ? await wireOf(loadedConfig(cfg)) : undefined;
    // Large domain lists stay in run's own process: through the parser's pipe (base64 in JSON, then
    // revived and packed again) a 1M-entry list took 1.7x as long to start and 4x to reload.
    const lean = leanWire !== undefined && (leanWire.lists?.length ?? 0) <= LEAN_LISTS_MAX && isPlainData(leanWire);
    if (parseOnly && !lean) await answerAndExit({ full: true });
    // The console's code loads only when it is asked for: a sidecar keeps none of it resident.
    const consoleModule = cfg.console ? await import('../console/index.js') : undefined;
    consoleModule?.checkConsoleConfig(cfg, opts.config, file);
    // The console's Logs page reads the last lines from memory (no log file needed).
    const logRing = cfg.console ? new LogRing() : undefined;
    const log = createLogger(cfg.logFormat, undefined, logRing);
    for (const w of permissionWarnings) log.warn(w);
    // SIGHUP re-reads the file (and the console applies its edits the same way); flags
    // typed on the command line still win.
    const build = (f: ConfigFile) => {
      file = f;
      return runConfigOf({ ...f.run, ...flags }, command, undefined, f);
    };
    const reload = opts.config
      ? () => {
          const f = loadConfigFile(opts.config!);
          for (const w of checkConfigFile(f)) log.warn(w);
          return build(f);
        }
      : undefined;
    if (parseOnly) await answerAndExit(leanWire); // its warnings went to stderr above
    if (cfg.oneProcess) {
      // Its warnings are logged above (by the parser child, on its stderr: ours).
      if (hasRuleSets(file))
        throw new UsageError('--one-process does not fetch or refresh rule sets: drop one of them');
      // The lean entry (cli/one-process.ts) asked only for the parsed configuration.
      if (process.env[PARSE_ONLY_ENV] === '1') await answerAndExit(await wireOf(loadedConfig(cfg)));
      const { OneProcess } = await import('../proxy/one-process.js');
      const again = reload ? async () => loadedConfig(reload()) : undefined;
      process.exit(await new OneProcess(loadedConfig(cfg), again).run());
    }
    const ruleSets = opts.config ? { baseDir: dirname(opts.config), log } : undefined;
    // The fetcher loads only for a file that names rule sets (its HTTP client stays out of a sidecar).
    const updater = hasRuleSets(file) ? await import('../ruleset/updater.js') : undefined;
    // Rule sets never fetched are fetched before the first generation; the others start from their copy.
    if (file && ruleSets && updater && (await updater.fetchMissingRuleSets(file.ruleSets, ruleSets))) cfg = reload!();
    const services = combineServices(
      cfg.console && opts.config ? consoleModule?.consoleService(cfg.console, opts.config, build, log) : undefined,
      ruleSets && reload && updater ? updater.ruleSetService(ruleSets, () => file?.ruleSets ?? {}, reload) : undefined,
    );
    const { Supervisor } = await import('../proxy/supervisor.js');
    const status = await new Supervisor(cfg, log, {
      fixedOnReload: FIXED_ON_RELOAD,
      ...(reload ? { reload } : {}),
      ...(services ? { services } : {}),
      ...(logRing ? { logRing } : {}),
    }).run();
    process.exit(status);
  });
  return cmd;
}

/**
 * The parsed configuration as JSON can carry it to the lean entry: compiled domain lists
 * packed (packRuleLists) into base64 `lists`, the rules holding references into them.
 */
async function wireOf(loaded: LoadedConfig): Promise<Omit<LoadedConfig, 'lists'> & { lists?: string }> {
  const { lists: _none, ...plain } = loaded;
  const routing = loaded.cfg.routing;
  if (!routing?.rules.some((r) => r.domainList !== undefined)) return plain;
  const { packRuleLists, packedBytes } = await import('../route/index.js');
  const packed = packRuleLists(routing.rules);
  return {
    ...plain,
    cfg: { ...loaded.cfg, routing: { ...routing, rules: packed.rules } },
    lists: Buffer.from(packedBytes(packed)).toString('base64'),
  };
}

/** Packed domain lists (base64 characters) the lean supervisor takes from its parser: ~10k entries. */
const LEAN_LISTS_MAX = 256 << 10;

/**
 * The parser child's answer on stdout, then exit once it is all written: stdout is a pipe, whose
 * writes complete asynchronously, and exit() at once cut a large answer (a big domain list) short.
 */
function answerAndExit(v: unknown): Promise<never> {
  return new Promise(() => process.stdout.write(JSON.stringify(v), () => process.exit(0)));
}

function hasRuleSets(file: ConfigFile | undefined): boolean {
  return Object.keys(file?.ruleSets ?? {}).length > 0;
}

/** Whether `v` crosses JSON unchanged: no typed arrays, Maps, Sets, functions, NaN or Infinity. */
export function isPlainData(v: unknown): boolean {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v);
  if (Array.isArray(v)) return v.every((x) => x !== undefined && isPlainData(x));
  if (typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return false;
  return Object.values(v).every((x) => x === undefined || isPlainData(x));
}

type Service = NonNullable<SupervisorOptions['services']>;

/** One `services` hook running each given one; closed in reverse order. */
function combineServices(...hooks: (Service | undefined)[]): Service | undefined {
  const given = hooks.filter((h): h is Service => h !== undefined);
  if (given.length <= 1) return given[0];
  return async (ctl) => {
    const started: { close(): Promise<void> }[] = [];
    const closeAll = async () => {
      for (const s of started.reverse()) await s.close();
    };
    try {
      for (const h of given) started.push(await h(ctl));
    } catch (e) {
      await closeAll();
      throw e;
    }
    return {
      close: closeAll,
    };
  };
}
