// The checks of `tranproxy doctor`, as data. Each reads the system through a SystemProbe
// (read-only: /proc, /sys, `nft list`, `nft -c` check-only transactions, `*-save` dumps,
// `ip rule show`, socket options on an unbound socket) and says OK, WARN or FAIL with the fix.
import {
  describeDrop,
  dropsFamily,
  forwardDropFromLegacySave,
  forwardDropsFromNft,
  type ForwardDrop,
} from '../firewall/forward-drop.js';
import { NFT_TABLE } from '../firewall/plan.js';
import { ROUTE_PROTO } from '../firewall/routes.js';
import type { SystemProbe } from '../kernel/probe.js';
import { PUBLISH_TABLE } from '../publish/plan.js';
import {
  classifyNftError,
  firstLines,
  iptablesVariant,
  legacyTableNames,
  parseIpJson,
  parseNftJsonRuleset,
  parseNftTables,
  parseOpenFilesLimit,
  strictRpFilter,
  summarizeSave,
  sysctlInt,
  type IpRuleEntry,
  type SaveSummary,
} from './interpret.js';
import { fail, ok, warn, type Check, type Verdict } from './types.js';

/** Below this hard limit the default --max-connections (8,000, two fds each) cannot be reached. */
export const FD_WARN_BELOW = 20_000;
/** Below this the proxy can hold only a few hundred connections. */
export const FD_FAIL_BELOW = 1024;

const AS_ROOT = 'run `tranproxy doctor` as root (or with CAP_NET_ADMIN): applying rules needs it too';

// ── nft check-only probes ────────────────────────────────────────────────────
// `nft -c -f -` validates a transaction in the kernel and applies nothing. The table name is
// one tranproxy never uses, so even a misread of -c could not touch real rules.

const PROBE_TABLE = 'tranproxy_doctor_probe';

export const NFT_PROBES = {
  tproxy: `table inet ${PROBE_TABLE} {
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    meta l4proto tcp socket transparent 1 meta mark set 0x1e7 accept
    fib daddr type { local, broadcast, multicast } return
    meta nfproto ipv4 tcp dport 80 tproxy ip to :15001 meta mark set 0x1e7 accept
    meta nfproto ipv6 tcp dport 80 tproxy ip6 to :15001 meta mark set 0x1e7 accept
  }
}
`,
  redirect: `table inet ${PROBE_TABLE} {
  chain out {
    type nat hook output priority -100; policy accept;
    meta skuid 1337 return
    meta skgid 1337 return
    meta mark 0x539 return
    tcp dport 80 redirect to :15001
  }
}
`,
  conntrack: `table inet ${PROBE_TABLE} {
  chain in {
    type filter hook input priority 0; policy accept;
    ct state established,related accept
  }
}
`,
} as const;

type NftCheck = { kind: 'ok' } | { kind: 'no-nft' } | { kind: 'permission' | 'unsupported' | 'other'; message: string };

function nftCheck(p: SystemProbe, ruleset: string): NftCheck {
  const r = p.run('nft', ['-c', '-f', '-'], ruleset);
  if (!r) return { kind: 'no-nft' };
  if (r.status === 0) return { kind: 'ok' };
  return { kind: classifyNftError(r.stderr), message: firstLines(r.stderr) };
}

/** Loaded x_tables extensions (legacy/nft-compat iptables), e.g. /proc/net/ip_tables_targets. */
function xtLoaded(p: SystemProbe, file: string, name: string): boolean {
  return (p.readFile(file) ?? '').split('\n').some((l) => l.trim() === name);
}

// ── iptables dumps, shared by several checks (the runner memoizes probe.run) ──

type Variant = 'nf_tables' | 'legacy';
type Fam = 'v4' | 'v6';

interface Dump {
  tool: string;
  /** undefined: could not be read (see error). */
  summary?: SaveSummary;
  error?: string;
}

const SAVE_TOOLS: Record<Variant, Record<Fam, string>> = {
  legacy: { v4: 'iptables-legacy-save', v6: 'ip6tables-legacy-save' },
  nf_tables: { v4: 'iptables-nft-save', v6: 'ip6tables-nft-save' },
};
const LEGACY_NAMES: Record<Fam, string> = { v4: '/proc/net/ip_tables_names', v6: '/proc/net/ip6_tables_names' };
const EMPTY: SaveSummary = { tables: [], rules: 0, foreignRules: 0, tranproxyChains: [], tranproxyJumps: [] };

