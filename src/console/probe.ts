// Reachability checks the console runs from the supervisor: a TCP connect (and for port 80 an
// HTTP HEAD) directly and through a node's outbound. Sockets carry the bypass mark so the
// proxy's own capture rules never take them.
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { parseCheckTarget } from '../config/schema.js';
import { connectDirect } from '../outbound/direct.js';
import { createOutbound, parseNodeUri, type Destination, type HostResolver } from '../outbound/index.js';
import { systemResolver } from '../outbound/node-conn.js';

export interface ProbeOptions {
  mark?: number;
  timeoutMs: number;
  /** Host names through the -N nameservers when given; default: the system resolver. */
  resolve?: HostResolver;
}

export interface ProbeResult {
  ok: boolean;
  ms?: number;
  error?: string;
}

export interface NodeTestResult {
  ok: boolean;
  connectMs?: number;
  handshakeMs?: number;
  error?: string;
}

const since = (t: bigint) => Math.round(Number(process.hrtime.bigint() - t) / 1e5) / 10;

async function destinationOf(target: string, resolve: HostResolver = systemResolver): Promise<Destination> {
  const { host, port } = parseCheckTarget(target);
  const family = isIP(host);
  if (family) return { ip: host, port, family: family as 4 | 6 };
  try {
    const a = await resolve(host);
    return { ip: a.address, port, family: a.family as 4 | 6, domain: host };
  } catch {
    return { ip: '0.0.0.0', port, family: 4, domain: host }; // a node may still resolve it
  }
}

/** HEAD / and wait for the status line; resolves with it, rejects on close/timeout. */
function headRequest(stream: Duplex, host: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const t = setTimeout(() => finish(new Error(`no HTTP answer within ${timeoutMs} ms`)), timeoutMs);
    const finish = (e?: Error) => {
      clearTimeout(t);
      stream.removeAllListeners('data');
      stream.destroy();
      if (e) reject(e);
      else resolve(got.split('\r\n')[0]!);
    };
    stream.on('data', (b: Buffer) => {
      got += b.toString('latin1');
      if (got.includes('\r\n')) finish();
    });
    stream.once('error', (e: Error) => finish(e));
    stream.once('close', () =>
      finish(new Error(got ? 'connection closed mid-answer' : 'connection closed without an answer')),
    );
    stream.write(`HEAD / HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: tranproxy-check\r\nConnection: close\r\n\r\n`);
  });
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Direct: TCP connect to the target (and HEAD for :80). */
export async function checkDirect(target: string, opts: ProbeOptions): Promise<ProbeResult> {
  const t0 = process.hrtime.bigint();
  try {
    const dst = await destinationOf(target, opts.resolve);
    if (dst.ip === '0.0.0.0') throw new Error(`cannot resolve ${dst.domain}`);
    const s = await connectDirect(
      { address: dst.ip, port: dst.port, family: dst.family },
      { connectTimeoutMs: opts.timeoutMs, ...(opts.mark ? { mark: opts.mark } : {}) },
    );
    if (dst.port === 80) await headRequest(s, dst.domain ?? dst.ip, opts.timeoutMs);
    else s.destroy();
    return { ok: true, ms: since(t0) };
  } catch (e) {
    return { ok: false, error: message(e) };
  }
}

/** Through a node: the outbound's connect (its handshake included), and HEAD for :80. */
export async function checkViaNode(
  uri: string,
  name: string,
  target: string,
  opts: ProbeOptions,
): Promise<ProbeResult> {
  const t0 = process.hrtime.bigint();
  try {
    const dst = await destinationOf(target, opts.resolve);
    const ob = createOutbound(parseNodeUri(uri, name), {
      ...(opts.mark ? { mark: opts.mark } : {}),
      ...(opts.resolve ? { resolve: opts.resolve } : {}),
      connectTimeoutMs: opts.timeoutMs,
      handshakeTimeoutMs: opts.timeoutMs,
    });
    const s = await ob.connect(dst, { source: { address: '0.0.0.0', port: 0 } });
    if (dst.port === 80) await headRequest(s, dst.domain ?? dst.ip, opts.timeoutMs);
    else s.destroy();
    return { ok: true, ms: since(t0) };
  } catch (e) {
    return { ok: false, error: message(e) };
  }
}

/** Latency test of a node: TCP connect to it, then the whole way to `target` through it. */
export async function testNode(
  uri: string,
  name: string,
  target: string | undefined,
  opts: ProbeOptions,
): Promise<NodeTestResult> {
  let spec: ReturnType<typeof parseNodeUri>;
  try {
    spec = parseNodeUri(uri, name);
  } catch (e) {
    return { ok: false, error: message(e) };
  }
  const t0 = process.hrtime.bigint();
  let connectMs: number;
  try {
    let address = spec.host;
    let family = isIP(address) as 0 | 4 | 6;
    if (!family) {
      const a = await (opts.resolve ?? systemResolver)(spec.host);
      address = a.address;
      family = a.family as 4 | 6;
    }
    const s = await connectDirect(
      { address, port: spec.port, family },
      { connectTimeoutMs: opts.timeoutMs, ...(opts.mark ? { mark: opts.mark } : {}) },
    );
    connectMs = since(t0);
    s.destroy();
  } catch (e) {
    return { ok: false, error: `cannot reach the node: ${message(e)}` };
  }
  if (!target) return { ok: true, connectMs, error: 'no check target configured: handshake not tested' };
  const via = await checkViaNode(uri, name, target, opts);
  return via.ok
    ? { ok: true, connectMs, ...(via.ms !== undefined ? { handshakeMs: via.ms } : {}) }
    : { ok: false, connectMs, error: `through the node to ${target}: ${via.error}` };
}
