// `tranproxy demo`: one throw-away lab
//
//   client ── gw ── server
//              └── node ── remote
//
// and a tour of what tranproxy does in it: the sidecar injecting headers, the gateway in
// TPROXY mode, the gateway in REDIRECT and TPROXY mode through a SOCKS5 node, a published
// port, and the rules gone afterwards. Every claim in the report is checked; the lab goes
// away at the end, on error and on Ctrl-C.
import os from 'node:os';
import { Lab, type Host } from '../netlab/lab.js';
import { runSync } from '../kernel/exec.js';
import { DEFAULT_PROXY_USER } from '../config/run-config.js';
import { idMapped } from './rootless.js';
import {
  ADDR,
  FAMILIES,
  HTTP_PORT,
  PREFIX_LEN,
  SOCKS_NODE_KIND,
  SOCKS_PORT,
  type DemoReport,
  type StepResult,
} from './model.js';
import { startHttpServer, startSocksNode } from './probe.js';
import {
  baselineStep,
  cleanupStep,
  gatewayNodeStep,
  publishStep,
  sidecarStep,
  tproxyDirectStep,
  type Ctx,
} from './steps.js';

export { MAIN_JS } from './probe.js';
export {
  ADDR,
  endpoint,
  type Check,
  type DemoReport,
  type Family,
  type RequestResult,
  type RulesResult,
  type StepId,
  type StepResult,
} from './model.js';

const LAB_TAG = 'tpxdemo';

export interface TourOptions {
  /** Progress lines (stderr). */
  progress: (line: string) => void;
  rootless: boolean;
}

type Addr = { ipv4: string; ipv6: string };
const cidrs = (a: Addr) => FAMILIES.map((f) => `${a[f]}/${PREFIX_LEN[f]}`);

function createLabHosts(lab: Lab, rootless: boolean): Ctx {
  const client = lab.addHost('client');
  const gw = lab.addHost('gw');
  const server = lab.addHost('server');
  const node = lab.addHost('node');
  const remote = lab.addHost('remote');
  const lan = lab.link(client, gw, { a: cidrs(ADDR.client), b: cidrs(ADDR.gwLan) });
  lab.link(gw, server, { a: cidrs(ADDR.gwWan), b: cidrs(ADDR.server) });
  lab.link(gw, node, { a: cidrs(ADDR.gwNodeSide), b: cidrs(ADDR.node) });
  lab.link(node, remote, { a: cidrs(ADDR.nodeWan), b: cidrs(ADDR.remote) });
  for (const f of FAMILIES) {
    client.addRoute('default', ADDR.gwLan[f]);
    server.addRoute('default', ADDR.gwWan[f]);
  }
  // gw routes between the LAN and the server, but has no route to remote; the node does
  // not forward (a fresh netns): only its SOCKS5 service reaches remote.
  gw.enableForwarding();
  return { lab, client, gw, server, node, remote, lanIf: lan.b, rootless };
}

/** Whether the sidecar's own user (uid:gid 1337 by default) exists in this user namespace. */
function sidecarUserAvailable(): boolean {
  const { uid, gid } = DEFAULT_PROXY_USER;
  return idMapped(uid, 'uid') && idMapped(gid, 'gid');
}

export interface TourRun {
  report: DemoReport;
  lab: Lab;
}

function hostsOf(ctx: Ctx): DemoReport['lab']['hosts'] {
  const h = (host: Host, ...as: Addr[]) => ({ netns: host.netns, addresses: as.flatMap((a) => [a.ipv4, a.ipv6]) });
  return {
    client: h(ctx.client, ADDR.client),
    gw: h(ctx.gw, ADDR.gwLan, ADDR.gwWan, ADDR.gwNodeSide),
    server: h(ctx.server, ADDR.server),
    node: h(ctx.node, ADDR.node, ADDR.nodeWan),
    remote: h(ctx.remote, ADDR.remote),
  };
}

/**
 * Build the lab, run the steps, return the report with the lab still up: the caller
 * destroys it (or keeps it with --keep). `onLab` receives the lab as soon as it exists,
 * so a signal handler can remove it.
 */
export async function runTour(opts: TourOptions, onLab: (lab: Lab) => void): Promise<TourRun> {
  const t0 = Date.now();
  const p = opts.progress;
  const lab = await Lab.create({ prefix: LAB_TAG });
  onLab(lab);
  p(`building the lab ${lab.prefix}: client ── gw ── server, gw ── node ── remote; 5 network namespaces, IPv4 + IPv6`);
  const ctx = createLabHosts(lab, opts.rootless);
  const report: DemoReport = {
    ok: false,
    rootless: opts.rootless,
    durationMs: 0,
    socksNode: SOCKS_NODE_KIND,
    lab: { prefix: lab.prefix, hosts: hostsOf(ctx), lanInterface: ctx.lanIf, removed: false, kept: false },
    steps: [],
  };
  await Promise.all([
    startHttpServer(ctx.server, HTTP_PORT),
    startHttpServer(ctx.remote, HTTP_PORT),
    startSocksNode(ctx.node, '::', SOCKS_PORT).then((s) => (ctx.socks = s)),
  ]);

  const steps: [string, () => Promise<StepResult>][] = [
    ['without a proxy: client → server (IPv4, IPv6); remote unreachable', () => baselineStep(ctx)],
    ['sidecar: REDIRECT in the client namespace, headers injected', () => sidecarStep(ctx, 1, sidecarUserAvailable())],
    ['gateway: TPROXY on gw, direct to the server', () => tproxyDirectStep(ctx, 2)],
    ['gateway: REDIRECT on gw through the SOCKS5 node to remote', () => gatewayNodeStep(ctx, 3, 'redirect')],
    ['gateway: TPROXY on gw through the SOCKS5 node to remote', () => gatewayNodeStep(ctx, 4, 'tproxy')],
    [`publish: gw's port 8080 → server:80, from the client and from 127.0.0.1`, () => publishStep(ctx, 5)],
  ];
  const total = steps.length;
  for (const [i, [what, run]] of steps.entries()) {
    p(`[${i}/${total}] ${what}`);
    report.steps.push(await run());
  }
  p(`[${total}/${total}] checking that each proxy and the publisher removed their rules`);
  report.steps.push(cleanupStep(total, report.steps));
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
