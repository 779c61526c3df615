// Read a connection's first bytes until a decision can be made, without losing them: the
// caller relays `head` first. Bounded by a timer, because server-first protocols (SMTP,
// SSH) send nothing until the server speaks.
import type { Socket } from 'node:net';

export type PeekOutcome<T> =
  | { head: Buffer; result: T }
  | { head: Buffer; result: undefined; why: 'timeout' | 'closed' };

export function peek<T>(
  client: Socket,
  decide: (buf: Buffer) => T | 'need-more',
  timeoutMs: number,
): Promise<PeekOutcome<T>> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (out: PeekOutcome<T>): void => {
      clearTimeout(timer);
      client.pause();
      client.removeListener('data', onData);
      client.removeListener('end', onClosed);
      client.removeListener('close', onClosed);
      resolve(out);
    };
    const head = (): Buffer => (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    const onData = (d: Buffer): void => {
      chunks.push(d);
      size += d.length;
      const h = head();
      const r = decide(h);
      if (r !== 'need-more') finish({ head: h, result: r });
    };
    const onClosed = (): void => finish({ head: head(), result: undefined, why: 'closed' });
    const timer = setTimeout(() => finish({ head: head(), result: undefined, why: 'timeout' }), timeoutMs);
    client.on('data', onData);
    client.once('end', onClosed);
    client.once('close', onClosed);
    client.resume();
  });
}
