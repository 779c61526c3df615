// Routing: rules → outbound name. Pure; domain list files are parsed from their text.
export {
  BUILTIN_OUTBOUNDS,
  compileRules,
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
  type DomainListRef,
} from './domain-list.js';
export { packedBytes, packRuleLists, reviveRuleLists, type PackedRuleLists } from './rule-lists.js';
export {
  parseRuleSet,
  RULE_SET_FORMATS,
  ruleSetSize,
  type ParsedRuleSet,
  type RuleSetFormat,
} from './rule-set.js';
export { KeywordSet, KeywordSetBuilder, NameSet, NameSetBuilder } from './name-set.js';
export { CidrSet, ipv4ToNumber, parseFlowIp, PortSet, type ParsedIp } from './ip-set.js';
