// `tranproxy inject` against golden files (UPDATE_GOLDEN=1 rewrites them) on real-world
// manifests in test/fixtures/k8s, re-injection (idempotence), and the rules the goldens
// alone would not explain. Pure: no cluster, no root.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import {
  AnnotationError,
  DEFAULT_INJECT,
  parseHeadersAnnotation,
  sidecarConfig,
  type InjectDefaults,
} from '../../src/k8s/config.js';
import { injectObject, injectPodTemplate, type ObjectReport } from '../../src/k8s/inject.js';
import { injectYaml } from '../../src/k8s/yaml.js';
import { classicSidecar, nativeSidecar } from '../../src/k8s/sidecar.js';
import { UsageError } from '../../src/errors.js';
import { golden as checkGolden } from '../helpers/golden.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/k8s/', import.meta.url));
const CLASSIC: InjectDefaults = { ...DEFAULT_INJECT, mode: 'classic' };

const golden = (name: string, actual: string): void => checkGolden(name, actual, { dir: 'k8s' });

function reportText(reports: ObjectReport[]): string {
  return reports
    .map(
      (r) =>
        `${r.name}: ${r.status}${r.mode ? ` (${r.mode})` : ''}${r.reason && r.status !== 'injected' ? ` — ${r.reason}` : ''}\n${r.warnings.map((w) => `  warning: ${w}\n`).join('')}`,
    )
    .join('');
}

/** fixture file → golden base name and the defaults to inject with. */
const CASES: Array<{ fixture: string; name: string; defaults: InjectDefaults }> = [
  ...readdirSync(FIXTURES)
    .filter((f) => /\.(ya?ml|json)$/.test(f))
    .sort()
    .map((f) => ({ fixture: f, name: f.replace(/\.(ya?ml|json)$/, ''), defaults: DEFAULT_INJECT })),
  { fixture: 'deployment-multi-container.yaml', name: 'deployment-multi-container.classic', defaults: CLASSIC },
  { fixture: 'pod-existing-init.yaml', name: 'pod-existing-init.classic', defaults: CLASSIC },
  { fixture: 'job.yaml', name: 'job.classic', defaults: CLASSIC },
];

for (const c of CASES) {
  const ext = c.fixture.endsWith('.json') ? '.json' : '.yaml';
  test(`golden: ${c.name}`, () => {
    const input = readFileSync(FIXTURES + c.fixture, 'utf8');
    const out = injectYaml(input, { defaults: c.defaults }, c.fixture);
    golden(`${c.name}${ext}`, out.text);
    golden(`${c.name}.report`, reportText(out.reports));
  });
  test(`re-injection changes nothing: ${c.name}`, () => {
    const once = injectYaml(readFileSync(FIXTURES + c.fixture, 'utf8'), { defaults: c.defaults }).text;
    const twice = injectYaml(once, { defaults: c.defaults });
    assert.equal(twice.text, once);
    for (const r of twice.reports) assert.notEqual(r.status, 'injected', `${r.name} injected twice`);
    // Re-injecting in the other mode does not stack a second sidecar either.
    const other = injectYaml(once, { defaults: c.defaults.mode === 'native' ? CLASSIC : DEFAULT_INJECT });
    assert.equal(other.text, once);
  });
}

test('documents injection does not touch are copied byte for byte', () => {
  const text =
    '# head\napiVersion: v1\nkind: Service\nmetadata: {name: a}   # odd spacing kept\nspec:\n  ports: [ {port: 80} ]\n---\nweird: "%but valid"   # trailing\n...\n';
  assert.equal(injectYaml(text).text, text);
  assert.equal(injectYaml('').text, '');
  assert.equal(injectYaml('---\n---\n').text, '---\n---\n');
});

