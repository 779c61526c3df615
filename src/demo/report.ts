// The demo's report as text: a few lines per step, values side by side per IP family,
// failures spelled out (expected vs got). Colours only when asked (stdout is a TTY).
import { ADDR, type Check, type DemoReport, type StepResult } from './tour.js';

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

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function pad(s: string, n: number): string {
  return s.length >= n ? `${s} ` : s + ' '.repeat(n - s.length);
}

/** Fold a long sentence into lines of at most `width` characters, each prefixed by `indent`. */
function wrap(text: string, indent: string, width = 92): string[] {
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

/** What each mode step demonstrates, in one sentence. */
function lesson(step: StepResult): string {
  if (step.id === 'baseline') return "the server sees the client's own socket";
  if (step.id === 'tproxy') {
    return "the proxy read the destination from its own socket's local address (the packet was never rewritten), and the server saw the client itself";
  }
  if (step.host === 'client') {
    return "the kernel rewrote the destination to the proxy's port; the proxy got it back with SO_ORIGINAL_DST, and the server saw a second connection, the proxy's";
  }
  return "the kernel rewrote the destination to the proxy's port; the proxy got it back with SO_ORIGINAL_DST, and the server saw the gateway, which made a new connection";
}

function failures(checks: Check[], st: Style, indent: string): string[] {
  return checks
    .filter((c) => !c.ok)
    .flatMap((c) => [`${indent}${st.bad('FAIL')} ${c.name}`, `${indent}     expected ${c.expected}`, `${indent}     got      ${c.actual.split('\n').join(`\n${indent}              `)}`]);
}

function stepHeader(step: StepResult, st: Style): string {
  const status = step.ok ? st.ok('ok') : st.bad('FAILED');
  return `${st.bold(`${step.n}. ${step.title}`)}  ${status} ${st.dim(`(${seconds(step.durationMs)})`)}`;
}

function modeStep(step: StepResult, st: Style): string[] {
  const I = '   ';
  const lines = [stepHeader(step, st)];
  if (step.command) lines.push(`${I}${step.host}$ ${step.command}`);
  lines.push(...wrap(step.how, I).map(st.dim));
  if (step.note) lines.push(...wrap(`note: ${step.note}`, I).map(st.dim));
  if (step.requests.length) {
    type Row = [string, (r: StepResult['requests'][number]) => string | undefined];
    const rows: Row[] = [['client socket', (r) => r.client]];
    if (step.id !== 'baseline') rows.push(['proxy saw src', (r) => r.proxySrc], ['recovered dst', (r) => r.recovered]);
    rows.push(['server saw src', (r) => r.serverSaw]);
    const w = 24;
    lines.push(I + pad('', 17) + step.requests.map((r) => pad(r.family === 'ipv4' ? 'IPv4' : 'IPv6', w)).join('').trimEnd());
    for (const [label, get] of rows) {
      lines.push(I + pad(label, 17) + step.requests.map((r) => pad(get(r) ?? (r.error ? 'error' : '-'), w)).join('').trimEnd());
    }
    if (step.ok) lines.push(...wrap(`→ ${lesson(step)}`, I));
  }
  if (step.error) lines.push(`${I}${st.bad('error:')} ${step.error.split('\n').join(`\n${I}  `)}`);
  lines.push(...failures(step.checks, st, I));
  if (step.ok) lines.push(`${I}${st.ok(`${step.checks.length}/${step.checks.length} checks passed`)}`);
  return lines;
}

function cleanup(step: StepResult, st: Style): string[] {
  const I = '   ';
  const lines = [stepHeader(step, st)];
  const w = Math.max(...step.rules.map((r) => `${r.mode} on ${r.host}:`.length), 0) + 1;
  for (const r of step.rules) {
    const after = r.after.trim() ? 'rules left!' : 'nothing of tranproxy';
    const nft = r.nftAfter === undefined ? '' : `; nft list ruleset: ${r.nftAfter ? 'not empty' : 'empty'}`;
    lines.push(`${I}${pad(`${r.mode} on ${r.host}:`, w)}while running ${r.summary}`);
    lines.push(`${I}${pad('', w)}SIGTERM → exit ${r.exit ?? 'by signal'}; after: ${after}${nft}`);
  }
  lines.push(...failures(step.checks, st, I));
  if (step.ok) lines.push(`${I}${st.ok(`${step.checks.length}/${step.checks.length} checks passed`)}`);
  return lines;
}

export function renderText(report: DemoReport, st: Style): string {
  const who = report.rootless ? 'rootless, in a user namespace' : 'as root';
  const lan = report.lab.lanInterface;
  const lines = [
    st.bold(`tranproxy demo: REDIRECT and TPROXY in a throw-away lab (${who})`),
    st.dim(`lab ${report.lab.prefix}-{client,gw,server}:`),
    st.dim(`  client ${ADDR.client.ipv4} ── ${ADDR.gwLan.ipv4} (${lan}) gw ${ADDR.gwWan.ipv4} ── server ${ADDR.server.ipv4}`),
    st.dim(`  client ${ADDR.client.ipv6} ── ${ADDR.gwLan.ipv6} (${lan}) gw ${ADDR.gwWan.ipv6} ── server ${ADDR.server.ipv6}`),
    '',
  ];
  for (const step of report.steps) {
    lines.push(...(step.id === 'cleanup' ? cleanup(step, st) : modeStep(step, st)), '');
  }
  const failed = report.steps.flatMap((s) => s.checks).filter((c) => !c.ok).length;
  const bad = report.steps.filter((s) => !s.ok);
  const labText = report.lab.kept ? 'lab kept' : report.lab.removed ? 'lab removed' : 'lab NOT removed';
  lines.push(
    report.ok
      ? st.ok(`All steps passed in ${seconds(report.durationMs)}; ${labText}.`)
      : st.bad(`FAILED: step${bad.length === 1 ? '' : 's'} ${bad.map((s) => s.n).join(', ')}${failed ? ` (${failed} failed check${failed === 1 ? '' : 's'})` : ''} in ${seconds(report.durationMs)}; ${labText}.`),
  );
  return lines.join('\n') + '\n';
}
