// SOCKS5 UDP ASSOCIATE (RFC 1928 §7) on the server side: a UDP relay socket on the address
// the client reached us at, taking datagrams only from the client's address (and port, when
// the request named one). Each destination becomes a flow of the routed UDP outbound, routed
// like captured UDP (domain destinations by name); replies go back with the SOCKS header.
// Fragments (FRAG ≠ 0) are dropped. The association ends with its TCP control connection.
import dgram from 'node:dgram';
import { isIP } from 'node:net';
import type net from 'node:net';
import { formatEndpoint, unmapAddress, type Endpoint } from '../kernel/sockaddr.js';
import { UdpRefusedError } from '../flow/udp-routed.js';
import { ATYP_DOMAIN, ATYP_IPV4, ATYP_IPV6, type SocksAddress } from '../outbound/socks5.js';
import type { Logger } from '../observe/log.js';
import type { UdpOutbound, UdpSession } from '../udp/types.js';
import type { ProxyTarget } from './dial.js';
import { decodeSocksUdpPacket, encodeSocksUdpPacket } from './socks5-server.js';

/** Destinations one association may talk to at once; datagrams to more are dropped. */
const MAX_FLOWS = 256;
/** Datagrams held per destination while its session opens. */
const MAX_PENDING = 16;

export interface UdpAssociationOptions {
  control: net.Socket;
  /** The client, as the control connection shows it. */
  client: Endpoint;
  /** DST of the request: where the client will send from; 0.0.0.0:0 when it cannot tell. */
  requested: ProxyTarget;
  outbound: UdpOutbound;
  resolve(name: string): Promise<{ address: string; family: 4 | 6 }>;
  idleTimeoutMs: number;
  log: Logger;
}

export interface AssociationTotals {
  up: number;
  down: number;
  flows: number;
  dropped: number;
}

interface UdpFlow {
  target: SocksAddress;
  /** Where replies go: the client's address and port of its latest datagram. */
  client: { address: string; port: number };
  session?: UdpSession;
  pending: Buffer[];
  /** Refused or failed: its datagrams are dropped until it expires. */
  failed?: boolean;
  last: number;
}

let nextUdpFlowId = 1;

export async function startUdpAssociation(
  o: UdpAssociationOptions,
): Promise<{ bound: Endpoint; done: Promise<AssociationTotals> }> {
  const local = unmapAddress(o.control.localAddress ?? '0.0.0.0');
  const family = isIP(local) === 6 ? 6 : 4;
  const sock = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind({ address: local, port: 0 }, () => {
      sock.removeListener('error', reject);
      resolve();
    });
  }).catch((e) => {
    sock.close();
    throw e;
  });
  const totals: AssociationTotals = { up: 0, down: 0, flows: 0, dropped: 0 };
  let ended = false;
  const flows = new Map<string, UdpFlow>();
  const requestedPort = o.requested.port;
  const requestedHost = isIP(o.requested.host) ? unmapAddress(o.requested.host) : '';
  const specific = requestedHost !== '' && requestedHost !== '0.0.0.0' && requestedHost !== '::';

  const closeFlow = (key: string): void => {
    flows.get(key)?.session?.close();
    flows.delete(key);
  };

  const open = (key: string, f: UdpFlow): void => {
    const t = f.target;
    const domain = t.type === ATYP_DOMAIN ? t.host : undefined;
    void (async () => {
      const r = domain ? await o.resolve(domain) : { address: unmapAddress(t.host), family: isIP(t.host) as 4 | 6 };
      const session = await o.outbound.open({
        id: nextUdpFlowId++,
        src: { ...f.client, family },
        dst: { address: r.address, port: t.port, family: r.family },
        ...(domain ? { domain } : {}),
      });
      if (flows.get(key) !== f) return session.close();
      f.session = session;
      session.onMessage((payload, from) => reply(f, payload, from));
      session.onClose(() => closeFlow(key));
      for (const p of f.pending) session.send(p);
      f.pending = [];
    })().catch((e: NodeJS.ErrnoException) => {
      // Refused (the routed outbound logged why) or unreachable: drop until it expires.
      f.failed = true;
      f.pending = [];
      if (!(e instanceof UdpRefusedError))
        o.log.info('udp route', {
          src: formatEndpoint(f.client),
          dst: formatEndpoint({ address: t.host, port: t.port }),
          refused: 'open-failed',
          error: e.code ?? e.message,
        });
    });
  };

  const reply = (f: UdpFlow, payload: Buffer, from?: Endpoint): void => {
    const source: SocksAddress = from
      ? { host: from.address, port: from.port, type: isIP(from.address) === 6 ? ATYP_IPV6 : ATYP_IPV4 }
      : f.target;
    if (ended) return; // a late reply after the association closed its socket
    f.last = Date.now();
    totals.down += payload.length;
    sock.send(encodeSocksUdpPacket({ frag: 0, address: source, payload }), f.client.port, f.client.address);
  };

  sock.on('message', (msg, rinfo) => {
    const from = unmapAddress(rinfo.address);
    const ok =
      from === o.client.address &&
      (requestedPort === 0 || rinfo.port === requestedPort) &&
      (!specific || from === requestedHost);
    const d = ok ? decodeSocksUdpPacket(msg) : undefined;
    if (!d?.ok || d.packet.frag !== 0) {
      totals.dropped++;
      return;
    }
    const target = d.packet.address;
    const key = `${target.host}|${target.port}`;
    let f = flows.get(key);
    if (!f) {
      if (flows.size >= MAX_FLOWS) {
        totals.dropped++;
        return;
      }
      f = { target, client: { address: rinfo.address, port: rinfo.port }, pending: [], last: Date.now() };
      flows.set(key, f);
      totals.flows++;
      open(key, f);
    }
    f.client = { address: rinfo.address, port: rinfo.port };
    f.last = Date.now();
    const payload = d.packet.payload;
    if (f.failed || (!f.session && f.pending.length >= MAX_PENDING)) {
      totals.dropped++;
      return;
    }
    totals.up += payload.length;
    if (f.session) f.session.send(payload);
    else f.pending.push(payload);
  });
  sock.on('error', () => {}); // a send to a client that went away; the control connection decides

  const sweep = setInterval(
    () => {
      const now = Date.now();
      for (const [key, f] of flows) if (now - f.last > o.idleTimeoutMs) closeFlow(key);
    },
    Math.min(Math.max(o.idleTimeoutMs / 2, 1000), 30_000),
  );
  sweep.unref();

  const done = new Promise<AssociationTotals>((resolve) => {
    const end = (): void => {
      if (ended) return;
      ended = true;
      clearInterval(sweep);
      for (const key of [...flows.keys()]) closeFlow(key);
      sock.close();
      o.control.destroy();
      resolve(totals);
    };
    // The control connection carries nothing more; its end is the association's end.
    o.control.on('data', () => {});
    o.control.once('end', end);
    o.control.once('close', end);
    o.control.on('error', end);
    o.control.resume();
    if (o.control.destroyed) end();
  });
  const addr = sock.address();
  return { bound: { address: addr.address, port: addr.port, family }, done };
}
