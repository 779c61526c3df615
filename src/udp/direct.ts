// The `direct` UDP outbound: a connected Node dgram socket per flow. With a bypass mark the
// socket is made in the kernel layer with SO_MARK and adopted by dgram (bind({ fd })), so
// the firewall plan never captures the proxy's own datagrams.
import dgram from 'node:dgram';
import { closeFd } from '../kernel/sockets.js';
import { createMarkedUdpFd } from '../kernel/udp-tproxy.js';
import type { UdpFlowInfo, UdpOutbound, UdpSession } from './types.js';

export interface DirectUdpOptions {
  mark?: number;
  name?: string;
}

export function directUdpOutbound(opts: DirectUdpOptions = {}): UdpOutbound {
  return {
    name: opts.name ?? 'direct',
    kind: 'direct',
    open: (flow) => openDirect(flow, opts.mark),
  };
}

function openDirect(flow: UdpFlowInfo, mark: number | undefined): Promise<UdpSession> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket({ type: flow.dst.family === 4 ? 'udp4' : 'udp6' });
    let opened = false;
    let closed = false;
    let onMessage: ((payload: Buffer) => void) | undefined;
    let onClose: ((reason: string, error?: string) => void) | undefined;
    const close = () => {
      if (closed) return;
      closed = true;
      try {
        sock.close();
      } catch {
        /* not bound yet / already closed */
      }
    };
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (!opened) {
        close();
        reject(e);
        return;
      }
      // A connected UDP socket reports ICMP errors (port unreachable → ECONNREFUSED).
      const cb = onClose;
      onClose = undefined;
      close();
      cb?.(e.code === 'ECONNREFUSED' ? 'refused' : 'error', e.code ?? e.message);
    });
    sock.on('message', (m) => onMessage?.(m));
    const connect = () =>
      sock.connect(flow.dst.port, flow.dst.address, () => {
        opened = true;
        resolve({
          send: (payload) => {
            if (!closed) sock.send(payload);
          },
          onMessage: (cb) => void (onMessage = cb),
          onClose: (cb) => void (onClose = cb),
          close,
        });
      });
    if (!mark) return connect();
    let fd: number;
    try {
      fd = createMarkedUdpFd(flow.dst.family, mark);
    } catch (e) {
      close();
      return reject(e);
    }
    try {
      sock.bind({ fd }, connect);
    } catch (e) {
      closeFd(fd);
      close();
      reject(e);
    }
  });
}
