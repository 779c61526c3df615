import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readAdminToken, startAdminServer, type AdminServer } from '../../src/observe/admin.js';
import { createLogger } from '../../src/observe/log.js';
import { UsageError } from '../../src/errors.js';
import { until } from '../helpers/wait.js';

/** One request with exactly these headers (fetch would not let a test set Host). */
function raw(base: string, method: string, path: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method, headers, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

const TOKEN = 'b3f1c2d4e5a6978812345678deadbeef';

async function withAdmin(
  tokenFile: string | undefined,
  fn: (base: string, quits: () => number, logged: string[]) => Promise<void>,
): Promise<void> {
  let quits = 0;
  const logged: string[] = [];
  const admin: AdminServer = await startAdminServer(
    { host: '127.0.0.1', port: 0, ...(tokenFile ? { tokenFile } : {}) },
    {
      ready: () => true,
      metrics: async () => ({ contentType: 'text/plain', body: 'm 1\n' }),
      connections: async () => [{ id: 1 }],
      closeConnection: async (worker, id) => worker === 7 && id === 1,
      quit: () => void quits++,
    },
    createLogger('text', (line) => void logged.push(line)),
  );
  try {
    await fn(`http://${admin.address}`, () => quits, logged);
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
      assert.equal(
        (
          await fetch(`${base}/quitquitquit`, {
            method: 'POST',
            headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}` },
          })
        ).status,
        401,
      );
      assert.equal(quits(), 0, 'no unauthorized request stopped the proxy');
      assert.equal(
        (await fetch(`${base}/quitquitquit`, { method: 'POST', headers: { authorization: `bearer ${TOKEN}` } })).status,
        200,
      );
      assert.equal(quits(), 1);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without a token: POST /quitquitquit needs X-Tranproxy (a no-cors page cannot send it); refusals are logged', async () => {
  await withAdmin(undefined, async (base, quits, logged) => {
    assert.equal((await fetch(`${base}/connections`)).status, 200);
    assert.equal((await fetch(`${base}/quitquitquit`)).status, 405);
    // What fetch(url, {method: 'POST', mode: 'no-cors'}) from a page sends: no custom header.
    assert.equal(await raw(base, 'POST', '/quitquitquit', { 'content-type': 'text/plain' }), 403);
    assert.equal(quits(), 0, 'a simple cross-site POST does not stop the proxy');
    assert.match(
      logged.join('\n'),
      /admin: refused request.*status=403.*missing X-Tranproxy header.*path=\/quitquitquit/,
    );
    assert.equal(
      (await fetch(`${base}/quitquitquit`, { method: 'POST', headers: { 'x-tranproxy': '1' } })).status,
      200,
    );
    assert.equal(quits(), 1);
    assert.match(logged.join('\n'), /POST \/quitquitquit: shutting down/);
  });
});

test('Host must name the listener (DNS rebinding) and a present Origin must match it, on every endpoint', async () => {
  await withAdmin(undefined, async (base, quits, logged) => {
    const port = new URL(base).port;
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'localhost', '127.0.0.1'])
      assert.equal(await raw(base, 'GET', '/metrics', { host }), 200, host);
    for (const path of ['/healthz', '/metrics', '/connections'])
      assert.equal(await raw(base, 'GET', path, { host: `rebind.attacker.example:${port}` }), 421, path);
    assert.equal(
      await raw(base, 'POST', '/quitquitquit', { host: `rebind.attacker.example:${port}`, 'x-tranproxy': '1' }),
      421,
    );
    assert.equal(
      await raw(base, 'GET', '/healthz', { host: `127.0.0.2:${port}` }),
      421,
      'another loopback address is not this listener',
    );
    assert.equal(await raw(base, 'POST', '/quitquitquit', { origin: 'http://evil.example', 'x-tranproxy': '1' }), 403);
    assert.equal(await raw(base, 'POST', '/quitquitquit', { origin: 'null', 'x-tranproxy': '1' }), 403);
    assert.equal(quits(), 0);
    assert.match(logged.join('\n'), /status=421 reason="Host is not this listener/);
    assert.equal(await raw(base, 'POST', '/quitquitquit', { origin: base, 'x-tranproxy': '1' }), 200);
  });
});

test('connection cap: connections beyond 64 are closed on accept, the probes answer once the flood ends', async () => {
  await withAdmin(undefined, async (base) => {
    const { port } = new URL(base);
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < 64; i++) {
        const s = net.connect(Number(port), '127.0.0.1');
        await new Promise((r) => s.once('connect', r));
        s.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n'); // dribbled, never finished
        held.push(s);
      }
      const extra = net.connect(Number(port), '127.0.0.1');
      const closed = await new Promise<boolean>((r) => {
        extra.once('close', () => r(true));
        extra.once('data', () => r(false));
        extra.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      });
      assert.ok(closed, 'the 65th connection is closed without an answer');
    } finally {
      for (const s of held) s.destroy();
    }
    // Once the server has seen the 64 close, a new connection is served again.
    await until(
      '/healthz to answer 200 again',
      async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.status === 200,
      5000,
    );
  });
});

test('token files others can read or write, empty ones and missing ones are refused with the fix', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-admin-'));
  try {
    assert.equal(readAdminToken(tokenFile(dir, ` ${TOKEN} \n`)), TOKEN);
    assert.equal(readAdminToken(tokenFile(dir, TOKEN, 0o640)), TOKEN, "group-readable is the operator's choice");
    assert.throws(
      () => readAdminToken(tokenFile(dir, TOKEN, 0o644)),
      (e: Error) =>
        e instanceof UsageError &&
        /mode 0644 lets other users read or change the token: run 'chmod 600/.test(e.message),
    );
    assert.throws(() => readAdminToken(tokenFile(dir, TOKEN, 0o620)), /chmod 600/);
    assert.throws(() => readAdminToken(tokenFile(dir, '\n', 0o400)), /expected one token/);
    assert.throws(() => readAdminToken(join(dir, 'nope')), /cannot read it: ENOENT/);
    assert.throws(
      () =>
        startAdminServer(
          { host: '127.0.0.1', port: 0, tokenFile: join(dir, 'nope') },
          {
            ready: () => true,
            metrics: async () => ({ contentType: '', body: '' }),
            connections: async () => [],
            quit: () => {},
          },
        ),
      UsageError,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('DELETE /connections/WORKER-ID closes one flow: the token when there is one, else the intent header', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-admin-'));
  try {
    await withAdmin(tokenFile(dir, `${TOKEN}\n`), async (base) => {
      assert.equal(await raw(base, 'DELETE', '/connections/7-1'), 401);
      assert.equal(await raw(base, 'DELETE', '/connections/7-1', { 'x-tranproxy': '1' }), 401);
      assert.equal(await raw(base, 'DELETE', '/connections/7-1', { authorization: `Bearer ${TOKEN}` }), 200);
      assert.equal(await raw(base, 'DELETE', '/connections/7-2', { authorization: `Bearer ${TOKEN}` }), 404);
      assert.equal(await raw(base, 'GET', '/connections/7-1', { authorization: `Bearer ${TOKEN}` }), 405);
    });
    await withAdmin(undefined, async (base) => {
      assert.equal(await raw(base, 'DELETE', '/connections/7-1'), 403);
      assert.equal(await raw(base, 'DELETE', '/connections/7-1', { 'x-tranproxy': '1' }), 200);
      assert.equal(await raw(base, 'DELETE', '/connections/x', { 'x-tranproxy': '1' }), 404);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
