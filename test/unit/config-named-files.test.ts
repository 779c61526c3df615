// Issue 14 items 6 and 12: files a config names (domain lists) are read as regular files only,
// never through a link, never blocking on a FIFO or filling memory from a device, capped in
// size, refused when others could write them, and never quoted in an error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile, parseConfigText } from '../../src/config/file.js';
import { readNamedFile, readNamedFileSync } from '../../src/config/safe-read.js';
import { reviveDomainList } from '../../src/route/domain-list.js';

const SECRET_LINE = 'root:$y$j9T$s3cr3tHashValue:19000:0:99999:7:::';

function lab(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-named-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function configNaming(dir: string, list: string): string {
  const path = join(dir, 'gw.yaml');
  writeFileSync(path, `rules:\n  - domain-list: ${JSON.stringify(list)}\n    outbound: reject\ndefault: direct\n`, {
    mode: 0o600,
  });
  return path;
}

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  assert.fail('expected an error');
}

test('a secret file named as a domain list: the error names the file and line, never its content', (t) => {
  const dir = lab(t);
  const shadow = join(dir, 'shadow');
  writeFileSync(shadow, `${SECRET_LINE}\n`, { mode: 0o600 });
  const m = errorOf(() => loadConfigFile(configNaming(dir, shadow)));
  assert.match(m, /shadow:1: not a domain/);
  assert.doesNotMatch(m, /s3cr3t|root|\$y\$/);
});

test('devices, FIFOs, links and directories are refused without reading or blocking', async (t) => {
  const dir = lab(t);
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const link = join(dir, 'link');
  symlinkSync('/etc/hostname', link);
  const t0 = Date.now();
  for (const [path, why] of [
    ['/dev/zero', /is a device/],
    [fifo, /is a FIFO/],
    [link, /is a symbolic link/],
    [dir, /is a directory/],
  ] as const) {
    assert.match(
      errorOf(() => loadConfigFile(configNaming(dir, path))),
      why,
      path,
    );
    await assert.rejects(readNamedFile('domain list', path), why, path);
  }
  assert.ok(Date.now() - t0 < 2000, 'nothing blocked');
});

test('a list larger than 32 MiB is refused before it is read', async (t) => {
  const dir = lab(t);
  const big = join(dir, 'big.txt');
  writeFileSync(big, '');
  chmodSync(big, 0o600);
  truncateSync(big, (32 << 20) + 1); // sparse: no disk used
  assert.throws(() => readNamedFileSync('domain list', big), /larger than 32 MiB/);
  await assert.rejects(readNamedFile('domain list', big), /larger than 32 MiB/);
});

test('a domain list others could change is refused like the config file itself', (t) => {
  const dir = lab(t);
  const list = join(dir, 'ads.txt');
  writeFileSync(list, 'ads.example\n');
  chmodSync(list, 0o666);
  assert.match(
    errorOf(() => loadConfigFile(configNaming(dir, list))),
    /mode 0666 lets every user change which names are routed where: run 'chmod go-w .*ads\.txt'/,
  );
  chmodSync(list, 0o620);
  assert.match(
    errorOf(() => loadConfigFile(configNaming(dir, list))),
    /mode 0620 lets its group change/,
  );
  chmodSync(list, 0o644);
  chownSync(list, 4242, 4242);
  assert.match(
    errorOf(() => loadConfigFile(configNaming(dir, list))),
    /owned by uid 4242, neither root nor the user running tranproxy/,
  );
  chownSync(list, 0, 0);
  assert.ok(
    reviveDomainList([loadConfigFile(configNaming(dir, list)).routeRules[0]!.domainList!].flat()[0]!).matches(
      'x.ads.example',
    ),
  );
});

test('prototype keys are refused wherever a name becomes a key', () => {
  for (const key of ['__proto__', 'constructor', 'prototype']) {
    const yaml = `nodes:\n  ${key}: socks5://192.0.2.1:1080\ndefault: direct\n`;
    assert.match(
      errorOf(() => parseConfigText(yaml, 'gw.yaml')),
      new RegExp(`gw\\.yaml:2:3: '${key}' cannot be a key or a name`),
      key,
    );
  }
  assert.match(
    errorOf(() => parseConfigText('dns:\n  __proto__: {cache: false}\n', 'gw.yaml')),
    /'__proto__' cannot be a key/,
  );
});
