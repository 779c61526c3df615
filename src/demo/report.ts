// The demo's report as text: a few lines per step, what was seen side by side per request
// (IPv4 / IPv6, or where a published port was reached from), failures spelled out
// (expected vs got). Colours only when asked (stdout is a TTY).
import {
  ADDR,
  DEMO_HEADER,
  endpoint,
  PUBLISH_PORT,
  type Check,
  type DemoReport,
  type RequestResult,
  type StepResult,
} from './model.js';

export interface Style {
  ok(s: string): string;
  bad(s: string): string;
  bold(s: string): string;
  dim(s: string): string;
}

const PLAIN: Style = { ok: (s) => s, bad: (s) => s, bold: (s) => s, dim: (s) => s };
const ANSI: Style = {
  ok: (s) => `\x1b[32m${s}\x1b[0m`,
  bad: (s) => `\x1b[31m${s}\x1b[0m`,
  bold: (s) => `\x1b[1m${s}\x1b[0m`,
  dim: (s) => `\x1b[2m${s}\x1b[0m`,
};

export function styleFor(color: boolean): Style {
  return color ? ANSI : PLAIN;
}

const I = '   ';
const LABEL_W = 19;
const COL_W = 26;
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function pad(s: string, n: number): string {
  return s.length >= n ? `${s} ` : s + ' '.repeat(n - s.length);
}

