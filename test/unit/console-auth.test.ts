// Console auth: scrypt hashes, sessions with idle expiry and CSRF tokens, the login limiter,
// and the HTTP layer's cookie / CSRF / Origin / rate-limit behaviour on a loopback server.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { hashPassword, LoginLimiter, parsePasswordHash, safeEqual, SessionStore, verifyPassword } from '../../src/console/auth.js';
import { ConfigStore } from '../../src/console/apply.js';
import { originMatches, startConsoleServer } from '../../src/console/server.js';
import { parseRunOptions } from '../../src/config/run-config.js';
import type { SupervisorControl } from '../../src/proxy/supervisor.js';
import type { RunConfig } from '../../src/config/run-config.js';
import { createLogger } from '../../src/observe/log.js';

const FAST = { N: 1024, r: 8, p: 1 };

test('hash and verify: salted, parameters in the string, wrong password and malformed hash refused', async () => {
  const h1 = await hashPassword('correct horse', FAST);
  const h2 = await hashPassword('correct horse', FAST);
  assert.match(h1, /^scrypt\$1024\$8\$1\$[A-Za-z0-9_-]+\$[A-Za-z0-9_-]+$/);
  assert.notEqual(h1, h2, 'a fresh salt each time');
  assert.equal(await verifyPassword('correct horse', h1), true);
  assert.equal(await verifyPassword('correct horsf', h1), false);
  assert.equal(await verifyPassword('', h1), false);
  assert.equal(await verifyPassword('correct horse', 'plain-text'), false);
  assert.equal(await verifyPassword('x', 'scrypt$3$8$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA'), false, 'N must be a power of two');
  assert.equal(parsePasswordHash('scrypt$4194304$8$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA'), undefined, 'absurd cost refused');
  const real = await hashPassword('pw', { N: 1 << 15, r: 8, p: 1 });
  assert.equal(await verifyPassword('pw', real), true, 'the default parameters work (maxmem is enough)');
  await assert.rejects(hashPassword(''), /empty/);
});

test('safeEqual', () => {
  assert.equal(safeEqual('abc', 'abc'), true);
  assert.equal(safeEqual('abc', 'abd'), false);
  assert.equal(safeEqual('abc', 'abcd'), false);
});

test('sessions: random ids, idle expiry restarted by use, CSRF per session, destroy', () => {
  let now = 1_000_000;
  const store = new SessionStore(60_000, () => now);
  const a = store.create();
  const b = store.create();
  assert.equal(Buffer.from(a.id, 'base64url').length, 32);
  assert.notEqual(a.id, b.id);
  assert.notEqual(a.csrf, b.csrf);
  now += 50_000;
  assert.equal(store.get(a.id)?.id, a.id, 'still fresh; the clock restarts');
  now += 50_000;
  assert.equal(store.get(a.id)?.id, a.id, 'used 50 s ago: alive');
  assert.equal(store.get(b.id), undefined, 'idle 100 s: expired');
  assert.equal(store.checkCsrf(a, a.csrf), true);
  assert.equal(store.checkCsrf(a, b.csrf), false);
  assert.equal(store.checkCsrf(a, undefined), false);
  store.destroy(a.id);
  assert.equal(store.get(a.id), undefined);
  assert.equal(store.get(undefined), undefined);
});

test('login limiter: 5 failures a minute per address, then Retry-After; success resets', () => {
  let now = 0;
  const l = new LoginLimiter(5, 60_000, () => now);
  for (let i = 0; i < 5; i++) {
    assert.equal(l.retryAfter('10.0.0.1'), 0);
    l.fail('10.0.0.1');
    now += 1000;
  }
  assert.ok(l.retryAfter('10.0.0.1') > 0);
  assert.equal(l.retryAfter('10.0.0.2'), 0, 'other addresses unaffected');
  now = 61_000;
  assert.equal(l.retryAfter('10.0.0.1'), 0, 'the oldest failure left the window');
  l.fail('10.0.0.1');
  l.succeed('10.0.0.1');
  assert.equal(l.retryAfter('10.0.0.1'), 0);
});

test('originMatches', () => {
  assert.equal(originMatches(undefined, '127.0.0.1:8080'), true);
  assert.equal(originMatches('http://127.0.0.1:8080', '127.0.0.1:8080'), true);
  assert.equal(originMatches('http://evil.example', '127.0.0.1:8080'), false);
  assert.equal(originMatches('null', '127.0.0.1:8080'), false);
});

