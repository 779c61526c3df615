// Imperative virtual-network builder: named netns "hosts", veth links, routes, processes.
// Used by the e2e tests and by `tranproxy demo`. Everything a Lab creates is named
// `${prefix}-…` and is removed by destroy(), on Ctrl-C/SIGTERM/exit, or — if the owning
// process died without cleaning up — by sweepStaleLabs() on the next Lab.create().
import { randomInt } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { UsageError } from '../errors.js';
import { pidAlive, runSync } from '../kernel/exec.js';
import { runInNetns, spawnInNetns } from '../kernel/netns-spawn.js';
import { killAndDeleteNetns, signalIfAlive } from './netns.js';

export interface RunOpts {
  input?: string;
  /** Merged over process.env. */
  env?: NodeJS.ProcessEnv;
  /** Run as this uid/gid (e.g. to test owner-based capture exclusion). */
  uid?: number;
  gid?: number;
  allowFailure?: boolean;
  /** Default 60 s; on expiry the program is killed and the result has status null. */
  timeoutMs?: number;
}

export interface SpawnOpts {
  /** Merged over process.env. */
  env?: NodeJS.ProcessEnv;
  uid?: number;
  gid?: number;
}

export interface Host {
  readonly name: string;
  readonly netns: string;
  /** `dest` is a CIDR or 'default'; the family follows `via`. Replaces an existing route. */
  addRoute(dest: string, via: string): void;
  /** Set a sysctl inside this host's netns only. */
  sysctl(key: string, value: string): void;
  /** ipv4 + ipv6 forwarding inside the netns. */
  enableForwarding(): void;
  /** Run a program to completion inside the netns. Throws ToolFailedError unless allowFailure. */
  run(cmd: string, args: string[], opts?: RunOpts): Promise<{ status: number | null; stdout: string; stderr: string }>;
  /** Start a long-running program inside the netns; the Lab stops it on destroy. */
  spawn(cmd: string, args: string[], opts?: SpawnOpts): LabProcess;
}

export interface LabProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  /** stdout and stderr so far, interleaved in arrival order. */
  output(): string;
  /** Resolves with the first match of `re` in the output (m[0]); rejects on timeout
   *  (default 10 s) or if the process exits first. The error carries the output. */
  waitForOutput(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Signal the process group (default SIGTERM), SIGKILL after 3 s; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const DEFAULT_TAG = 'tpxlab';
const TAG_RE = /^[a-z][a-z0-9]{0,7}$/;
const HOST_RE = /^[a-z0-9][a-z0-9_.-]{0,31}$/i;
const OUTPUT_CAP = 4 << 20; // keep the last 4 MiB of a process's output
const STOP_GRACE_MS = 3000;

/** Netns names this tool made: `${tag}-${base36 pid}-${4 random}-${host}`. */
function labRe(tag: string): RegExp {
  return new RegExp(`^${tag}-([0-9a-z]{1,7})-[0-9a-z]{4}-`);
}

function listNetns(): string[] {
  const out = runSync('ip', ['netns', 'list'], { allowFailure: true }).stdout;
  return out
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);
}

/** killAndDeleteNetns for cleanup paths, which must never throw. */
function removeNetns(netns: string): void {
  try {
    killAndDeleteNetns(netns);
  } catch {
    /* never throw from cleanup */
  }
}

/**
 * Remove netns left by crashed runs: names of our scheme for `tag` whose owning pid is gone.
 * Returns the names removed.
 */
export function sweepStaleLabs(tag: string = DEFAULT_TAG): string[] {
  const re = labRe(tag);
  const removed: string[] = [];
  for (const ns of listNetns()) {
    const m = re.exec(ns);
    if (!m || pidAlive(parseInt(m[1]!, 36))) continue;
    removeNetns(ns);
    removed.push(ns);
  }
  return removed;
}

class LabProcessImpl implements LabProcess {
  readonly pid: number;
  private buf = '';
  private exited = false;
  private waiters = new Set<() => void>();
  private readonly exitPromise: Promise<void>;

