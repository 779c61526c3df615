// The commands `rules apply` / `rules remove` run, in order and with their stdin, against golden
// files in test/golden/runs/ (UPDATE_GOLDEN=1 rewrites them), through a fake runner with small
// models of iptables, nft and sysctl state: fail-closed, rollback and idempotent removal, no root.
import { test } from 'node:test';
import { mkdirSync, writeFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { ToolFailedError } from '../../src/errors.js';
import { applyPlan, removeRules, type Backend } from '../../src/firewall/apply.js';
import { enableForwarding, restoreForwarding } from '../../src/firewall/forwarding.js';
import type { CapturePlan } from '../../src/firewall/plan.js';
import type { Target } from '../../src/firewall/target.js';
import { PLANS } from '../golden/plans.js';
import { FakeRunner } from '../helpers/fake-runner.js';
import { fakeSystem, type FakeSystem } from '../helpers/fake-system.js';
import { golden } from '../helpers/golden.js';

const RUNS = { dir: 'runs' };
let seq = 0;

interface Rig {
  runner: FakeRunner;
  sys: FakeSystem;
  target: Target;
}

/** A fake system; `netns` keeps the forwarding state file of this run apart from any other. */
function rig(tools?: readonly string[]): Rig {
  const runner = new FakeRunner(tools ? { tools } : {});
  const sys = fakeSystem(runner);
  return { runner, sys, target: { netns: `tpxfake-${process.pid}-${++seq}`, runner } };
}

/** The transcript with this run's netns name replaced by a stable one. */
function transcript(r: Rig): string {
  return r.runner.transcript().replaceAll(r.target.netns!, 'NS');
}

function leftovers(r: Rig): string[] {
  const routing = [...r.sys.ip.rules, ...r.sys.ip.routeTables].map((x) => `ip ${x.family} table ${x.table}`);
  return [...r.sys.ipt.iptables.leftovers(), ...r.sys.ipt.ip6tables.leftovers(), ...r.sys.nft.tables, ...routing];
}

async function withRig(tools: readonly string[] | undefined, body: (r: Rig) => void): Promise<void> {
  const r = rig(tools);
  try {
    body(r);
  } finally {
    restoreForwarding(r.target);
  }
}

const CASES: [name: string, plan: CapturePlan, backend: Backend][] = [
  ['redirect-output', PLANS['redirect-output']!, 'nft'],
  ['redirect-output', PLANS['redirect-output']!, 'iptables'],
  ['tproxy-prerouting', PLANS['tproxy-prerouting']!, 'nft'],
  ['tproxy-prerouting', PLANS['tproxy-prerouting']!, 'iptables'],
];

for (const [name, plan, backend] of CASES) {
  test(`rules apply then remove (${name}, ${backend}): command sequence and stdin match the golden run`, () =>
    withRig(undefined, (r) => {
      applyPlan(plan, backend, r.target);
      assert.ok(leftovers(r).length > 0, 'apply installed nothing');
      const applied = transcript(r);
      r.runner.calls.length = 0;
      removeRules(r.target);
      assert.deepEqual(leftovers(r), [], 'remove left rules behind');
      golden(`${name}.${backend}.apply`, applied, RUNS);
      golden(`${name}.${backend}.remove`, transcript(r), RUNS);
    }));
}

test('rules apply (nft) fails closed: the failing transaction is followed by a full removal, error rethrown', () =>
  withRig(undefined, (r) => {
    r.runner.failFirst('nft -f -', 'Error: Could not process rule: No such file or directory');
    // The first `nft -f -` is the apply itself (no leftovers to remove first): it fails.
    assert.throws(() => applyPlan(PLANS['tproxy-prerouting']!, 'nft', r.target), ToolFailedError);
    assert.deepEqual(leftovers(r), []);
    assert.equal(r.sys.sysctl.get('net.ipv4.ip_forward'), '0', 'forwarding was turned on although apply failed');
    golden('tproxy-prerouting.nft.apply-fails', transcript(r), RUNS);
  }));

test('rules apply (iptables): the second of two tables (IPv6 after IPv4) fails, the first is rolled back', () =>
  withRig(undefined, (r) => {
    r.sys.ipt.ip6tables.failTable = 'mangle';
    assert.throws(() => applyPlan(PLANS['tproxy-prerouting']!, 'iptables', r.target), ToolFailedError);
    assert.deepEqual(leftovers(r), [], 'the committed IPv4 table was not rolled back');
    const restores = r.runner.calls.filter((c) => c.tool.endsWith('-restore'));
    assert.deepEqual(
      restores.map((c) => c.tool),
      ['iptables-restore', 'ip6tables-restore', 'iptables-restore'],
    );
    assert.match(restores[2]!.input!, /-X TRANPROXY_/, 'the rollback deletes our IPv4 chains');
    golden('tproxy-prerouting.iptables.apply-second-table-fails', transcript(r), RUNS);
  }));

test('rules apply fails closed whichever call fails: it either completes or leaves nothing', () => {
  const probe = rig();
  applyPlan(PLANS['tproxy-prerouting']!, 'iptables', probe.target);
  const total = probe.runner.calls.length;
  restoreForwarding(probe.target);
  let failures = 0;
  for (let n = 1; n <= total; n++) {
    const r = rig();
    r.runner.failCall(n);
    try {
      applyPlan(PLANS['tproxy-prerouting']!, 'iptables', r.target);
      assert.ok(leftovers(r).length > 0, `call ${n} failed, apply went on and installed nothing`);
    } catch (e) {
      failures++;
      assert.ok(e instanceof ToolFailedError, `call ${n}: ${String(e)}`);
      assert.deepEqual(leftovers(r), [], `call ${n} (${r.runner.calls[n - 1]?.tool}) failed: rules left behind`);
      assert.deepEqual([...r.sys.ip.rules, ...r.sys.ip.routeTables], [], `call ${n} failed: routing left behind`);
      assert.equal(r.sys.sysctl.get('net.ipv4.ip_forward'), '0', `call ${n} failed: forwarding left on`);
    } finally {
      restoreForwarding(r.target);
    }
  }
  assert.ok(failures > total / 2, `only ${failures} of ${total} failing calls made apply fail`);
});

test('rules remove is idempotent: a second remove changes nothing and issues no writes', () =>
  withRig(undefined, (r) => {
    applyPlan(PLANS['tproxy-prerouting']!, 'nft', r.target);
    removeRules(r.target);
    r.runner.calls.length = 0;
    removeRules(r.target);
    const writes = r.runner.calls.filter(
      (c) => c.input !== undefined || c.args.includes('-w') || c.args.includes('del'),
    );
    assert.deepEqual(writes, [], 'a remove with nothing installed wrote something');
    golden('remove-when-clean', transcript(r), RUNS);
  }));

test('rules apply with leftovers of the other backend removes them first (nft after iptables)', () =>
  withRig(undefined, (r) => {
    applyPlan(PLANS['redirect-output']!, 'iptables', r.target);
    applyPlan(PLANS['redirect-output']!, 'nft', r.target);
    assert.deepEqual(r.sys.ipt.iptables.leftovers(), []);
    assert.deepEqual([...r.sys.nft.tables], ['tranproxy']);
  }));

test('a forwarding state file that outlived its namespace (value now not 1) is replaced, so remove restores the real value', () =>
  withRig(undefined, (r) => {
    r.sys.sysctl.set('net.ipv4.ip_forward', '0');
    // Left by a run killed in a namespace since deleted, whose name (or inode) is now reused.
    mkdirSync('/run/tranproxy', { recursive: true });
    writeFileSync(`/run/tranproxy/forwarding-${r.target.netns}.json`, JSON.stringify({ 'net.ipv4.ip_forward': '1' }));
    enableForwarding(['ipv4'], r.target);
    assert.equal(r.sys.sysctl.get('net.ipv4.ip_forward'), '1');
    restoreForwarding(r.target);
    assert.equal(r.sys.sysctl.get('net.ipv4.ip_forward'), '0', 'the stale saved value was restored');
  }));
