// The publish plan and its nft scripts against golden files (UPDATE_GOLDEN=1 rewrites them),
// plus the decisions the goldens alone would not explain: leftovers, removal, route_localnet.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseMappings, mappingTag, type PortMapping } from '../../src/publish/mapping.js';
import { buildPlan, type PlanInputs, type TargetRoute } from '../../src/publish/plan.js';
import {
  listedMappings,
  parseLiveTable,
  planRemoval,
  recordedLocalnet,
  renderApply,
  stateTag,
  type LiveTable,
} from '../../src/publish/render-nft.js';
import { golden } from '../helpers/golden.js';

/** A host like the e2e lab's: ctr segment 10.0.0.0/24 + fd00::/64, remote segment 10.1.0.0/24; 10.1.0.1 is local. */
const ROUTES: Record<string, TargetRoute> = {
  '10.0.0.2': { local: false, onLink: ['10.0.0.0/24'] },
  '10.9.0.5': { local: false, onLink: [] }, // behind a gateway
  'fd00::2': { local: false, onLink: ['fd00::/64'] },
  '10.1.0.1': { local: true, onLink: [] },
};

const MAPPINGS = [
  '8080:10.0.0.2:80',
  '5353:10.0.0.2:53/udp',
  '10.1.0.1:8081:10.0.0.2:80',
  '127.0.0.1:8082:10.0.0.2:80',
  '0.0.0.0:8083:10.9.0.5:80',
  '8084:[fd00::2]:80',
  '[::1]:8085:[fd00::2]:80',
  '[::]:8086:10.0.0.2:80',
  '8087:127.0.0.1:3000',
  '8088:10.1.0.1:3000',
  '9000-9002:10.0.0.2:7000-7002',
];

function inputs(over: Partial<PlanInputs> = {}): PlanInputs {
  return {
    mappings: parseMappings(MAPPINGS),
    owner: 4242,
    userlandProxy: true,
    forwarding: { 4: true, 6: true },
    route: (ip) => ROUTES[ip] ?? { local: false, onLink: [] },
    ...over,
  };
}

test('golden: userland proxy on (the default)', () => {
  golden('publish-default.nft', renderApply(buildPlan(inputs())));
});

test('golden: --userland-proxy=false records route_localnet=0 and NATs 127.0.0.1 too', () => {
  const plan = buildPlan(inputs({ userlandProxy: false }));
  assert.equal(plan.needsRouteLocalnet, true);
  golden('publish-no-userland-proxy.nft', renderApply(plan, undefined, { localnetOriginal: '0' }));
});

test('golden: forwarding off leaves remote clients to the userland proxy, with a warning', () => {
  const plan = buildPlan(inputs({ forwarding: { 4: false, 6: true } }));
  assert.equal(plan.warnings.length, 1);
  assert.match(plan.warnings[0]!, /net\.ipv4\.ip_forward is 0: .*sysctl -w net\.ipv4\.ip_forward=1/);
  golden('publish-forwarding-off.nft', renderApply(plan));
});

function ruleLines(text: string): string[] {
  return text.split('\n').filter((l) => l.startsWith('add rule'));
}

function rulesOf(mapping: string): string[] {
  const plan = buildPlan(inputs({ mappings: parseMappings([mapping]) }));
  return ruleLines(renderApply(plan)).map((l) =>
    l.replace(/^add rule inet tranproxy_publish /, '').replace(/ comment ".*"$/, ''),
  );
}

