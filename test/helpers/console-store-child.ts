// Runs one console settings change against the config file named by argv[2] and prints what
// the API answered, what the supervisor was asked to run, and /api/state afterwards (JSON).
// The console-readonly e2e test runs it inside a mount namespace where that directory is read-only.
import { ConfigStore } from '../../src/console/apply.js';
import { ConsoleApi } from '../../src/console/api.js';
import { runConfigOf, type RunConfig } from '../../src/config/run-config.js';
import { loadConfigFile, type ConfigFile } from '../../src/config/file.js';
import { createLogger } from '../../src/observe/log.js';
import type { SupervisorControl } from '../../src/proxy/supervisor.js';

const path = process.argv[2]!;
const body = JSON.parse(process.argv[3]!) as unknown;
const build = (f: ConfigFile): RunConfig => runConfigOf({ ...f.run, firewall: 'none' }, [], undefined, f);
let cfg = build(loadConfigFile(path));
const applied: boolean[] = [];
const control: SupervisorControl = {
  config: () => cfg,
  apply: async (next) => {
    applied.push(next.enabled);
    cfg = next;
  },
  connections: async () => [],
  metricSnapshots: async () => [],
  closeConnection: async () => false,
  flushDns: async () => 0,
  rulesInKernel: () => cfg.enabled,
  onApplied: () => () => {},
};
const api = new ConsoleApi({
  store: new ConfigStore(path, build, control),
  control,
  log: createLogger('text', () => {}),
});
const put = await api.handle({ method: 'PUT', path: '/settings', query: new URLSearchParams(), body });
const state = await api.handle({ method: 'GET', path: '/state', query: new URLSearchParams(), body: undefined });
process.stdout.write(JSON.stringify({ put, state: state.body, applied, running: cfg.enabled }));
