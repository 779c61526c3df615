// The zero-copy relay engine: connections that need no more byte inspection leave libuv and
// are relayed by splice(2) (socket → pipe → socket, the bytes never enter user space) in an
// epoll loop (worker.ts) on worker threads, or for a single loop inline on the main thread
// (inline.ts; hosting.ts hosts either).
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
import { hasEventLoopPoll, rawClose, sysDupCloexec } from '../../kernel/ffi.js';
import { socketFd } from '../../kernel/sockets.js';
import type { RelayResult } from '../relay.js';
import { spliceAvailable } from './available.js';
import { startWorkerLoop, type EngineThread, type LoopEvents } from './hosting.js';
import { startInlineLoop } from './inline.js';
import type { EngineInit, FlowRecord, FromWorker, ServedConnection, ServedListener, ToWorker } from './protocol.js';

export type { FlowRecord, ServedConnection, ServedListener } from './protocol.js';
export { spliceAvailable };

export interface SpliceEngineOptions {
  /** Worker threads running epoll loops (connections are spread over them). Default 1. */
  threads?: number;
  /** Pipe size per direction while bytes are in flight (F_SETPIPE_SZ). Default 1 MiB. */
  pipeSize?: number;
  /** Empty pipes each worker keeps open for reuse (2 descriptors each). Default 64. */
  pipePool?: number;
  /**
   * 'inline': one loop, run on the main thread (polled by Node's event loop) instead of a
   * worker thread: no second V8 isolate (~7 MB less). Only with threads 1. Default 'worker'.
   */
  hosting?: EngineHosting;
}

export type EngineHosting = 'worker' | 'inline';

/**
 * The hosting of an engine that serves a data plane's listeners: 'inline' (the loop is then
 * nearly all the process does; with one thread), or TRANPROXY_ENGINE_HOSTING to compare.
 */
