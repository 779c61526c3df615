// Fuzz target: the YAML config loader (src/config/file.ts parseConfigText).
// Property: any text — random, YAML built from the real keys with good and bad values,
// mutations of the fixtures — gives either a ConfigFile or a ConfigError whose issues each
// carry a file, a line and a column inside the text, a message and a path; never another
// exception, whatever the domain list files say or however reading them fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { ConfigError, parseConfigText, type ConfigFile, type ParseOptions } from '../../src/config/file.js';
import { KNOWN_KEYS } from '../../src/config/schema.js';
import { corpus, fc, mutated, params } from './harness.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/config/', import.meta.url));

/** Domain list files: some good, one broken, one unreadable in an odd way, the rest missing. */
const LISTS: Record<string, string> = {
  '/cfg/lists/ads.txt': '# ads\ndoubleclick.net\ndomain:ads.example\nfull:pixel.example.org\nkeyword:tracker\n',
  '/cfg/lists/broken.txt': 'full:\nregexp:(\n\x00\n',
  '/cfg/lists/big.txt': Array.from({ length: 500 }, (_, i) => `d${i}.example`).join('\n'),
};
const readFile: NonNullable<ParseOptions['readFile']> = (p) => {
  if (p in LISTS) return LISTS[p]!;
  if (p.endsWith('/weird.txt')) throw new Error('not an errno error');
  if (p.endsWith('/eacces.txt')) throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
  throw Object.assign(new Error(`ENOENT: no such file, open '${p}'`), { code: 'ENOENT' });
};

function check(text: string): 'ok' | 'error' {
  let cfg: ConfigFile;
  try {
    cfg = parseConfigText(text, '/cfg/x.yaml', { readFile });
  } catch (e) {
    assert.ok(
      e instanceof ConfigError,
      `not a ConfigError: ${(e as Error)?.name}: ${(e as Error)?.message}\n${(e as Error)?.stack}`,
    );
    assert.ok(e.issues.length > 0);
    const lines = text.split(/\r\n|\r|\n/).length;
    for (const i of e.issues) {
      assert.equal(i.file, '/cfg/x.yaml');
      assert.ok(Number.isInteger(i.line) && i.line >= 1 && i.line <= lines + 1, `line ${i.line} of ${lines}`);
      assert.ok(Number.isInteger(i.col) && i.col >= 1, `col ${i.col}`);
      assert.equal(typeof i.path, 'string');
      assert.ok(i.message.length > 0);
    }
    assert.equal(e.exitCode, 2, 'a usage error');
    return 'error';
  }
  assert.equal(cfg.path, '/cfg/x.yaml');
  assert.ok(Array.isArray(cfg.routeRules));
  return 'ok';
}

// ── generators ───────────────────────────────────────────────────────────────

const scalarArb = fc.oneof(
  fc.constantFrom(
    'redirect',
    'tproxy',
    'output',
    'prerouting',
    'dual',
    'ipv4',
    'nft',
    'none',
    'auto',
    'json',
    'append',
    'direct',
    'reject',
    'node-a',
    '80',
    '8000-8100',
    '65536',
    '0',
    '-1',
    '10.0.0.0/8',
    'fd00::/8',
    '300.1.1.1/33',
    '1337:1337',
    'root',
    '0x539',
    '0xzz',
    '5s',
    '10m',
    '1h',
    'forever',
    '250ms',
    'X-Team: payments',
    'Bad Header: x',
    'default',
    'hostname',
    'socks5://u:p@203.0.113.1:1080',
    'ss://aes-256-gcm:pw@203.0.113.2:8388',
    'http://proxy.example:3128',
    'ftp://x',
    'lists/ads.txt',
    'lists/broken.txt',
    'lists/missing.txt',
    'lists/weird.txt',
    'lists/eacces.txt',
    '/cfg/lists/big.txt',
    'example.com',
    '*.example.com',
    'eth0',
    'a-very-long-interface-name',
    '127.0.0.1:5353',
    '[::1]:53',
    '198.18.0.0/15',
    'tcp',
    'udp',
    '__proto__',
    'constructor',
    '',
  ),
  fc.integer({ min: -10, max: 70000 }),
  fc.boolean(),
  fc.constant(null),
  fc.string({ maxLength: 12 }),
);
const valueArb: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    scalarArb,
    fc.array(tie('value'), { maxLength: 3 }),
    fc.dictionary(
      fc.oneof(
        fc.constantFrom(...KNOWN_KEYS.rule, ...KNOWN_KEYS.node, 'X-Env', 'node-a', '__proto__'),
        fc.string({ maxLength: 6 }),
      ),
      tie('value'),
      { maxKeys: 3 },
    ),
  ),
})).value;

