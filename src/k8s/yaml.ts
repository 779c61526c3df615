// `tranproxy inject` on YAML text: every document of a multi-document stream is injected
// on its own. Only the changed parts are rewritten in the YAML tree, so documents and
// fields injection does not touch keep their layout and comments.
import { isMap, isSeq, parseAllDocuments, type Document } from 'yaml';
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
    const path = op.path.map((seg, i) => (typeof seg === 'string' && /^\d+$/.test(seg) && isSeq(doc.getIn(op.path.slice(0, i), true)) ? Number(seg) : seg)) as PathSegment[];
    if (path.length === 0) {
      doc.contents = doc.createNode(op.value) as typeof doc.contents;
    } else if (op.op === 'remove') {
      doc.deleteIn(path);
    } else {
      doc.setIn(path, doc.createNode(op.value));
    }
  }
}

/** Inject every document in `text`; throws UsageError on YAML syntax errors (with the line). */
export function injectYaml(text: string, opts: InjectOptions = {}, source = 'input'): YamlResult {
  const docs = parseAllDocuments(text, { prettyErrors: true });
  if (!Array.isArray(docs)) throw new UsageError(`${source}: not a YAML stream`);
  const reports: ObjectReport[] = [];
  for (const doc of docs) {
    if (doc.errors.length) {
      const e = doc.errors[0]!;
      throw new UsageError(`${source}: YAML: ${e.message.split('\n')[0]}`);
    }
    if (doc.contents === null || !isMap(doc.contents)) continue;
    const before: unknown = doc.toJS({ maxAliasCount: 1000 });
    const r = injectObject(before, opts);
    reports.push(...r.reports);
    if (r.object !== before) patchDocument(doc, before, r.object);
  }
  const out = docs.map((d) => d.toString(TO_STRING)).join('');
  return { text: out && !out.endsWith('\n') ? `${out}\n` : out, reports };
}
