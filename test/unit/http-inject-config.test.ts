// Injection config: flag parsing (first ':' only, OWS trimmed), validation that keeps
// configuration from smuggling bytes onto the wire, and the pre-rendered block.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError } from '../../src/errors.js';
import {
  compileInjectConfig,
  DEFAULT_MAX_HEAD_BYTES,
  parseHeaderFlag,
  validateHeader,
} from '../../src/http/inject-config.js';

function usage(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected UsageError, got ${String(err)}`);
    assert.equal(err.exitCode, 2);
    assert.match(err.message, re);
    return true;
  });
}

test('parseHeaderFlag splits at the first colon and keeps colons in the value', () => {
  assert.deepEqual(parseHeaderFlag('X-Url: http://svc.local:8080/a:b'), {
    name: 'X-Url',
    value: 'http://svc.local:8080/a:b',
  });
  assert.deepEqual(parseHeaderFlag('X-Time:12:34:56'), { name: 'X-Time', value: '12:34:56' });
});

test('parseHeaderFlag trims spaces and tabs around the value only', () => {
  assert.deepEqual(parseHeaderFlag('X-Team: \t payments  team \t'), { name: 'X-Team', value: 'payments  team' });
  assert.deepEqual(parseHeaderFlag('X-Empty:'), { name: 'X-Empty', value: '' });
});

test('parseHeaderFlag rejects a flag without a colon or with an empty or invalid name', () => {
  usage(() => parseHeaderFlag('X-Team payments'), /expected name:value/);
  usage(() => parseHeaderFlag(':value'), /invalid header name ''/);
  usage(() => parseHeaderFlag('X Team:value'), /invalid header name 'X Team'/);
  usage(() => parseHeaderFlag('X-Team :value'), /invalid header name 'X-Team '/);
  usage(() => parseHeaderFlag('X-Tëam:value'), /invalid header name/);
});

test('validateHeader rejects CR, LF, NUL and other control characters in values', () => {
  usage(() => validateHeader('X-A', 'a\r\nX-Evil: 1'), /CR, LF or NUL/);
  usage(() => validateHeader('X-A', 'a\nb'), /CR, LF or NUL/);
  usage(() => validateHeader('X-A', 'a\rb'), /CR, LF or NUL/);
  usage(() => validateHeader('X-A', 'a\0b'), /CR, LF or NUL/);
  usage(() => validateHeader('X-A', 'a\x01b'), /control character 0x01/);
  assert.deepEqual(validateHeader('X-A', 'tab\tinside'), { name: 'X-A', value: 'tab\tinside' });
});

test('validateHeader refuses headers that control framing or the connection', () => {
  for (const name of [
    'Content-Length',
    'transfer-encoding',
    'Connection',
    'UPGRADE',
    'Content_Length',
    'transfer_encoding',
  ]) {
    usage(() => validateHeader(name, 'x'), /cannot be injected/);
  }
  assert.deepEqual(validateHeader('Host', 'example.com'), { name: 'Host', value: 'example.com' });
});

test('compileInjectConfig renders the block once: XFF first, then custom headers, CRLF each', () => {
  const c = compileInjectConfig({
    headers: [
      { name: 'X-Client-Hostname', value: 'pod-a' },
      { name: 'X-Url', value: 'http://b:81/' },
    ],
    forwardedFor: { value: '10.0.0.7', mode: 'append' },
    maxHeadBytes: DEFAULT_MAX_HEAD_BYTES,
  });
  assert.equal(
    c.blockCRLF.toString(),
    'X-Forwarded-For: 10.0.0.7\r\nX-Client-Hostname: pod-a\r\nX-Url: http://b:81/\r\n\r\n',
  );
  assert.equal(
    c.blockLF.toString(),
    'X-Forwarded-For: 10.0.0.7\r\nX-Client-Hostname: pod-a\r\nX-Url: http://b:81/\r\n\n',
  );
  assert.equal(c.restCRLF.toString(), 'X-Client-Hostname: pod-a\r\nX-Url: http://b:81/\r\n\r\n');
  assert.equal(c.xffAppend, true);
  assert.equal(c.empty, false);
  assert.equal(c.maxHeadBytes, 65536);
});

test('compileInjectConfig re-validates headers given directly (config file path)', () => {
  usage(
    () => compileInjectConfig({ headers: [{ name: 'X-A', value: 'x\r\nEvil: 1' }], maxHeadBytes: 65536 }),
    /CR, LF or NUL/,
  );
  usage(
    () => compileInjectConfig({ headers: [{ name: 'Bad Name', value: 'x' }], maxHeadBytes: 65536 }),
    /invalid header name/,
  );
});

test('compileInjectConfig validates the forwarded-for option', () => {
  usage(
    () =>
      compileInjectConfig({ headers: [], forwardedFor: { value: '1.2.3.4\r\n', mode: 'append' }, maxHeadBytes: 65536 }),
    /CR, LF or NUL/,
  );
  usage(
    () => compileInjectConfig({ headers: [], forwardedFor: { value: '  ', mode: 'replace' }, maxHeadBytes: 65536 }),
    /empty/,
  );
  usage(
    () =>
      compileInjectConfig({
        headers: [],
        forwardedFor: { value: '1.2.3.4', mode: 'merge' as 'append' },
        maxHeadBytes: 65536,
      }),
    /'append' or 'replace'/,
  );
  usage(
    () =>
      compileInjectConfig({
        headers: [{ name: 'x-forwarded-for', value: '9.9.9.9' }],
        forwardedFor: { value: '1.2.3.4', mode: 'append' },
        maxHeadBytes: 65536,
      }),
    /set twice/,
  );
});

test('compileInjectConfig rejects a nonsensical maxHeadBytes', () => {
  for (const m of [0, -1, 1.5, Number.NaN]) {
    usage(() => compileInjectConfig({ headers: [], maxHeadBytes: m }), /maximum request-head size/);
  }
});

test('an empty configuration injects nothing', () => {
  const c = compileInjectConfig({ headers: [], maxHeadBytes: 4096 });
  assert.equal(c.empty, true);
  assert.equal(c.blockCRLF.toString(), '\r\n');
});
