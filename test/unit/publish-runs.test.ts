// The commands `tranproxy publish` runs to apply and remove its rules, in order and with their
// stdin, against golden files in test/golden/runs/ (UPDATE_GOLDEN=1 rewrites them), through a fake
// runner with a model of the publish table: retry of a raced transaction, idempotent removal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ToolFailedError } from '../../src/errors.js';
import { parseMappings } from '../../src/publish/mapping.js';
import { planFor, type PublishConfig } from '../../src/publish/publisher.js';
import { PUBLISH_TABLE } from '../../src/publish/plan.js';
import { applyPublish, removePublish } from '../../src/publish/system.js';
import { FakeRunner } from '../helpers/fake-runner.js';
import { golden } from '../helpers/golden.js';

const RUNS = { dir: 'runs' };
const OWNER = 4242;

/** The publish table as `nft -f -` scripts of `add rule … comment` / `delete rule … handle N` leave it. */
class PublishTable {
  exists = false;
  rules: { chain: string; handle: number; comment?: string }[] = [];
  private handle = 1;

  apply(script: string): void {
    for (const line of script.split('\n')) {
      const words = line.split(' ');
      if (line.startsWith(`add table inet ${PUBLISH_TABLE}`)) this.exists = true;
      else if (line.startsWith(`delete table inet ${PUBLISH_TABLE}`)) {
        this.exists = false;
        this.rules = [];
      } else if (line.startsWith('add rule ')) {
        const comment = line.match(/comment "([^"]*)"$/)?.[1];
        this.rules.push({ chain: words[4]!, handle: ++this.handle, ...(comment ? { comment } : {}) });
      } else if (line.startsWith('delete rule '))
        this.rules = this.rules.filter((r) => r.handle !== Number(words.at(-1)));
    }
  }

  json(): string {
    const table = { family: 'inet', name: PUBLISH_TABLE, handle: 1 };
    const rules = this.rules.map((r) => ({ rule: { family: 'inet', table: PUBLISH_TABLE, ...r, expr: [] } }));
    return JSON.stringify({ nftables: [{ metainfo: {} }, { table }, ...rules] });
  }
}

const CFG: PublishConfig = {
  mappings: parseMappings(['8080:10.0.0.2:80', '5353:10.0.0.2:53/udp', '8084:[fd00::2]:80']),
  userlandProxy: true,
  firewall: 'nft',
  connectTimeoutMs: 1000,
  tcpIdleTimeoutMs: 1000,
  udpIdleTimeoutMs: 1000,
  maxConnections: 10,
  maxUdpFlowsPerPort: 10,
};

function rig() {
  const table = new PublishTable();
  // Only nft: no iptables tools, so no FORWARD accept chain.
  const runner = new FakeRunner({ tools: ['nft', 'ip', 'sysctl'] })
    .on('nft -j list table', () =>
      table.exists ? { stdout: table.json() } : { status: 1, stderr: 'Error: No such file or directory' },
    )
    .on('nft -j list ruleset', () => ({ stdout: '{"nftables":[]}' }))
    .on('nft -f -', (c) => {
      table.apply(c.input ?? '');
      return {};
    })
    .on('sysctl -n', () => ({ stdout: '1\n' }))
    .on('ip -j route get', (c) => ({ stdout: JSON.stringify([{ dst: c.args.at(-1), dev: 'eth0' }]) }))
    .on('ip -j', (c) => ({
      stdout: JSON.stringify([{ dst: c.args[1] === '-6' ? 'fd00::/64' : '10.0.0.0/24', dev: 'eth0' }]),
    }));
  return { runner, table };
}

test('publish apply then remove: command sequence and stdin match the golden run', () => {
  const { runner, table } = rig();
  const plan = planFor(CFG, OWNER, runner);
  applyPublish(plan, undefined, runner);
  assert.ok(table.rules.length >= CFG.mappings.length, 'apply added no rules');
  const applied = runner.transcript();
  runner.calls.length = 0;
  const r = removePublish(OWNER, runner);
  assert.deepEqual(r.owners, [OWNER]);
  assert.equal(table.exists, false, 'the table outlived its last mapping');
  golden('publish.apply', applied, RUNS);
  golden('publish.remove', runner.transcript(), RUNS);
});

test('publish apply retries a transaction that raced another publisher, reading the table again', () => {
  const { runner, table } = rig();
  const plan = planFor(CFG, OWNER, runner);
  runner.calls.length = 0;
  runner.failFirst('nft -f -', 'Error: Could not process rule: No such file or directory');
  applyPublish(plan, undefined, runner);
  const seq = runner.calls.map((c) => c.args.slice(0, 2).join(' '));
  assert.deepEqual(seq, ['-j list', '-f -', '-j list', '-f -']);
  assert.ok(table.exists);
});

test('publish apply gives up after four failed transactions and leaves nothing', () => {
  const { runner, table } = rig();
  const plan = planFor(CFG, OWNER, runner);
  for (let i = 0; i < 4; i++) runner.failFirst('nft -f -');
  assert.throws(() => applyPublish(plan, undefined, runner), ToolFailedError);
  assert.equal(table.exists, false);
  assert.equal(runner.matching('nft -f -').length, 4);
});

test('publish remove is idempotent: with nothing published it only reads', () => {
  const { runner } = rig();
  const r = removePublish(OWNER, runner);
  assert.equal(r.removed, 0);
  assert.deepEqual(
    runner.calls.filter((c) => c.input !== undefined),
    [],
  );
  golden('publish.remove-when-clean', runner.transcript(), RUNS);
});

test("publish remove takes only the owner's rules while another owner's remain", () => {
  const { runner, table } = rig();
  applyPublish(planFor(CFG, OWNER, runner), undefined, runner);
  const other = { ...CFG, mappings: parseMappings(['9090:10.0.0.3:90']) };
  applyPublish(planFor(other, 777, runner), undefined, runner);
  removePublish(OWNER, runner);
  assert.ok(table.exists);
  assert.ok(table.rules.some((r) => r.comment?.includes('pid=777')));
  assert.ok(!table.rules.some((r) => r.comment?.includes(`pid=${OWNER}`)));
});
