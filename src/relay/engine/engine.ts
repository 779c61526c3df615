// The zero-copy relay engine: connections that need no more byte inspection leave libuv and
// are relayed by splice(2) (socket → pipe → socket, the bytes never enter user space) in an
// epoll loop on worker threads (worker.ts).
//
// Hand-over of a pair of connected TCP sockets (engine.relay):
//   1. eligibility (canSplice): plain TCP net.Sockets, open both ways, not corked, no 'data'
//      listeners (they would miss bytes); otherwise HandoverError and the sockets are untouched;
//   2. dup(2) both descriptors (F_DUPFD_CLOEXEC);
//   3. stop Node reading (uv_read_stop), then write what Node had already read but nobody
//      consumed to the other side through Node, and wait until Node's write queues are empty:
//      from here on every byte is in the kernel;
//   4. destroy() the Node sockets: libuv closes *its* descriptor (close(2), never shutdown(2)),
//      the connection stays open through the dup, which the worker now owns and closes.
// The result has the same shape as relay()'s: bytes counted as read from each side,
// including the bytes flushed in step 3.
//
// serve(): listeners whose flows nobody inspects (or only the header rewriter) are given to
// every worker thread outright; each accepts, connects and relays itself and reports each
// flow's end in batches, so those connections never exist as Node sockets at all.
import net from 'node:net';
import { TLSSocket } from 'node:tls';
import { MessageChannel, Worker } from 'node:worker_threads';
import {
  addressOf,
  eventfdSignal,
  loadLibc,
  rawClose,
  rawPipe,
  rawSplice,
  rawWrite,
  sysDupCloexec,
  sysEventfd,
} from '../../kernel/ffi.js';
import { SPLICE_F_NONBLOCK } from '../../kernel/linux.js';
import { socketFd } from '../../kernel/sockets.js';
import type { RelayResult } from '../relay.js';
import type {
  FlowRecord,
  FromWorker,
  ServedConnection,
  ServedListener,
  SpliceWorkerInit,
  ToWorker,
} from './protocol.js';

export type { FlowRecord, ServedConnection, ServedListener } from './protocol.js';

export interface SpliceEngineOptions {
  /** Worker threads running epoll loops (connections are spread over them). Default 1. */
  threads?: number;
  /** Pipe size per direction while bytes are in flight (F_SETPIPE_SZ). Default 1 MiB. */
  pipeSize?: number;
  /** Empty pipes each worker keeps open for reuse (2 descriptors each). Default 64. */
  pipePool?: number;
}

export interface SpliceRelayOptions {
  /** Close both sides when neither moved a byte for this long; ≤ 0: never. */
  idleTimeoutMs: number;
  /** Called at hand-over with the flow's live counters and a way to close it. */
  onHandedOver?: (flow: EngineFlow) => void;
}

/** A handed-over flow while it runs: bytes so far (the worker reports every 500 ms), and close. */
export interface EngineFlow {
  bytes(): { up: number; down: number };
  /** Ends it (reason 'aborted'); false when it is not (or no longer) in the engine. */
  close(): Promise<boolean>;
}

export interface SpliceEngine {
  /**
   * Relays until both sides are done, like relay(). Throws HandoverError synchronously (and
   * leaves the sockets as they were) when they fail canSplice(), the engine is closed, or the
   * descriptors cannot be duplicated. Otherwise the Node sockets are destroyed at hand-over
   * (their 'close' fires; drop references to them: the engine needs none) while the
   * connections live on in the engine; the promise never rejects.
   */
  relay(client: net.Socket, upstream: net.Socket, opts: SpliceRelayOptions): Promise<RelayResult>;
  /** Connections currently in the engine (handed over or being handed over). */
  readonly active: number;
  /**
   * Kernel-only flows: the engine accepts on these listening sockets itself (it owns them
   * from now on), connects to each flow's original destination and splices, with no Node
   * socket at all. How each flow ended (or why it was refused) reaches `sink` in batches,
   * with the live count per listener label. Once per engine.
   */
  serve(listeners: ServedListener[], sink: ServedSink): void;
  /** Stops accepting on the served listeners (closes them); their flows go on. */
  stopServing(): Promise<void>;
  /** Live kernel-only flows. */
  servedConnections(): Promise<ServedConnection[]>;
  /** Closes one kernel-only flow; false if there is none with this id. */
  closeServed(id: number): Promise<boolean>;
  /** Closes every live connection (reason 'aborted') and stops the workers. Idempotent. */
  close(): Promise<void>;
}

