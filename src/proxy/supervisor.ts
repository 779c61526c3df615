// `tranproxy run`: the privileged supervisor. Order matters (the seed got this right):
// listeners bound → data plane ready → rules applied → wrapped command started. On the way
// out: stop accepting → drain → rules removed → exit with the command's status.
//
// The data plane is a generation of N worker processes sharing the listening sockets the
// supervisor holds. A reload starts a new generation on the same sockets and lets the old
// one finish its connections: nothing established is dropped, no port is ever unbound.
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { TranproxyError, UsageError } from '../errors.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { closeFd, stopListening } from '../kernel/sockets.js';
import { getFdLimit, raiseFdLimit } from '../kernel/ffi.js';
import { FdReserve, spawnCommand } from '../kernel/exec.js';
import { forkModule, idMapped, type DropSpec } from '../kernel/privdrop.js';
import { dataPlanePrivileges } from './privileges.js';
import { missingPlugins, setPluginUser, stopIdlePluginsAfter } from '../outbound/sip003.js';
import { bridgeNfWarning } from '../firewall/forwarding.js';
import { applyPlan, detectBackend, removeRules, showRules, type Backend } from '../firewall/apply.js';
import type { RunConfig } from '../config/run-config.js';
import { capturePlanOf } from '../config/capture-plan.js';
import type { Logger } from '../observe/log.js';
import type { LogEntry, LogRing } from '../observe/log-ring.js';
import type { Family } from '../firewall/plan.js';
import {
  FIRST_LISTENER_FD,
  type ChildStart,
  type FromChild,
  type QueryKind,
  type RelayPath,
  type ToChild,
} from './protocol.js';
import type { SupervisorMetrics, MetricsSnapshot } from '../observe/metrics.js';
import { startAdminServer, type AdminServer } from '../observe/admin.js';
import type { ConnectionInfo, LiveAnswer } from './dataplane.js';
import { TrafficTotals, type ClosedRow, type WorkerTraffic } from '../observe/traffic.js';
import type { Bytes } from '../observe/flow-stats.js';
import { bindListeners, bindProxyListeners, transparentListeners, workerLayout, type Listener } from './listeners.js';
import { readyFields, stoppingLine } from './ready-line.js';
import type { GroupState } from '../outbound/group.js';
import { ListFile } from './rule-lists.js';

const CHILD_ENTRY = fileURLToPath(new URL('./child.js', import.meta.url));

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** One data-plane worker process. */
class Worker {
  readonly ready: Promise<void>;
  private nextQuery = 1;
  private readonly pending = new Map<number, (data: unknown) => void>();
  exited = false;
  /** How its flows are relayed, from its ready message. */
  relay: RelayPath | undefined;
  /** Settles once it no longer accepts (asked to stop, or gone). */
  readonly notAccepting: Promise<void>;
  private onNotAccepting!: () => void;

  constructor(
    readonly child: ChildProcess,
    start: ChildStart,
    onExit: (w: Worker, code: number | null, signal: NodeJS.Signals | null, wasReady: boolean) => void,
  ) {
    let wasReady = false;
    this.notAccepting = new Promise<void>((r) => (this.onNotAccepting = r));
    this.ready = new Promise<void>((resolve, reject) => {
      child.on('message', (m: FromChild) => {
        if (m.type === 'ready') {
          wasReady = true;
          this.relay = m.relay;
          resolve();
        } else if (m.type === 'not-accepting') this.onNotAccepting();
        else if (m.type === 'failed') reject(new TranproxyError(`data plane failed to start: ${m.message}`));
        else if (m.type === 'answer') {
          this.pending.get(m.id)?.(m.data);
          this.pending.delete(m.id);
        }
      });
      child.on('exit', (code, signal) => {
        this.exited = true;
        this.onNotAccepting();
        for (const answer of this.pending.values()) answer(undefined);
        this.pending.clear();
        if (!wasReady) reject(new TranproxyError(`data plane exited during start-up (${signal ?? `exit ${code}`})`));
        onExit(this, code, signal, wasReady);
      });
    });
    this.ready.catch(() => {});
    // A send to a worker whose channel is closing (it is exiting after a drain) fails with
    // EPIPE, reported as an 'error' event: without a listener that would end the supervisor.
    // The failed send's own callback deals with it; 'exit' follows.
    child.on('error', () => {});
    this.send(start);
  }

