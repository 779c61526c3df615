import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRunOptions, runConfigOf } from '../../src/config/run-config.js';
import { capturePlanOf } from '../../src/config/capture-plan.js';
import { parseConfigText } from '../../src/config/file.js';
import { flagSettings } from '../../src/config/settings.js';
import { UsageError } from '../../src/errors.js';

test('defaults: REDIRECT output capture, dual stack, proxy user 1337 excluded', () => {
  const cfg = parseRunOptions({});
  assert.equal(cfg.mode, 'redirect');
  assert.deepEqual(cfg.capture, ['output']);
  assert.deepEqual(cfg.families, ['ipv4', 'ipv6']);
  assert.deepEqual(cfg.proxyUser, { uid: 1337, gid: 1337 });
  const plan = capturePlanOf(cfg);
  assert.deepEqual(plan.excludeUids, [1337]);
  assert.deepEqual(plan.excludeGids, [1337]);
  assert.deepEqual(plan.includePorts, []);
  assert.equal(plan.proxyPort, 15001);
});

test('ports, ranges, CIDRs and comma lists are parsed', () => {
  const cfg = parseRunOptions({
    port: ['80', '8000-8100,9090'],
    excludeCidr: ['10.0.0.0/8', 'fd00::/8'],
    excludePort: ['22'],
  });
  assert.deepEqual(cfg.ports, [
    { from: 80, to: 80 },
    { from: 8000, to: 8100 },
    { from: 9090, to: 9090 },
  ]);
  assert.deepEqual(cfg.excludeCidrs, [
    { family: 'ipv4', text: '10.0.0.0/8' },
    { family: 'ipv6', text: 'fd00::/8' },
  ]);
  assert.deepEqual(cfg.excludePorts, [{ from: 22, to: 22 }]);
});

test('output capture without a proxy user relies on the bypass mark', () => {
  const plan = capturePlanOf(parseRunOptions({ proxyUser: 'none' }));
  assert.deepEqual(plan.excludeUids, []);
  assert.equal(plan.bypassMark, 0x539);
});

test('marks with masks, as the seeds write them: --tproxy-mark 0x1/0x1, --bypass-mark, --tproxy-rule-pref', () => {
  const cfg = parseRunOptions({ mode: 'tproxy', tproxyMark: '0x1/0x1', bypassMark: '0x2/0x2', tproxyRulePref: '100' });
  const plan = capturePlanOf(cfg);
  assert.deepEqual(
    [plan.tproxyMark, plan.tproxyMask, plan.bypassMark, plan.bypassMask, plan.rulePref],
    [1, 1, 2, 2, 100],
  );
  // An untyped bypass mark moves off the masked TPROXY bits (0x539 has bit 0x1 set).
  const seed = capturePlanOf(parseRunOptions({ mode: 'tproxy', tproxyMark: '0x1/0x1' }));
  assert.equal(seed.bypassMark, 0x538);
  assert.equal(seed.bypassMask, undefined);
  assert.equal(seed.rulePref, undefined, 'default: the kernel chooses, as before');
  const file = parseConfigText(
    'mode: tproxy\ntproxy-mark: 0x10/0xf0\nbypass-mark: "0x2/0x2"\ntproxy-rule-pref: 77\n',
    't.yaml',
  );
  const fromFile = capturePlanOf(runConfigOf(file.run));
  assert.deepEqual(
    [fromFile.tproxyMark, fromFile.tproxyMask, fromFile.bypassMark, fromFile.bypassMask, fromFile.rulePref],
    [0x10, 0xf0, 2, 2, 77],
  );
});

test("--capture inbound: ports, tranproxy's own ports always excluded, TPROXY keeps the client address", () => {
  const cfg = parseRunOptions({
    mode: 'tproxy',
    capture: ['inbound'],
    inboundPort: ['8080,9000-9100'],
    excludeInboundPort: ['22'],
    admin: '127.0.0.1:15000',
  });
  assert.equal(cfg.preserveSource, true);
  assert.equal(cfg.proxyUser, undefined);
  const plan = capturePlanOf(cfg);
  assert.deepEqual(plan.inboundPorts, [
    { from: 8080, to: 8080 },
    { from: 9000, to: 9100 },
  ]);
  assert.deepEqual(plan.excludeInboundPorts, [
    { from: 22, to: 22 },
    { from: 15001, to: 15001 },
    { from: 15000, to: 15000 },
  ]);
  assert.equal(plan.inboundPreserveSource, true);
  assert.equal(
    capturePlanOf(parseRunOptions({ capture: ['inbound'] })).inboundPreserveSource,
    false,
    'REDIRECT: the app sees the pod address',
  );
  const file = parseConfigText('capture: [inbound]\ninbound-ports: [8080]\nexclude-inbound-ports: 9090\n', 't.yaml');
  assert.deepEqual(runConfigOf(file.run).inboundPorts, [{ from: 8080, to: 8080 }]);
});

test('tproxy prerouting preserves the client source by default and runs as root', () => {
  const cfg = parseRunOptions({ mode: 'tproxy', capture: ['prerouting'], inInterface: ['veth0'] });
  assert.equal(cfg.preserveSource, true);
  assert.equal(cfg.proxyUser, undefined);
  assert.deepEqual(cfg.inInterfaces, ['veth0']);
});

