// CapturePlan → one nft script. `table X` + `delete table X` + `table X { ... }` in one
// `nft -f` transaction: creates-if-missing, drops, recreates. Atomic and idempotent.
import { NFT_TABLE, type CapturePlan, type CapturePoint, type Family, type PortRange } from './plan.js';
import { FAMILIES, FAMILY_LABEL, FULL_MASK, hex, markText, ofFamily, validatePlan } from './validate.js';

interface Rule {
  text: string;
  /** Why the rule exists; rendered as the rule's nft comment. */
  why: string;
}

const ADDR: Record<Family, string> = { ipv4: 'ip', ipv6: 'ip6' };

/** `meta mark 0x539`, or `meta mark & 0x1 == 0x1` when only the masked bits count. */
function markIs(mark: number, mask = FULL_MASK): string {
  return mask === FULL_MASK ? `meta mark ${hex(mark)}` : `meta mark & ${hex(mask)} == ${hex(mark)}`;
}

/** Sets the mask's bits to `mark` and keeps the others (another tool's marks survive). */
function markSet(mark: number, mask = FULL_MASK): string {
  return mask === FULL_MASK
    ? `meta mark set ${hex(mark)}`
    : `meta mark set meta mark & ${hex(~mask >>> 0)} | ${hex(mark)}`;
}

function set(items: readonly (string | number)[]): string {
  return items.length === 1 ? String(items[0]) : `{ ${items.join(', ')} }`;
}

function ports(ranges: readonly PortRange[]): string {
  return set(ranges.map((r) => (r.from === r.to ? `${r.from}` : `${r.from}-${r.to}`)));
}

/** `tcp dport` when one protocol is captured, `th dport` (either transport) otherwise. */
function dport(p: CapturePlan): string {
  return p.protocols.length === 1 ? `${p.protocols[0]} dport` : 'th dport';
}

/** First rules of every chain: skip what the plan does not capture at all. */
function scope(p: CapturePlan): Rule[] {
  const out: Rule[] = [{ text: `meta l4proto != ${set(p.protocols)} return`, why: 'protocol not captured' }];
  for (const f of FAMILIES) {
    if (!p.families.includes(f)) out.push({ text: `meta nfproto ${f} return`, why: `${FAMILY_LABEL[f]} not captured` });
  }
  return out;
}

/** output chains: never capture loopback or the proxy's own sockets (loop avoidance). */
function ownTraffic(p: CapturePlan): Rule[] {
  const out: Rule[] = [{ text: 'oifname "lo" return', why: 'loopback is never captured' }];
  if (p.excludeUids.length)
    out.push({ text: `meta skuid ${set(p.excludeUids)} return`, why: 'excluded uid (the proxy)' });
  if (p.excludeGids.length)
    out.push({ text: `meta skgid ${set(p.excludeGids)} return`, why: 'excluded gid (the proxy)' });
  out.push({ text: `${markIs(p.bypassMark, p.bypassMask)} return`, why: 'bypass mark (SO_MARK of the proxy)' });
  return out;
}

/** "only these": per family; a family without any entry is not captured at all. */
function allowList(p: CapturePlan, list: CapturePlan['sourceCidrs'], field: 'saddr' | 'daddr', what: string): Rule[] {
  if (list.length === 0) return [];
  return p.families.map((f) => {
    const items = ofFamily(list, f);
    return items.length
      ? { text: `${ADDR[f]} ${field} != ${set(items)} return`, why: `only included ${what}` }
      : { text: `meta nfproto ${f} return`, why: `no included ${FAMILY_LABEL[f]} ${what}` };
  });
}

function sources(p: CapturePlan): Rule[] {
  const out: Rule[] = [];
  if (p.inInterfaces.length) {
    out.push({
      text: `iifname != ${set(p.inInterfaces.map((i) => `"${i}"`))} return`,
      why: 'only listed input interfaces',
    });
  }
  return [...out, ...allowList(p, p.sourceCidrs, 'saddr', 'sources')];
}