  /** child.send that never throws or emits; onFailed runs when the worker cannot get it. */
  private send(message: ToChild, onFailed?: () => void): void {
    if (this.exited || !this.child.connected) return onFailed?.();
    try {
      this.child.send(message, (err) => {
        if (err) onFailed?.();
      });
    } catch {
      onFailed?.();
    }
  }

  /** Ask the worker for a snapshot; undefined if it is gone or silent for 2 s. */
  query(what: QueryKind): Promise<unknown> {
    return this.ask((id) => ({ type: 'query', id, what }));
  }

  /** Send a request carrying a fresh id; its answer, or undefined if gone or silent for 2 s. */
  ask(message: (id: number) => ToChild): Promise<unknown> {
    if (this.exited || !this.child.connected) return Promise.resolve(undefined);
    const id = this.nextQuery++;
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.pending.delete(id);
        resolve(undefined);
      }, 2000);
      const answer = (d: unknown): void => {
        clearTimeout(t);
        this.pending.delete(id);
        resolve(d);
      };
      this.pending.set(id, answer);
      this.send(message(id), () => answer(undefined));
    });
  }

  /** Stop accepting, let connections finish for up to drainMs, then exit. */
  stop(drainMs: number): Promise<void> {
    const child = this.child;
    if (this.exited || !child.connected) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => child.kill('SIGKILL'), drainMs + 2000);
      child.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      this.send({ type: 'shutdown', drainMs }, () => child.kill('SIGKILL'));
    });
  }
}

export interface SupervisorOptions {
  /** The settings a reload must keep (FIXED_ON_RELOAD; passed in: the option parsers stay out of this process). */
  fixedOnReload: readonly (keyof RunConfig)[];
  /** Re-reads the configuration (file + flags) for SIGHUP; throws (rejects) on a bad config. */
  reload?: () => RunConfig | Promise<RunConfig>;
  /** Started once the proxy is ready (the web console), closed on shutdown. */
  services?: (ctl: SupervisorControl) => Promise<{ close(): Promise<void> }>;
  /** The supervisor's own log lines (its logger writes there); workers' lines are merged in by logs(). */
  logRing?: LogRing;
}

/** An active connection with the worker (pid) that holds it. */
export interface WorkerConnection extends ConnectionInfo {
  worker: number;
}

/** Live flows with their rates, throughput and totals from live counters, the last closed flows. */
export interface LiveView {
  t: number;
  flows: (WorkerConnection & { rate: Bytes })[];
  /** Bytes per second over every worker, now. */
  rate: Bytes;
  /** Bytes moved since the supervisor started. */
  totals: Bytes;
  byNode: Record<string, Bytes>;
  /** Newest first. */
  closed: ClosedRow[];
}

/** What the web console may do with a running supervisor. */
export interface SupervisorControl {
  /** The configuration in force. */
  config(): RunConfig;
  /** Apply a configuration the way SIGHUP does; rejects with the reason, the running state kept. */
  apply(next: RunConfig): Promise<void>;
  connections(): Promise<WorkerConnection[]>;
  /** Flows, rates and totals from live counters (kernel-relayed flows included). */
  live?(): Promise<LiveView>;
  metricSnapshots(): Promise<MetricsSnapshot[]>;
  closeConnection(worker: number, id: number): Promise<boolean>;
  /** Node groups and their chosen members, as the first worker sees them. */
  groups?(): Promise<GroupState[]>;
  /** Choose the member of a select group in every worker; rejects with the reason. */
  selectGroup?(group: string, member: string): Promise<void>;
  /** Workers whose DNS cache was cleared. */
  flushDns(): Promise<number>;
  /** Every process's recent log lines, merged (workers' new lines pulled now); undefined: none kept. */
  logs?(): Promise<LogRing | undefined>;
  /** Whether tranproxy's rules are in the kernel right now (asks the kernel). */
  rulesInKernel(): boolean;
  /** Called after every configuration applied (SIGHUP or console); returns an unsubscribe. */
  onApplied(fn: () => void): () => void;
}

