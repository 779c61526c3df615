// Gateway routing: named upstream nodes, rules, the default outbound. Built from the
// config file and --upstream; node URIs are parsed here, once, so a bad node fails at
// start-up (the file's rules were compiled when it was loaded). Plain data but for the domain
// lists: it crosses to the data plane child over IPC as JSON, the lists as bytes (packRuleLists).
import { UsageError } from '../errors.js';
import type { GroupSpec } from '../outbound/group.js';
import { parseNodeUri, type NodeSpec } from '../outbound/uri.js';
import { compileRules, reviveRuleLists, type Router, type RuleSpec } from '../route/index.js';
import type { ConfigFile } from './file.js';
import type { DnsConfig } from './schema.js';

export interface NodeConfig {
  /** The node's URI, parsed (the data plane builds its outbound from this). */
  spec: NodeSpec;
  connectTimeoutMs?: number;
  /** Outbound tried when this node cannot be reached ('direct' or another node). */
  fallback?: string;
}

export interface RoutingConfig {
  nodes: Record<string, NodeConfig>;
  /** Node groups (validated by the file's schema: known members, no cycles). */
  groups: Record<string, GroupSpec>;
  rules: RuleSpec[];
  /** Outbound for flows no rule matches: a node name, 'direct' or 'reject'. */
  defaultOutbound: string;
  /** Outbound for UDP flows no rule matches; undefined: defaultOutbound. */
  defaultUdpOutbound?: string;
  /** How long to wait for a client's first bytes to sniff a domain. */
  sniffTimeoutMs: number;
  /** Built-in DNS forwarder (the file's `dns:` section), if any. */
  dns?: DnsConfig;
}

export const UPSTREAM_NODE = 'upstream';

export function routingOf(
  file: ConfigFile | undefined,
  upstream: string | undefined,
  sniffTimeoutMs: number,
): RoutingConfig | undefined {
  const uris: Record<string, { uri: string; connectTimeoutMs?: number; fallback?: string }> = Object.create(null);
  for (const [name, n] of Object.entries(file?.nodes ?? {})) uris[name] = n;
  if (upstream !== undefined) {
    if (uris[UPSTREAM_NODE])
      throw new UsageError(`--upstream: the config file already has a node named '${UPSTREAM_NODE}'`);
    uris[UPSTREAM_NODE] = { uri: upstream };
  }
  const rules = file?.routeRules ?? [];
  const dns = file?.dns;
  const defaultUdp = file?.defaultUdp;
  const groups = file?.groups ?? {};
  if (
    !Object.keys(uris).length &&
    !Object.keys(groups).length &&
    !rules.length &&
    !file?.defaultGiven &&
    !dns &&
    defaultUdp === undefined
  )
    return undefined;
  const nodes: Record<string, NodeConfig> = Object.create(null); // a name never reaches a prototype
  for (const [name, n] of Object.entries(uris)) {
    try {
      nodes[name] = {
        spec: parseNodeUri(n.uri, name),
        ...(n.connectTimeoutMs ? { connectTimeoutMs: n.connectTimeoutMs } : {}),
        ...(n.fallback ? { fallback: n.fallback } : {}),
      };
    } catch (e) {
      throw new UsageError(
        `${name === UPSTREAM_NODE && upstream !== undefined ? '--upstream' : `node '${name}'`}: ${(e as Error).message}`,
      );
    }
  }
  for (const [name, n] of Object.entries(nodes)) {
    if (n.fallback && n.fallback !== 'direct' && !nodes[n.fallback]) {
      throw new UsageError(
        `nodes.${name}.fallback: unknown outbound '${n.fallback}' (known: direct, ${Object.keys(nodes).join(', ')})`,
      );
    }
    if (n.fallback === name) throw new UsageError(`nodes.${name}.fallback: a node cannot fall back to itself`);
  }
  const defaultOutbound = file?.defaultGiven ? file.default : upstream !== undefined ? UPSTREAM_NODE : 'direct';
  // The rules, the default and default-udp were checked against the file's nodes and groups
  // when it was loaded; --upstream only adds a node, and defaults to it.
  if (dns && dns.via !== 'direct' && !nodes[dns.via]) {
    throw new UsageError(
      `dns.via: unknown outbound '${dns.via}' (known: direct, ${Object.keys(nodes).join(', ') || 'no nodes'})`,
    );
  }
  return {
    nodes,
    groups,
    rules,
    defaultOutbound,
    ...(defaultUdp !== undefined ? { defaultUdpOutbound: defaultUdp } : {}),
    sniffTimeoutMs,
    ...(dns ? { dns } : {}),
  };
}

/**
 * The routers of a generation's data plane: the rules compiled once; their domain lists are
 * used from `listBytes` as packed (packRuleLists) when they crossed as references. UDP flows
 * no rule matches take default-udp, when set.
 */
export function routersOf(cfg: RoutingConfig, listBytes?: Uint8Array): { tcp: Router; udp: Router } {
  const outbounds = [...Object.keys(cfg.nodes), ...Object.keys(cfg.groups ?? {})];
  const rules = listBytes ? reviveRuleLists(cfg.rules, listBytes) : cfg.rules;
  const tcp = compileRules(rules, cfg.defaultOutbound, outbounds);
  const udpDefault = cfg.defaultUdpOutbound;
  if (udpDefault === undefined) return { tcp, udp: tcp };
  const udp: Router = {
    ruleCount: tcp.ruleCount,
    route: (flow) => {
      const d = tcp.route(flow);
      return d.rule === 'default' ? { action: udpDefault, rule: 'default' } : d;
    },
  };
  return { tcp, udp };
}
