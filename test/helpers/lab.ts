// Test helpers around netlab's Lab: scoped labs, readiness waits, real peers, leak checks.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runSync } from '../../src/kernel/exec.js';
import { Lab, type Host, type LabProcess } from '../../src/netlab/lab.js';
import { selfSignedCertArgs } from './certs.js';

export { Lab, type Host, type LabProcess };

/** Create a lab, run `fn`, always destroy the lab — also when `fn` throws. */
export async function withLab<T>(fn: (lab: Lab) => Promise<T>, opts: { prefix?: string } = {}): Promise<T> {
  const lab = await Lab.create(opts);
  try {
    return await fn(lab);
  } finally {
    removeForwardingState(lab.prefix);
    await lab.destroy();
  }
}

/** A tranproxy killed inside a lab host (SIGKILL tests) leaves its forwarding state file behind:
 *  it is keyed by the netns inode, which a later namespace may reuse. */
function removeForwardingState(prefix: string): void {
  let names: string[] = [];
  try {
    names = readdirSync('/run/netns').filter((n) => n.startsWith(`${prefix}-`));
  } catch {
    return;
  }
  for (const name of names) {
    try {
      rmSync(`/run/tranproxy/forwarding-${statSync(`/run/netns/${name}`).ino}.json`, { force: true });
    } catch {
      // the namespace went already
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Wait until something listens on `port` inside `host` (checked with ss: no probe traffic). */
export async function waitForPort(
  host: Host,
  port: number,
  opts: { udp?: boolean; timeoutMs?: number } = {},
): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  const args = ['-H', opts.udp ? '-lnu' : '-lnt', `sport = :${port}`];
  for (;;) {
    const r = await host.run('ss', args, { allowFailure: true });
    if (r.status === 0 && r.stdout.trim()) return;
    if (Date.now() > deadline)
      throw new Error(`${host.name}: nothing listens on ${opts.udp ? 'udp' : 'tcp'} port ${port}`);
    await sleep(50);
  }
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Path of the built CLI (`npm run build` makes it). */
export function tranproxyBin(): string {
  return join(ROOT, 'dist/cli/main.js');
}

/**
 * Start `tranproxy ARGS...` in `host` and wait for its `tranproxy ready:` line.
 * Example: startTranproxy(gw, ['run', '--mode', 'redirect', '-P', '80']).
 */
export async function startTranproxy(
  host: Host,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; uid?: number; gid?: number; timeoutMs?: number } = {},
): Promise<LabProcess> {
  const { timeoutMs = 15_000, ...spawnOpts } = opts;
  const p = host.spawn(process.execPath, [tranproxyBin(), ...args], spawnOpts);
  await p.waitForOutput(/^tranproxy:? ready:.*$/m, timeoutMs);
  return p;
}

/** Absolute path of a peer script in test/peers. */
export function peerPath(script: string): string {
  return join(ROOT, 'test/peers', script);
}

export type PeerName = 'echo_headers' | 'tcp_echo' | 'udp_echo' | 'http_204';

/**
 * Start a python peer (test/peers/NAME.py PORT BIND) in `host`; resolves once it listens.
 * BIND '::' (the default) is dual stack.
 */
export async function startPeer(host: Host, name: PeerName, port: number, bind = '::'): Promise<LabProcess> {
  const p = host.spawn('python3', [peerPath(`${name}.py`), String(port), bind]);
  await p.waitForOutput(/^listening .*$/m);
  return p;
}

export interface TlsPeer {
  proc: LabProcess;
  certFile: string;
  keyFile: string;
}

const tempDirs: string[] = [];
process.on('exit', () => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

/**
 * Start test/peers/tls_server.py (echo_headers behind TLS; JSON has tls.sni) in `host`
 * with a fresh self-signed certificate for `names` (DNS names or IPs; default
 * 'tls.test'). The cert doubles as the CA for curl --cacert. Temp files go at exit.
 */
export async function startTlsServer(
  host: Host,
  port: number,
  opts: { names?: string[]; bind?: string } = {},
): Promise<TlsPeer> {
  const names = opts.names ?? ['tls.test'];
  const dir = mkdtempSync(join(tmpdir(), 'tpx-tls-'));
  tempDirs.push(dir);
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  await host.run('openssl', selfSignedCertArgs({ names, keyFile, certFile }));
  const proc = host.spawn('python3', [peerPath('tls_server.py'), String(port), certFile, keyFile, opts.bind ?? '::']);
  await proc.waitForOutput(/^listening .*$/m);
  return { proc, certFile, keyFile };
}

/** Number of open file descriptors of `pid`. */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/**
 * What a lab could leak into the host's own netns: veths named like a lab's ends (`eth<N>`;
 * a lab creates them directly inside its namespaces). Other runs' labs never put any there.
 */
export interface HostNetSnapshot {
  veths: string[];
}

function hostLabLikeVeths(): string[] {
  const links = JSON.parse(runSync('ip', ['-j', 'link', 'show', 'type', 'veth']).stdout || '[]') as {
    ifname: string;
  }[];
  return links
    .map((l) => l.ifname)
    .filter((n) => /^eth\d+$/.test(n))
    .sort();
}

export function snapshotHost(): HostNetSnapshot {
  return { veths: hostLabLikeVeths() };
}

/** The lab `prefix`'s own namespaces still present (other runs' labs are not looked at). */
export function labNamespaces(prefix: string): string[] {
  assert.ok(prefix, 'a lab prefix');
  return runSync('ip', ['netns', 'list'])
    .stdout.split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(`${prefix}-`));
}

/** Assert the lab `prefix` left no namespace and no veth in the host's netns. */
export function assertNoLeftovers(before: HostNetSnapshot, prefix: string): void {
  assert.deepEqual(labNamespaces(prefix), [], `namespaces of ${prefix} left`);
  assert.deepEqual(hostLabLikeVeths(), before.veths, 'veths left in the host netns');
}
