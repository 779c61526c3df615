import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkConfigPermissions, configSecrets } from '../../src/config/file-permissions.js';
import { UsageError } from '../../src/errors.js';
import type { ConfigFile } from '../../src/config/file.js';

const P = '/etc/tranproxy/gateway.yaml';

test('group- or world-writable files are refused with the chmod that fixes them', () => {
  for (const mode of [0o664, 0o666, 0o620, 0o602, 0o100622]) {
    assert.throws(
      () => checkConfigPermissions(P, { mode, uid: 0 }, 0, []),
      (e: Error) => e instanceof UsageError && /chmod go-w \/etc\/tranproxy\/gateway\.yaml/.test(e.message),
    );
  }
  assert.throws(() => checkConfigPermissions(P, { mode: 0o646, uid: 0 }, 0, []), /mode 0646 lets every user change/);
  assert.throws(() => checkConfigPermissions(P, { mode: 0o660, uid: 0 }, 0, []), /mode 0660 lets its group change/);
});

test('a file owned by another non-root user is refused; root-owned or own files are fine', () => {
  assert.throws(
    () => checkConfigPermissions(P, { mode: 0o600, uid: 1000 }, 0, []),
    /owned by uid 1000, neither root nor the user running tranproxy \(uid 0\).*chown root/,
  );
  assert.deepEqual(checkConfigPermissions(P, { mode: 0o600, uid: 0 }, 1000, []), []);
  assert.deepEqual(checkConfigPermissions(P, { mode: 0o600, uid: 1000 }, 1000, []), []);
});

test('world-readable with secrets: a warning naming them; without secrets, or not world-readable: nothing', () => {
  const w = checkConfigPermissions(P, { mode: 0o644, uid: 0 }, 0, ['nodes.a']);
  assert.equal(w.length, 1);
  assert.match(w[0]!, /mode 0644 lets every user read the secrets in it \(nodes\.a\): run 'chmod o-r/);
  assert.deepEqual(checkConfigPermissions(P, { mode: 0o644, uid: 0 }, 0, []), []);
  assert.deepEqual(checkConfigPermissions(P, { mode: 0o640, uid: 0 }, 0, ['nodes.a']), []);
});

test('secrets: node URIs with a password, every Shadowsocks node, --upstream, the console hash; never the value', () => {
  const file = {
    run: { upstream: 'socks5://u:hunter2@10.0.0.1:1080' },
    nodes: {
      open: { uri: 'socks5://10.0.0.2:1080' },
      auth: { uri: 'http://user:pw@proxy.example:3128' },
      ss: { uri: 'ss://YWVzLTI1Ni1nY206c2VjcmV0@203.0.113.11:8388#b' },
    },
    console: { passwordHash: 'scrypt$16384$8$1$c2FsdA$aGFzaA' },
  } as unknown as Pick<ConfigFile, 'nodes' | 'console' | 'run'>;
  const s = configSecrets(file);
  assert.deepEqual(s, ['nodes.auth', 'nodes.ss', 'upstream', 'console.password-hash']);
  assert.doesNotMatch(checkConfigPermissions(P, { mode: 0o644, uid: 0 }, 0, s)[0]!, /hunter2|pw@|c2VjcmV0/);
});
