// Are the pods `tranproxy inject` writes, and the manifests in deploy/, valid Kubernetes?
//
// kubeconform is neither a Debian nor an npm package, and `kubectl --dry-run` needs a
// cluster. So, in layers:
//  1. a strict JSON schema of the API fields we write (test/fixtures/k8s/schema/), checked
//     by the small validator below: misspelt or misplaced fields are errors;
//  2. the API server's own rules that no schema expresses (unique container names, probes
//     only on native sidecars among init containers, exactly one probe handler, …);
//  3. when the `kubernetes-models` package is installed (its validators are compiled from
//     the Kubernetes OpenAPI schema): every object against the published schema;
//  4. cross-references inside deploy/ (Service ↔ Deployment ↔ webhook config ↔ Secret) and
//     the config files against tranproxy's own config parser.
// deploy/ kustomizations are rendered with `kubectl kustomize` when kubectl is there, else
// the plain files are read.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { parseConfigText } from '../../src/config/file.js';
import { parseRunOptions } from '../../src/config/run-config.js';
import { runCommand } from '../../src/cli/run.js';
import { withDefaultCommand } from '../../src/cli/default-command.js';
import { DEFAULT_IMAGE, DEFAULT_INJECT, INIT_NAME, SIDECAR_NAME, type InjectDefaults } from '../../src/k8s/config.js';
import { injectYaml } from '../../src/k8s/yaml.js';
import { POD_TEMPLATE_PATHS } from '../../src/k8s/inject.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURES = join(ROOT, 'test/fixtures/k8s');
const DEPLOY = join(ROOT, 'deploy');
const SCHEMA = JSON.parse(readFileSync(join(FIXTURES, 'schema/k8s-subset.schema.json'), 'utf8')) as Schema;

// --- a small JSON Schema (draft-07 subset) validator -------------------------------------

type Schema = { [k: string]: any };

