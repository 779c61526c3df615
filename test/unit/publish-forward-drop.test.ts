// FORWARD-DROP hosts: which forward chains drop (nft JSON, legacy save), what the publish plan
// does about each kind, and the iptables accept chain's scripts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  dnatAcceptFix,
  forwardDropFromLegacySave,
  forwardDropsFromNft,
  type ForwardDrop,
} from '../../src/firewall/forward-drop.js';
import { parseMappings } from '../../src/publish/mapping.js';
import { buildPlan, type PlanInputs } from '../../src/publish/plan.js';
import {
  ACCEPT_CHAIN,
  acceptRule,
  parseAcceptChain,
  planAcceptRemoval,
  renderAcceptApply,
} from '../../src/publish/render-iptables.js';

const chain = (family: string, table: string, name: string, policy: string, hook = 'forward') => ({
  chain: { family, table, name, handle: 1, type: 'filter', hook, prio: 0, policy },
});
const ruleset = (...items: object[]) => JSON.stringify({ nftables: [{ metainfo: { version: '1.0.6' } }, ...items] });
const DNAT_ACCEPT = {
  rule: {
    family: 'inet',
    table: 'fw',
    chain: 'forward',
    handle: 2,
    expr: [
      { match: { op: 'in', left: { ct: { key: 'status' } }, right: 'dnat' } },
      { counter: { packets: 0, bytes: 0 } },
      { accept: null },
    ],
  },
};

test('forwardDropsFromNft: iptables-nft FORWARD, native chains, accept chains and other hooks ignored', () => {
  const drops = forwardDropsFromNft(
    ruleset(
      chain('ip', 'filter', 'FORWARD', 'drop'),
      chain('ip6', 'filter', 'FORWARD', 'accept'),
      chain('inet', 'fw', 'forward', 'drop'),
      chain('inet', 'fw', 'input', 'drop', 'input'),
      chain('inet', 'tranproxy_publish', 'x', 'drop'),
    ),
    ['tranproxy_publish'],
  );
  assert.deepEqual(drops, [
    { backend: 'iptables-nft', family: 'ip', table: 'filter', chain: 'FORWARD', acceptsDnat: false },
    { backend: 'nft', family: 'inet', table: 'fw', chain: 'forward', acceptsDnat: false },
  ]);
  const withAccept = forwardDropsFromNft(ruleset(chain('inet', 'fw', 'forward', 'drop'), DNAT_ACCEPT));
  assert.equal(withAccept[0]!.acceptsDnat, true);
  assert.deepEqual(forwardDropsFromNft('not json'), []);
  assert.equal(dnatAcceptFix(drops[1]!), 'nft insert rule inet fw forward ct status dnat accept');
});

test('forwardDropFromLegacySave: only a DROP policy on FORWARD', () => {
  assert.equal(
    forwardDropFromLegacySave('*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\nCOMMIT\n', 6)[0]!.family,
    'ip6',
  );
  assert.deepEqual(forwardDropFromLegacySave('*filter\n:FORWARD ACCEPT [0:0]\n:DROPPER - [0:0]\nCOMMIT\n', 4), []);
});

function plan(drops: ForwardDrop[]) {
  const inp: PlanInputs = {
    mappings: parseMappings(['8080:10.0.0.2:80', '8086:[fd00::2]:80', '8087:127.0.0.1:3000']),
    owner: 42,
    userlandProxy: true,
    forwarding: { 4: true, 6: true },
    route: (ip) => ({ local: ip === '127.0.0.1', onLink: ip.includes(':') ? ['fd00::/64'] : ['10.0.0.0/24'] }),
    forwardDrops: drops,
  };
  return buildPlan(inp);
}

const IPT4: ForwardDrop = {
  backend: 'iptables-nft',
  family: 'ip',
  table: 'filter',
  chain: 'FORWARD',
  acceptsDnat: false,
};
const LEGACY6: ForwardDrop = {
  backend: 'iptables-legacy',
  family: 'ip6',
  table: 'filter',
  chain: 'FORWARD',
  acceptsDnat: false,
};
const NFT: ForwardDrop = { backend: 'nft', family: 'inet', table: 'fw', chain: 'forward', acceptsDnat: false };