export class Supervisor implements SupervisorControl {
  private workers: Worker[] = [];
  private draining = new Set<Worker>();
  private listeners: Listener[] = [];
  private proxyListeners: Listener[] = [];
  private families: Family[] = [];
  private backend: Backend | undefined;
  private rulesApplied = false;
  private ready = false;
  private admin: AdminServer | undefined;
  private services: { close(): Promise<void> } | undefined;
  /** Applies (SIGHUP, console) one at a time. */
  private applying: Promise<unknown> = Promise.resolve();
  private readonly appliedListeners = new Set<() => void>();
  private stopping: Promise<void> | undefined;
  private restarts: number[] = [];
  /** Only for an admin API (its /metrics): prom-client stays out of a supervisor without one. */
  private metrics: SupervisorMetrics | undefined;
  private quit: ((status: number) => void) | undefined;
  /** Spare descriptors for nft/ip/fork when a flood used up the rest (see FdReserve). */
  private spare: FdReserve | undefined;
  /** Members chosen in select groups from the console: group → member. */
  private readonly selected = new Map<string, string>();
  /** Each starting or running generation's config as it crosses to its workers, with its list file. */
  private readonly wire = new Map<RunConfig, { cfg: RunConfig; file: ListFile | undefined }>();

  constructor(
    private cfg: RunConfig,
    private readonly log: Logger,
    private readonly opts: SupervisorOptions,
  ) {}

  /** Runs until signalled or until the wrapped command exits; resolves with the exit status. */
  async run(): Promise<number> {
    const cfg = this.cfg;
    // Signals are ours from the first moment: one arriving during start-up (or in the ~2 ms
    // Node takes to install a handler) would otherwise end the process with its rules in
    // place. It is acted on once start-up is over.
    const early: NodeJS.Signals[] = [];
    const onEarly = (sig: NodeJS.Signals): void => void early.push(sig);
    for (const sig of SIGNALS) process.on(sig, onEarly);
    try {
      this.checkFdLimit();
      if (cfg.admin) this.metrics = new (await import('../observe/metrics.js')).SupervisorMetrics();
      this.spare = new FdReserve();
      if (cfg.firewall !== 'none') this.backend = cfg.firewall === 'auto' ? detectBackend() : cfg.firewall;
      this.listeners = bindListeners(cfg, this.log);
      this.families = this.listeners.map((l) => (l.family === 4 ? 'ipv4' : 'ipv6'));
      this.proxyListeners = bindProxyListeners(cfg);
      this.workers = await this.startGeneration(cfg);
      if (cfg.mode === 'tproxy') {
        const warning = bridgeNfWarning();
        if (warning) this.log.warn(warning);
      }
      if (cfg.enabled) this.applyRules(cfg);
      else if (this.backend) removeRules(); // switched off: not even a crashed run's leftovers stay
      if (cfg.admin) {
        this.admin = await startAdminServer(
          cfg.admin,
          {
            ready: () => this.ready,
            metrics: async () => ({
              contentType: this.metrics!.contentType,
              body: await this.metrics!.render(await this.collect<MetricsSnapshot>('metrics')),
            }),
            connections: async () => (await this.live()).flows,
            groups: () => this.groups(),
            closeConnection: (worker, id) => this.closeConnection(worker, id),
            quit: () => this.quit?.(0),
          },
          this.log,
        ).catch((e: NodeJS.ErrnoException) => {
          throw new TranproxyError(
            `admin listener ${cfg.admin!.host}:${cfg.admin!.port}: ${e.code ?? e.message}: choose another --admin address`,
          );
        });
      }
      if (this.opts.services) this.services = await this.opts.services(this);
    } catch (e) {
      for (const sig of SIGNALS) process.removeListener(sig, onEarly);
      await this.shutdown(0);
      throw e;
    }
    this.ready = true;

    return new Promise<number>((resolve) => {
      let command: ChildProcess | undefined;
      const finish = (status: number): void => {
        void this.shutdown(this.cfg.drainTimeoutMs).then(() => resolve(status));
      };
      this.quit = finish;
      const onSignal = (sig: NodeJS.Signals): void => {
        if (command && command.exitCode === null)
          command.kill(sig); // the command decides; we follow it
        else if (sig === 'SIGHUP') void this.reload();
        else finish(0);
      };
      for (const sig of SIGNALS) {
        process.on(sig, onSignal);
        process.removeListener(sig, onEarly);
      }
      // 'ready' promises that a signal from now on is handled.
      this.logReady(cfg);
      const stopEarly = early.find((s) => s !== 'SIGHUP');
      if (stopEarly) return onSignal(stopEarly);
      if (cfg.command.length > 0) {
        command = spawnCommand(cfg.command);
        command.on('error', (e: NodeJS.ErrnoException) => {
          this.log.error(`cannot run ${cfg.command[0]}: ${e.code === 'ENOENT' ? 'command not found' : e.message}`);
          finish(127);
        });
        command.on('exit', (code, signal) => {
          finish(code ?? 128 + (signal ? signalNumber(signal) : 0));
        });
      }
    });
  }

