// Sidecar injection into pods and into the pod templates of workloads. Pure: objects in,
// new objects out (the input is never modified), plus a report per pod template.
import {
  AnnotationError,
  DEFAULT_INJECT,
  INIT_NAME,
  SIDECAR_NAME,
  STATUS_ANNOTATION,
  sidecarConfig,
  type InjectDefaults,
} from './config.js';
import { rulesInit, classicSidecar, nativeSidecar } from './sidecar.js';
import { isObject, type Container, type JsonObject, type KubeObject, type PodSpec, type PodTemplate } from './types.js';

export type InjectStatus = 'injected' | 'already-injected' | 'skipped';

export interface InjectOptions {
  defaults?: InjectDefaults;
  /** Replace an existing tranproxy sidecar (re-read the annotations) instead of leaving it. */
  force?: boolean;
  /** The object's kind, for kind-specific remarks (Jobs in classic mode). */
  kind?: string;
}

export interface PodReport {
  status: InjectStatus;
  /** Why a pod was skipped or left alone. */
  reason?: string;
  /** Things a person should know; the CLI prints them on stderr, the webhook returns them. */
  warnings: string[];
  /** How it was injected. */
  mode?: 'native' | 'classic';
}

export interface PodResult extends PodReport {
  /** The pod (template) after injection; the input itself when nothing changed. */
  template: PodTemplate;
}

const OPT_OUT = new Set(['false', 'no', 'off', 'disabled', '0']);
/** Other sidecars that capture a pod's outbound traffic with their own rules. */
const OTHER_CAPTURERS = ['istio-proxy', 'istio-init', 'istio-validation', 'linkerd-proxy', 'linkerd-init'];

function containerList(v: unknown): Container[] | undefined {
  if (v === undefined) return [];
  if (!Array.isArray(v)) return undefined;
  return v.every((c) => isObject(c) && typeof c.name === 'string') ? (v as Container[]) : undefined;
}

function optedOut(t: PodTemplate): boolean {
  const meta = t.metadata;
  const a = isObject(meta?.annotations) ? meta.annotations['tranproxy.io/inject'] : undefined;
  const l = isObject(meta?.labels) ? meta.labels['tranproxy.io/inject'] : undefined;
  return [a, l].some((v) => typeof v === 'string' && OPT_OUT.has(v.trim().toLowerCase()));
}

function ours(c: Container): boolean {
  return c.name === SIDECAR_NAME || c.name === INIT_NAME;
}

function idOf(v: unknown): number | undefined {
  return typeof v === 'number' ? v : undefined;
}

/** App containers whose uid or gid is the proxy's: their traffic is never captured. */
function uidWarnings(spec: PodSpec, containers: Container[], uid: number, gid: number): string[] {
  const pod = isObject(spec.securityContext) ? spec.securityContext : {};
  const out: string[] = [];
  for (const c of containers) {
    const sc = isObject(c.securityContext) ? c.securityContext : {};
    const u = idOf(sc.runAsUser) ?? idOf(pod.runAsUser);
    const g = idOf(sc.runAsGroup) ?? idOf(pod.runAsGroup);
    if (u === uid)
      out.push(
        `container ${c.name} runs as uid ${uid}, the proxy's: its traffic is never captured (set tranproxy.io/proxy-user to another UID:GID)`,
      );
    else if (g === gid)
      out.push(
        `container ${c.name} runs as gid ${gid}, the proxy's: its traffic is never captured (set tranproxy.io/proxy-user to another UID:GID)`,
      );
  }
  return out;
}

/**
 * Inject the sidecar into one pod or pod template. Never throws for odd input (reports it
 * as skipped) except AnnotationError for a bad tranproxy.io/* value.
 */
