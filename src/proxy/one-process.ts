// `tranproxy run --one-process`: the data plane served in this process, with no supervisor
// and no rules (an init container applied them with `tranproxy rules apply`). For a pod that
// runs one unprivileged process. It binds the listeners itself and keeps what the supervisor
// offers a sidecar: SIGHUP starts a new generation on the same sockets (the old one finishes
// its connections), SIGTERM/SIGINT drain and exit, the admin API and the log lines.
import { getFdLimit, raiseFdLimit } from '../kernel/ffi.js';
import { closeFd, dupFd, stopListening } from '../kernel/sockets.js';
import { createLogger, type Logger } from '../observe/log.js';
import { batchedStderr } from '../observe/batched-stderr.js';
import type { AdminServer } from '../observe/admin.js';
import type { DataPlaneMetrics } from '../observe/metrics.js';
import type { RunConfig } from '../config/run-config.js';
import { TranproxyError } from '../errors.js';
import { bindListeners, bindProxyListeners, workerLayout, type Listener } from './listeners.js';
import { PlaneRuntime } from './plane-runtime.js';
import type { WorkerShare } from './protocol.js';
import { readyFields, stoppingLine } from './ready-line.js';

/** A configuration as `run` parsed it, with the fields a reload must keep. */
export interface LoadedConfig {
  cfg: RunConfig;
  fixedOnReload: (keyof RunConfig)[];
  /** From a config file: SIGHUP reads it again. */
  reloadable: boolean;
  /** The bytes the rules' domain-list references point into, when they crossed packed (packRuleLists). */
  lists?: Uint8Array;
}

