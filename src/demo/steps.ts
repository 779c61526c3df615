// The demo's steps: each starts what it shows (a proxy, a publisher), makes real requests,
// stops it with SIGTERM, records its rules before and after, and turns what was seen into
// checks. A step never throws: a failure is in its report.
import os from 'node:os';
import type { Host, Lab, LabProcess } from '../netlab/lab.js';
import { showRules } from '../firewall/apply.js';
import { hasTool } from '../kernel/exec.js';
import { DEFAULT_PROXY_USER } from '../config/run-config.js';
import { PUBLISH_TABLE } from '../publish/plan.js';
import {
  ADDR,
  DEMO_HEADER,
  endpoint,
  famLabel,
  FAMILIES,
  HTTP_PORT,
  hostOf,
  PUBLISH_PORT,
  UPSTREAM,
  type Check,
  type RequestResult,
  type RulesResult,
  type StepId,
  type StepResult,
} from './model.js';
import { check, errorText, request, startTranproxy, summarize, type RequestSpec } from './probe.js';

export interface Ctx {
  lab: Lab;
  client: Host;
  gw: Host;
  server: Host;
  node: Host;
  remote: Host;
  /** gw's interface towards the client. */
  lanIf: string;
  /** The SOCKS5 node process (its log names each connection it relayed). */
  socks?: LabProcess;
  rootless: boolean;
}

const INJECTED = ['x-forwarded-for', 'x-client-hostname', DEMO_HEADER.name.toLowerCase()];

function url(ip: string, port = HTTP_PORT): string {
  return `http://${endpoint(ip, port)}/`;
}

function blank(n: number, id: StepId, title: string, how: string): StepResult {
  return { n, id, title, how, requests: [], rules: [], checks: [], ok: false, durationMs: 0 };
}

/** `nft list table inet tranproxy_publish` in `host` ('' when absent or without nft). */
async function publishTable(host: Host): Promise<string> {
  if (!hasTool('nft')) return '';
  const r = await host.run('nft', ['list', 'table', 'inet', PUBLISH_TABLE], { allowFailure: true });
  return r.status === 0 ? r.stdout.trim() : '';
}

interface RunSpec {
  n: number;
  id: StepId;
  title: string;
  how: string;
  note?: string;
  host: Host;
  /** `run …` or `publish …`. */
  args: string[];
  /** REDIRECT, TPROXY or publish (for the clean-up step). */
  mode: string;
  requests: (proc: LabProcess) => RequestSpec[];
  checks: (req: RequestResult) => Check[];
}

/** Start tranproxy, make the requests, SIGTERM it, look at its rules, check. */
async function runStep(ctx: Ctx, spec: RunSpec): Promise<StepResult> {
  const t0 = Date.now();
  const step: StepResult = {
    ...blank(spec.n, spec.id, spec.title, spec.how),
    ...(spec.note ? { note: spec.note } : {}),
    host: spec.host.name,
    command: `tranproxy ${spec.args.join(' ')}`,
  };
  const isPublish = spec.args[0] === 'publish';
  const listRules = async () => (isPublish ? publishTable(spec.host) : showRules({ netns: spec.host.netns }));
  let proc: LabProcess | undefined;
  try {
    const started = await startTranproxy(spec.host, spec.args);
    proc = started.proc;
    step.ready = started.ready;
    for (const r of spec.requests(proc)) step.requests.push(await request(r));
    const running = await listRules();
    const exit = await proc.stop('SIGTERM');
    proc = undefined;
    const rules: RulesResult = {
      step: spec.n,
      host: spec.host.name,
      netns: spec.host.netns,
      mode: spec.mode,
      label: step.command!,
      running,
      summary: summarize(running),
      exit,
      after: await listRules(),
    };
    if (hasTool('nft'))
      rules.nftAfter = (await spec.host.run('nft', ['list', 'ruleset'], { allowFailure: true })).stdout.trim();
    step.rules.push(rules);
  } catch (e) {
    step.error = errorText(e);
  } finally {
    if (proc) await proc.stop('SIGKILL');
  }
  for (const req of step.requests) {
    if (req.error) step.checks.push(check(`${req.label}: request answered`, 'HTTP 200', req.error, false));
    else step.checks.push(...spec.checks(req));
  }
  step.ok = !step.error && step.requests.length > 0 && step.checks.every((c) => c.ok);
  step.durationMs = Date.now() - t0;
  return step;
}