export interface ServedSink {
  /** Flows ended, live flows per label, and upstream connect times (ms) since the last call. */
  records(records: FlowRecord[], active: Record<string, number>, connectMs: number[]): void;
  /** The worker serving the listeners died: its flows and listeners are gone. */
  failed?(error: string): void;
}

/** The sockets cannot be handed over; nothing was done to them. */
export class HandoverError extends Error {
  override readonly name = 'HandoverError';
}

let available: boolean | undefined;

/**
 * True when splice(2), epoll and koffi work here (Linux x86-64/AArch64, koffi loads, a
 * pipe-to-pipe splice moves a byte). Cached; never throws.
 */
export function spliceAvailable(): boolean {
  if (available !== undefined) return available;
  try {
    available =
      process.platform === 'linux' &&
      (process.arch === 'x64' || process.arch === 'arm64') &&
      (loadLibc(), probeSplice());
  } catch {
    available = false;
  }
  return available;
}

/** A one-byte pipe-to-pipe splice: proves splice(2) works here. Closes what it opens. */
function probeSplice(): boolean {
  const scratch = Buffer.alloc(64);
  const byte = Buffer.alloc(1);
  const a = rawPipe(scratch);
  if (typeof a === 'number') return false;
  const b = rawPipe(scratch);
  try {
    if (typeof b === 'number') return false;
    if (rawWrite(a[1], addressOf(byte), 1) !== 1) return false;
    return rawSplice(a[0], b[1], 1, SPLICE_F_NONBLOCK) === 1;
  } finally {
    for (const fd of [...a, ...(typeof b === 'number' ? [] : b)]) rawClose(fd);
  }
}

interface NodeHandle {
  fd?: number;
  reading?: boolean;
  readStop?: () => number;
  constructor?: { name?: string };
}

function handleOf(s: net.Socket): NodeHandle | undefined {
  return (s as unknown as { _handle?: NodeHandle | null })._handle ?? undefined;
}

/** Why this socket cannot be handed over, or undefined when it can. */
function ineligible(s: net.Socket): string | undefined {
  if (!(s instanceof net.Socket) || s instanceof TLSSocket) return 'not a plain net.Socket';
  if (s.destroyed || s.connecting || s.readyState !== 'open')
    return `socket is ${s.destroyed ? 'destroyed' : s.readyState}`;
  const h = handleOf(s);
  if (h?.constructor?.name !== 'TCP' || typeof h.fd !== 'number' || h.fd < 0 || typeof h.readStop !== 'function')
    return 'not a TCP socket with a descriptor';
  const rs = (s as unknown as { _readableState?: { ended?: boolean } })._readableState;
  if (s.readableEnded || rs?.ended) return 'EOF already read';
  if (s.writableEnded || s.writableCorked > 0) return 'writable side ended or corked';
  if (s.listenerCount('data') > 0) return "has 'data' listeners";
  return undefined;
}

/** True when engine.relay() can take these two sockets. */
export function canSplice(client: net.Socket, upstream: net.Socket): boolean {
  return ineligible(client) === undefined && ineligible(upstream) === undefined;
}

/** Stops libuv reading; `reading = true` keeps Node from starting it again on read(). */
function stopReading(s: net.Socket): void {
  const h = handleOf(s)!;
  h.readStop!();
  h.reading = true;
}

/** Takes whatever Node already read from `from` and writes it to `to`; returns the byte count. */
function moveBuffered(from: net.Socket, to: net.Socket): number {
  let n = 0;
  for (let chunk = from.read() as Buffer | null; chunk !== null; chunk = from.read() as Buffer | null) {
    n += chunk.length;
    to.write(chunk);
  }
  return n;
}

