// Issue 8 load and limits through REDIRECT: 8,000 concurrent connections held for 60 s
// with periodic echoes (no error, every echo right, no fd leak, memory flat — the RSS
// samples are printed), and what happens beyond --max-connections and beyond the fd limit:
// the excess is refused and counted, the proxy keeps going.
//
// A process may hold at most 20,000 descriptors on these machines and a proxied connection
// takes two, so 8,000 is the ceiling for one worker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Host, Lab, LabProcess } from '../../src/netlab/lab.js';
import { fdCount, peerPath, startTranproxy, tranproxyBin, withLab } from '../helpers/lab.js';
import { fdsBackTo, rssKiB, stopGracefully, workerPid } from '../helpers/procs.js';
import { steady, until } from '../helpers/wait.js';

const SERVER = '10.83.1.2';
const PORT = 7000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function labOf(lab: Lab): { app: Host; server: Host } {
  const app = lab.addHost('app');
  const server = lab.addHost('server');
  lab.link(app, server, { a: ['10.83.1.1/24'], b: [`${SERVER}/24`] });
  return { app, server };
}

async function echoServer(server: Host): Promise<LabProcess> {
  const p = server.spawn('python3', ['-u', peerPath('echo_async.py'), String(PORT), '0.0.0.0']);
  await p.waitForOutput(/^listening .*$/m);
  return p;
}

interface Summary {
  opened: number;
  refused: number;
  refused_kinds: Record<string, number>;
  echoes: number;
  bad: number;
  errors: number;
  error_kinds: Record<string, number>;
  ramp_s: number;
  hold_s: number;
}

function loadClient(app: Host, n: number, holdS: number, intervalS: number): LabProcess {
  return app.spawn('python3', [
    '-u',
    peerPath('load_client.py'),
    SERVER,
    String(PORT),
    String(n),
    String(holdS),
    String(intervalS),
    '200',
  ]);
}

async function summaryOf(client: LabProcess, timeoutMs: number): Promise<Summary> {
  const line = await client.waitForOutput(/^summary .*$/m, timeoutMs);
  return JSON.parse(line.slice('summary '.length)) as Summary;
}

async function metric(app: Host, re: RegExp): Promise<number> {
  const r = await app.run('curl', ['-sS', '--max-time', '10', 'http://127.0.0.1:15000/metrics']);
  const m = re.exec(r.stdout);
  return m ? Number(m[1]) : 0;
}

/** Waits (up to 15 s) until the proxy counts `n` active connections. */
async function activeBackTo(app: Host, n: number): Promise<void> {
  const deadline = Date.now() + 15_000;
  let active = -1;
  while (Date.now() < deadline) {
    active = await metric(app, /^tranproxy_connections_active(?:\{[^}]*\})? (\d+)/m);
    if (active === n) return;
    await sleep(100);
  }
  assert.fail(`the proxy still counts ${active} active connections, not ${n}`);
}

/** Soft "Max open files" of `pid`. */
function fdLimitOf(pid: number): number {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'))!;
  return Number(line.split(/\s{2,}/)[1]);
}

