// The Kubernetes init-container layout in a lab netns: `tranproxy rules apply` (root, like
// the init container), then `run --one-process` as the unprivileged proxy user, one process
// for the whole data plane: headers injected, SIGHUP reload, SIGTERM drains, and
// `rules remove` leaves nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { peerPath, startPeer, startTranproxy, tranproxyBin, withLab } from '../helpers/lab.js';
import { childPids, procStatus } from '../helpers/procs.js';
import { until } from '../helpers/wait.js';

const NODE = process.execPath;
const POD = '10.76.1.1';
const SERVER = '10.76.1.2';
const CAPTURE = ['-P', '80', '-P', '7', '--family', 'ipv4'];

test('init-container layout: rules apply, then one unprivileged process injects, reloads, drains', async () => {
  await withLab(async (lab) => {
    const pod = lab.addHost('pod');
    const server = lab.addHost('server');
    lab.link(pod, server, { a: [`${POD}/24`], b: [`${SERVER}/24`] });
    await startPeer(server, 'echo_headers', 80);
    await startPeer(server, 'tcp_echo', 7);
    const dir = mkdtempSync(join(tmpdir(), 'tpx-oneproc-'));
    chmodSync(dir, 0o755);
    try {
      const file = join(dir, 'sidecar.yaml');
      const write = (gen: string) => writeFileSync(file, `headers:\n  - "X-Gen: ${gen}"\n`, { mode: 0o644 });
      write('1');
      const rules = await pod.run(NODE, [tranproxyBin(), 'rules', 'apply', ...CAPTURE]);
      assert.equal(rules.status, 0, rules.stdout);
      const proxy = await startTranproxy(
        pod,
        ['run', ...CAPTURE, '--firewall', 'none', '--one-process', '--config', file, '--Set-Forwarded-For', 'default'],
        { uid: 1337, gid: 1337, env: { ...process.env, PODIP: POD } },
      );
      assert.match(proxy.output(), /ready: .*firewall=none user=1337:1337 caps=none .*layout=one-process/);
      // One process: the argument parser it started has exited; it runs as the proxy user.
      assert.deepEqual(childPids(proxy.pid), []);
      assert.match(procStatus(proxy.pid).Uid ?? '', /^1337\s+1337\s+1337\s+1337$/);

      const gen = async () => {
        const r = await pod.run('curl', ['-sS', '--max-time', '5', `http://${SERVER}/`], { allowFailure: true });
        assert.match(r.stdout, new RegExp(`"X-Forwarded-For", "${POD.replaceAll('.', '\\.')}"`), r.stdout);
        return (/"X-Gen", "(\d)"/.exec(r.stdout) ?? [])[1];
      };
      assert.equal(await gen(), '1', proxy.output());

      // An established connection, through the first generation.
      const hold = pod.spawn('python3', ['-u', peerPath('hold_client.py'), SERVER, '7']);
      await hold.waitForOutput(/connected/);
      const say = async (line: string) => {
        hold.child.stdin!.write(`${line}\n`);
        await hold.waitForOutput(new RegExp(`echo: ${line}\\n`), 5000);
      };
      await say('<before>');

      write('2');
      proxy.child.kill('SIGHUP');
      await proxy.waitForOutput(/reloaded: .*layout=one-process/);
      assert.equal(await gen(), '2');
      await say('after-reload');

      // SIGTERM: no new connections, the established one still relays until it ends.
      proxy.child.kill('SIGTERM');
      // Once the signal is handled, new connections are refused (asked until then, 10 s at most).
      await until('a new connection after SIGTERM not to be served', async () => {
        const r = await pod.run('curl', ['-sS', '--max-time', '3', `http://${SERVER}/`], { allowFailure: true });
        return r.status !== 0;
      });
      await say('while-draining');
      hold.child.stdin!.end();
      assert.equal(await proxy.stop('SIGCONT'), 0, proxy.output());

      const rm = await pod.run(NODE, [tranproxyBin(), 'rules', 'remove']);
      assert.equal(rm.status, 0);
      assert.doesNotMatch((await pod.run('nft', ['list', 'ruleset'])).stdout, /tranproxy/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