function resolveRef(ref: string): Schema {
  assert.ok(ref.startsWith('#/'), `only local refs: ${ref}`);
  let node: any = SCHEMA;
  for (const seg of ref.slice(2).split('/')) {
    node = node?.[seg.replace(/~1/g, '/').replace(/~0/g, '~')];
    assert.ok(node !== undefined, `unresolved $ref ${ref}`);
  }
  return node as Schema;
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function deepEq(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Errors as "path: message"; empty when valid. */
function validate(schema: Schema, v: unknown, path = ''): string[] {
  if (schema.$ref) return validate(resolveRef(schema.$ref), v, path);
  const errs: string[] = [];
  const at = path || '(root)';
  if (schema.type) {
    const types: string[] = Array.isArray(schema.type) ? schema.type : [schema.type];
    const t = typeOf(v);
    if (!types.some((x) => x === t || (x === 'number' && t === 'integer')))
      return [`${at}: expected ${types.join('|')}, got ${t}`];
  }
  if ('const' in schema && !deepEq(schema.const, v))
    errs.push(`${at}: must be ${JSON.stringify(schema.const)}, got ${JSON.stringify(v)}`);
  if (schema.enum && !schema.enum.some((e: unknown) => deepEq(e, v)))
    errs.push(`${at}: ${JSON.stringify(v)} is not one of ${JSON.stringify(schema.enum)}`);
  if (typeof v === 'string') {
    if (schema.pattern && !new RegExp(schema.pattern).test(v))
      errs.push(`${at}: '${v}' does not match ${schema.pattern}`);
    if (schema.maxLength !== undefined && v.length > schema.maxLength)
      errs.push(`${at}: '${v}' is longer than ${schema.maxLength}`);
  }
  if (typeof v === 'number') {
    if (schema.minimum !== undefined && v < schema.minimum) errs.push(`${at}: ${v} < ${schema.minimum}`);
    if (schema.maximum !== undefined && v > schema.maximum) errs.push(`${at}: ${v} > ${schema.maximum}`);
  }
  if (Array.isArray(v)) {
    if (schema.minItems !== undefined && v.length < schema.minItems)
      errs.push(`${at}: fewer than ${schema.minItems} items`);
    if (schema.maxItems !== undefined && v.length > schema.maxItems)
      errs.push(`${at}: more than ${schema.maxItems} items`);
    if (schema.items)
      v.forEach((x, i) => {
        errs.push(...validate(schema.items, x, `${path}[${i}]`));
      });
  }
  if (typeOf(v) === 'object') {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    for (const r of schema.required ?? []) if (!(r in o)) errs.push(`${at}: missing required '${r}'`);
    if (schema.minProperties !== undefined && keys.length < schema.minProperties)
      errs.push(`${at}: fewer than ${schema.minProperties} fields`);
    if (schema.maxProperties !== undefined && keys.length > schema.maxProperties)
      errs.push(`${at}: more than ${schema.maxProperties} fields`);
    for (const k of keys) {
      const sub = `${path}.${k}`;
      if (schema.propertyNames) errs.push(...validate(schema.propertyNames, k, `${sub} (name)`));
      if (schema.properties && k in schema.properties) errs.push(...validate(schema.properties[k], o[k], sub));
      else if (schema.additionalProperties === false) errs.push(`${at}: unknown field '${k}'`);
      else if (typeof schema.additionalProperties === 'object')
        errs.push(...validate(schema.additionalProperties, o[k], sub));
    }
  }
  for (const s of schema.allOf ?? []) errs.push(...validate(s, v, path));
  if (schema.anyOf && !schema.anyOf.some((s: Schema) => validate(s, v, path).length === 0))
    errs.push(`${at}: matches none of anyOf`);
  if (schema.oneOf) {
    const n = schema.oneOf.filter((s: Schema) => validate(s, v, path).length === 0).length;
    if (n !== 1) errs.push(`${at}: matches ${n} of oneOf (exactly one expected)`);
  }
  if (schema.not && validate(schema.not, v, path).length === 0)
    errs.push(`${at}: must not match ${JSON.stringify(schema.not)}`);
  return errs;
}

function def(name: string): Schema {
  return { $ref: `#/definitions/${name}` };
}

test('the validator itself: catches unknown fields, wrong types, bad enums, oneOf', () => {
  const ok = {
    name: 'a',
    image: 'x:1',
    restartPolicy: 'Always',
    readinessProbe: { exec: { command: ['true'] }, periodSeconds: 1 },
  };
  assert.deepEqual(validate(def('Container'), ok), []);
  assert.match(validate(def('Container'), { ...ok, restartpolicy: 'Always' }).join(), /unknown field 'restartpolicy'/);
  assert.match(validate(def('Container'), { ...ok, restartPolicy: 'OnFailure' }).join(), /must be "Always"/);
  assert.match(validate(def('Container'), { ...ok, args: [80] }).join(), /args\[0\]: expected string/);
  assert.match(
    validate(def('Container'), { ...ok, readinessProbe: { exec: { command: ['x'] }, httpGet: { port: 1 } } }).join(),
    /matches 2 of oneOf/,
  );
  assert.match(
    validate(def('Container'), { ...ok, securityContext: { capabilities: { add: ['CAP_NET_ADMIN'] } } }).join(),
    /must not match/,
  );
  assert.match(validate(def('Container'), { ...ok, name: 'Bad_Name' }).join(), /does not match/);
  assert.match(
    validate(def('Container'), { ...ok, resources: { requests: { memory: '64MB' } } }).join(),
    /does not match/,
  );
});

// --- the API server's rules beyond the schema ---------------------------------------------

function podSpecRules(spec: any, where: string, claimTemplates: string[] = []): string[] {
  const errs: string[] = [];
  const init: any[] = spec.initContainers ?? [];
  const main: any[] = spec.containers ?? [];
  const names = [...init, ...main].map((c) => c.name);
  const dup = names.filter((n, i) => names.indexOf(n) !== i);
  if (dup.length) errs.push(`${where}: duplicate container names ${dup.join(', ')}`);
  for (const c of main)
    if (c.restartPolicy !== undefined)
      errs.push(`${where}: container ${c.name}: restartPolicy is for init containers only`);
  for (const c of init) {
    if (c.restartPolicy === 'Always') continue;
    for (const f of ['startupProbe', 'readinessProbe', 'livenessProbe', 'lifecycle']) {
      if (c[f] !== undefined) errs.push(`${where}: init container ${c.name}: ${f} needs restartPolicy: Always`);
    }
  }
  const podSc = spec.securityContext ?? {};
  for (const c of [...init, ...main]) {
    const sc = c.securityContext ?? {};
    const nonRoot = sc.runAsNonRoot ?? podSc.runAsNonRoot;
    const uid = sc.runAsUser ?? podSc.runAsUser;
    if (nonRoot === true && uid === 0)
      errs.push(`${where}: container ${c.name}: runAsNonRoot with runAsUser 0 never starts`);
    if (sc.privileged === true && sc.allowPrivilegeEscalation === false)
      errs.push(`${where}: container ${c.name}: privileged with allowPrivilegeEscalation: false is rejected`);
    for (const p of c.ports ?? [])
      if (p.name && !/^[a-z0-9-]{1,15}$/.test(p.name)) errs.push(`${where}: port name ${p.name}`);
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      const port = c[probe]?.httpGet?.port;
      if (typeof port === 'string' && !(c.ports ?? []).some((p: any) => p.name === port))
        errs.push(`${where}: ${c.name}.${probe} names port '${port}' the container does not declare`);
    }
    for (const m of c.volumeMounts ?? [])
      if (!(spec.volumes ?? []).some((v: any) => v.name === m.name) && !claimTemplates.includes(m.name))
        errs.push(`${where}: ${c.name} mounts unknown volume ${m.name}`);
  }
  return errs;
}

function getIn(o: any, path: readonly string[]): any {
  return path.reduce((x, k) => x?.[k], o);
}

// --- the injected pods -----------------------------------------------------------------

function fixtureFiles(): string[] {
  return readdirSync(FIXTURES)
    .filter((f) => /\.(ya?ml|json)$/.test(f))
    .sort();
}

function docsOf(text: string): any[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS())
    .filter((o) => o && typeof o === 'object')
    .flatMap((o: any) => (o.kind?.endsWith('List') && Array.isArray(o.items) ? o.items : [o]));
}

