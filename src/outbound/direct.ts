// The `direct` outbound: connect straight to the original destination, optionally with
// SO_MARK (so the firewall plan skips our own packets) or a spoofed client source (TPROXY
// full transparency: the server sees the client's address).
import net from 'node:net';
import { FlowError } from '../errors.js';
import { closeFd, createOutboundFd } from '../kernel/sockets.js';
import { formatEndpoint, type Endpoint } from '../kernel/sockaddr.js';

export interface DirectOptions {
  connectTimeoutMs: number;
  mark?: number;
  /** Bind the outbound socket to the client's own address (needs IP_TRANSPARENT). */
  spoofSource?: string;
  /** Aborts the attempt: the socket is destroyed and the promise rejects with code EABORTED. */
  signal?: AbortSignal;
}

/** A direct connect failed: `code` is the errno name, ETIMEDOUT, EABORTED or ESOCKET. */
export class ConnectError extends FlowError {
  constructor(code: string, message: string) {
    super(code, message, 'direct');
  }
}

/** Resolves with a connected socket, or rejects with ConnectError (timeout, refused, …). */
export function connectDirect(dst: Endpoint, opts: DirectOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(new ConnectError('EABORTED', `connect to ${formatEndpoint(dst)} aborted`));
      return;
    }
    let socket: net.Socket;
    let fd: number | undefined;
    try {
      fd = createOutboundFd({ family: dst.family, mark: opts.mark, transparentSource: opts.spoofSource });
      socket = fd === undefined ? new net.Socket({ allowHalfOpen: true }) : new net.Socket({ fd, allowHalfOpen: true });
    } catch (e) {
      if (fd !== undefined) closeFd(fd);
      reject(new ConnectError('ESOCKET', (e as Error).message));
      return;
    }
    const done = (): void => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    const onAbort = (): void => {
      done();
      socket.destroy();
      reject(new ConnectError('EABORTED', `connect to ${formatEndpoint(dst)} aborted`));
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => {
      done();
      socket.destroy();
      reject(
        new ConnectError('ETIMEDOUT', `connect to ${formatEndpoint(dst)} timed out after ${opts.connectTimeoutMs} ms`),
      );
    }, opts.connectTimeoutMs);
    socket.once('error', (e: NodeJS.ErrnoException) => {
      done();
      socket.destroy();
      reject(new ConnectError(e.code ?? 'ECONNECT', `connect to ${formatEndpoint(dst)}: ${e.message}`));
    });
    socket.connect({ host: dst.address, port: dst.port }, () => {
      done();
      socket.removeAllListeners('error');
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}