/** The proxy logged the client's connection and recovered the original destination. */
function capturedChecks(req: RequestResult, dst: string): Check[] {
  const f = req.label;
  const uncaptured = !req.proxySrc && req.serverSaw === req.client;
  return [
    check(
      `${f}: the proxy logged the client's connection`,
      `src=${req.client}`,
      req.proxySrc
        ? `src=${req.proxySrc}`
        : uncaptured
          ? "nothing: the connection was not captured (the server saw the client's own socket)"
          : undefined,
      req.proxySrc === req.client,
    ),
    check(`${f}: recovered destination`, dst, req.recovered, req.recovered === dst),
  ];
}

// ─── step 0 ────────────────────────────────────────────────────────────────────────────

/**
 * No proxy: the server sees the client's own socket, and remote cannot be reached at all
 * (gw has no route there). It also takes the first-packet cost of fresh links (IPv6
 * neighbour discovery) out of the proxy steps.
 */
export async function baselineStep(ctx: Ctx): Promise<StepResult> {
  const t0 = Date.now();
  const step = blank(
    0,
    'baseline',
    'Without a proxy',
    'the client connects straight to the server, routed through gw; remote is reachable only through the node',
  );
  step.host = 'client';
  const specs: RequestSpec[] = [
    ...FAMILIES.map(
      (f): RequestSpec => ({
        from: ctx.client,
        family: f,
        label: famLabel(f),
        target: 'server',
        url: url(ADDR.server[f]),
      }),
    ),
    ...FAMILIES.map(
      (f): RequestSpec => ({
        from: ctx.client,
        family: f,
        label: `remote ${famLabel(f)}`,
        target: 'remote',
        url: url(ADDR.remote[f]),
      }),
    ),
  ];
  step.requests = await Promise.all(specs.map(request));
  for (const req of step.requests) {
    if (req.target === 'server') {
      step.checks.push(
        req.error
          ? check(`${req.label}: request answered`, 'HTTP 200 from the server', req.error, false)
          : check(
              `${req.label}: the server saw the client's own socket`,
              req.client ?? '?',
              req.serverSaw,
              req.serverSaw === req.client,
            ),
      );
    } else {
      step.checks.push(
        check(
          `${req.label}: remote unreachable without the node`,
          'no route (gw has none to remote)',
          req.error ?? `answered; remote saw ${req.serverSaw}`,
          req.error !== undefined,
        ),
      );
    }
  }
  step.ok = step.checks.every((c) => c.ok);
  step.durationMs = Date.now() - t0;
  return step;
}

// ─── step 1: sidecar + headers ─────────────────────────────────────────────────────────

export function sidecarStep(ctx: Ctx, n: number, sidecarUser: boolean): Promise<StepResult> {
  const uid = String(DEFAULT_PROXY_USER.uid);
  const hostname = os.hostname();
  const args = [
    'run',
    '--mode',
    'redirect',
    '--capture',
    'output',
    '-P',
    String(HTTP_PORT),
    ...(sidecarUser ? [] : ['--proxy-user', 'none']),
    '-H',
    `${DEMO_HEADER.name}:${DEMO_HEADER.value}`,
    '--Set-Forwarded-For',
    '--Set-Client-Hostname',
  ];
  return runStep(ctx, {
    n,
    id: 'sidecar',
    title: 'Sidecar: REDIRECT with headers injected',
    how:
      `proxy in the client's namespace (the "pod") captures its own connections to port ${HTTP_PORT} (nat OUTPUT) and adds ` +
      `X-Forwarded-For (the pod's address), X-Client-Hostname and ${DEMO_HEADER.name} to each request; ` +
      (sidecarUser
        ? `its data plane runs as uid ${uid}, whose connections are not captured`
        : 'its own connections carry the bypass mark, which is not captured'),
    ...(sidecarUser
      ? {}
      : {
          note: `this user namespace maps only root, so the proxy cannot run as uid ${uid}: --proxy-user none, loop avoidance by socket mark instead`,
        }),
    host: ctx.client,
    args,
    mode: 'REDIRECT',
    requests: (proc) =>
      FAMILIES.map((f) => ({
        from: ctx.client,
        family: f,
        label: famLabel(f),
        target: 'server',
        url: url(ADDR.server[f]),
        proxy: proc,
        headers: INJECTED,
      })),
    checks: (req) => {
      const f = req.family;
      const h = req.headers ?? {};
      return [
        ...capturedChecks(req, endpoint(ADDR.server[f], HTTP_PORT)),
        check(
          `${req.label}: the server saw the proxy's new connection from the pod's address`,
          `${ADDR.client[f]}, port ≠ ${req.client?.split(':').pop()}`,
          req.serverSaw,
          hostOf(req.serverSaw) === ADDR.client[f] && req.serverSaw !== req.client,
        ),
        check(
          `${req.label}: the server got X-Forwarded-For = the pod's address`,
          ADDR.client.ipv4,
          h['x-forwarded-for'],
          h['x-forwarded-for'] === ADDR.client.ipv4,
        ),
        check(
          `${req.label}: the server got X-Client-Hostname = the host name`,
          hostname,
          h['x-client-hostname'],
          h['x-client-hostname'] === hostname,
        ),
        check(
          `${req.label}: the server got ${DEMO_HEADER.name} (value with ':' intact)`,
          DEMO_HEADER.value,
          h[DEMO_HEADER.name.toLowerCase()],
          h[DEMO_HEADER.name.toLowerCase()] === DEMO_HEADER.value,
        ),
      ];
    },
  });
}

