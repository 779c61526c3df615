// `tranproxy demo`: one throw-away lab (client ── gw ── server), the proxy in REDIRECT mode
// and in TPROXY mode, real requests, and a report of what the server saw and what the proxy
// recovered. Every claim in the report is checked; the lab goes away at the end, on error
// and on Ctrl-C.
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { Lab, type Host, type LabProcess } from '../netlab/lab.js';
import { showRules } from '../firewall/apply.js';
import { hasTool, runSync } from '../kernel/exec.js';
import { DEFAULTS } from '../config/run-config.js';
import { idMapped } from './rootless.js';

/** This package's CLI entry and the demo's own peers, next to this file in dist/. */
export const MAIN_JS = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const PEER_SERVER = fileURLToPath(new URL('./peer-server.js', import.meta.url));
const PEER_CLIENT = fileURLToPath(new URL('./peer-client.js', import.meta.url));

export type Family = 'ipv4' | 'ipv6';
const FAMILIES: Family[] = ['ipv4', 'ipv6'];
const LAB_TAG = 'tpxdemo';
const HTTP_PORT = 80;
const READY_MS = 15_000;
const CONN_LOG_MS = 5_000;

/**
 * The lab's addresses. The LAN (client ── gw) is private; the server stands for "the
 * internet" on documentation addresses (RFC 5737 / RFC 3849), because a gateway leaves
 * private destinations alone by default (`--no-bypass-private` would change that).
 */
export const ADDR = {
  client: { ipv4: '10.80.1.2', ipv6: 'fd80:1::2' },
  gwLan: { ipv4: '10.80.1.1', ipv6: 'fd80:1::1' },
  gwWan: { ipv4: '203.0.113.1', ipv6: '2001:db8:80::1' },
  server: { ipv4: '203.0.113.80', ipv6: '2001:db8:80::80' },
} as const;
const PREFIX_LEN: Record<Family, number> = { ipv4: 24, ipv6: 64 };

export interface Check {
  name: string;
  expected: string;
  actual: string;
  ok: boolean;
}

export interface RequestResult {
  family: Family;
  url: string;
  /** The client socket's own address:port. */
  client?: string;
  /** The proxy's conn log line for this connection: its src and dst (the recovered destination). */
  proxySrc?: string;
  recovered?: string;
  connLog?: string;
  /** The connection's source as the server saw it. */
  serverSaw?: string;
  error?: string;
}

export interface RulesResult {
  host: string;
  netns: string;
  mode: string;
  /** `tranproxy rules show` text while the proxy ran, and a one-line summary of it. */
  running: string;
  summary: string;
  /** The proxy's exit status after SIGTERM. */
  exit: number | null;
  /** `tranproxy rules show` text after it exited ('' = nothing of ours left). */
  after: string;
  /** `nft list ruleset` in the namespace after it exited (undefined without nft). */
  nftAfter?: string;
}

export type StepId = 'baseline' | 'redirect' | 'tproxy' | 'cleanup';

export interface StepResult {
  n: number;
  id: StepId;
  title: string;
  /** Where the proxy runs and what it captures, in words. */
  how: string;
  note?: string;
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
  lab: { prefix: string; hosts: Record<string, { netns: string; addresses: string[] }>; lanInterface: string; removed: boolean; kept: boolean };
  steps: StepResult[];
}

export interface TourOptions {
  /** Progress lines (stderr). */
  progress: (line: string) => void;
  rootless: boolean;
}

interface Ctx {
  lab: Lab;
  client: Host;
  gw: Host;
  server: Host;
  lanIf: string;
  opts: TourOptions;
}