test('--head-timeout: 30s by default, the --idle-timeout duration syntax, 0 switches it off, also from the file', () => {
  assert.equal(parseRunOptions({}).headTimeoutMs, 30_000);
  assert.equal(parseRunOptions({ headTimeout: '500ms' }).headTimeoutMs, 500);
  assert.equal(parseRunOptions({ headTimeout: '10s' }).headTimeoutMs, 10_000);
  assert.equal(parseRunOptions({ headTimeout: '2m' }).headTimeoutMs, 120_000);
  assert.equal(parseRunOptions({ headTimeout: '0' }).headTimeoutMs, 0);
  assert.equal(parseRunOptions({ headTimeout: '0s' }).headTimeoutMs, 0);
  const file = (yaml: string) => parseConfigText(yaml, 'tranproxy.yaml', {}).run;
  assert.equal(file('head-timeout: 5s\n').headTimeout, 5000);
  assert.equal(runConfigOf(file('head-timeout: 5s\n')).headTimeoutMs, 5000);
  assert.equal(runConfigOf(file('head-timeout: 0\n')).headTimeoutMs, 0);
  assert.throws(() => file('head-timeout: soon\n'), /head-timeout: 'soon' is not a duration/);
});

test('--allow-h2c and --http-only: off by default, reach the injection config, also from the file', () => {
  const inject = (o: Parameters<typeof parseRunOptions>[0]) =>
    parseRunOptions({ header: ['tranproxy:true'], ...o }).inject!;
  assert.equal(inject({}).allowH2c, undefined);
  assert.equal(inject({}).httpOnly, undefined);
  assert.equal(inject({ allowH2c: true }).allowH2c, true);
  assert.equal(inject({ httpOnly: true }).httpOnly, true);
  const file = (yaml: string) => parseConfigText(yaml, 'tranproxy.yaml', {}).run;
  const fromFile = (yaml: string) =>
    runConfigOf({ ...file(yaml), ...flagSettings({ header: ['tranproxy:true'] }) }).inject!;
  assert.equal(fromFile('allow-h2c: true\nhttp-only: true\n').allowH2c, true);
  assert.equal(fromFile('allow-h2c: true\nhttp-only: true\n').httpOnly, true);
  assert.throws(() => file('http-only: maybe\n'), /http-only/);
});

const bad: [Record<string, unknown>, RegExp][] = [
  [{ port: ['0'] }, /--port: '0' is not a port/],
  [{ port: ['70000'] }, /not a port/],
  [{ port: ['90-80'] }, /ends before it starts/],
  [{ port: ['15001'] }, /would loop/],
  [{ includeCidr: ['10.0.0.0/33'] }, /--include-cidr: '10.0.0.0\/33' is not a CIDR/],
  [{ excludeCidr: ['banana'] }, /is not a CIDR/],
  [{ mode: 'magic' }, /--mode: 'magic' is not one of redirect, tproxy/],
  [{ capture: ['input'] }, /--capture/],
  [{ inInterface: ['eth0'] }, /add --capture prerouting/],
  [{ inInterface: ['this-name-is-too-long'], capture: ['prerouting'] }, /not an interface name/],
  [{ connectTimeout: 'soon' }, /not a duration/],
  [{ headTimeout: 'soon' }, /--head-timeout: 'soon' is not a duration/],
  [{ headTimeout: '-1s' }, /--head-timeout/],
  [{ tproxyMark: '0' }, /not a mark/],
  [{ tproxyMark: '0x3/0x1' }, /--tproxy-mark: '0x3\/0x1' sets bits outside its mask/],
  [{ bypassMark: '0x1/0x1/0x1' }, /--bypass-mark: .* is not a mark/],
  [{ tproxyRulePref: '32766' }, /--tproxy-rule-pref/],
  [{ inboundPort: ['8080'] }, /add --capture inbound/],
  [{ capture: ['inbound'], inboundPort: ['80x'] }, /--inbound-port/],
  [{ proxyUser: 'root' }, /not a numeric id/],
  [{ preserveSource: true }, /needs --mode tproxy/],
];
for (const [raw, re] of bad) {
  test(`rejects ${JSON.stringify(raw)}`, () => {
    assert.throws(
      () => parseRunOptions(raw as never),
      (e: unknown) => e instanceof UsageError && e.exitCode === 2 && re.test(e.message),
    );
  });
}

test('--one-process serves only: it needs --firewall none and takes no command or console', () => {
  assert.equal(parseRunOptions({ oneProcess: true, firewall: 'none' }).oneProcess, true);
  assert.equal(parseRunOptions({}).oneProcess, false);
  assert.throws(() => parseRunOptions({ oneProcess: true }), /--one-process applies no rules: add --firewall none/);
  assert.throws(
    () => parseRunOptions({ oneProcess: true, firewall: 'none' }, ['curl', 'http://x']),
    /--one-process cannot run a command/,
  );
  assert.throws(
    () => parseRunOptions({ oneProcess: true, firewall: 'none', console: '127.0.0.1:9090' }),
    /--one-process has no web console/,
  );
});
