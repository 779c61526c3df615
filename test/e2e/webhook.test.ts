// `tranproxy webhook` end to end: a self-signed certificate made at test time, the built
// CLI serving HTTPS on 127.0.0.1, AdmissionReview requests as the API server sends them,
// the returned JSON Patch applied to the pod and compared with `tranproxy inject` of the
// same pod. Plus everything it must shrug off: bad JSON, non-pods, opt-outs, garbage.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { injectObject } from '../../src/k8s/inject.js';
import { DEFAULT_INJECT, type InjectDefaults } from '../../src/k8s/config.js';
import { selfSignedCertArgs } from '../helpers/certs.js';
import { until } from '../helpers/wait.js';

const DEFAULTS_CLASSIC: InjectDefaults = { ...DEFAULT_INJECT, mode: 'classic' };

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = join(ROOT, 'dist/cli/main.js');
const FIXTURES = join(ROOT, 'test/fixtures/k8s');

let dir = '';
let child: ChildProcess | undefined;
let port = 0;
let stderr = '';
let ca = '';

function makeCert(name: string): void {
  const r = spawnSync(
    'openssl',
    selfSignedCertArgs({
      names: ['127.0.0.1', 'localhost'],
      cn: `tranproxy-webhook-${name}`,
      days: 1,
      keyFile: join(dir, `${name}.key`),
      certFile: join(dir, `${name}.crt`),
    }),
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, `openssl failed: ${r.stderr}`);
}

before(async () => {
  assert.ok(existsSync(MAIN), 'dist/cli/main.js is missing: run npm run build');
  dir = mkdtempSync(join(tmpdir(), 'tranproxy-webhook-'));
  makeCert('a');
  makeCert('b');
  writeFileSync(join(dir, 'tls.crt'), readFileSync(join(dir, 'a.crt')));
  writeFileSync(join(dir, 'tls.key'), readFileSync(join(dir, 'a.key')));
  ca = readFileSync(join(dir, 'a.crt'), 'utf8');
  child = spawn(
    process.execPath,
    [
      MAIN,
      'webhook',
      '--tls-cert',
      join(dir, 'tls.crt'),
      '--tls-key',
      join(dir, 'tls.key'),
      '--listen',
      '127.0.0.1:0',
      '--cert-reload-interval',
      '200ms',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  child.stderr!.setEncoding('utf8');
  port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`webhook did not start:\n${stderr}`)), 10_000);
    child!.stderr!.on('data', (d: string) => {
      stderr += d;
      const m = stderr.match(/listening on https:\/\/127\.0\.0\.1:(\d+)\/mutate/);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
    child!.on('exit', (code) => reject(new Error(`webhook exited (${code}):\n${stderr}`)));
  });
});

