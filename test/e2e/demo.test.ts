// `tranproxy demo` end to end, from the built CLI (npm test builds first): as root, the
// report's claims and the clean-up; Ctrl-C mid-run; and as an unprivileged user, whichever
// of "works in a user namespace" or "says exactly why not" this machine supports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { runSync } from '../../src/kernel/exec.js';
import { tranproxyBin } from '../helpers/lab.js';
import { ADDR, type DemoReport } from '../../src/demo/tour.js';

const re = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const NODE = process.execPath;
const SETPRIV = spawnSync('sh', ['-c', 'command -v setpriv'], { encoding: 'utf8' }).stdout.trim() || 'setpriv';
const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];

interface Result {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  pid: number;
}

/** Run `[prefix...] node main.js demo ARGS`; `onStderr` sees stderr as it grows. */
function demo(args: string[], opts: { prefix?: string[]; env?: NodeJS.ProcessEnv; onStderr?: (text: string, pid: number) => void } = {}): Promise<Result> {
  assert.ok(existsSync(tranproxyBin()), 'dist/cli/main.js is missing: run npm run build');
  const argv = [...(opts.prefix ?? []), NODE, tranproxyBin(), 'demo', ...args];
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, NO_COLOR: '', ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      opts.onStderr?.(stderr, child.pid!);
    });
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(killer);
      resolve({ status, signal, stdout, stderr, ms: Date.now() - t0, pid: child.pid! });
    });
  });
}

function netnsList(): string[] {
  return runSync('ip', ['netns', 'list'], { allowFailure: true }).stdout.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean);
}

/** Demo labs that appeared since `before` (other tests' labs use other tags). */
function newDemoNetns(before: string[]): string[] {
  return netnsList().filter((n) => n.startsWith('tpxdemo-') && !before.includes(n));
}

/** Running (not gone, not a zombie waiting for init to reap it), with its command line. */
function running(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (/^\d+ \(.*\) Z/.test(stat)) return undefined;
    return `${pid}: ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ')}`;
  } catch {
    return undefined;
  }
}