export function endpoint(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function hostOf(ep: string | undefined): string | undefined {
  if (!ep) return undefined;
  const m = /^\[(.*)\]:\d+$/.exec(ep) ?? /^(.*):\d+$/.exec(ep);
  return m?.[1];
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function errorText(e: unknown): string {
  const msg = (e instanceof Error ? e.message : String(e)).trim();
  // Keep it short: a failing proxy's whole output is in the message.
  const lines = msg.split('\n');
  return lines.length > 12 ? [...lines.slice(0, 2), '…', ...lines.slice(-9)].join('\n') : msg;
}

async function startServer(ctx: Ctx): Promise<LabProcess> {
  const p = ctx.server.spawn(process.execPath, [PEER_SERVER, String(HTTP_PORT)]);
  await p.waitForOutput(/^listening \d+$/m, 10_000);
  return p;
}

async function startProxy(host: Host, args: string[]): Promise<{ proc: LabProcess; ready: Record<string, string> }> {
  const proc = host.spawn(process.execPath, [MAIN_JS, 'run', ...args]);
  let line: string;
  try {
    line = await proc.waitForOutput(/^tranproxy: ready:.*$/m, READY_MS);
  } catch {
    const exit = await proc.stop('SIGKILL');
    const said = proc.output().trim().split('\n').slice(-8).join('\n') || 'no output';
    throw new Error(`the proxy did not get ready (${exit === null ? `not within ${READY_MS / 1000} s` : `exit ${exit}`}):\n${said}`);
  }
  const ready: Record<string, string> = {};
  for (const m of line.matchAll(/(\w+)=(\S+)/g)) ready[m[1]!] = m[2]!;
  return { proc, ready };
}

/** One GET from the client to the server over `family`, and the proxy's log line for it. */
async function request(ctx: Ctx, family: Family, proxy: LabProcess | undefined): Promise<RequestResult> {
  const url = family === 'ipv4' ? `http://${ADDR.server.ipv4}/` : `http://[${ADDR.server.ipv6}]/`;
  const out: RequestResult = { family, url };
  const r = await ctx.client.run(process.execPath, [PEER_CLIENT, url], { allowFailure: true, timeoutMs: 10_000 });
  if (r.status !== 0) {
    out.error = `request failed: ${(r.stderr || r.stdout).trim() || `exit ${r.status}`}`;
    return out;
  }
  try {
    const res = JSON.parse(r.stdout) as { status: number; local: { address: string; port: number }; body: { client?: { address: string; port: number } } };
    out.client = endpoint(res.local.address, res.local.port);
    if (res.status !== 200 || !res.body.client) throw new Error(`HTTP ${res.status}: ${JSON.stringify(res.body).slice(0, 200)}`);
    out.serverSaw = endpoint(res.body.client.address, res.body.client.port);
  } catch (e) {
    out.error = `unexpected answer: ${errorText(e)} (${r.stdout.trim().slice(0, 200)})`;
    return out;
  }
  if (!proxy) return out;
  try {
    // Logged when the connection closes, i.e. just after the client got its answer.
    const re = new RegExp(`^tranproxy: conn id=\\d+ src=${escapeRe(out.client)} dst=(\\S+) .*$`, 'm');
    // The server seeing the client's own socket means nothing was proxied: no need to wait long.
    const line = await proxy.waitForOutput(re, out.serverSaw === out.client ? 300 : CONN_LOG_MS);
    out.connLog = line;
    out.proxySrc = out.client;
    out.recovered = re.exec(line)?.[1];
  } catch {
    // No line: the proxy never saw this connection (not captured). The checks say so.
  }
  return out;
}

function check(name: string, expected: string, actual: string | undefined, ok: boolean): Check {
  return { name, expected, actual: actual ?? '(none)', ok: ok && actual !== undefined };
}

function summarize(rules: string): string {
  if (!rules.trim()) return 'none';
  const lines = rules.split('\n');
  const parts: string[] = [];
  const chains = lines.filter((l) => /^\s*chain /.test(l)).length;
  const nftRules = lines.filter((l) => /\scomment "/.test(l)).length;
  if (chains) parts.push(`nft table inet tranproxy (${chains} chain${chains === 1 ? '' : 's'}, ${nftRules} rules)`);
  const ipt = lines.filter((l) => l.startsWith('-A ')).length;
  if (ipt) parts.push(`${ipt} iptables rules in TRANPROXY_* chains`);
  const ipRules = lines.filter((l) => / rule: /.test(l)).length;
  const routes = lines.filter((l) => / route: /.test(l)).length;
  if (ipRules) parts.push(`${ipRules} ip rule${ipRules === 1 ? '' : 's'}`);
  if (routes) parts.push(`${routes} route${routes === 1 ? '' : 's'}`);
  return parts.join(' + ') || `${lines.length} lines`;
}

interface ModeSpec {
  n: number;
  id: 'redirect' | 'tproxy';
  title: string;
  how: string;
  note?: string;
  host: Host;
  args: string[];
  /** What the server must have seen for `req`, and why. */
  serverSees: (req: RequestResult, family: Family) => { expected: string; ok: boolean; name: string };
}

async function runModeStep(ctx: Ctx, spec: ModeSpec): Promise<StepResult> {
  const t0 = Date.now();
  const step: StepResult = {
    n: spec.n,
    id: spec.id,
    title: spec.title,
    how: spec.how,
    ...(spec.note ? { note: spec.note } : {}),
    host: spec.host.name,
    command: `tranproxy run ${spec.args.join(' ')}`,
    requests: [],
    rules: [],
    checks: [],
    ok: false,
    durationMs: 0,
  };
  let proc: LabProcess | undefined;
  try {
    const started = await startProxy(spec.host, spec.args);
    proc = started.proc;
    step.ready = started.ready;
    for (const family of FAMILIES) step.requests.push(await request(ctx, family, proc));
    const running = showRules({ netns: spec.host.netns });
    const exit = await proc.stop('SIGTERM');
    proc = undefined;
    const rules: RulesResult = {
      host: spec.host.name,
      netns: spec.host.netns,
      mode: spec.id === 'redirect' ? 'REDIRECT' : 'TPROXY',
      running,
      summary: summarize(running),
      exit,
      after: showRules({ netns: spec.host.netns }),
    };
    if (hasTool('nft')) rules.nftAfter = (await spec.host.run('nft', ['list', 'ruleset'], { allowFailure: true })).stdout.trim();
    step.rules.push(rules);
  } catch (e) {
    step.error = errorText(e);
  } finally {
    if (proc) await proc.stop('SIGKILL');
  }

  const server = ADDR.server;
  for (const req of step.requests) {
    const fam = req.family === 'ipv4' ? 'IPv4' : 'IPv6';
    if (req.error) {
      step.checks.push(check(`${fam} request answered`, 'HTTP 200 from the server', req.error, false));
      continue;
    }
    const uncaptured = !req.proxySrc && req.serverSaw === req.client;
    step.checks.push(
      check(
        `${fam}: the proxy logged the client's connection`,
        `src=${req.client}`,
        req.proxySrc ? `src=${req.proxySrc}` : uncaptured ? "nothing: the connection was not captured (the server saw the client's own socket)" : undefined,
        req.proxySrc === req.client,
      ),
    );
    const want = endpoint(server[req.family], HTTP_PORT);
    step.checks.push(check(`${fam}: recovered destination is the server`, want, req.recovered, req.recovered === want));
    const seen = spec.serverSees(req, req.family);
    step.checks.push(check(`${fam}: ${seen.name}`, seen.expected, req.serverSaw, seen.ok));
  }
  step.ok = !step.error && step.requests.length === FAMILIES.length && step.checks.every((c) => c.ok);
  step.durationMs = Date.now() - t0;
  return step;
}

/**
 * Step 0, no proxy: what the server sees of a direct connection (the client's own socket).
 * It also proves the lab routes both families before any proxy is blamed, and it takes
 * the first-packet cost of a fresh link (IPv6 neighbour discovery) out of the proxy steps.
 */
async function baselineStep(ctx: Ctx): Promise<StepResult> {
  const t0 = Date.now();
  const requests = await Promise.all(FAMILIES.map((f) => request(ctx, f, undefined)));
  const checks = requests.map((req) => {
    const fam = req.family === 'ipv4' ? 'IPv4' : 'IPv6';
    return req.error
      ? check(`${fam} request answered`, 'HTTP 200 from the server', req.error, false)
      : check(`${fam}: the server saw the client's own socket`, req.client ?? '?', req.serverSaw, req.serverSaw === req.client);
  });
  return {
    n: 0,
    id: 'baseline',
    title: 'Without a proxy',
    how: 'the client connects straight to the server, routed through gw; nothing is captured',
    host: 'client',
    requests,
    rules: [],
    checks,
    ok: checks.every((c) => c.ok),
    durationMs: Date.now() - t0,
  };
}

function cleanupStep(n: number, steps: StepResult[]): StepResult {
  const t0 = Date.now();
  const rules = steps.flatMap((s) => s.rules);
  const checks: Check[] = [];
  for (const r of rules) {
    const who = `${r.mode} on ${r.host}`;
    checks.push(check(`${who}: rules in place while it ran`, 'tranproxy rules', r.summary, r.running.trim() !== ''));
    checks.push(check(`${who}: exit status after SIGTERM`, '0', r.exit === null ? 'killed' : String(r.exit), r.exit === 0));
    checks.push(check(`${who}: nothing of tranproxy left after it stopped`, 'none', r.after.trim() ? summarize(r.after) : 'none', r.after.trim() === ''));
    if (r.nftAfter !== undefined) {
      checks.push(check(`${who}: nft list ruleset after it stopped`, 'empty', r.nftAfter ? r.nftAfter.split('\n')[0] : 'empty', r.nftAfter === ''));
    }
  }
  const missing = steps.filter((s) => s.id !== 'baseline' && s.rules.length === 0);
  for (const s of missing) checks.push(check(`${s.title}: proxy stopped and inspected`, 'yes', 'no (the step failed before)', false));
  return {
    n,
    id: 'cleanup',
    title: 'Rules removed when the proxy stops',
    how: 'each proxy got SIGTERM; its namespace was inspected with `tranproxy rules show` and `nft list ruleset`',
    requests: [],
    rules,
    checks,
    ok: checks.length > 0 && checks.every((c) => c.ok),
    durationMs: Date.now() - t0,
  };
}

function createLabHosts(lab: Lab): Omit<Ctx, 'opts' | 'lab'> {
  const client = lab.addHost('client');
  const gw = lab.addHost('gw');
  const server = lab.addHost('server');
  const cidrs = (a: { ipv4: string; ipv6: string }) => FAMILIES.map((f) => `${a[f]}/${PREFIX_LEN[f]}`);
  const lan = lab.link(client, gw, { a: cidrs(ADDR.client), b: cidrs(ADDR.gwLan) });
  lab.link(gw, server, { a: cidrs(ADDR.gwWan), b: cidrs(ADDR.server) });
  for (const f of FAMILIES) {
    client.addRoute('default', ADDR.gwLan[f]);
    server.addRoute('default', ADDR.gwWan[f]);
  }
  gw.enableForwarding();
  return { client, gw, server, lanIf: lan.b };
}

/** Whether the sidecar's own user (uid:gid 1337 by default) exists in this user namespace. */
function sidecarUserAvailable(): boolean {
  const [uid, gid] = DEFAULTS.proxyUser.split(':').map(Number) as [number, number];
  return idMapped(uid, 'uid') && idMapped(gid, 'gid');
}

export interface TourRun {
  report: DemoReport;
  lab: Lab;
}

/**
 * Build the lab, run the steps, return the report with the lab still up: the caller
 * destroys it (or keeps it with --keep). `onLab` receives the lab as soon as it exists,
 * so a signal handler can remove it.
 */
export async function runTour(opts: TourOptions, onLab: (lab: Lab) => void): Promise<TourRun> {
  const t0 = Date.now();
  const p = opts.progress;
  const total = 3;
  const lab = await Lab.create({ prefix: LAB_TAG });
  onLab(lab);
  p(`building the lab ${lab.prefix}: client ── gw ── server, 3 network namespaces, IPv4 + IPv6`);
  const ctx: Ctx = { lab, opts, ...createLabHosts(lab) };
  const report: DemoReport = {
    ok: false,
    rootless: opts.rootless,
    durationMs: 0,
    lab: {
      prefix: lab.prefix,
      hosts: {
        client: { netns: ctx.client.netns, addresses: [ADDR.client.ipv4, ADDR.client.ipv6] },
        gw: { netns: ctx.gw.netns, addresses: [ADDR.gwLan.ipv4, ADDR.gwLan.ipv6, ADDR.gwWan.ipv4, ADDR.gwWan.ipv6] },
        server: { netns: ctx.server.netns, addresses: [ADDR.server.ipv4, ADDR.server.ipv6] },
      },
      lanInterface: ctx.lanIf,
      removed: false,
      kept: false,
    },
    steps: [],
  };
  await startServer(ctx);

  const sidecar = sidecarUserAvailable();
  const redirect: ModeSpec = sidecar
    ? {
        n: 1,
        id: 'redirect',
        title: 'REDIRECT, sidecar style',
        how: `proxy in the client's namespace captures the client's own connections to port ${HTTP_PORT} (nat OUTPUT); its data plane runs as uid ${DEFAULTS.proxyUser.split(':')[0]}, whose connections are not captured`,
        host: ctx.client,
        args: ['--mode', 'redirect', '--capture', 'output', '-P', String(HTTP_PORT)],
        serverSees: (req, family) => ({
          name: "the server saw the proxy's new connection from the client's address",
          expected: `${ADDR.client[family]}, port ≠ ${req.client?.split(':').pop()}`,
          ok: hostOf(req.serverSaw) === ADDR.client[family] && req.serverSaw !== req.client,
        }),
      }
    : {
        n: 1,
        id: 'redirect',
        title: 'REDIRECT, gateway style',
        how: `proxy on the gateway captures connections routed through it from the LAN to port ${HTTP_PORT} (nat PREROUTING, -i ${ctx.lanIf})`,
        note:
          `sidecar style runs the proxy as its own user (uid ${DEFAULTS.proxyUser.split(':')[0]}) so its connections are not captured again; ` +
          'this user namespace maps only root, so REDIRECT is shown gateway style here',
        host: ctx.gw,
        args: ['--mode', 'redirect', '--capture', 'prerouting', '-i', ctx.lanIf, '-P', String(HTTP_PORT)],
        serverSees: (req, family) => ({
          name: "the server saw the gateway's address, not the client's (REDIRECT ends the connection at the proxy)",
          expected: ADDR.gwWan[family],
          ok: hostOf(req.serverSaw) === ADDR.gwWan[family],
        }),
      };
  const tproxy: ModeSpec = {
    n: 2,
    id: 'tproxy',
    title: 'TPROXY, gateway style',
    how: `proxy on the gateway takes over connections routed through it from the LAN to port ${HTTP_PORT} without rewriting them (mangle PREROUTING, -i ${ctx.lanIf}), and connects onward from the client's own address`,
    host: ctx.gw,
    args: ['--mode', 'tproxy', '--capture', 'prerouting', '-i', ctx.lanIf, '-P', String(HTTP_PORT)],
    serverSees: (_req, family) => ({
      name: "the server saw the client's own address",
      expected: ADDR.client[family],
      ok: hostOf(_req.serverSaw) === ADDR.client[family],
    }),
  };

  p(`[0/${total}] without a proxy: client → server, IPv4 and IPv6`);
  report.steps.push(await baselineStep(ctx));
  for (const spec of [redirect, tproxy]) {
    p(`[${spec.n}/${total}] ${spec.title}: ${spec.host.name}$ tranproxy run ${spec.args.join(' ')}`);
    report.steps.push(await runModeStep(ctx, spec));
  }
  p(`[3/${total}] checking that each proxy removed its rules when it stopped`);
  report.steps.push(cleanupStep(3, report.steps));
  report.ok = report.steps.every((s) => s.ok);
  report.durationMs = Date.now() - t0;
  return { report, lab };
}

/** True when no netns of `prefix` is left. */
export function labGone(prefix: string): boolean {
  const out = runSync('ip', ['netns', 'list'], { allowFailure: true }).stdout;
  return !out.split('\n').some((l) => l.startsWith(`${prefix}-`));
}

export function signalStatus(sig: NodeJS.Signals): number {
  return 128 + (os.constants.signals[sig] ?? 0);
}
