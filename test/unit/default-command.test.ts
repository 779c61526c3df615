// The image takes nginx-tranproxy's arguments unchanged: `IMAGE -P 80 -H a:b -- cmd` is
// `tranproxy run -P 80 -H a:b -- cmd`. The rewrite, and deploy/entrypoint.sh driving the real CLI.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PARSE_ONLY_ENV, wantsOneProcess, withDefaultCommand } from '../../src/cli/default-command.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SUBS = ['run', 'rules', 'demo', 'inject', 'webhook', 'publish', 'lab', 'doctor', 'console'];

test('arguments without a subcommand go to the default one; a subcommand or --help goes through', () => {
  const seed = ['-P', '80', '-H', 'a:b', '--', 'nginx', '-g', 'daemon off;'];
  assert.deepEqual(withDefaultCommand(seed, SUBS, 'run'), ['run', ...seed]);
  assert.deepEqual(withDefaultCommand(['--Set-Forwarded-For', '-P', '80'], SUBS, 'run'), [
    'run',
    '--Set-Forwarded-For',
    '-P',
    '80',
  ]);
  assert.deepEqual(withDefaultCommand(['--', 'curl', 'x'], SUBS, 'run'), ['run', '--', 'curl', 'x']);
  for (const args of [
    ['rules', 'plan'],
    ['webhook', '--port', '8443'],
    ['run', '-P', '80'],
    ['--help'],
    ['-V'],
    ['help', 'run'],
    [],
  ]) {
    assert.deepEqual(withDefaultCommand(args, SUBS, 'run'), args, JSON.stringify(args));
  }
  assert.deepEqual(withDefaultCommand(seed, SUBS, undefined), seed, 'no rewrite outside the image');
  assert.deepEqual(withDefaultCommand(seed, SUBS, ''), seed, 'empty switches it off');
  assert.throws(
    () => withDefaultCommand(seed, SUBS, 'rum'),
    /TRANPROXY_DEFAULT_COMMAND: 'rum' is not one of run, rules/,
  );
});

test('deploy/entrypoint.sh: the seed arguments reach `tranproxy run`, subcommands stay as they are', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-entry-'));
  try {
    // `tranproxy` on PATH as in the image, here the sources through tsx.
    writeFileSync(
      join(dir, 'tranproxy'),
      `#!/bin/sh\nexec "${process.execPath}" --import tsx "${join(ROOT, 'src/cli/main.ts')}" "$@"\n`,
    );
    chmodSync(join(dir, 'tranproxy'), 0o755);
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${dir}:${process.env.PATH}` };
    delete env.TRANPROXY_DEFAULT_COMMAND;
    const entry = (...args: string[]) =>
      spawnSync('sh', [join(ROOT, 'deploy/entrypoint.sh'), ...args], { encoding: 'utf8', env, cwd: ROOT });
    const help = entry('-P', '80', '-H', 'a:b', '--help');
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^Usage: tranproxy run \[options\] \[command\.\.\.\]/, 'seed flags mean run');
    const rules = entry('rules', 'plan', '--firewall', 'nft', '-P', '80');
    assert.equal(rules.status, 0, rules.stderr);
    assert.match(rules.stdout, /tcp dport 80 redirect to :15001/, 'a subcommand is kept');
    const top = entry('--help');
    assert.match(top.stdout, /^Usage: tranproxy \[options\] \[command\]/, 'top-level help stays');
    assert.match(readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8'), /ENTRYPOINT \["tranproxy-entrypoint"\]/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('run --one-process goes to the lean entry; help, a program after --, and the parser itself do not', () => {
  const env = {};
  assert.equal(wantsOneProcess(['run', '-P', '80', '--firewall', 'none', '--one-process'], env), true);
  assert.equal(wantsOneProcess(['run', '-P', '80'], env), false);
  assert.equal(wantsOneProcess(['rules', 'apply', '--one-process'], env), false);
  assert.equal(wantsOneProcess(['run', '--one-process', '--help'], env), false);
  assert.equal(wantsOneProcess(['run', '-P', '80', '--', 'prog', '--one-process'], env), false);
  // The parser child runs `run --one-process` again: it must parse, not start another parser.
  assert.equal(wantsOneProcess(['run', '--firewall', 'none', '--one-process'], { [PARSE_ONLY_ENV]: '1' }), false);
});