/** Fold a long sentence into lines of at most `width` characters, each prefixed by `indent`. */
function wrap(text: string, indent: string, width = 96): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line && indent.length + line.length + 1 + word.length > width) {
      out.push(indent + line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(indent + line);
  return out;
}

/** What each step demonstrates, in one sentence. */
const LESSON: Record<StepResult['id'], string> = {
  baseline: "the server sees the client's own socket; remote cannot be reached without the node",
  sidecar:
    "the kernel rewrote the destination to the proxy's port; the proxy got it back with SO_ORIGINAL_DST, made its own connection and stamped the pod's identity on the request",
  tproxy:
    "the proxy read the destination from its own socket's local address (the packet was never rewritten), and the server saw the client itself",
  'redirect-node':
    'the proxy got the destination back with SO_ORIGINAL_DST and asked the node for it (SOCKS5 CONNECT): remote saw only the node',
  'tproxy-node':
    "the proxy took the destination from its socket's local address and asked the node for it (SOCKS5 CONNECT): remote saw only the node",
  publish:
    'from outside, DNAT: the server saw the client itself; 127.0.0.1 never passes PREROUTING, so the userland proxy relayed it and the server saw gw',
  cleanup: '',
};

function shortError(e: string): string {
  return /\b(E[A-Z]{3,})\b/.exec(e)?.[1] ?? 'error';
}

type Row = [string, (r: RequestResult) => string | undefined];

function rowsFor(step: StepResult): Row[] {
  const client: Row = ['client socket', (r) => r.client];
  const proxy: Row[] = [
    ['proxy saw src', (r) => r.proxySrc],
    ['recovered dst', (r) => r.recovered],
  ];
  switch (step.id) {
    case 'baseline':
      return [client, ['server saw src', (r) => r.serverSaw]];
    case 'sidecar':
      return [
        client,
        ...proxy,
        ['server saw src', (r) => r.serverSaw],
        ['X-Forwarded-For', (r) => r.headers?.['x-forwarded-for']],
        ['X-Client-Hostname', (r) => r.headers?.['x-client-hostname']],
        [DEMO_HEADER.name, (r) => r.headers?.[DEMO_HEADER.name.toLowerCase()]],
      ];
    case 'tproxy':
      return [client, ...proxy, ['server saw src', (r) => r.serverSaw]];
    case 'redirect-node':
    case 'tproxy-node':
      return [
        client,
        ...proxy,
        ['proxy sent via', (r) => r.via],
        ['node connected as', (r) => r.nodeFrom],
        ['remote saw src', (r) => r.serverSaw],
      ];
    case 'publish':
      return [
        client,
        [
          'publish logged',
          (r) => (r.connLog ? `conn → ${r.recovered}` : r.error ? undefined : 'nothing (kernel DNAT)'),
        ],
        ['server saw src', (r) => r.serverSaw],
      ];
    default:
      return [];
  }
}

function table(step: StepResult, requests: RequestResult[]): string[] {
  const lines = [
    I +
      pad('', LABEL_W) +
      requests
        .map((r) => pad(r.label, COL_W))
        .join('')
        .trimEnd(),
  ];
  for (const [label, get] of rowsFor(step)) {
    lines.push(
      I +
        pad(label, LABEL_W) +
        requests
          .map((r) => pad(get(r) ?? (r.error ? shortError(r.error) : '-'), COL_W))
          .join('')
          .trimEnd(),
    );
  }
  return lines;
}

function failures(checks: Check[], st: Style, indent: string): string[] {
  return checks
    .filter((c) => !c.ok)
    .flatMap((c) => [
      `${indent}${st.bad('FAIL')} ${c.name}`,
      `${indent}     expected ${c.expected}`,
      `${indent}     got      ${c.actual.split('\n').join(`\n${indent}              `)}`,
    ]);
}

function stepHeader(step: StepResult, st: Style): string {
  const status = step.skipped ? st.dim('skipped') : step.ok ? st.ok('ok') : st.bad('FAILED');
  const checks = step.skipped ? '' : `${step.checks.filter((c) => c.ok).length}/${step.checks.length} checks, `;
  return `${st.bold(`${step.n}. ${step.title}`)}  ${status} ${st.dim(`(${checks}${seconds(step.durationMs)})`)}`;
}

function modeStep(step: StepResult, st: Style): string[] {
  const lines = [stepHeader(step, st)];
  if (step.command) lines.push(`${I}${step.host}$ ${step.command}`);
  lines.push(...wrap(step.how, I).map(st.dim));
  if (step.note) lines.push(...wrap(`note: ${step.note}`, I).map(st.dim));
  if (step.skipped) lines.push(...wrap(`skipped here: ${step.skipped}`, I));
  const main = step.requests.filter((r) => step.id !== 'baseline' || r.target === 'server');
  if (main.length) lines.push(...table(step, main));
  if (step.id === 'baseline') {
    const remote = step.requests.filter((r) => r.target === 'remote');
    if (remote.length) {
      const said = remote
        .map(
          (r) =>
            `${r.family === 'ipv4' ? 'IPv4' : 'IPv6'} ${r.error ? shortError(r.error) : `answered (${r.serverSaw})`}`,
        )
        .join(', ');
      lines.push(`${I}${pad('client → remote', LABEL_W)}${said}`);
    }
  }
  if (step.ok && !step.skipped && LESSON[step.id]) lines.push(...wrap(`→ ${LESSON[step.id]}`, I));
  if (step.error) lines.push(`${I}${st.bad('error:')} ${step.error.split('\n').join(`\n${I}  `)}`);
  lines.push(...failures(step.checks, st, I));
  return lines;
}

function cleanup(step: StepResult, st: Style): string[] {
  const lines = [stepHeader(step, st), `${I}while running:`];
  const who = (r: DemoReport['steps'][number]['rules'][number]) => `${r.step}. ${r.mode} on ${r.host}`;
  const w = Math.max(0, ...step.rules.map((r) => who(r).length)) + 2;
  for (const r of step.rules) lines.push(`${I}  ${pad(who(r), w)}${r.summary}`);
  const clean = step.rules.every((r) => r.exit === 0 && !r.after.trim());
  const nft = step.rules.filter((r) => r.nftAfter !== undefined);
  const hosts = [...new Set(nft.map((r) => r.host))];
  const nftClean = nft.every((r) => r.nftAfter === '');
  if (clean) {
    lines.push(
      `${I}after SIGTERM: each exited 0 and left nothing` +
        (nft.length ? `; nft list ruleset ${nftClean ? 'empty' : 'NOT empty'} in ${hosts.join(' and ')}` : ''),
    );
  }
  lines.push(...failures(step.checks, st, I));
  return lines;
}

function labLines(report: DemoReport, st: Style): string[] {
  const lan = report.lab.lanInterface;
  const top = `  IPv4: client ${ADDR.client.ipv4} ── ${ADDR.gwLan.ipv4} (${lan}) gw ${ADDR.gwWan.ipv4} ── server ${ADDR.server.ipv4}`;
  const at = top.indexOf(' gw ') + 1;
  const below = `${' '.repeat(at)}└─ ${ADDR.gwNodeSide.ipv4} ── ${ADDR.node.ipv4} node ${ADDR.nodeWan.ipv4} ── remote ${ADDR.remote.ipv4}`;
  const top6 = `  IPv6: client ${ADDR.client.ipv6} ── ${ADDR.gwLan.ipv6} gw ${ADDR.gwWan.ipv6} ── server ${ADDR.server.ipv6}`;
  const at6 = top6.indexOf(' gw ') + 1;
  const below6 = `${' '.repeat(at6)}└─ ${ADDR.gwNodeSide.ipv6} ── ${ADDR.node.ipv6} node ${ADDR.nodeWan.ipv6} ── remote ${ADDR.remote.ipv6}`;
  return [
    `lab ${report.lab.prefix}-{${Object.keys(report.lab.hosts).join(',')}}; SOCKS5 node: ${report.socksNode}`,
    top,
    below,
    top6,
    below6,
  ].map(st.dim);
}

export function renderText(report: DemoReport, st: Style): string {
  const who = report.rootless ? 'rootless, in a user namespace' : 'as root';
  const lines = [
    st.bold(`tranproxy demo: sidecar, gateway, SOCKS5 node and published port in a throw-away lab (${who})`),
    ...labLines(report, st),
    '',
  ];
  for (const step of report.steps) lines.push(...(step.id === 'cleanup' ? cleanup(step, st) : modeStep(step, st)), '');
  const failed = report.steps.flatMap((s) => s.checks).filter((c) => !c.ok).length;
  const passed = report.steps.flatMap((s) => s.checks).length - failed;
  const bad = report.steps.filter((s) => !s.ok);
  const skipped = report.steps.filter((s) => s.skipped);
  const labText = report.lab.kept ? 'lab kept' : report.lab.removed ? 'lab removed' : 'lab NOT removed';
  const skipText = skipped.length
    ? `; skipped: step${skipped.length === 1 ? '' : 's'} ${skipped.map((s) => s.n).join(', ')} (reason above)`
    : '';
  lines.push(
    report.ok
      ? st.ok(`All steps passed (${passed} checks) in ${seconds(report.durationMs)}; ${labText}${skipText}.`)
      : st.bad(
          `FAILED: step${bad.length === 1 ? '' : 's'} ${bad.map((s) => s.n).join(', ')}${failed ? ` (${failed} failed check${failed === 1 ? '' : 's'})` : ''} in ${seconds(report.durationMs)}; ${labText}${skipText}.`,
        ),
  );
  return `${lines.join('\n')}\n`;
}

/** For --keep: what to try in the lab, and how to enter it. */
export function keepHints(report: DemoReport, enter: string, node: string): string[] {
  const ns = (h: string) => report.lab.hosts[h]!.netns;
  const lan = report.lab.lanInterface;
  return [
    `lab kept; the server, remote and the SOCKS5 node still run (proxies are stopped). Try, in another terminal:`,
    `  ${enter}ip netns exec ${ns('gw')} ${node} run --mode tproxy --capture prerouting -i ${lan} -P 80 --upstream socks5://${ADDR.node.ipv4}:1080`,
    `  ${enter}ip netns exec ${ns('client')} curl -s http://${ADDR.remote.ipv4}/      # or: ${enter}ip netns exec ${ns('client')} bash`,
    `  ${enter}ip netns exec ${ns('gw')} ${node} publish ${PUBLISH_PORT}:${endpoint(ADDR.server.ipv4, 80)}`,
    `press Ctrl-C here to remove the lab`,
    '',
  ];
}
