// Config export/import (src/console/transfer.ts), "Test all" with its limit and kept results
// (src/console/node-tests.ts) and the Nodes page's latency order (ui/src/api-nodes.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { once } from 'node:events';
import net from 'node:net';
import { targetOutcome } from '../../src/console/probe.js';
import { parseConfigText } from '../../src/config/file.js';
import { parseDoc } from '../../src/console/document.js';
import { mapLimit, NodeTests } from '../../src/console/node-tests.js';
import {
  exportText,
  importDiff,
  importedDoc,
  MAX_IMPORT_BYTES,
  redactUrl,
  replaceContents,
} from '../../src/console/transfer.js';
import { ValidationError } from '../../src/console/document.js';
import { byDelay, type NodeTest } from '../../ui/src/api-nodes.js';

const SS = `ss://${Buffer.from('aes-256-gcm:s3cret-pass').toString('base64url')}@192.0.2.1:8388#%F0%9F%87%AD%F0%9F%87%B0%20%E9%A6%99%E6%B8%AF`;
const HASH = 'scrypt$16384$8$1$c2FsdA$aGFzaA';
const CONFIG = [
  '# my gateway',
  'mode: tproxy',
  'default: hk',
  'nodes:',
  `  hk: { uri: "${SS}", label: "🇭🇰 香港" }`,
  '  s5: socks5://user:pw@192.0.2.2:1080',
  'rules:',
  '  - cidr: [10.0.0.0/8]   # office',
  '    outbound: direct',
  'console:',
  `  password-hash: ${HASH}`,
  '  subscriptions:',
  '    - url: https://sub.example/api?token=abcdef',
  '      nodes: [hk]',
  '',
].join('\n');