const pairArb = (keys: readonly string[], v: fc.Arbitrary<unknown>) =>
  fc.tuple(fc.oneof(fc.constantFrom(...keys), fc.constantFrom('Mode', 'listen_port', 'port', 'rule', 'node')), v);
const ruleArb = fc.array(pairArb(KNOWN_KEYS.rule, valueArb), { maxLength: 4 }).map((ps) => Object.fromEntries(ps));
const nodeArb = fc.oneof(
  scalarArb,
  fc.array(pairArb(KNOWN_KEYS.node, valueArb), { maxLength: 3 }).map((ps) => Object.fromEntries(ps)),
);
const dnsArb = fc
  .array(
    pairArb(
      KNOWN_KEYS.dns,
      fc.oneof(
        valueArb,
        fc.array(pairArb(KNOWN_KEYS.fakeIp, valueArb), { maxLength: 2 }).map((ps) => Object.fromEntries(ps)),
      ),
    ),
    { maxLength: 4 },
  )
  .map((ps) => Object.fromEntries(ps));

const docArb = fc
  .array(
    fc.oneof(
      pairArb(KNOWN_KEYS.top, valueArb),
      fc.tuple(fc.constant('rules'), fc.array(ruleArb, { maxLength: 4 })),
      fc.tuple(
        fc.constant('nodes'),
        fc.dictionary(fc.constantFrom('node-a', 'node-b', 'bad name', 'direct'), nodeArb, { maxKeys: 3 }),
      ),
      fc.tuple(fc.constant('dns'), dnsArb),
    ),
    { maxLength: 8 },
  )
  .map((pairs) => {
    const o: Record<string, unknown> = {};
    for (const [k, v] of pairs)
      Object.defineProperty(o, k, { value: v, enumerable: true, configurable: true, writable: true });
    return o;
  });

const yamlTextArb = docArb.map((d) => stringify(d));
const FIXTURE_TEXTS = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => readFileSync(FIXTURES + f, 'latin1'));
const YAML_FRAGMENTS = [
  ': ',
  '\n',
  '\n  ',
  '- ',
  '[',
  ']',
  '{',
  '}',
  '&a ',
  '*a',
  '!!binary ',
  '? ',
  '|\n',
  '"',
  "'",
  '#',
  '\t',
  '---\n',
  '...\n',
  '<<: *a\n',
  'null',
  '~',
  '\ufeff',
  '\x00',
];

// ── properties ───────────────────────────────────────────────────────────────

test('corpus and fixtures replay: a ConfigFile or a ConfigError, nothing else', () => {
  const entries = corpus('config');
  assert.ok(entries.length >= 8);
  for (const { name, data } of entries) {
    try {
      check(data.toString('utf8'));
    } catch (e) {
      throw new Error(`corpus ${name}: ${(e as Error).message}`, { cause: e });
    }
  }
  assert.equal(
    check(readFileSync(`${FIXTURES}full.yaml`, 'utf8').replaceAll('lists/', '/cfg/lists/')),
    'ok',
    'the full fixture loads',
  );
});

test('YAML from the real keys with good and bad values', () => {
  let ok = 0;
  fc.assert(
    fc.property(yamlTextArb, (text) => {
      if (check(text) === 'ok') ok++;
    }),
    params(1500),
  );
  assert.ok(ok > 0, 'some generated configs are valid');
});

test('mutated fixtures and generated YAML', () => {
  fc.assert(
    fc.property(
      fc
        .oneof(fc.constantFrom(...FIXTURE_TEXTS), yamlTextArb)
        .chain((t) => mutated(Buffer.from(t, 'latin1'), YAML_FRAGMENTS)),
      (b) => {
        check(b.toString('latin1'));
        check(b.toString('utf8'));
      },
    ),
    params(1200),
  );
});

test('arbitrary text', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ maxLength: 200 }),
        fc.string({ unit: 'binary', maxLength: 200 }),
        fc.string({ unit: fc.constantFrom(...YAML_FRAGMENTS, 'a', 'rules', 'nodes', '1'), maxLength: 40 }),
      ),
      (t) => {
        check(t);
      },
    ),
    params(4000),
  );
});