test('plan: an iptables FORWARD drop gets our accept chain for the DNATed mappings of its family only', () => {
  const p = plan([IPT4, LEGACY6]);
  assert.deepEqual(p.forwardAccept, [
    { backend: 'iptables-legacy', family: 6 },
    { backend: 'iptables-nft', family: 4 },
  ]);
  assert.deepEqual(
    p.mappings.map((m) => m.forwardAccept),
    [['iptables-nft'], ['iptables-legacy'], []],
  );
  assert.ok(p.mappings[0]!.prerouting, 'still NATed');
  assert.deepEqual(p.warnings, []);
  assert.deepEqual(plan([]).forwardAccept, [], 'no drop: no accept chain');
});

test('plan: a native nft drop chain cannot be overridden: remote clients go to the userland proxy, with the fix named', () => {
  const p = plan([NFT, IPT4]);
  assert.equal(p.mappings[0]!.prerouting, undefined);
  assert.equal(p.mappings[1]!.prerouting, undefined, 'inet covers IPv6 too');
  assert.deepEqual(p.mappings[0]!.hairpinSources, []);
  assert.ok(p.mappings[0]!.output, "the host's own clients are NATed in OUTPUT (no forward hook)");
  assert.deepEqual(p.forwardAccept, []);
  assert.match(
    p.mappings[0]!.notes.join(),
    /nft chain inet fw forward \(policy drop\): remote clients are relayed by the userland proxy/,
  );
  assert.equal(p.warnings.length, 1);
  assert.match(p.warnings[0]!, /nft insert rule inet fw forward ct status dnat accept/);
  const ok = plan([{ ...NFT, acceptsDnat: true }]);
  assert.ok(ok.mappings[0]!.prerouting, 'a chain that accepts DNATed flows does not block');
});

test('iptables accept chain: rules per mapping, leftovers of the same mapping replaced, removal by owner', () => {
  const p = plan([IPT4]);
  const rule = acceptRule(p.mappings[0]!);
  assert.equal(
    rule,
    '-p tcp -m conntrack --ctstate DNAT --ctorigdstport 8080 --ctreplsrc 10.0.0.2 --ctreplsrcport 80 -m comment --comment "tpx-publish tcp *:8080 10.0.0.2:80 pid=42" -j ACCEPT',
  );
  const live = parseAcceptChain(
    `-N ${ACCEPT_CHAIN}\n-A ${ACCEPT_CHAIN} -p tcp -m conntrack --ctstate DNAT --ctorigdstport 8080 -m comment --comment "tpx-publish tcp *:8080 10.0.0.2:80 pid=7" -j ACCEPT\n` +
      `-A ${ACCEPT_CHAIN} -p udp -m comment --comment "tpx-publish udp *:53 10.0.0.9:53 pid=9" -j ACCEPT\n`,
  );
  assert.equal(live.length, 2);
  assert.equal(live[0]!.comment, 'tpx-publish tcp *:8080 10.0.0.2:80 pid=7');
  const script = renderAcceptApply(p, (m) => m.forwardAccept.includes('iptables-nft'), live);
  assert.equal(
    script,
    `*filter\n-D ${ACCEPT_CHAIN} ${live[0]!.spec}\n-A ${ACCEPT_CHAIN} ${rule}\nCOMMIT\n`,
    "the crashed pid 7's rule of the same mapping goes; pid 9's other mapping stays",
  );
  const r9 = planAcceptRemoval(live, 9);
  assert.equal(r9.removed, 1);
  assert.equal(r9.chainEmpty, false);
  assert.equal(planAcceptRemoval(live).chainEmpty, true);
  assert.equal(planAcceptRemoval(live, 1234).script, '');
});
