// The engine loop inline on the main thread, for a data plane with one engine thread (the
// sidecar): no second V8 isolate holding its own copy of the loop, the rewriter and koffi's
// bindings. The loop never blocks here: libuv polls the engine's epoll descriptor (readable
// while events are ready, and nothing waits on a threadpool thread), each turn is an
// epoll_wait with timeout 0, and its deadlines are Node timers. Messages go both ways as they
// are: no structured clone, no eventfd.
import { pollReadable, type FdPoller } from '../../kernel/ffi.js';
import type { EngineThread, LoopEvents } from './hosting.js';
import type { EngineHost, EngineInit, ToWorker } from './protocol.js';
import { Engine } from './worker.js';

/**
 * Turns per wake while they keep finding events: events that came in meanwhile are taken
 * without a round through libuv (measured: no clear difference either way under load).
 */
const DRAIN_TURNS = 4;

/** Starts the loop on this thread (unref'd until told otherwise). */
export function startInlineLoop(init: EngineInit, events: LoopEvents): EngineThread {
  return new InlineLoop(init, events);
}

class InlineLoop implements EngineThread {
  private readonly inbox: ToWorker[] = [];
  private head = 0;
  private readonly engine: Engine;
  private readonly poller: FdPoller;
  private polling = true;
  private queued: NodeJS.Immediate | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerDue = 0;
  private gone = false;
  private onGone!: () => void;
  readonly exited = new Promise<void>((r) => (this.onGone = r));

  constructor(
    init: EngineInit,
    private readonly events: LoopEvents,
  ) {
    const host: EngineHost = {
      receive: () => this.receive(),
      post: (m) => this.deliver(m),
      close: () => this.stopPolling(),
    };
    this.engine = new Engine(init, host);
    this.poller = pollReadable(this.engine.epfd, this.runTurn, (status) =>
      this.fail(`polling the epoll descriptor: status ${status}`),
    );
    this.poller.unref();
  }

  send(m: ToWorker): void {
    this.inbox.push(m);
    this.queueTurn();
  }

  ref(): void {
    if (this.polling) this.poller.ref();
  }

  unref(): void {
    if (this.polling) this.poller.unref();
  }

  terminate(): Promise<void> {
    this.stop();
    return Promise.resolve();
  }

  private receive(): ToWorker | undefined {
    if (this.head < this.inbox.length) return this.inbox[this.head++];
    if (this.head > 0) {
      this.inbox.length = 0;
      this.head = 0;
    }
    return undefined;
  }

  /** A throwing listener must not leave the loop half way through a turn: it throws later, as it would from a worker's message. */
  private deliver(m: Parameters<LoopEvents['message']>[0]): void {
    try {
      this.events.message(m);
    } catch (e) {
      process.nextTick(() => {
        throw e;
      });
    }
  }

  private readonly runTurn = (): void => {
    this.queued = undefined;
    if (this.gone) return;
    try {
      for (let i = 0; i < DRAIN_TURNS && this.engine.turn(0) > 0 && !this.engine.stopped; i++);
    } catch (e) {
      return this.fail((e as Error).stack ?? String(e));
    }
    if (this.engine.stopped) return this.stop();
    this.schedule(this.engine.waitMs());
  };

  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.runTurn();
  };

  /** The next turn: at once (0), at a deadline (> 0), or when an event comes (< 0: the poll). */
  private schedule(ms: number): void {
    if (ms === 0) return this.queueTurn();
    if (ms < 0) return;
    const due = performance.now() + ms;
    // A timer that fires early only costs a turn that finds nothing due.
    if (this.timer && this.timerDue <= due) return;
    clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = setTimeout(this.onTimer, ms);
    this.timer.unref();
  }

  /** After what this event-loop turn is doing: messages queued together share one loop turn. */
  private queueTurn(): void {
    if (!this.gone) this.queued ??= setImmediate(this.runTurn);
  }

  private stopPolling(): void {
    if (!this.polling) return;
    this.polling = false;
    this.poller.close();
  }

  private stop(): void {
    if (this.gone) return;
    this.gone = true;
    this.stopPolling();
    clearTimeout(this.timer);
    clearImmediate(this.queued);
    this.onGone();
  }

  private fail(error: string): void {
    this.stop();
    this.deliver({ t: 'fatal', error });
  }
}