interface Injected {
  where: string;
  object: any;
  template: any;
}

function injectedObjects(): Injected[] {
  const out: Injected[] = [];
  const variants: Array<[string, InjectDefaults]> = [
    ['native', DEFAULT_INJECT],
    ['classic', { ...DEFAULT_INJECT, mode: 'classic' }],
    ['http-probe', { ...DEFAULT_INJECT, probe: 'http', firewall: 'iptables' }],
  ];
  for (const f of fixtureFiles()) {
    for (const [variant, defaults] of variants) {
      for (const o of docsOf(injectYaml(readFileSync(join(FIXTURES, f), 'utf8'), { defaults }).text)) {
        const path = POD_TEMPLATE_PATHS[o.kind];
        if (!path) continue;
        out.push({
          where: `${f} [${variant}] ${o.kind}/${o.metadata?.name}`,
          object: o,
          template: path.length ? getIn(o, path) : o,
        });
      }
    }
  }
  return out;
}

test('injected sidecars match the strict schema and the API rules', () => {
  let checked = 0;
  for (const { where, template, object } of injectedObjects()) {
    const spec = template.spec;
    const claims: string[] = (object.spec?.volumeClaimTemplates ?? []).map((v: any) => v.metadata.name);
    const ours = [...(spec.initContainers ?? []), ...(spec.containers ?? [])].filter(
      (c: any) => c.name === SIDECAR_NAME || c.name === INIT_NAME,
    );
    if (template.metadata?.annotations?.['tranproxy.io/injected'])
      assert.ok(ours.length > 0, `${where}: annotated but no sidecar`);
    for (const c of ours) {
      assert.deepEqual(validate(def('Container'), c, `${where} ${c.name}`), []);
      checked++;
    }
    assert.deepEqual(podSpecRules(spec, where, claims), []);
    assert.deepEqual(validate(def('annotations'), template.metadata?.annotations ?? {}, `${where} annotations`), []);
  }
  assert.ok(checked >= 20, `checked ${checked} containers`);
});

