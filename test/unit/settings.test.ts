// The settings table (config/settings.ts): every setting once, flags and file keys generated
// from it, a flag and a file value giving the same typed value, rules compiled once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command, Option } from 'commander';
import { ConfigError, parseConfigText } from '../../src/config/file.js';
import { FIXED_ON_RELOAD, parseRunOptions, runConfigOf, type HostFacts } from '../../src/config/run-config.js';
import { routersOf } from '../../src/config/routing.js';
import {
  addSettingOptions,
  commandSettings,
  defaultOf,
  flagSettings,
  RUN_SETTINGS,
  type SettingKey,
} from '../../src/config/settings.js';
import { NODE_SCHEMES, parseNodeUri } from '../../src/outbound/uri.js';
import { compileCount } from '../../src/route/router.js';
import { UsageError } from '../../src/errors.js';

const FACTS: HostFacts = {
  podAddress: () => '10.1.2.3',
  hostname: () => 'pod-a',
  resolvConf: () => ({ nameservers: ['127.0.0.53'], search: [], ndots: 1 }),
};
const KEYS = Object.keys(RUN_SETTINGS) as SettingKey[];
type Entry = { flag?: string; file?: string; default?: string; parse?: unknown; list: boolean };
const entry = (k: SettingKey): Entry => RUN_SETTINGS[k] as Entry;

/** For every setting with a flag and a file key: one value as YAML would write it. */
const EXAMPLES: Partial<Record<SettingKey, string | string[] | boolean>> = {
  mode: 'tproxy',
  capture: ['prerouting', 'inbound'],
  inboundPort: ['8080', '9000-9100'],
  excludeInboundPort: ['22'],
  family: 'ipv4',
  listenPort: '15006',
  port: ['80', '8000-8100'],
  excludePort: ['25'],
  includeCidr: ['10.0.0.0/8', 'fd00::/8'],
  excludeCidr: ['192.168.0.0/16'],
  sourceCidr: ['10.9.0.0/24'],
  inInterface: ['veth0', 'eth1'],
  udp: true,
  oneProcess: true,
  bypassPrivate: false,
  proxyUser: '1000:1001',
  excludeUid: ['0', '33'],
  excludeGid: ['4'],
  firewall: 'nft',
  bypassMark: '0x2/0x2',
  tproxyMark: '0x10/0xf0',
  tproxyTable: '100',
  tproxyRulePref: '77',
  preserveSource: true,
  connectTimeout: '3s',
  idleTimeout: '5m',
  maxConnections: '100',
  logFormat: 'json',
  header: ['X-Team: payments', 'X-Env:staging'],
  setForwardedFor: 'hostname',
  setClientHostname: 'pod-b',
  xffMode: 'replace',
  maxHeadSize: '4096',
  headTimeout: '0',
  allowH2c: true,
  httpOnly: true,
  nameserver: ['192.0.2.53', '2001:db8::53'],
  relay: 'js',
  listenProxy: ['10.0.0.1:7890', '[::1]:7891'],
  proxyAuth: 'u:p',
  proxyAuthFile: '/etc/tranproxy/proxy-auth',
  dstFromHost: true,
};

function attributeOf(k: SettingKey): string {
  return new Option(entry(k).flag!).attributeName();
}

function yamlOf(v: string | string[] | boolean): string {
  return Array.isArray(v) ? `[${v.map((x) => JSON.stringify(x)).join(', ')}]` : JSON.stringify(v);
}

test('every setting has a flag or a file key; every default parses', () => {
  for (const k of KEYS) {
    const s = entry(k);
    assert.ok(s.flag !== undefined || s.file !== undefined, `${k}: neither flag nor file key`);
    if (s.default !== undefined) assert.doesNotThrow(() => defaultOf(k), k);
  }
  const files = KEYS.flatMap((k) => entry(k).file ?? []);
  assert.equal(new Set(files).size, files.length, 'file keys are unique');
});

test('a file value and the same flag value give the same typed setting', () => {
  for (const k of KEYS) {
    const s = entry(k);
    if (!s.flag || !s.file) continue;
    const v = EXAMPLES[k];
    assert.ok(v !== undefined, `${k}: add an example to EXAMPLES`);
    const fromFile = parseConfigText(
      `${s.file}: ${yamlOf(v)}\n${k === 'xffMode' ? 'set-forwarded-for: true\n' : ''}`,
      't.yaml',
    ).run[k];
    const fromFlag = flagSettings({ [attributeOf(k)]: v })[k];
    assert.deepEqual(fromFile, fromFlag, k);
    assert.notEqual(fromFile, undefined, k);
  }
});

test("defaults are the table's: commander shows them, and giving them changes nothing", () => {
  const cmd = addSettingOptions(addSettingOptions(new Command('run'), 'capture'), 'run');
  const typed: Record<string, string> = {};
  for (const k of KEYS) {
    const s = entry(k);
    if (s.default === undefined || !s.flag || !s.parse || k === 'xffMode') continue; // xff-mode needs --Set-Forwarded-For
    const opt = cmd.options.find((o) => o.attributeName() === attributeOf(k) && !o.negate)!;
    if (opt.defaultValue !== undefined) assert.equal(opt.defaultValue, s.default, k);
    typed[attributeOf(k)] = s.default;
  }
  // Without flags: commander's defaults are not taken for typed values.
  cmd.parse([], { from: 'user' });
  assert.deepEqual(commandSettings(cmd), {});
  assert.deepEqual(parseRunOptions(typed, [], FACTS), parseRunOptions({}, [], FACTS));
  assert.equal(parseRunOptions({}, [], FACTS).headTimeoutMs, 30_000);
});

