// Every doctor check against a fake system: a healthy Debian 12 root host, then one fault
// at a time. The fake records what was run, so tests also prove doctor only reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CHECKS, exitStatusOf, formatText, runDoctor, type CheckResult } from '../../src/doctor/index.js';
import { NFT_PROBES } from '../../src/doctor/checks.js';
import type { ProbeRun, SocketProbe, SystemProbe } from '../../src/kernel/probe.js';

const OK_RUN = (stdout = ''): ProbeRun => ({ status: 0, stdout, stderr: '' });
const ERR_RUN = (stderr: string, status = 1): ProbeRun => ({ status, stdout: '', stderr });

interface Fake extends SystemProbe {
  files: Map<string, string>;
  dirs: Map<string, string[]>;
  tools: Set<string>;
  runs: Map<string, ProbeRun>;
  sockets: Record<4 | 6, SocketProbe>;
  calls: string[];
}

const key = (tool: string, args: readonly string[], input?: string): string =>
  [tool, ...args].join(' ') +
  (input === undefined ? '' : ` <<${Object.entries(NFT_PROBES).find(([, v]) => v === input)?.[0] ?? 'input'}`);

const LIMITS = (soft: number, hard: number): string =>
  `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                 ${hard}                files\n`;

/** A healthy root host: nft, iptables-nft, no rules, sane sysctls, 20,000 fds. */
function healthy(): Fake {
  const files = new Map<string, string>([
    ['/proc/sys/net/netfilter/nf_conntrack_max', '262144\n'],
    ['/proc/sys/net/netfilter/nf_conntrack_count', '12\n'],
    ['/proc/sys/user/max_user_namespaces', '96364\n'],
    ['/proc/sys/net/ipv4/ip_forward', '0\n'],
    ['/proc/sys/net/ipv6/conf/all/forwarding', '0\n'],
    ['/proc/sys/net/bridge/bridge-nf-call-iptables', '0\n'],
    ['/proc/self/limits', LIMITS(20000, 20000)],
    ['/proc/sys/fs/nr_open', '1048576\n'],
  ]);
  for (const i of ['all', 'default', 'lo', 'eth0']) {
    files.set(`/proc/sys/net/ipv4/conf/${i}/rp_filter`, '0\n');
    files.set(`/proc/sys/net/ipv4/conf/${i}/route_localnet`, '0\n');
  }
  const dirs = new Map<string, string[]>([
    ['/proc/sys/net/ipv4/conf', ['all', 'default', 'lo', 'eth0']],
    ['/proc/net', ['nf_conntrack', 'dev', 'tcp']],
  ]);
  const tools = new Set([
    'nft',
    'iptables',
    'ip6tables',
    'iptables-restore',
    'iptables-nft-save',
    'ip6tables-nft-save',
    'iptables-legacy-save',
    'ip6tables-legacy-save',
    'ip',
  ]);
  const runs = new Map<string, ProbeRun>([
    ['nft list tables', OK_RUN('')],
    ['nft --version', OK_RUN('nftables v1.0.6 (Lester Gooch #5)\n')],
    ['nft -j list ruleset', OK_RUN('{"nftables": [{"metainfo": {"version": "1.0.6"}}]}')],
    ['iptables --version', OK_RUN('iptables v1.8.9 (nf_tables)\n')],
    ['ip6tables --version', OK_RUN('ip6tables v1.8.9 (nf_tables)\n')],
    ['iptables-nft-save', OK_RUN('')],
    ['ip6tables-nft-save', OK_RUN('')],
    [
      'ip -j -N -4 rule show',
      OK_RUN('[{"priority":0,"src":"all","table":"255"},{"priority":32766,"src":"all","table":"254"}]'),
    ],
    ['ip -j -N -6 rule show', OK_RUN('[{"priority":0,"src":"all","table":"255"}]')],
    ['ip -j -N -4 route show table all proto 116', OK_RUN('[]')],
    ['ip -j -N -6 route show table all proto 116', OK_RUN('[]')],
    ['ip -j link show type bridge', OK_RUN('[]')],
  ]);
  for (const name of Object.keys(NFT_PROBES)) runs.set(`nft -c -f - <<${name}`, OK_RUN());
  const calls: string[] = [];
  const fake: Fake = {
    files,
    dirs,
    tools,
    runs,
    sockets: { 4: { ok: true }, 6: { ok: true } },
    calls,
    uid: 0,
    readFile: (p) => files.get(p),
    listDir: (p) => dirs.get(p),
    hasTool: (t) => tools.has(t),
    run(tool, args, input) {
      const k = key(tool, args, input);
      calls.push(k);
      if (!tools.has(tool)) return undefined;
      const r = runs.get(k);
      if (!r) throw new Error(`fake: unexpected command ${k}`);
      return r;
    },
    transparentSocket: async (family) => fake.sockets[family],
  };
  return fake;
}

