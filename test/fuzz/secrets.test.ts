// Fuzz target: secrets in node URIs (src/outbound/uri.ts). Whatever the password looks like
// — including characters that break URI syntax ('#', '@', '/', '%', spaces) — neither
// redactUri (what logs and `rules`/`run` messages show) nor the UsageError of a URI that
// does not parse contains it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseNodeUri, redactUri } from '../../src/outbound/uri.js';
import { corpus, fc, params } from './harness.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const b64url = (s: string) => Buffer.from(s).toString('base64url');

/** The URI forms a password can sit in. */
const FORMS: Record<string, (pw: string) => string> = {
  socks5: (pw) => `socks5://alice:${pw}@proxy.example:1080`,
  socks5h: (pw) => `socks5h://alice:${pw}@proxy.example:1080#tag`,
  http: (pw) => `http://bob:${pw}@proxy.example:3128`,
  'ss-plain': (pw) => `ss://aes-256-gcm:${pw}@proxy.example:8388#n`,
  'ss-sip002': (pw) => `ss://${b64url(`aes-128-gcm:${pw}`)}@proxy.example:8388#n`,
  'ss-sip002-std': (pw) => `ss://${b64(`chacha20-ietf-poly1305:${pw}`)}@proxy.example:8388`,
  'ss-legacy': (pw) => `ss://${b64(`aes-256-gcm:${pw}@proxy.example:8388`)}#old`,
};

/** Where the password shows, or undefined. Base64 forms are checked encoded too. */
function leak(text: string, pw: string): string | undefined {
  const needles = [pw, encodeURIComponent(pw)].filter((n) => n.length >= 4);
  for (const n of needles) if (text.includes(n)) return n;
  return undefined;
}

function check(form: string, pw: string): void {
  const uri = FORMS[form]!(pw);
  // A password that is also part of the rest of the URI (e.g. 'proxy') proves nothing.
  const rest = FORMS[form]!('');
  if (leak(rest, pw) !== undefined) return;
  const shown = redactUri(uri);
  assert.equal(leak(shown, pw), undefined, `${form}: redactUri shows the password: ${shown}`);
  // The base64 forms: the encoded credentials are as good as the password.
  const blob = form === 'ss-plain' ? undefined : /^ss:\/\/([A-Za-z0-9+/=_-]{8,})/.exec(uri)?.[1];
  if (blob) assert.ok(!shown.includes(blob), `${form}: redactUri shows the base64 credentials: ${shown}`);
  try {
    parseNodeUri(uri);
  } catch (e) {
    assert.equal((e as Error).name, 'UsageError', `${form}: ${(e as Error).name}: ${(e as Error).message}`);
    assert.equal(
      leak((e as Error).message, pw),
      undefined,
      `${form}: the error shows the password: ${(e as Error).message}`,
    );
  }
}

test('corpus replays (one password per line, every form)', () => {
  const entries = corpus('secrets');
  assert.ok(entries.length >= 1);
  for (const { name, data } of entries) {
    for (const pw of data.toString('utf8').split('\n').filter(Boolean)) {
      for (const form of Object.keys(FORMS)) {
        try {
          check(form, pw);
        } catch (e) {
          throw new Error(`corpus ${name} ${JSON.stringify(pw)}: ${(e as Error).message}`, { cause: e });
        }
      }
    }
  }
});

test('no password leaks through redactUri or parse errors', () => {
  const pwArb = fc.oneof(
    fc.string({ minLength: 4, maxLength: 24 }),
    fc.string({
      unit: fc.constantFrom('a', 'b', 'Z', '9', '#', '@', ':', '/', '%', '?', ' ', '\t', '!', '+', '=', 'é'),
      minLength: 4,
      maxLength: 16,
    }),
  );
  fc.assert(
    fc.property(fc.constantFrom(...Object.keys(FORMS)), pwArb, (form, pw) => check(form, pw)),
    params(20000),
  );
});
