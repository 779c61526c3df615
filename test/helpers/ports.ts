// Loopback ports for tests that share the machine with parallel suites: a port chosen, released
// and bound later can be taken by another suite in between, so a port is either held for as
// long as the test needs it, or its bind is retried on another one.
import net from 'node:net';
import { once } from 'node:events';

/**
 * A port on 127.0.0.1 that refuses connections (ECONNREFUSED) until `release()`: the local
 * port of a loopback connection kept open. Bound but not listening, so the kernel answers a
 * SYN with a reset, and nobody can listen on it meanwhile.
 */
export async function refusingPort(): Promise<{ port: number; release(): void }> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const [accepted] = (await once(server, 'connection')) as [net.Socket];
  if (client.connecting) await once(client, 'connect');
  server.close();
  // Never what keeps a test process alive, if a failed test does not release it.
  client.unref();
  accepted.unref();
  return {
    port: client.localPort!,
    release() {
      client.destroy();
      accepted.destroy();
    },
  };
}

/**
 * `bind(port)` on a port the kernel just gave out (then released), again on another one while
 * it fails with `inUse(error)`: another suite took the port in between.
 */
export async function bindFreePort<T>(
  bind: (port: number) => Promise<T>,
  inUse: (e: unknown) => boolean,
  tries = 10,
): Promise<{ port: number; bound: T }> {
  for (let i = 1; ; i++) {
    const probe = net.createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    try {
      return { port, bound: await bind(port) };
    } catch (e) {
      if (i >= tries || !inUse(e)) throw e;
    }
  }
}