after(() => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Reply {
  status: number;
  body: string;
  json: any;
}

function request(method: string, path: string, body?: string | Buffer, trust = ca): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        ca: trust,
        headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {},
        agent: false,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body: text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

let uidCounter = 0;
function admissionReview(object: unknown, over: Record<string, unknown> = {}): Record<string, any> {
  uidCounter++;
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `705ab4f5-6393-11e8-b7cc-42010a8000${String(uidCounter).padStart(2, '0')}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      namespace: 'shop',
      operation: 'CREATE',
      userInfo: {
        username: 'system:serviceaccount:kube-system:replicaset-controller',
        uid: 'x',
        groups: ['system:serviceaccounts'],
      },
      object,
      oldObject: null,
      dryRun: false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
      ...over,
    },
  };
}

async function mutate(review: unknown): Promise<Reply> {
  return request('POST', '/mutate', JSON.stringify(review));
}

// --- RFC 6902 ------------------------------------------------------------------------

type Op = { op: string; path: string; value?: unknown; from?: string };

function unescape(seg: string): string {
  return seg.replace(/~1/g, '/').replace(/~0/g, '~');
}

/** A minimal RFC 6902 applier (add, remove, replace, test; the webhook uses no more). */
function applyMinimal(doc: unknown, ops: Op[]): unknown {
  let root = structuredClone(doc);
  for (const o of ops) {
    if (o.path === '') {
      if (o.op === 'add' || o.op === 'replace') root = structuredClone(o.value);
      else throw new Error(`unsupported op at root: ${o.op}`);
      continue;
    }
    assert.ok(o.path.startsWith('/'), `bad pointer ${o.path}`);
    const segs = o.path.slice(1).split('/').map(unescape);
    const last = segs.pop()!;
    let parent: any = root;
    for (const s of segs) {
      parent = Array.isArray(parent) ? parent[Number(s)] : parent?.[s];
      assert.ok(
        parent !== undefined && parent !== null && typeof parent === 'object',
        `${o.op} ${o.path}: parent missing`,
      );
    }
    const isArr = Array.isArray(parent);
    const idx = isArr ? (last === '-' ? parent.length : Number(last)) : -1;
    switch (o.op) {
      case 'add':
        if (isArr) {
          assert.ok(idx >= 0 && idx <= parent.length, `add ${o.path}: index out of range`);
          parent.splice(idx, 0, structuredClone(o.value));
        } else parent[last] = structuredClone(o.value);
        break;
      case 'remove':
      case 'replace':
        if (isArr) assert.ok(idx >= 0 && idx < parent.length, `${o.op} ${o.path}: index out of range`);
        else assert.ok(Object.hasOwn(parent, last), `${o.op} ${o.path}: no such member (RFC 6902 requires it)`);
        if (o.op === 'remove') {
          if (isArr) parent.splice(idx, 1);
          else delete parent[last];
        } else if (isArr) parent[idx] = structuredClone(o.value);
        else parent[last] = structuredClone(o.value);
        break;
      case 'test':
        assert.deepEqual(isArr ? parent[idx] : parent[last], o.value);
        break;
      default:
        throw new Error(`unsupported op ${o.op}`);
    }
  }
  return root;
}

let fastJsonPatch: ((doc: unknown, ops: Op[]) => unknown) | undefined | null = null;
async function applyPatch(doc: unknown, ops: Op[]): Promise<unknown> {
  if (fastJsonPatch === null) {
    try {
      const name = 'fast-json-patch';
      const m = (await import(name)) as { applyPatch?: Function; default?: { applyPatch?: Function } };
      const fn = m.applyPatch ?? m.default?.applyPatch;
      fastJsonPatch = fn
        ? (d, o) => (fn(structuredClone(d), o, true, true) as { newDocument: unknown }).newDocument
        : undefined;
    } catch {
      fastJsonPatch = undefined;
    }
  }
  const minimal = applyMinimal(doc, ops);
  if (fastJsonPatch) {
    const full = fastJsonPatch(doc, ops);
    assert.deepEqual(minimal, full, 'fast-json-patch and the minimal applier agree');
    return full;
  }
  return minimal;
}

function decodePatch(response: any): Op[] {
  assert.equal(response.patchType, 'JSONPatch');
  const ops = JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as Op[];
  assert.ok(Array.isArray(ops) && ops.length > 0);
  return ops;
}

/** `tranproxy inject -f -` of the pod, through the built CLI (JSON in, JSON out). */
function injectCli(pod: unknown): unknown {
  const r = spawnSync(process.execPath, [MAIN, 'inject', '-q', '-f', '-'], {
    input: JSON.stringify(pod),
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** Pods as the API server sends them: fixtures' pods, and pods made from workloads' templates. */
function fixturePods(): Array<[string, any]> {
  const out: Array<[string, any]> = [];
  for (const f of [
    'pod-existing-init.yaml',
    'pod-security-context.yaml',
    'deployment-multi-container.yaml',
    'statefulset.yaml',
    'job.yaml',
    'daemonset.yaml',
    'cronjob.yaml',
  ]) {
    const o = parse(readFileSync(join(FIXTURES, f), 'utf8'));
    const template = o.kind === 'Pod' ? o : o.kind === 'CronJob' ? o.spec.jobTemplate.spec.template : o.spec.template;
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: `${o.metadata.name}-`, namespace: 'shop', ...template.metadata },
      spec: {
        ...template.spec,
        terminationGracePeriodSeconds: 30,
        dnsPolicy: 'ClusterFirst',
        serviceAccountName: template.spec.serviceAccountName ?? 'default',
      },
    };
    out.push([f, pod]);
  }
  return out;
}

// --- tests -----------------------------------------------------------------------------

test('healthz, wrong method, unknown path', async () => {
  assert.deepEqual([(await request('GET', '/healthz')).status, (await request('GET', '/healthz')).body], [200, 'ok\n']);
  assert.equal((await request('GET', '/mutate')).status, 405);
  assert.equal((await request('POST', '/nope', '{}')).status, 404);
});

test('pods: the patch applied to the pod equals `tranproxy inject` of the pod', async () => {
  for (const [name, pod] of fixturePods()) {
    const review = admissionReview(pod);
    const r = await mutate(review);
    assert.equal(r.status, 200, name);
    assert.equal(r.json.apiVersion, 'admission.k8s.io/v1');
    assert.equal(r.json.kind, 'AdmissionReview');
    assert.equal(r.json.response.uid, review.request.uid, 'uid echoed');
    assert.equal(r.json.response.allowed, true);
    const patched = await applyPatch(pod, decodePatch(r.json.response));
    const expected = injectObject(pod).object;
    assert.deepEqual(patched, expected, `${name}: patched pod == inject(pod)`);
    assert.deepEqual(patched, injectCli(pod), `${name}: patched pod == tranproxy inject -f - (CLI)`);
    const annotations = (patched as any).metadata.annotations;
    assert.ok(annotations['tranproxy.io/injected'], name);
  }
});

test('a pod with no annotations at all gets /metadata/annotations added', async () => {
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'bare' },
    spec: { containers: [{ name: 'c', image: 'c:1' }] },
  };
  const r = await mutate(admissionReview(pod));
  const ops = decodePatch(r.json.response);
  assert.ok(ops.some((o) => o.op === 'add' && o.path === '/metadata/annotations'));
  assert.ok(ops.some((o) => o.op === 'add' && o.path === '/spec/initContainers'));
  assert.deepEqual(await applyPatch(pod, ops), injectObject(pod).object);
});

test('malformed JSON and non-AdmissionReview bodies get 400; the server stays up', async () => {
  for (const body of [
    '{',
    'not json',
    '',
    '\u0000\u0001',
    '{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
    '[]',
    'null',
    '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":5}}',
  ]) {
    const r = await request('POST', '/mutate', body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.ok(r.json?.error, 'a JSON error body');
  }
  assert.equal((await request('GET', '/healthz')).status, 200);
});

test('odd but well-formed requests are allowed without a patch', async () => {
  const base = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' }, spec: { containers: [{ name: 'c' }] } };
  const cases: Array<[string, Record<string, any>]> = [
    ['no object', admissionReview(undefined)],
    ['object is a string', admissionReview('pod')],
    ['containers not a list', admissionReview({ ...base, spec: { containers: 7 } })],
    ['container without a name', admissionReview({ ...base, spec: { containers: [{ image: 'x' }] } })],
    ['annotations not a map', admissionReview({ ...base, metadata: { annotations: 'x' } })],
    ['no kind', admissionReview(base, { kind: undefined })],
  ];
  for (const [name, review] of cases) {
    const r = await mutate(review);
    assert.equal(r.status, 200, name);
    assert.equal(r.json.response.allowed, true, name);
    assert.equal(r.json.response.patch, undefined, name);
    assert.equal(r.json.response.uid, review.request.uid);
  }
});

test('opt-out annotation: allowed, no patch', async () => {
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'debug', annotations: { 'tranproxy.io/inject': 'false', 'tranproxy.io/ports': '80' } },
    spec: { containers: [{ name: 'c' }] },
  };
  const r = await mutate(admissionReview(pod));
  assert.equal(r.json.response.allowed, true);
  assert.equal(r.json.response.patch, undefined);
  assert.equal(r.json.response.patchType, undefined);
});

test('non-Pod kinds, updates and subresources: allowed, no patch', async () => {
  const deployment = parse(readFileSync(join(FIXTURES, 'deployment-multi-container.yaml'), 'utf8'));
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' }, spec: { containers: [{ name: 'c' }] } };
  const reviews = [
    admissionReview(deployment, {
      kind: { group: 'apps', version: 'v1', kind: 'Deployment' },
      resource: { group: 'apps', version: 'v1', resource: 'deployments' },
    }),
    admissionReview(
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' } },
      { kind: { group: '', version: 'v1', kind: 'Service' } },
    ),
    admissionReview(pod, { operation: 'UPDATE', oldObject: pod }),
    admissionReview(pod, { operation: 'DELETE', object: null, oldObject: pod }),
    admissionReview(pod, { subResource: 'ephemeralcontainers', operation: 'UPDATE' }),
    admissionReview(
      { kind: 'Binding' },
      { kind: { group: '', version: 'v1', kind: 'Binding' }, subResource: 'binding' },
    ),
  ];
  for (const review of reviews) {
    const r = await mutate(review);
    assert.equal(r.status, 200);
    assert.equal(r.json.response.allowed, true);
    assert.equal(r.json.response.patch, undefined, JSON.stringify(review.request.kind));
  }
});

test('hostNetwork pod: allowed, no patch, a warning for kubectl', async () => {
  const pod = parse(readFileSync(join(FIXTURES, 'pod-host-network.yaml'), 'utf8'));
  const r = await mutate(admissionReview(pod));
  assert.equal(r.json.response.allowed, true);
  assert.equal(r.json.response.patch, undefined);
  assert.match(r.json.response.warnings[0], /^tranproxy: hostNetwork pod not injected/);
});

test('an already injected pod gets no second patch', async () => {
  const pod = parse(readFileSync(join(FIXTURES, 'pod-existing-init.yaml'), 'utf8'));
  const injected = injectObject(pod).object;
  const r = await mutate(admissionReview(injected));
  assert.equal(r.json.response.allowed, true);
  assert.equal(r.json.response.patch, undefined);
});

test('a pod with an invalid tranproxy annotation is refused with the reason', async () => {
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'typo', annotations: { 'tranproxy.io/ports': '80,http' } },
    spec: { containers: [{ name: 'c' }] },
  };
  const r = await mutate(admissionReview(pod));
  assert.equal(r.status, 200);
  assert.equal(r.json.response.allowed, false);
  assert.equal(r.json.response.status.code, 400);
  assert.match(r.json.response.status.message, /tranproxy\.io\/ports: 'http' is not a port/);
});

test('v1beta1 reviews are answered in v1beta1', async () => {
  const review = {
    ...admissionReview({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'x' },
      spec: { containers: [{ name: 'c' }] },
    }),
    apiVersion: 'admission.k8s.io/v1beta1',
  };
  const r = await mutate(review);
  assert.equal(r.json.apiVersion, 'admission.k8s.io/v1beta1');
  assert.equal(r.json.response.allowed, true);
});

test('an oversized body gets 413', async () => {
  const big = JSON.stringify(
    admissionReview({ kind: 'Pod', metadata: { annotations: { pad: 'x'.repeat(9 * 1024 * 1024) } } }),
  );
  const r = await request('POST', '/mutate', big).catch((e: NodeJS.ErrnoException) => ({
    status: e.code === 'ECONNRESET' || e.code === 'EPIPE' ? 413 : 0,
    body: '',
    json: undefined,
  }));
  assert.equal(r.status, 413);
  assert.equal((await request('GET', '/healthz')).status, 200);
});

test('garbage on the socket (plain HTTP, random bytes, half handshakes) does not take it down', async () => {
  for (const payload of ['GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', '\u0016\u0003\u0001\u0000\u00ff garbage', '']) {
    await new Promise<void>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.end(payload);
      });
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.resume();
      setTimeout(() => s.destroy(), 500);
    });
  }
  // A client that does not trust the certificate is refused at the handshake.
  await assert.rejects(request('GET', '/healthz', undefined, readFileSync(join(dir, 'b.crt'), 'utf8')));
  assert.equal((await request('GET', '/healthz')).status, 200);
  assert.equal(child!.exitCode, null, 'still running');
});

function servedFingerprint(): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const fp = s.getPeerX509Certificate()?.fingerprint256 ?? '';
      s.end();
      resolve(fp);
    });
    s.on('error', reject);
  });
}

test('a renewed certificate is picked up without a restart', async () => {
  const a = new X509Certificate(readFileSync(join(dir, 'a.crt'))).fingerprint256;
  const b = new X509Certificate(readFileSync(join(dir, 'b.crt'))).fingerprint256;
  assert.equal(await servedFingerprint(), a);
  writeFileSync(join(dir, 'tls.key'), readFileSync(join(dir, 'b.key')));
  writeFileSync(join(dir, 'tls.crt'), readFileSync(join(dir, 'b.crt')));
  const deadline = Date.now() + 5000;
  let fp = '';
  while (Date.now() < deadline && (fp = await servedFingerprint()) !== b) await new Promise((r) => setTimeout(r, 100));
  assert.equal(fp, b);
  ca = readFileSync(join(dir, 'b.crt'), 'utf8');
  assert.equal((await request('GET', '/healthz')).status, 200);
  assert.match(stderr, /TLS certificate reloaded/);
});

test('one log line per review; SIGTERM stops it cleanly', async () => {
  assert.match(stderr, /tranproxy: admission uid=\S+ namespace=shop pod=\S+ result=injected/);
  assert.match(stderr, /result=ignored reason="not a Pod \(Deployment\)"/);
  const exited = new Promise<number | null>((resolve) => child!.on('exit', (code) => resolve(code)));
  child!.kill('SIGTERM');
  assert.equal(await exited, 0);
});

// --- the injected pod, emulated ----------------------------------------------------------
// What a kubelet would do with the injected containers, done with the same kernel parts: a
// network namespace for the pod, each container's args run under `setpriv` with exactly the
// user, capabilities and no_new_privs its securityContext asks for, its probes and hooks
// run as the kubelet runs them, and an app process (another uid) making a real request to
// a server in a second namespace. Needs root, ip, setpriv, curl, python3.

function have(cmd: string, args: string[] = ['--version']): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return !r.error;
}

const CAN_EMULATE =
  process.getuid?.() === 0 &&
  have('ip', ['-V']) &&
  have('setpriv') &&
  have('curl') &&
  have('python3') &&
  have('nft', ['--version'])
    ? true
    : 'needs root, ip, setpriv, curl, python3 and nft';

interface Ctr {
  name: string;
  args: string[];
  securityContext: {
    runAsUser?: number;
    runAsGroup?: number;
    allowPrivilegeEscalation?: boolean;
    capabilities?: { add?: string[]; drop?: string[] };
  };
  startupProbe?: { exec: { command: string[] } };
  readinessProbe?: { exec: { command: string[] } };
  lifecycle?: { postStart?: { exec: { command: string[] } } };
}

/** `ip netns exec NS setpriv …` prefix for a container's securityContext (drop ALL + add). */
function privileges(ns: string, sc: Ctr['securityContext']): string[] {
  const caps = (sc.capabilities?.add ?? []).map((c) => `+${c.toLowerCase()}`);
  const uid = sc.runAsUser ?? 1337; // the image's default user
  const gid = sc.runAsGroup ?? uid;
  return [
    'ip',
    'netns',
    'exec',
    ns,
    'env',
    'PODIP=192.0.2.2',
    'setpriv',
    `--reuid=${uid}`,
    `--regid=${gid}`,
    '--clear-groups',
    `--bounding-set=-all${caps.length ? `,${caps.join(',')}` : ''}`,
    '--inh-caps=-all',
    ...(sc.allowPrivilegeEscalation === false ? ['--no-new-privs'] : []),
  ];
}

function runIn(prefix: string[], cmd: string[]): { status: number | null; stderr: string } {
  const [bin, ...rest] = [...prefix, ...cmd];
  const r = spawnSync(bin!, rest, { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stderr: r.stderr };
}

/** The node `tranproxy` runs as: the image's entrypoint is `tranproxy` = node dist/cli/main.js. */
function entrypoint(args: string[]): string[] {
  return [process.execPath, MAIN, ...args];
}

/** Run a probe / hook command as the kubelet does (node is `node` in the image: ours here). */
function execAction(ns: string, sc: Ctr['securityContext'], command: string[]): number | null {
  const cmd = command[0] === 'node' ? [process.execPath, ...command.slice(1)] : command;
  return runIn(privileges(ns, sc), cmd).status;
}

/**
 * The pod's start as the kubelet runs it: the init container (NET_ADMIN: the rules) to completion,
 * then the sidecar, which must run as 1337 with no capabilities. Its stderr collects in `log()`.
 */
function startPod(ns: string, init: Ctr, side: Ctr, procs: ChildProcess[]): { p: ChildProcess; log: () => string } {
  assert.equal(side.securityContext.runAsUser, 1337);
  assert.deepEqual(side.securityContext.capabilities?.add, undefined);
  const r = runIn(privileges(ns, init.securityContext), entrypoint(init.args));
  assert.equal(r.status, 0, r.stderr);
  const [bin, ...args] = [...privileges(ns, side.securityContext), ...entrypoint(side.args)];
  const p = spawn(bin!, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  procs.push(p);
  let log = '';
  p.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  return { p, log: () => log };
}

/** SIGTERM to the sidecar: it must exit 0. */
async function stopSidecar(p: ChildProcess, log: () => string): Promise<void> {
  const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
  p.kill('SIGTERM');
  assert.equal(await exited, 0, log());
}

test('injected pods run with exactly the privileges they are given (native and classic, emulated)', {
  skip: CAN_EMULATE === true ? false : CAN_EMULATE,
}, async (t) => {
  const id = `tpk8s${process.pid}`;
  const app = `${id}-pod`;
  const srv = `${id}-srv`;
  const sh = (args: string[]) => {
    const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8' });
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
  };
  const procs: ChildProcess[] = [];
  try {
    sh(['ip', 'netns', 'add', app]);
    sh(['ip', 'netns', 'add', srv]);
    sh(['ip', 'link', 'add', 'tpk8sa', 'netns', app, 'type', 'veth', 'peer', 'name', 'tpk8ss', 'netns', srv]);
    sh(['ip', '-n', app, 'addr', 'add', '192.0.2.2/24', 'dev', 'tpk8sa']);
    sh(['ip', '-n', srv, 'addr', 'add', '192.0.2.1/24', 'dev', 'tpk8ss']);
    for (const [ns, dev] of [
      [app, 'tpk8sa'],
      [srv, 'tpk8ss'],
    ] as const) {
      sh(['ip', '-n', ns, 'link', 'set', dev, 'up']);
      sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    }
    const echo =
      'import http.server\n' +
      'class H(http.server.BaseHTTPRequestHandler):\n' +
      '  def do_GET(self):\n' +
      "    b=('team=%s xff=%s' % (self.headers.get('X-Team'), self.headers.get('X-Forwarded-For'))).encode()\n" +
      "    self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)\n" +
      '  def log_message(self, *a): pass\n' +
      "http.server.HTTPServer(('192.0.2.1', 80), H).serve_forever()\n";
    const server = spawn('ip', ['netns', 'exec', srv, 'python3', '-c', echo], { stdio: 'ignore' });
    procs.push(server);
    const curlAsApp = (): string => {
      const r = spawnSync(
        'ip',
        [
          'netns',
          'exec',
          app,
          'setpriv',
          '--reuid=1000',
          '--regid=1000',
          '--clear-groups',
          'curl',
          '-s',
          '-m',
          '5',
          'http://192.0.2.1/',
        ],
        { encoding: 'utf8' },
      );
      return r.stdout;
    };
    await until(
      'the echo server',
      () =>
        spawnSync('ip', ['netns', 'exec', srv, 'curl', '-s', '-m', '1', 'http://192.0.2.1/'], {
          encoding: 'utf8',
        }).stdout.startsWith('team='),
      15_000,
      200,
    );

    const pod = {
      metadata: {
        name: 'emulated',
        annotations: {
          'tranproxy.io/ports': '80',
          'tranproxy.io/headers': 'X-Team: payments',
          'tranproxy.io/set-forwarded-for': 'default',
        },
      },
      spec: { containers: [{ name: 'app', image: 'app:1' }] },
    };
    const nftTables = () =>
      spawnSync('ip', ['netns', 'exec', app, 'nft', 'list', 'tables'], { encoding: 'utf8' }).stdout;

    await t.test(
      'native: rules by a NET_ADMIN init container, then one unprivileged process as a native sidecar',
      async () => {
        const injected = injectObject({ apiVersion: 'v1', kind: 'Pod', ...pod }).object as {
          spec: { initContainers: Ctr[] };
        };
        const [init, side] = injected.spec.initContainers as [Ctr, Ctr];
        const { p, log } = startPod(app, init, side, procs);
        // The kubelet runs the startupProbe until it passes, then starts the app.
        await until(
          () => `startupProbe (log: ${log()})`,
          () => execAction(app, side.securityContext, side.startupProbe!.exec.command) === 0,
          15_000,
          200,
        );
        // The probe can pass a moment before the batched log line reaches stderr.
        await until('the ready line', () => /ready: /.test(log()), 5_000, 200);
        assert.match(log(), /ready: .*user=1337:1337 caps=none .*layout=one-process/);
        assert.equal(curlAsApp(), 'team=payments xff=192.0.2.2');
        assert.equal(execAction(app, side.securityContext, side.readinessProbe!.exec.command), 0);
        await stopSidecar(p, log);
        assert.match(nftTables(), /table inet tranproxy/, 'the rules outlive the proxy (the netns goes with the pod)');
      },
    );

    await t.test('classic: rules by a NET_ADMIN init container, then a proxy with no privileges at all', async () => {
      // A native proxy left over by a failed first subtest would answer in this one's place
      // (procs[0] is the lab's server).
      for (const q of procs.slice(1).filter((x) => x.exitCode === null && x.signalCode === null)) {
        const gone = new Promise((r) => q.once('exit', r));
        q.kill('SIGKILL');
        await gone;
      }
      const injected = injectObject({ apiVersion: 'v1', kind: 'Pod', ...pod }, { defaults: { ...DEFAULTS_CLASSIC } })
        .object as { spec: { initContainers: Ctr[]; containers: Ctr[] } };
      const init = injected.spec.initContainers.at(-1)!;
      const side = injected.spec.containers[0]!;
      const { p, log } = startPod(app, init, side, procs);
      // The postStart hook holds the app containers back until the proxy is ready.
      assert.equal(execAction(app, side.securityContext, side.lifecycle!.postStart!.exec.command), 0, log());
      assert.equal(curlAsApp(), 'team=payments xff=192.0.2.2');
      await stopSidecar(p, log);
      assert.match(
        nftTables(),
        /table inet tranproxy/,
        'classic: the rules outlive the proxy (the netns goes with the pod)',
      );
    });
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    spawnSync('ip', ['netns', 'del', app]);
    spawnSync('ip', ['netns', 'del', srv]);
  }
});