test('HTTP: 401 before login, cookie flags, CSRF and Origin checks, logout, 429 after repeated failures', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-console-auth-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'gw.yaml');
  writeFileSync(path, `# test\ncapture: prerouting\nconsole:\n  password-hash: ${await hashPassword('s3cret-pass', FAST)}\n`);
  let cfg: RunConfig = parseRunOptions({ capture: ['prerouting'], firewall: 'none' });
  let reloaded: (() => void) | undefined;
  const control: SupervisorControl = {
    config: () => cfg,
    apply: async (next) => {
      cfg = next;
    },
    connections: async () => [],
    metricSnapshots: async () => [],
    closeConnection: async () => false,
    flushDns: async () => 0,
    rulesInKernel: () => false,
    onApplied: (fn) => {
      reloaded = fn;
      return () => {};
    },
  };
  const store = new ConfigStore(path, (f) => parseRunOptions({ ...f.run, firewall: 'none' }, [], undefined, f), control);
  const server = await startConsoleServer({ listen: { host: '127.0.0.1', port: 0 }, store, control, log: createLogger('text', () => {}), uiDir: join(dir, 'no-ui') });
  t.after(() => server.close());
  const base = `http://${server.address}`;
  const req = (method: string, p: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(base + p, { method, headers: { 'content-type': 'application/json', ...headers }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });

  assert.equal((await req('GET', '/api/state')).status, 401);
  assert.deepEqual(await (await req('GET', '/api/session')).json(), { authenticated: false });
  const bad = await req('POST', '/api/login', { password: 'nope' });
  assert.equal(bad.status, 401);
  assert.ok(((await bad.json()) as { error: string }).error);

  const ok = await req('POST', '/api/login', { password: 's3cret-pass' });
  assert.equal(ok.status, 200);
  const { csrf } = (await ok.json()) as { csrf: string };
  const setCookie = ok.headers.get('set-cookie') ?? '';
  assert.match(setCookie, /^tpx_session=[A-Za-z0-9_-]{43}; /);
  assert.match(setCookie, /HttpOnly/);
  assert.match(setCookie, /SameSite=Strict/);
  assert.match(setCookie, /Path=\//);
  assert.doesNotMatch(setCookie, /Secure/);
  const cookie = setCookie.split(';')[0]!;

  const state = await req('GET', '/api/state', undefined, { cookie });
  assert.equal(state.status, 200);
  assert.equal(state.headers.get('cache-control'), 'no-store');
  assert.equal(state.headers.get('content-security-policy'), "default-src 'self'");
  assert.equal(state.headers.get('x-frame-options'), 'DENY');
  assert.deepEqual(await (await req('GET', '/api/session', undefined, { cookie })).json(), { authenticated: true, csrf });

  assert.equal((await req('PUT', '/api/settings', { enabled: false }, { cookie })).status, 403, 'no CSRF token');
  assert.equal((await req('PUT', '/api/settings', { enabled: false }, { cookie, 'x-csrf-token': 'x'.repeat(43) })).status, 403, 'wrong token');
  const cross = await req('PUT', '/api/settings', { enabled: false }, { cookie, 'x-csrf-token': csrf, origin: 'http://evil.example' });
  assert.equal(cross.status, 403, 'foreign Origin');
  const put = await req('PUT', '/api/settings', { enabled: false }, { cookie, 'x-csrf-token': csrf, origin: base });
  assert.equal(put.status, 200);
  assert.equal(((await put.json()) as { enabled: boolean }).enabled, false);

  // Server-Sent Events: connections and throughput every second, state after a change.
  const ac = new AbortController();
  const events = await fetch(`${base}/api/events`, { headers: { cookie }, signal: ac.signal });
  assert.equal(events.status, 200);
  assert.match(events.headers.get('content-type') ?? '', /^text\/event-stream/);
  const reader = events.body!.getReader();
  let seen = '';
  const waitFor = async (re: RegExp) => {
    const deadline = Date.now() + 5000;
    while (!re.test(seen)) {
      assert.ok(Date.now() < deadline, `no ${re} in ${seen}`);
      const { value, done } = await reader.read();
      if (done) break;
      seen += Buffer.from(value).toString('utf8');
    }
  };
  await waitFor(/event: connections\ndata: \[\]\n\n/);
  await waitFor(/event: throughput\ndata: \{"t":\d+,"up":0,"down":0\}\n\n/);
  await req('PUT', '/api/settings', { enabled: true }, { cookie, 'x-csrf-token': csrf });
  await waitFor(/event: state\ndata: \{"enabled":true,/);
  seen = '';
  reloaded!(); // a SIGHUP reload: the page hears about it too
  await waitFor(/event: state\ndata: \{"enabled":true,/);
  ac.abort();
  await reader.cancel().catch(() => {});

  const ui = await req('GET', '/');
  assert.equal(ui.status, 503);
  assert.match(await ui.text(), /not built/);

  assert.equal((await req('POST', '/api/logout', {}, { cookie, 'x-csrf-token': csrf })).status, 200);
  assert.equal((await req('GET', '/api/state', undefined, { cookie })).status, 401, 'session gone after logout');

  for (let i = 0; i < 5; i++) assert.equal((await req('POST', '/api/login', { password: `bad${i}` })).status, 401);
  const limited = await req('POST', '/api/login', { password: 's3cret-pass' });
  assert.equal(limited.status, 429, 'five failures in a minute: even the right password waits');
  assert.ok(Number(limited.headers.get('retry-after')) > 0);
});
