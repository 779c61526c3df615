// Lists functions, methods and arrow functions whose body spans more lines than a limit,
// longest first: `node --import tsx scripts/function-lengths.ts [limit] [files…]`.
// The style rule is "under ~80 lines, none over 150"; this is how that is measured.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';

const args = process.argv.slice(2);
const limit = Number(args[0] ?? 80);
const roots = args.length > 1 ? args.slice(1) : ['src', 'ui/src'];

function sourceFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return /\.tsx?$/.test(path) && !path.endsWith('.d.ts') ? [path] : [];
  return readdirSync(path).flatMap((name) => (name === 'node_modules' ? [] : sourceFiles(join(path, name))));
}

function functionName(node: ts.Node): string {
  if ((ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node)) && node.name) return node.name.getText();
  if (ts.isConstructorDeclaration(node)) return 'constructor';
  const parent = node.parent;
  if (parent && (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent))) return parent.name.getText();
  return '(arrow)';
}

const rows: { lines: number; where: string; name: string }[] = [];
for (const file of roots.flatMap(sourceFiles)) {
  const text = readFileSync(file, 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const start = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const end = source.getLineAndCharacterOfPosition(node.getEnd()).line;
      const lines = end - start + 1;
      if (lines > limit) rows.push({ lines, where: `${relative('.', file)}:${start + 1}`, name: functionName(node) });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
}
rows.sort((a, b) => b.lines - a.lines);
for (const row of rows) console.log(`${String(row.lines).padStart(4)} ${row.where} ${row.name}`);
