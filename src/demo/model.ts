// The demo's lab addresses and the shape of its report (also what `demo --json` prints).
// Pure data: no I/O.

export type Family = 'ipv4' | 'ipv6';
export const FAMILIES: Family[] = ['ipv4', 'ipv6'];

/**
 * The lab's addresses:
 *
 *   client ── gw ── server            the LAN is private; server stands for "the internet"
 *              └── node ── remote     remote is reachable only through the node's SOCKS5
 *
 * Server and remote sit on documentation addresses (RFC 5737 / RFC 3849), because a
 * gateway leaves private destinations alone by default (`--no-bypass-private`). gw has no
 * route to remote and the node does not forward: only its SOCKS5 service gets there.
 */
export const ADDR = {
  client: { ipv4: '10.80.1.2', ipv6: 'fd80:1::2' },
  gwLan: { ipv4: '10.80.1.1', ipv6: 'fd80:1::1' },
  gwWan: { ipv4: '203.0.113.1', ipv6: '2001:db8:80::1' },
  server: { ipv4: '203.0.113.80', ipv6: '2001:db8:80::80' },
  gwNodeSide: { ipv4: '10.80.2.1', ipv6: 'fd80:2::1' },
  node: { ipv4: '10.80.2.2', ipv6: 'fd80:2::2' },
  nodeWan: { ipv4: '198.51.100.1', ipv6: '2001:db8:51::1' },
  remote: { ipv4: '198.51.100.80', ipv6: '2001:db8:51::80' },
} as const;
export const PREFIX_LEN: Record<Family, number> = { ipv4: 24, ipv6: 64 };

export const HTTP_PORT = 80;
export const SOCKS_PORT = 1080;
export const PUBLISH_PORT = 8080;
export const UPSTREAM = `socks5://${ADDR.node.ipv4}:${SOCKS_PORT}`;
/** The custom header the sidecar step injects; its value contains ':' on purpose. */
export const DEMO_HEADER = { name: 'X-Demo-Tag', value: 'sidecar:v1' } as const;
export const SOCKS_NODE_KIND = 'built-in demo node (CONNECT, no auth; src/demo/socks5-node.ts)';

export interface Check {
  name: string;
  expected: string;
  actual: string;
  ok: boolean;
}

export type Target = 'server' | 'remote' | 'published';

export interface RequestResult {
  family: Family;
  /** Column heading in the report: IPv4 / IPv6, or where a published port was reached from. */
  label: string;
  /** The namespace the request was made from. */
  from: string;
  target: Target;
  url: string;
  /** The client socket's own address:port. */
  client?: string;
  /** The proxy's (or publisher's) conn log line for this connection, its src, dst and via. */
  connLog?: string;
  proxySrc?: string;
  /** The proxy: the recovered original destination. The publisher: where it relayed to. */
  recovered?: string;
  /** via= of the conn line: the proxy's outbound (`upstream`: through the node); publish's: the host address:port it accepted on. */
  via?: string;
  /** The SOCKS5 node's line for this connection, and the address it connected from. */
  nodeLog?: string;
  nodeFrom?: string;
  /** The connection's source as the server (or remote) saw it. */
  serverSaw?: string;
  /** Injected request headers as the server received them (lower-case names). */
  headers?: Record<string, string>;
  error?: string;
}

export interface RulesResult {
  /** The step that ran it. */
  step: number;
  host: string;
  netns: string;
  /** REDIRECT, TPROXY or publish. */
  mode: string;
  /** What the step ran, e.g. `tranproxy run --mode tproxy …`. */
  label: string;
  /** Its rules while it ran (`tranproxy rules show`, or publish's nft table), and a summary. */
  running: string;
  summary: string;
  /** Exit status after SIGTERM. */
  exit: number | null;
  /** The same listing after it exited ('' = nothing of ours left). */
  after: string;
  /** `nft list ruleset` in the namespace after it exited (undefined without nft). */
  nftAfter?: string;
}

export type StepId = 'baseline' | 'sidecar' | 'tproxy' | 'redirect-node' | 'tproxy-node' | 'publish' | 'cleanup';

export interface StepResult {
  n: number;
  id: StepId;
  title: string;
  /** Where the proxy runs and what it captures, in words. */
  how: string;
  note?: string;
  /** Set when the step could not run here (the exact reason); it then makes no claims. */
  skipped?: string;
  host?: string;
  command?: string;
  /** The proxy's `ready:` fields (mode, listen, firewall, user, families…). */
  ready?: Record<string, string>;
  requests: RequestResult[];
  rules: RulesResult[];
  checks: Check[];
  ok: boolean;
  error?: string;
  durationMs: number;
}

export interface DemoReport {
  ok: boolean;
  /** Run in a user namespace (not real root). */
  rootless: boolean;
  durationMs: number;
  /** What served as the SOCKS5 node. */
  socksNode: string;
  lab: {
    prefix: string;
    hosts: Record<string, { netns: string; addresses: string[] }>;
    lanInterface: string;
    removed: boolean;
    kept: boolean;
  };
  steps: StepResult[];
}

export function endpoint(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** The address part of `addr:port` / `[addr]:port`. */
export function hostOf(ep: string | undefined): string | undefined {
  if (!ep) return undefined;
  const m = /^\[(.*)\]:\d+$/.exec(ep) ?? /^(.*):\d+$/.exec(ep);
  return m?.[1];
}

export function famLabel(f: Family): string {
  return f === 'ipv4' ? 'IPv4' : 'IPv6';
}
