// A LabModel meets the kernel: `up` walks an ordered list of steps, each of which can tell
// whether its piece already exists (check) and make it (apply, returning what to undo);
// `status` runs only the checks; `down` undoes what the state file recorded and then removes
// whatever still carries the lab's names (so a lost state file is no obstacle).
// Every tool runs through a ToolRunner (kernel/exec's by default); the process never switches namespace.
import { existsSync, mkdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import { TranproxyError } from '../errors.js';
import { systemRunner, type RunOptions, type ToolRunner } from '../kernel/exec.js';
import { describeDrop, dropsFamily, type IpFamily } from '../firewall/forward-drop.js';
import { probeForwardDrops } from '../firewall/forward-drop-probe.js';
import { killAndDeleteNetns, netnsExists, netnsPids, signalIfAlive, sleepSync } from './netns.js';
import {
  netnsName,
  renderNat,
  ROOT,
  tableName,
  type CreateSpec,
  type IfaceSpec,
  type LabModel,
  type LinkSettings,
  type PlaceSpec,
  type ProcessSpec,
  type RouteSpec,
} from './spec.js';
import { logDir, mergeResources, readState, removeState, writeState, type LabState, type Resource } from './state.js';

// ---------------------------------------------------------------------------------------
// Small kernel readers and writers

function ip(runner: ToolRunner, netns: string | null, args: string[], opts: RunOptions = {}) {
  return runner.run('ip', netns ? ['-n', netns, ...args] : args, opts);
}

interface LinkInfo {
  ifname: string;
  address?: string;
  mtu?: number;
  flags?: string[];
  master?: string;
  linkinfo?: { info_kind?: string };
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

function linkInfo(runner: ToolRunner, netns: string | null, dev: string): LinkInfo | undefined {
  if (netns && !netnsExists(netns)) return undefined;
  const r = ip(runner, netns, ['-j', '-d', 'addr', 'show', 'dev', dev], { allowFailure: true });
  if (r.status !== 0) return undefined;
  try {
    return (JSON.parse(r.stdout) as LinkInfo[])[0];
  } catch {
    return undefined;
  }
}

function sysctlGet(runner: ToolRunner, netns: string | null, key: string): string | undefined {
  if (netns && !netnsExists(netns)) return undefined;
  const r = runner.run('sysctl', ['-n', key], { ...(netns ? { netns } : {}), allowFailure: true });
  return r.status === 0 ? r.stdout.trim().replace(/\s+/g, ' ') : undefined;
}

function sysctlSet(runner: ToolRunner, netns: string | null, key: string, value: string): void {
  runner.run('sysctl', ['-qw', `${key}=${value}`], netns ? { netns } : {});
}

interface RouteInfo {
  dst: string;
  gateway?: string;
  dev?: string;
  metric?: number;
}

function normDst(dst: string, family: 4 | 6): string {
  return dst === 'default' || dst.includes('/') ? dst : `${dst}/${family === 4 ? 32 : 128}`;
}

function routeExists(runner: ToolRunner, netns: string | null, r: RouteSpec): boolean {
  if (netns && !netnsExists(netns)) return false;
  const res = ip(runner, netns, [`-${r.family}`, '-j', 'route', 'show', 'table', 'main'], { allowFailure: true });
  if (res.status !== 0) return false;
  let list: RouteInfo[];
  try {
    list = JSON.parse(res.stdout) as RouteInfo[];
  } catch {
    return false;
  }
  return list.some(
    (x) =>
      normDst(x.dst, r.family) === r.dst &&
      (r.via === undefined || x.gateway === r.via) &&
      (r.dev === undefined || x.dev === r.dev) &&
      (r.metric === undefined || (x.metric ?? 0) === r.metric),
  );
}

function nftTable(runner: ToolRunner, netns: string | null, table: string): string | undefined {
  if (netns && !netnsExists(netns)) return undefined;
  const r = runner.run('nft', ['list', 'table', 'inet', table], { ...(netns ? { netns } : {}), allowFailure: true });
  return r.status === 0 ? r.stdout : undefined;
}

function nftRun(runner: ToolRunner, netns: string | null, script: string): void {
  runner.run('nft', ['-f', '-'], { input: script, ...(netns ? { netns } : {}) });
}

// Processes ---------------------------------------------------------------------------

/** Start time (clock ticks since boot) of a live, non-zombie process; undefined when gone. */
function procStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z' || rest[0] === 'X') return undefined;
    return rest[19];
  } catch {
    return undefined;
  }
}