  constructor(
    readonly child: ChildProcess,
    private readonly label: string,
  ) {
    this.pid = child.pid ?? -1;
    const onData = (d: string) => {
      this.buf += d;
      if (this.buf.length > OUTPUT_CAP) this.buf = this.buf.slice(-OUTPUT_CAP);
      for (const w of this.waiters) w();
    };
    child.stdout?.setEncoding('utf8').on('data', onData);
    child.stderr?.setEncoding('utf8').on('data', onData);
    child.stdin?.on('error', () => {});
    this.exitPromise = new Promise((resolve) => {
      const done = () => {
        if (this.exited) return;
        this.exited = true;
        for (const w of this.waiters) w();
        resolve();
      };
      // 'exit' can come before the last output is read: wait for the pipes to close, or
      // briefly when a grandchild (a daemon) keeps them open.
      child.once('exit', () => {
        const grace = setTimeout(done, 500);
        child.once('close', () => {
          clearTimeout(grace);
          done();
        });
      });
      // Spawn failure (e.g. no `ip`): there is no process to wait for.
      child.once('error', (err) => {
        this.buf += `\n${err.message}`;
        if (this.pid < 0 || child.exitCode !== null) done();
      });
    });
  }

  get alive(): boolean {
    return !this.exited && this.pid > 0;
  }

  output(): string {
    return this.buf;
  }

  waitForOutput(re: RegExp, timeoutMs = 10_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = this.buf.match(re);
        if (m) return finish(() => resolve(m[0]));
        if (this.exited) {
          finish(() =>
            reject(
              new Error(
                `${this.label} exited (${this.child.exitCode ?? this.child.signalCode}) before printing ${re}; output:\n${this.buf}`,
              ),
            ),
          );
        }
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(`${this.label}: no ${re} after ${timeoutMs} ms; output:\n${this.buf}`))),
        timeoutMs,
      );
      const finish = (f: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        f();
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Wait for exit, at most `ms`; true when it exited. */
  waitExit(ms: number): Promise<boolean> {
    if (this.exited) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), ms);
      void this.exitPromise.then(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  /** Signal the whole group (it leads one): reaches what it forked too. */
  signal(sig: NodeJS.Signals): void {
    if (this.alive) signalIfAlive(-this.pid, sig);
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    this.signal(signal);
    if (!(await this.waitExit(STOP_GRACE_MS))) {
      this.signal('SIGKILL');
      await this.waitExit(STOP_GRACE_MS);
    }
    return this.child.exitCode;
  }
}

class HostImpl implements Host {
  nextIf = 0;
  constructor(
    readonly name: string,
    readonly netns: string,
    private readonly lab: Lab,
  ) {}

  addRoute(dest: string, via: string): void {
    const fam = via.includes(':') ? '-6' : '-4';
    runSync('ip', [fam, '-n', this.netns, 'route', 'replace', dest, 'via', via]);
  }

  sysctl(key: string, value: string): void {
    runSync('sysctl', ['-qw', `${key}=${value}`], { netns: this.netns });
  }

  enableForwarding(): void {
    this.sysctl('net.ipv4.ip_forward', '1');
    this.sysctl('net.ipv6.conf.all.forwarding', '1');
  }

  run(cmd: string, args: string[], opts: RunOpts = {}) {
    return runInNetns(this.netns, cmd, args, { ...opts, timeoutMs: opts.timeoutMs ?? 60_000 });
  }

  spawn(cmd: string, args: string[], opts: SpawnOpts = {}): LabProcess {
    return this.lab.track(new LabProcessImpl(spawnInNetns(this.netns, cmd, args, opts), `${this.name}: ${cmd}`));
  }
}

const liveLabs = new Set<Lab>();
let hooksInstalled = false;

/** One set of process hooks for all labs: Ctrl-C / kill / exit removes what is left. */
function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const lab of liveLabs) lab.destroySync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = () => {
      for (const lab of [...liveLabs]) lab.destroySync();
      // If nobody else handles the signal, die of it as we would have without this hook.
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, handler);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, handler);
  }
}

export class Lab {
  private readonly hosts = new Map<string, HostImpl>();
  private readonly procs = new Set<LabProcessImpl>();
  private destroying: Promise<void> | undefined;

  private constructor(readonly prefix: string) {}

  /** `opts.prefix` is a short tag (default 'tpxlab'); a unique `-<pid36>-<rand4>` is appended. */
  static async create(opts: { prefix?: string } = {}): Promise<Lab> {
    const tag = opts.prefix ?? DEFAULT_TAG;
    if (!TAG_RE.test(tag)) throw new UsageError(`lab prefix '${tag}' must match ${TAG_RE}`);
    sweepStaleLabs(tag);
    const existing = listNetns();
    let prefix: string;
    do {
      prefix = `${tag}-${process.pid.toString(36)}-${randomInt(36 ** 4)
        .toString(36)
        .padStart(4, '0')}`;
    } while (existing.some((ns) => ns.startsWith(`${prefix}-`)));
    const lab = new Lab(prefix);
    liveLabs.add(lab);
    installExitHooks();
    return lab;
  }

