// A SIGTERM at any moment of start-up ends tranproxy cleanly: exit 0, no rule left behind.
// (Node takes a few milliseconds to install a signal handler; before the supervisor took
// its signals first, a SIGTERM right after the ready line killed it with its rules in place.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { startTranproxy, tranproxyBin, withLab } from '../helpers/lab.js';

/** Resolves with the exit code and signal, failing after 20 s. */
function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no exit within 20 s')), 20_000);
    child.once('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal });
    });
  });
}

test('SIGTERM right at the ready line, and during start-up: exit 0 and no tranproxy table left', {
  timeout: 120_000,
}, async () => {
  await withLab(async (lab) => {
    const host = lab.addHost('host');
    const rulesLeft = async () => (await host.run('nft', ['list', 'tables'])).stdout.includes('tranproxy');
    for (let i = 0; i < 6; i++) {
      const proxy = await startTranproxy(host, ['run', '--family', 'ipv4', '-P', '80', '-H', 'x-a: 1']);
      process.kill(proxy.pid, 'SIGTERM'); // at once: no grace for the handlers to appear
      assert.deepEqual(await exitOf(proxy.child), { code: 0, signal: null }, `run ${i}: ${proxy.output()}`);
      assert.equal(await rulesLeft(), false, `run ${i}: rules left`);
    }
    // During start-up (before our code runs Node's default ends it: nothing applied yet).
    for (const delayMs of [100, 200, 300, 400]) {
      const p = host.spawn(process.execPath, [tranproxyBin(), 'run', '--family', 'ipv4', '-P', '80']);
      await new Promise((r) => setTimeout(r, delayMs));
      process.kill(p.pid, 'SIGTERM');
      const e = await exitOf(p.child);
      assert.ok(
        e.code === 0 || e.signal === 'SIGTERM',
        `SIGTERM after ${delayMs} ms: ${JSON.stringify(e)} ${p.output()}`,
      );
      assert.equal(await rulesLeft(), false, `SIGTERM after ${delayMs} ms: rules left; ${p.output()}`);
    }
  });
});
