// The shape of the source tree: no import cycles (type imports included) between files or
// between src/<folder>/ concerns, FFI and child processes only in src/kernel/, no dead exports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SOURCE_ROOTS = ['src', 'ui/src'];
/** Where an export of src/ may be used. */
const USE_ROOTS = ['src', 'ui/src', 'test', 'bench', 'scripts'];
/** The Linux ABI table: complete by design, not every constant is used yet. */
const DEAD_EXPORT_EXEMPT = new Set(['src/kernel/linux.ts']);
/** Modules that only src/kernel/ may import (FFI, system tools). */
const KERNEL_ONLY = new Set(['koffi', 'node:child_process', 'child_process']);

/**
 * Edges that still form a cycle and belong to another engineer's open work, as 'from -> to'
 * (repo-relative files, or folders for folder cycles). Empty when the tree is clean.
 */
const ALLOWED_EDGES = new Set<string>([]);

interface ImportRef {
  spec: string;
  typeOnly: boolean;
}

function sourceFiles(dir: string, exts: RegExp): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = `${dir}/${name}`;
    if (statSync(join(ROOT, rel)).isDirectory()) out.push(...sourceFiles(rel, exts));
    else if (exts.test(name)) out.push(rel);
  }
  return out.sort();
}

/** Every module specifier of a file: imports, re-exports, import() calls and import('x') types. */
function importsOf(file: string): ImportRef[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TSX);
  const refs: ImportRef[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const named = clause?.namedBindings;
      const allNamedTypes =
        named !== undefined &&
        ts.isNamedImports(named) &&
        named.elements.length > 0 &&
        named.elements.every((e) => e.isTypeOnly) &&
        clause?.name === undefined;
      refs.push({ spec: node.moduleSpecifier.text, typeOnly: clause?.isTypeOnly === true || allNamedTypes });
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      refs.push({ spec: node.moduleSpecifier.text, typeOnly: node.isTypeOnly });
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] !== undefined &&
      ts.isStringLiteral(node.arguments[0])
    ) {
      refs.push({ spec: node.arguments[0].text, typeOnly: false });
    } else if (
      ts.isImportTypeNode(node) &&
      ts.isLiteralTypeNode(node.argument) &&
      ts.isStringLiteral(node.argument.literal)
    ) {
      refs.push({ spec: node.argument.literal.text, typeOnly: true });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return refs;
}

/** The repo-relative file a relative specifier names ('./x.js' may be x.ts, x.tsx or x/index.ts). */
function resolveRelative(from: string, spec: string): string {
  const base = resolve(ROOT, dirname(from), spec);
  const stem = base.replace(/\.(js|jsx|ts|tsx|mjs)$/, '');
  const candidates = [base, `${stem}.ts`, `${stem}.tsx`, join(base, 'index.ts'), join(base, 'index.tsx')];
  const hit = candidates.find((c) => existsSync(c) && statSync(c).isFile());
  assert.ok(hit, `${from}: cannot resolve '${spec}'`);
  return relative(ROOT, hit);
}

type Graph = Map<string, Set<string>>;

function fileGraph(): { graph: Graph; external: Map<string, ImportRef[]> } {
  const graph: Graph = new Map();
  const external = new Map<string, ImportRef[]>();
  for (const root of SOURCE_ROOTS) {
    for (const file of sourceFiles(root, /\.tsx?$/)) {
      const deps = new Set<string>();
      const ext: ImportRef[] = [];
      for (const ref of importsOf(file)) {
        if (ref.spec.startsWith('.')) deps.add(resolveRelative(file, ref.spec));
        else ext.push(ref);
      }
      graph.set(file, deps);
      external.set(file, ext);
    }
  }
  return { graph, external };
}

/** src/proxy/x.ts → src/proxy; src/errors.ts → src/errors.ts; ui files → ui/src. */
function concernOf(file: string): string {
  if (file.startsWith('ui/')) return 'ui/src';
  const parts = file.split('/');
  return parts.length > 2 ? `${parts[0]}/${parts[1]}` : file;
}

function folderGraph(files: Graph): Graph {
  const graph: Graph = new Map();
  for (const [file, deps] of files) {
    const from = concernOf(file);
    if (!graph.has(from)) graph.set(from, new Set());
    for (const d of deps) {
      const to = concernOf(d);
      if (to !== from) graph.get(from)?.add(to);
    }
  }
  return graph;
}