function destinations(p: CapturePlan): Rule[] {
  const out: Rule[] = [];
  for (const f of p.families) {
    const items = ofFamily(p.excludeDestinations, f);
    if (items.length) out.push({ text: `${ADDR[f]} daddr ${set(items)} return`, why: 'excluded destinations' });
  }
  if (p.excludePorts.length) out.push({ text: `${dport(p)} ${ports(p.excludePorts)} return`, why: 'excluded ports' });
  return [...out, ...allowList(p, p.includeDestinations, 'daddr', 'destinations')];
}

const LOCAL: Rule = {
  text: 'fib daddr type { local, broadcast, multicast } return',
  why: 'to this host itself, broadcast or multicast',
};

/** `tcp dport {…}` or `meta l4proto tcp`: the match that selects captured packets of one protocol. */
function captured(p: CapturePlan, proto: string, ranges: readonly PortRange[] = p.includePorts): string {
  return ranges.length ? `${proto} dport ${ports(ranges)}` : `meta l4proto ${proto}`;
}

function tproxyTo(p: CapturePlan, why: string, prefix = '', ranges: readonly PortRange[] = p.includePorts): Rule[] {
  return p.families.flatMap((f) =>
    p.protocols.map((proto) => ({
      text: `${prefix}meta nfproto ${f} ${captured(p, proto, ranges)} tproxy ${ADDR[f]} to :${p.proxyPort} ${markSet(p.tproxyMark, p.tproxyMask)} accept`,
      why,
    })),
  );
}

/** inbound: only connections from outside to this host's own addresses and ports. */
function inboundScope(p: CapturePlan): Rule[] {
  const out: Rule[] = [
    ...scope(p),
    { text: 'iifname "lo" return', why: "loopback (also the proxy's own connections to the app)" },
    { text: 'fib daddr type != local return', why: 'inbound: only connections to this host' },
  ];
  const excluded = p.excludeInboundPorts ?? [];
  if (excluded.length)
    out.push({
      text: `${dport(p)} ${ports(excluded)} return`,
      why: "excluded inbound ports (tranproxy's own among them)",
    });
  return out;
}

function ctMarkIs(mark: number, mask = FULL_MASK): string {
  return mask === FULL_MASK ? `ct mark ${hex(mark)}` : `ct mark & ${hex(mask)} == ${hex(mark)}`;
}

function ctMarkSet(mark: number, mask = FULL_MASK): string {
  return mask === FULL_MASK ? `ct mark set ${hex(mark)}` : `ct mark set ct mark & ${hex(~mask >>> 0)} | ${hex(mark)}`;
}

/**
 * TPROXY inbound with the client's address kept: the proxy's connection to the local app
 * carries the TPROXY mark; conntrack keeps it, and the app's replies (to the client's
 * address) get it back, so `ip rule fwmark` routes them via lo to the proxy (Istio's way).
 */
function inboundReplies(p: CapturePlan): Rule[] {
  if (!p.inboundPreserveSource) return [];
  return [
    {
      text: `${ctMarkIs(p.tproxyMark, p.tproxyMask)} ${markSet(p.tproxyMark, p.tproxyMask)}`,
      why: "inbound: the app's replies go back to the proxy via lo",
    },
    {
      text: `${markIs(p.tproxyMark, p.tproxyMask)} fib daddr type local ${ctMarkSet(p.tproxyMark, p.tproxyMask)}`,
      why: "inbound: remember the proxy's connection to the app",
    },
  ];
}

interface Chain {
  name: string;
  hook: string;
  rules: Rule[];
}