test('per mapping: prerouting DNAT for remote clients, output DNAT for local non-loopback, hairpin masquerade', () => {
  // The target reaching itself is left to the userland proxy (saddr != target).
  assert.deepEqual(rulesOf('8080:10.0.0.2:80'), [
    'mappings continue',
    'prerouting fib daddr type local ip saddr != 10.0.0.2 tcp dport 8080 dnat ip to 10.0.0.2:80',
    'output fib daddr type local ip daddr != 127.0.0.0/8 tcp dport 8080 dnat ip to 10.0.0.2:80',
    'postrouting ip saddr 10.0.0.0/24 ip daddr 10.0.0.2 tcp dport 80 ct status dnat ct original proto-dst 8080 masquerade',
  ]);
  // HOST_IP: only that address; the target behind a gateway: no segment of ours to masquerade.
  assert.deepEqual(rulesOf('10.1.0.1:8080:10.9.0.5:80/udp'), [
    'mappings continue',
    'prerouting ip daddr 10.1.0.1 ip saddr != 10.9.0.5 udp dport 8080 dnat ip to 10.9.0.5:80',
    'output ip daddr 10.1.0.1 udp dport 8080 dnat ip to 10.9.0.5:80',
  ]);
  // A local target: no forwarding, no hairpin; 127.0.0.1 can be NATed to it directly.
  assert.deepEqual(rulesOf('8080:10.1.0.1:3000'), [
    'mappings continue',
    'prerouting fib daddr type local meta nfproto ipv4 tcp dport 8080 dnat ip to 10.1.0.1:3000',
    'output fib daddr type local meta nfproto ipv4 tcp dport 8080 dnat ip to 10.1.0.1:3000',
  ]);
  assert.deepEqual(rulesOf('8080:[fd00::2]:80'), [
    'mappings continue',
    'prerouting fib daddr type local ip6 saddr != fd00::2 tcp dport 8080 dnat ip6 to [fd00::2]:80',
    'output fib daddr type local ip6 daddr != ::1 tcp dport 8080 dnat ip6 to [fd00::2]:80',
    'postrouting ip6 saddr fd00::/64 ip6 daddr fd00::2 tcp dport 80 ct status dnat ct original proto-dst 8080 masquerade',
  ]);
  // 127.0.0.1 only: nothing to NAT with the userland proxy on.
  assert.deepEqual(rulesOf('127.0.0.1:8080:10.0.0.2:80'), ['mappings continue']);
  // Loopback target and cross-family: userland proxy only, but registered for --list.
  assert.deepEqual(rulesOf('8080:127.0.0.1:80'), ['mappings continue']);
  assert.deepEqual(rulesOf('[::]:8080:10.0.0.2:80'), ['mappings continue']);
});

test('every rule carries the mapping tag; each rule line is one mapping', () => {
  const text = renderApply(buildPlan(inputs()));
  for (const l of ruleLines(text)) assert.match(l, / comment "tpx-publish (tcp|udp) \S+ \S+ pid=4242"$/);
  assert.doesNotMatch(text, /flush|delete table/, 'apply never touches what is not ours');
  assert.equal(text.split('\n').filter((l) => l.startsWith('add table')).length, 1);
  assert.ok(text.split('\n').every((l) => !l.includes('tranproxy_publish') || l.includes('inet tranproxy_publish')));
});

function live(rules: { chain: string; handle: number; comment?: string }[]): LiveTable {
  return { exists: true, rules };
}

const M = (s: string): PortMapping => parseMappings([s])[0]!;

test('apply replaces leftovers of the same mappings (any owner) and keeps everything else', () => {
  const plan = buildPlan(inputs({ mappings: parseMappings(['8080:10.0.0.2:80']) }));
  const table = live([
    { chain: 'mappings', handle: 4, comment: mappingTag(M('8080:10.0.0.2:80'), 999) },
    { chain: 'prerouting', handle: 5, comment: mappingTag(M('8080:10.0.0.2:80'), 999) },
    { chain: 'mappings', handle: 6, comment: mappingTag(M('8081:10.0.0.2:80'), 777) },
    { chain: 'prerouting', handle: 7, comment: mappingTag(M('8081:10.0.0.2:80'), 777) },
    { chain: 'prerouting', handle: 8, comment: 'somebody else' },
  ]);
  const text = renderApply(plan, table);
  golden('publish-replace-leftovers.nft', text);
  const deletes = text.split('\n').filter((l) => l.startsWith('delete'));
  assert.deepEqual(deletes, [
    'delete rule inet tranproxy_publish mappings handle 4',
    'delete rule inet tranproxy_publish prerouting handle 5',
  ]);
});

test("removal: only the owner's rules; the table goes with the last mapping", () => {
  const a = mappingTag(M('8080:10.0.0.2:80'), 10);
  const b = mappingTag(M('8081:10.0.0.2:80'), 20);
  const both = live([
    { chain: 'mappings', handle: 4, comment: a },
    { chain: 'prerouting', handle: 5, comment: a },
    { chain: 'mappings', handle: 6, comment: b },
    { chain: 'prerouting', handle: 7, comment: b },
  ]);
  assert.deepEqual(planRemoval(both, 10), {
    script:
      'delete rule inet tranproxy_publish mappings handle 4\ndelete rule inet tranproxy_publish prerouting handle 5\n',
    removed: 2,
  });
  const onlyA = live(both.rules.slice(0, 2));
  assert.deepEqual(planRemoval(onlyA, 10), {
    script: 'add table inet tranproxy_publish\ndelete table inet tranproxy_publish\n',
    removed: 2,
  });
  // Not ours at all: nothing to do (but other owners' rules stay).
  assert.deepEqual(planRemoval(live(both.rules.slice(2)), 10), { script: '', removed: 0 });
  assert.deepEqual(planRemoval({ exists: false, rules: [] }, 10), { script: '', removed: 0 });
  // --remove-all
  assert.equal(planRemoval(both).script, 'add table inet tranproxy_publish\ndelete table inet tranproxy_publish\n');
  assert.equal(planRemoval(both).removed, 4);
});

