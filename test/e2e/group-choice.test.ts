// Issue 17 item 3: a select group's member chosen in the console is kept when the data-plane
// worker crashes and the supervisor starts another, and across a SIGHUP reload. Real gateway
// process in its own netns; the choice is made through the console API and read from /groups.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Host } from '../../src/netlab/lab.js';
import { setConsolePassword } from '../helpers/console-lab.js';
import { startTranproxy, withLab } from '../helpers/lab.js';
import { until } from '../helpers/wait.js';

const CONSOLE = '127.0.0.1:8080';
const PASSWORD = 'group choice password';

// One request per `node` run inside the gateway netns: [method, url, body, headers] → status, cookie, body.
const CLIENT = `
const [method, url, body, headers] = JSON.parse(process.argv[1]);
fetch(url, { method, headers: { 'content-type': 'application/json', ...headers }, ...(body === null ? {} : { body: JSON.stringify(body) }) })
  .then(async (r) => console.log(JSON.stringify({ status: r.status, cookie: r.headers.get('set-cookie'), body: await r.json().catch(() => null) })),
        (e) => console.log(JSON.stringify({ status: 0, body: String(e) })));
`;

async function call(gw: Host, method: string, url: string, body: unknown, headers: Record<string, string> = {}) {
  const r = await gw.run(process.execPath, ['-e', CLIENT, JSON.stringify([method, url, body, headers])]);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { status: number; cookie: string | null; body: any }; // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON under test
}

/** The group's member as /groups shows it, once `want` (or after 10 s, whatever it is). */
async function memberOf(gw: Host, group: string, want: string): Promise<string | undefined> {
  let now: string | undefined;
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; ) {
    const r = await call(gw, 'GET', 'http://127.0.0.1:15000/groups', null).catch(() => undefined);
    now = (r?.body as { name: string; now: string }[] | undefined)?.find((g) => g.name === group)?.now;
    if (now === want) return now;
    await new Promise((res) => setTimeout(res, 200));
  }
  return now;
}

/** Data-plane workers of the supervisor `pid` (its child processes). */
function workersOf(pid: number): number[] {
  const task = `/proc/${pid}/task/${pid}/children`;
  return readFileSync(task, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
}

test('select group: the member chosen in the console survives a data-plane crash and a SIGHUP reload', {
  timeout: 120_000,
}, async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'tpx-group-choice-'));
  try {
    await withLab(async (lab) => {
      const gw = lab.addHost('gw');
      const config = join(tmp, 'gw.yaml');
      writeFileSync(
        config,
        [
          'family: ipv4',
          'nodes:',
          '  n1: socks5://127.0.0.1:9',
          'groups:',
          '  pick: { type: select, members: [direct, reject, n1], url: "http://127.0.0.1:9/", interval: 60s }',
          'default: pick',
          '',
        ].join('\n'),
        { mode: 0o600 },
      );
      await setConsolePassword(gw, config, PASSWORD);
      const proxy = await startTranproxy(
        gw,
        ['run', '--config', config, '--firewall', 'none', '--admin', '--console', CONSOLE],
        {
          timeoutMs: 20_000,
        },
      );
      try {
        assert.equal(await memberOf(gw, 'pick', 'direct'), 'direct', 'a select group starts on its first member');
        const login = await call(gw, 'POST', `http://${CONSOLE}/api/login`, { password: PASSWORD });
        assert.equal(login.status, 200);
        const auth = { cookie: login.cookie!.split(';')[0]!, 'x-csrf-token': login.body.csrf as string };
        const choose = async (member: string) => {
          const r = await call(gw, 'PUT', `http://${CONSOLE}/api/groups/pick`, { member }, auth);
          assert.equal(r.status, 200, JSON.stringify(r.body));
          assert.equal(await memberOf(gw, 'pick', member), member);
        };
        // Two choices: what is kept must be the last one, neither the default nor the one before.
        await choose('reject');
        await choose('n1');

        const [worker] = workersOf(proxy.pid);
        assert.ok(worker, 'the supervisor has a data-plane worker');
        process.kill(worker, 'SIGKILL');
        await proxy.waitForOutput(/data plane exited; restarting/);
        // Read once the old worker is gone and another runs: only the new one can answer.
        await until(
          'a new worker, the old one gone',
          () => !existsSync(`/proc/${worker}`) && workersOf(proxy.pid).some((w) => w !== worker),
        );
        assert.equal(await memberOf(gw, 'pick', 'n1'), 'n1', 'kept across the crash');

        // Chosen again in the new worker; the reload must carry this one, not the one before the crash.
        await choose('reject');
        process.kill(proxy.pid, 'SIGHUP');
        await proxy.waitForOutput(/reloaded:/, 20_000);
        assert.equal(await memberOf(gw, 'pick', 'reject'), 'reject', 'kept across the reload');
      } finally {
        await proxy.stop();
      }
    });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
