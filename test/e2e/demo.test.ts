// `tranproxy demo` end to end, from the built CLI (npm test builds first): as root, the
// report's claims (headers the server received, the node's address seen by remote, the
// published port from outside and from 127.0.0.1, rules gone) and the clean-up; Ctrl-C
// mid-run (sidecar, through the node, publishing); and as an unprivileged user, whichever
// of "works in a user namespace" or "says exactly why not" this machine supports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import os from 'node:os';
import { runSync } from '../../src/kernel/exec.js';
import { tranproxyBin } from '../helpers/lab.js';
import { ADDR, type DemoReport, type RequestResult } from '../../src/demo/tour.js';

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
function demo(
  args: string[],
  opts: { prefix?: string[]; env?: NodeJS.ProcessEnv; onStderr?: (text: string, pid: number) => void } = {},
): Promise<Result> {
  assert.ok(existsSync(tranproxyBin()), 'dist/cli/main.js is missing: run npm run build');
  const argv = [...(opts.prefix ?? []), NODE, tranproxyBin(), 'demo', ...args];
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      env: { ...process.env, NO_COLOR: '', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
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
  return runSync('ip', ['netns', 'list'], { allowFailure: true })
    .stdout.split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);
}

/** Namespaces of the lab `prefix` still present (others may run demos at the same time). */
function leftNetns(prefix: string): string[] {
  assert.match(prefix, /^tpxdemo-[0-9a-z]+-[0-9a-z]{4}$/, `lab prefix '${prefix}'`);
  return netnsList().filter((n) => n.startsWith(`${prefix}-`));
}