test('8,000 concurrent connections held for 60 s: no error, every echo right, fds back to baseline, RSS flat', async () => {
  await withLab(async (lab) => {
    const N = 8000;
    const HOLD_S = 60;
    const { app, server } = labOf(lab);
    await echoServer(server);
    const proxy = await startTranproxy(app, [
      'run',
      '-P',
      String(PORT),
      '--family',
      'ipv4',
      '--max-connections',
      String(N),
      '--admin',
    ]);
    const worker = workerPid(proxy.pid);
    // The limit the proxy reports is the one its worker really has, and it fits 8,000 × 2.
    const reported = Number(/fd-limit=(\d+)/.exec(proxy.output())![1]);
    assert.equal(fdLimitOf(worker), reported);
    assert.ok(reported >= 2 * N + 64, `fd-limit=${reported} fits ${N} connections`);

    const warm = loadClient(app, 20, 0, 1);
    assert.equal((await summaryOf(warm, 30_000)).opened, 20);
    const baseline = await steady("the worker's fd count after the warm-up", () => fdCount(worker));

    const started = Date.now();
    const client = loadClient(app, N, HOLD_S, 10);
    const ramped = await client.waitForOutput(/^ramped .*$/m, 90_000);
    const [, opened, refusedAtRamp, rampS] = ramped.split(' ');
    assert.equal(Number(refusedAtRamp), 0, `no connection refused during the ramp (${ramped})`);
    assert.equal(Number(opened), N);
    // The live count comes with the engine's record batches: the last opens may not be in yet.
    let active = -1;
    await until(
      () => `the proxy to count every held connection (${active} of ${N})`,
      async () => (active = await metric(app, /^tranproxy_connections_active\{[^}]*\} (\d+)/m)) === N,
      15_000,
      100,
    );

    // RSS and fds of the worker right after the ramp, then about every 10 s.
    const samples: { t: number; rssMiB: number; fds: number }[] = [];
    const sample = () =>
      samples.push({
        t: Math.round((Date.now() - started) / 1000),
        rssMiB: Math.round(rssKiB(worker) / 102.4) / 10,
        fds: fdCount(worker),
      });
    sample();
    const timer = setInterval(sample, 10_000);
    let summary: Summary;
    try {
      summary = await summaryOf(client, (HOLD_S + 60) * 1000);
    } finally {
      clearInterval(timer);
    }
    const after = await fdsBackTo(worker, baseline);
    console.log(
      `# load: ${N} connections ramped in ${rampS} s, held ${summary.hold_s} s; ${summary.echoes} echoes, ${summary.bad} wrong, ${summary.errors} errors ${JSON.stringify(summary.error_kinds)}`,
    );
    console.log(
      `# load: worker RSS/fds samples: ${samples.map((s) => `t=${s.t}s ${s.rssMiB} MiB ${s.fds} fds`).join('; ')}`,
    );
    console.log(`# load: worker fds baseline ${baseline}, after close ${after}`);

    assert.equal(summary.opened, N);
    assert.equal(summary.errors, 0, JSON.stringify(summary.error_kinds));
    assert.equal(summary.bad, 0);
    // Each connection echoes about every 10 s for 60 s: at least 4 each on any machine.
    assert.ok(summary.echoes >= N * 4, `${summary.echoes} echoes`);
    assert.ok(samples[0]!.fds >= 2 * N, `both sides of every connection held during the test (${samples[0]!.fds})`);
    assert.ok(after <= baseline, `no fd leaked: ${after} against a baseline of ${baseline}`);
    const first = samples[0]!.rssMiB;
    const last = samples[samples.length - 1]!.rssMiB;
    assert.ok(samples.length >= 6, `${samples.length} RSS samples`);
    assert.ok(last < first * 1.25, `RSS flat: ${first} MiB after the ramp, ${last} MiB at the end`);
    assert.equal(workerPid(proxy.pid), worker, 'the worker never restarted');
    assert.equal(await stopGracefully(proxy), 0);
  });
});

test('beyond --max-connections the excess is refused and counted; the proxy keeps serving', async () => {
  await withLab(async (lab) => {
    const { app, server } = labOf(lab);
    await echoServer(server);
    const proxy = await startTranproxy(app, [
      'run',
      '-P',
      String(PORT),
      '--family',
      'ipv4',
      '--max-connections',
      '100',
      '--admin',
    ]);
    const worker = workerPid(proxy.pid);
    const s = await summaryOf(loadClient(app, 150, 3, 1), 60_000);
    assert.equal(s.opened, 100, JSON.stringify(s));
    assert.equal(s.refused, 50, JSON.stringify(s));
    assert.equal(s.errors + s.bad, 0, 'the connections within the limit are unaffected');
    assert.equal(await metric(app, /^tranproxy_connections_refused_total\{reason="max-connections"\} (\d+)/m), 50);
    // Capacity comes back once the held connections are gone.
    await activeBackTo(app, 0);
    const again = await summaryOf(loadClient(app, 100, 1, 1), 60_000);
    assert.equal(again.opened, 100, JSON.stringify(again));
    assert.equal(workerPid(proxy.pid), worker, 'no crash, no restart');
    assert.equal(await stopGracefully(proxy), 0);
  });
});

test('with a low fd limit (prlimit) the proxy reports it at start and refuses, never crashes, beyond it', async () => {
  await withLab(async (lab) => {
    const { app, server } = labOf(lab);
    await echoServer(server);
    const LIMIT = 256;
    const p = app.spawn('prlimit', [
      `--nofile=${LIMIT}:${LIMIT}`,
      process.execPath,
      tranproxyBin(),
      'run',
      '-P',
      String(PORT),
      '--family',
      'ipv4',
      '--admin',
    ]);
    await p.waitForOutput(/^tranproxy:? ready:.*$/m, 15_000);
    assert.match(p.output(), new RegExp(`fd-limit=${LIMIT}\\b`));
    assert.match(p.output(), /file descriptor limit 256 is below what --max-connections 8000 needs/);
    const worker = workerPid(p.pid);
    const budget = Math.floor((LIMIT - 64) / 2);
    const s = await summaryOf(loadClient(app, 200, 3, 1), 60_000);
    console.log(`# fd limit ${LIMIT}: ${s.opened} held, ${s.refused} refused ${JSON.stringify(s.refused_kinds)}`);
    assert.equal(s.opened + s.refused, 200);
    assert.equal(s.opened, budget, `the limit leaves room for ${budget} connections`);
    assert.equal(s.errors + s.bad, 0);
    assert.equal(
      await metric(app, /^tranproxy_connections_refused_total\{reason="max-connections"\} (\d+)/m),
      200 - budget,
    );
    await activeBackTo(app, 0);
    const again = await summaryOf(loadClient(app, 50, 1, 1), 60_000);
    assert.equal(again.opened, 50, JSON.stringify(again));
    assert.equal(workerPid(p.pid), worker, 'no crash, no restart');
    assert.equal(await stopGracefully(p), 0);
  });
});
