// Console auth: scrypt hashes, sessions with idle expiry and CSRF tokens, the login limiter,
// and the HTTP layer's cookie / CSRF / Origin / rate-limit behaviour on a loopback server.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  hashPassword,
  LOGIN_LIMITS,
  LoginLimiter,
  parsePasswordHash,
  prefixOf,
  safeEqual,
  SessionStore,
  verifyPassword,
} from '../../src/console/auth.js';
import { ConfigStore } from '../../src/console/apply.js';
import { originMatches, startConsoleServer } from '../../src/console/server.js';
import { parseRunOptions, runConfigOf } from '../../src/config/run-config.js';
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
  assert.equal(
    await verifyPassword('x', 'scrypt$3$8$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA'),
    false,
    'N must be a power of two',
  );
  assert.equal(
    parsePasswordHash('scrypt$4194304$8$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA'),
    undefined,
    'absurd cost refused',
  );
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

test('login limiter: 5 failures a minute per address, then Retry-After; success resets the address', () => {
  let now = 0;
  const l = new LoginLimiter(LOGIN_LIMITS, () => now);
  for (let i = 0; i < 5; i++) {
    assert.equal(l.retryAfter('10.0.0.1'), 0);
    l.fail('10.0.0.1');
    now += 1000;
  }
  assert.ok(l.retryAfter('10.0.0.1') > 0);
  assert.ok(l.retryAfter('::ffff:10.0.0.1') > 0, 'the IPv4-mapped form is the same client');
  assert.equal(l.retryAfter('10.0.0.2'), 0, 'other addresses unaffected');
  now = 61_000;
  assert.equal(l.retryAfter('10.0.0.1'), 0, 'the oldest failure left the window');
  l.fail('10.0.0.1');
  l.succeed('10.0.0.1');
  assert.equal(l.retryAfter('10.0.0.1'), 0);
});