/** Resolves when Node's write queues of both sockets are empty (every byte in the kernel). */
function flushed(
  a: net.Socket,
  b: net.Socket,
  timeoutMs: number,
): Promise<{ side: 'client' | 'upstream' | 'timeout'; error: string } | undefined> {
  const pending = [a, b].filter((s) => s.writableLength > 0);
  if (pending.length === 0) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    let left = pending.length;
    const timer = timeoutMs > 0 ? setTimeout(() => done({ side: 'timeout', error: 'idle' }), timeoutMs) : undefined;
    const onError = (s: net.Socket) => (e: Error) =>
      done({ side: s === a ? 'client' : 'upstream', error: (e as NodeJS.ErrnoException).code ?? e.message });
    const onClose = (s: net.Socket) => () => done({ side: s === a ? 'client' : 'upstream', error: 'closed' });
    const listeners = [a, b].map((s) => ({ s, err: onError(s), close: onClose(s) }));
    for (const l of listeners) {
      l.s.on('error', l.err);
      l.s.on('close', l.close);
    }
    let settled = false;
    function done(r: { side: 'client' | 'upstream' | 'timeout'; error: string } | undefined): void {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      for (const l of listeners) {
        l.s.removeListener('error', l.err);
        l.s.removeListener('close', l.close);
      }
      resolve(r);
    }
    // An empty write completes after every write queued before it.
    for (const s of pending)
      s.write(Buffer.alloc(0), (e) => {
        if (e)
          return done({ side: s === a ? 'client' : 'upstream', error: (e as NodeJS.ErrnoException).code ?? e.message });
        if (--left === 0) done(undefined);
      });
  });
}

interface Pending {
  resolve: (r: RelayResult) => void;
  preUp: number;
  preDown: number;
  worker: WorkerSlot;
}

interface WorkerSlot {
  worker: Worker;
  port: MessagePort;
  wakeFd: number;
  active: number;
  dead: boolean;
  exited: Promise<void>;
  closed: Promise<void>;
}

function spawn(init: Omit<SpliceWorkerInit, 'port'>, port: MessagePort): Worker {
  const workerData: SpliceWorkerInit = { ...init, port };
  const opts = { workerData, transferList: [port] as unknown as Transferable[] };
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./worker.js', import.meta.url), opts);
  // Running from sources under tsx: its --import hooks do not reach worker threads.
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./worker.ts', import.meta.url).href;
  const code = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
  return new Worker(code, { ...opts, eval: true });
}

type Transferable = import('node:worker_threads').TransferListItem;
type MessagePort = import('node:worker_threads').MessagePort;

