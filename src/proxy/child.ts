// Entry point of the data-plane child process. It receives its listeners as inherited file
// descriptors and its settings over IPC, so it can run unprivileged (the supervisor keeps
// the privileges needed for the firewall).
import { createLogger } from '../observe/log.js';
import { batchedStderr } from '../observe/batched-stderr.js';
import { LogRing } from '../observe/log-ring.js';
import { PlaneRuntime } from './plane-runtime.js';
import { FIRST_LISTENER_FD, type FromChild, type ToChild, type WorkerShare } from './protocol.js';
import { readListFile } from './rule-lists.js';

function send(msg: FromChild): void {
  process.send?.(msg);
}

// Replaced at start: with metrics when there is an admin API (the supervisor aggregates every
// worker's for its /metrics); without one, prom-client stays out of the process.
let runtime = new PlaneRuntime(undefined);
let started = false;
/** This worker's last log lines; the supervisor pulls them for the console ('logs'). */
const logRing = new LogRing();

/** Answers a request carrying an id; a failed promise answers `fallback`. */
function answer(id: number, data: unknown | Promise<unknown>, fallback?: unknown): void {
  void Promise.resolve(data).then(
    (d) => send({ type: 'answer', id, data: d }),
    () => send({ type: 'answer', id, data: fallback }),
  );
}

function onQuery(msg: Extract<ToChild, { type: 'query' }>): void {
  if (msg.what === 'connections') answer(msg.id, runtime.connections(), []);
  else if (msg.what === 'groups') answer(msg.id, runtime.groupStates());
  else if (msg.what === 'dns-release') answer(msg.id, runtime.releaseDns(), false);
  else if (msg.what === 'dns-restore') answer(msg.id, runtime.restoreDns(), false);
  else if (msg.what === 'dns-flush') answer(msg.id, runtime.flushDns());
  else answer(msg.id, runtime.metricSnapshot());
}

/** The listeners arrive as fds 4, 5, … (capture listeners, then proxy mode's). */
function listenerFds(w: WorkerShare): number[] {
  return [...w.listeners, ...w.proxyListeners].map((_, i) => FIRST_LISTENER_FD + i);
}

/** A runtime with metrics when `wanted` (loads prom-client), before it starts. */
async function withMetrics(wanted: boolean): Promise<void> {
  if (wanted) runtime = new PlaneRuntime(new (await import('../observe/metrics.js')).DataPlaneMetrics());
}

process.on('message', (msg: ToChild) => {
  if (msg.type === 'start') {
    started = true;
    const log = createLogger(msg.cfg.logFormat, batchedStderr(), logRing); // one write per event-loop turn
    // Domain lists arrive packed in a memory file: used as they are, nothing parsed again.
    const w = msg.worker;
    const lists = w.lists ? readListFile(w.lists.fd, w.lists.length) : undefined;
    withMetrics(msg.cfg.admin !== undefined)
      .then(() => runtime.start(msg.cfg, w, listenerFds(w), log, lists))
      .then(
        (relay) => send({ type: 'ready', relay }),
        (e: Error) => send({ type: 'failed', message: e.message }),
      );
  } else if (msg.type === 'query') onQuery(msg);
  else if (msg.type === 'select-group') {
    try {
      runtime.selectGroup(msg.group, msg.member);
      answer(msg.id, { ok: true });
    } catch (e) {
      answer(msg.id, { ok: false, error: (e as Error).message });
    }
  } else if (msg.type === 'live') answer(msg.id, runtime.live(msg.closedAfter));
  else if (msg.type === 'logs') answer(msg.id, logRing.read({ since: msg.after, limit: 2000 }).entries);
  else if (msg.type === 'close-connection') answer(msg.id, runtime.closeConnection(msg.conn), false);
  else if (msg.type === 'shutdown') {
    if (!started) process.exit(0);
    void runtime
      .shutdown(msg.drainMs, () => send({ type: 'not-accepting' }))
      .then(() => {
        send({ type: 'drained' });
        process.exit(0);
      });
  }
});

// The supervisor going away (even by SIGKILL) closes the IPC channel: do not outlive it.
process.on('disconnect', () => process.exit(0));
// Signals are the supervisor's business (it forwards a shutdown message).
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
process.on('SIGHUP', () => {});
