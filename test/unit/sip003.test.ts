// SIP003 plugin host: the plugin gets ss-local's environment, is restarted with growing
// backoff when it dies, and a missing binary is reported with the package to install.
// The "plugin" here is a small script standing in for obfs-local (found first on PATH).
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  missingPlugins,
  onPluginEvent,
  pluginHostFor,
  stopIdlePluginsAfter,
  type PluginEvent,
} from '../../src/outbound/sip003.js';
import { OutboundError } from '../../src/outbound/types.js';
import { parseNodeUri, type ShadowsocksNodeSpec } from '../../src/outbound/uri.js';

type PluginSpec = ShadowsocksNodeSpec & { plugin: NonNullable<ShadowsocksNodeSpec['plugin']> };
const link = (port: number, plugin: string) =>
  `ss://${Buffer.from('aes-128-gcm:pw').toString('base64url')}@192.0.2.7:${port}/?plugin=${encodeURIComponent(plugin)}#n`;

function withPath<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const old = process.env.PATH;
  process.env.PATH = path;
  return fn().finally(() => (process.env.PATH = old));
}

test('the plugin runs with the SS_* environment, and is restarted with backoff when it dies', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-sip003-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'env.log');
  writeFileSync(
    join(dir, 'obfs-local'),
    `#!/bin/sh\necho "$SS_REMOTE_HOST $SS_REMOTE_PORT $SS_LOCAL_HOST $SS_LOCAL_PORT $SS_PLUGIN_OPTIONS" >> ${out}\nexit 3\n`,
  );
  chmodSync(join(dir, 'obfs-local'), 0o755);
  const events: PluginEvent[] = [];
  const off = onPluginEvent((e) => events.push(e));
  t.after(off);
  const host = pluginHostFor(parseNodeUri(link(8441, 'obfs-local;obfs=http;obfs-host=www.example.com')) as PluginSpec);
  t.after(() => host.stop());
  const exits = () => events.filter((e) => e.type === 'exited') as Extract<PluginEvent, { type: 'exited' }>[];
  const port = await withPath(`${dir}:/usr/bin:/bin`, async () => {
    const p = await host.localPort();
    for (let i = 0; i < 100 && exits().length < 3; i++) await new Promise((r) => setTimeout(r, 50));
    host.stop();
    return p;
  });
  assert.deepEqual(
    exits()
      .slice(0, 3)
      .map((e) => [e.code, e.restartInMs]),
    [
      [3, 250],
      [3, 500],
      [3, 1000],
    ],
    'backoff doubles',
  );
  assert.ok(events.filter((e) => e.type === 'started').length >= 3, 'restarted after each exit');
  const lines = readFileSync(out, 'utf8').trim().split('\n');
  assert.equal(lines[0], `192.0.2.7 8441 127.0.0.1 ${port} obfs=http;obfs-host=www.example.com`);
});

test('a missing plugin binary is named with its Debian package, at start-up and on connect', async () => {
  const nodes = {
    a: { uri: link(8442, 'v2ray-plugin;mode=websocket') },
    b: { uri: link(8443, 'obfs-local') },
    c: { uri: 'socks5://192.0.2.1:1080' },
  };
  await withPath('/nonexistent', async () => {
    const specs = Object.fromEntries(Object.entries(nodes).map(([n, { uri }]) => [n, { spec: parseNodeUri(uri, n) }]));
    assert.deepEqual(missingPlugins(specs), [
      "node 'a': SIP003 plugin 'v2ray-plugin' is not installed: apt-get install shadowsocks-v2ray-plugin",
      "node 'b': SIP003 plugin 'obfs-local' is not installed: apt-get install simple-obfs",
    ]);
    const host = pluginHostFor(parseNodeUri(nodes.a.uri) as PluginSpec);
    await assert.rejects(
      host.localPort(),
      (e: unknown) =>
        e instanceof OutboundError &&
        e.code === 'EPLUGIN' &&
        /not installed: apt-get install shadowsocks-v2ray-plugin/.test(e.message),
    );
    host.stop();
  });
});

test('where plugins only serve node tests (the supervisor), an unused one is stopped', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-sip003-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'obfs-local'), '#!/bin/sh\nexec sleep 30\n');
  chmodSync(join(dir, 'obfs-local'), 0o755);
  const spec = parseNodeUri(link(8444, 'obfs-local;obfs=tls')) as PluginSpec;
  const host = pluginHostFor(spec);
  t.after(() => host.stop());
  await withPath(`${dir}:/usr/bin:/bin`, () => host.localPort());
  const pid = host.pid!;
  assert.ok(pid > 0);
  stopIdlePluginsAfter(1000);
  const gone = () => {
    try {
      process.kill(pid, 0);
      return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return true;
    }
  };
  for (let i = 0; i < 60 && !gone(); i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(gone(), 'the idle plugin was stopped');
  assert.notEqual(pluginHostFor(spec), host, 'the next use starts a fresh one');
});