/** Starts the engine's worker threads. Throws when splice is unavailable (see spliceAvailable()). */
export function createSpliceEngine(opts: SpliceEngineOptions = {}): SpliceEngine {
  if (!spliceAvailable())
    throw new Error('splice relay is not available on this system (needs Linux x86-64/AArch64 and koffi)');
  const threads = Math.max(1, Math.floor(opts.threads ?? 1));
  const pending = new Map<number, Pending>();
  /** Handed-over flows' counters as last reported by their worker ([up, down]). */
  const liveBytes = new Map<number, [number, number]>();
  let nextId = 1;
  let rr = 0;
  let closing: Promise<void> | undefined;

  const settle = (
    id: number,
    r: Omit<RelayResult, 'bytesUp' | 'bytesDown'> & { bytesUp: number; bytesDown: number },
  ): void => {
    const p = pending.get(id);
    if (!p) return;
    pending.delete(id);
    liveBytes.delete(id);
    if (--p.worker.active === 0) p.worker.worker.unref();
    p.resolve({ ...r, bytesUp: r.bytesUp + p.preUp, bytesDown: r.bytesDown + p.preDown });
  };

  const slots: WorkerSlot[] = [];
  // Served listeners are shared by every thread (each waits on them in its own epoll loop).
  let sink: ServedSink | undefined;
  /** Live served flows per label, as each thread last reported them. */
  const activeBy = new Map<WorkerSlot, Record<string, number>>();
  let unlistening = 0;
  const servedCount = new SharedArrayBuffer(4);
  let nextReq = 1;
  const replies = new Map<number, (m: FromWorker) => void>();
  let unlistened: (() => void) | undefined;
  const ask = <T>(
    slot: WorkerSlot | undefined,
    m: (req: number) => ToWorker,
    empty: T,
    pick: (m: FromWorker) => T,
  ): Promise<T> => {
    if (!slot || slot.dead || closing) return Promise.resolve(empty);
    const req = nextReq++;
    return new Promise<T>((resolve) => {
      replies.set(req, (r) => resolve(pick(r)));
      post(slot, m(req), true);
    });
  };
  const exitFlag = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < threads; i++) {
    const wakeFd = sysEventfd();
    const { port1, port2 } = new MessageChannel();
    const worker = spawn(
      {
        wakeFd,
        pipeSize: opts.pipeSize ?? 1 << 20,
        pipePool: Math.max(0, opts.pipePool ?? 64),
        exitFlag: exitFlag.buffer as SharedArrayBuffer,
        index: i,
        threads,
        servedCount,
      },
      port2,
    );
    worker.unref();
    let onClosed!: () => void;
    const slot: WorkerSlot = {
      worker,
      port: port1,
      wakeFd,
      active: 0,
      dead: false,
      exited: new Promise<void>((r) => worker.once('exit', () => r())),
      closed: new Promise<void>((r) => (onClosed = r)),
    };
    const die = (error: string): void => {
      if (slot.dead) return;
      slot.dead = true;
      // Connections still in the worker are lost: report them. Their descriptors are not
      // closed here (the worker may have closed some already; a double close is worse).
      for (const [id, p] of pending)
        if (p.worker === slot) settle(id, { bytesUp: 0, bytesDown: 0, reason: 'aborted', error });
      if (sink) {
        for (const r of replies.values()) r({ t: 'closed' });
        replies.clear();
        unlistened?.();
        // Served flows are gone with the worker: say so, and that none is live any more.
        if (error !== 'engine closed') {
          activeBy.delete(slot);
          sink.failed?.(error);
          sink.records([], sumActive(), []);
        }
      }
      onClosed();
    };
    worker.on('message', (m: FromWorker) => {
      if (m.t === 'done')
        settle(m.id, {
          bytesUp: m.bytesUp,
          bytesDown: m.bytesDown,
          reason: m.reason,
          ...(m.error ? { error: m.error } : {}),
        });
      else if (m.t === 'flows') {
        activeBy.set(slot, m.active);
        sink?.records(m.records, sumActive(), m.connectMs);
      } else if (m.t === 'bytes') {
        for (let i = 0; i + 2 < m.flows.length; i += 3)
          if (pending.has(m.flows[i]!)) liveBytes.set(m.flows[i]!, [m.flows[i + 1]!, m.flows[i + 2]!]);
      } else if (m.t === 'list' || m.t === 'killed') {
        replies.get(m.req)?.(m);
        replies.delete(m.req);
      } else if (m.t === 'unlistened') {
        if (--unlistening === 0) unlistened?.();
      } else if (m.t === 'ready') {
        if (slot.active === 0) worker.unref(); // an unref() before the thread is online does not stick
      } else if (m.t === 'closed') die('engine closed');
      else if (m.t === 'fatal') die(`splice worker failed: ${m.error}`);
    });
    worker.on('error', (e) => die(`splice worker failed: ${e.message}`));
    worker.on('exit', () => die('splice worker exited'));
    void slot.exited.then(() => rawClose(wakeFd));
    slots.push(slot);
  }

  const sumActive = (): Record<string, number> => {
    const sum: Record<string, number> = {};
    for (const a of activeBy.values()) for (const [label, n] of Object.entries(a)) sum[label] = (sum[label] ?? 0) + n;
    return sum;
  };

  // At process exit Node waits for every worker to stop, and ours block in epoll_wait.
  const onExit = (): void => {
    Atomics.store(exitFlag, 0, 1);
    for (const s of slots) if (!s.dead) eventfdSignal(s.wakeFd);
  };
  exitHooks.add(onExit);
  if (exitHooks.size === 1) process.on('exit', runExitHooks);

  // One eventfd write per worker per event-loop turn, however many hand-overs that turn
  // made: a write that wakes a thread is a costly FFI call, and new connections come in bursts.
  const toWake = new Set<WorkerSlot>();
  let wakeScheduled = false;
  const wakeAll = (): void => {
    wakeScheduled = false;
    for (const s of toWake) if (!s.dead) eventfdSignal(s.wakeFd);
    toWake.clear();
  };
  const post = (slot: WorkerSlot, m: ToWorker, now = false): void => {
    slot.port.postMessage(m);
    if (now) return eventfdSignal(slot.wakeFd);
    toWake.add(slot);
    if (!wakeScheduled) {
      wakeScheduled = true;
      setImmediate(wakeAll);
    }
  };

  /** Synchronous up to the hand-over, so that refusals throw before anything is touched. */
  const relay = (client: net.Socket, upstream: net.Socket, ro: SpliceRelayOptions): Promise<RelayResult> => {
    const live = slots.filter((s) => !s.dead);
    if (closing || live.length === 0)
      throw new HandoverError(closing ? 'splice engine closed' : 'splice engine has no live worker');
    const why = ineligible(client) ?? ineligible(upstream);
    if (why) throw new HandoverError(`cannot hand over: ${why}`);
    // dup first: if it fails (EMFILE), nothing has been done to the sockets yet.
    let clientFd = -1;
    let upstreamFd: number;
    try {
      clientFd = sysDupCloexec(socketFd(client));
      upstreamFd = sysDupCloexec(socketFd(upstream));
    } catch (e) {
      if (clientFd >= 0) rawClose(clientFd);
      throw new HandoverError(`dup: ${(e as Error).message}`);
    }
    // Least busy worker; ties go round-robin.
    const start = rr++ % live.length;
    let slot = live[start]!;
    for (let i = 1; i < live.length; i++) {
      const s = live[(start + i) % live.length]!;
      if (s.active < slot.active) slot = s;
    }
    const id = nextId++;
    slot.active++;
    slot.worker.ref();
    let entry!: Pending;
    const result = new Promise<RelayResult>((resolve) =>
      pending.set(id, (entry = { resolve, preUp: 0, preDown: 0, worker: slot })),
    );
    ro.onHandedOver?.({
      bytes: () => {
        const b = liveBytes.get(id);
        return { up: entry.preUp + (b?.[0] ?? 0), down: entry.preDown + (b?.[1] ?? 0) };
      },
      close: () =>
        pending.has(id)
          ? ask(
              slot,
              (req) => ({ t: 'kill', req, id, handedOver: true }),
              false,
              (m) => m.t === 'killed' && m.found,
            )
          : Promise.resolve(false),
    });

    stopReading(client);
    stopReading(upstream);
    entry.preUp = moveBuffered(client, upstream);
    entry.preDown = moveBuffered(upstream, client);
    const add: ToWorker = { t: 'add', id, clientFd, upstreamFd, idleMs: ro.idleTimeoutMs };
    if (client.writableLength === 0 && upstream.writableLength === 0) commit(slot, client, upstream, add);
    else void flushThenCommit(slot, client, upstream, add, ro.idleTimeoutMs);
    // Nothing here keeps the Node sockets alive: they can be collected during the relay.
    return result;
  };

  /** Node closes its own descriptors (close(2): no shutdown(2), no FIN: the dups keep the sockets). */
  const commit = (
    slot: WorkerSlot,
    client: net.Socket,
    upstream: net.Socket,
    add: Extract<ToWorker, { t: 'add' }>,
  ): void => {
    client.destroy();
    upstream.destroy();
    post(slot, add);
  };

  const flushThenCommit = async (
    slot: WorkerSlot,
    client: net.Socket,
    upstream: net.Socket,
    add: Extract<ToWorker, { t: 'add' }>,
    idleMs: number,
  ): Promise<void> => {
    const bad = await flushed(client, upstream, idleMs);
    if (!bad && !client.destroyed && !upstream.destroyed && !closing && !slot.dead)
      return commit(slot, client, upstream, add);
    rawClose(add.clientFd);
    rawClose(add.upstreamFd);
    const reason: RelayResult['reason'] =
      bad?.side === 'timeout'
        ? 'idle'
        : bad?.side === 'client'
          ? 'client-error'
          : bad?.side === 'upstream'
            ? 'upstream-error'
            : 'aborted';
    if (reason === 'client-error' || reason === 'upstream-error') {
      resetOrDestroy(reason === 'client-error' ? upstream : client);
      resetOrDestroy(reason === 'client-error' ? client : upstream);
    } else {
      client.destroy();
      upstream.destroy();
    }
    settle(add.id, {
      bytesUp: 0,
      bytesDown: 0,
      reason,
      ...(bad && bad.side !== 'timeout' ? { error: bad.error } : {}),
    });
  };

  return {
    relay,
    get active() {
      return pending.size;
    },
    serve(listeners, s) {
      if (sink) throw new Error('engine.serve() may be called once');
      if (closing || slots.some((x) => x.dead)) throw new HandoverError('splice engine closed');
      sink = s;
      // Each thread gets its own descriptor of each listening socket (it closes it at unlisten).
      const fds = slots.map((_, i) => listeners.map((l) => (i === 0 ? l.fd : sysDupCloexec(l.fd))));
      slots.forEach((slot, i) => {
        // A worker with served listeners must keep the process (and itself) alive.
        slot.active++;
        slot.worker.ref();
        listeners.forEach((l, k) => {
          post(slot, { t: 'listen', listener: { ...l, fd: fds[i]![k]! } }, true);
        });
      });
    },
    stopServing() {
      const live = slots.filter((x) => !x.dead);
      if (!sink || live.length === 0 || closing) return Promise.resolve();
      return new Promise<void>((resolve) => {
        unlistening = live.length;
        unlistened = () => {
          unlistened = undefined;
          for (const slot of live) if (--slot.active === 0) slot.worker.unref();
          resolve();
        };
        for (const slot of live) post(slot, { t: 'unlisten' }, true);
      });
    },
    servedConnections: async () => {
      const lists = await Promise.all(
        slots.map((slot) =>
          ask(
            slot,
            (req) => ({ t: 'list', req }),
            [] as ServedConnection[],
            (m) => (m.t === 'list' ? m.conns : []),
          ),
        ),
      );
      return lists.flat();
    },
    // Served flow ids are spread over the threads: id − 1 ≡ thread index (mod threads).
    closeServed: (id) =>
      ask(
        slots[(id - 1) % threads],
        (req) => ({ t: 'kill', req, id }),
        false,
        (m) => m.t === 'killed' && m.found,
      ),
    close() {
      closing ??= (async () => {
        for (const s of slots) {
          if (s.dead) continue;
          s.worker.ref();
          post(s, { t: 'close' }, true);
        }
        await Promise.all(slots.map((s) => s.closed));
        await Promise.all(
          slots.map((s) => Promise.race([s.exited, new Promise<void>((r) => setTimeout(r, 2000).unref())])),
        );
        for (const s of slots) {
          s.port.close();
          await s.worker.terminate();
        }
        exitHooks.delete(onExit);
        if (exitHooks.size === 0) process.removeListener('exit', runExitHooks);
      })();
      return closing;
    },
  };
}

const exitHooks = new Set<() => void>();
function runExitHooks(): void {
  for (const h of exitHooks) h();
}

function resetOrDestroy(s: net.Socket): void {
  if (s.destroyed) return;
  if (!s.connecting) s.resetAndDestroy();
  else s.destroy();
}