  private fdLimit = 0;

  /** Raise the fd limit to its hard cap; each proxied connection needs two descriptors. */
  private checkFdLimit(): void {
    try {
      this.fdLimit = raiseFdLimit().soft;
    } catch {
      this.fdLimit = getFdLimit().soft;
    }
    const perWorker = Math.ceil(this.cfg.maxConnections / this.cfg.workers);
    const needed = perWorker * 2 + 64;
    if (needed > this.fdLimit) {
      this.log.warn(
        `file descriptor limit ${this.fdLimit} is below what --max-connections ${this.cfg.maxConnections} needs (${needed} per worker); connections beyond ~${Math.floor((this.fdLimit - 64) / 2)} per worker are refused`,
      );
    }
  }

  private logReady(cfg: RunConfig): void {
    for (const warning of missingPlugins(cfg.routing?.nodes ?? {})) this.log.warn(warning);
    stopIdlePluginsAfter(60_000); // plugins here serve only the console's node tests
    this.log.info(
      'ready:',
      readyFields(cfg, {
        listeners: this.listeners,
        proxyListeners: this.proxyListeners,
        firewall: this.backend ?? 'none',
        user: this.workerUser,
        caps: this.workerCaps,
        families: this.families,
        relay: this.workers[0]?.relay,
        fdLimit: this.fdLimit,
        admin: this.admin?.address,
      }),
    );
  }

  private applyRules(cfg: RunConfig): void {
    if (!this.backend) return;
    this.rulesApplied = true; // set first: a half-applied plan is removed on the way out too
    try {
      applyPlan({ ...capturePlanOf(cfg), families: this.families }, this.backend);
      this.metrics?.ruleApplies.inc();
    } catch (e) {
      this.metrics?.ruleErrors.inc();
      throw e;
    }
  }

  private async collect<T>(what: QueryKind): Promise<T[]> {
    const answers = await Promise.all([...this.workers, ...this.draining].map((w) => w.query(what)));
    return answers.filter((a): a is T => a !== undefined);
  }

  config(): RunConfig {
    return this.cfg;
  }

  async connections(): Promise<WorkerConnection[]> {
    const all = [...this.workers, ...this.draining];
    const answers = await Promise.all(all.map((w) => w.query('connections')));
    return answers.flatMap((a, i) =>
      Array.isArray(a) ? (a as ConnectionInfo[]).map((c) => ({ ...c, worker: all[i]!.child.pid ?? 0 })) : [],
    );
  }

  metricSnapshots(): Promise<MetricsSnapshot[]> {
    return this.collect<MetricsSnapshot>('metrics');
  }

  async groups(): Promise<GroupState[]> {
    const w = this.workers[0];
    const a = w ? await w.query('groups') : undefined;
    return Array.isArray(a) ? (a as GroupState[]) : [];
  }

