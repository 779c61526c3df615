import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readAdminToken, startAdminServer, type AdminServer } from '../../src/observe/admin.js';
import { UsageError } from '../../src/errors.js';

const TOKEN = 'b3f1c2d4e5a6978812345678deadbeef';

async function withAdmin(tokenFile: string | undefined, fn: (base: string, quits: () => number) => Promise<void>): Promise<void> {
  let quits = 0;
  const admin: AdminServer = await startAdminServer(
    { host: '127.0.0.1', port: 0, ...(tokenFile ? { tokenFile } : {}) },
    { ready: () => true, metrics: async () => ({ contentType: 'text/plain', body: 'm 1\n' }), connections: async () => [{ id: 1 }], quit: () => void quits++ },
  );
  try {
    await fn(`http://${admin.address}`, () => quits);
  } finally {
    await admin.close();
  }
}

function tokenFile(dir: string, text: string, mode = 0o600): string {
  const f = join(dir, `token-${mode.toString(8)}`);
  writeFileSync(f, text);
  chmodSync(f, mode);
  return f;
}

test('with a token: /connections and POST /quitquitquit need the bearer token; probes and /metrics stay open', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-admin-'));
  try {
    await withAdmin(tokenFile(dir, `${TOKEN}\n`), async (base, quits) => {
      for (const p of ['/healthz', '/readyz', '/metrics']) assert.equal((await fetch(base + p)).status, 200, p);
      const none = await fetch(`${base}/connections`);
      assert.equal(none.status, 401);
      assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="tranproxy"');
      assert.equal((await fetch(`${base}/connections`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
      assert.equal((await fetch(`${base}/connections`, { headers: { authorization: `Basic ${TOKEN}` } })).status, 401);
      const ok = await fetch(`${base}/connections`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(ok.status, 200);
      assert.deepEqual(await ok.json(), [{ id: 1 }]);
      assert.equal((await fetch(`${base}/quitquitquit`, { method: 'POST' })).status, 401);
      assert.equal((await fetch(`${base}/quitquitquit`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}` } })).status, 401);
      assert.equal(quits(), 0, 'no unauthorized request stopped the proxy');
      assert.equal((await fetch(`${base}/quitquitquit`, { method: 'POST', headers: { authorization: `bearer ${TOKEN}` } })).status, 200);
      assert.equal(quits(), 1);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without a token everything answers as before (loopback is the protection)', async () => {
  await withAdmin(undefined, async (base, quits) => {
    assert.equal((await fetch(`${base}/connections`)).status, 200);
    assert.equal((await fetch(`${base}/quitquitquit`)).status, 405);
    assert.equal((await fetch(`${base}/quitquitquit`, { method: 'POST' })).status, 200);
    assert.equal(quits(), 1);
  });
});

test('token files others can read or write, empty ones and missing ones are refused with the fix', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-admin-'));
  try {
    assert.equal(readAdminToken(tokenFile(dir, ` ${TOKEN} \n`)), TOKEN);
    assert.equal(readAdminToken(tokenFile(dir, TOKEN, 0o640)), TOKEN, 'group-readable is the operator\'s choice');
    assert.throws(() => readAdminToken(tokenFile(dir, TOKEN, 0o644)), (e: Error) => e instanceof UsageError && /mode 0644 lets other users read or change the token: run 'chmod 600/.test(e.message));
    assert.throws(() => readAdminToken(tokenFile(dir, TOKEN, 0o620)), /chmod 600/);
    assert.throws(() => readAdminToken(tokenFile(dir, '\n', 0o400)), /expected one token/);
    assert.throws(() => readAdminToken(join(dir, 'nope')), /cannot read it: ENOENT/);
    assert.throws(() => startAdminServer({ host: '127.0.0.1', port: 0, tokenFile: join(dir, 'nope') }, { ready: () => true, metrics: async () => ({ contentType: '', body: '' }), connections: async () => [], quit: () => {} }), UsageError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