function withoutAllowed(graph: Graph): Graph {
  const out: Graph = new Map();
  for (const [from, deps] of graph)
    out.set(from, new Set([...deps].filter((to) => !ALLOWED_EDGES.has(`${from} -> ${to}`))));
  return out;
}

/** Every cycle found by a depth-first walk, each printed once as a -> b -> ... -> a. */
function cyclesOf(graph: Graph): string[] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const found = new Set<string>();
  const walk = (n: string): void => {
    state.set(n, 'open');
    stack.push(n);
    for (const d of [...(graph.get(n) ?? [])].sort()) {
      if (state.get(d) === 'open') found.add([...stack.slice(stack.indexOf(d)), d].join(' -> '));
      else if (!state.has(d)) walk(d);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const n of [...graph.keys()].sort()) if (!state.has(n)) walk(n);
  return [...found];
}

const { graph: FILES, external: EXTERNAL } = fileGraph();

test('import graph: the walk sees the tree (a known edge is found)', () => {
  assert.ok(FILES.size > 100, `only ${FILES.size} source files found`);
  assert.ok(FILES.get('src/cli/main.ts')?.size, 'src/cli/main.ts imports nothing?');
  assert.deepEqual(
    cyclesOf(
      new Map([
        ['a', new Set(['b'])],
        ['b', new Set(['a'])],
      ]),
    ),
    ['a -> b -> a'],
  );
});

test('import graph: every allow-listed edge still exists (drop it from the list once its cycle is gone)', () => {
  const folders = folderGraph(FILES);
  const stale = [...ALLOWED_EDGES].filter((e) => {
    const [from = '', to = ''] = e.split(' -> ');
    return !(FILES.get(from)?.has(to) || folders.get(from)?.has(to));
  });
  assert.deepEqual(stale, []);
});

test('import graph: no cycle between files (type imports included)', () => {
  const cycles = cyclesOf(withoutAllowed(FILES));
  assert.deepEqual(cycles, [], `import cycles:\n  ${cycles.join('\n  ')}`);
});

test('import graph: no cycle between src/<folder>/ concerns', () => {
  const cycles = cyclesOf(withoutAllowed(folderGraph(FILES)));
  assert.deepEqual(cycles, [], `folder cycles:\n  ${cycles.join('\n  ')}`);
});

test('import graph: koffi and node:child_process only under src/kernel/', () => {
  const bad: string[] = [];
  for (const [file, refs] of EXTERNAL) {
    if (file.startsWith('src/kernel/')) continue;
    for (const r of refs) if (KERNEL_ONLY.has(r.spec) && !r.typeOnly) bad.push(`${file} imports ${r.spec}`);
  }
  assert.deepEqual(bad, []);
});

/** Names a file exports by declaration (export function/class/const/interface/type/enum). */
function declaredExports(file: string): string[] {
  const sf = ts.createSourceFile(file, readFileSync(join(ROOT, file), 'utf8'), ts.ScriptTarget.Latest, false);
  const names: string[] = [];
  for (const st of sf.statements) {
    const mods = ts.canHaveModifiers(st) ? ts.getModifiers(st) : undefined;
    if (!mods?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)) continue;
    if (ts.isVariableStatement(st)) {
      for (const d of st.declarationList.declarations) if (ts.isIdentifier(d.name)) names.push(d.name.text);
    } else if (
      (ts.isFunctionDeclaration(st) ||
        ts.isClassDeclaration(st) ||
        ts.isInterfaceDeclaration(st) ||
        ts.isTypeAliasDeclaration(st) ||
        ts.isEnumDeclaration(st)) &&
      st.name
    )
      names.push(st.name.text);
  }
  return names;
}

test('no dead exports: every name src/ exports is used somewhere (its own file, src/, test/, bench/, ui/)', () => {
  const words = new Map<string, number>();
  for (const root of USE_ROOTS)
    for (const f of sourceFiles(root, /\.(ts|tsx|mjs)$/))
      for (const w of readFileSync(join(ROOT, f), 'utf8').match(/[A-Za-z_$][\w$]*/g) ?? [])
        words.set(w, (words.get(w) ?? 0) + 1);
  const dead: string[] = [];
  for (const file of sourceFiles('src', /\.ts$/)) {
    if (DEAD_EXPORT_EXEMPT.has(file)) continue;
    for (const name of declaredExports(file)) if ((words.get(name) ?? 0) <= 1) dead.push(`${file}: ${name}`);
  }
  assert.deepEqual(dead, [], 'exported but never used: delete them');
});