  async selectGroup(group: string, member: string): Promise<void> {
    await this.selectIn(this.workers, group, member);
    this.selected.set(group, member);
  }

  private async selectIn(workers: Worker[], group: string, member: string): Promise<void> {
    const answers = await Promise.all(
      workers.map((w) => w.ask((q) => ({ type: 'select-group', id: q, group, member }))),
    );
    const failed = answers.find((a) => (a as { ok?: boolean } | undefined)?.ok !== true) as
      | { error?: string }
      | undefined;
    if (failed) throw new UsageError(failed.error ?? `group '${group}': no answer from the data plane`);
  }

  /** A new generation keeps the members chosen in select groups (those that still exist). */
  private async keepSelections(workers: Worker[]): Promise<void> {
    for (const [group, member] of this.selected)
      await this.selectIn(workers, group, member).catch(() => this.selected.delete(group));
  }

  async closeConnection(worker: number, id: number): Promise<boolean> {
    const w = [...this.workers, ...this.draining].find((x) => x.child.pid === worker);
    return (await w?.ask((q) => ({ type: 'close-connection', id: q, conn: id }))) === true;
  }

  private readonly traffic = new TrafficTotals();
  private livePoll: Promise<LiveView> | undefined;
  private lastLive: LiveView | undefined;

  /** Polls every worker once (callers within 250 ms share one poll). */
  live(): Promise<LiveView> {
    if (this.lastLive && Date.now() - this.lastLive.t < 250) return Promise.resolve(this.lastLive);
    this.livePoll ??= this.pollLive().finally(() => {
      this.livePoll = undefined;
    });
    return this.livePoll;
  }

  private async pollLive(): Promise<LiveView> {
    const all = [...this.workers, ...this.draining];
    const answers = await Promise.all(
      all.map((w) => w.ask((id) => ({ type: 'live', id, closedAfter: this.traffic.cursor(w.child.pid ?? 0) }))),
    );
    const flows: WorkerConnection[] = [];
    const updates: WorkerTraffic[] = [];
    answers.forEach((a, i) => {
      const answer = a as LiveAnswer | undefined;
      if (!answer?.traffic || !Array.isArray(answer.flows)) return;
      const pid = all[i]!.child.pid ?? 0;
      for (const f of answer.flows) flows.push({ ...f, worker: pid });
      const bytes = answer.flows.map((f) => ({ key: `${pid}-${f.id}`, up: f.up ?? 0, down: f.down ?? 0 }));
      updates.push({ pid, traffic: answer.traffic, flows: bytes });
    });
    const t = Date.now();
    this.traffic.update(t, updates);
    this.lastLive = {
      t,
      flows: flows.map((f) => ({ ...f, rate: this.traffic.flowRate(`${f.worker}-${f.id}`) })),
      rate: this.traffic.rate(),
      totals: this.traffic.totals(),
      byNode: this.traffic.byNode(),
      closed: this.traffic.recentlyClosed(),
    };
    return this.lastLive;
  }

  private logCursor = new WeakMap<Worker, number>();
  private pulling: Promise<LogRing | undefined> | undefined;

  logs(): Promise<LogRing | undefined> {
    const ring = this.opts.logRing;
    if (!ring) return Promise.resolve(undefined);
    // One pull at a time: two at once would copy the same lines twice.
    this.pulling ??= this.pullLogs(ring).finally(() => {
      this.pulling = undefined;
    });
    return this.pulling;
  }

  private async pullLogs(ring: LogRing): Promise<LogRing> {
    const all = [...this.workers, ...this.draining];
    const answers = await Promise.all(
      all.map((w) => w.ask((id) => ({ type: 'logs', id, after: this.logCursor.get(w) ?? 0 }))),
    );
    answers.forEach((a, i) => {
      if (!Array.isArray(a) || a.length === 0) return;
      const w = all[i]!;
      for (const e of a as LogEntry[]) ring.push(e.level, e.text, e.t, w.child.pid);
      this.logCursor.set(w, (a[a.length - 1] as LogEntry).seq);
    });
    return ring;
  }