function chains(p: CapturePlan): Chain[] {
  const out: Chain[] = [];
  const has = (point: CapturePoint) => p.capture.includes(point);
  if (p.mode === 'redirect') {
    const redirect: Rule = {
      text: `${captured(p, 'tcp')} redirect to :${p.proxyPort}`,
      why: 'capture: redirect to the proxy',
    };
    if (has('output')) {
      out.push({
        name: 'nat_output',
        hook: 'type nat hook output priority -100', // dstnat; nft 1.0.6 names it only for prerouting
        rules: [...scope(p), ...ownTraffic(p), ...destinations(p), redirect],
      });
    }
    if (has('prerouting')) {
      out.push({
        name: 'nat_prerouting',
        hook: 'type nat hook prerouting priority dstnat',
        rules: [...scope(p), LOCAL, ...sources(p), ...destinations(p), redirect],
      });
    }
    if (has('inbound')) {
      out.push({
        name: 'nat_inbound',
        hook: 'type nat hook prerouting priority dstnat + 1',
        rules: [
          ...inboundScope(p),
          {
            text: `${captured(p, 'tcp', p.inboundPorts ?? [])} redirect to :${p.proxyPort}`,
            why: 'inbound: redirect to the proxy',
          },
        ],
      });
    }
    return out;
  }
  const mark = markText(p.tproxyMark, p.tproxyMask);
  const pre: Rule[] = [
    {
      text: `meta l4proto tcp socket transparent 1 ${markSet(p.tproxyMark, p.tproxyMask)} accept`,
      why: 'packet of an existing transparent socket (also replies to spoofed-source connections)',
    },
  ];
  if (has('output')) {
    if (p.inboundPreserveSource) {
      // The proxy's own connection to a local app also arrives on lo with the mark: not for us.
      pre.push({ text: 'iifname "lo" fib daddr type local return', why: "the proxy's own connections to a local app" });
    }
    // Host traffic marked in mangle_output comes back through lo: tproxy it before any filter.
    pre.push(
      ...tproxyTo(
        p,
        'host traffic rerouted via lo by mangle_output',
        `iifname "lo" ${markIs(p.tproxyMark, p.tproxyMask)} `,
      ),
    );
  }
  if (has('prerouting')) {
    pre.push(...scope(p), LOCAL, ...sources(p), ...destinations(p), ...tproxyTo(p, 'capture: tproxy to the proxy'));
  }
  out.push({ name: 'mangle_prerouting', hook: 'type filter hook prerouting priority mangle', rules: pre });
  if (has('inbound')) {
    out.push({
      name: 'mangle_inbound',
      hook: 'type filter hook prerouting priority mangle + 1',
      rules: [...inboundScope(p), ...tproxyTo(p, 'inbound: tproxy to the proxy', '', p.inboundPorts ?? [])],
    });
  }
  if (!has('output') && p.inboundPreserveSource) {
    out.push({ name: 'mangle_output', hook: 'type route hook output priority mangle', rules: inboundReplies(p) });
  }
  if (has('output')) {
    const reroute: Rule = {
      text: `${p.includePorts.length ? `${dport(p)} ${ports(p.includePorts)} ` : ''}${markSet(p.tproxyMark, p.tproxyMask)}`,
      why: `capture: mark so ip rule fwmark ${mark} reroutes it via lo to mangle_prerouting`,
    };
    out.push({
      name: 'mangle_output',
      hook: 'type route hook output priority mangle', // route type: re-lookup after the mark changes
      rules: [...inboundReplies(p), ...scope(p), ...ownTraffic(p), LOCAL, ...destinations(p), reroute],
    });
  }
  return out;
}

const PREAMBLE = [`table inet ${NFT_TABLE}`, `delete table inet ${NFT_TABLE}`];

/** The whole tranproxy table, for `nft -f -`. Throws UsageError on an invalid plan. */
export function renderNft(plan: CapturePlan): string {
  const p = validatePlan(plan);
  const lines = [
    `# tranproxy ${p.mode} capture (${p.capture.join(', ')}); one atomic transaction: nft -f -`,
    ...PREAMBLE,
    `table inet ${NFT_TABLE} {`,
  ];
  chains(p).forEach((c, i) => {
    if (i > 0) lines.push('');
    lines.push(`\tchain ${c.name} {`, `\t\t${c.hook}; policy accept;`);
    for (const r of c.rules) lines.push(`\t\t${r.text} comment "${r.why}"`);
    lines.push('\t}');
  });
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

/** Idempotent removal: creating the table first makes the delete succeed when it is absent. */
export function renderNftRemove(): string {
  return `${PREAMBLE.join('\n')}\n`;
}
