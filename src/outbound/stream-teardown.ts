import type { Duplex } from 'node:stream';

/** The listeners a wrapper stream attached to the stream it wraps. */
export interface InnerListeners {
  onData: (chunk: Buffer) => void;
  onEnd: () => void;
  onClose: () => void;
  onDrain: () => void;
  onError: (e: NodeJS.ErrnoException) => void;
}

/**
 * Detaches a wrapper's listeners from its inner stream and closes that stream: at once after an
 * error, else once a FIN still queued behind data has gone out (5 s at most).
 */
export function releaseInner(inner: Duplex, l: InnerListeners, err: Error | null): void {
  inner.removeListener('data', l.onData);
  inner.removeListener('end', l.onEnd);
  inner.removeListener('close', l.onClose);
  inner.removeListener('drain', l.onDrain);
  inner.removeListener('error', l.onError);
  inner.on('error', () => {}); // late errors of a stream being torn down
  if (!err && inner.writableEnded && !inner.writableFinished && !inner.destroyed) {
    const t = setTimeout(() => inner.destroy(), 5000).unref();
    inner.once('finish', () => {
      clearTimeout(t);
      inner.destroy();
    });
  } else {
    inner.destroy();
  }
}
