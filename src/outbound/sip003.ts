// SIP003 plugins for Shadowsocks nodes: one plugin process per (plugin, options, node)
// in this process, started on first use, listening on a free loopback port; the node's
// Shadowsocks stream goes to that port and the plugin carries it to the node. A plugin
// that dies is restarted with backoff; all of them are killed when this process exits.
import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import { ToolMissingError } from '../errors.js';
import { pluginBinary, spawnPlugin } from '../kernel/plugin-process.js';
import { OutboundError } from './types.js';
import type { NodeSpec, ShadowsocksNodeSpec } from './uri.js';

export type PluginEvent =
  | { type: 'started'; plugin: string; node: string; pid: number; port: number }
  | {
      type: 'exited';
      plugin: string;
      node: string;
      pid: number;
      code: number | null;
      signal: string | null;
      restartInMs: number;
      stderr: string;
    }
  | { type: 'failed'; plugin: string; node: string; error: string };

const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 30_000;
/** A plugin that ran this long before dying restarts at once (backoff reset). */
const STABLE_MS = 30_000;
const STDERR_KEEP = 2048;

let runAs: { uid: number; gid: number } | undefined;
const listeners = new Set<(e: PluginEvent) => void>();
const hosts = new Map<string, PluginHost>();

/** Who plugins run as when this process is root (the data plane's user). */
export function setPluginUser(user: { uid: number; gid: number } | undefined): void {
  runAs = user;
}

let idleTimer: NodeJS.Timeout | undefined;
/**
 * Stop plugins unused for `ms` (the supervisor, whose plugins serve only the console's node
 * tests); the workers keep theirs ready for the next flow.
 */
export function stopIdlePluginsAfter(ms: number): void {
  clearInterval(idleTimer);
  idleTimer = setInterval(
    () => {
      for (const [key, h] of hosts) {
        if (Date.now() - h.lastUsed > ms) {
          h.stop();
          hosts.delete(key);
        }
      }
    },
    Math.max(1000, ms / 2),
  );
  idleTimer.unref();
}

export function onPluginEvent(listener: (e: PluginEvent) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** The plugin host for a node (shared by every outbound of the same node and options). */
export function pluginHostFor(
  spec: ShadowsocksNodeSpec & { plugin: NonNullable<ShadowsocksNodeSpec['plugin']> },
): PluginHost {
  const key = JSON.stringify([spec.plugin.name, spec.plugin.opts, spec.host, spec.port]);
  let host = hosts.get(key);
  if (!host) {
    host = new PluginHost(spec.name, spec.plugin.name, spec.plugin.opts, { host: spec.host, port: spec.port });
    hosts.set(key, host);
  }
  return host;
}

/** Kill every plugin this process started (exit path; pdeathsig covers a SIGKILL). */
export function stopAllPlugins(): void {
  for (const h of hosts.values()) h.stop();
  hosts.clear();
}
process.once('exit', stopAllPlugins);

/** Warnings for nodes whose plugin is not installed here (start-up; connections fail with the same words). */
export function missingPlugins(nodes: Record<string, { spec: NodeSpec }>): string[] {
  const out: string[] = [];
  for (const [name, { spec }] of Object.entries(nodes)) {
    if (spec.kind !== 'shadowsocks' || !spec.plugin) continue;
    try {
      pluginBinary(spec.plugin.name);
    } catch (e) {
      if (e instanceof ToolMissingError)
        out.push(
          `node '${name}': SIP003 plugin '${spec.plugin.name}' is not installed: apt-get install ${e.debianPackage}`,
        );
    }
  }
  return out;
}

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export class PluginHost {
  private child: ChildProcess | undefined;
  private port = 0;
  private startedAt = 0;
  private starting: Promise<number> | undefined;
  private backoffMs = BACKOFF_FIRST_MS;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastError: string | undefined;
  /** When a connection last asked for the plugin (Date.now()). */
  lastUsed = Date.now();

  constructor(
    private readonly node: string,
    readonly plugin: string,
    private readonly options: string,
    private readonly remote: { host: string; port: number },
  ) {}

  /** The pid of the running plugin (tests, logs). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The loopback port the plugin listens on, starting it if needed. Throws OutboundError. */
  async localPort(): Promise<number> {
    this.lastUsed = Date.now();
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return this.port;
    if (!this.starting) {
      if (this.restartTimer)
        throw new OutboundError(
          this.node,
          'EPLUGIN',
          `SIP003 plugin ${this.plugin} is restarting: ${this.lastError ?? 'it exited'}`,
        );
      this.starting = this.start().finally(() => (this.starting = undefined));
    }
    return this.starting;
  }

  /** How long the plugin has been up, in ms (0 when it is not running). */
  uptimeMs(): number {
    return this.child ? Date.now() - this.startedAt : 0;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    this.child?.kill('SIGKILL');
    this.child = undefined;
  }

  private async start(): Promise<number> {
    if (this.stopped) throw new OutboundError(this.node, 'EPLUGIN', `SIP003 plugin ${this.plugin} stopped`);
    const port = await freeLoopbackPort();
    let child: ChildProcess;
    try {
      child = spawnPlugin({
        plugin: this.plugin,
        remote: this.remote,
        local: { host: '127.0.0.1', port },
        options: this.options,
        ...(runAs ? { runAs } : {}),
      });
    } catch (e) {
      const error =
        e instanceof ToolMissingError
          ? `SIP003 plugin '${this.plugin}' is not installed: apt-get install ${e.debianPackage}`
          : (e as Error).message;
      emit({ type: 'failed', plugin: this.plugin, node: this.node, error });
      throw new OutboundError(this.node, 'EPLUGIN', error);
    }
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-STDERR_KEEP)));
    child.on('error', () => {}); // reported by 'exit'
    this.child = child;
    this.port = port;
    this.startedAt = Date.now();
    child.once('exit', (code, signal) => this.exited(child, code, signal, stderr));
    emit({ type: 'started', plugin: this.plugin, node: this.node, pid: child.pid ?? 0, port });
    return port;
  }

  private exited(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null, stderr: string): void {
    if (this.child !== child) return;
    this.child = undefined;
    if (this.stopped) return;
    if (Date.now() - this.startedAt >= STABLE_MS) this.backoffMs = BACKOFF_FIRST_MS;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(BACKOFF_MAX_MS, this.backoffMs * 2);
    const tail = stderr.trim().split('\n').slice(-3).join(' | ');
    this.lastError = `exited (${signal ?? `status ${code}`})${tail ? `: ${tail}` : ''}`;
    emit({
      type: 'exited',
      plugin: this.plugin,
      node: this.node,
      pid: child.pid ?? 0,
      code,
      signal,
      restartInMs: delay,
      stderr: tail,
    });
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (!this.stopped && !this.child && !this.starting) {
        this.starting = this.start().finally(() => (this.starting = undefined));
        this.starting.catch(() => {});
      }
    }, delay);
    this.restartTimer.unref();
  }
}

function emit(e: PluginEvent): void {
  for (const l of listeners) {
    try {
      l(e);
    } catch {
      // a listener's problem is not the plugin's
    }
  }
}