test('multi-document: only the workload is rewritten, comments elsewhere survive', () => {
  const input = readFileSync(`${FIXTURES}multi-document.yaml`, 'utf8');
  const out = injectYaml(input).text;
  assert.match(out, /PARTNER_URL: http:\/\/partner\.example\.com {3}# plain HTTP: headers get injected/);
  assert.match(out, /# Opted out: a debugging pod/);
  const docs = out.split(/^---$/m).map((d) => parse(d));
  assert.equal(docs.length, 5);
  assert.deepEqual(
    docs[3].spec.template.spec.initContainers.map((c: { name: string }) => c.name),
    ['tranproxy-init', 'tranproxy'],
  );
  assert.equal(docs[4].spec.initContainers, undefined, 'opted-out pod untouched');
});

test('native: rules init container, then the one-process sidecar, then existing ones in order; app containers untouched', () => {
  const pod = parse(readFileSync(`${FIXTURES}pod-existing-init.yaml`, 'utf8'));
  const r = injectPodTemplate(pod);
  assert.equal(r.status, 'injected');
  const spec = r.template.spec!;
  assert.deepEqual(
    spec.initContainers!.map((c) => c.name),
    ['tranproxy-init', 'tranproxy', 'wait-for-db', 'migrate'],
  );
  assert.deepEqual(spec.initContainers![2], pod.spec.initContainers[0]);
  assert.deepEqual(spec.containers, pod.spec.containers, 'app containers (and their PODIP env) unchanged');
  const init = spec.initContainers![0]!;
  assert.deepEqual(init.args, ['rules', 'apply', '-P', '80', '--proxy-user', '1337:1337']);
  assert.equal(init.restartPolicy, undefined, 'applies the rules and exits');
  assert.deepEqual((init.securityContext as { capabilities: unknown }).capabilities, {
    drop: ['ALL'],
    add: ['NET_ADMIN'],
  });
  const side = spec.initContainers![1]!;
  assert.deepEqual((side.args as string[]).slice(0, 4), ['run', '--firewall', 'none', '--one-process']);
  assert.equal(side.restartPolicy, 'Always');
  assert.deepEqual(side.env, [
    { name: 'PODIP', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'status.podIP' } } },
    { name: 'NODE_OPTIONS', value: '--max-semi-space-size=1' },
  ]);
  assert.ok(side.startupProbe, 'native sidecars hold the app back with a startupProbe');
  const sc = side.securityContext as Record<string, unknown>;
  assert.equal(sc.runAsUser, 1337);
  assert.equal(sc.runAsNonRoot, true);
  assert.deepEqual(sc.capabilities, { drop: ['ALL'] }, 'one unprivileged process, no capabilities');
  assert.equal(pod.spec.initContainers.length, 2, 'input not modified');
});

test('classic: rules init container last, unprivileged proxy first in containers, kubectl default container kept', () => {
  const pod = parse(readFileSync(`${FIXTURES}pod-existing-init.yaml`, 'utf8'));
  const r = injectPodTemplate(pod, { defaults: CLASSIC });
  const spec = r.template.spec!;
  assert.deepEqual(
    spec.initContainers!.map((c) => c.name),
    ['wait-for-db', 'migrate', 'tranproxy-init'],
  );
  assert.deepEqual(
    spec.containers!.map((c) => c.name),
    ['tranproxy', 'api'],
  );
  assert.equal(r.template.metadata!.annotations!['kubectl.kubernetes.io/default-container'], 'api');
  const init = spec.initContainers![2]!;
  assert.deepEqual(init.args, ['rules', 'apply', '-P', '80', '--proxy-user', '1337:1337']);
  const proxy = spec.containers![0]!;
  assert.equal(proxy.restartPolicy, undefined);
  assert.deepEqual((proxy.args as string[]).slice(0, 6), [
    'run',
    '--firewall',
    'none',
    '--one-process',
    '--admin',
    '127.0.0.1:15000',
  ]);
  const sc = proxy.securityContext as Record<string, unknown>;
  assert.equal(sc.runAsUser, 1337);
  assert.equal(sc.runAsNonRoot, true);
  assert.deepEqual(sc.capabilities, { drop: ['ALL'] });
  assert.ok((proxy.lifecycle as { postStart?: unknown }).postStart, 'postStart holds the app containers back');
});

test('existing pod and container securityContext are kept; ours overrides only in our container', () => {
  const pod = parse(readFileSync(`${FIXTURES}pod-security-context.yaml`, 'utf8'));
  const r = injectPodTemplate(pod);
  assert.deepEqual(r.template.spec!.securityContext, pod.spec.securityContext);
  assert.deepEqual(r.template.spec!.containers, pod.spec.containers);
  const sc = r.template.spec!.initContainers![0]!.securityContext as Record<string, unknown>;
  assert.equal(sc.runAsNonRoot, false, 'the pod-level runAsNonRoot: true is overridden for the rules init only');
  assert.equal(sc.runAsUser, 0);
  assert.deepEqual((sc.capabilities as { add: string[] }).add, ['NET_ADMIN', 'NET_RAW'], 'iptables backend: NET_RAW');
  assert.match(r.warnings.join('\n'), /container metrics runs as uid 1337/);
});

test('pod-level runAsGroup equal to the proxy gid is reported', () => {
  const r = injectPodTemplate({ spec: { securityContext: { runAsGroup: 1337 }, containers: [{ name: 'a' }] } });
  assert.match(r.warnings.join(), /container a runs as gid 1337/);
});