async function results(f: Fake): Promise<Map<string, CheckResult>> {
  return new Map((await runDoctor(f)).map((r) => [r.check, r]));
}

async function one(f: Fake, id: string): Promise<CheckResult> {
  const r = (await results(f)).get(id);
  assert.ok(r, `no result for ${id}`);
  return r;
}

test('healthy host: every check OK, exit 0, one result per check in order', async () => {
  const f = healthy();
  const res = await runDoctor(f);
  assert.deepEqual(
    res.map((r) => r.check),
    CHECKS.map((c) => c.id),
  );
  for (const r of res) {
    assert.equal(r.status, 'OK', `${r.check}: ${r.detail}`);
    assert.equal(r.fix, null);
    assert.ok(r.detail.length > 0);
  }
  assert.equal(exitStatusOf(res), 0);
  assert.match(formatText(res), new RegExp(`${CHECKS.length} checks: ${CHECKS.length} OK, 0 WARN, 0 FAIL`));
});

test('doctor only reads: every command it runs is a list, save, show, version or check-only (-c)', async () => {
  const f = healthy();
  await runDoctor(f);
  for (const c of f.calls) {
    assert.match(
      c,
      /^(nft (list tables|--version|-j list ruleset|-c -f - <<\w+)|i?p?6?tables(-nft|-legacy)?(-save| --version)|ip -j -N -[46] (rule show|route show table all proto 116))$/,
      c,
    );
    assert.doesNotMatch(c, / -t /, 'never names an iptables table (legacy would instantiate it)');
  }
  // Each distinct command runs once per doctor run (memoized), although several checks use it.
  assert.equal(new Set(f.calls).size, f.calls.length);
});

test('nftables: missing tool falls back to iptables (WARN); nothing at all is FAIL with exit 1', async () => {
  const f = healthy();
  f.tools.delete('nft');
  let r = await one(f, 'nftables');
  assert.equal(r.status, 'WARN');
  assert.match(r.fix!, /apt-get install nftables/);
  f.tools.delete('iptables-restore');
  const res = await runDoctor(f);
  r = res.find((x) => x.check === 'nftables')!;
  assert.equal(r.status, 'FAIL');
  assert.equal(exitStatusOf(res), 1);
});

test('nftables: not root is WARN (cannot check), kernel without nf_tables is FAIL', async () => {
  const f = healthy();
  f.runs.set('nft list tables', ERR_RUN('Operation not permitted (you must be root)\n'));
  assert.equal((await one(f, 'nftables')).status, 'WARN');
  f.runs.set('nft list tables', ERR_RUN('Error: Protocol not supported\n'));
  const r = await one(f, 'nftables');
  assert.equal(r.status, 'FAIL');
  assert.match(r.fix!, /CONFIG_NF_TABLES/);
});

test('tproxy: kernel refuses the check-only ruleset → WARN naming the kernel options; xt fallback without nft', async () => {
  const f = healthy();
  f.runs.set(
    'nft -c -f - <<tproxy',
    ERR_RUN('Error: Could not process rule: No such file or directory\ntproxy ip to :15001\n^^^^^\n'),
  );
  const r = await one(f, 'tproxy');
  assert.equal(r.status, 'WARN');
  assert.match(r.detail, /No such file or directory/);
  assert.match(r.fix!, /NFT_TPROXY/);
  const g = healthy();
  g.tools.delete('nft');
  assert.equal((await one(g, 'tproxy')).status, 'WARN');
  g.files.set('/proc/net/ip_tables_targets', 'REDIRECT\nTPROXY\nERROR\n');
  assert.equal((await one(g, 'tproxy')).status, 'OK');
  assert.equal((await one(g, 'redirect')).status, 'OK');
});

test('redirect: kernel without NAT is FAIL', async () => {
  const f = healthy();
  f.runs.set('nft -c -f - <<redirect', ERR_RUN('Error: Could not process rule: No such file or directory\n'));
  const r = await one(f, 'redirect');
  assert.equal(r.status, 'FAIL');
  assert.match(r.fix!, /NFT_REDIR/);
});