  async flushDns(): Promise<number> {
    return (await this.collect<boolean>('dns-flush')).filter(Boolean).length;
  }

  onApplied(fn: () => void): () => void {
    this.appliedListeners.add(fn);
    return () => this.appliedListeners.delete(fn);
  }

  rulesInKernel(): boolean {
    return this.backend !== undefined && showRules() !== '';
  }

  /** SIGHUP: re-read the file and apply it; a bad file is logged and the running state kept. */
  private async reload(): Promise<void> {
    if (!this.opts.reload) {
      this.log.warn('SIGHUP: nothing to reload (no --config); ignored');
      return;
    }
    let next: RunConfig;
    this.spare?.release(); // reading the file needs a descriptor, even after a flood
    try {
      next = await this.opts.reload();
    } catch (e) {
      this.spare?.refill();
      this.metrics?.reloads.inc({ result: 'rejected' });
      this.log.error(`reload rejected, keeping the running configuration: ${(e as Error).message}`);
      return;
    }
    await this.apply(next).catch(() => {}); // apply logged it
  }

  /**
   * A new generation with `next`; the old one finishes its connections. Rules follow
   * `next.enabled`. Rejects (and logs) when `next` cannot be applied; the running
   * configuration, workers and rules are then as they were.
   */
  apply(next: RunConfig): Promise<void> {
    const run = this.applying.then(() => this.applyNow(next));
    this.applying = run.catch(() => {});
    return run;
  }

  private async applyNow(next: RunConfig): Promise<void> {
    if (this.stopping) throw new TranproxyError('tranproxy is shutting down');
    // Workers to fork and rules to apply need descriptors, even after a flood took the rest.
    this.spare?.release();
    try {
      await this.applyWith(next);
    } finally {
      if (!this.stopping) this.spare?.refill();
    }
  }

  private async applyWith(next: RunConfig): Promise<void> {
    // The mode can change live when the listeners are transparent (see transparentListeners).
    // udp may change: the new generation opens (or not) its UDP listeners and the plan adds
    // (or drops) the UDP rules; the old generation closes its UDP socket as it starts draining.
    const fixed = this.opts.fixedOnReload.filter((k) => k !== 'mode' || !transparentListeners(this.cfg));
    // Proxy mode's listeners are bound once; its credentials may change.
    if (JSON.stringify(next.proxyMode?.listen) !== JSON.stringify(this.cfg.proxyMode?.listen)) fixed.push('proxyMode');
    const changed = fixed.filter((k) => JSON.stringify(next[k]) !== JSON.stringify(this.cfg[k]));
    if (changed.length) {
      this.metrics?.reloads.inc({ result: 'rejected' });
      const e = new TranproxyError(`${changed.join(', ')} cannot change on reload: restart tranproxy`);
      this.log.error(`reload rejected, keeping the running configuration: ${e.message}`);
      throw e;
    }
    let fresh: Worker[];
    // The DNS forwarder's port cannot be shared (no SO_REUSEPORT in Node 20): the old
    // generation lets go of it just before the new one starts, and takes it back on failure.
    const dnsHandover = this.cfg.routing?.dns !== undefined && next.routing?.dns !== undefined;
    if (dnsHandover) await Promise.all(this.workers.map((w) => w.query('dns-release')));
    const restoreDns = async () => {
      if (dnsHandover) await Promise.all(this.workers.map((w) => w.query('dns-restore')));
    };
    try {
      fresh = await this.startGeneration(next);
      await this.keepSelections(fresh);
    } catch (e) {
      this.dropWireBut(this.cfg);
      await restoreDns();
      this.metrics?.reloads.inc({ result: 'failed' });
      this.log.error(`reload failed, keeping the running configuration: ${(e as Error).message}`);
      throw e;
    }
    try {
      this.applyRulesFor(next);
    } catch (e) {
      await Promise.all(fresh.map((w) => w.stop(0)));
      this.dropWireBut(this.cfg);
      await restoreDns();
      // applyPlan removed everything (fail closed); put the running plan back.
      try {
        this.rulesApplied = false;
        if (this.cfg.enabled) this.applyRules(this.cfg);
      } catch (e2) {
        this.log.error(`restoring the previous rules failed: ${(e2 as Error).message}`);
      }
      this.metrics?.reloads.inc({ result: 'failed' });
      this.log.error(`reload failed, keeping the running configuration: ${(e as Error).message}`);
      throw e;
    }
    const old = this.workers;
    this.workers = fresh;
    this.cfg = next;
    this.dropWireBut(next);
    this.metrics?.reloads.inc({ result: 'ok' });
    this.log.info('reloaded:', {
      workers: fresh.length,
      draining: old.length,
      mode: next.mode,
      protocols: next.udp ? 'tcp,udp' : 'tcp',
      rules: next.routing?.rules.length,
      nodes: next.routing ? Object.keys(next.routing.nodes).join(',') : undefined,
      capture: next.enabled ? 'on' : 'off',
    });
    // Established connections stay on the old workers until they end (or the idle timeout).
    for (const w of old) {
      this.draining.add(w);
      void w.stop(next.idleTimeoutMs).then(() => this.draining.delete(w));
    }
    for (const fn of this.appliedListeners) fn();
  }

