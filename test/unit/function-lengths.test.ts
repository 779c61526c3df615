// The lint step's function-length check (scripts/function-lengths.ts --check): a function
// over 150 lines fails it, one of 150 passes (`npm run lint` runs it on the tree).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function check(files: string[]): { status: number | null; stdout: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/function-lengths.ts', '--check', ...files], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout };
}

/** A function spanning `lines` lines, as the script counts them (first to last line). */
const fn = (name: string, lines: number): string =>
  `export function ${name}(): number {\n  let n = 0;\n${'  n++;\n'.repeat(lines - 4)}  return n;\n}\n`;

test('function-lengths --check fails on a function over 150 lines and passes one of 150', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fnlen-'));
  try {
    const long = join(dir, 'long.ts');
    const ok = join(dir, 'ok.ts');
    writeFileSync(long, fn('tooLong', 151));
    writeFileSync(ok, fn('justRight', 150));
    const failed = check([long, ok]);
    assert.equal(failed.status, 1);
    assert.match(failed.stdout, /151 .*long\.ts:1 tooLong/);
    assert.doesNotMatch(failed.stdout, /justRight/);
    assert.equal(check([ok]).status, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
