// `tranproxy inject`: add the tranproxy sidecar to the pods and workloads of a manifest.
// Flags → InjectDefaults; the work is src/k8s. Reports and warnings go to stderr.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { UsageError } from '../errors.js';
import { parseChoice, parsePort, parseUidGid } from '../config/values.js';
import { DEFAULT_INJECT, type InjectDefaults } from '../k8s/config.js';
import { injectYaml } from '../k8s/yaml.js';
import type { ObjectReport } from '../k8s/inject.js';

export interface RawInjectDefaults {
  image?: string;
  imagePullPolicy?: string;
  classic?: boolean;
  probe?: string;
  firewall?: string;
  adminPort?: string;
  listenPort?: string;
  proxyUser?: string;
}

/** The flags `inject` and `webhook` share: cluster-wide defaults that annotations override. */
export function addInjectDefaultsOptions(cmd: Command): Command {
  return cmd
    .option('--image <ref>', 'sidecar image (annotation tranproxy.io/image overrides)', DEFAULT_INJECT.image)
    .addOption(
      new Option('--image-pull-policy <policy>', 'sidecar imagePullPolicy')
        .choices(['Always', 'IfNotPresent', 'Never'])
        .default(DEFAULT_INJECT.imagePullPolicy),
    )
    .option(
      '--classic',
      'classic sidecar (a container, plus an init container that applies the rules) for Kubernetes < 1.29; default: native sidecar (tranproxy.io/mode overrides)',
    )
    .addOption(
      new Option(
        '--probe <kind>',
        'readiness check: exec (node fetches 127.0.0.1/readyz; the admin API stays on loopback) or http (kubelet httpGet; the admin API listens on 0.0.0.0)',
      )
        .choices(['exec', 'http'])
        .default(DEFAULT_INJECT.probe),
    )
    .addOption(
      new Option('--firewall <backend>', 'backend the sidecar uses (iptables adds NET_RAW, for iptables-legacy)')
        .choices(['auto', 'nft', 'iptables'])
        .default(DEFAULT_INJECT.firewall),
    )
    .option('--admin-port <port>', 'sidecar admin API port (/readyz)', String(DEFAULT_INJECT.adminPort))
    .option('--listen-port <port>', "sidecar proxy's port", String(DEFAULT_INJECT.listenPort))
    .option(
      '--proxy-user <uid:gid>',
      'user the data plane runs as; its traffic is never captured',
      `${DEFAULT_INJECT.proxyUser.uid}:${DEFAULT_INJECT.proxyUser.gid}`,
    );
}

export function injectDefaultsOf(raw: RawInjectDefaults): InjectDefaults {
  const proxyUser = parseUidGid(raw.proxyUser ?? '1337:1337', '--proxy-user');
  if (proxyUser.uid === 0)
    throw new UsageError(
      '--proxy-user: the data plane must not run as root (uid 0): its traffic would never be captured',
    );
  const image = (raw.image ?? DEFAULT_INJECT.image).trim();
  if (!image || /\s/.test(image)) throw new UsageError(`--image: '${raw.image}' is not an image reference`);
  return {
    ...DEFAULT_INJECT,
    image,
    imagePullPolicy: parseChoice(
      raw.imagePullPolicy ?? DEFAULT_INJECT.imagePullPolicy,
      ['Always', 'IfNotPresent', 'Never'] as const,
      '--image-pull-policy',
    ),
    mode: raw.classic ? 'classic' : 'native',
    probe: parseChoice(raw.probe ?? DEFAULT_INJECT.probe, ['exec', 'http'] as const, '--probe'),
    firewall: parseChoice(raw.firewall ?? DEFAULT_INJECT.firewall, ['auto', 'nft', 'iptables'] as const, '--firewall'),
    adminPort: parsePort(raw.adminPort ?? String(DEFAULT_INJECT.adminPort), '--admin-port'),
    listenPort: parsePort(raw.listenPort ?? String(DEFAULT_INJECT.listenPort), '--listen-port'),
    proxyUser,
  };
}

function describe(r: ObjectReport): string {
  switch (r.status) {
    case 'injected':
      return `injected (${r.mode})`;
    case 'already-injected':
      return 'already injected, left as it is (--force re-injects)';
    default:
      return `skipped: ${r.reason ?? ''}`;
  }
}

export function injectCommand(): Command {
  const cmd = new Command('inject')
    .description(
      'add the tranproxy sidecar to Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs in a YAML manifest (other kinds pass through)',
    )
    .requiredOption('-f, --filename <file>', "manifest to read ('-' for stdin); multi-document YAML is fine")
    .option('-o, --output <file>', 'write here instead of stdout')
    .option('--force', 'replace an existing tranproxy sidecar (after changing annotations) instead of leaving it')
    .option('-q, --quiet', 'print only warnings on stderr');
  addInjectDefaultsOptions(cmd).addHelpText(
    'after',
    '\nPod annotations (on the pod template of a workload) override the defaults per pod:\n' +
      '  tranproxy.io/ports: "80,8080"            tranproxy.io/headers: "X-A: 1\\nX-B: 2" or ["X-A: 1"]\n' +
      '  tranproxy.io/set-forwarded-for: default  tranproxy.io/set-client-hostname: default\n' +
      '  tranproxy.io/exclude-cidrs: 10.0.0.0/8   tranproxy.io/image, tranproxy.io/mode: native|classic\n' +
      '  tranproxy.io/inject: "false" never injects the pod. hostNetwork pods are skipped.\n' +
      'Injecting twice changes nothing: a pod with a container named tranproxy is left alone.\n',
  );
  cmd.action((opts: RawInjectDefaults & { filename: string; output?: string; force?: boolean; quiet?: boolean }) => {
    const defaults = injectDefaultsOf(opts);
    let text: string;
    try {
      text = readFileSync(opts.filename === '-' ? 0 : opts.filename, 'utf8');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new UsageError(
        `-f ${opts.filename}: cannot read: ${err.code === 'ENOENT' ? 'no such file' : (err.code ?? err.message)}`,
      );
    }
    const source = opts.filename === '-' ? 'stdin' : opts.filename;
    const out = injectYaml(text, { defaults, force: opts.force ?? false }, source);
    for (const r of out.reports) {
      for (const w of r.warnings) process.stderr.write(`tranproxy: warning: ${r.name}: ${w}\n`);
      if (!opts.quiet) process.stderr.write(`tranproxy: ${r.name}: ${describe(r)}\n`);
    }
    if (opts.output) {
      const tmp = `${opts.output}.tranproxy-tmp`;
      writeFileSync(tmp, out.text);
      renameSync(tmp, opts.output);
    } else {
      process.stdout.write(out.text);
    }
  });
  return cmd;
}
