// Subscription bodies from a provider are untrusted: whatever bytes arrive, decoding gives
// entries or a UsageError (never another exception), parsing skips what it cannot use with
// a reason, and no skip reason repeats a password from the body.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fc, params } from './harness.js';
import { UsageError } from '../../src/errors.js';
import { parseEntries } from '../../src/console/links.js';
import { decodeSubscription } from '../../src/console/subscription-formats.js';

const SECRET = 'Sup3rSecretPw';
const SEEDS = [
  `ss://${Buffer.from(`aes-256-gcm:${SECRET}`).toString('base64url')}@192.0.2.1:8388/?plugin=obfs-local%3Bobfs%3Dhttp#%F0%9F%87%AD%F0%9F%87%B0`,
  `proxies:\n  - { name: a, type: ss, server: 192.0.2.1, port: 1, cipher: aes-128-gcm, password: ${SECRET}, plugin: v2ray-plugin, plugin-opts: { mode: websocket, tls: true } }\n  - { name: b, type: vmess, server: h, port: 2, uuid: x }\n`,
  JSON.stringify({
    version: 1,
    servers: [{ remarks: 'r', server: '192.0.2.1', server_port: 8388, password: SECRET, method: 'aes-256-gcm' }],
  }),
  `trojan://${SECRET}@192.0.2.1:443?sni=a#t\nvless://${SECRET}@192.0.2.1:443?type=ws#v\nvmess://${Buffer.from(JSON.stringify({ add: '192.0.2.1', port: 1, id: SECRET })).toString('base64')}`,
];

function mutate(text: string, edits: [number, number, string][]): string {
  let s = text;
  for (const [pos, del, ins] of edits) {
    const p = pos % (s.length + 1);
    s = s.slice(0, p) + ins + s.slice(p + del);
  }
  return s;
}

function check(body: string): void {
  let decoded: ReturnType<typeof decodeSubscription>;
  try {
    decoded = decodeSubscription(body);
  } catch (e) {
    assert.ok(e instanceof UsageError, `not a UsageError: ${(e as Error).stack}`);
    return;
  }
  const { links, skipped } = parseEntries(decoded.entries);
  assert.equal(links.length + skipped.length, decoded.entries.length);
  for (const s of skipped) assert.ok(!s.reason.includes(SECRET), `a skip reason shows the password: ${s.reason}`);
}

test('subscription bodies: mutated seeds and arbitrary text never crash, never leak the password in a reason', () => {
  const edit = fc.tuple(
    fc.nat(4000),
    fc.nat(8),
    fc.oneof(
      fc.string({ maxLength: 6 }),
      fc.constantFrom('\n', '\r\n', '://', '#', '%', '@', ':', ';', '{', '}', '- ', 'proxies:', '=', '&'),
    ),
  );
  fc.assert(
    fc.property(fc.constantFrom(...SEEDS), fc.array(edit, { maxLength: 6 }), fc.boolean(), (seed, edits, b64) => {
      const body = mutate(seed, edits);
      check(b64 ? Buffer.from(body).toString('base64') : body);
    }),
    params(800),
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), (s) => check(s)),
    params(800, 2000),
  );
});
