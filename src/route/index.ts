// Routing: rules → outbound name. Pure; domain list files are parsed from their text.
export {
  BUILTIN_OUTBOUNDS,
  compileRules,
  reviveRuleLists,
  RULE_FIELD_NAMES,
  RuleError,
  suggest,
  unknownOutboundMessage,
  type RouteQuery,
  type Network,
  type RouteDecision,
  type Router,
  type RuleSpec,
} from './router.js';
export {
  DomainList,
  normalizeDomainEntry,
  parseDomainList,
  reviveDomainList,
  type DomainEntryKind,
  type PackedDomainList,
} from './domain-list.js';
export {
  parseRuleSet,
  RULE_SET_FORMATS,
  ruleSetSize,
  type ParsedRuleSet,
  type RuleSetFormat,
} from './rule-set.js';
export { KeywordSet, NameSet, NameSetBuilder } from './name-set.js';
export { CidrSet, ipv4ToNumber, parseFlowIp, PortSet, type ParsedIp } from './ip-set.js';