function saveDump(p: SystemProbe, tool: string): Dump {
  const r = p.run(tool, []);
  if (!r) return { tool, error: `${tool} is not installed` };
  if (r.status !== 0) return { tool, error: `${tool}: ${firstLines(r.stderr) || `exit ${r.status}`}` };
  return { tool, summary: summarizeSave(r.stdout) };
}

/** Legacy tables of one family. Never makes the kernel instantiate a table (see kernel/probe.ts). */
function legacyDump(p: SystemProbe, fam: Fam): Dump {
  const tool = SAVE_TOOLS.legacy[fam];
  const text = p.readFile(LEGACY_NAMES[fam]);
  if (text === undefined && (p.listDir('/proc/net') ?? []).includes(LEGACY_NAMES[fam].slice('/proc/net/'.length))) {
    return { tool, error: `cannot read ${LEGACY_NAMES[fam]} (not root?)` };
  }
  const names = legacyTableNames(text);
  if (names.length === 0) return { tool, summary: EMPTY }; // no legacy table exists: no rule either
  if (!p.hasTool(tool)) {
    // Only one variant installed (old Debian): `iptables-save` is then that variant.
    const plain = fam === 'v4' ? 'iptables-save' : 'ip6tables-save';
    const v = p.hasTool(plain) ? iptablesVariant(p.run(plain, ['--version'])?.stdout ?? '') : undefined;
    if (v === 'legacy') return saveDump(p, plain);
    return { tool, error: `legacy tables exist (${names.join(', ')}) but ${tool} is not installed to read them` };
  }
  return saveDump(p, tool);
}

function nftCompatDump(p: SystemProbe, fam: Fam): Dump | undefined {
  const tool = SAVE_TOOLS.nf_tables[fam];
  if (p.hasTool(tool)) return saveDump(p, tool);
  const plain = fam === 'v4' ? 'iptables-save' : 'ip6tables-save';
  if (p.hasTool(plain) && iptablesVariant(p.run(plain, ['--version'])?.stdout ?? '') === 'nf_tables')
    return saveDump(p, plain);
  return undefined; // no iptables-nft here
}

interface IptablesState {
  legacy: Record<Fam, Dump>;
  nft: Record<Fam, Dump | undefined>;
}

function iptablesState(p: SystemProbe): IptablesState {
  return {
    legacy: { v4: legacyDump(p, 'v4'), v6: legacyDump(p, 'v6') },
    nft: { v4: nftCompatDump(p, 'v4'), v6: nftCompatDump(p, 'v6') },
  };
}

function dumpErrors(st: IptablesState): string[] {
  return [st.legacy.v4, st.legacy.v6, st.nft.v4, st.nft.v6].flatMap((d) => (d?.error ? [d.error] : []));
}

const rulesOf = (...dumps: (Dump | undefined)[]): number => dumps.reduce((n, d) => n + (d?.summary?.rules ?? 0), 0);
const tablesOf = (d: Dump | undefined): string => (d?.summary?.tables.length ? d.summary.tables.join(',') : '-');

// ── the checks ───────────────────────────────────────────────────────────────

const nftables: Check = {
  id: 'nftables',
  title: 'nf_tables: the nft tool is installed and the kernel answers',
  run(p) {
    const r = p.run('nft', ['list', 'tables']);
    if (!r) {
      if (p.hasTool('iptables-restore')) {
        return warn(
          'nft is not installed: `--firewall auto` falls back to the iptables backend',
          'apt-get install nftables (the default backend; `--firewall iptables` works without it)',
        );
      }
      return fail(
        'neither nft nor iptables-restore is installed: tranproxy has no firewall backend',
        'apt-get install nftables',
      );
    }
    if (r.status !== 0) {
      const why = classifyNftError(r.stderr);
      if (why === 'permission') return warn(`nft cannot read the ruleset: ${firstLines(r.stderr)}`, AS_ROOT);
      return fail(
        `\`nft list tables\` failed: ${firstLines(r.stderr)} (no nf_tables in this kernel?)`,
        'use a kernel with CONFIG_NF_TABLES (modprobe nf_tables), or `--firewall iptables` with iptables-legacy',
      );
    }
    const version = p.run('nft', ['--version'])?.stdout.trim().split('\n')[0] || 'nft';
    const n = parseNftTables(r.stdout).length;
    return ok(`${version}; nf_tables answers (${n} table${n === 1 ? '' : 's'} in this network namespace)`);
  },
};

