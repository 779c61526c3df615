// The demo's moving parts: starting tranproxy and the peers in the lab, one request and
// everything logged about it (the proxy's or publisher's conn line, the node's line, what
// the server saw), and the checks built from that. No step logic here.
import { fileURLToPath } from 'node:url';
import type { Host, LabProcess } from '../netlab/lab.js';
import { endpoint, type Check, type Family, type RequestResult, type Target } from './model.js';

/** This package's CLI entry and the demo's own peers, next to this file in dist/. */
export const MAIN_JS = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const PEER_SERVER = fileURLToPath(new URL('./peer-server.js', import.meta.url));
const PEER_CLIENT = fileURLToPath(new URL('./peer-client.js', import.meta.url));
const SOCKS5_NODE = fileURLToPath(new URL('./socks5-node.js', import.meta.url));

const READY_MS = 15_000;
const CONN_LOG_MS = 5_000;
const NODE_LOG_MS = 2_000;

export function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function errorText(e: unknown): string {
  const msg = (e instanceof Error ? e.message : String(e)).trim();
  // Keep it short: a failing proxy's whole output is in the message.
  const lines = msg.split('\n');
  return lines.length > 12 ? [...lines.slice(0, 2), '…', ...lines.slice(-9)].join('\n') : msg;
}

/** The demo's HTTP server (peer-server.js) on `port`, dual stack. */
export async function startHttpServer(host: Host, port: number): Promise<LabProcess> {
  const p = host.spawn(process.execPath, [PEER_SERVER, String(port)]);
  await p.waitForOutput(/^listening \d+$/m, 10_000);
  return p;
}

/** The built-in SOCKS5 node (socks5-node.js) on `ip:port`. */
export async function startSocksNode(host: Host, ip: string, port: number): Promise<LabProcess> {
  const p = host.spawn(process.execPath, [SOCKS5_NODE, ip, String(port)]);
  await p.waitForOutput(/^listening \d+$/m, 10_000);
  return p;
}

/** `tranproxy ARGS…` (run or publish) in `host`, once it logged its `ready:` line. */
export async function startTranproxy(
  host: Host,
  args: string[],
): Promise<{ proc: LabProcess; ready: Record<string, string> }> {
  const proc = host.spawn(process.execPath, [MAIN_JS, ...args]);
  let line: string;
  try {
    line = await proc.waitForOutput(/^tranproxy: ready:.*$/m, READY_MS);
  } catch {
    const exit = await proc.stop('SIGKILL');
    const said = proc.output().trim().split('\n').slice(-8).join('\n') || 'no output';
    throw new Error(
      `tranproxy ${args[0]} did not get ready (${exit === null ? `not within ${READY_MS / 1000} s` : `exit ${exit}`}):\n${said}`,
    );
  }
  const ready: Record<string, string> = {};
  for (const m of line.matchAll(/([\w-]+)=(\S+)/g)) ready[m[1]!] = m[2]!;
  return { proc, ready };
}

/** The first match of `re` in what `proc` printed after offset `mark`, waiting up to `ms`. */
async function matchSince(
  proc: LabProcess,
  mark: number,
  re: RegExp,
  ms: number,
): Promise<RegExpExecArray | undefined> {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = re.exec(proc.output().slice(mark));
    if (m || Date.now() >= deadline) return m ?? undefined;
    await new Promise((r) => setTimeout(r, 25));
  }
}

function fields(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of line.matchAll(/\b([\w-]+)=(\S+)/g)) out[m[1]!] ??= m[2]!;
  return out;
}

export interface RequestSpec {
  from: Host;
  family: Family;
  label: string;
  target: Target;
  url: string;
  /** tranproxy run / publish: find its conn line for this connection. */
  proxy?: LabProcess;
  /** The SOCKS5 node: find its line for this connection. */
  node?: LabProcess;
  /** Injected headers to read back from the server's answer (lower-case names). */
  headers?: string[];
}