test('export: secrets redacted (links, password hash, subscription token), layout and labels kept; with secrets: the file itself', () => {
  const out = exportText(CONFIG, false);
  for (const secret of [
    's3cret-pass',
    'pw@',
    HASH,
    'abcdef',
    Buffer.from('aes-256-gcm:s3cret-pass').toString('base64url'),
  ])
    assert.ok(!out.includes(secret), `${secret} leaked: ${out}`);
  assert.match(out, /^# my gateway\nmode: tproxy\n/);
  assert.match(out, /cidr: \[10\.0\.0\.0\/8\] {3}# office/);
  assert.match(out, /label: "🇭🇰 香港"/);
  assert.match(out, /password-hash: "?\*\*\*"?/);
  assert.match(out, /url: "https:\/\/sub\.example\/api\?\*\*\*"\n/);
  assert.equal(exportText(CONFIG, true), CONFIG);
  assert.equal(redactUrl('https://u:p@h.example/x?t=1'), 'https://***@h.example/x?***');
  assert.equal(redactUrl('https://h.example/plain'), 'https://h.example/plain');
});

function imported(text: string): string {
  const doc = parseDoc(CONFIG);
  replaceContents(doc, importedDoc(text, doc));
  return doc.toString();
}

test('import of a redacted export gives the secrets back from the stored file; the result validates', () => {
  const back = imported(exportText(CONFIG, false));
  const file = parseConfigText(back, 'x.yaml');
  assert.equal(file.nodes.hk!.uri, SS);
  assert.equal(file.nodes.s5!.uri, 'socks5://user:pw@192.0.2.2:1080');
  assert.equal(file.console?.passwordHash, HASH);
  assert.equal(file.console?.subscriptions[0]?.url, 'https://sub.example/api?token=abcdef');
  assert.equal(file.nodes.hk!.label, '🇭🇰 香港');
});

test('import: an import without the console password keeps the stored one', () => {
  const file = parseConfigText(imported('mode: tproxy\ndefault: direct\n'), 'x.yaml');
  assert.equal(file.console?.passwordHash, HASH);
});

test('hostile imports: bad YAML, not a mapping, too large, redacted secret of an unknown node: clear errors', () => {
  const refused = (text: string, re: RegExp) =>
    assert.throws(
      () => imported(text),
      (e: unknown) => e instanceof ValidationError && e.errors[0]!.field === 'yaml' && re.test(e.errors[0]!.message),
    );
  refused('mode: [tproxy\n', /^YAML: /);
  refused('- a\n- b\n', /expected a YAML mapping/);
  refused('just text', /expected a YAML mapping/);
  refused(`a: "${'x'.repeat(MAX_IMPORT_BYTES)}"\n`, /larger than 512 KiB/);
  refused('nodes:\n  new: socks5://u:***@192.0.2.9:1080\n', /node 'new': its secret is redacted/);
  // Prototype keys pass through importedDoc untouched and are refused by the config parser.
  assert.throws(
    () => parseConfigText(imported('nodes:\n  __proto__: socks5://192.0.2.1:1080\n'), 'x.yaml'),
    /__proto__/,
  );
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('import diff: nodes added/removed/changed, rules count, other settings', () => {
  const before = parseConfigText(CONFIG, 'a.yaml');
  const after = parseConfigText(
    CONFIG.replace('mode: tproxy', 'mode: redirect')
      .replace('  s5: socks5://user:pw@192.0.2.2:1080', '  s6: socks5://192.0.2.3:1080')
      .replace('192.0.2.1:8388', '192.0.2.7:8388'),
    'b.yaml',
  );
  const d = importDiff(before, after);
  assert.deepEqual(d.nodes, { added: ['s6'], removed: ['s5'], changed: ['hk'] });
  assert.deepEqual(d.rules, { before: 1, after: 1 });
  assert.deepEqual(d.settings, ['mode']);
  assert.equal(d.unchanged, false);
  assert.equal(importDiff(before, before).unchanged, true);
});

test('Test all: at most the limit at once, results kept per node until its link changes', async () => {
  let now = 0;
  let peak = 0;
  const out = await mapLimit([1, 2, 3, 4, 5, 6, 7, 8, 9], 4, async (x) => {
    peak = Math.max(peak, ++now);
    await new Promise((r) => setTimeout(r, 5));
    now--;
    return x * 2;
  });
  assert.deepEqual(out, [2, 4, 6, 8, 10, 12, 14, 16, 18]);
  assert.equal(peak, 4);
  const tests = new NodeTests();
  const nodes = [
    { name: 'a', uri: 'socks5://192.0.2.1:1' },
    { name: 'b', uri: 'socks5://192.0.2.1:2' },
  ];
  const all = await tests.runAll(nodes, async (name, uri) => ({ ok: name === 'a', url: uri, delayMs: 12 }));
  assert.deepEqual(Object.keys(all), ['a', 'b']);
  assert.equal(tests.current(nodes).a!.ok, true);
  assert.deepEqual(Object.keys(tests.current([{ name: 'a', uri: 'socks5://192.0.2.1:9' }, nodes[1]!])), ['b']);
});

test('Nodes page order: answering nodes by delay, then failed, then untested (each in file order)', () => {
  const r = (ok: boolean, delayMs?: number): NodeTest => ({ ok, url: '', at: '', ...(delayMs ? { delayMs } : {}) });
  assert.deepEqual(
    byDelay(['a', 'b', 'c', 'd', 'e', 'f'], { b: r(true, 300), c: r(false), d: r(true, 20), f: r(false) }),
    ['d', 'b', 'c', 'f', 'a', 'e'],
  );
});

test('check through a node that answers before reaching the target: a close within the window is a failure; data or an open stream is the target taking it', async () => {
  const server = net.createServer((s) => {
    s.once('data', (b) => {
      const what = b.toString();
      if (what === 'close') s.end();
      else if (what === 'talk') s.write('banner');
      // 'silent': nothing, stays open
    });
    s.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const open = async (first: string) => {
    const s = net.connect(port, '127.0.0.1');
    await once(s, 'connect');
    s.write(first);
    return s;
  };
  try {
    await assert.rejects(targetOutcome(await open('close'), 2000), /the target refused it or is unreachable/);
    assert.equal(typeof (await targetOutcome(await open('talk'), 2000)), 'number');
    const t0 = Date.now();
    assert.equal(await targetOutcome(await open('silent'), 300), undefined);
    assert.ok(Date.now() - t0 >= 290);
  } finally {
    server.close();
  }
});

test('export redacts the proxy-mode password and credential headers; import takes them back by name', () => {
  const text = [
    'proxy-auth: alice:pr0xy-pw',
    'headers:',
    '  - "Authorization: Bearer tok-123"',
    '  - X-Team: blue',
    '    X-Api-Key: k-456',
    '  - "X-Client-Hostname: pod-1"',
    '',
  ].join('\n');
  const out = exportText(text, false);
  for (const secret of ['pr0xy-pw', 'tok-123', 'k-456']) assert.ok(!out.includes(secret), `${secret} leaked: ${out}`);
  assert.match(out, /proxy-auth: "alice:\*\*\*"/);
  assert.match(out, /X-Team: blue/);
  assert.match(out, /X-Client-Hostname: pod-1/);
  const doc = parseDoc(text);
  replaceContents(doc, importedDoc(out, doc));
  const back = parseConfigText(doc.toString(), 'x.yaml');
  assert.equal(back.run.proxyAuth, 'alice:pr0xy-pw');
  assert.deepEqual(
    back.run.header?.map((h) => `${h.name}: ${h.value}`),
    ['Authorization: Bearer tok-123', 'X-Team: blue', 'X-Api-Key: k-456', 'X-Client-Hostname: pod-1'],
  );
  // A redacted secret with nothing stored to take it from is refused, not imported as '***'.
  assert.throws(() => importedDoc(out, parseDoc('mode: tproxy\n')), ValidationError);
});