test('conntrack: missing is FAIL, nearly full is WARN', async () => {
  const f = healthy();
  f.runs.set('nft -c -f - <<conntrack', ERR_RUN('Error: Could not process rule: No such file or directory\n'));
  assert.equal((await one(f, 'conntrack')).status, 'FAIL');
  const g = healthy();
  g.files.set('/proc/sys/net/netfilter/nf_conntrack_count', '65000\n');
  g.files.set('/proc/sys/net/netfilter/nf_conntrack_max', '65536\n');
  const r = await one(g, 'conntrack');
  assert.equal(r.status, 'WARN');
  assert.match(r.fix!, /nf_conntrack_max=262144/);
});

test('ip-transparent: EPERM as non-root and as root without CAP_NET_ADMIN; IPv6 disabled is OK', async () => {
  const f = healthy();
  f.sockets[4] = { ok: false, code: 'EPERM', message: 'setsockopt failed: EPERM (errno 1): IP_TRANSPARENT' };
  let r = await one(f, 'ip-transparent');
  assert.equal(r.status, 'WARN');
  assert.match(r.fix!, /--cap-add NET_ADMIN/);
  f.uid = 1000;
  r = await one(f, 'ip-transparent');
  assert.match(r.detail, /not root/);
  const g = healthy();
  g.sockets[6] = { ok: false, code: 'EAFNOSUPPORT', message: 'socket failed: EAFNOSUPPORT' };
  r = await one(g, 'ip-transparent');
  assert.equal(r.status, 'OK');
  assert.match(r.detail, /IPv6 is disabled/);
});

test('user-namespaces: missing, 0, unprivileged clone off', async () => {
  const f = healthy();
  f.files.set('/proc/sys/user/max_user_namespaces', '0\n');
  assert.equal((await one(f, 'user-namespaces')).status, 'WARN');
  f.files.delete('/proc/sys/user/max_user_namespaces');
  assert.equal((await one(f, 'user-namespaces')).status, 'WARN');
  const g = healthy();
  g.files.set('/proc/sys/kernel/unprivileged_userns_clone', '0\n');
  assert.match((await one(g, 'user-namespaces')).fix!, /unprivileged_userns_clone=1/);
});

const LEGACY_DOCKER =
  '*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -j DOCKER\n-A DOCKER -i docker0 -j RETURN\nCOMMIT\n';

