// The data plane for listeners whose flows nobody inspects (no header injection, no routing,
// no --dst-from-host): the splice engine accepts, connects and relays them itself, so no
// connection ever becomes a Node socket (src/relay/engine/worker.ts). This side turns the
// engine's batched flow records into the same log lines and metrics the JS path writes.
import type { FlowRecord, ServedListener, SpliceEngine } from '../relay/engine/engine.js';
import type { LogFields, Logger } from '../observe/log.js';
import type { DataPlaneMetrics } from '../observe/metrics.js';
import { fmt } from '../outbound/direct.js';
import type { ConnectionInfo, DataPlane, DataPlaneConfig, ListenerHandle } from './dataplane.js';

/** Hands the listeners to the engine; the returned plane reports and controls its flows. */
export function startServedPlane(
  cfg: DataPlaneConfig,
  listeners: ListenerHandle[],
  log: Logger,
  engine: SpliceEngine,
): DataPlane {
  const metrics: DataPlaneMetrics | undefined = cfg.metrics;
  let active = 0;
  let drained: (() => void) | undefined;
  let lastAcceptError = 0;
  const labels = new Set(listeners.map((l) => l.label));

  const onRecord = (r: FlowRecord): void => {
    if (r.t === 'refused') {
      metrics?.refused.inc({ reason: r.reason });
      if (r.reason === 'accept-error') {
        // Out of descriptors: logged at most once a second, like the JS listeners.
        if (Date.now() - lastAcceptError > 1000) {
          lastAcceptError = Date.now();
          log.error('accept failed', { listener: r.listener, error: r.error });
        }
        return;
      }
      const fields: LogFields = {
        ...(r.src ? { src: fmt(r.src) } : {}),
        ...(r.dst ? { dst: fmt(r.dst) } : {}),
        reason: r.reason,
      };
      if (r.reason === 'max-connections') fields.limit = cfg.maxConnections;
      if (r.error) fields.error = r.error;
      log.warn('refused', fields);
      return;
    }
    const failed = r.reason === 'connect-failed';
    metrics?.total.inc({ listener: r.listener, outbound: 'direct', result: r.reason });
    if (r.connectMs !== undefined) metrics?.connectSeconds.observe({ outbound: 'direct' }, r.connectMs / 1000);
    metrics?.bytes.inc({ direction: 'up' }, r.bytesUp);
    metrics?.bytes.inc({ direction: 'down' }, r.bytesDown);
    log.info('conn', {
      id: r.id,
      src: fmt(r.src),
      dst: fmt(r.dst),
      up: r.bytesUp,
      down: r.bytesDown,
      dur: `${r.ended - r.started}ms`,
      close: r.reason,
      error: r.error,
      relay: failed ? undefined : 'splice',
    });
  };

  engine.serve(
    listeners.map(
      (l): ServedListener => ({
        fd: l.fd,
        family: l.family,
        label: l.label,
        mode: cfg.mode,
        connectTimeoutMs: cfg.connectTimeoutMs,
        idleMs: cfg.idleTimeoutMs,
        mark: cfg.outboundMark,
        preserveSource: cfg.preserveSource,
        ownPorts: [...new Set([cfg.listenPort, ...(cfg.ownPorts ?? [])])],
        maxConnections: cfg.maxConnections,
      }),
    ),
    {
      records(records, byLabel) {
        for (const r of records) onRecord(r);
        active = 0;
        for (const label of labels) {
          const n = byLabel[label] ?? 0;
          active += n;
          metrics?.active.set({ listener: label }, n);
        }
        if (active === 0 && drained) drained();
      },
      failed(error) {
        // Nothing accepts any more: exit, so that the supervisor starts a new worker.
        log.error('splice engine failed; data plane exits', { error });
        process.exitCode = 1;
        setImmediate(() => process.exit(1));
      },
    },
  );

  return {
    get active() {
      return active;
    },
    relay: 'kernel',
    connections: async (): Promise<ConnectionInfo[]> => {
      const now = Date.now();
      return (await engine.servedConnections()).map((c) => ({
        id: c.id,
        listener: c.listener,
        src: fmt(c.src),
        dst: fmt(c.dst),
        via: 'direct',
        ageMs: now - c.started,
        up: c.bytesUp,
        down: c.bytesDown,
      }));
    },
    closeConnection: (id) => engine.closeServed(id),
    stopAccepting: () => engine.stopServing(),
    drain: (deadlineMs) =>
      new Promise<void>((resolve) => {
        if (active === 0) return resolve();
        const t = setTimeout(resolve, deadlineMs);
        drained = () => {
          drained = undefined;
          clearTimeout(t);
          resolve();
        };
      }),
    destroyAll: () => engine.close(),
  };
}
