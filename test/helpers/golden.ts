// Golden files: rendered text compared with a committed file under test/golden/;
// UPDATE_GOLDEN=1 rewrites the files instead of comparing (review the diff, then commit).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const GOLDEN_ROOT = fileURLToPath(new URL('../golden/', import.meta.url));
const UPDATE = process.env.UPDATE_GOLDEN === '1';

export interface GoldenOptions {
  /** Folder under test/golden/ ('' for test/golden itself). */
  dir?: string;
  /** '' means "no file expected": rendering nothing is a result too (the file is then removed on update). */
  emptyMeansAbsent?: boolean;
}

/** Compare `actual` with test/golden/[dir/]name, or write it there with UPDATE_GOLDEN=1. */
export function golden(name: string, actual: string, opts: GoldenOptions = {}): void {
  const dir = join(GOLDEN_ROOT, opts.dir ?? '');
  const path = join(dir, name);
  const absent = opts.emptyMeansAbsent === true && !actual;
  if (UPDATE) {
    mkdirSync(dir, { recursive: true });
    if (!absent) writeFileSync(path, actual);
    else if (existsSync(path)) unlinkSync(path);
    return;
  }
  if (absent) {
    assert.ok(!existsSync(path), `${name}: nothing rendered but a golden file exists`);
    return;
  }
  assert.ok(existsSync(path), `${name}: golden file missing (run with UPDATE_GOLDEN=1)`);
  assert.equal(actual, readFileSync(path, 'utf8'), `${name} differs from its golden file (UPDATE_GOLDEN=1 to accept)`);
}