const tproxy: Check = {
  id: 'tproxy',
  title: 'TPROXY: nft tproxy, socket and fib expressions load (check-only transaction)',
  run(p) {
    const r = nftCheck(p, NFT_PROBES.tproxy);
    const fix =
      'use a kernel with CONFIG_NFT_TPROXY, CONFIG_NFT_SOCKET and CONFIG_NFT_FIB_INET (modprobe nft_tproxy nft_socket nft_fib_inet); `--mode redirect` works without them';
    switch (r.kind) {
      case 'ok':
        return ok(
          'a ruleset with tproxy ip/ip6, socket transparent and fib daddr type passes `nft -c` (nothing applied)',
        );
      case 'permission':
        return warn(`cannot check: ${r.message}`, AS_ROOT);
      case 'no-nft':
        if (xtLoaded(p, '/proc/net/ip_tables_targets', 'TPROXY'))
          return ok('nft is not installed; the xt_TPROXY target is loaded');
        return warn(
          'nft is not installed, and the xt_TPROXY target is not loaded yet: cannot tell whether TPROXY works',
          'apt-get install nftables and run doctor again; or `modprobe xt_TPROXY xt_socket`',
        );
      default:
        return warn(`the kernel refused a TPROXY ruleset: ${r.message}; \`--mode tproxy\` will fail here`, fix);
    }
  },
};

const redirect: Check = {
  id: 'redirect',
  title: 'REDIRECT: nft nat redirect and socket owner (skuid/skgid) match load (check-only)',
  run(p) {
    const r = nftCheck(p, NFT_PROBES.redirect);
    switch (r.kind) {
      case 'ok':
        return ok('a nat output chain with redirect, meta skuid/skgid and meta mark passes `nft -c` (nothing applied)');
      case 'permission':
        return warn(`cannot check: ${r.message}`, AS_ROOT);
      case 'no-nft':
        if (xtLoaded(p, '/proc/net/ip_tables_targets', 'REDIRECT'))
          return ok('nft is not installed; the xt REDIRECT target is loaded');
        return warn(
          'nft is not installed, and the xt REDIRECT target is not loaded yet: cannot tell whether REDIRECT works',
          'apt-get install nftables and run doctor again',
        );
      default:
        return fail(
          `the kernel refused a REDIRECT ruleset: ${r.message}; no capture mode works without NAT`,
          'use a kernel with CONFIG_NF_NAT, CONFIG_NFT_REDIR and CONFIG_NFT_NAT (modprobe nft_redir nft_nat)',
        );
    }
  },
};

const conntrack: Check = {
  id: 'conntrack',
  title: 'conntrack: connection tracking is there (REDIRECT reads SO_ORIGINAL_DST from it)',
  run(p) {
    // (never read /proc/net/nf_conntrack itself: one line per tracked connection)
    const present =
      p.readFile('/proc/sys/net/netfilter/nf_conntrack_max') !== undefined ||
      (p.listDir('/proc/net') ?? []).includes('nf_conntrack');
    const r = nftCheck(p, NFT_PROBES.conntrack);
    const fix = 'use a kernel with CONFIG_NF_CONNTRACK and CONFIG_NFT_CT (modprobe nf_conntrack nft_ct)';
    if (r.kind === 'permission' && !present) return warn(`cannot check: ${r.message}`, AS_ROOT);
    if (r.kind === 'unsupported' || r.kind === 'other') {
      return fail(`the kernel refused \`ct state\`: ${r.message}; REDIRECT cannot recover original destinations`, fix);
    }
    if (r.kind === 'no-nft' && !present) {
      return warn(
        'nf_conntrack is not loaded yet and nft is not installed to check it',
        `${fix}; it usually loads with the first NAT rule`,
      );
    }
    const count = sysctlInt(p.readFile('/proc/sys/net/netfilter/nf_conntrack_count'));
    const max = sysctlInt(p.readFile('/proc/sys/net/netfilter/nf_conntrack_max'));
    const usage = count !== undefined && max !== undefined && max > 0 ? ` (${count} of ${max} entries in use)` : '';
    if (count !== undefined && max !== undefined && max > 0 && count >= 0.9 * max) {
      return warn(
        `the conntrack table is ${Math.round((100 * count) / max)}% full${usage}: new connections are dropped when it is full`,
        `raise it: sysctl -w net.netfilter.nf_conntrack_max=${Math.max(max * 2, 262144)}`,
      );
    }
    return ok(`connection tracking works${r.kind === 'ok' ? ' (`ct state` passes `nft -c`)' : ''}${usage}`);
  },
};

