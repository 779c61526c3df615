// Renderers against golden files (UPDATE_GOLDEN=1 rewrites them), plus the semantics and
// validation the goldens alone would not explain. Pure: no root, no tools.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderPlan } from '../../src/firewall/apply.js';
import { normalizeCidrs } from '../../src/firewall/cidr.js';
import type { CapturePlan } from '../../src/firewall/plan.js';
import { jumpCommands, parseSave, reconcileRestore, renderIptables } from '../../src/firewall/render-iptables.js';
import { renderNft, renderNftRemove } from '../../src/firewall/render-nft.js';
import { routingCommands, routingFor } from '../../src/firewall/routes.js';
import { UsageError } from '../../src/errors.js';
import { BASE, PLANS } from '../golden/plans.js';
import { golden as checkGolden } from '../helpers/golden.js';

/** Compare with test/golden/NAME; '' means "no file expected". */
const golden = (name: string, actual: string): void => checkGolden(name, actual, { emptyMeansAbsent: true });

function iptablesText(plan: CapturePlan, family: 'ipv4' | 'ipv6'): string {
  const r = renderIptables(plan, family);
  return r.restore
    ? `${r.restore}# jumps\n${jumpCommands(r)
        .map((c) => `# ${c}`)
        .join('\n')}\n`
    : '';
}

for (const [name, plan] of Object.entries(PLANS)) {
  test(`golden: ${name}`, () => {
    golden(`${name}.nft`, renderNft(plan));
    golden(`${name}.v4.iptables`, iptablesText(plan, 'ipv4'));
    golden(`${name}.v6.iptables`, iptablesText(plan, 'ipv6'));
    const routes = routingCommands(routingFor(plan));
    golden(`${name}.routes`, routes.length ? `${routes.join('\n')}\n` : '');
  });
}

test('rendering is deterministic and independent of input order', () => {
  const p = PLANS['tproxy-both']!;
  const shuffled: CapturePlan = {
    ...p,
    families: [...p.families].reverse(),
    protocols: [...p.protocols].reverse(),
    includePorts: [...p.includePorts].reverse(),
    inInterfaces: [...p.inInterfaces].reverse(),
    sourceCidrs: [...p.sourceCidrs].reverse(),
  };
  assert.equal(renderNft(shuffled), renderNft(p));
  assert.equal(renderIptables(shuffled, 'ipv4').restore, renderIptables(p, 'ipv4').restore);
});

test('nft script is one atomic replace of our table only', () => {
  const text = renderNft(PLANS['redirect-output']!);
  const lines = text.split('\n').filter((l) => !l.startsWith('#'));
  assert.deepEqual(lines.slice(0, 3), [
    'table inet tranproxy',
    'delete table inet tranproxy',
    'table inet tranproxy {',
  ]);
  assert.deepEqual(
    [...text.matchAll(/table (\S+) (\S+)/g)].map((m) => `${m[1]} ${m[2]}`),
    Array(3).fill('inet tranproxy'),
  );
  assert.doesNotMatch(text, /flush ruleset/, 'no other table is touched');
  assert.equal(renderNftRemove(), 'table inet tranproxy\ndelete table inet tranproxy\n');
});

/** Index of the first rule line containing `needle`, failing when absent. */
function at(text: string, needle: string): number {
  const i = text.split('\n').findIndex((l) => l.includes(needle));
  assert.ok(i >= 0, `missing: ${needle}\n${text}`);
  return i;
}

test('REDIRECT output: loopback, uid, gid, mark, excludes all return before the redirect', () => {
  const plan = PLANS['redirect-output-dualstack']!;
  const nft = renderNft(plan);
  const redirect = at(nft, 'redirect to :15001');
  for (const n of [
    'oifname "lo" return',
    'meta skuid { 0, 1337 } return',
    'meta mark 0x539 return',
    'ip daddr 169.254.169.254/32 return',
    'ip6 daddr fd00:ec2::254/128 return',
    'tcp dport 8022 return',
  ]) {
    assert.ok(at(nft, n) < redirect, n);
  }
  assert.match(nft, /tcp dport \{ 80, 443, 8000-8080 \} redirect to :15001/);
  const ipt = renderIptables(plan, 'ipv6').restore;
  const r = at(ipt, '-j REDIRECT --to-ports 15001');
  for (const n of [
    '-o lo -j RETURN',
    '--uid-owner 0 -j RETURN',
    '--uid-owner 1337 -j RETURN',
    '-m mark --mark 0x539 -j RETURN',
    '-d fd00:ec2::254/128 -j RETURN',
    '--dport 8022 -j RETURN',
  ]) {
    assert.ok(at(ipt, n) < r, n);
  }
  assert.doesNotMatch(ipt, /169\.254/, 'IPv4 CIDRs never reach ip6tables');
});

test('includes of one family only: the other family is not captured', () => {
  const plan = PLANS['redirect-output-include-v4']!;
  const nft = renderNft(plan);
  assert.ok(at(nft, 'meta nfproto ipv6 return') < at(nft, 'redirect to'));
  // 10.1.0.0/16 lies inside 10.0.0.0/8; 192.168.7.9/24 has its host bits cleared.
  assert.match(nft, /ip daddr != \{ 10\.0\.0\.0\/8, 192\.168\.7\.0\/24 \} return/);
  const v6 = renderIptables(plan, 'ipv6');
  assert.doesNotMatch(v6.restore, /REDIRECT/, 'no IPv6 capture rule at all');
  assert.match(v6.restore, /-A TRANPROXY_OUTPUT -j RETURN/);
  const v4 = renderIptables(plan, 'ipv4');
  assert.match(v4.restore, /-A TRANPROXY_OUTPUT -d 10\.0\.0\.0\/8 -j TRANPROXY_OUTPUT_DST/);
  assert.match(v4.restore, /-A TRANPROXY_OUTPUT_DST -p tcp -j REDIRECT --to-ports 15001/);
});

test('families outside the plan are not rendered for iptables and returned early in nft', () => {
  const plan = PLANS['redirect-output']!;
  assert.deepEqual(renderIptables(plan, 'ipv6'), { family: 'ipv6', chains: [], jumps: [], restore: '' });
  assert.ok(at(renderNft(plan), 'meta nfproto ipv6 return') < at(renderNft(plan), 'redirect to'));
  const text = renderPlan(plan, 'iptables');
  assert.match(text, /iptables -t nat -I OUTPUT 1 -j TRANPROXY_OUTPUT/);
  assert.doesNotMatch(text, /ip6tables/);
});

test('REDIRECT prerouting: local destinations, interfaces and sources filter before capture', () => {
  const plan = PLANS['redirect-prerouting']!;
  const nft = renderNft(plan);
  assert.match(nft, /type nat hook prerouting priority dstnat/);
  const r = at(nft, 'redirect to');
  assert.ok(at(nft, 'fib daddr type { local, broadcast, multicast } return') < r);
  assert.ok(at(nft, 'iifname != { "br0", "veth-lan" } return') < r);
  assert.ok(at(nft, 'ip saddr != 10.88.0.0/16 return') < r);
  assert.doesNotMatch(nft, /skuid|oifname/, 'uid/loopback filters are output-only');
  const ipt = renderIptables(plan, 'ipv4');
  assert.deepEqual(
    ipt.chains.map((c) => c.name),
    ['TRANPROXY_PREROUTING', 'TRANPROXY_PREROUTING_IIF', 'TRANPROXY_PREROUTING_SRC'],
  );
  assert.match(ipt.restore, /-A TRANPROXY_PREROUTING -i br0 -j TRANPROXY_PREROUTING_IIF/);
  assert.match(ipt.restore, /-A TRANPROXY_PREROUTING_IIF -s 10\.88\.0\.0\/16 -j TRANPROXY_PREROUTING_SRC/);
  assert.match(ipt.restore, /-A TRANPROXY_PREROUTING_SRC -p tcp -j REDIRECT --to-ports 15001/);
  assert.deepEqual(ipt.jumps, [{ table: 'nat', chain: 'PREROUTING', target: 'TRANPROXY_PREROUTING' }]);
});

test('TPROXY both: transparent sockets first, then lo-rerouted host traffic before any filter', () => {
  const plan = PLANS['tproxy-both']!;
  const nft = renderNft(plan);
  const pre = nft.slice(nft.indexOf('chain mangle_prerouting'), nft.indexOf('chain mangle_output'));
  assert.equal(at(pre, 'socket transparent 1 meta mark set 0x1 accept'), 2);
  const lo = at(pre, 'iifname "lo" meta mark 0x1 meta nfproto ipv6 udp dport { 80, 443 } tproxy ip6');
  assert.ok(lo < at(pre, 'iifname != { "eth1", "wg0" } return'));
  assert.ok(lo < at(pre, 'fib daddr type'));
  for (const f of ['ip', 'ip6'])
    for (const proto of ['tcp', 'udp']) {
      assert.match(pre, new RegExp(`${proto} dport \\{ 80, 443 \\} tproxy ${f} to :15001 meta mark set 0x1 accept`));
    }
  const out = nft.slice(nft.indexOf('chain mangle_output'));
  assert.match(out, /type route hook output priority mangle/);
  const mark = at(out, 'th dport { 80, 443 } meta mark set 0x1');
  for (const n of [
    'oifname "lo" return',
    'meta skuid 1337 return',
    'meta skgid 1337 return',
    'meta mark 0x539 return',
    'fib daddr type',
  ]) {
    assert.ok(at(out, n) < mark, n);
  }
  const ipt = renderIptables(plan, 'ipv4');
  assert.match(ipt.restore, /-A TRANPROXY_MANGLE_PRE -p tcp -m socket --transparent -j TRANPROXY_DIVERT\n/);
  assert.match(ipt.restore, /-A TRANPROXY_DIVERT -j MARK --set-mark 0x1\n/);
  assert.ok(at(ipt.restore, '-i lo -m mark --mark 0x1 -p udp') < at(ipt.restore, '-i eth1 -j'));
  assert.deepEqual(
    ipt.jumps.map((j) => `${j.table}/${j.chain}`),
    ['mangle/PREROUTING', 'mangle/OUTPUT'],
  );
  assert.deepEqual(routingFor(plan), {
    rules: [
      { family: 'ipv4', fwmark: 1, fwmask: 0xffffffff, table: 100 },
      { family: 'ipv6', fwmark: 1, fwmask: 0xffffffff, table: 100 },
    ],
    routes: [
      { family: 'ipv4', table: 100 },
      { family: 'ipv6', table: 100 },
    ],
  });
});

test('masked marks: only the mask bits are matched and set, in nft, iptables and ip rule', () => {
  const plan = PLANS['tproxy-masked']!;
  const nft = renderNft(plan);
  assert.match(nft, /meta mark & 0x80 == 0x80 return/);
  assert.match(nft, /socket transparent 1 meta mark set meta mark & 0xfffffffe \| 0x1 accept/);
  assert.match(nft, /iifname "lo" meta mark & 0x1 == 0x1 meta nfproto ipv4/);
  assert.doesNotMatch(nft, /meta mark set 0x1\b/, 'never overwrites the other bits');
  const ipt = renderIptables(plan, 'ipv4').restore;
  assert.match(ipt, /-j MARK --set-xmark 0x1\/0x1\n/);
  assert.match(ipt, /-m mark --mark 0x80\/0x80 -j RETURN/);
  assert.match(ipt, /--tproxy-mark 0x1\/0x1/);
  assert.deepEqual(routingCommands(routingFor(plan)), [
    'ip -4 rule add pref 90 fwmark 0x1/0x1 lookup 100 protocol 116',
    'ip -4 route replace local 0.0.0.0/0 dev lo table 100 proto 116',
  ]);
});

test('TPROXY output alone: prerouting keeps only the socket and lo rules', () => {
  const nft = renderNft(PLANS['tproxy-output']!);
  const pre = nft.slice(nft.indexOf('chain mangle_prerouting'), nft.indexOf('chain mangle_output'));
  assert.equal(pre.split('\n').filter((l) => l.includes('comment')).length, 2);
  assert.match(pre, /iifname "lo" meta mark 0x2a meta nfproto ipv4 meta l4proto tcp tproxy ip to :15001/);
  assert.deepEqual(routingCommands(routingFor(PLANS['tproxy-output']!)), [
    'ip -4 rule add fwmark 0x2a lookup 4242 protocol 116',
    'ip -4 route replace local 0.0.0.0/0 dev lo table 4242 proto 116',
  ]);
  assert.deepEqual(routingFor(PLANS['redirect-output']!), { rules: [], routes: [] });
});

test('multiport is split into chunks of at most 15 ports', () => {
  const ipt = renderIptables(PLANS['many-ports']!, 'ipv4').restore;
  const rules = ipt.split('\n').filter((l) => l.includes('REDIRECT'));
  assert.equal(rules.length, 2);
  for (const r of rules) {
    const list = /--dports (\S+)/.exec(r)![1]!.split(',');
    assert.ok(list.reduce((w, x) => w + (x.includes(':') ? 2 : 1), 0) <= 15, r);
  }
  assert.match(rules.join('\n'), /2000:2100/);
  assert.match(
    renderIptables({ ...BASE, includePorts: [{ from: 80, to: 80 }] }, 'ipv4').restore,
    /-p tcp --dport 80 -j REDIRECT/,
  );
});

test('port ranges are merged and CIDRs normalised', () => {
  const nft = renderNft({
    ...BASE,
    includePorts: [
      { from: 90, to: 100 },
      { from: 80, to: 95 },
      { from: 101, to: 101 },
      { from: 80, to: 80 },
    ],
  });
  assert.match(nft, /tcp dport 80-101 redirect/);
  assert.deepEqual(
    normalizeCidrs(
      [
        { family: 'ipv6', text: '2001:DB8:0:0:1::1/64' },
        { family: 'ipv6', text: '2001:db8::/32' },
      ],
      'x',
    ),
    [{ family: 'ipv6', text: '2001:db8::/32' }],
  );
});

test('invalid plans are refused with UsageError by every renderer', () => {
  const bad: [string, Partial<CapturePlan>][] = [
    ['port 0', { proxyPort: 0 }],
    ['port 65536', { includePorts: [{ from: 65536, to: 65536 }] }],
    ['reversed range', { excludePorts: [{ from: 90, to: 80 }] }],
    ['fractional port', { proxyPort: 80.5 }],
    ['zero bypass mark', { bypassMark: 0 }],
    ['zero tproxy mark', { mode: 'tproxy', tproxyMark: 0 }],
    ['same marks', { mode: 'tproxy', tproxyMark: 0x539 }],
    ['main table', { mode: 'tproxy', tproxyTable: 254 }],
    ['mark outside its mask', { mode: 'tproxy', tproxyMark: 0x3, tproxyMask: 0x1 }],
    ['zero mask', { bypassMask: 0 }],
    [
      'bypass mark matches the masked tproxy mark',
      { mode: 'tproxy', tproxyMark: 0x1, tproxyMask: 0x1, bypassMark: 0x539 },
    ],
    ['rule pref after main', { mode: 'tproxy', rulePref: 32766 }],
    ['rule pref 0', { mode: 'tproxy', rulePref: 0 }],
    ['udp with redirect', { protocols: ['tcp', 'udp'] }],
    ['no capture point', { capture: [] }],
    ['no family', { families: [] }],
    ['bad CIDR', { excludeDestinations: [{ family: 'ipv4', text: '10.0.0.300/8' }] }],
    ['family mismatch', { includeDestinations: [{ family: 'ipv4', text: 'fd00::/8' }] }],
    ['bad interface', { inInterfaces: ['eth0"; flush ruleset; "'] }],
    ['long interface', { inInterfaces: ['a-very-long-ifname'] }],
    ['negative uid', { excludeUids: [-1] }],
  ];
  for (const [what, patch] of bad) {
    const plan = { ...BASE, ...patch } as CapturePlan;
    assert.throws(() => renderNft(plan), UsageError, `nft: ${what}`);
    assert.throws(() => renderIptables(plan, 'ipv4'), UsageError, `iptables: ${what}`);
    assert.throws(() => renderPlan(plan, 'iptables'), UsageError, `renderPlan: ${what}`);
  }
});

test('renderPlan: nft script still parses (routes are comments); iptables shows both families', () => {
  const nft = renderPlan(PLANS['tproxy-both']!, 'nft');
  assert.ok(nft.startsWith(renderNft(PLANS['tproxy-both']!)));
  assert.match(nft, /^# ip -6 route replace local ::\/0 dev lo table 100 proto 116$/m);
  assert.doesNotMatch(nft, /^ip /m);
  const ipt = renderPlan(PLANS['tproxy-both']!, 'iptables');
  assert.match(ipt, /ip6tables-restore --noflush/);
  assert.match(ipt, /^ip6tables -t mangle -I PREROUTING 1 -j TRANPROXY_MANGLE_PRE$/m);
  assert.match(ipt, /^ip -4 rule add fwmark 0x1 lookup 100 protocol 116$/m);
});

const LIVE = `# Generated by iptables-save
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [3:180]
:DOCKER - [0:0]
:TRANPROXY_OUTPUT - [0:0]
:TRANPROXY_OUTPUT_DST - [0:0]
-A OUTPUT -j TRANPROXY_OUTPUT
-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT -j TRANPROXY_OUTPUT
-A TRANPROXY_OUTPUT -d 10.0.0.0/8 -j TRANPROXY_OUTPUT_DST
-A TRANPROXY_OUTPUT_DST -p tcp -j REDIRECT --to-ports 15001
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:TRANPROXY_MANGLE_PRE - [0:0]
-A PREROUTING -p tcp -j TRANPROXY_MANGLE_PRE
COMMIT
*filter
:INPUT ACCEPT [0:0]
-A INPUT -j ACCEPT
COMMIT
`;

test('reconcile: flushes ours, drops duplicate and stale jumps and chains, keeps others', () => {
  const text = reconcileRestore(renderIptables(PLANS['redirect-output']!, 'ipv4'), parseSave(LIVE));
  assert.equal(
    text,
    [
      '*nat',
      ':TRANPROXY_OUTPUT - [0:0]',
      ':TRANPROXY_OUTPUT_DST - [0:0]',
      '-D OUTPUT -j TRANPROXY_OUTPUT', // the duplicate; the first jump is kept
      '-X TRANPROXY_OUTPUT_DST',
      '-A TRANPROXY_OUTPUT ! -p tcp -j RETURN',
      '-A TRANPROXY_OUTPUT -o lo -j RETURN',
      '-A TRANPROXY_OUTPUT -m owner --uid-owner 1337 -j RETURN',
      '-A TRANPROXY_OUTPUT -m owner --gid-owner 1337 -j RETURN',
      '-A TRANPROXY_OUTPUT -m mark --mark 0x539 -j RETURN',
      '-A TRANPROXY_OUTPUT -p tcp -j REDIRECT --to-ports 15001',
      'COMMIT',
      '*mangle',
      ':TRANPROXY_MANGLE_PRE - [0:0]',
      '-D PREROUTING -p tcp -j TRANPROXY_MANGLE_PRE',
      '-X TRANPROXY_MANGLE_PRE',
      'COMMIT',
      '',
    ].join('\n'),
  );
});

test('reconcile: inserts missing jumps at the head; removal and no-op cases', () => {
  const fresh = reconcileRestore(
    renderIptables(PLANS['tproxy-output']!, 'ipv4'),
    parseSave('*mangle\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n'),
  );
  assert.match(fresh, /^-I PREROUTING 1 -j TRANPROXY_MANGLE_PRE$/m);
  assert.match(fresh, /^-I OUTPUT 1 -j TRANPROXY_MANGLE_OUT$/m);
  assert.ok(
    fresh.indexOf('-I OUTPUT') > fresh.indexOf('-A TRANPROXY_MANGLE_OUT'),
    'jump only after the chain is filled',
  );
  const removal = reconcileRestore(undefined, parseSave(LIVE));
  assert.doesNotMatch(removal, /^-[AI] /m);
  assert.equal(removal.match(/^-D OUTPUT -j TRANPROXY_OUTPUT$/gm)?.length, 2);
  assert.match(removal, /^-X TRANPROXY_OUTPUT$/m);
  assert.doesNotMatch(removal, /DOCKER|filter/, 'foreign chains and tables untouched');
  assert.equal(reconcileRestore(undefined, parseSave('*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j DOCKER\nCOMMIT\n')), '');
});
