// Messages between the splice engine (main thread, splice.ts) and its workers
// (splice-worker.ts). Plain structured-clone data.
import type { MessagePort } from 'node:worker_threads';

/** workerData of a splice worker. */
export interface SpliceWorkerInit {
  /** eventfd the main thread signals after posting on `port`; owned (closed) by the main thread. */
  wakeFd: number;
  /** Requested pipe size (F_SETPIPE_SZ); the kernel's default is kept if refused. */
  pipeSize: number;
  /** Idle pipes kept open for reuse. */
  pipePool: number;
  port: MessagePort;
  /** Int32Array over it: [0] ≠ 0 means the process is exiting: leave the loop at once. */
  exitFlag: SharedArrayBuffer;
}

/** main → worker (on `port`, read with receiveMessageOnPort). */
export type ToWorker =
  | {
      t: 'add';
      id: number;
      /** Duplicated descriptors, now owned by the worker: it closes each exactly once. */
      clientFd: number;
      upstreamFd: number;
      /** ≤ 0: no idle timeout. */
      idleMs: number;
    }
  | { t: 'close' };

/** worker → main (parentPort). */
export type FromWorker =
  | { t: 'ready' }
  | {
      t: 'done';
      id: number;
      bytesUp: number;
      bytesDown: number;
      reason: 'eof' | 'idle' | 'client-error' | 'upstream-error' | 'aborted';
      error?: string;
    }
  | { t: 'closed' }
  | { t: 'fatal'; error: string };