async function stillRunning(pids: number[]): Promise<string[]> {
  for (let i = 0; ; i++) {
    const left = pids.map(running).filter((x): x is string => x !== undefined);
    if (left.length === 0 || i >= 20) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function parseReport(r: Result): DemoReport {
  try {
    return JSON.parse(r.stdout) as DemoReport;
  } catch {
    assert.fail(`--json printed no JSON (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  }
}

function assertFullReport(report: DemoReport, expect: { rootless: boolean }): void {
  assert.equal(report.ok, true, JSON.stringify(report.steps.flatMap((s) => s.checks.filter((c) => !c.ok)), null, 1));
  assert.equal(report.rootless, expect.rootless);
  assert.equal(report.lab.removed, true);
  assert.deepEqual(report.steps.map((s) => s.id), ['baseline', 'redirect', 'tproxy', 'cleanup']);
  const [baseline, redirect, tproxy, cleanup] = report.steps as [DemoReport['steps'][number], DemoReport['steps'][number], DemoReport['steps'][number], DemoReport['steps'][number]];
  const server = { ipv4: `${ADDR.server.ipv4}:80`, ipv6: `[${ADDR.server.ipv6}]:80` };
  const clientIp = ADDR.client;
  const gwIp = ADDR.gwWan;
  const ipOf = (ep: string | undefined) => ep?.replace(/^\[?(.*?)\]?:\d+$/, '$1');
  for (const r of baseline.requests) assert.equal(r.serverSaw, r.client, 'without a proxy the server sees the client socket');
  for (const step of [redirect, tproxy]) {
    assert.equal(step.requests.length, 2, step.title);
    for (const r of step.requests) {
      assert.equal(r.recovered, server[r.family], `${step.title} ${r.family}: recovered destination`);
      assert.equal(r.proxySrc, r.client, `${step.title} ${r.family}: the proxy saw the client`);
      assert.match(r.connLog ?? '', new RegExp(`^tranproxy: conn id=\\d+ src=\\S+ dst=${re(server[r.family])} .*close=eof`));
      assert.notEqual(r.serverSaw, r.client, `${step.title} ${r.family}: the server got a connection made by the proxy`);
    }
  }
  for (const r of tproxy.requests) assert.equal(ipOf(r.serverSaw), clientIp[r.family], `TPROXY ${r.family}: the server saw the client's own IP`);
  if (redirect.host === 'client') {
    assert.equal(redirect.title, 'REDIRECT, sidecar style');
    for (const r of redirect.requests) assert.equal(ipOf(r.serverSaw), clientIp[r.family]);
  } else {
    assert.equal(redirect.title, 'REDIRECT, gateway style');
    for (const r of redirect.requests) assert.equal(ipOf(r.serverSaw), gwIp[r.family], 'REDIRECT on the gateway: the server sees the gateway');
  }
  assert.equal(cleanup.rules.length, 2);
  for (const r of cleanup.rules) {
    assert.match(r.running, /table inet tranproxy|TRANPROXY/, `${r.mode}: rules while running`);
    assert.equal(r.exit, 0);
    assert.equal(r.after, '', `${r.mode}: nothing left after SIGTERM`);
    if (r.nftAfter !== undefined) assert.equal(r.nftAfter, '', `${r.mode}: nft list ruleset after SIGTERM`);
  }
  assert.match(cleanup.rules.find((r) => r.mode === 'TPROXY')!.running, /lookup 233|table 233/, 'TPROXY policy routing while running');
}

test('demo as root: every step passes, the report shows what the server saw and what the proxy recovered, under 30 s, nothing left', async () => {
  const before = netnsList();
  const r = await demo([]);
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.ok(r.ms < 30_000, `took ${r.ms} ms`);
  assert.doesNotMatch(r.stdout, /\x1b\[/, 'no colours when stdout is not a TTY');
  // Progress on stderr, one line per step.
  for (const n of [0, 1, 2, 3]) assert.match(r.stderr, new RegExp(`^tranproxy demo: \\[${n}/3\\] `, 'm'));
  // The text report, as a reader sees it.
  assert.match(r.stdout, /^1\. REDIRECT, sidecar style {2}ok/m);
  assert.match(r.stdout, /^2\. TPROXY, gateway style {2}ok/m);
  assert.match(r.stdout, /^3\. Rules removed when the proxy stops {2}ok/m);
  assert.match(r.stdout, new RegExp(`recovered dst +${re(ADDR.server.ipv4)}:80 +\\[${re(ADDR.server.ipv6)}\\]:80$`, 'm'));
  const tproxyPart = r.stdout.slice(r.stdout.indexOf('2. TPROXY'), r.stdout.indexOf('3. Rules'));
  assert.match(tproxyPart, new RegExp(`server saw src +${re(ADDR.client.ipv4)}:\\d+ +\\[${re(ADDR.client.ipv6)}\\]:\\d+$`, 'm'), 'TPROXY: the server saw the client IP');
  assert.match(r.stdout, /SIGTERM → exit 0; after: nothing of tranproxy; nft list ruleset: empty/);
  assert.match(r.stdout, /^All steps passed in [\d.]+ s; lab removed\.$/m);
  assert.deepEqual(newDemoNetns(before), []);

  const j = await demo(['--json']);
  assert.equal(j.status, 0, j.stderr);
  assertFullReport(parseReport(j), { rootless: false });
  assert.deepEqual(newDemoNetns(before), []);
});

test('Ctrl-C mid-run: exit 130, namespaces and every process of the lab gone', async () => {
  for (const when of ['[1/3]', '[2/3]']) {
    const before = netnsList();
    let prefix = '';
    let labPids: number[] = [];
    let sent = false;
    const r = await demo([], {
      onStderr: (text, pid) => {
        prefix ||= /building the lab (\S+):/.exec(text)?.[1] ?? '';
        if (sent || !text.includes(when)) return;
        sent = true;
        // Give the step's proxy a moment to start, then note who lives in the lab and interrupt.
        setTimeout(() => {
          labPids = ['client', 'gw', 'server'].flatMap((h) =>
            runSync('ip', ['netns', 'pids', `${prefix}-${h}`], { allowFailure: true }).stdout.split(/\s+/).filter(Boolean).map(Number),
          );
          process.kill(pid, 'SIGINT');
        }, 300);
      },
    });
    assert.ok(sent, `never reached ${when}:\n${r.stderr}`);
    assert.equal(r.status, 130, `interrupted at ${when}: ${r.stderr}`);
    assert.match(r.stderr, /demo interrupted \(SIGINT\): removing the lab/);
    assert.ok(prefix, 'the lab prefix was announced');
    assert.ok(labPids.length > 0, 'processes were running in the lab when interrupted');
    assert.deepEqual(await stillRunning(labPids), [], 'every lab process (server, proxy and its data plane) is gone');
    assert.deepEqual(newDemoNetns(before), []);
  }
});

/** Can uid 65534 make the user namespace the demo needs, on this machine? */
function nobodyCanUnshare(): boolean {
  const probe = spawnSync(SETPRIV, [...NOBODY, 'unshare', '--user', '--map-root-user', '--net', '--mount', '--', 'true']);
  return probe.status === 0;
}

test('as uid 65534: runs rootless in a user namespace where the kernel allows it, else says exactly why', async () => {
  const r = await demo(['--json'], { prefix: [SETPRIV, ...NOBODY] });
  if (nobodyCanUnshare()) {
    assert.equal(r.status, 0, r.stderr);
    assertFullReport(parseReport(r), { rootless: true });
    assert.ok(r.ms < 30_000, `took ${r.ms} ms`);
  } else {
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /^tranproxy: demo: building the lab needs root; as uid 65534 it re-executes itself in a user namespace, but .+\. Fix: .+, or run it as root \(sudo tranproxy demo\)\.$/m);
  }
});

test('as uid 65534 without unshare on PATH: the exact reason and fix, exit 1', async () => {
  // node is given by absolute path; nothing else can be found.
  const r = await demo([], { prefix: [SETPRIV, ...NOBODY], env: { PATH: '/nonexistent' } });
  assert.equal(r.status, 1, r.stderr);
  assert.equal(
    r.stderr,
    "tranproxy: demo: building the lab needs root; as uid 65534 it re-executes itself in a user namespace, but 'unshare' is not installed. Fix: apt-get install util-linux, or run it as root (sudo tranproxy demo).\n",
  );
  assert.equal(r.stdout, '');
});

test('demo --help lists its flags', () => {
  const r = spawnSync(NODE, [tranproxyBin(), 'demo', '--help'], { encoding: 'utf8' });
  assert.equal(r.status, 0);
  for (const flag of ['--json', '--keep', '-h, --help']) assert.ok(r.stdout.includes(flag), flag);
});
