// Gateway routing: named upstream nodes, rules, the default outbound. Built from the
// config file and --upstream, validated here (URIs parsed, rules compiled) so a bad node or
// rule fails at start-up, not on the first connection. Plain data: it crosses to the data
// plane child over IPC.
import { UsageError } from '../errors.js';
import type { GroupSpec } from '../outbound/group.js';
import { parseNodeUri } from '../outbound/uri.js';
import { compileRules, type RuleSpec } from '../route/index.js';
import type { ConfigFile } from './file.js';
import type { DnsConfig } from './schema.js';

export interface NodeConfig {
  uri: string;
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
  const nodes: Record<string, NodeConfig> = Object.create(null); // a name never reaches a prototype
  for (const [name, n] of Object.entries(file?.nodes ?? {})) {
    nodes[name] = {
      uri: n.uri,
      ...(n.connectTimeoutMs ? { connectTimeoutMs: n.connectTimeoutMs } : {}),
      ...(n.fallback ? { fallback: n.fallback } : {}),
    };
  }
  if (upstream !== undefined) {
    if (nodes[UPSTREAM_NODE])
      throw new UsageError(`--upstream: the config file already has a node named '${UPSTREAM_NODE}'`);
    nodes[UPSTREAM_NODE] = { uri: upstream };
  }
  const rules = file?.routeRules ?? [];
  const dns = file?.dns;
  const defaultUdp = file?.defaultUdp;
  const groups = file?.groups ?? {};
  if (
    !Object.keys(nodes).length &&
    !Object.keys(groups).length &&
    !rules.length &&
    !file?.defaultGiven &&
    !dns &&
    defaultUdp === undefined
  )
    return undefined;
  for (const [name, n] of Object.entries(nodes)) {
    try {
      parseNodeUri(n.uri, name);
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
  const outbounds = [...Object.keys(nodes), ...Object.keys(groups)];
  compileRules(rules, defaultOutbound, outbounds); // throws with the rule's name
  if (defaultUdp !== undefined) {
    try {
      compileRules([], defaultUdp, outbounds);
    } catch (e) {
      throw new UsageError(`default-udp: ${(e as Error).message.replace(/^default: /, '')}`);
    }
  }
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