test('typed flags win over the file; defaults fill the rest', () => {
  const cmd = addSettingOptions(addSettingOptions(new Command('run'), 'capture'), 'run');
  cmd.parse(['--head-timeout', '2s', '-P', '80,443'], { from: 'user' });
  const file = parseConfigText('head-timeout: 5s\nconnect-timeout: 4s\nports: 8080\n', 't.yaml');
  const cfg = runConfigOf({ ...file.run, ...commandSettings(cmd) }, [], FACTS, file);
  assert.equal(cfg.headTimeoutMs, 2000);
  assert.equal(cfg.connectTimeoutMs, 4000);
  assert.deepEqual(cfg.ports, [
    { from: 80, to: 80 },
    { from: 443, to: 443 },
  ]);
  assert.equal(cfg.idleTimeoutMs, 600_000);
});

test('bad values: the file names line and key, the flag its name, with the same reason', () => {
  const cases: [SettingKey, string, RegExp][] = [
    ['headTimeout', 'soon', /'soon' is not a duration: use e\.g\. 500ms, 10s, 5m$/],
    ['listenPort', '70000', /'70000' is not a port: use a number from 1 to 65535$/],
    ['tproxyMark', '0x3/0x1', /'0x3\/0x1' sets bits outside its mask/],
    ['includeCidr', '10.0.0.0/33', /'10\.0\.0\.0\/33' is not a CIDR/],
  ];
  for (const [k, bad, reason] of cases) {
    const s = entry(k);
    let fileMessage = '';
    try {
      parseConfigText(`mode: tproxy\n${s.file}: ${JSON.stringify(bad)}\n`, 'bad.yaml');
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      fileMessage = e.message;
    }
    assert.match(fileMessage, new RegExp(`^bad\\.yaml:2:\\d+: ${s.file}(\\[0\\])?: `), k);
    assert.match(fileMessage, reason, k);
    assert.throws(
      () => flagSettings({ [attributeOf(k)]: s.list ? [bad] : bad }),
      (e: unknown) =>
        e instanceof UsageError &&
        e.message.startsWith(`--${s.flag!.split('--')[1]!.split(' ')[0]}: `) &&
        reason.test(e.message),
      k,
    );
  }
  assert.throws(
    () => parseConfigText('listen-prot: 80\n', 'bad.yaml'),
    /bad\.yaml:1:1: unknown key 'listen-prot'; did you mean 'listen-port'\?$/,
  );
});

test('a reload keeps the settings the table marks reload: false', () => {
  const cfg = parseRunOptions({}, [], FACTS);
  for (const field of FIXED_ON_RELOAD) assert.ok(field in cfg, `${field} is a RunConfig field`);
  for (const f of ['mode', 'families', 'listenPort', 'proxyUser', 'firewall', 'admin', 'workers'] as const)
    assert.ok(FIXED_ON_RELOAD.includes(f), f);
  assert.ok(!FIXED_ON_RELOAD.includes('headTimeoutMs'));
  assert.ok(!FIXED_ON_RELOAD.includes('udp'), 'a reload may switch UDP capture');
});

test("nodes travel as parsed specs; the file schema takes exactly the parser's schemes", () => {
  const file = parseConfigText(
    'nodes:\n  hk: "ss://aes-256-gcm:pw@203.0.113.5:8388#tag"\n  corp: { uri: "http://192.0.2.1:3128", fallback: direct }\n',
    't.yaml',
  );
  const cfg = runConfigOf(file.run, [], FACTS, file);
  const crossed = JSON.parse(JSON.stringify(cfg.routing)) as NonNullable<typeof cfg.routing>;
  assert.deepEqual(crossed.nodes.hk!.spec, parseNodeUri('ss://aes-256-gcm:pw@203.0.113.5:8388#tag', 'hk'));
  assert.deepEqual(crossed.nodes.corp, { spec: parseNodeUri('http://192.0.2.1:3128', 'corp'), fallback: 'direct' });
  assert.throws(
    () => parseConfigText('nodes:\n  x: "ftp://h:1"\n', 't.yaml'),
    new RegExp(`use ${NODE_SCHEMES.map((s) => `${s}://`).join(', ')}$`),
  );
});

test('rules compile once when the file loads and once in each data plane, for TCP and UDP alike', () => {
  const yaml = [
    'nodes: { hk: "socks5://192.0.2.1:1080" }',
    'rules:',
    '  - { domain-suffix: example.com, outbound: hk }',
    '  - { cidr: 10.0.0.0/8, outbound: direct }',
    'default: reject',
    'default-udp: direct',
    '',
  ].join('\n');
  const before = compileCount.calls;
  const file = parseConfigText(yaml, 't.yaml');
  assert.equal(compileCount.calls - before, 1, 'loading the file compiles the rules once (errors with a line)');
  const cfg = runConfigOf(file.run, [], FACTS, file);
  assert.equal(compileCount.calls - before, 1, 'building the RunConfig compiles nothing more');
  const routers = routersOf(JSON.parse(JSON.stringify(cfg.routing)));
  assert.equal(compileCount.calls - before, 2, 'the data plane compiles once for TCP and UDP');
  const flow = (domain: string | undefined, ip: string, network: 'tcp' | 'udp') => ({
    dst: { ip, family: 4 as const, port: 443, ...(domain ? { domain } : {}) },
    src: '192.168.1.2',
    network,
  });
  assert.equal(routers.tcp.route(flow('a.example.com', '203.0.113.1', 'tcp')).action, 'hk');
  assert.equal(routers.udp.route(flow('a.example.com', '203.0.113.1', 'udp')).action, 'hk');
  assert.equal(routers.tcp.route(flow(undefined, '203.0.113.1', 'tcp')).action, 'reject');
  assert.equal(routers.udp.route(flow(undefined, '203.0.113.1', 'udp')).action, 'direct', 'default-udp');
});
