// `--config FILE` for the commands that take run's flags (`run`, `rules plan|apply`): the
// file's settings, overridden by the flags the user actually typed.
import type { Command } from 'commander';
import { loadConfigFile, type ConfigFile } from '../config/file.js';
import { checkConfigFile } from '../config/file-permissions.js';
import type { RawRunOptions } from '../config/run-config.js';

/** File settings, overridden by flags the user actually typed (not commander's defaults). */
export function withFile(fromFile: RawRunOptions, flags: RawRunOptions, cmd: Command): RawRunOptions {
  const merged: Record<string, unknown> = { ...flags };
  for (const [key, value] of Object.entries(fromFile)) {
    if (value === undefined) continue;
    const source = cmd.getOptionValueSource(key);
    if (source !== 'cli' && source !== 'env') merged[key] = value;
  }
  return merged as RawRunOptions;
}

export interface FileOptions {
  file?: ConfigFile;
  /** The flags merged over the file's settings. */
  opts: RawRunOptions;
  /** Permission warnings (a file others could change is refused outright). */
  warnings: string[];
}

/** Load `--config` (if given) and merge it under the typed flags. */
export function loadWithFile(opts: RawRunOptions & { config?: string }, cmd: Command): FileOptions {
  if (!opts.config) return { opts, warnings: [] };
  const file = loadConfigFile(opts.config);
  const warnings = checkConfigFile(file);
  return { file, opts: withFile(file.run, opts, cmd), warnings };
}
