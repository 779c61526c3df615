// #18: a console change is applied only if it can be saved. The config directory is made
// read-only (EROFS) by a bind mount inside a private mount namespace this test creates.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('../helpers/console-store-child.ts', import.meta.url));
const FILE = `mode: tproxy
capture: prerouting
in-interfaces: [eth1]
default: direct
`;

/** Runs the child with `dir` read-only in its own mount namespace (the host's mounts are untouched). */
function changeInReadOnlyDir(
  dir: string,
  path: string,
  body: unknown,
): {
  put: { status: number; body: { error?: string } };
  state: { enabled: boolean };
  applied: boolean[];
  running: boolean;
} {
  const script =
    'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && exec node --import tsx "$2" "$3" "$4"';
  const r = spawnSync(
    'unshare',
    ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', dir, CHILD, path, JSON.stringify(body)],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test('console: a change that cannot be saved (read-only config directory) is refused and not applied', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-console-ro-'));
  try {
    const path = join(dir, 'gateway.yaml');
    writeFileSync(path, FILE, { mode: 0o600 });
    const r = changeInReadOnlyDir(dir, path, { enabled: false });
    assert.ok(r.put.status >= 500, `status ${r.put.status}`);
    assert.match(r.put.body.error ?? '', /cannot save .*gateway\.yaml: EROFS; the change was not applied/);
    assert.deepEqual(r.applied, [], 'the supervisor was never asked to run the unsaved change');
    assert.equal(r.running, true);
    assert.equal(r.state.enabled, true, '/api/state still shows the old state');
    assert.equal(readFileSync(path, 'utf8'), FILE);
    assert.deepEqual(readdirSync(dir), ['gateway.yaml'], 'no temporary file left');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