export function injectPodTemplate(template: PodTemplate, opts: InjectOptions = {}): PodResult {
  const defaults = opts.defaults ?? DEFAULT_INJECT;
  const leave = (status: InjectStatus, reason: string, warnings: string[] = []): PodResult => ({
    status,
    reason,
    warnings,
    template,
  });
  if (!isObject(template) || !isObject(template.spec)) return leave('skipped', 'no pod spec');
  if (template.metadata !== undefined && template.metadata !== null && !isObject(template.metadata))
    return leave('skipped', 'metadata is not a mapping');
  const rawAnnotations: unknown = template.metadata?.annotations;
  if (rawAnnotations !== undefined && rawAnnotations !== null && !isObject(rawAnnotations))
    return leave('skipped', 'metadata.annotations is not a mapping');
  const spec = template.spec;
  let containers = containerList(spec.containers);
  let initContainers = containerList(spec.initContainers);
  if (!containers || !initContainers)
    return leave('skipped', 'containers or initContainers is not a list of named containers');
  if (optedOut(template)) return leave('skipped', 'opted out (tranproxy.io/inject: "false")');

  const present = [...initContainers, ...containers].some(ours);
  if (present && !opts.force) return leave('already-injected', `a container named ${SIDECAR_NAME} is already there`);
  if (spec.hostNetwork === true) {
    return leave('skipped', 'hostNetwork pod', [
      "hostNetwork pod not injected: its rules would capture the node's own traffic",
    ]);
  }
  if (isObject(spec.os) && spec.os.name === 'windows')
    return leave('skipped', 'Windows pod', ['Windows pod not injected: tranproxy needs Linux netfilter']);
  if (containers.length === 0) return leave('skipped', 'no containers');

  const annotations = isObject(template.metadata?.annotations)
    ? (template.metadata!.annotations as Record<string, unknown>)
    : undefined;
  const { config, warnings } = sidecarConfig(annotations, defaults);

  if (present) {
    containers = containers.filter((c) => !ours(c));
    initContainers = initContainers.filter((c) => !ours(c));
  }
  warnings.push(...uidWarnings(spec, [...initContainers, ...containers], config.proxyUser.uid, config.proxyUser.gid));
  if (config.probe === 'http') {
    warnings.push(
      `probe http: the admin API (/connections, POST /quitquitquit) listens on 0.0.0.0:${config.adminPort}, reachable from the pod network; prefer the exec probe unless a NetworkPolicy closes that port`,
    );
  }
  const others = [...initContainers, ...containers].map((c) => c.name).filter((n) => OTHER_CAPTURERS.includes(n));
  if (others.length)
    warnings.push(
      `${others.join(', ')} found: that sidecar captures outbound traffic too; which one sees a connection depends on rule order`,
    );

  const meta: JsonObject = { ...(template.metadata ?? {}) };
  const newAnnotations: Record<string, unknown> = { ...(annotations ?? {}), [STATUS_ANNOTATION]: config.mode };
  const newSpec: PodSpec = { ...spec };
  if (config.mode === 'native') {
    // First: the rules, then the proxy, ready before the other init containers and the app start.
    newSpec.initContainers = [rulesInit(config), nativeSidecar(config), ...initContainers];
    newSpec.containers = containers;
  } else {
    // Last among the init containers: the rules capture from the moment they exist, and
    // the proxy starts only with the app containers, so earlier init containers would
    // have their connections on captured ports refused.
    newSpec.initContainers = [...initContainers, rulesInit(config)];
    // First among the containers, so that `kubectl logs/exec` keep finding the app.
    newSpec.containers = [classicSidecar(config), ...containers];
    if (newAnnotations['kubectl.kubernetes.io/default-container'] === undefined) {
      newAnnotations['kubectl.kubernetes.io/default-container'] = containers[0]!.name;
    }
    if (opts.kind === 'Job' || opts.kind === 'CronJob') {
      warnings.push(
        `classic sidecar in a ${opts.kind}: the pod does not complete while the sidecar runs; use native mode (Kubernetes >= 1.29), or have the app POST http://127.0.0.1:${config.adminPort}/quitquitquit with the header 'X-Tranproxy: 1' when done`,
      );
    }
  }
  meta.annotations = newAnnotations;
  return { status: 'injected', warnings, mode: config.mode, template: { ...template, metadata: meta, spec: newSpec } };
}

/** Where each kind keeps its pod template (empty: the object is the pod). */
export const POD_TEMPLATE_PATHS: Record<string, readonly string[]> = {
  Pod: [],
  PodTemplate: ['template'],
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

export interface ObjectReport extends PodReport {
  /** e.g. `Deployment/web` (`Deployment/web` in `items[2]` of a List). */
  name: string;
  kind: string;
}

export interface ObjectResult {
  object: unknown;
  reports: ObjectReport[];
}

function nameOf(o: KubeObject): string {
  const kind = typeof o.kind === 'string' ? o.kind : '?';
  const meta = isObject(o.metadata) ? o.metadata : {};
  const name =
    typeof meta.name === 'string'
      ? meta.name
      : typeof meta.generateName === 'string'
        ? `${meta.generateName}*`
        : '(unnamed)';
  return `${kind}/${name}`;
}

function getIn(o: unknown, path: readonly string[]): unknown {
  let cur = o;
  for (const k of path) {
    if (!isObject(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

function setIn(o: JsonObject, path: readonly string[], value: unknown): JsonObject {
  if (path.length === 0) return value as JsonObject;
  const [head, ...rest] = path;
  const child = o[head!];
  return { ...o, [head!]: setIn(isObject(child) ? child : {}, rest, value) };
}

/**
 * Inject into any Kubernetes object: workloads get their pod template injected, `*List`
 * kinds each item, everything else comes back as it is (the same reference).
 */
export function injectObject(obj: unknown, opts: InjectOptions = {}): ObjectResult {
  if (!isObject(obj) || typeof obj.kind !== 'string') return { object: obj, reports: [] };
  const o = obj as KubeObject;
  const kind = o.kind!;
  if (kind.endsWith('List') && Array.isArray(o.items)) {
    const reports: ObjectReport[] = [];
    let changed = false;
    const items = o.items.map((item) => {
      const r = injectObject(item, opts);
      reports.push(...r.reports);
      if (r.object !== item) changed = true;
      return r.object;
    });
    return { object: changed ? { ...o, items } : o, reports };
  }
  const path = POD_TEMPLATE_PATHS[kind];
  if (!path) return { object: obj, reports: [] };
  const name = nameOf(o);
  const template = getIn(o, path);
  if (!isObject(template)) {
    return { object: obj, reports: [{ name, kind, status: 'skipped', reason: 'no pod template', warnings: [] }] };
  }
  let r: PodResult;
  try {
    r = injectPodTemplate(template as PodTemplate, { ...opts, kind });
  } catch (e) {
    if (e instanceof AnnotationError) throw new AnnotationError(`${name}: ${e.message}`);
    throw e;
  }
  const report: ObjectReport = {
    name,
    kind,
    status: r.status,
    warnings: r.warnings,
    ...(r.reason ? { reason: r.reason } : {}),
    ...(r.mode ? { mode: r.mode } : {}),
  };
  if (r.status !== 'injected') return { object: obj, reports: [report] };
  return { object: setIn(o, path, r.template), reports: [report] };
}