function procCmdline(pid: number): string[] | undefined {
  try {
    const parts = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    if (parts[parts.length - 1] === '') parts.pop();
    return parts;
  } catch {
    return undefined;
  }
}

/** Stop a process `up` started (it leads its own session and group): TERM, then KILL after 3 s. */
function stopProcess(pid: number, start: string): boolean {
  if (procStart(pid) !== start) return false;
  signalIfAlive(-pid, 'SIGTERM');
  for (let i = 0; i < 60 && procStart(pid) === start; i++) sleepSync(50);
  if (procStart(pid) === start) {
    signalIfAlive(-pid, 'SIGKILL');
    for (let i = 0; i < 40 && procStart(pid) === start; i++) sleepSync(25);
  }
  return true;
}

/** Kill what is left in a lab namespace, then delete it (its interfaces go with it). */
function deleteNetns(runner: ToolRunner, netns: string): boolean {
  if (!netnsExists(netns)) return false;
  killAndDeleteNetns(netns, runner);
  return true;
}

function logTail(file: string, lines = 15): string {
  try {
    const t = readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    return t ? `\n--- ${file} ---\n${t}` : ` (${file} is empty)`;
  } catch {
    return '';
  }
}

function portListening(runner: ToolRunner, netns: string, port: number): boolean {
  const r = runner.run('ss', ['-Hlnt', `sport = :${port}`], { netns, allowFailure: true });
  return r.status === 0 && r.stdout.trim().length > 0;
}

/** Start `p` detached in `netns`, output appended to `log`; returns its pid and start time. */
function startProcess(runner: ToolRunner, netns: string, host: string, p: ProcessSpec, log: string): Resource {
  if (!existsSync(p.cwd) || !statSync(p.cwd).isDirectory())
    throw new TranproxyError(`${host}: cwd ${p.cwd} is not a directory`);
  mkdirSync(resolvePath(log, '..'), { recursive: true });
  const envArgs = Object.entries(p.env).map(([k, v]) => `${k}=${v}`);
  const inner = ['ip', 'netns', 'exec', netns, ...(envArgs.length ? ['env', ...envArgs] : []), ...p.argv];
  // A background job of a non-interactive shell is no group leader, so setsid(1) does not
  // fork: $! is the program's pid (ip netns exec, env and setsid all exec the next one).
  const script = 'log=$1; dir=$2; shift 2; cd "$dir" || exit 1; setsid "$@" </dev/null >>"$log" 2>&1 & echo $!';
  const r = runner.run('sh', ['-c', script, 'sh', log, p.cwd, ...inner]);
  const pid = Number(r.stdout.trim());
  const start = procStart(pid);
  const fail = (why: string): never => {
    if (start) stopProcess(pid, start);
    throw new TranproxyError(`${why}${logTail(log)}`);
  };
  if (!Number.isInteger(pid) || pid <= 0 || !start) fail('did not start');
  if (p.waitPort !== undefined) {
    const deadline = Date.now() + 10_000;
    while (!portListening(runner, netns, p.waitPort)) {
      if (procStart(pid) !== start) fail(`exited before listening on port ${p.waitPort}`);
      if (Date.now() > deadline) fail(`nothing listens on port ${p.waitPort} after 10 s`);
      sleepSync(50);
    }
  } else {
    sleepSync(200);
  }
  if (procStart(pid) !== start) fail('exited at once');
  return { kind: 'process', netns, host, pid, start: start!, argv: p.argv, log };
}

/**
 * Whether a netns handle made by this process is also mounted for our parent. Under
 * `ip netns exec` the process has a private (slave) mount namespace: the handle's bind mount
 * never reaches the real /run/netns, and the namespace dies with the process.
 * Undefined when it cannot be told.
 */