  /** Rules for `next`: applied (if the plan changed or none are in), or removed when disabled. */
  private applyRulesFor(next: RunConfig): void {
    if (!this.backend) return;
    if (!next.enabled) {
      if (this.rulesApplied) {
        removeRules();
        this.rulesApplied = false;
      }
      return;
    }
    const planChanged = JSON.stringify(capturePlanOf(next)) !== JSON.stringify(capturePlanOf(this.cfg));
    if (planChanged || !this.rulesApplied) this.applyRules(next);
  }

  private startGeneration(cfg: RunConfig): Promise<Worker[]> {
    const workers = Array.from({ length: workerLayout(cfg).processes }, () => this.startWorker(cfg));
    return Promise.all(workers.map((w) => w.ready)).then(
      () => workers,
      async (e) => {
        await Promise.all(workers.map((w) => w.stop(0)));
        throw e;
      },
    );
  }

  private workerUser = 'self';
  private workerCaps = 'inherited';

  /**
   * The user and capabilities the workers drop to (see privileges.ts); undefined when this
   * process cannot drop (not root, or the user is not mapped in this user namespace).
   */
  private workerDrop(cfg: RunConfig): { drop: DropSpec | undefined; mark: number } {
    const p = dataPlanePrivileges(cfg);
    if (process.getuid?.() !== 0 || !idMapped(p.drop.uid, 'uid') || !idMapped(p.drop.gid, 'gid')) {
      this.workerUser = 'self';
      this.workerCaps = 'inherited';
      return { drop: undefined, mark: cfg.proxyUser ? 0 : cfg.bypassMark };
    }
    this.workerUser = `${p.drop.uid}:${p.drop.gid}`;
    this.workerCaps = p.drop.caps.join(',') || 'none';
    setPluginUser({ uid: p.drop.uid, gid: p.drop.gid }); // plugins the console's node tests start here
    return p;
  }

  /** `cfg` as its workers get it: packed once per generation, kept while the generation may start a worker. */
  private wireOf(cfg: RunConfig): { cfg: RunConfig; file: ListFile | undefined } {
    let w = this.wire.get(cfg);
    if (!w) {
      w = ListFile.of(cfg);
      this.wire.set(cfg, w);
    }
    return w;
  }

  /** Lets go of the list file of every generation but the running one (`keep`). */
  private dropWireBut(keep: RunConfig | undefined): void {
    for (const [cfg, w] of this.wire) {
      if (cfg === keep) continue;
      w.file?.close();
      this.wire.delete(cfg);
    }
  }

