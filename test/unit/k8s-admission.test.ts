// The webhook's decision function and JSON Patch generation, without a server.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { review } from '../../src/k8s/admission.js';
import { DEFAULT_INJECT } from '../../src/k8s/config.js';
import { injectPodTemplate } from '../../src/k8s/inject.js';
import { diff, pointer, toJsonPatch } from '../../src/k8s/json-patch.js';
import { parseListen } from '../../src/cli/webhook.js';

function ar(object: unknown, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'u1',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      operation: 'CREATE',
      namespace: 'ns',
      object,
      ...over,
    },
  };
}

const POD = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'p', annotations: { 'a/b': 'c', 'tranproxy.io/ports': '80' } },
  spec: { containers: [{ name: 'app' }] },
};

test('JSON Pointer escaping (RFC 6901) and diff shapes', () => {
  assert.equal(
    pointer(['metadata', 'annotations', 'tranproxy.io/injected']),
    '/metadata/annotations/tranproxy.io~1injected',
  );
  assert.equal(pointer(['a~b', 0]), '/a~0b/0');
  assert.deepEqual(diff({ a: 1, b: [1], c: { d: 1 } }, { a: 1, b: [1, 2], c: { e: 2 } }), [
    { op: 'replace', path: ['b'], value: [1, 2] },
    { op: 'remove', path: ['c', 'd'] },
    { op: 'add', path: ['c', 'e'], value: 2 },
  ]);
  assert.deepEqual(diff({ a: 1 }, { a: 1 }), []);
  assert.deepEqual(toJsonPatch([{ op: 'remove', path: ['x'], value: 1 }]), [{ op: 'remove', path: '/x' }]);
});

test('review: a pod gets a patch that adds only what injection adds', () => {
  const out = review(ar(POD), DEFAULT_INJECT);
  assert.equal(out.status, 200);
  const res = (out.body as any).response;
  assert.equal(res.uid, 'u1');
  assert.equal(res.allowed, true);
  const ops = JSON.parse(Buffer.from(res.patch, 'base64').toString());
  assert.deepEqual(
    ops.map((o: any) => `${o.op} ${o.path}`),
    ['add /metadata/annotations/tranproxy.io~1injected', 'add /spec/initContainers'],
  );
  assert.deepEqual(ops[1].value, injectPodTemplate(POD).template.spec!.initContainers);
  assert.deepEqual(out.summary, { uid: 'u1', namespace: 'ns', name: 'p', result: 'injected', reason: 'native' });
});

test('review: bad requests, ignored requests, denials', () => {
  for (const b of [
    null,
    [],
    'x',
    {},
    { kind: 'AdmissionReview', apiVersion: 'v2' },
    { kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1', request: {} },
  ]) {
    assert.equal(review(b, DEFAULT_INJECT).status, 400, JSON.stringify(b));
  }
  const ignored = [
    ar(POD, { operation: 'UPDATE' }),
    ar(POD, { kind: { group: 'apps', version: 'v1', kind: 'Pod' } }),
    ar(POD, { subResource: 'status' }),
    ar(null),
    ar({ ...POD, metadata: { annotations: { 'tranproxy.io/inject': 'false' } } }),
    ar({ ...POD, spec: { ...POD.spec, hostNetwork: true } }),
  ];
  for (const r of ignored) {
    const res = (review(r, DEFAULT_INJECT).body as any).response;
    assert.equal(res.allowed, true);
    assert.equal(res.patch, undefined);
  }
  const denied = review(ar({ ...POD, metadata: { annotations: { 'tranproxy.io/ports': 'eighty' } } }), DEFAULT_INJECT);
  assert.equal((denied.body as any).response.allowed, false);
  assert.match((denied.body as any).response.status.message, /^tranproxy: tranproxy\.io\/ports: 'eighty'/);
  assert.equal(denied.summary.result, 'denied');
});

test('review: warnings are prefixed and bounded', () => {
  const pod = {
    ...POD,
    metadata: { annotations: { 'tranproxy.io/portz': '80' } },
    spec: { containers: [{ name: 'x'.repeat(300), securityContext: { runAsUser: 1337 } }] },
  };
  const res = (review(ar(pod), DEFAULT_INJECT).body as any).response;
  assert.ok(res.warnings.length >= 2);
  for (const w of res.warnings) {
    assert.match(w, /^tranproxy: /);
    assert.ok(w.length <= 240);
  }
});

test('--listen forms', () => {
  assert.deepEqual(parseListen(':8443'), { host: '', port: 8443 });
  assert.deepEqual(parseListen('8443'), { host: '', port: 8443 });
  assert.deepEqual(parseListen('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
  assert.deepEqual(parseListen('[::1]:9443'), { host: '::1', port: 9443 });
  for (const bad of ['x', '1.2.3.4', ':99999', '[::1]', 'a:b:c'])
    assert.throws(() => parseListen(bad), /--listen/, bad);
});
