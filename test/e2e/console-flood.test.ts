// Issue 14 item 7: a flood of unauthenticated console connections dribbling login bodies must
// not take the supervisor's descriptors: the admin API keeps answering, and SIGTERM still
// removes the rules. The supervisor runs with RLIMIT_NOFILE 256 (prlimit), so 300 connections
// show what 20,000 would on a default limit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashPassword } from '../../src/console/auth.js';
import { tranproxyBin, withLab } from '../helpers/lab.js';
import { until } from '../helpers/wait.js';

const FLOOD = `
const net = require('node:net');
const held = [];
let connected = 0;
let open = 0;
for (let i = 0; i < 300; i++) {
  const s = net.connect(8080, '127.0.0.1', () => {
    connected++;
    open++;
    s.write('POST /api/login HTTP/1.1\\r\\nHost: 127.0.0.1:8080\\r\\nContent-Type: application/json\\r\\nContent-Length: 100000\\r\\n\\r\\n{');
  });
  s.on('error', () => {});
  s.on('close', () => open--);
  held.push(s);
}
setInterval(() => { for (const s of held) if (!s.destroyed) s.write(' '); }, 500);
setInterval(() => console.log('connected ' + connected + ' open ' + open), 100);
`;

test('console flood under RLIMIT_NOFILE 256: the admin API answers, SIGTERM removes the nft table', {
  timeout: 120_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-flood-'));
  try {
    const config = join(dir, 'gw.yaml');
    const hash = await hashPassword('flood test password', { N: 1024, r: 8, p: 1 });
    writeFileSync(config, `ports: [80]\nfamily: ipv4\nconsole:\n  password-hash: ${hash}\n`, { mode: 0o600 });
    await withLab(async (lab) => {
      const h = lab.addHost('h');
      const proxy = h.spawn('prlimit', [
        '--nofile=256:256',
        process.execPath,
        tranproxyBin(),
        'run',
        '--config',
        config,
        '--console',
        '127.0.0.1:8080',
        '--admin',
      ]);
      await proxy.waitForOutput(/ready:/, 20_000);
      assert.match((await h.run('nft', ['list', 'ruleset'])).stdout, /table \w+ tranproxy/, 'rules applied');

      const flood = h.spawn(process.execPath, ['-e', FLOOD]);
      // Every connection made, and the console has closed all but its cap (3 reads in a row).
      const last = () => [...flood.output().matchAll(/connected (\d+) open (\d+)/g)].slice(-3);
      await until(
        () => `the console to hold at most 64 of 300 connections (cap 64); last: ${last().at(-1)?.[0]}`,
        () => last().length === 3 && last().every((m) => Number(m[1]) === 300 && Number(m[2]) <= 64),
        10_000,
      );

      const health = await h.run('curl', ['-s', '--max-time', '5', 'http://127.0.0.1:15000/healthz'], {
        allowFailure: true,
      });
      assert.equal(health.stdout, 'ok\n', 'the admin API still answers during the flood');

      await proxy.stop('SIGTERM');
      assert.equal(proxy.child.exitCode, 0, proxy.output());
      assert.doesNotMatch(proxy.output(), /removing rules failed|EMFILE/);
      assert.doesNotMatch((await h.run('nft', ['list', 'ruleset'])).stdout, /tranproxy/, 'the nft table is gone');
      await flood.stop('SIGKILL');
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