test('the API rules catch what they should (a classic init container with a probe, duplicates)', () => {
  assert.match(
    podSpecRules({ initContainers: [{ name: 'a', readinessProbe: {} }], containers: [{ name: 'a' }] }, 'x').join(),
    /duplicate.*needs restartPolicy|needs restartPolicy/,
  );
  assert.match(
    podSpecRules({ containers: [{ name: 'a', restartPolicy: 'Always' }] }, 'x').join(),
    /init containers only/,
  );
  assert.match(
    podSpecRules(
      { securityContext: { runAsNonRoot: true }, containers: [{ name: 'a', securityContext: { runAsUser: 0 } }] },
      'x',
    ).join(),
    /never starts/,
  );
});

// --- deploy/ -----------------------------------------------------------------------------

const KUSTOMIZATIONS = ['webhook', 'webhook/cert-manager', 'gateway', 'seed-sidecar'];

function hasKubectl(): boolean {
  return spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0;
}

/** Every object deploy/ defines, by kustomization. */
function deployObjects(): Map<string, any[]> {
  const out = new Map<string, any[]>();
  const kubectl = hasKubectl();
  for (const k of KUSTOMIZATIONS) {
    if (kubectl) {
      const r = spawnSync('kubectl', ['kustomize', join(DEPLOY, k)], { encoding: 'utf8' });
      assert.equal(r.status, 0, `kubectl kustomize deploy/${k}: ${r.stderr}`);
      out.set(k, docsOf(r.stdout));
    } else {
      // Without kustomize: the listed resources as they are (generated ConfigMaps missing).
      const dir = join(DEPLOY, k);
      const kust = docsOf(readFileSync(join(dir, 'kustomization.yaml'), 'utf8'))[0];
      const files: string[] = [];
      const walk = (d: string, res: string[]): void => {
        for (const r of res) {
          const p = join(d, r);
          if (existsSync(join(p, 'kustomization.yaml')))
            walk(p, docsOf(readFileSync(join(p, 'kustomization.yaml'), 'utf8'))[0].resources);
          else files.push(p);
        }
      };
      walk(dir, kust.resources);
      out.set(
        k,
        files.flatMap((f) => docsOf(readFileSync(f, 'utf8'))),
      );
    }
  }
  return out;
}

const KIND_SCHEMA: Record<string, string> = {
  Namespace: 'Namespace',
  ServiceAccount: 'ServiceAccount',
  ConfigMap: 'ConfigMap',
  Service: 'Service',
  Deployment: 'Deployment',
  DaemonSet: 'DaemonSet',
  PodDisruptionBudget: 'PodDisruptionBudget',
  NetworkPolicy: 'NetworkPolicy',
  MutatingWebhookConfiguration: 'MutatingWebhookConfiguration',
  Issuer: 'CertManagerObject',
  Certificate: 'CertManagerObject',
};

test('deploy/: every object matches the strict schema and the API rules', () => {
  for (const [k, objects] of deployObjects()) {
    assert.ok(objects.length >= 2, `deploy/${k}: ${objects.length} objects`);
    for (const o of objects) {
      const where = `deploy/${k}: ${o.kind}/${o.metadata?.name}`;
      const schema = KIND_SCHEMA[o.kind];
      assert.ok(schema, `${where}: no schema for kind ${o.kind}`);
      assert.deepEqual(validate(def(schema), o, where), []);
      if (o.spec?.template) assert.deepEqual(podSpecRules(o.spec.template.spec, where), []);
      if (o.spec?.selector?.matchLabels && o.spec?.template) {
        for (const [l, v] of Object.entries(o.spec.selector.matchLabels))
          assert.equal(o.spec.template.metadata.labels[l], v, `${where}: selector does not select its own pods`);
      }
    }
  }
});

