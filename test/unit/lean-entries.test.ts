// What the long-running processes load: the modules reached by static imports (those that load
// at start) from the data-plane child and from `tranproxy run`. Lazily loaded code (import(),
// a require on first use) is left out on purpose: it costs memory only when used.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Value imports and re-exports that load with the file (type-only ones and import() excluded). */
function staticImports(file: string): string[] {
  const sf = ts.createSourceFile(file, readFileSync(join(ROOT, file), 'utf8'), ts.ScriptTarget.Latest, false);
  const specs: string[] = [];
  for (const node of sf.statements) {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const named = clause?.namedBindings;
      const onlyTypes =
        clause?.isTypeOnly === true ||
        (clause?.name === undefined &&
          named !== undefined &&
          ts.isNamedImports(named) &&
          named.elements.length > 0 &&
          named.elements.every((e) => e.isTypeOnly));
      if (!onlyTypes) specs.push(node.moduleSpecifier.text);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      if (!node.isTypeOnly) specs.push(node.moduleSpecifier.text);
    }
  }
  return specs;
}

/** Every src file and package reached from `entry` by static imports. */
function loadedAtStart(entry: string): Set<string> {
  const reached = new Set<string>();
  const walk = (file: string): void => {
    if (reached.has(file)) return;
    reached.add(file);
    for (const spec of staticImports(file)) {
      if (!spec.startsWith('.')) {
        reached.add(spec);
        continue;
      }
      const target = relative(ROOT, resolve(dirname(join(ROOT, file)), spec.replace(/\.js$/, '.ts')));
      assert.ok(existsSync(join(ROOT, target)), `${file} imports ${spec}: not found`);
      walk(target);
    }
  };
  walk(entry);
  return reached;
}

function offenders(entry: string, forbidden: RegExp): string[] {
  return [...loadedAtStart(entry)].filter((m) => forbidden.test(m)).sort();
}

test('the data-plane child loads no console, Kubernetes, lab, CLI, YAML or schema code', () => {
  const loaded = loadedAtStart('src/proxy/child.ts');
  assert.ok(loaded.has('src/proxy/dataplane.ts'), 'the walk follows the child entry');
  assert.deepEqual(
    offenders('src/proxy/child.ts', /^src\/(console|k8s|netlab|demo|cli|publish|doctor)\/|^(yaml|zod|commander)$/),
    [],
  );
});

test('`tranproxy run` loads no console, Kubernetes, lab or other subcommand at start', () => {
  const loaded = loadedAtStart('src/cli/main.ts');
  assert.ok(!loaded.has('src/cli/run.ts'), 'main.ts loads the subcommand it runs, not all of them');
  assert.deepEqual(offenders('src/cli/main.ts', /^src\/(?!cli\/main|cli\/default-command|errors)/), []);
  assert.ok(loadedAtStart('src/cli/run.ts').has('src/proxy/supervisor.ts'), 'the walk follows run');
  assert.deepEqual(offenders('src/cli/run.ts', /^src\/(console|k8s|netlab|demo|publish|doctor)\//), []);
});
