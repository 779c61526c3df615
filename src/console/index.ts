// The web console as a supervisor service: `tranproxy run --console ADDR:PORT --config FILE`.
import type { ConfigFile } from '../config/file.js';
import type { RunConfig } from '../config/run-config.js';
import { UsageError } from '../errors.js';
import type { Logger } from '../observe/log.js';
import type { SupervisorControl } from '../proxy/supervisor.js';
import { ConfigStore, type BuildConfig } from './apply.js';
import { startConsoleServer } from './server.js';

/**
 * Refuse a console that could not work: one without --config (changes are saved there) or
 * without a password hash (there is no default password). Throws UsageError with the fix.
 */
export function checkConsoleConfig(cfg: RunConfig, configPath: string | undefined, file: ConfigFile | undefined): void {
  if (!cfg.console) return;
  if (!configPath || !file) {
    throw new UsageError(
      '--console needs --config FILE: the console saves every change to that file (an empty file will do)',
    );
  }
  if (!file.console?.passwordHash) {
    throw new UsageError(
      `--console: no password is set: run 'tranproxy console passwd --config ${configPath}' first (there is no default password)`,
    );
  }
}

/** The supervisor `services` hook that serves the console. */
export function consoleService(
  listen: { host: string; port: number },
  configPath: string,
  build: BuildConfig,
  log: Logger,
) {
  return async (control: SupervisorControl) => {
    const store = new ConfigStore(configPath, build, control);
    const server = await startConsoleServer({ listen, store, control, log }).catch((e: NodeJS.ErrnoException) => {
      throw new UsageError(
        `console listener ${listen.host}:${listen.port}: ${e.code ?? e.message}: choose another --console address`,
      );
    });
    log.info('console ready:', { url: `http://${server.address}/` });
    return server;
  };
}