test('deploy/webhook: the pieces refer to each other correctly', () => {
  const objects = deployObjects().get('webhook')!;
  const by = (kind: string) => objects.filter((o) => o.kind === kind);
  const [ns] = by('Namespace');
  const [deploy] = by('Deployment');
  const [svc] = by('Service');
  const [mwc] = by('MutatingWebhookConfiguration');
  const [sa] = by('ServiceAccount');
  assert.ok(ns && deploy && svc && mwc && sa);
  assert.deepEqual(
    by('Role').concat(by('ClusterRole'), by('RoleBinding'), by('ClusterRoleBinding')),
    [],
    'no RBAC: the webhook never calls the API server',
  );
  const hook = mwc.webhooks[0];
  assert.equal(hook.clientConfig.service.name, svc.metadata.name);
  assert.equal(hook.clientConfig.service.namespace, svc.metadata.namespace);
  assert.equal(hook.clientConfig.service.path, '/mutate');
  assert.equal(hook.clientConfig.service.port, svc.spec.ports[0].port);
  assert.deepEqual(hook.admissionReviewVersions, ['v1']);
  assert.deepEqual(hook.rules, [
    { operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' },
  ]);
  assert.deepEqual(hook.namespaceSelector.matchExpressions[0], {
    key: 'tranproxy-injection',
    operator: 'In',
    values: ['enabled'],
  });
  assert.ok(
    hook.namespaceSelector.matchExpressions[1].values.includes(ns.metadata.name),
    'the webhook namespace is never injected',
  );
  assert.ok(!ns.metadata.labels['tranproxy-injection']);
  for (const [l, v] of Object.entries(svc.spec.selector)) assert.equal(deploy.spec.template.metadata.labels[l], v);
  const c = deploy.spec.template.spec.containers[0];
  const args: string[] = c.args;
  const port = c.ports.find((p: any) => p.name === svc.spec.ports[0].targetPort);
  assert.ok(port, 'Service targetPort names a container port');
  assert.ok(args.includes(`--listen=:${port.containerPort}`));
  assert.equal(deploy.spec.template.spec.serviceAccountName, sa.metadata.name);
  assert.equal(deploy.spec.template.metadata.labels['tranproxy.io/inject'], 'false');
  const secret = deploy.spec.template.spec.volumes.find((v: any) => v.secret).secret.secretName;
  const mount = c.volumeMounts.find(
    (m: any) => m.name === deploy.spec.template.spec.volumes.find((v: any) => v.secret).name,
  ).mountPath;
  assert.ok(args.includes(`--tls-cert=${mount}/tls.crt`) && args.includes(`--tls-key=${mount}/tls.key`));
  assert.ok(args.includes(`--image=${DEFAULT_IMAGE}`), 'injects the image this version ships');
  assert.equal(c.image, DEFAULT_IMAGE);
  // PSA "restricted" namespace: the webhook pod must satisfy it.
  assert.equal(ns.metadata.labels['pod-security.kubernetes.io/enforce'], 'restricted');
  const podSc = deploy.spec.template.spec.securityContext;
  assert.equal(podSc.runAsNonRoot, true);
  assert.equal(podSc.seccompProfile.type, 'RuntimeDefault');
  assert.equal(c.securityContext.allowPrivilegeEscalation, false);
  assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  // cert-manager overlay: its Certificate writes the Secret the Deployment mounts, for the Service's DNS name.
  const cm = deployObjects().get('webhook/cert-manager')!;
  const cert = cm.find((o) => o.kind === 'Certificate');
  assert.equal(cert.spec.secretName, secret);
  assert.ok(cert.spec.dnsNames.includes(`${svc.metadata.name}.${svc.metadata.namespace}.svc`));
  if (hasKubectl()) {
    const patched = cm.find((o) => o.kind === 'MutatingWebhookConfiguration');
    assert.equal(
      patched.metadata.annotations['cert-manager.io/inject-ca-from'],
      `${cert.metadata.namespace}/${cert.metadata.name}`,
    );
  }
});

test('deploy/gateway: hostNetwork DaemonSet, NET_ADMIN only, its config file parses', () => {
  const objects = deployObjects().get('gateway')!;
  const ds = objects.find((o) => o.kind === 'DaemonSet');
  const spec = ds.spec.template.spec;
  assert.equal(spec.hostNetwork, true);
  assert.equal(spec.dnsPolicy, 'ClusterFirstWithHostNet');
  const c = spec.containers[0];
  assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'], add: ['NET_ADMIN'] });
  assert.equal(c.securityContext.privileged, false);
  const ns = objects.find((o) => o.kind === 'Namespace');
  assert.equal(ds.metadata.namespace ?? ns.metadata.name, ns.metadata.name);
  const config = readFileSync(join(DEPLOY, 'gateway/gateway.yaml'), 'utf8');
  const parsed = parseConfigText(config, 'deploy/gateway/gateway.yaml');
  assert.deepEqual(parsed.run.capture, ['prerouting']);
  assert.equal(parsed.run.mode, 'tproxy');
  assert.ok(c.args.includes('--config=/etc/tranproxy/gateway.yaml'));
  const cmVolume = spec.volumes.find((v: any) => v.configMap);
  if (hasKubectl()) {
    const cm = objects.find((o) => o.kind === 'ConfigMap');
    assert.equal(cm.metadata.name, cmVolume.configMap.name, 'the generated ConfigMap (hash suffix) is the one mounted');
    assert.equal(cm.data['gateway.yaml'], config);
  }
});

test("deploy/seed-sidecar: the seed's arguments unchanged, which the entry point reads as `run`", () => {
  const [deployment] = deployObjects()
    .get('seed-sidecar')!
    .filter((o) => o.kind === 'Deployment');
  const sidecar = deployment.spec.template.spec.initContainers[0];
  assert.equal(sidecar.restartPolicy, 'Always');
  assert.equal(sidecar.command, undefined, 'the image entry point is kept');
  assert.equal(sidecar.args[0], '-P', 'no subcommand: as the seed wrote it');
  assert.deepEqual(withDefaultCommand(sidecar.args, ['run', 'rules'], 'run').slice(0, 3), ['run', '-P', '80']);
  // The real `run` command line parses them.
  const run = runCommand().exitOverride();
  assert.deepEqual(run.parseOptions(sidecar.args), { operands: [], unknown: [] });
  const facts = {
    podAddress: () => '10.0.0.5',
    hostname: () => 'web',
    resolvConf: () => ({ nameservers: [], search: [], ndots: 1 }),
  };
  const cfg = parseRunOptions(run.opts(), [], facts);
  assert.deepEqual(
    cfg.inject?.headers.map((h) => `${h.name}=${h.value}`),
    ['X-Team=payments'],
  );
  assert.deepEqual(cfg.ports, [{ from: 80, to: 80 }]);
  assert.deepEqual(cfg.resolver.nameservers, ['10.96.0.10']);
});

test('deploy/systemd: the unit and the example config', () => {
  const unit = readFileSync(join(DEPLOY, 'systemd/tranproxy.service'), 'utf8');
  assert.match(unit, /^ExecStart=\/usr\/local\/bin\/tranproxy run --config \/etc\/tranproxy\/gateway\.yaml/m);
  assert.match(unit, /^ExecStopPost=-\/usr\/local\/bin\/tranproxy rules remove$/m);
  assert.match(unit, /^CapabilityBoundingSet=.*CAP_NET_ADMIN/m);
  assert.doesNotMatch(unit, /^ProtectKernelTunables=yes/m, 'a gateway writes net.ipv4.ip_forward');
  const parsed = parseConfigText(
    readFileSync(join(DEPLOY, 'systemd/gateway.yaml'), 'utf8'),
    'deploy/systemd/gateway.yaml',
  );
  assert.ok(Object.keys(parsed.nodes).length > 0);
  const r = spawnSync('systemd-analyze', ['verify', join(DEPLOY, 'systemd/tranproxy.service')], { encoding: 'utf8' });
  if (r.status !== null && !r.error) {
    // The binary is not installed here; every other complaint is a real problem.
    const problems = (r.stderr ?? '')
      .split('\n')
      .filter((l) => l.trim() && !/is not executable: No such file or directory/.test(l));
    assert.deepEqual(problems, []);
  }
});

test('deploy/webhook/gen-certs.sh --out: a CA and a serving certificate for the Service name', {
  skip: spawnSync('openssl', ['version']).status !== 0 && 'openssl missing',
}, () => {
  const dir = mkdtempSync(join(tmpdir(), 'tranproxy-gencerts-'));
  try {
    const r = spawnSync('bash', [join(DEPLOY, 'webhook/gen-certs.sh'), '--out', dir], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readdirSync(dir).sort(), ['ca.crt', 'tls.crt', 'tls.key']);
    const v = spawnSync('openssl', ['verify', '-CAfile', join(dir, 'ca.crt'), join(dir, 'tls.crt')], {
      encoding: 'utf8',
    });
    assert.equal(v.status, 0, v.stderr);
    const text = spawnSync(
      'openssl',
      ['x509', '-in', join(dir, 'tls.crt'), '-noout', '-ext', 'subjectAltName,extendedKeyUsage'],
      { encoding: 'utf8' },
    ).stdout;
    assert.match(text, /DNS:tranproxy-webhook\.tranproxy-system\.svc\b/);
    assert.match(text, /TLS Web Server Authentication/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// --- the published Kubernetes schema, when kubernetes-models is installed ------------------

const MODELS: Record<string, [string, string]> = {
  Pod: ['kubernetes-models/v1', 'Pod'],
  Namespace: ['kubernetes-models/v1', 'Namespace'],
  Service: ['kubernetes-models/v1', 'Service'],
  ServiceAccount: ['kubernetes-models/v1', 'ServiceAccount'],
  ConfigMap: ['kubernetes-models/v1', 'ConfigMap'],
  Deployment: ['kubernetes-models/apps/v1', 'Deployment'],
  StatefulSet: ['kubernetes-models/apps/v1', 'StatefulSet'],
  DaemonSet: ['kubernetes-models/apps/v1', 'DaemonSet'],
  Job: ['kubernetes-models/batch/v1', 'Job'],
  CronJob: ['kubernetes-models/batch/v1', 'CronJob'],
  PodDisruptionBudget: ['kubernetes-models/policy/v1', 'PodDisruptionBudget'],
  NetworkPolicy: ['kubernetes-models/networking.k8s.io/v1', 'NetworkPolicy'],
  MutatingWebhookConfiguration: ['kubernetes-models/admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration'],
};

async function loadModels(): Promise<((o: any) => void) | undefined> {
  const classes = new Map<string, new (o: unknown) => { validate(): void }>();
  try {
    for (const [kind, [mod, name]] of Object.entries(MODELS)) {
      const m = (await import(mod)) as Record<string, new (o: unknown) => { validate(): void }>;
      classes.set(kind, m[name]!);
    }
  } catch {
    return undefined;
  }
  return (o: any) => {
    const C = classes.get(o.kind);
    if (C) new C(o).validate();
  };
}

test('the published Kubernetes OpenAPI schema (kubernetes-models): injected workloads and deploy/', async (t) => {
  const check = await loadModels();
  if (!check) {
    t.skip('kubernetes-models is not installed (npm install --save-dev kubernetes-models)');
    return;
  }
  let n = 0;
  const seen = new Set<string>();
  for (const { where, object } of injectedObjects()) {
    assert.doesNotThrow(() => check(object), where);
    seen.add(object.kind);
    n++;
  }
  for (const [k, objects] of deployObjects()) {
    for (const o of objects) {
      assert.doesNotThrow(() => check(o), `deploy/${k}: ${o.kind}/${o.metadata?.name}`);
      n++;
    }
  }
  for (const kind of ['Pod', 'Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob'])
    assert.ok(seen.has(kind), `no injected ${kind} checked`);
  // It does catch errors (so a pass means something).
  assert.throws(() =>
    check({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'x' },
      spec: { containers: [{ name: 'a', ports: [{ containerPort: '80' }] }] },
    }),
  );
  assert.ok(n > 30);
});
