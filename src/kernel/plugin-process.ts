// Start a SIP003 plugin process (v2ray-plugin, obfs-local) the way ss-local does: the
// addresses and options in SS_* environment variables. It runs through setpriv with
// PR_SET_PDEATHSIG=KILL, so it dies with the process that started it even when that one
// is SIGKILLed, and, when started by root, as the data plane's unprivileged user.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { ToolMissingError } from '../errors.js';

/** Binaries that provide each plugin, first found wins (Debian calls v2ray-plugin ss-v2ray-plugin). */
const PLUGIN_BINARIES: Record<string, { binaries: string[]; pkg: string }> = {
  'v2ray-plugin': { binaries: ['v2ray-plugin', 'ss-v2ray-plugin'], pkg: 'shadowsocks-v2ray-plugin' },
  'obfs-local': { binaries: ['obfs-local'], pkg: 'simple-obfs' },
};

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'];

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(binary: string): string | undefined {
  const dirs = (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(delimiter).filter(Boolean);
  for (const dir of dirs) if (dir.startsWith('/') && executable(join(dir, binary))) return join(dir, binary);
  return undefined;
}

/** The plugin's executable, or ToolMissingError naming the Debian package that has it. */
export function pluginBinary(plugin: string): string {
  const known = PLUGIN_BINARIES[plugin];
  if (!known) throw new ToolMissingError(plugin, plugin);
  for (const b of known.binaries) {
    const path = onPath(b);
    if (path) return path;
  }
  throw new ToolMissingError(known.binaries[0]!, known.pkg);
}

export interface PluginLaunch {
  plugin: string;
  remote: { host: string; port: number };
  local: { host: string; port: number };
  options: string;
  /** Who it runs as when we are root (ignored otherwise: an unprivileged process cannot switch). */
  runAs?: { uid: number; gid: number };
}

/** Spawn the plugin (stdout ignored, stderr piped for messages). Throws ToolMissingError. */
export function spawnPlugin(l: PluginLaunch): ChildProcess {
  const binary = pluginBinary(l.plugin);
  const setpriv = SETPRIV.find(executable);
  if (!setpriv) throw new ToolMissingError('setpriv', 'util-linux');
  const user =
    l.runAs && process.getuid?.() === 0
      ? [`--reuid=${l.runAs.uid}`, `--regid=${l.runAs.gid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all']
      : [];
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    SS_REMOTE_HOST: l.remote.host,
    SS_REMOTE_PORT: String(l.remote.port),
    SS_LOCAL_HOST: l.local.host,
    SS_LOCAL_PORT: String(l.local.port),
    SS_PLUGIN_OPTIONS: l.options,
  };
  return spawn(setpriv, [...user, '--pdeathsig', 'KILL', '--no-new-privs', '--', binary], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: false,
  });
}