function visibleToParent(netns: string): boolean | undefined {
  try {
    if (readlinkSync('/proc/self/ns/mnt') === readlinkSync(`/proc/${process.ppid}/ns/mnt`)) return true;
    const mine = statSync(join('/run/netns', netns));
    const theirs = statSync(join(`/proc/${process.ppid}/root/run/netns`, netns));
    return mine.dev === theirs.dev && mine.ino === theirs.ino;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------
// Steps

export interface Step {
  /** Where: 'root' or a host name. */
  place: string;
  /** What, in words: "address 10.0.0.1/24 on eth0". */
  what: string;
  /** True when the piece exists as declared. */
  check(): boolean;
  /** Make it; returns what to undo. */
  apply(): Resource[];
}

function placeNetns(model: LabModel, place: string): string | null {
  return place === ROOT ? null : netnsName(model.name, place);
}

function describeIf(i: { place: string; name: string }): string {
  return `${i.place}:${i.name}`;
}

/** The ordered steps that build `model`. `state` lets process checks find pids `up` recorded. */
export function planSteps(model: LabModel, state?: LabState, runner: ToolRunner = systemRunner): Step[] {
  const places: PlaceSpec[] = [model.root, ...model.hosts];
  const nsOf = (place: string) => placeNetns(model, place);
  return [
    // 1. namespaces
    ...model.hosts.map((h) => netnsStep(runner, h)),
    // 2. sysctls for interfaces yet to come (net.*.conf.default.*)
    ...places.flatMap((p) => sysctlSteps(runner, p, true)),
    // 3. interfaces, and the link settings (mac, mtu, promisc) of those the lab creates
    ...model.creates.map((c) => createStep(runner, model, c)),
    ...model.interfaces.flatMap((i) => (i.settings ? [settingsStep(runner, nsOf(i.place), i, i.settings)] : [])),
    // 4. bridge ports, addresses, link up
    ...model.interfaces.flatMap((i) => (i.master ? [portStep(runner, nsOf(i.place), i, i.master)] : [])),
    ...addressSteps(runner, model, places),
    ...model.interfaces.map((i) => upStep(runner, nsOf(i.place), i)),
    // 5. sysctls, routes, NAT, processes
    ...places.flatMap((p) => sysctlSteps(runner, p, false)),
    ...places.flatMap((p) => p.routes.map((r) => routeStep(runner, p, r))),
    ...places.flatMap((p) => nftSteps(runner, model, p)),
    ...model.hosts.flatMap((h) => processSteps(runner, model, h, state)),
  ];
}

/** A host's namespace, with lo up and IPv6 on; rolled back when any of that fails. */
function netnsStep(runner: ToolRunner, h: PlaceSpec): Step {
  const ns = h.netns!;
  return {
    place: h.name,
    what: `netns ${ns}`,
    check: () => netnsExists(ns),
    apply: () => {
      runner.run('ip', ['netns', 'add', ns]);
      const rec: Resource = { kind: 'netns', netns: ns };
      try {
        if (visibleToParent(ns) === false) {
          throw new TranproxyError(
            `netns ${ns} is only visible in this process's own mount namespace (as under \`ip netns exec\`) and would vanish with it: ` +
              'enter just the network namespace instead, e.g. nsenter --net=/run/netns/NAME tranproxy lab up FILE',
          );
        }
        ip(runner, ns, ['link', 'set', 'lo', 'up']);
        // IPv6 on, no duplicate address detection: addresses work at once.
        runner.run(
          'sysctl',
          [
            '-qw',
            'net.ipv6.conf.all.disable_ipv6=0',
            'net.ipv6.conf.default.disable_ipv6=0',
            'net.ipv6.conf.all.accept_dad=0',
            'net.ipv6.conf.default.accept_dad=0',
          ],
          { netns: ns },
        );
      } catch (e) {
        undo(rec, 'rollback', runner);
        throw e;
      }
      return [rec];
    },
  };
}

/** A place's sysctls: `early` the net.*.conf.default.* ones (before interfaces), else the rest. */
function sysctlSteps(runner: ToolRunner, p: PlaceSpec, early: boolean): Step[] {
  const ns = p.netns;
  return p.sysctls
    .filter((s) => (s.key.split('.')[3] === 'default') === early)
    .map((s) => ({
      place: p.name,
      what: `sysctl ${s.key}=${s.value}`,
      check: () => sysctlGet(runner, ns, s.key) === s.value.replace(/\s+/g, ' '),
      apply: (): Resource[] => {
        const old = sysctlGet(runner, ns, s.key);
        if (old === undefined)
          throw new TranproxyError(`${p.name}: sysctl ${s.key}: no such key${ns ? ` in netns ${ns}` : ''}`);
        sysctlSet(runner, ns, s.key, s.value);
        return [{ kind: 'sysctl', netns: ns, key: s.key, old }];
      },
    }));
}

function portStep(runner: ToolRunner, ns: string | null, i: IfaceSpec, master: string): Step {
  return {
    place: i.place,
    what: `port ${i.name} on bridge ${master}`,
    check: () => linkInfo(runner, ns, i.name)?.master === master,
    apply: () => {
      ip(runner, ns, ['link', 'set', 'dev', i.name, 'master', master]);
      return [{ kind: 'master', netns: ns, name: i.name }];
    },
  };
}

/** Addresses of the lab's interfaces, then the extra ones (lo, existing root interfaces). */
function addressSteps(runner: ToolRunner, model: LabModel, places: PlaceSpec[]): Step[] {
  const addressed = [
    ...model.interfaces,
    ...places.flatMap((p) => p.extraAddresses.map((x) => ({ place: p.name, name: x.dev, addresses: x.addresses }))),
  ];
  return addressed.flatMap((i) => {
    const ns = placeNetns(model, i.place);
    return i.addresses.map((a) => ({
      place: i.place,
      what: `address ${a.text} on ${i.name}`,
      check: () => !!linkInfo(runner, ns, i.name)?.addr_info?.some((x) => x.local === a.addr && x.prefixlen === a.len),
      apply: (): Resource[] => {
        ip(runner, ns, [`-${a.family}`, 'addr', 'add', a.text, 'dev', i.name, ...(a.family === 6 ? ['nodad'] : [])]);
        return [{ kind: 'addr', netns: ns, dev: i.name, cidr: a.text }];
      },
    }));
  });
}

function upStep(runner: ToolRunner, ns: string | null, i: IfaceSpec): Step {
  return {
    place: i.place,
    what: `${i.name} up`,
    check: () => !!linkInfo(runner, ns, i.name)?.flags?.includes('UP'),
    apply: () => {
      ip(runner, ns, ['link', 'set', 'dev', i.name, 'up']);
      return [{ kind: 'up', netns: ns, dev: i.name }];
    },
  };
}

function routeStep(runner: ToolRunner, p: PlaceSpec, r: RouteSpec): Step {
  return {
    place: p.name,
    what: `route ${r.args.join(' ')}`,
    check: () => routeExists(runner, p.netns, r),
    apply: () => {
      ip(runner, p.netns, [`-${r.family}`, 'route', 'add', ...r.args]);
      return [{ kind: 'route', netns: p.netns, family: r.family, args: r.args }];
    },
  };
}

/** The lab's nft table in a place (NAT and forward rules), replaced as a whole; none when it has no rules. */
function nftSteps(runner: ToolRunner, model: LabModel, p: PlaceSpec): Step[] {
  const script = renderNat(model.name, p.nat, p.forward);
  if (!script) return [];
  const forwardWhat = p.forward
    ? `, forward policy ${p.forward.policy} + ${p.forward.accept.length} accept rule${p.forward.accept.length === 1 ? '' : 's'}`
    : '';
  const comment = script.match(/comment "([^"]+)"/)![1]!;
  return [
    {
      place: p.name,
      what: `nft table inet ${model.table} (${p.nat.length} NAT rule${p.nat.length === 1 ? '' : 's'}${forwardWhat})`,
      check: () => nftTable(runner, p.netns, model.table)?.includes(`comment "${comment}"`) ?? false,
      apply: () => {
        const old = nftTable(runner, p.netns, model.table);
        nftRun(runner, p.netns, `table inet ${model.table}\ndelete table inet ${model.table}\n${script}`);
        return [{ kind: 'nft', netns: p.netns, table: model.table, ...(old !== undefined ? { old } : {}) }];
      },
    },
  ];
}

function processSteps(runner: ToolRunner, model: LabModel, h: PlaceSpec, state: LabState | undefined): Step[] {
  const ns = h.netns!;
  return h.processes.map((p, idx) => ({
    place: h.name,
    what: `process ${p.argv.join(' ')}`,
    check: () => findProcess(ns, p, state, runner) !== undefined,
    apply: () => [startProcess(runner, ns, h.name, p, join(logDir(model.name), `${h.name}.${idx}.log`))],
  }));
}

/** A running instance of `p` in `netns`: the pid `up` recorded, or any process there with the same argv. */
export function findProcess(
  netns: string,
  p: ProcessSpec,
  state?: LabState,
  runner: ToolRunner = systemRunner,
): number | undefined {
  for (const r of state?.resources ?? []) {
    if (
      r.kind === 'process' &&
      r.netns === netns &&
      JSON.stringify(r.argv) === JSON.stringify(p.argv) &&
      procStart(r.pid) === r.start
    )
      return r.pid;
  }
  // Same argv; the program may show as a full path (PATH lookups, version-manager shims).
  const base = (a: string) => a.slice(a.lastIndexOf('/') + 1);
  const want = JSON.stringify([base(p.argv[0]!), ...p.argv.slice(1)]);
  return netnsPids(netns, runner).find((pid) => {
    const c = procCmdline(pid);
    return !!c?.length && JSON.stringify([base(c[0]!), ...c.slice(1)]) === want;
  });
}

function settingsArgs(t: LinkSettings): string[] {
  return [
    ...(t.mac !== undefined ? ['address', t.mac] : []),
    ...(t.mtu !== undefined ? ['mtu', String(t.mtu)] : []),
    ...(t.promisc !== undefined ? ['promisc', t.promisc ? 'on' : 'off'] : []),
  ];
}

/** `ip link set dev X address MAC mtu N promisc on|off`; nothing to undo (the lab deletes the interface). */
function settingsStep(runner: ToolRunner, ns: string | null, i: IfaceSpec, t: LinkSettings): Step {
  return {
    place: i.place,
    what: `${i.name} ${settingsArgs(t).join(' ')}`,
    check: () => {
      const l = linkInfo(runner, ns, i.name);
      if (!l) return false;
      const promisc = l.flags?.includes('PROMISC') ?? false;
      return (
        (t.mac === undefined || l.address === t.mac) &&
        (t.mtu === undefined || l.mtu === t.mtu) &&
        (t.promisc === undefined || promisc === t.promisc)
      );
    },
    apply: () => {
      ip(runner, ns, ['link', 'set', 'dev', i.name, ...settingsArgs(t)]);
      return [];
    },
  };
}

function createStep(runner: ToolRunner, model: LabModel, c: CreateSpec): Step {
  const nsOf = (place: string) => placeNetns(model, place);
  const linkRec = (i: IfaceSpec, what: string): Resource => ({
    kind: 'link',
    netns: nsOf(i.place),
    name: i.name,
    what,
  });
  switch (c.kind) {
    case 'bridge':
    case 'dummy': {
      const ns = nsOf(c.iface.place);
      return {
        place: c.iface.place,
        what: `${c.kind} ${c.iface.name}`,
        check: () => linkInfo(runner, ns, c.iface.name) !== undefined,
        apply: () => {
          ip(runner, ns, ['link', 'add', c.iface.name, 'type', c.kind]);
          return [linkRec(c.iface, c.kind)];
        },
      };
    }
    case 'veth': {
      const [a, b] = [c.a, c.b];
      const [na, nb] = [nsOf(a.place), nsOf(b.place)];
      return {
        place: a.place,
        what: `veth ${describeIf(a)} <-> ${describeIf(b)}`,
        check: () => linkInfo(runner, na, a.name) !== undefined && linkInfo(runner, nb, b.name) !== undefined,
        apply: () => {
          // A lone end left over from an earlier run (its peer's namespace was deleted) goes first.
          for (const [ns, i] of [
            [na, a],
            [nb, b],
          ] as const)
            if (linkInfo(runner, ns, i.name)) ip(runner, ns, ['link', 'del', i.name]);
          ip(runner, null, [
            'link',
            'add',
            a.name,
            ...(na ? ['netns', na] : []),
            ...(c.mtu ? ['mtu', String(c.mtu)] : []),
            'type',
            'veth',
            'peer',
            'name',
            b.name,
            ...(nb ? ['netns', nb] : []),
            ...(c.mtu ? ['mtu', String(c.mtu)] : []),
          ]);
          // Both ends: undoing the root one deletes the pair at once (a namespace's go later).
          return [linkRec(a, 'veth'), linkRec(b, 'veth')];
        },
      };
    }
    case 'macvlan': {
      const ns = nsOf(c.iface.place);
      const pns = nsOf(c.parent.place);
      return {
        place: c.iface.place,
        what: `macvlan ${c.iface.name} on ${describeIf(c.parent)} (mode ${c.mode})`,
        check: () => linkInfo(runner, ns, c.iface.name) !== undefined,
        apply: () => {
          if (!linkInfo(runner, pns, c.parent.name)) {
            throw new TranproxyError(
              `macvlan ${describeIf(c.iface)}: parent interface ${c.parent.name} does not exist in ${pns ? `netns ${pns}` : 'the root namespace'}`,
            );
          }
          ip(runner, pns, [
            'link',
            'add',
            'link',
            c.parent.name,
            'name',
            c.iface.name,
            ...(ns !== pns ? ['netns', ns ?? String(process.pid)] : []),
            'type',
            'macvlan',
            'mode',
            c.mode,
          ]);
          return [linkRec(c.iface, 'macvlan')];
        },
      };
    }
  }
}

// ---------------------------------------------------------------------------------------
// Undo

type UndoMode = 'rollback' | 'down';

/** Undo one resource; never throws. Returns a line saying what was removed, or undefined if nothing was there. */
export function undo(r: Resource, mode: UndoMode, runner: ToolRunner = systemRunner): string | undefined {
  try {
    const where = (ns: string | null) => (ns ? ns : 'root');
    switch (r.kind) {
      case 'netns':
        return deleteNetns(runner, r.netns) ? `netns ${r.netns}` : undefined;
      case 'link':
        if (!linkInfo(runner, r.netns, r.name)) return undefined;
        ip(runner, r.netns, ['link', 'del', r.name], { allowFailure: true });
        return `${where(r.netns)}: ${r.what} ${r.name}`;
      case 'master':
        if (!linkInfo(runner, r.netns, r.name)?.master) return undefined;
        ip(runner, r.netns, ['link', 'set', 'dev', r.name, 'nomaster'], { allowFailure: true });
        return `${where(r.netns)}: port ${r.name} off its bridge`;
      case 'addr': {
        const [a, len] = r.cidr.split('/');
        if (!linkInfo(runner, r.netns, r.dev)?.addr_info?.some((x) => x.local === a && String(x.prefixlen) === len))
          return undefined;
        ip(runner, r.netns, ['addr', 'del', r.cidr, 'dev', r.dev], { allowFailure: true });
        return `${where(r.netns)}: address ${r.cidr} on ${r.dev}`;
      }
      case 'up':
        if (!linkInfo(runner, r.netns, r.dev)?.flags?.includes('UP')) return undefined;
        ip(runner, r.netns, ['link', 'set', 'dev', r.dev, 'down'], { allowFailure: true });
        return `${where(r.netns)}: ${r.dev} down`;
      case 'sysctl': {
        const now = sysctlGet(runner, r.netns, r.key);
        if (now === undefined || now === r.old) return undefined;
        runner.run('sysctl', ['-qw', `${r.key}=${r.old}`], {
          ...(r.netns ? { netns: r.netns } : {}),
          allowFailure: true,
        });
        return `${where(r.netns)}: sysctl ${r.key} restored to ${r.old}`;
      }
      case 'route': {
        const del = ip(runner, r.netns, [`-${r.family}`, 'route', 'del', ...r.args], { allowFailure: true });
        return del.status === 0 ? `${where(r.netns)}: route ${r.args.join(' ')}` : undefined;
      }
      case 'nft': {
        if (nftTable(runner, r.netns, r.table) === undefined) return undefined;
        const restore = mode === 'rollback' && r.old !== undefined ? r.old : '';
        runner.run('nft', ['-f', '-'], {
          input: `delete table inet ${r.table}\n${restore}`,
          ...(r.netns ? { netns: r.netns } : {}),
          allowFailure: true,
        });
        return `${where(r.netns)}: nft table inet ${r.table}${restore ? ' (earlier version restored)' : ''}`;
      }
      case 'process':
        return stopProcess(r.pid, r.start) ? `${r.host}: process ${r.pid} (${r.argv.join(' ')})` : undefined;
    }
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------
// up / status / down

export interface UpResult {
  created: string[];
  present: number;
}

export class LabUpError extends TranproxyError {}

/**
 * Make everything `model` declares that does not exist yet. On a failure, undo every change of
 * this run (in reverse order), leave the state file as it was, and throw.
 */
export function labUp(
  model: LabModel,
  opts: { onChange?: (line: string) => void; runner?: ToolRunner } = {},
): UpResult {
  const runner = opts.runner ?? systemRunner;
  const prev = readState(model.name);
  const base: LabState = prev ?? {
    version: 1,
    name: model.name,
    file: resolvePath(model.file),
    updated: '',
    resources: [],
  };
  const steps = planSteps(model, prev, runner);
  const done: Resource[] = [];
  const created: string[] = [];
  let present = 0;
  for (const s of steps) {
    let ok: boolean;
    try {
      ok = s.check();
    } catch {
      ok = false;
    }
    if (ok) {
      present++;
      continue;
    }
    try {
      const recs = s.apply();
      done.push(...recs);
      const line = `${s.place}: ${s.what}`;
      created.push(line);
      opts.onChange?.(line);
      writeState({ ...base, file: resolvePath(model.file), resources: mergeResources(base.resources, done) });
    } catch (e) {
      const undone = rollback(runner, done);
      if (prev) writeState(prev);
      else removeState(model.name);
      const why = e instanceof Error ? e.message : String(e);
      throw new LabUpError(
        `lab ${model.name}: ${s.place}: ${s.what}: ${why}\nrolled back ${done.length} change${done.length === 1 ? '' : 's'} of this run${undone.length ? `:\n  - ${undone.join('\n  - ')}` : ''}`,
        { cause: e },
      );
    }
  }
  return { created, present };
}

function rollback(runner: ToolRunner, done: readonly Resource[]): string[] {
  const out: string[] = [];
  // Processes first, then everything else newest first; what lives in a namespace made by
  // this run goes with that namespace.
  const made = new Set(done.flatMap((r) => (r.kind === 'netns' ? [r.netns] : [])));
  const links = new Set(done.flatMap((r) => (r.kind === 'link' ? [`${r.netns ?? ''}/${r.name}`] : [])));
  const order = [
    ...done.filter((r) => r.kind === 'process'),
    ...[...done].reverse().filter((r) => r.kind !== 'process'),
  ];
  for (const r of order) {
    if (r.kind !== 'netns' && r.kind !== 'process' && r.netns && made.has(r.netns)) continue;
    // Addresses, ports and link state of an interface about to be deleted need no undoing.
    if ((r.kind === 'addr' || r.kind === 'up') && links.has(`${r.netns ?? ''}/${r.dev}`)) continue;
    if (r.kind === 'master' && links.has(`${r.netns ?? ''}/${r.name}`)) continue;
    const line = undo(r, 'rollback', runner);
    if (line) out.push(line);
  }
  return out;
}

export interface StatusLine {
  place: string;
  what: string;
  present: boolean;
}

/** A filter-forward chain outside the lab that drops what a place of the lab forwards. */
export interface ForwardProblem {
  place: string;
  text: string;
}

export interface StatusResult {
  lines: StatusLine[];
  /** Forward drops (nft or iptables, either family) that break the routing the lab declares. */
  forwardProblems: ForwardProblem[];
  /** Pids of the declared processes that run (`host: argv` → pid). */
  pids: Map<string, number>;
  state: LabState | undefined;
}

export function labStatus(model: LabModel, runner: ToolRunner = systemRunner): StatusResult {
  const state = readState(model.name);
  const lines = planSteps(model, state, runner).map((s) => {
    let present = false;
    try {
      present = s.check();
    } catch {
      /* missing */
    }
    return { place: s.place, what: s.what, present };
  });
  const pids = new Map<string, number>();
  for (const h of model.hosts) {
    for (const p of h.processes) {
      const pid = findProcess(h.netns!, p, state, runner);
      if (pid !== undefined) pids.set(`${h.name}: process ${p.argv.join(' ')}`, pid);
    }
  }
  return { lines, pids, state, forwardProblems: forwardProblems(runner, model) };
}

/** The families a place forwards, as its sysctls declare them. */
function forwardedFamilies(p: PlaceSpec): IpFamily[] {
  const on = (key: string) => p.sysctls.some((s) => s.key === key && s.value.trim() === '1');
  return [
    ...(on('net.ipv4.ip_forward') || on('net.ipv4.conf.all.forwarding') ? [4 as const] : []),
    ...(on('net.ipv6.conf.all.forwarding') ? [6 as const] : []),
  ];
}

/** Drops by chains the lab does not own (its own declared `forward:` is intentional). */
function forwardProblems(runner: ToolRunner, model: LabModel): ForwardProblem[] {
  const out: ForwardProblem[] = [];
  for (const p of [model.root, ...model.hosts]) {
    const families = forwardedFamilies(p);
    if (families.length === 0 || (p.netns && !netnsExists(p.netns))) continue;
    for (const d of probeForwardDrops([model.table], { ...(p.netns ? { netns: p.netns } : {}), runner })) {
      const hit = families.filter((f) => dropsFamily(d, f));
      if (hit.length === 0) continue;
      out.push({
        place: p.name,
        text:
          `${describeDrop(d)} drops the IPv${hit.join('/IPv')} traffic this lab routes here (${hit.map((f) => (f === 4 ? 'net.ipv4.ip_forward=1' : 'net.ipv6.conf.all.forwarding=1')).join(', ')}); ` +
          `an accept in the lab's own table cannot override another chain's drop: ${d.backend === 'nft' ? `add accept rules to that chain` : `e.g. ${d.family === 'ip6' ? 'ip6tables' : 'iptables'}${d.backend === 'iptables-legacy' ? '-legacy' : ''} -I FORWARD -i IF -j ACCEPT`}, or declare the drop in the lab (forward: {policy: drop, accept: [...]})`,
      });
    }
  }
  return out;
}

export interface DownResult {
  removed: string[];
  warnings: string[];
}

/**
 * Remove the lab: what the state file recorded (processes first, sysctls restored), then
 * anything that still carries the lab's names per the file (namespaces, root-namespace
 * interfaces, the nft table). Never throws for a missing piece.
 */
export function labDown(model: LabModel, runner: ToolRunner = systemRunner): DownResult {
  const state = readState(model.name);
  const removed: string[] = [];
  const warnings: string[] = [];
  const push = (l: string | undefined) => {
    if (l) removed.push(l);
  };
  const recs = state?.resources ?? [];
  // 1. processes, gracefully
  for (const r of recs) if (r.kind === 'process') push(undo(r, 'down', runner));
  // 2. root-namespace changes, newest first (inside lab namespaces everything goes with them)
  const rootLinks = new Set([
    ...recs.flatMap((r) => (r.kind === 'link' && r.netns === null ? [r.name] : [])),
    ...model.interfaces.filter((i) => i.place === ROOT).map((i) => i.name),
  ]);
  for (const r of [...recs].reverse()) {
    if (r.kind === 'process' || r.kind === 'netns' || r.netns !== null) continue;
    // Addresses, ports and link state of an interface about to be deleted need no undoing.
    if ((r.kind === 'addr' || r.kind === 'up') && rootLinks.has(r.dev)) continue;
    if (r.kind === 'master' && rootLinks.has(r.name)) continue;
    push(undo(r, 'down', runner));
  }
  // 3. what carries the lab's names in the root namespace (before the namespaces: a veth end
  //    deleted here takes its peer at once, while a namespace's interfaces go asynchronously)
  const kindOf = new Map<string, string>();
  for (const c of model.creates) {
    if (c.kind === 'veth') for (const i of [c.a, c.b]) kindOf.set(`${i.place}/${i.name}`, 'veth');
    else kindOf.set(`${c.iface.place}/${c.iface.name}`, c.kind);
  }
  for (const i of model.interfaces) {
    if (i.place !== ROOT) continue;
    push(
      undo(
        { kind: 'link', netns: null, name: i.name, what: kindOf.get(`${i.place}/${i.name}`) ?? 'interface' },
        'down',
        runner,
      ),
    );
  }
  push(undo({ kind: 'nft', netns: null, table: tableName(model.name) }, 'down', runner));
  // 4. namespaces: recorded ones and the file's
  const spaces = new Set<string>([
    ...recs.flatMap((r) => (r.kind === 'netns' ? [r.netns] : [])),
    ...model.hosts.map((h) => h.netns!),
  ]);
  for (const ns of spaces) push(undo({ kind: 'netns', netns: ns }, 'down', runner));
  if (!state && removed.length) {
    const sys = model.root.sysctls.map((s) => s.key);
    if (sys.length)
      warnings.push(
        `no state file: root sysctls ${sys.join(', ')} keep their current values (the old ones are unknown)`,
      );
    const routes = model.root.routes.filter(
      (r) => r.dev === undefined || !model.interfaces.some((i) => i.place === ROOT && i.name === r.dev),
    );
    for (const r of routes) {
      if (routeExists(runner, null, r))
        warnings.push(`no state file: root route ${r.args.join(' ')} left in place (it may predate the lab)`);
    }
  }
  removeState(model.name);
  return { removed, warnings };
}