const ipTransparent: Check = {
  id: 'ip-transparent',
  title: 'IP_TRANSPARENT / IPV6_TRANSPARENT and SO_MARK can be set (TPROXY listeners, bypass mark)',
  async run(p) {
    const v4 = await p.transparentSocket(4);
    if (!v4.ok) {
      if (v4.code === 'EPERM' || v4.code === 'EACCES') {
        return p.uid === 0
          ? warn(
              `${v4.message}: root without CAP_NET_ADMIN (a container without the capability?)`,
              'grant CAP_NET_ADMIN (docker run --cap-add NET_ADMIN; securityContext.capabilities.add: [NET_ADMIN]); `--mode redirect` with uid exclusion needs it only to apply rules',
            )
          : warn(
              `${v4.message}: not root`,
              'run the proxy as root or with CAP_NET_ADMIN for `--mode tproxy` and the bypass mark; `--mode redirect` with a proxy user needs no capability at run time',
            );
      }
      return warn(
        `IPv4 transparent socket: ${v4.message}`,
        'use a kernel with IP_TRANSPARENT (any Linux since 2.6.28); `--mode redirect` works without it',
      );
    }
    const v6 = await p.transparentSocket(6);
    if (!v6.ok) {
      if (v6.code === 'EAFNOSUPPORT')
        return ok('IPv4: IP_TRANSPARENT and SO_MARK set; IPv6 is disabled in this kernel');
      return warn(
        `IPv4 works; IPv6: ${v6.message}`,
        'IPv6 TPROXY needs IPV6_TRANSPARENT and CAP_NET_ADMIN; use `--family ipv4` until then',
      );
    }
    return ok('IP_TRANSPARENT, IPV6_TRANSPARENT and SO_MARK set on a test socket (never bound)');
  },
};

const userNamespaces: Check = {
  id: 'user-namespaces',
  title: 'user namespaces (rootless labs and `tranproxy demo` without root)',
  run(p) {
    const max = sysctlInt(p.readFile('/proc/sys/user/max_user_namespaces'));
    if (max === undefined) {
      return warn(
        'no /proc/sys/user/max_user_namespaces: this kernel has no user namespaces; rootless labs cannot run',
        'run labs and the demo as root, or use a kernel with CONFIG_USER_NS',
      );
    }
    if (max === 0)
      return warn(
        'user.max_user_namespaces is 0: rootless labs cannot run',
        'sysctl -w user.max_user_namespaces=15000 (or run the lab as root)',
      );
    const clone = sysctlInt(p.readFile('/proc/sys/kernel/unprivileged_userns_clone'));
    if (clone === 0)
      return warn(
        'kernel.unprivileged_userns_clone is 0: only root can create user namespaces',
        'sysctl -w kernel.unprivileged_userns_clone=1 (or run the lab as root)',
      );
    const apparmor = sysctlInt(p.readFile('/proc/sys/kernel/apparmor_restrict_unprivileged_userns'));
    if (apparmor === 1 && p.uid !== 0) {
      return warn(
        'kernel.apparmor_restrict_unprivileged_userns is 1: AppArmor stops unprivileged user namespaces from getting capabilities',
        'run the lab as root, or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0',
      );
    }
    return ok(`available (user.max_user_namespaces=${max})`);
  },
};

