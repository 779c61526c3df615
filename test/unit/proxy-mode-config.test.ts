// Proxy mode settings: --listen-proxy / --proxy-auth / --proxy-auth-file and the same keys in
// the config file, with the errors a user meets.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseConfigText } from '../../src/config/file.js';
import { configSecrets } from '../../src/config/file-permissions.js';
import { ownPortsOf } from '../../src/config/own-traffic.js';
import { parseRunOptions, runConfigOf, type HostFacts } from '../../src/config/run-config.js';
import { capturePlanOf } from '../../src/config/capture-plan.js';
import { UsageError } from '../../src/errors.js';

const FACTS: HostFacts = {
  podAddress: () => '10.1.2.3',
  hostname: () => 'gw1',
  resolvConf: () =>
    ({ nameservers: ['127.0.0.53'], search: [], ndots: 1 }) as unknown as ReturnType<HostFacts['resolvConf']>,
};

const run = (raw: Parameters<typeof parseRunOptions>[0]) => parseRunOptions(raw, [], FACTS);

test('--listen-proxy: repeatable ADDRESS:PORT, off by default; its port is one of our own', () => {
  assert.equal(run({}).proxyMode, undefined);
  const cfg = run({ listenProxy: ['192.168.1.1:7890', '[::]:7891'], capture: ['inbound'], mode: 'redirect' });
  assert.deepEqual(cfg.proxyMode, {
    listen: [
      { host: '192.168.1.1', port: 7890 },
      { host: '::', port: 7891 },
    ],
  });
  assert.ok(ownPortsOf(cfg).includes(7890) && ownPortsOf(cfg).includes(7891));
  // Inbound capture never takes the proxy ports.
  const excluded = capturePlanOf(cfg).excludeInboundPorts ?? [];
  assert.ok(excluded.some((r) => r.from === 7890));
  for (const bad of ['7890', 'host', '1.2.3.4:0', '1.2.3.4:70000'])
    assert.throws(() => run({ listenProxy: [bad] }), UsageError, bad);
});

test('--proxy-auth USER:PASS (the password may contain colons); needs --listen-proxy', () => {
  const cfg = run({ listenProxy: ['10.0.0.1:1080'], proxyAuth: 'alice:s3:cret' });
  assert.deepEqual(cfg.proxyMode?.auth, { username: 'alice', password: 's3:cret' });
  assert.throws(() => run({ proxyAuth: 'a:b' }), /--proxy-auth needs --listen-proxy/);
  assert.throws(() => run({ listenProxy: ['10.0.0.1:1080'], proxyAuth: ':pw' }), /USER:PASS/);
  assert.throws(() => run({ listenProxy: ['10.0.0.1:1080'], proxyAuth: `a:${'x'.repeat(256)}` }), /255 bytes/);
});

test('--proxy-auth-file: one USER:PASS line from a file others cannot read', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-pauth-'));
  try {
    const f = join(dir, 'auth');
    writeFileSync(f, 'bob:pw\n', { mode: 0o600 });
    assert.deepEqual(run({ listenProxy: ['10.0.0.1:1080'], proxyAuthFile: f }).proxyMode?.auth, {
      username: 'bob',
      password: 'pw',
    });
    chmodSync(f, 0o644);
    assert.throws(() => run({ listenProxy: ['10.0.0.1:1080'], proxyAuthFile: f }), /chmod 600/);
    assert.throws(() => run({ listenProxy: ['10.0.0.1:1080'], proxyAuth: 'a:b', proxyAuthFile: f }), /one of them/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('config file: listen-proxy (one or a list) and proxy-auth', () => {
  const file = parseConfigText('listen-proxy: 10.0.0.1:7890\nproxy-auth: "u:p"\n', 'tranproxy.yaml');
  assert.deepEqual(file.run.listenProxy, ['10.0.0.1:7890']);
  const cfg = runConfigOf(file.run, [], FACTS, file);
  assert.deepEqual(cfg.proxyMode, {
    listen: [{ host: '10.0.0.1', port: 7890 }],
    auth: { username: 'u', password: 'p' },
  });
  assert.ok(configSecrets(file).includes('proxy-auth'), 'a world-readable file with it gets the secrets warning');
  const list = parseConfigText('listen-proxy: ["10.0.0.1:7890", "10.0.0.1:7891"]\n', 'tranproxy.yaml');
  assert.equal(list.run.listenProxy?.length, 2);
});
