import type net from 'node:net';

/**
 * Graceful stop of a set of Node servers and the flows they accepted: `stopAccepting` closes the
 * listening handles at once (close()'s own callback would wait for every connection), `drain`
 * resolves once the owner reports no flow left (`settled(0)`) or at the deadline.
 */
export class Drain {
  private drained: (() => void) | undefined;

  stopAccepting(servers: readonly net.Server[]): Promise<void> {
    for (const s of servers) s.close(() => {});
    return Promise.resolve();
  }

  wait(active: number, deadlineMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      if (active === 0) return resolve();
      const t = setTimeout(resolve, deadlineMs);
      this.drained = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /** The owner's flow count changed to `active`. */
  settled(active: number): void {
    if (active === 0) this.drained?.();
  }
}