test('hostNetwork pods are skipped with a warning; Windows pods too', () => {
  const r = injectPodTemplate({ spec: { hostNetwork: true, containers: [{ name: 'a' }] } });
  assert.equal(r.status, 'skipped');
  assert.match(r.warnings[0]!, /hostNetwork/);
  assert.equal(injectPodTemplate({ spec: { os: { name: 'windows' }, containers: [{ name: 'a' }] } }).status, 'skipped');
});

test('opt-out by annotation or label', () => {
  for (const meta of [
    { annotations: { 'tranproxy.io/inject': 'false' } },
    { labels: { 'tranproxy.io/inject': 'false' } },
    { annotations: { 'tranproxy.io/inject': 'No' } },
  ]) {
    const r = injectPodTemplate({ metadata: meta, spec: { containers: [{ name: 'a' }] } });
    assert.equal(r.status, 'skipped');
    assert.match(r.reason!, /opted out/);
  }
  assert.equal(
    injectPodTemplate({
      metadata: { annotations: { 'tranproxy.io/inject': 'true' } },
      spec: { containers: [{ name: 'a' }] },
    }).status,
    'injected',
  );
});

test('--force re-injects with the current annotations; without it an existing sidecar is left', () => {
  const pod = { metadata: { annotations: { 'tranproxy.io/ports': '80' } }, spec: { containers: [{ name: 'a' }] } };
  const once = injectPodTemplate(pod).template;
  once.metadata!.annotations!['tranproxy.io/ports'] = '8080';
  assert.equal(injectPodTemplate(once).status, 'already-injected');
  const again = injectPodTemplate(once, { force: true });
  assert.equal(again.status, 'injected');
  assert.equal(again.template.spec!.initContainers!.length, 2);
  assert.deepEqual((again.template.spec!.initContainers![0]!.args as string[]).slice(2, 4), ['-P', '8080']);
  // A classic injection is replaced by a native one, not stacked.
  const classic = injectPodTemplate(pod, { defaults: CLASSIC }).template;
  const native = injectPodTemplate(classic, { force: true }).template;
  assert.deepEqual(
    native.spec!.containers!.map((c) => c.name),
    ['a'],
  );
  assert.deepEqual(
    native.spec!.initContainers!.map((c) => c.name),
    ['tranproxy-init', 'tranproxy'],
  );
});

test('malformed pod specs are skipped, never thrown on', () => {
  for (const t of [
    {},
    { spec: 'x' },
    { spec: { containers: 'x' } },
    { spec: { containers: [{ image: 'no-name' }] } },
    { spec: { containers: [] } },
    { metadata: 'x', spec: { containers: [{ name: 'a' }] } },
  ]) {
    assert.equal(injectPodTemplate(t as never).status, 'skipped', JSON.stringify(t));
  }
  for (const o of [
    null,
    1,
    'x',
    [],
    { kind: 'Deployment' },
    { kind: 'Deployment', spec: { template: 5 } },
    { kind: 'List', items: [null, { kind: 'Pod' }] },
  ]) {
    assert.doesNotThrow(() => injectObject(o));
  }
});

test('headers annotation: lines, JSON list, JSON object, and errors', () => {
  assert.deepEqual(parseHeadersAnnotation('X-A: 1\nX-B: 2\n\n'), ['X-A: 1', 'X-B: 2']);
  assert.deepEqual(parseHeadersAnnotation('["X-A: 1", {"name": "X-B", "value": "a:b"}]'), ['X-A: 1', 'X-B: a:b']);
  assert.deepEqual(parseHeadersAnnotation('{"X-A": "1", "X-N": 2}'), ['X-A: 1', 'X-N: 2']);
  assert.deepEqual(parseHeadersAnnotation('X-Url: http://a:8080/x'), ['X-Url: http://a:8080/x']);
  assert.throws(() => parseHeadersAnnotation('[1'), /tranproxy.io\/headers: not valid JSON/);
  assert.throws(() => parseHeadersAnnotation('no colon'), /tranproxy.io\/headers: invalid header 'no colon'/);
  assert.throws(() => parseHeadersAnnotation('Content-Length: 5'), AnnotationError);
  assert.throws(() => parseHeadersAnnotation('{"X-A": {"b": 1}}'), /must be a string/);
});