  private startWorker(cfg: RunConfig): Worker {
    const priv = this.workerDrop(cfg);
    const wire = this.wireOf(cfg);
    const fds = [...this.listeners, ...this.proxyListeners].map((l) => l.fd);
    const lists = wire.file ? { fd: FIRST_LISTENER_FD + fds.length, length: wire.file.length } : undefined;
    const child = forkModule(
      CHILD_ENTRY,
      {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...fds, ...(wire.file ? [wire.file.fd] : [])],
        // A small young generation: garbage from connections handed to the splice engine no
        // longer keeps megabytes resident (idle RSS per connection, issue 6).
        execArgv: ['--max-semi-space-size=1'],
      },
      priv.drop,
    );
    const start: ChildStart = {
      type: 'start',
      cfg: wire.cfg,
      worker: {
        ...(lists ? { lists } : {}),
        // A worker restarted after a crash, or a new generation, starts with the choices made.
        ...(this.selected.size ? { selected: Object.fromEntries(this.selected) } : {}),
        // Refuse cleanly at the fd budget rather than fail accept/connect with EMFILE.
        maxConnections: Math.min(
          Math.ceil(cfg.maxConnections / workerLayout(cfg).processes),
          Math.max(1, Math.floor((this.fdLimit - 64) / 2)),
        ),
        // Excluded by its uid, or marked (SO_MARK, with CAP_NET_ADMIN) where output capture could catch it.
        outboundMark: priv.mark,
        engineThreads: workerLayout(cfg).threads,
        listeners: this.listeners.map((l) => ({ family: l.family, label: l.label })),
        proxyListeners: this.proxyListeners.map((l) => ({ family: l.family, label: l.label })),
      },
    };
    return new Worker(child, start, (w, code, signal, wasReady) => {
      if (this.stopping || !wasReady || this.draining.has(w)) return;
      const i = this.workers.indexOf(w);
      if (i < 0) return;
      this.onWorkerCrash(i, code, signal);
    });
  }

  /** A crashed worker is replaced on the same listeners; rules stay (fail closed). */
  private onWorkerCrash(index: number, code: number | null, signal: NodeJS.Signals | null): void {
    const now = Date.now();
    this.restarts = this.restarts.filter((t) => now - t < 60_000);
    this.restarts.push(now);
    if (this.restarts.length > 5) {
      this.log.error('data plane keeps crashing; giving up', { exit: code ?? signal ?? '' });
      void this.shutdown(0).then(() => process.exit(1));
      return;
    }
    this.log.error('data plane exited; restarting', { exit: code ?? signal ?? '' });
    const w = this.startWorker(this.cfg);
    this.workers[index] = w;
    w.ready.catch((e: Error) => this.log.error(e.message));
  }

  /**
   * Once every worker stopped accepting (2 s at most), the listening sockets are shut: a
   * connection made during the drain is refused at once instead of waiting in the backlog.
   */
  private async stopListening(workers: Worker[]): Promise<void> {
    await Promise.race([Promise.all(workers.map((w) => w.notAccepting)), sleep(2000, undefined, { ref: false })]);
    for (const l of [...this.listeners, ...this.proxyListeners]) stopListening(l.fd);
  }

  /** Stop accepting, drain up to drainMs, remove rules, close listeners. Idempotent. */
  shutdown(drainMs: number): Promise<void> {
    this.stopping ??= (async () => {
      this.ready = false;
      const workers = [...this.workers, ...this.draining];
      const stopped = Promise.all(workers.map((w) => w.stop(drainMs)));
      await this.stopListening(workers);
      if (drainMs > 0 && workers.length > 0) this.log.info(stoppingLine(drainMs));
      await stopped;
      this.spare?.release(); // no await until removeRules: nothing else can take them
      if (this.rulesApplied) {
        try {
          removeRules();
        } catch (e) {
          this.metrics?.ruleErrors.inc();
          this.log.error(`removing rules failed: ${(e as Error).message}; run 'tranproxy rules remove'`);
        }
      }
      await this.services?.close();
      await this.admin?.close();
      for (const l of [...this.listeners, ...this.proxyListeners]) closeFd(l.fd);
      this.dropWireBut(undefined);
      this.listeners = [];
      this.proxyListeners = [];
    })();
    return this.stopping;
  }
}

function signalNumber(sig: NodeJS.Signals): number {
  return os.constants.signals[sig] ?? 0;
}
