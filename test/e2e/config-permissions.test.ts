// Issue 8: `tranproxy run --config FILE` refuses a file others could change and warns about
// node passwords everybody can read, before touching the firewall.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTranproxy, tranproxyBin, withLab } from '../helpers/lab.js';
import { stopGracefully } from '../helpers/procs.js';

const YAML = [
  'mode: redirect',
  'ports: [80]',
  'family: ipv4',
  'nodes:',
  '  a: socks5://user:s3cret-pw@10.87.1.2:1080',
  'rules:',
  '  - port: 81',
  '    outbound: a',
  'default: direct',
  '',
].join('\n');

test('run --config: a world-writable or foreign-owned file is refused (exit 2, no rules); world-readable with passwords is a warning', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-perm-'));
  try {
    const file = join(dir, 'gw.yaml');
    writeFileSync(file, YAML);
    await withLab(async (lab) => {
      const h = lab.addHost('h');
      const run = () =>
        h.run(process.execPath, [tranproxyBin(), 'run', '--config', file], { allowFailure: true, timeoutMs: 30_000 });

      chmodSync(file, 0o666);
      const writable = await run();
      assert.equal(writable.status, 2, writable.stderr);
      assert.match(
        writable.stderr,
        /mode 0666 lets every user change the proxy's rules and nodes: run 'chmod go-w .*gw\.yaml'/,
      );
      assert.doesNotMatch(writable.stderr, /s3cret-pw/);
      assert.doesNotMatch((await h.run('nft', ['list', 'ruleset'])).stdout, /tranproxy/, 'nothing applied');

      chmodSync(file, 0o600);
      chownSync(file, 4242, 4242);
      const foreign = await run();
      assert.equal(foreign.status, 2, foreign.stderr);
      assert.match(foreign.stderr, /owned by uid 4242, neither root nor the user running tranproxy/);

      chownSync(file, 0, 0);
      chmodSync(file, 0o644);
      const proxy = await startTranproxy(h, ['run', '--config', file]);
      assert.match(
        proxy.output(),
        /WARN.*mode 0644 lets every user read the secrets in it \(nodes\.a\): run 'chmod o-r/,
      );
      assert.doesNotMatch(proxy.output(), /s3cret-pw/);
      await stopGracefully(proxy);

      chmodSync(file, 0o600);
      const quiet = await startTranproxy(h, ['run', '--config', file]);
      assert.doesNotMatch(quiet.output(), /WARN.*--config/);
      await stopGracefully(quiet);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