/** A generation serves duplicates of the listeners: its stopAccepting closes those, not ours. */
interface Generation {
  runtime: PlaneRuntime;
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export class OneProcess {
  private listeners: Listener[] = [];
  private proxyListeners: Listener[] = [];
  private current: Generation | undefined;
  private readonly draining = new Set<Generation>();
  private admin: AdminServer | undefined;
  private metrics: DataPlaneMetrics | undefined;
  private fdLimit = 0;
  private ready = false;
  private stopping: Promise<void> | undefined;
  private reloading: Promise<void> = Promise.resolve();
  private readonly log: Logger;

  /** `load` gives the configuration again for SIGHUP; undefined: nothing to reload. */
  constructor(
    private loaded: LoadedConfig,
    private readonly load: (() => Promise<LoadedConfig>) | undefined,
  ) {
    this.log = createLogger(loaded.cfg.logFormat, batchedStderr());
  }

  private get cfg(): RunConfig {
    return this.loaded.cfg;
  }

  /** Serves until SIGTERM/SIGINT (or POST /quitquitquit); resolves with the exit status. */
  async run(): Promise<number> {
    const early: NodeJS.Signals[] = [];
    const onEarly = (sig: NodeJS.Signals): void => void early.push(sig);
    for (const sig of SIGNALS) process.on(sig, onEarly);
    try {
      await this.start();
    } catch (e) {
      await this.shutdown(0);
      throw e;
    } finally {
      for (const sig of SIGNALS) process.removeListener(sig, onEarly);
    }
    return new Promise<number>((resolve) => {
      const quit = (): void => void this.shutdown(this.cfg.drainTimeoutMs).then(() => resolve(0));
      this.quit = quit;
      const onSignal = (sig: NodeJS.Signals): void => (sig === 'SIGHUP' ? void this.reload() : quit());
      for (const sig of SIGNALS) process.on(sig, onSignal);
      this.logReady();
      const stopEarly = early.find((s) => s !== 'SIGHUP');
      if (stopEarly) quit();
    });
  }

  private quit: (() => void) | undefined;

  private async start(): Promise<void> {
    const cfg = this.cfg;
    try {
      this.fdLimit = raiseFdLimit().soft;
    } catch {
      this.fdLimit = getFdLimit().soft;
    }
    this.listeners = bindListeners(cfg, this.log);
    this.proxyListeners = bindProxyListeners(cfg);
    // prom-client only for an admin API (its /metrics).
    if (cfg.admin) this.metrics = new (await import('../observe/metrics.js')).DataPlaneMetrics();
    this.current = await this.startGeneration(cfg, this.loaded.lists);
    if (cfg.admin) this.admin = await this.startAdmin(cfg.admin);
    this.ready = true;
  }

  private workerShare(cfg: RunConfig): WorkerShare {
    const uid = process.getuid?.() ?? 0;
    return {
      maxConnections: Math.min(cfg.maxConnections, Math.max(1, Math.floor((this.fdLimit - 64) / 2))),
      // Root may mark its sockets (SO_MARK); any other user is excluded from capture by its uid.
      outboundMark: uid === 0 || !cfg.proxyUser ? cfg.bypassMark : 0,
      engineThreads: workerLayout(cfg).threads,
      listeners: this.listeners.map((l) => ({ family: l.family, label: l.label })),
      proxyListeners: this.proxyListeners.map((l) => ({ family: l.family, label: l.label })),
    };
  }

  private async startGeneration(cfg: RunConfig, lists: Uint8Array | undefined): Promise<Generation> {
    const fds = [...this.listeners, ...this.proxyListeners].map((l) => dupFd(l.fd));
    const runtime = new PlaneRuntime(this.metrics);
    try {
      await runtime.start(cfg, this.workerShare(cfg), fds, this.log, lists);
    } catch (e) {
      // A started data plane closes its descriptors as it stops; before that they are ours.
      if (runtime.relay === undefined) for (const fd of fds) closeFd(fd);
      else await runtime.shutdown(0).catch(() => {});
      throw e;
    }
    return { runtime };
  }

  private async startAdmin(listen: NonNullable<RunConfig['admin']>): Promise<AdminServer> {
    const { startAdminServer } = await import('../observe/admin.js');
    return startAdminServer(
      listen,
      {
        ready: () => this.ready,
        metrics: async () => ({
          contentType: this.metrics!.registry.contentType,
          body: await this.metrics!.registry.metrics(),
        }),
        connections: async () => {
          const all = [...(this.current ? [this.current] : []), ...this.draining];
          const lists = await Promise.all(all.map((g) => g.runtime.connections()));
          return lists.flat().map((c) => ({ ...c, worker: process.pid }));
        },
        groups: async () => this.current?.runtime.groupStates() ?? [],
        quit: () => this.quit?.(),
      },
      this.log,
    ).catch((e: NodeJS.ErrnoException) => {
      throw new TranproxyError(
        `admin listener ${listen.host}:${listen.port}: ${e.code ?? e.message}: choose another --admin address`,
      );
    });
  }

  private logReady(): void {
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    this.log.info(
      'ready:',
      readyFields(this.cfg, {
        listeners: this.listeners,
        proxyListeners: this.proxyListeners,
        firewall: 'none',
        user: `${uid}:${gid}`,
        caps: uid === 0 ? 'inherited' : 'none',
        families: this.listeners.map((l) => (l.family === 4 ? 'ipv4' : 'ipv6')),
        relay: this.current?.runtime.relay,
        fdLimit: this.fdLimit,
        admin: this.admin?.address,
        layout: 'one-process',
      }),
    );
    const p = this.cfg.proxyUser;
    if (this.cfg.capture.includes('output') && p && p.uid !== uid)
      this.log.warn(
        `running as uid ${uid}, but the rules exclude uid ${p.uid} (--proxy-user): this process's own connections would be captured again`,
      );
  }

  /** SIGHUP: a new generation with the configuration read again; the old one drains. */
  private reload(): Promise<void> {
    this.reloading = this.reloading.then(() => this.reloadNow());
    return this.reloading;
  }

  private async reloadNow(): Promise<void> {
    if (this.stopping) return;
    if (!this.load) {
      this.log.warn('SIGHUP: nothing to reload (no --config); ignored');
      return;
    }
    let next: LoadedConfig;
    try {
      next = await this.load();
      const changed = this.loaded.fixedOnReload.filter(
        (k) => JSON.stringify(next.cfg[k]) !== JSON.stringify(this.cfg[k]),
      );
      if (changed.length) throw new TranproxyError(`${changed.join(', ')} cannot change on reload: restart tranproxy`);
    } catch (e) {
      this.log.error(`reload rejected, keeping the running configuration: ${(e as Error).message}`);
      return;
    }
    await this.switchTo(next);
  }

  private async switchTo(next: LoadedConfig): Promise<void> {
    const old = this.current!;
    // The DNS port cannot be shared: the old generation lets go of it first, takes it back on failure.
    const handover = this.cfg.routing?.dns !== undefined && next.cfg.routing?.dns !== undefined;
    if (handover) await old.runtime.releaseDns();
    let fresh: Generation;
    try {
      fresh = await this.startGeneration(next.cfg, next.lists);
    } catch (e) {
      if (handover) await old.runtime.restoreDns().catch(() => false);
      this.log.error(`reload failed, keeping the running configuration: ${(e as Error).message}`);
      return;
    }
    this.current = fresh;
    this.loaded = next;
    this.log.info('reloaded:', { workers: 1, draining: 1, mode: next.cfg.mode, layout: 'one-process' });
    this.draining.add(old);
    void this.retire(old, next.cfg.idleTimeoutMs).then(() => this.draining.delete(old));
  }

  private async retire(g: Generation, drainMs: number, notAccepting?: () => void): Promise<void> {
    await g.runtime.shutdown(drainMs, notAccepting).catch(() => notAccepting?.());
  }

  /** Stop accepting, drain up to drainMs, close listeners. Idempotent. */
  shutdown(drainMs: number): Promise<void> {
    this.stopping ??= (async () => {
      this.ready = false;
      // Draining generations stopped accepting at their reload; once the current one has too,
      // the listening sockets are shut so that connections made during the drain are refused.
      const shutListeners = (): void => {
        for (const l of [...this.listeners, ...this.proxyListeners]) stopListening(l.fd);
        if (drainMs > 0 && this.current) this.log.info(stoppingLine(drainMs));
      };
      const current = this.current ? [this.retire(this.current, drainMs, shutListeners)] : [];
      if (!this.current) shutListeners();
      await Promise.all([...current, ...[...this.draining].map((g) => this.retire(g, drainMs))]);
      await this.admin?.close();
      for (const l of [...this.listeners, ...this.proxyListeners]) closeFd(l.fd);
      this.listeners = [];
      this.proxyListeners = [];
    })();
    return this.stopping;
  }
}
