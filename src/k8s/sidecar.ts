// The containers tranproxy adds to a pod, as plain Kubernetes objects. Both modes use the
// init-container layout: `tranproxy-init` applies the rules (root, NET_ADMIN, like
// istio-init) and exits; the proxy then runs as ONE unprivileged process (`run --firewall
// none --one-process`, as the proxy user, no capabilities), which the rules never capture.
// Measured idle (bench/RESULTS.md): about half the private memory of the supervisor layout
// (a root supervisor applying the rules + an unprivileged data-plane child).
//
// native (default, Kubernetes >= 1.29): the proxy is an init container with `restartPolicy:
//   Always` (a native sidecar) right after tranproxy-init, before the other init
//   containers. Its startupProbe holds back the containers after it until /readyz answers;
//   it is stopped after the app containers, so the app's last requests are still proxied.
// classic (before 1.29): tranproxy-init last among the init containers; the proxy first in
//   containers, with a postStart hook that holds the app containers back until it is ready.
import { captureArgs, httpArgs, INIT_NAME, SIDECAR_NAME, type SidecarConfig } from './config.js';
import type { Container } from './types.js';

/** Exit 0 when the admin API's /readyz answers 2xx. Node is in the image; fetch is global in Node 20. */
export function readyCheckScript(port: number): string {
  return `fetch('http://127.0.0.1:${port}/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))`;
}

/** Poll /readyz every 200 ms for up to `seconds`; exit 0 once ready. */
export function waitReadyScript(port: number, seconds: number): string {
  return (
    `const end=Date.now()+${seconds * 1000};` +
    `(function poll(){fetch('http://127.0.0.1:${port}/readyz').then(r=>{if(r.ok)process.exit(0);throw 0})` +
    `.catch(()=>Date.now()>end?process.exit(1):setTimeout(poll,200))})()`
  );
}

function probe(c: SidecarConfig, timing: Record<string, number>): Record<string, unknown> {
  const action =
    c.probe === 'http'
      ? { httpGet: { path: '/readyz', port: c.adminPort } }
      : { exec: { command: ['node', '-e', readyCheckScript(c.adminPort)] } };
  return { ...action, ...timing };
}

/** Where the admin API listens: loopback for exec probes; all addresses for kubelet httpGet. */
function adminAddress(c: SidecarConfig): string {
  return `${c.probe === 'http' ? '0.0.0.0' : '127.0.0.1'}:${c.adminPort}`;
}

const PODIP_ENV = { name: 'PODIP', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'status.podIP' } } };
/**
 * A small young generation, as the supervisor gives its data-plane child: garbage from
 * connections handed to the engine does not keep megabytes resident (8,000 held
 * connections: 46 → 44 MB anonymous in bench/RESULTS.md).
 */
const V8_ENV = { name: 'NODE_OPTIONS', value: '--max-semi-space-size=1' };

function resources(c: SidecarConfig): Record<string, unknown> {
  return { requests: { cpu: c.cpuRequest, memory: c.memoryRequest }, limits: { memory: c.memoryLimit } };
}

/** Capabilities the rule set-up needs: NET_ADMIN for netlink (nft, iptables-nft, ip rule); NET_RAW only for iptables-legacy's raw socket. */
function ruleCapabilities(c: SidecarConfig): string[] {
  return c.firewall === 'iptables' ? ['NET_ADMIN', 'NET_RAW'] : ['NET_ADMIN'];
}

/** Root for the rules; nothing it does needs more than the capabilities listed. */
function rootSecurityContext(caps: string[]): Record<string, unknown> {
  return {
    runAsUser: 0,
    runAsGroup: 0,
    runAsNonRoot: false,
    privileged: false,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'], add: caps },
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

function baseContainer(c: SidecarConfig, name: string, args: string[]): Container {
  return { name, image: c.image, imagePullPolicy: c.imagePullPolicy, args };
}

/** The proxy's own arguments: it serves only; the rules are tranproxy-init's. */
function proxyArgs(c: SidecarConfig): string[] {
  return ['run', '--firewall', 'none', '--one-process', '--admin', adminAddress(c), ...captureArgs(c), ...httpArgs(c)];
}

/** The proxy user, no capabilities at all. */
function proxySecurityContext(c: SidecarConfig): Record<string, unknown> {
  return {
    runAsUser: c.proxyUser.uid,
    runAsGroup: c.proxyUser.gid,
    runAsNonRoot: true,
    privileged: false,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

/** native mode: the proxy as a native sidecar (an init container with restartPolicy: Always). */
export function nativeSidecar(c: SidecarConfig): Container {
  return {
    ...baseContainer(c, SIDECAR_NAME, proxyArgs(c)),
    restartPolicy: 'Always',
    env: [PODIP_ENV, V8_ENV],
    // The kubelet starts the next container only once this succeeds (native sidecars).
    startupProbe: probe(c, { periodSeconds: 1, timeoutSeconds: 3, failureThreshold: 60 }),
    readinessProbe: probe(c, { periodSeconds: 10, timeoutSeconds: 3, failureThreshold: 3 }),
    resources: resources(c),
    securityContext: proxySecurityContext(c),
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

function firewallArg(c: SidecarConfig): string[] {
  return c.firewall === 'auto' ? [] : ['--firewall', c.firewall];
}

/** Both modes: the init container that applies the rules and exits. */
export function rulesInit(c: SidecarConfig): Container {
  return {
    ...baseContainer(c, INIT_NAME, ['rules', 'apply', ...firewallArg(c), ...captureArgs(c)]),
    resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: c.memoryLimit } },
    securityContext: rootSecurityContext(ruleCapabilities(c)),
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

/** classic mode: the proxy as an ordinary, unprivileged container. */
export function classicSidecar(c: SidecarConfig): Container {
  return {
    ...baseContainer(c, SIDECAR_NAME, proxyArgs(c)),
    env: [PODIP_ENV, V8_ENV],
    // Containers start in order and each waits for the one before's postStart hook: the
    // app containers (after this one) start once the proxy is ready.
    lifecycle: { postStart: { exec: { command: ['node', '-e', waitReadyScript(c.adminPort, 60)] } } },
    readinessProbe: probe(c, { periodSeconds: 10, timeoutSeconds: 3, failureThreshold: 3 }),
    resources: resources(c),
    securityContext: proxySecurityContext(c),
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}
