import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../src/observe/log.js';

test('text lines: prefix, level, key=value with quoting', () => {
  const lines: string[] = [];
  const log = createLogger('text', (l) => lines.push(l));
  log.info('conn', { src: '10.0.0.1:5', close: 'eof', error: undefined });
  log.warn('refused', { reason: 'a b' });
  assert.deepEqual(lines, ['tranproxy: conn src=10.0.0.1:5 close=eof\n', 'tranproxy WARN: refused reason="a b"\n']);
});

test('json lines through pino: level label, message, fields, ISO time', () => {
  const lines: string[] = [];
  const log = createLogger('json', (l) => lines.push(l));
  log.error('boom', { id: 7 });
  const doc = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.equal(doc.level, 'error');
  assert.equal(doc.msg, 'boom');
  assert.equal(doc.id, 7);
  assert.match(String(doc.time), /^\d{4}-\d\d-\d\dT/);
});