  /** A host by name, if added. */
  host(name: string): Host | undefined {
    return this.hosts.get(name);
  }

  addHost(name: string): Host {
    if (this.destroying) throw new UsageError(`lab ${this.prefix} is destroyed`);
    if (!HOST_RE.test(name)) throw new UsageError(`host name '${name}' must match ${HOST_RE}`);
    if (this.hosts.has(name)) throw new UsageError(`host '${name}' already exists in lab ${this.prefix}`);
    const netns = `${this.prefix}-${name}`;
    runSync('ip', ['netns', 'add', netns]);
    const host = new HostImpl(name, netns, this);
    this.hosts.set(name, host); // registered before anything else can fail: destroy removes it
    runSync('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    // IPv6 on, and no duplicate address detection: addresses are usable at once, not after ~2 s.
    // `default` covers interfaces created later; DAD runs unless both all and the device say 0.
    for (const scope of ['all', 'default']) {
      host.sysctl(`net.ipv6.conf.${scope}.disable_ipv6`, '0');
      host.sysctl(`net.ipv6.conf.${scope}.accept_dad`, '0');
    }
    return host;
  }

  /**
   * A veth pair between two hosts, created directly inside their netns (never in the host's
   * own namespace, so nothing can clash or leak there). Each end is named `eth<N>`, N counting
   * that host's links from 0. Returns the two interface names.
   */
  link(a: Host, b: Host, opts: { a: string[]; b: string[] }): { a: string; b: string } {
    const ha = this.own(a);
    const hb = this.own(b);
    if (ha === hb) throw new UsageError(`cannot link host '${ha.name}' to itself`);
    const ifA = `eth${ha.nextIf++}`;
    const ifB = `eth${hb.nextIf++}`;
    runSync('ip', ['link', 'add', ifA, 'netns', ha.netns, 'type', 'veth', 'peer', 'name', ifB, 'netns', hb.netns]);
    for (const [h, ifname, addrs] of [
      [ha, ifA, opts.a],
      [hb, ifB, opts.b],
    ] as const) {
      for (const cidr of addrs) {
        const v6 = cidr.includes(':');
        runSync('ip', [v6 ? '-6' : '-4', '-n', h.netns, 'addr', 'add', cidr, 'dev', ifname, ...(v6 ? ['nodad'] : [])]);
      }
      runSync('ip', ['-n', h.netns, 'link', 'set', ifname, 'up']);
    }
    return { a: ifA, b: ifB };
  }

  /** @internal used by Host.spawn */
  track(p: LabProcessImpl): LabProcessImpl {
    if (this.destroying) {
      p.signal('SIGKILL');
      throw new UsageError(`lab ${this.prefix} is destroyed`);
    }
    this.procs.add(p);
    return p;
  }

  /** Stop every process (SIGTERM, then SIGKILL), delete every netns. Idempotent; never throws. */
  destroy(): Promise<void> {
    this.destroying ??= (async () => {
      try {
        const live = [...this.procs].filter((p) => p.alive);
        for (const p of live) p.signal('SIGTERM');
        const exited = await Promise.all(live.map((p) => p.waitExit(STOP_GRACE_MS)));
        const stubborn = live.filter((_, i) => !exited[i]);
        for (const p of stubborn) p.signal('SIGKILL');
        await Promise.all(stubborn.map((p) => p.waitExit(STOP_GRACE_MS)));
      } catch {
        /* fall through to the sync part, which cannot fail */
      }
      this.destroySync();
    })();
    return this.destroying;
  }

  /** Synchronous teardown for exit/signal paths: SIGKILL everything, delete netns. */
  destroySync(): void {
    this.destroying ??= Promise.resolve();
    for (const p of this.procs) p.signal('SIGKILL');
    for (const h of this.hosts.values()) removeNetns(h.netns);
    this.hosts.clear();
    liveLabs.delete(this);
  }

  private own(h: Host): HostImpl {
    const impl = this.hosts.get(h.name);
    if (!impl || impl !== h) throw new UsageError(`host '${h.name}' does not belong to lab ${this.prefix}`);
    return impl;
  }
}