test('login limiter: 40 guesses from 40 addresses of one IPv6 /64 or IPv4 /24 are cut off at 20; all remote clients together at 100', () => {
  let now = 0;
  const l = new LoginLimiter(LOGIN_LIMITS, () => now);
  const refused = (addrs: string[]) =>
    addrs.filter((a) => {
      if (l.retryAfter(a) > 0) return true;
      l.fail(a);
      return false;
    }).length;
  assert.equal(refused(Array.from({ length: 40 }, (_, i) => `2001:db8:1:2::${(i + 1).toString(16)}`)), 20);
  assert.ok(l.retryAfter('2001:db8:1:2:ffff:1:2:3') > 0, 'anywhere in the /64');
  assert.equal(l.retryAfter('2001:db8:1:3::1'), 0, 'the next /64 is another client');
  assert.equal(refused(Array.from({ length: 40 }, (_, i) => `198.51.100.${i + 1}`)), 20);
  assert.equal(
    refused(Array.from({ length: 100 }, (_, i) => `203.0.${i}.1`)),
    40,
    '100 remote failures a minute in all, spread over networks',
  );
  assert.equal(prefixOf('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(prefixOf('::ffff:192.0.2.7'), '192.0.2.0/24');
  now = 61_000;
  assert.equal(l.retryAfter('203.0.200.1'), 0, 'the window passes');
});

test('login limiter: loopback (all of 127/8 and ::1) is one client, slowed with backoff but never refused', () => {
  const now = 0;
  const l = new LoginLimiter(LOGIN_LIMITS, () => now);
  const delays: number[] = [];
  for (let i = 0; i < 40; i++) {
    const addr = i % 2 ? `127.0.${i}.${i + 1}` : '::1';
    const gate = l.check(addr);
    assert.equal(gate.retryAfter, 0, 'loopback is never refused');
    delays.push(gate.delayMs);
    l.fail(addr);
  }
  assert.deepEqual(delays.slice(0, 10), [0, 0, 0, 0, 0, 1000, 2000, 4000, 8000, 16000]);
  assert.equal(Math.max(...delays), 30_000);
  l.succeed('127.0.0.1');
  assert.equal(l.check('127.0.0.1').delayMs, 30_000, 'a success does not reset the shared loopback count');
  assert.equal(l.retryAfter('192.0.2.1'), 0, 'loopback failures do not count against remote clients');
});

test('originMatches', () => {
  assert.equal(originMatches(undefined, '127.0.0.1:8080'), true);
  assert.equal(originMatches('http://127.0.0.1:8080', '127.0.0.1:8080'), true);
  assert.equal(originMatches('http://evil.example', '127.0.0.1:8080'), false);
  assert.equal(originMatches('null', '127.0.0.1:8080'), false);
});

async function consoleServer(
  t: { after(fn: () => void): void },
  limiter?: LoginLimiter,
): Promise<{ base: string; logged: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-console-auth-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'gw.yaml');
  writeFileSync(path, `capture: prerouting\nconsole:\n  password-hash: ${await hashPassword('s3cret-pass', FAST)}\n`);
  const cfg: RunConfig = parseRunOptions({ capture: ['prerouting'], firewall: 'none' });
  const control = {
    config: () => cfg,
    rulesInKernel: () => false,
    onApplied: () => () => {},
  } as unknown as SupervisorControl;
  const store = new ConfigStore(path, (f) => runConfigOf({ ...f.run, firewall: 'none' }, [], undefined, f), control);
  const logged: string[] = [];
  const log = createLogger('text', (line) => void logged.push(line));
  const server = await startConsoleServer({
    listen: { host: '127.0.0.1', port: 0 },
    store,
    control,
    log,
    uiDir: join(dir, 'no-ui'),
    ...(limiter ? { limiter } : {}),
  });
  t.after(() => server.close());
  return { base: `http://${server.address}`, logged };
}

/** A request from a chosen local address with exactly these headers. */
function raw(
  base: string,
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: string; from?: string } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${base}${path}`,
      {
        method,
        headers: { 'content-type': 'application/json', ...opts.headers },
        agent: false,
        ...(opts.from ? { localAddress: opts.from } : {}),
      },
      (res) => {
        let body = '';
        res
          .setEncoding('utf8')
          .on('data', (d: string) => (body += d))
          .on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

test('HTTP: failed logins from 40 addresses in 127/8 are slowed, not refused, and the right password from 127.0.0.1 still works', async (t) => {
  const limiter = new LoginLimiter({ ...LOGIN_LIMITS, loopbackDelayMs: 40, loopbackMaxDelayMs: 160 });
  const { base, logged } = await consoleServer(t, limiter);
  const t0 = Date.now();
  for (let i = 0; i < 40; i++) {
    const r = await raw(base, 'POST', '/api/login', {
      body: JSON.stringify({ password: `guess${i}` }),
      from: `127.0.${i}.${i + 2}`,
    });
    assert.equal(r.status, 401, `guess ${i}`);
  }
  // Guesses 6..40 waited 40, 80, 160, 160… ms: 5.2 s in all, on top of the checks themselves.
  assert.ok(Date.now() - t0 >= 40 + 80 + 32 * 160, `guesses were not slowed (${Date.now() - t0} ms)`);
  const ok = await raw(base, 'POST', '/api/login', {
    body: JSON.stringify({ password: 's3cret-pass' }),
    from: '127.0.0.1',
  });
  assert.equal(ok.status, 200, 'the admin on loopback is never locked out');
  assert.match(logged.join('\n'), /console: failed login.*from=127\.0\.39\.41/);
});

test('HTTP: Host must be the console (DNS rebinding), Origin must match on every request, login bodies over 8 KiB refused; refusals logged', async (t) => {
  const { base, logged } = await consoleServer(t);
  const port = new URL(base).port;
  for (const path of ['/', '/api/session', '/api/login']) {
    const r = await raw(base, path === '/api/login' ? 'POST' : 'GET', path, {
      headers: { host: `rebind.attacker.example:${port}` },
      body: '{"password":"x"}',
    });
    assert.equal(r.status, 421, path);
  }
  assert.equal((await raw(base, 'GET', '/api/session', { headers: { host: `localhost:${port}` } })).status, 200);
  assert.equal((await raw(base, 'GET', '/api/session', { headers: { host: `127.0.0.1:${port}` } })).status, 200);
  assert.equal(
    (await raw(base, 'GET', '/api/session', { headers: { origin: 'http://evil.example' } })).status,
    403,
    'a cross-site GET too',
  );
  assert.equal(
    (
      await raw(base, 'POST', '/api/login', {
        headers: { origin: 'http://evil.example' },
        body: '{"password":"s3cret-pass"}',
      })
    ).status,
    403,
  );
  const big = await raw(base, 'POST', '/api/login', { body: JSON.stringify({ password: 'x'.repeat(9000) }) });
  assert.equal(big.status, 413);
  assert.match(logged.join('\n'), /console: refused request.*status=421.*host=rebind\.attacker\.example/);
  assert.match(logged.join('\n'), /console: refused request.*status=403.*origin=http:\/\/evil\.example/);
});

test('HTTP: 401 before login, cookie flags, CSRF and Origin checks, logout', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-console-auth-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'gw.yaml');
  writeFileSync(
    path,
    `# test\ncapture: prerouting\nconsole:\n  password-hash: ${await hashPassword('s3cret-pass', FAST)}\n`,
  );
  let cfg: RunConfig = parseRunOptions({ capture: ['prerouting'], firewall: 'none' });
  let reloaded: (() => void) | undefined;
  const control: SupervisorControl = {
    config: () => cfg,
    apply: async (next) => {
      cfg = next;
    },
    connections: async () => [],
    live: async () => ({
      t: Date.now(),
      flows: [],
      rate: { up: 0, down: 0 },
      totals: { up: 0, down: 0 },
      byNode: {},
      closed: [],
    }),
    metricSnapshots: async () => [],
    closeConnection: async () => false,
    flushDns: async () => 0,
    rulesInKernel: () => false,
    onApplied: (fn) => {
      reloaded = fn;
      return () => {};
    },
  };
  const store = new ConfigStore(path, (f) => runConfigOf({ ...f.run, firewall: 'none' }, [], undefined, f), control);
  const server = await startConsoleServer({
    listen: { host: '127.0.0.1', port: 0 },
    store,
    control,
    log: createLogger('text', () => {}),
    uiDir: join(dir, 'no-ui'),
  });
  t.after(() => server.close());
  const base = `http://${server.address}`;
  const req = (method: string, p: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(base + p, {
      method,
      headers: { 'content-type': 'application/json', ...headers },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });

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
  assert.deepEqual(await (await req('GET', '/api/session', undefined, { cookie })).json(), {
    authenticated: true,
    csrf,
  });

  assert.equal((await req('PUT', '/api/settings', { enabled: false }, { cookie })).status, 403, 'no CSRF token');
  assert.equal(
    (await req('PUT', '/api/settings', { enabled: false }, { cookie, 'x-csrf-token': 'x'.repeat(43) })).status,
    403,
    'wrong token',
  );
  const cross = await req(
    'PUT',
    '/api/settings',
    { enabled: false },
    { cookie, 'x-csrf-token': csrf, origin: 'http://evil.example' },
  );
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
  await waitFor(/event: traffic\ndata: \{"totals":\{"up":0,"down":0\},"byNode":\{\}\}\n\n/);
  await waitFor(/event: closed\ndata: \[\]\n\n/);
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
});
