// The few Kubernetes shapes injection touches. Input comes from users and from the API
// server, so every field is optional and checked before use; unknown fields are kept.

export type JsonObject = { [key: string]: unknown };

export interface Container extends JsonObject {
  name: string;
}

export interface ObjectMeta extends JsonObject {
  name?: string;
  generateName?: string;
  namespace?: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
}

export interface SecurityContext extends JsonObject {
  runAsUser?: number;
  runAsGroup?: number;
}

export interface PodSpec extends JsonObject {
  containers?: Container[];
  initContainers?: Container[];
  hostNetwork?: boolean;
  securityContext?: SecurityContext;
  os?: { name?: string };
}

/** A pod, or a workload's pod template: both have metadata and a pod spec. */
export interface PodTemplate extends JsonObject {
  metadata?: ObjectMeta;
  spec?: PodSpec;
}

export interface KubeObject extends JsonObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
}

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