/** One GET, and every log line about it. */
export async function request(spec: RequestSpec): Promise<RequestResult> {
  const out: RequestResult = {
    family: spec.family,
    label: spec.label,
    from: spec.from.name,
    target: spec.target,
    url: spec.url,
  };
  const proxyMark = spec.proxy?.output().length ?? 0;
  const nodeMark = spec.node?.output().length ?? 0;
  const r = await spec.from.run(process.execPath, [PEER_CLIENT, spec.url], { allowFailure: true, timeoutMs: 10_000 });
  if (r.status !== 0) {
    out.error = `request failed: ${(r.stderr || r.stdout).trim() || `exit ${r.status}`}`;
    return out;
  }
  try {
    const res = JSON.parse(r.stdout) as {
      status: number;
      local: { address: string; port: number };
      body: { client?: { address: string; port: number }; headers?: Record<string, string | string[]> };
    };
    out.client = endpoint(res.local.address, res.local.port);
    if (res.status !== 200 || !res.body.client)
      throw new Error(`HTTP ${res.status}: ${JSON.stringify(res.body).slice(0, 200)}`);
    out.serverSaw = endpoint(res.body.client.address, res.body.client.port);
    if (spec.headers) {
      out.headers = {};
      for (const h of spec.headers) {
        const v = res.body.headers?.[h];
        if (v !== undefined) out.headers[h] = Array.isArray(v) ? v.join(', ') : v;
      }
    }
  } catch (e) {
    out.error = `unexpected answer: ${errorText(e)} (${r.stdout.trim().slice(0, 200)})`;
    return out;
  }
  if (spec.node) {
    // Printed when the node connected onward, i.e. before the client got its answer.
    const re = /^connect (\S+) -> (\S+) local (\S+)$/m;
    const m = await matchSince(spec.node, nodeMark, re, NODE_LOG_MS);
    if (m) {
      out.nodeLog = m[0];
      out.nodeFrom = m[3];
    }
  }
  if (spec.proxy) {
    // Logged when the connection closes, i.e. just after the client got its answer. The
    // server seeing the client's own socket means nothing relayed it: no need to wait long.
    const re = new RegExp(`^tranproxy: conn .*\\bsrc=${escapeRe(out.client)} .*$`, 'm');
    const m = await matchSince(spec.proxy, proxyMark, re, out.serverSaw === out.client ? 300 : CONN_LOG_MS);
    if (m) {
      const f = fields(m[0]);
      out.connLog = m[0];
      out.proxySrc = f.src;
      if (f.dst) out.recovered = f.dst;
      if (f.via) out.via = f.via;
    }
  }
  return out;
}

export function check(name: string, expected: string, actual: string | undefined, ok: boolean): Check {
  return { name, expected, actual: actual ?? '(none)', ok: ok && actual !== undefined };
}

/** A one-line summary of rules listings (`tranproxy rules show`, `nft list table …`). */
export function summarize(rules: string): string {
  if (!rules.trim()) return 'none';
  const lines = rules.split('\n');
  const parts: string[] = [];
  const tables = [...rules.matchAll(/^table (\S+ \S+) \{/gm)].map((m) => m[1]!);
  const chains = lines.filter((l) => /^\s*chain /.test(l)).length;
  const nftRules = lines.filter((l) => /\scomment "/.test(l)).length;
  if (chains)
    parts.push(
      `nft table ${tables.join(', ') || 'inet tranproxy'} (${chains} chain${chains === 1 ? '' : 's'}, ${nftRules} rules)`,
    );
  const ipt = lines.filter((l) => l.startsWith('-A ')).length;
  if (ipt) parts.push(`${ipt} iptables rules in TRANPROXY_* chains`);
  const ipRules = lines.filter((l) => / rule: /.test(l)).length;
  const routes = lines.filter((l) => / route: /.test(l)).length;
  if (ipRules) parts.push(`${ipRules} ip rule${ipRules === 1 ? '' : 's'}`);
  if (routes) parts.push(`${routes} route${routes === 1 ? '' : 's'}`);
  return parts.join(' + ') || `${lines.length} lines`;
}
