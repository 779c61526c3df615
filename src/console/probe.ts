// Reachability checks the console runs from the supervisor: a TCP connect (and for port 80 an
// HTTP HEAD) directly and through a node's outbound. Sockets carry the bypass mark so the
// proxy's own capture rules never take them.
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { parseCheckTarget } from '../config/schema.js';
import { connectDirect } from '../outbound/direct.js';
import { httpProbe } from '../outbound/group.js';
import { createOutbound, parseNodeUri, type Destination, type HostResolver } from '../outbound/index.js';
import type { TcpOutbound } from '../outbound/types.js';
import { systemResolver } from '../outbound/node-conn.js';

export interface ProbeOptions {
  mark?: number;
  timeoutMs: number;
  /** Host names through the configured nameservers when given; default: the system resolver. */
  resolve?: HostResolver;
  /** See targetOutcome; default SETTLE_MS. */
  settleMs?: number;
}

export interface ProbeResult {
  ok: boolean;
  ms?: number;
  error?: string;
}

export interface NodeTestResult {
  ok: boolean;
  /** The URL requested through the node. */
  url: string;
  /** Time to the answer's status line, as the anchors' delay test shows it. */
  delayMs?: number;
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

/** Outbounds whose connect waits for the proxy's own answer about the target (SOCKS5 reply, CONNECT status). */
const CONFIRMS_TARGET = new Set(['socks5', 'http']);
/** How long a target reached through a node that does not confirm connections has to close on us. */
const SETTLE_MS = 1500;

/**
 * Shadowsocks, VMess, VLESS and Trojan hand back a stream before the node has reached the
 * target: the node closes it when the target refuses. Waits up to `settleMs` for that close;
 * data or a stream still open means the target took the connection. Resolves with the time of
 * the first byte, or undefined when nothing arrived.
 */
export function targetOutcome(stream: Duplex, settleMs: number): Promise<number | undefined> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const finish = (e?: Error, firstByteMs?: number): void => {
      clearTimeout(timer);
      stream.off('data', onData).off('end', onClose).off('close', onClose).off('error', onError);
      stream.destroy();
      if (e) reject(e);
      else resolve(firstByteMs);
    };
    const onData = () => finish(undefined, since(t0));
    const onClose = () => finish(new Error('the node closed the connection: the target refused it or is unreachable'));
    const onError = (e: Error) => finish(e);
    const timer = setTimeout(() => finish(), settleMs);
    stream.on('data', onData).once('end', onClose).once('close', onClose).once('error', onError);
  });
}

/**
 * Through a node: the outbound's connect (its handshake included), then the target's own
 * outcome: HEAD for :80, the node's answer where the protocol has one, else a close within
 * a short window (a closed port is a failure, not "reachable").
 */
export async function checkViaNode(
  uri: string,
  name: string,
  target: string,
  opts: ProbeOptions,
): Promise<ProbeResult> {
  const t0 = process.hrtime.bigint();
  try {
    const dst = await destinationOf(target, opts.resolve);
    const spec = parseNodeUri(uri, name);
    const s = await nodeOutbound(uri, name, opts).connect(dst, { source: { address: '0.0.0.0', port: 0 } });
    const connectedMs = since(t0);
    if (dst.port === 80) await headRequest(s, dst.domain ?? dst.ip, opts.timeoutMs);
    else if (CONFIRMS_TARGET.has(spec.kind)) s.destroy();
    else await targetOutcome(s, Math.min(opts.settleMs ?? SETTLE_MS, opts.timeoutMs));
    return { ok: true, ms: dst.port === 80 ? since(t0) : connectedMs };
  } catch (e) {
    return { ok: false, error: message(e) };
  }
}

function nodeOutbound(uri: string, name: string, opts: ProbeOptions): TcpOutbound {
  return createOutbound(parseNodeUri(uri, name), {
    ...(opts.mark ? { mark: opts.mark } : {}),
    ...(opts.resolve ? { resolve: opts.resolve } : {}),
    connectTimeoutMs: opts.timeoutMs,
    handshakeTimeoutMs: opts.timeoutMs,
  });
}

/**
 * The anchors' delay test: an HTTP GET of `url` through the node (a `generate_204`-style URL);
 * a 2xx answer is success and the time to its status line is the delay.
 */
export async function testNode(uri: string, name: string, url: string, opts: ProbeOptions): Promise<NodeTestResult> {
  let ob: TcpOutbound;
  try {
    ob = nodeOutbound(uri, name, opts);
  } catch (e) {
    return { ok: false, url, error: message(e) };
  }
  try {
    const ms = await httpProbe(ob, url, opts.timeoutMs);
    return { ok: true, url, delayMs: Math.round(ms * 10) / 10 };
  } catch (e) {
    return { ok: false, url, error: message(e) };
  }
}
