// Lists functions, methods and arrow functions whose body spans more lines than a limit,
// longest first: `node --import tsx scripts/function-lengths.ts [limit] [files…]`.
// The style rule is "under ~80 lines, none over 150"; this is how that is measured.
// `--check` (the lint step): list those over 150 lines and exit 1 if there is any.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';

const check = process.argv.includes('--check');
const args = process.argv.slice(2).filter((a) => a !== '--check');
const limit = check ? 150 : Number(args[0] ?? 80);
const files = check ? args : args.slice(1);
const roots = files.length > 0 ? files : ['src', 'ui/src'];

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
if (check && rows.length > 0) {
  console.error(
    `${rows.length} function(s) over ${limit} lines: split them (the house style: under ~80, none over 150)`,
  );
  process.exit(1);
}