test('annotation values are validated and errors name the annotation (and the object)', () => {
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ 'tranproxy.io/ports': '80,8o' }, /^tranproxy\.io\/ports: '8o' is not a port/],
    [{ 'tranproxy.io/ports': '15000' }, /tranproxy's own port 15000/],
    [{ 'tranproxy.io/exclude-cidrs': '10.0.0.0/33' }, /^tranproxy\.io\/exclude-cidrs: '10\.0\.0\.0\/33' is not a CIDR/],
    [{ 'tranproxy.io/mode': 'sidecar' }, /tranproxy\.io\/mode: 'sidecar' is not one of native, classic/],
    [{ 'tranproxy.io/proxy-user': '0:0' }, /must not run as root/],
    [{ 'tranproxy.io/memory': 'lots' }, /not a Kubernetes quantity/],
    [{ 'tranproxy.io/xff-mode': 'replace' }, /needs tranproxy\.io\/set-forwarded-for/],
    [{ 'tranproxy.io/set-forwarded-for': 'a\u0001b' }, /tranproxy\.io\/set-forwarded-for/],
    [{ 'tranproxy.io/headers': 'X-A: 1\nx-a: 2' }, /given twice/],
    [{ 'tranproxy.io/image': 'a b' }, /not an image reference/],
    [
      { 'tranproxy.io/nameservers': '10.96.0.10,kube-dns' },
      /^tranproxy\.io\/nameservers: 'kube-dns' is not an IP address/,
    ],
  ];
  for (const [a, re] of bad)
    assert.throws(
      () => sidecarConfig(a),
      (e: unknown) => e instanceof AnnotationError && e instanceof UsageError && re.test((e as Error).message),
      JSON.stringify(a),
    );
  assert.throws(
    () =>
      injectObject({
        kind: 'Deployment',
        metadata: { name: 'web' },
        spec: {
          template: { metadata: { annotations: { 'tranproxy.io/ports': 'x' } }, spec: { containers: [{ name: 'a' }] } },
        },
      }),
    /^AnnotationError: Deployment\/web: tranproxy\.io\/ports/,
  );
});

test('tranproxy.io/nameservers becomes -N for the sidecar, native and classic', () => {
  const { config } = sidecarConfig({ 'tranproxy.io/nameservers': '10.96.0.10, fd00::a' });
  assert.deepEqual(config.nameservers, ['10.96.0.10', 'fd00::a']);
  for (const c of [nativeSidecar(config), classicSidecar(config)]) {
    const args = c.args as string[];
    assert.deepEqual(args.slice(args.indexOf('-N'), args.indexOf('-N') + 4), ['-N', '10.96.0.10', '-N', 'fd00::a']);
  }
  assert.ok(!(nativeSidecar(sidecarConfig({}).config).args as string[]).includes('-N'), 'no annotation: resolv.conf');
});

test('annotations become flags: ports normalised, literal values, json logs, typos warned', () => {
  const { config, warnings } = sidecarConfig({
    'tranproxy.io/ports': ' 80 , 8000:8100\n443',
    'tranproxy.io/set-forwarded-for': '',
    'tranproxy.io/set-client-hostname': 'edge-1',
    'tranproxy.io/portz': '1',
    'other.io/x': 'ignored',
  });
  assert.deepEqual(config.ports, ['80', '8000-8100', '443']);
  assert.equal(config.setForwardedFor, 'default');
  assert.equal(config.setClientHostname, 'edge-1');
  assert.deepEqual(warnings, ['unknown annotation tranproxy.io/portz ignored; did you mean tranproxy.io/ports?']);
  assert.equal(sidecarConfig({ 'tranproxy.io/set-forwarded-for': 'false' }).config.setForwardedFor, undefined);
});

test('probe http: kubelet httpGet on the admin port, admin API on all addresses', () => {
  const r = injectPodTemplate({
    metadata: { annotations: { 'tranproxy.io/probe': 'http', 'tranproxy.io/admin-port': '15020' } },
    spec: { containers: [{ name: 'a' }] },
  });
  const c = r.template.spec!.initContainers![1]!;
  assert.deepEqual((c.args as string[]).slice(0, 6), [
    'run',
    '--firewall',
    'none',
    '--one-process',
    '--admin',
    '0.0.0.0:15020',
  ]);
  assert.deepEqual((c.readinessProbe as { httpGet: unknown }).httpGet, { path: '/readyz', port: 15020 });
});

test('YAML syntax errors name the file and line', () => {
  assert.throws(
    () => injectYaml('a: 1\n---\nkind: Pod\nspec: [\n', {}, 'x.yaml'),
    (e: unknown) => e instanceof UsageError && /^x\.yaml:\d+: YAML/.test((e as Error).message),
  );
  assert.throws(() => injectYaml('a: 1\na: 2\n', {}, 'dup.yaml'), /dup\.yaml:\d+: YAML/);
});
