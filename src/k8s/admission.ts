// The mutating admission webhook's decision, as a pure function: an AdmissionReview (v1)
// in, an AdmissionReview out. Pods being created get the same injection as
// `tranproxy inject`, returned as a base64 JSON Patch. Anything else, and anything odd, is
// allowed unchanged: the webhook never stands between a user and the API server except for
// a pod whose tranproxy.io/* annotations are invalid (refused, naming the annotation).
import { AnnotationError, type InjectDefaults } from './config.js';
import { injectPodTemplate, type InjectStatus } from './inject.js';
import { diff, toJsonPatch } from './json-patch.js';
import { isObject, type PodTemplate } from './types.js';

export interface AdmissionOutcome {
  /** HTTP status: 200, or 400 when the body is no AdmissionReview. */
  status: number;
  body: unknown;
  /** For the log line. */
  summary: {
    uid?: string;
    namespace?: string;
    name?: string;
    result: InjectStatus | 'ignored' | 'denied' | 'bad-request' | 'error';
    reason?: string;
    warnings?: string[];
  };
}

const API_VERSIONS = ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1'];

function badRequest(reason: string): AdmissionOutcome {
  return { status: 400, body: { error: reason }, summary: { result: 'bad-request', reason } };
}

/** Decide on one AdmissionReview (already JSON-parsed). Never throws. */
export function review(body: unknown, defaults: InjectDefaults): AdmissionOutcome {
  if (!isObject(body)) return badRequest('expected an AdmissionReview object');
  const apiVersion =
    typeof body.apiVersion === 'string' && API_VERSIONS.includes(body.apiVersion) ? body.apiVersion : undefined;
  if (body.kind !== 'AdmissionReview' || !apiVersion)
    return badRequest('expected kind AdmissionReview, apiVersion admission.k8s.io/v1');
  const req = body.request;
  if (!isObject(req) || typeof req.uid !== 'string' || !req.uid)
    return badRequest('AdmissionReview without request.uid');
  const uid = req.uid;
  const namespace = typeof req.namespace === 'string' ? req.namespace : undefined;

  const answer = (
    response: Record<string, unknown>,
    summary: Omit<AdmissionOutcome['summary'], 'uid' | 'namespace'>,
  ): AdmissionOutcome => ({
    status: 200,
    body: { apiVersion, kind: 'AdmissionReview', response: { uid, ...response } },
    summary: { uid, ...(namespace ? { namespace } : {}), ...summary },
  });
  const allow = (result: AdmissionOutcome['summary']['result'], reason: string, warnings: string[] = []) =>
    answer(
      { allowed: true, ...(warnings.length ? { warnings: warnings.map(warningText) } : {}) },
      { result, reason, ...(warnings.length ? { warnings } : {}) },
    );

  const kind = isObject(req.kind) ? req.kind : {};
  if (kind.kind !== 'Pod' || (kind.group ?? '') !== '')
    return allow('ignored', `not a Pod (${String(kind.kind ?? '?')})`);
  if (typeof req.subResource === 'string' && req.subResource) return allow('ignored', `subresource ${req.subResource}`);
  if (req.operation !== 'CREATE') return allow('ignored', `operation ${String(req.operation)}`);
  const pod = req.object;
  if (!isObject(pod)) return allow('ignored', 'no object');
  const meta = isObject(pod.metadata) ? pod.metadata : {};
  const name =
    typeof meta.name === 'string' && meta.name
      ? meta.name
      : typeof meta.generateName === 'string'
        ? `${meta.generateName}*`
        : undefined;
  const named = (o: AdmissionOutcome): AdmissionOutcome => (name ? { ...o, summary: { ...o.summary, name } } : o);

  try {
    const r = injectPodTemplate(pod as PodTemplate, { defaults });
    if (r.status !== 'injected') return named(allow(r.status, r.reason ?? '', r.warnings));
    const patch = toJsonPatch(diff(pod, r.template));
    const warnings = r.warnings;
    return named(
      answer(
        {
          allowed: true,
          patchType: 'JSONPatch',
          patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
          ...(warnings.length ? { warnings: warnings.map(warningText) } : {}),
        },
        { result: 'injected', reason: r.mode ?? '', ...(warnings.length ? { warnings } : {}) },
      ),
    );
  } catch (e) {
    if (e instanceof AnnotationError) {
      return named(
        answer(
          { allowed: false, status: { code: 400, reason: 'Invalid', message: `tranproxy: ${e.message}` } },
          { result: 'denied', reason: e.message },
        ),
      );
    }
    // A bug of ours must not block pod creation.
    return named(
      allow('error', e instanceof Error ? e.message : String(e), ['tranproxy: internal error; pod not injected']),
    );
  }
}

/** Warnings reach `kubectl` users; keep them short and prefixed. */
function warningText(w: string): string {
  const t = w.startsWith('tranproxy: ') ? w : `tranproxy: ${w}`;
  return t.length > 240 ? `${t.slice(0, 237)}...` : t;
}
