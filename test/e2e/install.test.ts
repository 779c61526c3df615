// The README's two ways to get the command: `npm install -g .` in the clone and `npx tranproxy`.
// The global install goes to a temporary --prefix, never the host's /usr/local.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
  return spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', env, timeout: 120_000 });
}

test('README install: npm install -g . puts tranproxy on PATH; npx tranproxy runs it from the clone', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  assert.match(readme, /^npm install -g \.\s/m);
  assert.match(readme, /npx tranproxy/);
  const prefix = mkdtempSync(join(tmpdir(), 'tranproxy-install-'));
  try {
    const inst = run('npm', ['install', '-g', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', '.']);
    assert.equal(inst.status, 0, inst.stderr);
    // A new shell with only the prefix's bin added, as a user would after installing.
    const env = { ...process.env, PATH: `${join(prefix, 'bin')}:${process.env.PATH ?? ''}` };
    const onPath = spawnSync('tranproxy', ['--version'], { cwd: tmpdir(), encoding: 'utf8', env });
    assert.equal(onPath.status, 0, onPath.stderr);
    assert.equal(onPath.stdout.trim(), VERSION);
  } finally {
    rmSync(prefix, { recursive: true, force: true });
  }
  const npx = run('npx', ['--no-install', 'tranproxy', '--version']);
  assert.equal(npx.status, 0, npx.stderr);
  assert.equal(npx.stdout.trim(), VERSION);
});
