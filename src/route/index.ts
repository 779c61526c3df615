// Routing: rules → outbound name. Pure; domain list files are parsed from their text.
export {
  BUILTIN_OUTBOUNDS,
  compileRules,
  RULE_FIELD_NAMES,
  RuleError,
  suggest,
  unknownOutboundMessage,
  type Flow,
  type Network,
  type RouteDecision,
  type Router,
  type RuleSpec,
} from './router.js';
export { normalizeDomainEntry, parseDomainList, type DomainEntryKind, type DomainList } from './domain-list.js';
export { CidrSet, ipv4ToNumber, parseFlowIp, PortSet, type ParsedIp } from './ip-set.js';
