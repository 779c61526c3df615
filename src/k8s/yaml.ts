// `tranproxy inject` on YAML text: every document of a multi-document stream is injected
// on its own. Documents injection leaves alone are copied byte for byte; in the others only
// the changed parts are rewritten in the YAML tree, so comments and layout elsewhere stay.
import { CST, isMap, isSeq, Parser, parseDocument, type Document } from 'yaml';
import { UsageError } from '../errors.js';
import { injectObject, type InjectOptions, type ObjectReport } from './inject.js';
import { diff, type PathSegment } from './json-patch.js';

export interface YamlResult {
  text: string;
  reports: ObjectReport[];
}

const TO_STRING = { lineWidth: 0, minContentWidth: 0 } as const;

/** Apply the ops to the YAML tree; numeric segments index sequences. */
function patchDocument(doc: Document, before: unknown, after: unknown): void {
  for (const op of diff(before, after)) {
    const path = op.path.map((seg, i) =>
      typeof seg === 'string' && /^\d+$/.test(seg) && isSeq(doc.getIn(op.path.slice(0, i), true)) ? Number(seg) : seg,
    ) as PathSegment[];
    if (path.length === 0) doc.contents = doc.createNode(op.value) as typeof doc.contents;
    else if (op.op === 'remove') doc.deleteIn(path);
    else doc.setIn(path, doc.createNode(op.value));
  }
}

function lineOf(text: string, offset: number): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** Inject every document in `text`; throws UsageError on YAML syntax errors (with the line). */
export function injectYaml(text: string, opts: InjectOptions = {}, source = 'input'): YamlResult {
  const reports: ObjectReport[] = [];
  let out = '';
  for (const tok of new Parser().parse(text)) {
    const src = CST.stringify(tok);
    if (tok.type === 'error') {
      throw new UsageError(`${source}:${lineOf(text, tok.offset) + 1}: YAML: ${tok.message}`);
    }
    if (tok.type !== 'document') {
      out += src;
      continue;
    }
    const doc = parseDocument(src, { prettyErrors: false, uniqueKeys: true });
    if (doc.errors.length) {
      const e = doc.errors[0]!;
      const line = lineOf(text, tok.offset) + (e.linePos?.[0]?.line ?? 1);
      throw new UsageError(
        `${source}:${line}: YAML: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`,
      );
    }
    if (doc.contents === null || !isMap(doc.contents)) {
      out += src;
      continue;
    }
    const before: unknown = doc.toJS({ maxAliasCount: 1000 });
    const r = injectObject(before, opts);
    reports.push(...r.reports);
    if (r.object === before) {
      out += src;
      continue;
    }
    let text2: string;
    if (/^\s*\{/.test(src) && !/^---/.test(src)) {
      text2 = `${JSON.stringify(r.object, null, 2)}\n`; // JSON in, JSON out
    } else {
      patchDocument(doc, before, r.object);
      text2 = doc.toString(TO_STRING);
    }
    if (!src.endsWith('\n') && text2.endsWith('\n')) text2 = text2.slice(0, -1); // keep "no newline at end of file"
    out += text2;
  }
  return { text: out, reports };
}
