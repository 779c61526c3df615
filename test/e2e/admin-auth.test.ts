// Issue 8: `tranproxy run --admin --admin-token-file FILE`: probes and metrics open (the
// Kubernetes readiness probe keeps working), /connections and POST /quitquitquit only with
// the bearer token.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTranproxy, tranproxyBin, withLab, type Host } from '../helpers/lab.js';

const TOKEN = 'e2e-7f3a9c1b5d2e4f60';

async function status(h: Host, path: string, extra: string[] = []): Promise<string> {
  const r = await h.run(
    'curl',
    ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10', ...extra, `http://127.0.0.1:15000${path}`],
    { allowFailure: true },
  );
  return r.stdout;
}

test('admin token: 401 without it on /connections and POST /quitquitquit, 200 with it; /healthz /readyz /metrics open', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-admin-'));
  try {
    const file = join(dir, 'admin.token');
    writeFileSync(file, `${TOKEN}\n`);
    chmodSync(file, 0o600);
    await withLab(async (lab) => {
      const h = lab.addHost('h');
      const usage = await h.run(process.execPath, [tranproxyBin(), 'run', '-P', '80', '--admin-token-file', file], {
        allowFailure: true,
      });
      assert.equal(usage.status, 2);
      assert.match(usage.stderr, /--admin-token-file needs --admin/);

      const proxy = await startTranproxy(h, [
        'run',
        '-P',
        '80',
        '--family',
        'ipv4',
        '--admin',
        '--admin-token-file',
        file,
      ]);
      for (const p of ['/healthz', '/readyz', '/metrics']) assert.equal(await status(h, p), '200', p);
      assert.equal(await status(h, '/connections'), '401');
      assert.equal(await status(h, '/connections', ['-H', 'Authorization: Bearer nope']), '401');
      assert.equal(await status(h, '/connections', ['-H', `Authorization: Bearer ${TOKEN}`]), '200');
      assert.equal(await status(h, '/quitquitquit', ['-X', 'POST']), '401');
      assert.equal(await status(h, '/readyz'), '200', 'still running after the refused quit');
      assert.equal(await status(h, '/quitquitquit', ['-X', 'POST', '-H', `Authorization: Bearer ${TOKEN}`]), '200');
      await proxy.waitForOutput(/x^/, 10_000).catch(() => {}); // exits: waitForOutput rejects at exit
      assert.notEqual(proxy.child.exitCode ?? proxy.child.signalCode, null, 'the authorized quit stopped the proxy');
      assert.equal(proxy.child.exitCode, 0);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