const iptablesBackend: Check = {
  id: 'iptables-backend',
  title: 'iptables-legacy vs iptables-nft: `iptables` drives the backend that holds the rules',
  run(p) {
    if (!p.hasTool('iptables')) {
      return p.hasTool('nft')
        ? ok('iptables is not installed: tranproxy uses nft')
        : warn('iptables is not installed (nor nft)', 'apt-get install nftables');
    }
    const v4 = iptablesVariant(p.run('iptables', ['--version'])?.stdout ?? '');
    if (!v4)
      return warn(
        'cannot tell which backend `iptables --version` drives',
        'check `update-alternatives --display iptables`',
      );
    const v6 = p.hasTool('ip6tables') ? iptablesVariant(p.run('ip6tables', ['--version'])?.stdout ?? '') : undefined;
    const st = iptablesState(p);
    const name = (v: Variant): string => (v === 'nf_tables' ? 'iptables-nft' : 'iptables-legacy');
    const problems: string[] = [];
    const fixes: string[] = [];
    const legacyRules = rulesOf(st.legacy.v4, st.legacy.v6);
    const nftRules = rulesOf(st.nft.v4, st.nft.v6);
    if (v4 === 'nf_tables' && legacyRules > 0) {
      problems.push(
        `\`iptables\` is iptables-nft, but ${legacyRules} rule(s) live in legacy tables (v4: ${tablesOf(st.legacy.v4)}, v6: ${tablesOf(st.legacy.v6)}), invisible to \`iptables -L\`; both sets run`,
      );
      fixes.push(
        "use one backend: if a tool pinned to legacy wrote them (old Docker, kube-proxy, a firewall script), `update-alternatives --set iptables /usr/sbin/iptables-legacy` (and ip6tables), or migrate them with `iptables-legacy-save | iptables-nft-restore` and flush the legacy tables; tranproxy's `--firewall nft` is not affected",
      );
    }
    if (v4 === 'legacy' && nftRules > 0) {
      problems.push(
        `\`iptables\` is iptables-legacy, but ${nftRules} rule(s) live in iptables-nft tables (v4: ${tablesOf(st.nft.v4)}, v6: ${tablesOf(st.nft.v6)}), invisible to \`iptables -L\`; both sets run`,
      );
      fixes.push(
        'use one backend: `update-alternatives --set iptables /usr/sbin/iptables-nft` (and ip6tables) if the nft-side rules are the live ones, or move them with `iptables-nft-save | iptables-legacy-restore`',
      );
    }
    if (v6 && v6 !== v4) {
      problems.push(`\`iptables\` is ${name(v4)} but \`ip6tables\` is ${name(v6)}`);
      fixes.push(`update-alternatives --set ip6tables /usr/sbin/ip6tables-${v4 === 'nf_tables' ? 'nft' : 'legacy'}`);
    }
    if (problems.length) return warn(problems.join('; '), fixes.join('; '));
    const unread = dumpErrors(st);
    if (unread.length)
      return warn(
        `\`iptables\` is ${name(v4)}; cannot tell whether the other backend holds rules: ${unread.join('; ')}`,
        p.uid === 0 ? 'see the errors' : AS_ROOT,
      );
    return ok(`\`iptables\` is ${name(v4)}${v6 ? `, \`ip6tables\` too` : ''}; no rules in the other backend`);
  },
};

const firewallRules: Check = {
  id: 'firewall-rules',
  title: 'which firewall backends already hold rules',
  run(p) {
    const st = iptablesState(p);
    const parts: string[] = [];
    const errors: string[] = [];
    const legacy = [st.legacy.v4, st.legacy.v6];
    for (const d of legacy) if (d.error) errors.push(d.error);
    parts.push(
      `iptables-legacy: ${rulesOf(...legacy)} rule(s) (v4 tables: ${tablesOf(st.legacy.v4)}; v6: ${tablesOf(st.legacy.v6)})`,
    );
    if (st.nft.v4 || st.nft.v6) {
      for (const d of [st.nft.v4, st.nft.v6]) if (d?.error) errors.push(d.error);
      parts.push(
        `iptables-nft: ${rulesOf(st.nft.v4, st.nft.v6)} rule(s) (v4 tables: ${tablesOf(st.nft.v4)}; v6: ${tablesOf(st.nft.v6)})`,
      );
    }
    let permission = false;
    const r = p.run('nft', ['-j', 'list', 'ruleset']);
    if (r && r.status === 0) {
      const rs = parseNftJsonRuleset(r.stdout);
      if (rs) {
        const total = [...rs.rules.values()].reduce((a, b) => a + b, 0);
        const names = rs.tables.map((t) => `${t.family} ${t.name} (${rs.rules.get(`${t.family} ${t.name}`) ?? 0})`);
        parts.push(
          `nftables: ${rs.tables.length} table(s), ${total} rule(s)${names.length ? `: ${names.join(', ')}` : ''} (iptables-nft's tables included)`,
        );
      } else errors.push('`nft -j list ruleset` printed no JSON');
    } else if (r) {
      if (classifyNftError(r.stderr) === 'permission') permission = true;
      errors.push(`nft -j list ruleset: ${firstLines(r.stderr)}`);
    }
    const auto = p.hasTool('nft') ? 'nft' : p.hasTool('iptables-restore') ? 'iptables' : 'none';
    parts.push(`\`--firewall auto\` would use ${auto}`);
    if (errors.length)
      return warn(
        `${parts.join('; ')}; could not read everything: ${errors.join('; ')}`,
        permission ? AS_ROOT : 'see the errors; the counts above may be incomplete',
      );
    return ok(parts.join('; '));
  },
};