test('route_localnet: recorded once, restored by the last --userland-proxy=false owner (or --remove-all)', () => {
  const plan = buildPlan(inputs({ userlandProxy: false, mappings: parseMappings(['8080:10.0.0.2:80']) }));
  const state = `add rule inet tranproxy_publish state continue comment "${stateTag('0')}"`;
  assert.ok(renderApply(plan, undefined, { localnetOriginal: '0' }).includes(state));
  assert.ok(
    !renderApply(plan, undefined, { localnetOriginal: '1' }).includes('state continue'),
    'already 1: nothing to restore',
  );
  const a = mappingTag(M('8080:10.0.0.2:80'), 10);
  const b = mappingTag(M('8081:10.0.0.2:80'), 20);
  const withState = live([
    { chain: 'state', handle: 3, comment: stateTag('0') },
    { chain: 'mappings', handle: 4, comment: a },
    { chain: 'localnet', handle: 5, comment: a },
    { chain: 'mappings', handle: 6, comment: b },
    { chain: 'localnet', handle: 7, comment: b },
  ]);
  assert.ok(
    !renderApply(plan, withState, { localnetOriginal: '0' }).includes('state continue'),
    'the first value recorded wins',
  );
  assert.deepEqual(recordedLocalnet(withState)?.value, '0');
  // 20 still needs it: no restore.
  assert.equal(planRemoval(withState, 10).restoreLocalnet, undefined);
  // The last one: restore, drop the table.
  const last = live([withState.rules[0]!, ...withState.rules.slice(3)]);
  assert.deepEqual(planRemoval(last, 20), {
    script: 'add table inet tranproxy_publish\ndelete table inet tranproxy_publish\n',
    removed: 2,
    restoreLocalnet: '0',
  });
  // The last localnet user goes, a userland-mode owner stays: restore and drop only the state rule.
  const mixed = live([
    { chain: 'state', handle: 3, comment: stateTag('0') },
    { chain: 'mappings', handle: 4, comment: a },
    { chain: 'localnet', handle: 5, comment: a },
    { chain: 'mappings', handle: 6, comment: b },
  ]);
  assert.deepEqual(planRemoval(mixed, 10), {
    script:
      'delete rule inet tranproxy_publish mappings handle 4\ndelete rule inet tranproxy_publish localnet handle 5\n' +
      'delete rule inet tranproxy_publish state handle 3\n',
    removed: 2,
    restoreLocalnet: '0',
  });
  assert.equal(planRemoval(withState).restoreLocalnet, '0', '--remove-all restores');
});

test('parseLiveTable reads nft -j output; listedMappings reads the registry', () => {
  const a = mappingTag(M('8080:10.0.0.2:80'), 10);
  const json = JSON.stringify({
    nftables: [
      { metainfo: { version: '1.0.6' } },
      { table: { family: 'inet', name: 'tranproxy_publish', handle: 1 } },
      { chain: { family: 'inet', table: 'tranproxy_publish', name: 'mappings', handle: 2 } },
      {
        rule: {
          family: 'inet',
          table: 'tranproxy_publish',
          chain: 'mappings',
          handle: 5,
          comment: a,
          expr: [{ continue: null }],
        },
      },
      { rule: { family: 'inet', table: 'tranproxy_publish', chain: 'prerouting', handle: 6, comment: a, expr: [] } },
      { rule: { family: 'inet', table: 'tranproxy_publish', chain: 'prerouting', handle: 7, expr: [] } },
    ],
  });
  const t = parseLiveTable(json);
  assert.deepEqual(t, {
    exists: true,
    rules: [
      { chain: 'mappings', handle: 5, comment: a },
      { chain: 'prerouting', handle: 6, comment: a },
      { chain: 'prerouting', handle: 7 },
    ],
  });
  assert.deepEqual(listedMappings(t), [{ key: 'tcp *:8080 10.0.0.2:80', owner: 10, mapping: M('8080:10.0.0.2:80') }]);
  assert.deepEqual(parseLiveTable('{"nftables":[{"metainfo":{}}]}'), { exists: false, rules: [] });
});

test('plan is deterministic: hairpin sources normalised', () => {
  const plan = buildPlan(
    inputs({
      route: () => ({ local: false, onLink: ['10.0.0.0/24', '10.0.0.0/25', '192.168.5.0/24'] }),
      mappings: parseMappings(['80:10.0.0.2:80']),
    }),
  );
  assert.deepEqual(plan.mappings[0]!.hairpinSources, ['10.0.0.0/24', '192.168.5.0/24']);
});
