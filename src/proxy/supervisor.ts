// `tranproxy run`: the privileged supervisor. Order matters (the seed got this right):
// listeners bound → data plane ready → rules applied → wrapped command started. On the way
// out: stop accepting → drain → rules removed → exit with the command's status.
import { fork, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { PermissionError, SyscallError, TranproxyError } from '../errors.js';
import { closeFd, createListenerFd } from '../kernel/sockets.js';
import { spawnCommand } from '../kernel/exec.js';
import { bridgeNfWarning } from '../firewall/forwarding.js';
import { applyPlan, detectBackend, removeRules, type Backend } from '../firewall/apply.js';
import { capturePlanOf, type RunConfig } from '../config/run-config.js';
import type { Logger } from '../observe/log.js';
import type { Family } from '../firewall/plan.js';
import type { ChildStart, FromChild } from './protocol.js';

const CHILD_ENTRY = fileURLToPath(new URL('./child.js', import.meta.url));

interface Listener {
  fd: number;
  family: 4 | 6;
  label: string;
}

function bindListeners(cfg: RunConfig, log: Logger): Listener[] {
  const out: Listener[] = [];
  for (const fam of cfg.families) {
    const family = fam === 'ipv4' ? 4 : 6;
    const address = family === 4 ? '0.0.0.0' : '::';
    try {
      const fd = createListenerFd({ family, address, port: cfg.listenPort, transparent: cfg.mode === 'tproxy' });
      out.push({ fd, family, label: family === 4 ? `0.0.0.0:${cfg.listenPort}` : `[::]:${cfg.listenPort}` });
    } catch (e) {
      const code = e instanceof SyscallError ? e.code : '';
      if (family === 6 && cfg.families.length === 2 && (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL')) {
        log.warn('IPv6 is not available here; capturing IPv4 only', { error: code });
        continue;
      }
      for (const l of out) closeFd(l.fd);
      if (code === 'EADDRINUSE') {
        throw new TranproxyError(`listen port ${cfg.listenPort} is already in use: stop what holds it or choose another --listen-port`);
      }
      if (code === 'EPERM' || code === 'EACCES') {
        throw new PermissionError(`${(e as Error).message}: TPROXY listeners need root or CAP_NET_ADMIN`);
      }
      throw e;
    }
  }
  return out;
}

export class Supervisor {
  private child: ChildProcess | undefined;
  private listeners: Listener[] = [];
  private backend: Backend | undefined;
  private rulesApplied = false;
  private stopping: Promise<void> | undefined;
  private restarts: number[] = [];

  constructor(
    private readonly cfg: RunConfig,
    private readonly log: Logger,
  ) {}

  /** Runs until signalled or until the wrapped command exits; resolves with the exit status. */
  async run(): Promise<number> {
    const cfg = this.cfg;
    let families: Family[] = cfg.families;
    try {
      if (cfg.firewall !== 'none') this.backend = cfg.firewall === 'auto' ? detectBackend() : cfg.firewall;
      this.listeners = bindListeners(cfg, this.log);
      families = this.listeners.map((l) => (l.family === 4 ? 'ipv4' : 'ipv6'));
      await this.startChild();
      if (cfg.mode === 'tproxy') {
        const warning = bridgeNfWarning();
        if (warning) this.log.warn(warning);
      }
      if (this.backend) {
        this.rulesApplied = true; // set first: a half-applied plan is removed on the way out too
        applyPlan({ ...capturePlanOf(cfg), families }, this.backend);
      }
    } catch (e) {
      await this.shutdown(0);
      throw e;
    }

    this.log.info('ready:', {
      mode: cfg.mode,
      capture: cfg.capture.join(','),
      protocols: cfg.udp ? 'tcp,udp' : 'tcp',
      listen: this.listeners.map((l) => l.label).join(','),
      ports: cfg.ports.length ? cfg.ports.map((p) => (p.from === p.to ? `${p.from}` : `${p.from}-${p.to}`)).join(',') : 'all',
      firewall: this.backend ?? 'none',
      user: cfg.proxyUser ? `${cfg.proxyUser.uid}:${cfg.proxyUser.gid}` : 'self',
      families: families.join(','),
      default: cfg.routing ? cfg.routing.defaultOutbound : undefined,
      nodes: cfg.routing ? Object.keys(cfg.routing.nodes).join(',') || undefined : undefined,
      rules: cfg.routing ? cfg.routing.rules.length : undefined,
      inject: cfg.inject ? [...cfg.inject.headers.map((h) => h.name), ...(cfg.inject.forwardedFor ? [`X-Forwarded-For(${cfg.inject.forwardedFor.mode})`] : [])].join(',') : undefined,
    });

    return new Promise<number>((resolve) => {
      let command: ChildProcess | undefined;
      const finish = (status: number): void => {
        void this.shutdown(5000).then(() => resolve(status));
      };
      const onSignal = (sig: NodeJS.Signals): void => {
        if (command && command.exitCode === null) command.kill(sig); // the command decides; we follow it
        else finish(0);
      };
      for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);
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

  private startChild(): Promise<void> {
    const cfg = this.cfg;
    const child = fork(CHILD_ENTRY, [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...this.listeners.map((l) => l.fd)],
      ...(cfg.proxyUser && process.getuid?.() === 0 ? { uid: cfg.proxyUser.uid, gid: cfg.proxyUser.gid } : {}),
      execArgv: [],
    });
    this.child = child;
    const start: ChildStart = {
      type: 'start',
      logFormat: cfg.logFormat,
      mode: cfg.mode,
      listenPort: cfg.listenPort,
      connectTimeoutMs: cfg.connectTimeoutMs,
      idleTimeoutMs: cfg.idleTimeoutMs,
      maxConnections: cfg.maxConnections,
      // An unprivileged child cannot set SO_MARK; it is excluded by its uid instead.
      outboundMark: cfg.proxyUser ? 0 : cfg.bypassMark,
      preserveSource: cfg.preserveSource,
      inject: cfg.inject,
      resolver: cfg.resolver,
      dstFromHost: cfg.dstFromHost,
      routing: cfg.routing,
      udp: cfg.udp ? { families: this.listeners.map((l) => l.family), idleTimeoutMs: cfg.udpIdleTimeoutMs } : undefined,
      listeners: this.listeners.map((l) => ({ family: l.family, label: l.label })),
    };
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      child.on('message', (m: FromChild) => {
        if (m.type === 'ready') {
          ready = true;
          resolve();
        } else if (m.type === 'failed') reject(new TranproxyError(`data plane failed to start: ${m.message}`));
      });
      child.on('exit', (code, signal) => {
        if (!ready) {
          reject(new TranproxyError(`data plane exited during start-up (${signal ?? `exit ${code}`})`));
          return;
        }
        if (this.stopping) return;
        this.onChildCrash(code, signal);
      });
      child.send(start);
    });
  }

  /** A crashed data plane is restarted on the same listeners; rules stay (fail closed). */
  private onChildCrash(code: number | null, signal: NodeJS.Signals | null): void {
    const now = Date.now();
    this.restarts = this.restarts.filter((t) => now - t < 60_000);
    this.restarts.push(now);
    if (this.restarts.length > 5) {
      this.log.error('data plane keeps crashing; giving up', { exit: code ?? signal ?? '' });
      void this.shutdown(0).then(() => process.exit(1));
      return;
    }
    this.log.error('data plane exited; restarting', { exit: code ?? signal ?? '' });
    this.startChild().catch((e: Error) => this.log.error(e.message));
  }

  /** Stop accepting, drain up to drainMs, remove rules, close listeners. Idempotent. */
  shutdown(drainMs: number): Promise<void> {
    this.stopping ??= (async () => {
      const child = this.child;
      if (child && child.exitCode === null && child.signalCode === null && child.connected) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            child.kill('SIGKILL');
          }, drainMs + 2000);
          child.once('exit', () => {
            clearTimeout(t);
            resolve();
          });
          child.send({ type: 'shutdown', drainMs });
        });
      }
      if (this.rulesApplied) {
        try {
          removeRules();
        } catch (e) {
          this.log.error(`removing rules failed: ${(e as Error).message}; run 'tranproxy rules remove'`);
        }
      }
      for (const l of this.listeners) closeFd(l.fd);
      this.listeners = [];
    })();
    return this.stopping;
  }
}

function signalNumber(sig: NodeJS.Signals): number {
  return os.constants.signals[sig] ?? 0;
}