const ipForward: Check = {
  id: 'ip-forward',
  title: 'packet forwarding (gateway mode)',
  run(p) {
    const v4 = sysctlInt(p.readFile('/proc/sys/net/ipv4/ip_forward'));
    const v6 = sysctlInt(p.readFile('/proc/sys/net/ipv6/conf/all/forwarding'));
    if (v4 === undefined)
      return warn('cannot read /proc/sys/net/ipv4/ip_forward', 'run doctor where /proc/sys is mounted');
    const v6Text = v6 === undefined ? 'IPv6 disabled' : `net.ipv6.conf.all.forwarding=${v6}`;
    const note =
      v4 === 1 && (v6 === undefined || v6 === 1)
        ? 'this host forwards packets'
        : 'tranproxy turns forwarding on while gateway (prerouting) rules are applied and restores it on removal; nothing to do for sidecar/output capture';
    return ok(`net.ipv4.ip_forward=${v4}, ${v6Text}: ${note}`);
  },
};

/** Forward-hook chains with policy drop: nft (native and iptables-nft) and legacy filter tables that exist. */
function forwardDrops(p: SystemProbe): ForwardDrop[] {
  const drops: ForwardDrop[] = [];
  const r = p.run('nft', ['-j', 'list', 'ruleset']);
  if (r && r.status === 0) drops.push(...forwardDropsFromNft(r.stdout, [PUBLISH_TABLE, NFT_TABLE]));
  for (const fam of ['v4', 'v6'] as const) {
    const tool = SAVE_TOOLS.legacy[fam];
    if (!legacyTableNames(p.readFile(LEGACY_NAMES[fam])).includes('filter') || !p.hasTool(tool)) continue;
    const save = p.run(tool, []);
    if (save && save.status === 0) drops.push(...forwardDropFromLegacySave(save.stdout, fam === 'v4' ? 4 : 6));
  }
  return drops;
}

const forwardDrop: Check = {
  id: 'forward-drop',
  title: 'filter FORWARD drops by policy (Docker hosts, hardened hosts): routed traffic must be accepted',
  run(p) {
    const drops = forwardDrops(p);
    if (drops.length === 0) return ok('no filter-forward chain drops by policy');
    const on = {
      4: sysctlInt(p.readFile('/proc/sys/net/ipv4/ip_forward')) === 1,
      6: sysctlInt(p.readFile('/proc/sys/net/ipv6/conf/all/forwarding')) === 1,
    };
    const hit = drops.filter((d) => (on[4] && dropsFamily(d, 4)) || (on[6] && dropsFamily(d, 6)));
    if (hit.length === 0)
      return ok(`${drops.map(describeDrop).join(', ')}; forwarding is off, so nothing routed is lost`);
    const nft = hit.filter((d) => d.backend === 'nft' && !d.acceptsDnat);
    return warn(
      `${hit.map(describeDrop).join('; ')}: forwarded traffic (gateway capture, lab links, ports published to other hosts) is dropped unless something accepts it`,
      'tranproxy publish accepts its own DNATed flows through an iptables FORWARD drop (chain TPX_PUBLISH); a native nft chain cannot be overridden from another table' +
        (nft.length
          ? `: add accepts to it, e.g. ${nft.map((d) => `nft insert rule ${d.family} ${d.table} ${d.chain} ct status dnat accept`).join('; ')} for published ports`
          : '') +
        '; for a gateway or a lab, accept the routed interfaces (e.g. iptables -I FORWARD -i LAN -j ACCEPT)',
    );
  },
};

/**
 * Bridges of this process's network namespace, from netlink. Not /sys/class/net: sysfs shows
 * the namespace it was mounted in, so under `nsenter --net=` it lists the host's links.
 */
function bridgesHere(p: SystemProbe): string[] | undefined {
  const r = p.run('ip', ['-j', 'link', 'show', 'type', 'bridge']);
  if (r?.status !== 0) return undefined;
  return parseIpJson<{ ifname?: string }>(r.stdout)
    .flatMap((l) => (l.ifname ? [l.ifname] : []))
    .sort();
}

