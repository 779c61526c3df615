// Where an engine loop (worker.ts's Engine) runs, as the main thread sees it: in a worker
// thread of its own, or inline on the main thread (inline.ts). engine.ts talks to either
// through EngineThread.
import { MessageChannel, Worker, type TransferListItem } from 'node:worker_threads';
import { eventfdSignal, rawClose, sysEventfd } from '../../kernel/ffi.js';
import type { EngineInit, FromWorker, SpliceWorkerInit, ToWorker } from './protocol.js';

export interface EngineThread {
  /** Queues a message for the loop; `now`: wake it at once rather than once per event-loop turn. */
  send(m: ToWorker, now?: boolean): void;
  /** Whether the loop keeps the process alive (it must while it holds connections or listeners). */
  ref(): void;
  unref(): void;
  /** Resolves when the loop is gone for good (closed, failed, or its thread exited). */
  readonly exited: Promise<void>;
  /** Frees what is left of it (the worker's port and thread); after 'closed' or a failure. */
  terminate(): Promise<void>;
}

/** What a loop reports: its messages (ending with 'closed' or 'fatal'), or that its thread died. */
export interface LoopEvents {
  message(m: FromWorker): void;
  died(error: string): void;
}

/** Starts the loop in a worker thread (unref'd until told otherwise). */
export function startWorkerLoop(init: EngineInit, events: LoopEvents): EngineThread {
  const wakeFd = sysEventfd();
  const exitFlag = new Int32Array(new SharedArrayBuffer(4));
  const { port1, port2 } = new MessageChannel();
  const worker = spawn({ ...init, wakeFd, exitFlag: exitFlag.buffer as SharedArrayBuffer, port: port2 });
  let wanted = false;
  let dead = false;
  worker.unref();
  const exited = new Promise<void>((r) => worker.once('exit', () => r()));
  void exited.then(() => rawClose(wakeFd));
  worker.on('message', (m: FromWorker) => {
    // An unref() before the thread is online does not stick.
    if (m.t === 'ready') return void (wanted || worker.unref());
    if (m.t === 'closed' || m.t === 'fatal') dead = true;
    events.message(m);
  });
  const die = (error: string): void => {
    dead = true;
    events.died(error);
  };
  worker.on('error', (e) => die(`splice worker failed: ${e.message}`));
  worker.on('exit', () => die('splice worker exited'));

  // At process exit Node waits for every worker to stop, and ours blocks in epoll_wait.
  const stopAtExit = (): void => {
    Atomics.store(exitFlag, 0, 1);
    if (!dead) eventfdSignal(wakeFd);
  };
  exitHooks.add(stopAtExit);
  if (exitHooks.size === 1) process.on('exit', runExitHooks);

  // One eventfd write per event-loop turn, however many messages that turn queued: a write
  // that wakes a thread is a costly FFI call, and new connections come in bursts.
  let wakeScheduled = false;
  const wake = (): void => {
    wakeScheduled = false;
    if (!dead) eventfdSignal(wakeFd);
  };
  return {
    send(m, now = false) {
      port1.postMessage(m);
      if (now) return eventfdSignal(wakeFd);
      if (wakeScheduled) return;
      wakeScheduled = true;
      setImmediate(wake);
    },
    ref() {
      wanted = true;
      worker.ref();
    },
    unref() {
      wanted = false;
      worker.unref();
    },
    exited,
    async terminate() {
      port1.close();
      await worker.terminate();
      exitHooks.delete(stopAtExit);
      if (exitHooks.size === 0) process.removeListener('exit', runExitHooks);
    },
  };
}

function spawn(workerData: SpliceWorkerInit): Worker {
  const opts = { workerData, transferList: [workerData.port] as unknown as TransferListItem[] };
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./worker.js', import.meta.url), opts);
  // Running from sources under tsx: its --import hooks do not reach worker threads.
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./worker.ts', import.meta.url).href;
  const code = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
  return new Worker(code, { ...opts, eval: true });
}

const exitHooks = new Set<() => void>();
function runExitHooks(): void {
  for (const h of exitHooks) h();
}