/** The lab prefix a demo announced on stderr. */
function announcedPrefix(r: Result): string {
  return /building the lab (\S+):/.exec(r.stderr)?.[1] ?? '';
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

const ipOf = (ep: string | undefined) => ep?.replace(/^\[?(.*?)\]?:\d+$/, '$1');
type Step = DemoReport['steps'][number];

function assertFullReport(report: DemoReport, expect: { rootless: boolean }): void {
  assert.equal(
    report.ok,
    true,
    JSON.stringify(
      report.steps.flatMap((s) => s.checks.filter((c) => !c.ok)),
      null,
      1,
    ),
  );
  assert.equal(report.rootless, expect.rootless);
  assert.equal(report.lab.removed, true);
  assert.match(report.socksNode, /^built-in demo node/);
  assert.deepEqual(Object.keys(report.lab.hosts), ['client', 'gw', 'server', 'node', 'remote']);
  assert.deepEqual(
    report.steps.map((s) => s.id),
    ['baseline', 'sidecar', 'tproxy', 'redirect-node', 'tproxy-node', 'publish', 'cleanup'],
  );
  const [baseline, sidecar, tproxy, redirectNode, tproxyNode, publish, cleanup] = report.steps as [
    Step,
    Step,
    Step,
    Step,
    Step,
    Step,
    Step,
  ];
  for (const s of report.steps) assert.equal(s.skipped, undefined, `${s.title} was skipped: ${s.skipped}`);
  const server = { ipv4: `${ADDR.server.ipv4}:80`, ipv6: `[${ADDR.server.ipv6}]:80` };
  const remote = { ipv4: `${ADDR.remote.ipv4}:80`, ipv6: `[${ADDR.remote.ipv6}]:80` };

  // 0: direct to the server; remote unreachable without the node.
  const base = baseline.requests.filter((r) => r.target === 'server');
  assert.equal(base.length, 2);
  for (const r of base) assert.equal(r.serverSaw, r.client, 'without a proxy the server sees the client socket');
  const unreachable = baseline.requests.filter((r) => r.target === 'remote');
  assert.equal(unreachable.length, 2);
  for (const r of unreachable)
    assert.match(r.error ?? '', /UNREACH/, `${r.label}: remote must be unreachable without the node`);

  // Every proxy step: the proxy saw the client and recovered the destination.
  for (const [step, dst] of [
    [sidecar, server],
    [tproxy, server],
    [redirectNode, remote],
    [tproxyNode, remote],
  ] as const) {
    assert.equal(step.requests.length, 2, step.title);
    for (const r of step.requests) {
      assert.equal(r.recovered, dst[r.family], `${step.title} ${r.family}: recovered destination`);
      assert.equal(r.proxySrc, r.client, `${step.title} ${r.family}: the proxy saw the client`);
      assert.match(
        r.connLog ?? '',
        new RegExp(`^tranproxy: conn id=\\d+ src=\\S+ dst=${re(dst[r.family])} .*close=eof`),
      );
      assert.notEqual(
        r.serverSaw,
        r.client,
        `${step.title} ${r.family}: the server got a connection made by the proxy`,
      );
    }
  }

  // 1: sidecar, headers as the server received them.
  assert.equal(sidecar.host, 'client');
  assert.match(sidecar.command ?? '', /--Set-Forwarded-For --Set-Client-Hostname/);
  if (expect.rootless) assert.match(sidecar.command ?? '', /--proxy-user none/);
  for (const r of sidecar.requests) {
    assert.equal(ipOf(r.serverSaw), ADDR.client[r.family], 'the sidecar connects from the pod itself');
    assert.deepEqual(
      r.headers,
      { 'x-forwarded-for': ADDR.client.ipv4, 'x-client-hostname': os.hostname(), 'x-demo-tag': 'sidecar:v1' },
      `${r.family}: headers seen by the server`,
    );
  }
  // 2: TPROXY direct: full transparency.
  for (const r of tproxy.requests)
    assert.equal(ipOf(r.serverSaw), ADDR.client[r.family], `TPROXY ${r.family}: the server saw the client's own IP`);
  // 3, 4: through the node: remote sees the node, the proxy logged via=upstream.
  for (const step of [redirectNode, tproxyNode]) {
    assert.match(step.command ?? '', /--upstream socks5:\/\/10\.80\.2\.2:1080/);
    for (const r of step.requests) {
      assert.equal(r.via, 'upstream', `${step.title} ${r.family}`);
      assert.match(r.connLog ?? '', / via=upstream /);
      assert.equal(
        ipOf(r.nodeFrom),
        ADDR.nodeWan[r.family],
        `${step.title} ${r.family}: the node connected from its own address`,
      );
      assert.equal(
        ipOf(r.serverSaw),
        ADDR.nodeWan[r.family],
        `${step.title} ${r.family}: remote saw the node's address`,
      );
      assert.equal(r.serverSaw, r.nodeFrom);
    }
  }
  // 5: published port from outside (DNAT: the target sees the client) and from 127.0.0.1 (userland proxy).
  assert.equal(publish.host, 'gw');
  assert.equal(publish.command, `tranproxy publish 8080:${ADDR.server.ipv4}:80`);
  const [outside, local] = publish.requests as [RequestResult, RequestResult];
  assert.equal(outside.from, 'client');
  assert.equal(outside.url, `http://${ADDR.gwLan.ipv4}:8080/`);
  assert.equal(ipOf(outside.serverSaw), ADDR.client.ipv4, 'from outside the target sees the client itself');
  assert.equal(outside.connLog, undefined, 'from outside: kernel DNAT, not the userland proxy');
  assert.equal(local.from, 'gw');
  assert.equal(local.url, 'http://127.0.0.1:8080/');
  assert.equal(ipOf(local.client), '127.0.0.1');
  assert.match(
    local.connLog ?? '',
    new RegExp(`^tranproxy: conn id=\\d+ proto=tcp src=${re(local.client!)} via=\\S+:8080 dst=${re(server.ipv4)} `),
  );
  assert.equal(ipOf(local.serverSaw), ADDR.gwWan.ipv4, 'from localhost the userland proxy connects from gw');

  // 6: rules while running, nothing after.
  assert.deepEqual(
    cleanup.rules.map((r) => `${r.step} ${r.mode} ${r.host}`),
    ['1 REDIRECT client', '2 TPROXY gw', '3 REDIRECT gw', '4 TPROXY gw', '5 publish gw'],
  );
  for (const r of cleanup.rules) {
    assert.match(
      r.running,
      r.mode === 'publish' ? /table inet tranproxy_publish/ : /table inet tranproxy|TRANPROXY/,
      `${r.mode}: rules while running`,
    );
    assert.equal(r.exit, 0);
    assert.equal(r.after, '', `${r.step} ${r.mode}: nothing left after SIGTERM`);
    if (r.nftAfter !== undefined) assert.equal(r.nftAfter, '', `${r.step} ${r.mode}: nft list ruleset after SIGTERM`);
  }
  for (const r of cleanup.rules.filter((r) => r.mode === 'TPROXY'))
    assert.match(r.running, /lookup 233|table 233/, 'TPROXY policy routing while running');
}

test('demo as root: every step passes, the report shows headers, node and published port as seen, under 60 s, nothing left', async () => {
  const r = await demo([]);
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.ok(r.ms < 60_000, `took ${r.ms} ms`);
  assert.doesNotMatch(r.stdout, /\x1b\[/, 'no colours when stdout is not a TTY');
  // Progress on stderr, one line per step.
  for (const n of [0, 1, 2, 3, 4, 5, 6]) assert.match(r.stderr, new RegExp(`^tranproxy demo: \\[${n}/6\\] `, 'm'));
  // The text report, as a reader sees it.
  assert.match(r.stdout, /SOCKS5 node: built-in demo node/);
  assert.match(r.stdout, /^1\. Sidecar: REDIRECT with headers injected {2}ok /m);
  assert.match(r.stdout, /^2\. Gateway: TPROXY, direct {2}ok /m);
  assert.match(r.stdout, /^3\. Gateway: REDIRECT through a SOCKS5 node {2}ok /m);
  assert.match(r.stdout, /^4\. Gateway: TPROXY through a SOCKS5 node {2}ok /m);
  assert.match(r.stdout, /^5\. Published port \(docker run -p style\) {2}ok /m);
  assert.match(r.stdout, /^6\. Rules removed when each stops {2}ok /m);
  const part = (from: string, to: string) => r.stdout.slice(r.stdout.indexOf(from), r.stdout.indexOf(to));
  const sidecarPart = part('1. Sidecar', '2. Gateway');
  assert.match(sidecarPart, new RegExp(`X-Forwarded-For +${re(ADDR.client.ipv4)} +${re(ADDR.client.ipv4)}$`, 'm'));
  assert.match(sidecarPart, new RegExp(`X-Client-Hostname +${re(os.hostname())} +${re(os.hostname())}$`, 'm'));
  assert.match(sidecarPart, /X-Demo-Tag +sidecar:v1 +sidecar:v1$/m);
  const tproxyPart = part('2. Gateway', '3. Gateway');
  assert.match(
    tproxyPart,
    new RegExp(`server saw src +${re(ADDR.client.ipv4)}:\\d+ +\\[${re(ADDR.client.ipv6)}\\]:\\d+$`, 'm'),
    'TPROXY: the server saw the client IP',
  );
  for (const [from, to] of [
    ['3. Gateway', '4. Gateway'],
    ['4. Gateway', '5. Published'],
  ] as const) {
    const p = part(from, to);
    assert.match(p, new RegExp(`recovered dst +${re(ADDR.remote.ipv4)}:80 +\\[${re(ADDR.remote.ipv6)}\\]:80$`, 'm'));
    assert.match(p, /proxy sent via +upstream +upstream$/m);
    assert.match(
      p,
      new RegExp(`remote saw src +${re(ADDR.nodeWan.ipv4)}:\\d+ +\\[${re(ADDR.nodeWan.ipv6)}\\]:\\d+$`, 'm'),
      `${from}: remote saw the node`,
    );
  }
  const publishPart = part('5. Published', '6. Rules');
  assert.match(publishPart, /client → 10\.80\.1\.1:8080 +gw → 127\.0\.0\.1:8080$/m);
  assert.match(
    publishPart,
    new RegExp(`server saw src +${re(ADDR.client.ipv4)}:\\d+ +${re(ADDR.gwWan.ipv4)}:\\d+$`, 'm'),
  );
  assert.match(publishPart, /publish logged +nothing \(kernel DNAT\) +conn → 203\.0\.113\.80:80$/m);
  assert.match(r.stdout, /5\. publish on gw +nft table inet tranproxy_publish/);
  assert.match(r.stdout, /after SIGTERM: each exited 0 and left nothing; nft list ruleset empty in client and gw/);
  assert.match(r.stdout, /^All steps passed \(\d+ checks\) in [\d.]+ s; lab removed\.$/m);
  assert.deepEqual(leftNetns(announcedPrefix(r)), []);

  const j = await demo(['--json']);
  assert.equal(j.status, 0, j.stderr);
  assert.ok(j.ms < 60_000, `took ${j.ms} ms`);
  const report = parseReport(j);
  assertFullReport(report, { rootless: false });
  assert.deepEqual(leftNetns(report.lab.prefix), []);
});

test('Ctrl-C mid-run: exit 130, namespaces and every process of the lab gone', async () => {
  // In the sidecar step, with a proxy going through the node, and while publishing.
  for (const when of ['[1/6]', '[3/6]', '[5/6]']) {
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
          labPids = ['client', 'gw', 'server', 'node', 'remote'].flatMap((h) =>
            runSync('ip', ['netns', 'pids', `${prefix}-${h}`], { allowFailure: true })
              .stdout.split(/\s+/)
              .filter(Boolean)
              .map(Number),
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
    assert.deepEqual(
      await stillRunning(labPids),
      [],
      'every lab process (servers, node, proxy and its data plane, publisher) is gone',
    );
    assert.deepEqual(leftNetns(prefix), []);
  }
});

/** Can uid 65534 make the user namespace the demo needs, on this machine? */
function nobodyCanUnshare(): boolean {
  const probe = spawnSync(SETPRIV, [
    ...NOBODY,
    'unshare',
    '--user',
    '--map-root-user',
    '--net',
    '--mount',
    '--',
    'true',
  ]);
  return probe.status === 0;
}

test('as uid 65534: runs rootless in a user namespace where the kernel allows it, else says exactly why', async () => {
  const r = await demo(['--json'], { prefix: [SETPRIV, ...NOBODY] });
  if (nobodyCanUnshare()) {
    assert.equal(r.status, 0, r.stderr);
    const report = parseReport(r);
    assertFullReport(report, { rootless: true });
    assert.ok(r.ms < 60_000, `took ${r.ms} ms`);
    // Made in the user namespace's own /run: never visible here, and gone with it.
    assert.deepEqual(leftNetns(report.lab.prefix), []);
  } else {
    assert.equal(r.status, 1, r.stderr);
    assert.match(
      r.stderr,
      /^tranproxy: demo: building the lab needs root; as uid 65534 it re-executes itself in a user namespace, but .+\. Fix: .+, or run it as root \(sudo tranproxy demo\)\.$/m,
    );
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