const bridgeNf: Check = {
  id: 'bridge-nf-call-iptables',
  title: 'br_netfilter: bridged frames through iptables/nft (breaks TPROXY for hosts on a bridge)',
  run(p) {
    const v = sysctlInt(p.readFile('/proc/sys/net/bridge/bridge-nf-call-iptables'));
    if (v === undefined) return ok('br_netfilter is not loaded: bridged frames bypass the IP hooks');
    if (v === 0) return ok('net.bridge.bridge-nf-call-iptables=0');
    const bridges = bridgesHere(p);
    if (bridges === undefined) {
      return warn(
        'net.bridge.bridge-nf-call-iptables=1; cannot list bridges (`ip` is missing)',
        'apt-get install iproute2, then run doctor again',
      );
    }
    if (bridges.length === 0) {
      return ok(
        'net.bridge.bridge-nf-call-iptables=1, but there is no bridge in this network namespace (a bridge added later, e.g. docker0, would be affected)',
      );
    }
    return warn(
      `net.bridge.bridge-nf-call-iptables=1 with bridge(s) ${bridges.join(', ')}: frames between hosts on a bridge pass the IP hooks, so TPROXY/REDIRECT rules can capture or misroute LAN-internal traffic`,
      'sysctl -w net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 if nothing needs it; where Docker or Kubernetes does, limit capture with `--in-interface` and `--exclude-cidr` for the bridge subnet',
    );
  },
};

function confValues(p: SystemProbe, key: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const name of p.listDir('/proc/sys/net/ipv4/conf') ?? []) {
    const v = sysctlInt(p.readFile(`/proc/sys/net/ipv4/conf/${name}/${key}`));
    if (v !== undefined) out.set(name, v);
  }
  return out;
}

const routeLocalnet: Check = {
  id: 'route-localnet',
  title: 'route_localnet: 127.0.0.0/8 is not routable from other interfaces',
  run(p) {
    const values = confValues(p, 'route_localnet');
    if (values.size === 0)
      return warn('cannot read /proc/sys/net/ipv4/conf/*/route_localnet', 'run doctor where /proc/sys is mounted');
    const on = [...values]
      .filter(([, v]) => v === 1)
      .map(([k]) => k)
      .sort();
    if (on.length) {
      return warn(
        `route_localnet=1 on ${on.join(', ')}: services bound to 127.0.0.1 may be reachable from neighbouring hosts (CVE-2020-8558)`,
        `sysctl -w ${on.map((n) => `net.ipv4.conf.${n}.route_localnet=0`).join(' ')} unless something needs it (\`tranproxy publish --userland-proxy false\` sets it while running and restores it)`,
      );
    }
    return ok('route_localnet=0 everywhere (tranproxy publish reaches 127.0.0.1 through its userland proxy)');
  },
};

const rpFilter: Check = {
  id: 'rp-filter',
  title: 'rp_filter: strict reverse-path filtering drops TPROXY and asymmetric-route packets',
  run(p) {
    const values = confValues(p, 'rp_filter');
    if (values.size === 0)
      return warn('cannot read /proc/sys/net/ipv4/conf/*/rp_filter', 'run doctor where /proc/sys is mounted');
    const f = strictRpFilter(values);
    if (f.strict.length === 0 && !f.defaultStrict) {
      return ok(`no interface filters strictly (all=${f.allValue ?? '?'}; the kernel uses max(all, interface))`);
    }
    const keys = [
      ...(f.allValue === 1 ? ['all'] : []),
      ...(f.defaultStrict ? ['default'] : []),
      ...f.strict.filter((n) => values.get(n) === 1),
    ];
    const where = f.strict.length
      ? `strict (1) on ${f.strict.join(', ')}`
      : 'strict (1) for interfaces created from now on (conf/default)';
    return warn(
      `rp_filter is ${where}: packets whose source is not routed back through the interface they came in by are dropped — TPROXY-marked packets policy-routed via lo and asymmetric gateway routes hit this`,
      `loose mode keeps spoofing protection: sysctl -w ${[...new Set(keys)].map((k) => `net.ipv4.conf.${k}.rp_filter=2`).join(' ')} (setting all=0 alone does not relax an interface set to 1)`,
    );
  },
};