test('iptables-backend: iptables-nft while legacy tables hold rules is WARN; legacy save only runs when legacy tables exist', async () => {
  const f = healthy();
  await runDoctor(f);
  assert.ok(!f.calls.includes('iptables-legacy-save'), 'no legacy table: the legacy tool is not even run');
  f.files.set('/proc/net/ip_tables_names', 'nat\n');
  f.runs.set('iptables-legacy-save', OK_RUN(LEGACY_DOCKER));
  const r = await one(f, 'iptables-backend');
  assert.equal(r.status, 'WARN');
  assert.match(r.detail, /2 rule\(s\) live in legacy tables \(v4: nat/);
  assert.match(r.fix!, /update-alternatives --set iptables \/usr\/sbin\/iptables-legacy/);
  const fr = await one(f, 'firewall-rules');
  assert.equal(fr.status, 'OK');
  assert.match(fr.detail, /iptables-legacy: 2 rule\(s\)/);
});

test('iptables-backend: empty legacy tables are no mismatch; legacy iptables with nft-side rules is', async () => {
  const f = healthy();
  f.files.set('/proc/net/ip_tables_names', 'mangle\n');
  f.runs.set('iptables-legacy-save', OK_RUN('*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n'));
  assert.equal((await one(f, 'iptables-backend')).status, 'OK');
  const g = healthy();
  g.runs.set('iptables --version', OK_RUN('iptables v1.8.9 (legacy)\n'));
  g.runs.set('ip6tables --version', OK_RUN('ip6tables v1.8.9 (legacy)\n'));
  g.runs.set('iptables-nft-save', OK_RUN('*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n'));
  const r = await one(g, 'iptables-backend');
  assert.equal(r.status, 'WARN');
  assert.match(r.detail, /iptables-legacy, but 1 rule\(s\) live in iptables-nft tables/);
});

test('iptables-backend: iptables and ip6tables on different backends', async () => {
  const f = healthy();
  f.runs.set('ip6tables --version', OK_RUN('ip6tables v1.8.9 (legacy)\n'));
  const r = await one(f, 'iptables-backend');
  assert.equal(r.status, 'WARN');
  assert.match(r.fix!, /ip6tables-nft/);
});

test('firewall-rules: counts native nft rules', async () => {
  const f = healthy();
  f.runs.set(
    'nft -j list ruleset',
    OK_RUN(
      JSON.stringify({
        nftables: [
          { table: { family: 'inet', name: 'filter' } },
          { rule: { family: 'inet', table: 'filter' } },
          { rule: { family: 'inet', table: 'filter' } },
        ],
      }),
    ),
  );
  const r = await one(f, 'firewall-rules');
  assert.equal(r.status, 'OK');
  assert.match(r.detail, /nftables: 1 table\(s\), 2 rule\(s\): inet filter \(2\)/);
  assert.match(r.detail, /--firewall auto` would use nft/);
});

test('ip-forward: informational OK either way', async () => {
  const f = healthy();
  assert.match((await one(f, 'ip-forward')).detail, /turns forwarding on while gateway/);
  f.files.set('/proc/sys/net/ipv4/ip_forward', '1\n');
  f.files.set('/proc/sys/net/ipv6/conf/all/forwarding', '1\n');
  assert.equal((await one(f, 'ip-forward')).status, 'OK');
});

test('bridge-nf-call-iptables: WARN only with a bridge present', async () => {
  const f = healthy();
  f.files.set('/proc/sys/net/bridge/bridge-nf-call-iptables', '1\n');
  assert.equal((await one(f, 'bridge-nf-call-iptables')).status, 'OK');
  // /sys/class/net is the mount's namespace (the host's under nsenter --net=): never read
  f.dirs.set('/sys/class/net', ['lo', 'eth0', 'hostbr']);
  f.dirs.set('/sys/class/net/hostbr/bridge', ['stp_state']);
  assert.equal(
    (await one(f, 'bridge-nf-call-iptables')).status,
    'OK',
    'a bridge seen only in /sys is not in this netns',
  );
  f.runs.set(
    'ip -j link show type bridge',
    OK_RUN('[{"ifindex":3,"ifname":"br0","flags":["BROADCAST"],"mtu":1500,"link_type":"ether"}]'),
  );
  const r = await one(f, 'bridge-nf-call-iptables');
  assert.equal(r.status, 'WARN');
  assert.match(r.detail, /br0/);
  assert.doesNotMatch(r.detail, /hostbr/);
  assert.match(r.fix!, /bridge-nf-call-iptables=0/);
  f.files.delete('/proc/sys/net/bridge/bridge-nf-call-iptables');
  assert.match((await one(f, 'bridge-nf-call-iptables')).detail, /br_netfilter is not loaded/);
});

test('route-localnet: 1 anywhere is WARN naming the interface', async () => {
  const f = healthy();
  f.files.set('/proc/sys/net/ipv4/conf/eth0/route_localnet', '1\n');
  const r = await one(f, 'route-localnet');
  assert.equal(r.status, 'WARN');
  assert.match(r.fix!, /net\.ipv4\.conf\.eth0\.route_localnet=0/);
});

test('rp-filter: all=1 is WARN with loose-mode fix; per-interface 1 too; 2 is fine', async () => {
  const f = healthy();
  f.files.set('/proc/sys/net/ipv4/conf/all/rp_filter', '1\n');
  let r = await one(f, 'rp-filter');
  assert.equal(r.status, 'WARN');
  assert.match(r.detail, /strict \(1\) on eth0, lo/);
  assert.match(r.fix!, /net\.ipv4\.conf\.all\.rp_filter=2/);
  const g = healthy();
  g.files.set('/proc/sys/net/ipv4/conf/eth0/rp_filter', '1\n');
  r = await one(g, 'rp-filter');
  assert.equal(r.status, 'WARN');
  assert.match(r.fix!, /net\.ipv4\.conf\.eth0\.rp_filter=2/);
  assert.doesNotMatch(r.fix!, /conf\.all\./);
  const h = healthy();
  for (const i of ['all', 'default', 'lo', 'eth0']) h.files.set(`/proc/sys/net/ipv4/conf/${i}/rp_filter`, '2\n');
  assert.equal((await one(h, 'rp-filter')).status, 'OK');
});

test('fd-limit: OK at 20,000, WARN below, FAIL below 1024', async () => {
  const f = healthy();
  assert.match((await one(f, 'fd-limit')).detail, /about 9968 proxied connections/);
  f.files.set('/proc/self/limits', LIMITS(4096, 4096));
  assert.equal((await one(f, 'fd-limit')).status, 'WARN');
  f.files.set('/proc/self/limits', LIMITS(256, 512));
  const res = await runDoctor(f);
  assert.equal(res.find((r) => r.check === 'fd-limit')!.status, 'FAIL');
  assert.equal(exitStatusOf(res), 1);
  f.files.set('/proc/self/limits', 'Max open files            unlimited            unlimited            files\n');
  assert.equal((await one(f, 'fd-limit')).status, 'OK');
});

test('leftover-rules: nft tables, TRANPROXY chains, proto-116 rules and routes are WARN with the remove command', async () => {
  const f = healthy();
  f.runs.set('nft list tables', OK_RUN('table inet tranproxy\ntable inet tranproxy_publish\ntable ip filter\n'));
  f.runs.set(
    'iptables-nft-save',
    OK_RUN(LEGACY_DOCKER.replace('COMMIT', ':TRANPROXY_OUTPUT - [0:0]\n-A OUTPUT -j TRANPROXY_OUTPUT\nCOMMIT')),
  );
  f.runs.set(
    'ip -j -N -4 rule show',
    OK_RUN(
      '[{"priority":0,"src":"all","table":"255"},{"priority":32765,"src":"all","fwmark":"0x1e7","table":"233","protocol":"116"}]',
    ),
  );
  f.runs.set(
    'ip -j -N -4 route show table all proto 116',
    OK_RUN('[{"type":"2","dst":"default","dev":"lo","table":"233"}]'),
  );
  const r = await one(f, 'leftover-rules');
  assert.equal(r.status, 'WARN');
  assert.match(r.detail, /nft table inet tranproxy;/);
  assert.match(r.detail, /nft table inet tranproxy_publish/);
  assert.match(r.detail, /iptables-nft-save: chains nat\/TRANPROXY_OUTPUT/);
  assert.match(r.detail, /jumps from nat\/OUTPUT/);
  assert.match(r.detail, /ip -4 rule pref 32765 fwmark 0x1e7 lookup 233 proto 116/);
  assert.match(r.detail, /ip -4 route default dev lo table 233 proto 116/);
  assert.match(r.fix!, /tranproxy rules remove/);
  assert.match(r.fix!, /tranproxy publish --remove-all/);
});

test('leftover-rules: unreadable state is WARN (cannot say none), not OK', async () => {
  const f = healthy();
  f.uid = 1000;
  f.runs.set('nft list tables', ERR_RUN('Operation not permitted (you must be root)\n'));
  const r = await one(f, 'leftover-rules');
  assert.equal(r.status, 'WARN');
  assert.match(r.detail, /none found, but not everything could be read/);
});

test('a check that throws is reported as WARN, the others still run', async () => {
  const f = healthy();
  f.runs.delete('nft --version'); // the fake throws on unknown commands
  const res = await runDoctor(f);
  const r = res.find((x) => x.check === 'nftables')!;
  assert.equal(r.status, 'WARN');
  assert.match(r.detail, /could not run/);
  assert.equal(res.length, CHECKS.length);
});

test('formatText puts the fix under a WARN line', async () => {
  const f = healthy();
  f.files.set('/proc/sys/net/ipv4/conf/all/rp_filter', '1\n');
  const text = formatText(await runDoctor(f));
  assert.match(text, /^WARN  rp-filter .*\n +fix: loose mode/m);
  assert.match(text, /1 WARN, 0 FAIL\n$/);
});

test('forward-drop: a FORWARD policy drop (nft chain, iptables-nft, legacy) is a WARN once forwarding is on', async () => {
  const f = healthy();
  assert.equal((await one(f, 'forward-drop')).status, 'OK');
  const ruleset = JSON.stringify({
    nftables: [
      {
        chain: {
          family: 'ip',
          table: 'filter',
          name: 'FORWARD',
          type: 'filter',
          hook: 'forward',
          prio: 0,
          policy: 'drop',
        },
      },
      { chain: { family: 'inet', table: 'fw', name: 'fwd', type: 'filter', hook: 'forward', prio: 0, policy: 'drop' } },
    ],
  });
  f.runs.set('nft -j list ruleset', OK_RUN(ruleset));
  f.files.set('/proc/net/ip6_tables_names', 'filter\n');
  f.runs.set(
    'ip6tables-legacy-save',
    OK_RUN('*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n'),
  );
  const off = await one(f, 'forward-drop');
  assert.equal(off.status, 'OK', 'forwarding off: nothing routed is lost');
  assert.match(
    off.detail,
    /iptables FORWARD policy DROP, nft chain inet fw fwd \(policy drop\), ip6tables-legacy FORWARD policy DROP; forwarding is off/,
  );
  f.files.set('/proc/sys/net/ipv4/ip_forward', '1\n');
  const r = await one(f, 'forward-drop');
  assert.equal(r.status, 'WARN');
  assert.equal(
    r.detail.startsWith('iptables FORWARD policy DROP; nft chain inet fw fwd (policy drop): forwarded traffic'),
    true,
    r.detail,
  );
  assert.match(r.fix!, /nft insert rule inet fw fwd ct status dnat accept/);
});