// ─── steps 2–4: the gateway ────────────────────────────────────────────────────────────

function gatewayArgs(ctx: Ctx, mode: 'redirect' | 'tproxy', upstream: boolean): string[] {
  return [
    'run',
    '--mode',
    mode,
    '--capture',
    'prerouting',
    '-i',
    ctx.lanIf,
    '-P',
    String(HTTP_PORT),
    ...(upstream ? ['--upstream', UPSTREAM] : []),
  ];
}

/** TPROXY straight to the server: the server sees the client itself. */
export function tproxyDirectStep(ctx: Ctx, n: number): Promise<StepResult> {
  return runStep(ctx, {
    n,
    id: 'tproxy',
    title: 'Gateway: TPROXY, direct',
    how: `proxy on gw takes over connections routed through it from the LAN to port ${HTTP_PORT} without rewriting them (mangle PREROUTING, -i ${ctx.lanIf}), and connects onward from the client's own address`,
    host: ctx.gw,
    args: gatewayArgs(ctx, 'tproxy', false),
    mode: 'TPROXY',
    requests: (proc) =>
      FAMILIES.map((f) => ({
        from: ctx.client,
        family: f,
        label: famLabel(f),
        target: 'server',
        url: url(ADDR.server[f]),
        proxy: proc,
      })),
    checks: (req) => [
      ...capturedChecks(req, endpoint(ADDR.server[req.family], HTTP_PORT)),
      check(
        `${req.label}: the server saw the client's own address`,
        ADDR.client[req.family],
        req.serverSaw,
        hostOf(req.serverSaw) === ADDR.client[req.family],
      ),
    ],
  });
}

/** REDIRECT or TPROXY on gw, every flow through the SOCKS5 node to remote. */
export function gatewayNodeStep(ctx: Ctx, n: number, mode: 'redirect' | 'tproxy'): Promise<StepResult> {
  const how =
    mode === 'redirect'
      ? `proxy on gw captures LAN connections to port ${HTTP_PORT} (nat PREROUTING, -i ${ctx.lanIf}) and sends each through the SOCKS5 node`
      : `proxy on gw takes over LAN connections to port ${HTTP_PORT} (mangle PREROUTING, -i ${ctx.lanIf}) and sends each through the SOCKS5 node`;
  return runStep(ctx, {
    n,
    id: mode === 'redirect' ? 'redirect-node' : 'tproxy-node',
    title: `Gateway: ${mode === 'redirect' ? 'REDIRECT' : 'TPROXY'} through a SOCKS5 node`,
    how: `${how}; remote is reachable only that way`,
    host: ctx.gw,
    args: gatewayArgs(ctx, mode, true),
    mode: mode === 'redirect' ? 'REDIRECT' : 'TPROXY',
    requests: (proc) =>
      FAMILIES.map((f) => ({
        from: ctx.client,
        family: f,
        label: famLabel(f),
        target: 'remote',
        url: url(ADDR.remote[f]),
        proxy: proc,
        ...(ctx.socks ? { node: ctx.socks } : {}),
      })),
    checks: (req) => {
      const f = req.family;
      const dst = endpoint(ADDR.remote[f], HTTP_PORT);
      return [
        ...capturedChecks(req, dst),
        check(
          `${req.label}: the proxy logged via=upstream`,
          'via=upstream',
          req.via ? `via=${req.via}` : req.connLog ? 'no via= field' : undefined,
          req.via === 'upstream',
        ),
        check(
          `${req.label}: the node relayed it to remote`,
          `CONNECT ${dst} from ${ADDR.nodeWan[f]}`,
          req.nodeLog,
          !!req.nodeLog?.includes(`-> ${dst} `) && hostOf(req.nodeFrom) === ADDR.nodeWan[f],
        ),
        check(
          `${req.label}: remote saw the node's address`,
          ADDR.nodeWan[f],
          req.serverSaw,
          hostOf(req.serverSaw) === ADDR.nodeWan[f],
        ),
      ];
    },
  });
}

// ─── step 5: a published port ──────────────────────────────────────────────────────────

