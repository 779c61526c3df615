// The shared zod-issue → YAML position helper (src/config/yaml-issues.ts) used by config
// files and lab files: where a path lands, how an issue is worded, which path is named.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { locateInYaml, placeZodIssues, zodIssueMessage } from '../../src/config/yaml-issues.js';

function place(text: string, schema: z.ZodType, pathShown: 'schema' | 'found'): string[] {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter });
  const parsed = schema.safeParse(doc.toJS(), { reportInput: true });
  assert.ok(!parsed.success);
  const unknownKey = (key: string, parent: readonly PropertyKey[]) =>
    `unknown key '${key}' under [${parent.join(',')}]`;
  return placeZodIssues(doc, parsed.error.issues, { unknownKey, pathShown }, (offset, path, message) => {
    const { line, col } = lineCounter.linePos(offset);
    return `${line}:${col}: ${path.join('.')}: ${message}`;
  });
}

test('locateInYaml: value, key, missing key, and a path past a scalar', () => {
  const text = 'a:\n  b: 1\n  c: [x, y]\nd: solo\n';
  const doc = parseDocument(text);
  assert.deepEqual(locateInYaml(doc, ['a', 'b']), { offset: text.indexOf('1'), path: ['a', 'b'] });
  assert.deepEqual(locateInYaml(doc, ['a', 'b'], 'key'), { offset: text.indexOf('b'), path: ['a', 'b'] });
  assert.deepEqual(locateInYaml(doc, ['a', 'c', 1]), { offset: text.indexOf('y'), path: ['a', 'c', 1] });
  assert.deepEqual(locateInYaml(doc, ['a', 'zz']), { offset: text.indexOf('b'), path: ['a', 'zz'] });
  // A scalar standing for a list of one: item 0 is the scalar itself.
  assert.deepEqual(locateInYaml(doc, ['d', 0, 'x']), { offset: text.indexOf('solo'), path: ['d'] });
  assert.deepEqual(locateInYaml(doc, ['a', 'c', 5]), { offset: text.indexOf('['), path: ['a', 'c'] });
});

test('placeZodIssues: unknown keys point at the key; pathShown picks the named path', () => {
  const schema = z.strictObject({
    a: z.strictObject({ b: z.number() }),
    d: z.array(z.strictObject({ x: z.number() })).or(z.number()),
  });
  assert.deepEqual(place('a:\n  b: no\n  q: 1\nd: 3\n', schema, 'found'), [
    "2:6: a.b: expected number, got 'no'",
    "3:3: a: unknown key 'q' under [a]",
  ]);
  const list = z.strictObject({
    d: z.preprocess((v) => (Array.isArray(v) ? v : [v]), z.array(z.strictObject({ x: z.number() }))),
  });
  assert.deepEqual(place('d: 7\n', list, 'schema'), ['1:4: d.0: expected a mapping, got 7']);
  assert.deepEqual(place('d: 7\n', list, 'found'), ['1:4: d: expected a mapping, got 7']);
});

test('zodIssueMessage: missing values read required', () => {
  const issues = z
    .strictObject({
      n: z.number(),
      u: z.union([z.string(), z.number()]),
      c: z.custom((v) => typeof v === 'string', { message: 'expected a name' }),
    })
    .safeParse({}, { reportInput: true }).error!.issues;
  assert.deepEqual(
    issues.map((i) => `${i.path.join('.')}: ${zodIssueMessage(i)}`),
    ['n: required', 'u: required', 'c: required: a name'],
  );
});
