// `--config FILE` for the commands that take run's flags (`run`, `rules plan|apply`): the
// file's settings, overridden by the flags the user actually typed.
import type { Command } from 'commander';
import { loadConfigFile, type ConfigFile } from '../config/file.js';
import { checkConfigFile } from '../config/file-permissions.js';
import { commandSettings, type SettingValues } from '../config/settings.js';

export interface FileOptions {
  file?: ConfigFile;
  /** The typed flags over the file's settings. */
  settings: SettingValues;
  /** The flags the user typed, alone (they win over the file on every reload too). */
  flags: SettingValues;
  /** Permission warnings (a file others could change is refused outright). */
  warnings: string[];
}

/** Load `--config` (if given) and lay the flags the user typed (not commander's defaults) over it. */
export function loadWithFile(config: string | undefined, cmd: Command): FileOptions {
  const flags = commandSettings(cmd);
  if (!config) return { settings: flags, flags, warnings: [] };
  const file = loadConfigFile(config);
  const warnings = checkConfigFile(file);
  return { file, settings: { ...file.run, ...flags }, flags, warnings };
}