/** Why publish cannot run here, or undefined. */
export function publishObstacle(): string | undefined {
  if (!hasTool('nft')) return "nft is not installed: publish's NAT rules need nftables (apt-get install nftables)";
  return undefined;
}

export async function publishStep(ctx: Ctx, n: number): Promise<StepResult> {
  const mapping = `${PUBLISH_PORT}:${ADDR.server.ipv4}:${HTTP_PORT}`;
  const title = 'Published port (docker run -p style)';
  const how =
    `gw publishes its port ${PUBLISH_PORT} to the server's port ${HTTP_PORT}: clients outside gw are DNATed by the kernel ` +
    `(the server sees them), connections to 127.0.0.1 inside gw go through publish's userland proxy`;
  const obstacle = publishObstacle();
  if (obstacle) {
    return {
      ...blank(n, 'publish', title, how),
      host: 'gw',
      command: `tranproxy publish ${mapping}`,
      skipped: obstacle,
      ok: true,
    };
  }
  const target = endpoint(ADDR.server.ipv4, HTTP_PORT);
  const outside = `client → ${endpoint(ADDR.gwLan.ipv4, PUBLISH_PORT)}`;
  const local = `gw → ${endpoint('127.0.0.1', PUBLISH_PORT)}`;
  return runStep(ctx, {
    n,
    id: 'publish',
    title,
    how,
    host: ctx.gw,
    args: ['publish', mapping],
    mode: 'publish',
    requests: (proc) => [
      {
        from: ctx.client,
        family: 'ipv4',
        label: outside,
        target: 'published',
        url: url(ADDR.gwLan.ipv4, PUBLISH_PORT),
        proxy: proc,
      },
      {
        from: ctx.gw,
        family: 'ipv4',
        label: local,
        target: 'published',
        url: url('127.0.0.1', PUBLISH_PORT),
        proxy: proc,
      },
    ],
    checks: (req) =>
      req.from === 'client'
        ? [
            check(
              `${req.label}: the server saw the client's own address`,
              ADDR.client.ipv4,
              req.serverSaw,
              hostOf(req.serverSaw) === ADDR.client.ipv4,
            ),
            check(
              `${req.label}: handled by the kernel (DNAT), not the userland proxy`,
              'no conn line from publish',
              req.connLog ?? 'none',
              !req.connLog,
            ),
          ]
        : [
            check(
              `${req.label}: publish's userland proxy relayed it`,
              `conn src=${req.client} dst=${target}`,
              req.connLog ? `conn src=${req.proxySrc} dst=${req.recovered}` : undefined,
              req.proxySrc === req.client && req.recovered === target,
            ),
            check(
              `${req.label}: the server saw gw's own address`,
              ADDR.gwWan.ipv4,
              req.serverSaw,
              hostOf(req.serverSaw) === ADDR.gwWan.ipv4,
            ),
          ],
  });
}

// ─── last step: rules removed ──────────────────────────────────────────────────────────

export function cleanupStep(n: number, steps: StepResult[]): StepResult {
  const t0 = Date.now();
  const step = blank(
    n,
    'cleanup',
    'Rules removed when each stops',
    "each proxy and the publisher got SIGTERM; its namespace was then inspected (`tranproxy rules show`, publish's nft table, `nft list ruleset`)",
  );
  step.rules = steps.flatMap((s) => s.rules);
  for (const r of step.rules) {
    const who = `step ${r.step}, ${r.mode} on ${r.host}`;
    step.checks.push(
      check(`${who}: rules in place while it ran`, 'tranproxy rules', r.summary, r.running.trim() !== ''),
    );
    step.checks.push(
      check(`${who}: exit status after SIGTERM`, '0', r.exit === null ? 'killed' : String(r.exit), r.exit === 0),
    );
    step.checks.push(
      check(
        `${who}: nothing of it left after it stopped`,
        'none',
        r.after.trim() ? summarize(r.after) : 'none',
        r.after.trim() === '',
      ),
    );
    if (r.nftAfter !== undefined) {
      step.checks.push(
        check(
          `${who}: nft list ruleset after it stopped`,
          'empty',
          r.nftAfter ? r.nftAfter.split('\n')[0] : 'empty',
          r.nftAfter === '',
        ),
      );
    }
  }
  const missing = steps.filter((s) => s.id !== 'baseline' && !s.skipped && s.rules.length === 0);
  for (const s of missing)
    step.checks.push(check(`${s.title}: stopped and inspected`, 'yes', 'no (the step failed before)', false));
  step.ok = step.checks.length > 0 && step.checks.every((c) => c.ok);
  step.durationMs = Date.now() - t0;
  return step;
}