export function servedHosting(): EngineHosting {
  return process.env.TRANPROXY_ENGINE_HOSTING === 'worker' ? 'worker' : 'inline';
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

/** A flow handed over to a loop and not yet settled. */
interface Pending {
  resolve: (r: RelayResult) => void;
  /** Bytes Node had read already, moved at hand-over (counted in the result). */
  preUp: number;
  preDown: number;
  slot: Slot;
}

/** One engine loop as the main thread sees it. */
interface Slot {
  thread: EngineThread;
  /** Handed-over flows in it, plus one while it serves listeners: it keeps the process alive while > 0. */
  active: number;
  dead: boolean;
  /** Resolves when it has said 'closed' or died. */
  closed: Promise<void>;
  onClosed: () => void;
}

type Done = Omit<RelayResult, 'bytesUp' | 'bytesDown'> & { bytesUp: number; bytesDown: number };
type Add = Extract<ToWorker, { t: 'add' }>;

/** Starts the engine's loops. Throws when splice is unavailable (see spliceAvailable()). */
export function createSpliceEngine(opts: SpliceEngineOptions = {}): SpliceEngine {
  if (!spliceAvailable())
    throw new Error('splice relay is not available on this system (needs Linux x86-64/AArch64 and koffi)');
  return new EngineFront(opts);
}

/** The main thread's side of the engine: hand-overs, served listeners, and what the loops report. */
class EngineFront implements SpliceEngine {
  private readonly threads: number;
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, Pending>();
  /** Handed-over flows' counters as last reported by their loop ([up, down]). */
  private readonly liveBytes = new Map<number, [number, number]>();
  private nextId = 1;
  private rr = 0;
  private closing: Promise<void> | undefined;
  // Served listeners are shared by every loop (each waits on them in its own epoll set).
  private sink: ServedSink | undefined;
  /** Live served flows per label, as each loop last reported them. */
  private readonly activeBy = new Map<Slot, Record<string, number>>();
  private unlistening = 0;
  private unlistened: (() => void) | undefined;
  private nextReq = 1;
  private readonly replies = new Map<number, (m: FromWorker) => void>();

  constructor(opts: SpliceEngineOptions) {
    this.threads = Math.max(1, Math.floor(opts.threads ?? 1));
    const inline = opts.hosting === 'inline' && this.threads === 1 && hasEventLoopPoll();
    const servedCount = new SharedArrayBuffer(4);
    for (let index = 0; index < this.threads; index++) {
      const init: EngineInit = {
        pipeSize: opts.pipeSize ?? 1 << 20,
        pipePool: Math.max(0, opts.pipePool ?? 64),
        index,
        threads: this.threads,
        servedCount,
      };
      this.slots.push(this.startSlot(init, inline));
    }
  }

  get active(): number {
    return this.pending.size;
  }

  private startSlot(init: EngineInit, inline: boolean): Slot {
    let onClosed!: () => void;
    const closed = new Promise<void>((r) => (onClosed = r));
    const slot = { active: 0, dead: false, closed, onClosed } as Slot;
    const events: LoopEvents = { message: (m) => this.onMessage(slot, m), died: (e) => this.die(slot, e) };
    slot.thread = inline ? startInlineLoop(init, events) : startWorkerLoop(init, events);
    return slot;
  }

  private onMessage(slot: Slot, m: FromWorker): void {
    if (m.t === 'done') {
      const { id, t: _, ...done } = m;
      this.settle(id, done);
    } else if (m.t === 'flows') {
      this.activeBy.set(slot, m.active);
      this.sink?.records(m.records, this.sumActive(), m.connectMs);
    } else if (m.t === 'bytes') {
      const f = m.flows;
      for (let i = 0; i + 2 < f.length; i += 3)
        if (this.pending.has(f[i]!)) this.liveBytes.set(f[i]!, [f[i + 1]!, f[i + 2]!]);
    } else if (m.t === 'list' || m.t === 'killed') {
      this.replies.get(m.req)?.(m);
      this.replies.delete(m.req);
    } else if (m.t === 'unlistened') {
      if (--this.unlistening === 0) this.unlistened?.();
    } else if (m.t === 'closed') this.die(slot, 'engine closed');
    else if (m.t === 'fatal') this.die(slot, `splice worker failed: ${m.error}`);
  }

  /** A loop is gone (closed, failed or its thread exited). */
  private die(slot: Slot, error: string): void {
    if (slot.dead) return;
    slot.dead = true;
    // Connections still in it are lost: report them. Their descriptors are not closed here
    // (the loop may have closed some already; a double close is worse).
    for (const [id, p] of this.pending)
      if (p.slot === slot) this.settle(id, { bytesUp: 0, bytesDown: 0, reason: 'aborted', error });
    if (this.sink) {
      for (const r of this.replies.values()) r({ t: 'closed' });
      this.replies.clear();
      this.unlistened?.();
      // Served flows are gone with the loop: say so, and that none is live any more.
      if (error !== 'engine closed') {
        this.activeBy.delete(slot);
        this.sink.failed?.(error);
        this.sink.records([], this.sumActive(), []);
      }
    }
    slot.onClosed();
  }

  private settle(id: number, r: Done): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    this.liveBytes.delete(id);
    this.release(p.slot);
    p.resolve({ ...r, bytesUp: r.bytesUp + p.preUp, bytesDown: r.bytesDown + p.preDown });
  }

  private hold(slot: Slot): void {
    if (slot.active++ === 0) slot.thread.ref();
  }

  /**
   * Once closing, the loops stay ref'd until they are gone: close() settles the flows left
   * (releasing them) before it waits for the threads to exit, and an unref'd worker then let
   * the process run out of things to do with close() never resolving.
   */
  private release(slot: Slot): void {
    if (--slot.active === 0 && !this.closing) slot.thread.unref();
  }

  private sumActive(): Record<string, number> {
    const sum: Record<string, number> = {};
    for (const a of this.activeBy.values())
      for (const [label, n] of Object.entries(a)) sum[label] = (sum[label] ?? 0) + n;
    return sum;
  }

  /** Sends `m(req)` and resolves with what its reply says (`empty` when the loop is gone). */
  private ask<T>(
    slot: Slot | undefined,
    m: (req: number) => ToWorker,
    empty: T,
    pick: (m: FromWorker) => T,
  ): Promise<T> {
    if (!slot || slot.dead || this.closing) return Promise.resolve(empty);
    const req = this.nextReq++;
    return new Promise<T>((resolve) => {
      this.replies.set(req, (r) => resolve(pick(r)));
      slot.thread.send(m(req), true);
    });
  }

  /** Synchronous up to the hand-over, so that refusals throw before anything is touched. */
  relay(client: net.Socket, upstream: net.Socket, ro: SpliceRelayOptions): Promise<RelayResult> {
    const live = this.slots.filter((s) => !s.dead);
    if (this.closing || live.length === 0)
      throw new HandoverError(this.closing ? 'splice engine closed' : 'splice engine has no live worker');
    const why = ineligible(client) ?? ineligible(upstream);
    if (why) throw new HandoverError(`cannot hand over: ${why}`);
    const [clientFd, upstreamFd] = dupPair(client, upstream);
    const slot = this.leastBusy(live);
    const id = this.nextId++;
    this.hold(slot);
    let entry!: Pending;
    const result = new Promise<RelayResult>((resolve) =>
      this.pending.set(id, (entry = { resolve, preUp: 0, preDown: 0, slot })),
    );
    ro.onHandedOver?.(this.flowOf(id, entry));

    stopReading(client);
    stopReading(upstream);
    entry.preUp = moveBuffered(client, upstream);
    entry.preDown = moveBuffered(upstream, client);
    const add: Add = { t: 'add', id, clientFd, upstreamFd, idleMs: ro.idleTimeoutMs };
    if (client.writableLength === 0 && upstream.writableLength === 0) this.commit(slot, client, upstream, add);
    else void this.flushThenCommit(slot, client, upstream, add, ro.idleTimeoutMs);
    // Nothing here keeps the Node sockets alive: they can be collected during the relay.
    return result;
  }

  /** Least busy loop; ties go round-robin. */
  private leastBusy(live: Slot[]): Slot {
    const start = this.rr++ % live.length;
    let slot = live[start]!;
    for (let i = 1; i < live.length; i++) {
      const s = live[(start + i) % live.length]!;
      if (s.active < slot.active) slot = s;
    }
    return slot;
  }

  /** A handed-over flow's live counters and its close. */
  private flowOf(id: number, entry: Pending): EngineFlow {
    return {
      bytes: () => {
        const b = this.liveBytes.get(id);
        return { up: entry.preUp + (b?.[0] ?? 0), down: entry.preDown + (b?.[1] ?? 0) };
      },
      close: () =>
        this.pending.has(id)
          ? this.ask(
              entry.slot,
              (req) => ({ t: 'kill', req, id, handedOver: true }),
              false,
              (m) => m.t === 'killed' && m.found,
            )
          : Promise.resolve(false),
    };
  }

  /** Node closes its own descriptors (close(2): no shutdown(2), no FIN: the dups keep the sockets). */
  private commit(slot: Slot, client: net.Socket, upstream: net.Socket, add: Add): void {
    client.destroy();
    upstream.destroy();
    slot.thread.send(add);
  }

  private async flushThenCommit(
    slot: Slot,
    client: net.Socket,
    upstream: net.Socket,
    add: Add,
    idleMs: number,
  ): Promise<void> {
    const bad = await flushed(client, upstream, idleMs);
    if (!bad && !client.destroyed && !upstream.destroyed && !this.closing && !slot.dead)
      return this.commit(slot, client, upstream, add);
    rawClose(add.clientFd);
    rawClose(add.upstreamFd);
    const reason = flushFailure(bad);
    if (reason === 'client-error' || reason === 'upstream-error') {
      resetOrDestroy(reason === 'client-error' ? upstream : client);
      resetOrDestroy(reason === 'client-error' ? client : upstream);
    } else {
      client.destroy();
      upstream.destroy();
    }
    this.settle(add.id, {
      bytesUp: 0,
      bytesDown: 0,
      reason,
      ...(bad && bad.side !== 'timeout' ? { error: bad.error } : {}),
    });
  }

  serve(listeners: ServedListener[], sink: ServedSink): void {
    if (this.sink) throw new Error('engine.serve() may be called once');
    if (this.closing || this.slots.some((x) => x.dead)) throw new HandoverError('splice engine closed');
    this.sink = sink;
    // Each loop gets its own descriptor of each listening socket (it closes it at unlisten).
    const fds = this.slots.map((_, i) => listeners.map((l) => (i === 0 ? l.fd : sysDupCloexec(l.fd))));
    this.slots.forEach((slot, i) => {
      // A loop with served listeners must keep the process (and itself) alive.
      this.hold(slot);
      listeners.forEach((l, k) => {
        slot.thread.send({ t: 'listen', listener: { ...l, fd: fds[i]![k]! } }, true);
      });
    });
  }

  stopServing(): Promise<void> {
    const live = this.slots.filter((x) => !x.dead);
    if (!this.sink || live.length === 0 || this.closing) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.unlistening = live.length;
      this.unlistened = () => {
        this.unlistened = undefined;
        for (const slot of live) this.release(slot);
        resolve();
      };
      for (const slot of live) slot.thread.send({ t: 'unlisten' }, true);
    });
  }

  async servedConnections(): Promise<ServedConnection[]> {
    const lists = await Promise.all(
      this.slots.map((slot) =>
        this.ask(
          slot,
          (req) => ({ t: 'list', req }),
          [] as ServedConnection[],
          (m) => (m.t === 'list' ? m.conns : []),
        ),
      ),
    );
    return lists.flat();
  }

  /** Served flow ids are spread over the loops: id − 1 ≡ loop index (mod threads). */
  closeServed(id: number): Promise<boolean> {
    return this.ask(
      this.slots[(id - 1) % this.threads],
      (req) => ({ t: 'kill', req, id }),
      false,
      (m) => m.t === 'killed' && m.found,
    );
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    for (const s of this.slots) {
      if (s.dead) continue;
      s.thread.ref();
      s.thread.send({ t: 'close' }, true);
    }
    await Promise.all(this.slots.map((s) => s.closed));
    const gone = (s: Slot) => Promise.race([s.thread.exited, new Promise<void>((r) => setTimeout(r, 2000).unref())]);
    await Promise.all(this.slots.map(gone));
    for (const s of this.slots) await s.thread.terminate();
  }
}

/** dup(2) of both descriptors: if it fails (EMFILE), nothing has been done to the sockets yet. */
function dupPair(client: net.Socket, upstream: net.Socket): [number, number] {
  let clientFd = -1;
  try {
    clientFd = sysDupCloexec(socketFd(client));
    return [clientFd, sysDupCloexec(socketFd(upstream))];
  } catch (e) {
    if (clientFd >= 0) rawClose(clientFd);
    throw new HandoverError(`dup: ${(e as Error).message}`);
  }
}

/** Why a flow ended before its hand-over completed. */
function flushFailure(bad: Awaited<ReturnType<typeof flushed>>): RelayResult['reason'] {
  if (bad?.side === 'timeout') return 'idle';
  if (bad?.side === 'client') return 'client-error';
  if (bad?.side === 'upstream') return 'upstream-error';
  return 'aborted';
}

function resetOrDestroy(s: net.Socket): void {
  if (s.destroyed) return;
  if (!s.connecting) s.resetAndDestroy();
  else s.destroy();
}
