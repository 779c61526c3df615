// The lean `run` entry: which configurations it hands to run's own process, and the parser
// child's answer arriving whole however large (a domain list crosses it packed).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'node:test';
import { fileURLToPath } from 'node:url';
import { configPathOf, namesLists } from '../../src/cli/lean-run.js';
import { PARSE_ONLY_ENV } from '../../src/cli/default-command.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

test('the config path as commander reads it; files naming domain lists or rule sets run in-process', () => {
  assert.equal(configPathOf(['--config', 'a.yaml']), 'a.yaml');
  assert.equal(configPathOf(['-P', '80', '--config=b.yaml']), 'b.yaml');
  assert.equal(configPathOf(['-c', 'c.yaml']), 'c.yaml');
  assert.equal(configPathOf(['-cd.yaml']), 'd.yaml');
  assert.equal(configPathOf(['-P', '80', '--', 'cmd', '--config', 'x']), undefined);
  const dir = mkdtempSync(join(tmpdir(), 'tpx-lean-'));
  try {
    const plain = join(dir, 'plain.yaml');
    const lists = join(dir, 'lists.yaml');
    const sets = join(dir, 'sets.json');
    writeFileSync(plain, 'rules:\n  - domain-suffix: example.com\n    outbound: direct\n');
    writeFileSync(lists, 'rules:\n  - domain-list: list.txt\n    outbound: direct\n');
    writeFileSync(sets, '{"rule-sets": {"ads": {"url": "http://127.0.0.1/x"}}}');
    assert.equal(namesLists(['run', '--config', plain]), false);
    assert.equal(namesLists(['run', '--config', lists]), true);
    assert.equal(namesLists(['run', '-c', sets]), true);
    assert.equal(namesLists(['run', '-P', '80']), false);
    assert.equal(namesLists(['run', '--config', join(dir, 'missing.yaml')]), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the parser child answers whole: a 60,000-entry domain list for --one-process crosses its pipe', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-lean-'));
  try {
    const names = Array.from({ length: 60_000 }, (_, i) => `host${i}.example${i % 97}.com`);
    writeFileSync(join(dir, 'list.txt'), `${names.join('\n')}\n`);
    const file = join(dir, 'tranproxy.yaml');
    writeFileSync(file, 'rules:\n  - domain-list: list.txt\n    outbound: direct\ndefault: direct\n');
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', MAIN, 'run', '--one-process', '--config', file, '--firewall', 'none', '-P', '80'],
      {
        env: { ...process.env, [PARSE_ONLY_ENV]: '1', TRANPROXY_DEFAULT_COMMAND: '' },
        encoding: 'utf8',
        maxBuffer: 1 << 30,
      },
    );
    assert.equal(r.status, 0, r.stderr);
    // Before, exit() right after the write cut the answer at the pipe's first few hundred KB.
    const wire = JSON.parse(r.stdout) as { lists?: string };
    assert.ok((wire.lists?.length ?? 0) > 256 << 10, `lists of ${wire.lists?.length} base64 characters`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