const fdLimit: Check = {
  id: 'fd-limit',
  title: 'open-file limit (each proxied connection holds two descriptors)',
  run(p) {
    const lim = parseOpenFilesLimit(p.readFile('/proc/self/limits') ?? '');
    if (!lim) return warn('cannot read "Max open files" from /proc/self/limits', 'check `ulimit -Hn`');
    const nrOpen = sysctlInt(p.readFile('/proc/sys/fs/nr_open'));
    const conns = lim.hard === Infinity ? 'no fd limit on' : `about ${Math.max(0, Math.floor((lim.hard - 64) / 2))}`;
    const text = `soft ${lim.soft}, hard ${lim.hard}${nrOpen !== undefined ? ` (fs.nr_open ${nrOpen})` : ''}; Node raises soft to hard at start: ${conns} proxied connections at once`;
    const fix =
      'raise the hard limit where the proxy starts: `LimitNOFILE=65536` in the systemd unit, `ulimit -Hn 65536` before starting it, `--ulimit nofile=65536:65536` for a container; keep --max-connections below half the limit';
    if (lim.hard < FD_FAIL_BELOW) return fail(text, fix);
    if (lim.hard < FD_WARN_BELOW)
      return warn(`${text}; the default --max-connections 8000 needs ${FD_WARN_BELOW}`, fix);
    return ok(text);
  },
};

const leftovers: Check = {
  id: 'leftover-rules',
  title: 'tranproxy rules left in this network namespace (nft tables, TRANPROXY_* chains, ip rules proto 116)',
  run(p) {
    const found: string[] = [];
    const unread: string[] = [];
    let publish = false;
    const tables = p.run('nft', ['list', 'tables']);
    if (tables && tables.status !== 0) unread.push(`nft list tables: ${firstLines(tables.stderr, 1)}`);
    if (tables && tables.status === 0) {
      for (const t of parseNftTables(tables.stdout)) {
        if (t.family === 'inet' && t.name === NFT_TABLE) found.push(`nft table inet ${NFT_TABLE}`);
        if (t.family === 'inet' && t.name === PUBLISH_TABLE) {
          found.push(`nft table inet ${PUBLISH_TABLE}`);
          publish = true;
        }
      }
    }
    const st = iptablesState(p);
    const dumps: Dump[] = [st.legacy.v4, st.legacy.v6, st.nft.v4, st.nft.v6].filter((d): d is Dump => d !== undefined);
    unread.push(...dumpErrors(st));
    for (const d of dumps) {
      const s = d.summary;
      if (!s) continue;
      const chains = [...new Set(s.tranproxyChains)];
      const jumps = [...new Set(s.tranproxyJumps)];
      if (chains.length) found.push(`${d.tool}: chains ${chains.join(', ')}`);
      if (jumps.length) found.push(`${d.tool}: jumps from ${jumps.join(', ')}`);
    }
    for (const fam of ['-4', '-6']) {
      const rules = p.run('ip', ['-j', '-N', fam, 'rule', 'show']);
      if (rules && rules.status === 0) {
        for (const r of parseIpJson<IpRuleEntry>(rules.stdout)) {
          if (r.protocol === String(ROUTE_PROTO))
            found.push(
              `ip ${fam} rule pref ${r.priority ?? '?'}${r.fwmark ? ` fwmark ${r.fwmark}` : ''} lookup ${r.table ?? '?'} proto ${ROUTE_PROTO}`,
            );
        }
      }
      const routes = p.run('ip', ['-j', '-N', fam, 'route', 'show', 'table', 'all', 'proto', String(ROUTE_PROTO)]);
      if (routes && routes.status === 0) {
        for (const r of parseIpJson<{ dst?: string; table?: string; dev?: string }>(routes.stdout)) {
          found.push(
            `ip ${fam} route ${r.dst ?? '?'}${r.dev ? ` dev ${r.dev}` : ''} table ${r.table ?? 'main'} proto ${ROUTE_PROTO}`,
          );
        }
      }
    }
    if (found.length === 0) {
      if (unread.length)
        return warn(
          `none found, but not everything could be read: ${unread.join('; ')}`,
          p.uid === 0 ? 'see the errors' : AS_ROOT,
        );
      return ok('none');
    }
    const fixes = [
      'if no tranproxy is running in this network namespace, these are leftovers of a crashed run: run `tranproxy rules remove`',
    ];
    if (publish) fixes.push('`tranproxy publish --remove-all` for the published ports');
    return warn(`tranproxy rules present: ${found.join('; ')}`, fixes.join('; '));
  },
};

/** Every check, in the order doctor prints them. */
export const CHECKS: readonly Check[] = [
  nftables,
  tproxy,
  redirect,
  conntrack,
  ipTransparent,
  userNamespaces,
  iptablesBackend,
  firewallRules,
  ipForward,
  forwardDrop,
  bridgeNf,
  routeLocalnet,
  rpFilter,
  fdLimit,
  leftovers,
];

export type { Verdict };
