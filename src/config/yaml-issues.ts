// From a schema problem to a place in YAML text: follow a zod issue's path through the
// parsed document to a text offset, and word the issue for a person. Shared by the config
// file (config/file.ts) and lab files (netlab/spec.ts), so both report `FILE:LINE:COL:
// path: reason` the same way. Offsets, not lines: the caller owns the LineCounter and the
// issue type.
import { isAlias, isMap, isPair, isScalar, isSeq, type Document, type Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { describe } from './schema.js';

export type YamlPath = (string | number)[];

export interface LocatedInYaml {
  /** Offset in the text. */
  offset: number;
  /** The part of the path that exists in the document (plus a missing map key, if any). */
  path: YamlPath;
}

function resolveAlias(doc: Document, node: unknown): unknown {
  return isAlias(node) ? node.resolve(doc) : node;
}

/**
 * Find where `path` is in the document. `at: 'key'` points at a map key instead of its
 * value. A path that runs past the document (a single value standing for a list of one,
 * a missing key) stops at the deepest node that exists.
 */
export function locateInYaml(
  doc: Document,
  path: readonly PropertyKey[],
  at: 'value' | 'key' = 'value',
): LocatedInYaml {
  let node = resolveAlias(doc, doc.contents) as YamlNode | null;
  let offset = node?.range?.[0] ?? 0;
  const found: YamlPath = [];
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && String(isScalar(p.key) ? p.key.value : p.key) === String(seg));
      if (!pair) {
        found.push(seg as string | number); // a missing key: name it, point at its mapping
        break;
      }
      const keyNode = pair.key as YamlNode | null;
      const value = resolveAlias(doc, pair.value) as YamlNode | null;
      found.push(seg as string | number);
      const last = i === path.length - 1;
      if (last && at === 'key' && keyNode?.range) offset = keyNode.range[0];
      else if (value?.range && !(isScalar(value) && value.value === null && value.range[0] === value.range[1]))
        offset = value.range[0];
      else if (keyNode?.range) offset = keyNode.range[0];
      node = value;
    } else if (isSeq(node)) {
      const item = resolveAlias(doc, node.items[Number(seg)]) as YamlNode | null | undefined;
      if (!item) break;
      found.push(Number(seg));
      if (item.range) offset = item.range[0];
      node = item;
    } else break; // a scalar written for a list of one is its own item 0: stop at it
  }
  return { offset, path: found };
}

/** One zod issue in words. A missing value reads 'required' (with what it needs, when its check says). */
export function zodIssueMessage(iss: z.core.$ZodIssue): string {
  const value = (iss as { input?: unknown }).input; // parsed with reportInput
  switch (iss.code) {
    case 'invalid_key':
      return iss.issues.map((i) => i.message).join('; ');
    case 'invalid_type':
      if (value === undefined) return 'required';
      return `expected ${iss.expected === 'array' ? 'a list' : iss.expected === 'object' || iss.expected === 'record' ? 'a mapping' : iss.expected}, got ${describe(value)}`;
    case 'invalid_union':
      // A missing list-or-single value (every branch failed on nothing).
      return value === undefined ? 'required' : iss.message;
    default:
      // A missing key whose check says "expected X": say it is required.
      if (value === undefined && iss.code === 'custom' && iss.message.startsWith('expected '))
        return `required: ${iss.message.slice(9)}`;
      return iss.message;
  }
}

export interface ZodIssuePlacing {
  /** The message for a key the schema does not know, given the keys known under `parent`. */
  unknownKey(key: string, parent: readonly PropertyKey[]): string;
  /**
   * The path an issue names: 'schema', the path zod reports; 'found', the part of it that
   * exists in the document (a single value for a list of one is named without `[0]`).
   */
  pathShown: 'schema' | 'found';
}

/**
 * Every issue of a failed safeParse (parsed with `reportInput: true`), placed in the YAML
 * document it came from. `issueAt` turns an offset, a path and a message into the caller's
 * issue (file, line, column).
 */
export function placeZodIssues<Issue>(
  doc: Document,
  zodIssues: readonly z.core.$ZodIssue[],
  placing: ZodIssuePlacing,
  issueAt: (offset: number, path: readonly PropertyKey[], message: string) => Issue,
): Issue[] {
  const issues: Issue[] = [];
  for (const iss of zodIssues) {
    if (iss.code === 'unrecognized_keys') {
      // One issue per unknown key, each pointing at the key itself.
      for (const key of iss.keys) {
        const loc = locateInYaml(doc, [...iss.path, key], 'key');
        issues.push(issueAt(loc.offset, iss.path, placing.unknownKey(key, iss.path)));
      }
      continue;
    }
    const loc = locateInYaml(doc, iss.path, iss.code === 'invalid_key' ? 'key' : 'value');
    issues.push(issueAt(loc.offset, placing.pathShown === 'found' ? loc.path : iss.path, zodIssueMessage(iss)));
  }
  return issues;
}
