// Small in-memory models of the kernel state the firewall and publish code read back, plugged
// into a FakeRunner: iptables tables (per tool), our nft tables, sysctls. Enough for the code
// under test to see its own changes, so rollback and idempotence can be checked without root.
import type { FakeCall, FakeRunner } from './fake-runner.js';

interface Table {
  chains: string[];
  /** '-A CHAIN spec' lines in order. */
  rules: string[];
}

/** iptables-save / iptables-restore --noflush of one tool family, table by table. */
export class IptablesModel {
  private readonly tables = new Map<string, Table>();
  /** Refuse the COMMIT of this table (tables committed before it stay). */
  failTable: string | undefined;

  save(table: string): string {
    const t = this.tables.get(table);
    if (!t) return '';
    return [`*${table}`, ...t.chains.map((c) => `:${c} - [0:0]`), ...t.rules, 'COMMIT', ''].join('\n');
  }

  /** Applies each table section in turn; stops with status 1 at `failTable`. */
  restore(text: string): { status: number; stderr: string } {
    let name: string | undefined;
    let work: Table | undefined;
    for (const line of text.split('\n')) {
      if (line.startsWith('*')) {
        name = line.slice(1).trim();
        const cur = this.tables.get(name);
        work = { chains: [...(cur?.chains ?? [])], rules: [...(cur?.rules ?? [])] };
      } else if (line === 'COMMIT' && name && work) {
        if (name === this.failTable) return { status: 1, stderr: `iptables-restore: line: COMMIT failed (${name})` };
        this.tables.set(name, work);
      } else if (work && line && !line.startsWith('#')) applyLine(work, line);
    }
    return { status: 0, stderr: '' };
  }

  /** Our chains and rules left in any table. */
  leftovers(): string[] {
    return [...this.tables.values()].flatMap((t) => [...t.chains, ...t.rules.filter((r) => r.includes('TRANPROXY'))]);
  }
}

function applyLine(t: Table, line: string): void {
  const [op, chain, ...rest] = line.split(' ');
  const spec = rest.join(' ');
  if (!chain) return;
  if (op?.startsWith(':')) {
    const name = op.slice(1);
    if (t.chains.includes(name)) t.rules = t.rules.filter((r) => r.split(' ')[1] !== name);
    else t.chains.push(name);
  } else if (op === '-A') t.rules.push(line);
  else if (op === '-D') {
    const i = t.rules.indexOf(`-A ${chain} ${spec}`);
    if (i >= 0) t.rules.splice(i, 1);
  } else if (op === '-X') {
    t.chains = t.chains.filter((c) => c !== chain);
    t.rules = t.rules.filter((r) => r.split(' ')[1] !== chain);
  } else if (op === '-I') t.rules.unshift(`-A ${chain} ${rest.slice(1).join(' ')}`);
}

/** The tables `nft -f -` scripts create and delete (by 'table inet NAME {' / 'delete table inet NAME'). */
export class NftModel {
  /** Table name → the script text that made it (what `nft list table` answers). */
  private readonly made = new Map<string, string>();

  get tables(): Set<string> {
    return new Set(this.made.keys());
  }

  apply(script: string): void {
    for (const line of script.split('\n')) {
      const del = line.match(/^delete table inet (\S+)/);
      const add = line.match(/^table inet (\S+)/);
      if (del) this.made.delete(del[1]!);
      else if (add) this.made.set(add[1]!, script);
    }
  }

  list(table: string): string | undefined {
    return this.made.get(table);
  }
}

/** Tagged policy rules and route tables (`ip rule` / `ip route` with a protocol), per family flag. */
export class IpRoutingModel {
  readonly rules: {
    family: string;
    priority: number;
    fwmark: string;
    fwmask?: string;
    table: string;
    protocol: string;
  }[] = [];
  readonly routeTables: { family: string; table: string; protocol: string }[] = [];
  private nextPref = 32000;

  /** `ip [-N] [-j] -4|-6 rule|route ...`; undefined when not a command this model knows. */
  answer(args: readonly string[]): { stdout?: string } | undefined {
    const a = args.filter((x) => x !== '-N' && x !== '-j');
    const [family, what, verb] = a;
    if (family !== '-4' && family !== '-6') return undefined;
    const opt = (name: string) => a[a.indexOf(name) + 1] ?? '';
    if (what === 'rule' && verb === 'add') {
      const pref = a.includes('pref') ? Number(opt('pref')) : this.nextPref--;
      const [fwmark = '', fwmask] = opt('fwmark').split('/');
      const rule = { family, priority: pref, fwmark, table: opt('lookup'), protocol: opt('protocol') };
      this.rules.push(fwmask === undefined ? rule : { ...rule, fwmask });
    } else if (what === 'rule' && verb === 'del') {
      const i = this.rules.findIndex((r) => r.family === family && r.priority === Number(opt('pref')));
      if (i >= 0) this.rules.splice(i, 1);
    } else if (what === 'rule' && verb === 'show') {
      return { stdout: JSON.stringify(this.rules.filter((r) => r.family === family).map(({ family: _, ...r }) => r)) };
    } else if (what === 'route' && (verb === 'replace' || verb === 'add')) {
      const t = { family, table: opt('table'), protocol: opt('proto') };
      if (!this.routeTables.some((x) => x.family === family && x.table === t.table)) this.routeTables.push(t);
    } else if (what === 'route' && verb === 'flush') {
      const i = this.routeTables.findIndex((x) => x.family === family && x.table === opt('table'));
      if (i >= 0) this.routeTables.splice(i, 1);
    } else if (what === 'route' && verb === 'show') {
      const mine = this.routeTables.filter((x) => x.family === family && x.protocol === opt('proto'));
      return { stdout: JSON.stringify(mine.map((x) => ({ table: x.table, protocol: x.protocol }))) };
    } else return undefined;
    return {};
  }
}

export interface FakeSystem {
  ipt: Record<'iptables' | 'ip6tables', IptablesModel>;
  nft: NftModel;
  ip: IpRoutingModel;
  sysctl: Map<string, string>;
}

/** Wire the models into `runner`: ip rule/route, iptables(-save|-restore), ip6tables(...), nft list/-f, sysctl. */
export function fakeSystem(runner: FakeRunner): FakeSystem {
  const sys: FakeSystem = {
    ipt: { iptables: new IptablesModel(), ip6tables: new IptablesModel() },
    nft: new NftModel(),
    ip: new IpRoutingModel(),
    sysctl: new Map([
      ['net.ipv4.ip_forward', '0'],
      ['net.ipv6.conf.all.forwarding', '0'],
    ]),
  };
  const family = (c: FakeCall) => sys.ipt[c.tool.startsWith('ip6') ? 'ip6tables' : 'iptables'];
  runner.on('ip', (c) => sys.ip.answer(c.args) ?? {});
  runner
    .on('iptables-save', (c) => ({ stdout: family(c).save(c.args[1]!) }))
    .on('ip6tables-save', (c) => ({ stdout: family(c).save(c.args[1]!) }))
    .on('iptables-restore', (c) => family(c).restore(c.input ?? ''))
    .on('ip6tables-restore', (c) => family(c).restore(c.input ?? ''))
    .on('nft list tables', () => ({ stdout: [...sys.nft.tables].map((t) => `table inet ${t}\n`).join('') }))
    .on('nft -f -', (c) => {
      sys.nft.apply(c.input ?? '');
      return {};
    })
    .on('sysctl -n', (c) => ({ stdout: `${sys.sysctl.get(c.args[1]!) ?? ''}\n` }))
    .on('sysctl', (c) => {
      const [key, value] = (c.args.at(-1) ?? '').split('=');
      if (key && value !== undefined) sys.sysctl.set(key, value);
      return {};
    });
  return sys;
}

interface FakeLink {
  ifname: string;
  flags: string[];
  master?: string;
  addr_info: { family: string; local: string; prefixlen: number }[];
}

/** Interfaces of the root namespace as `ip link add/del/set` and `ip addr add/del` leave them. */
export class LinkModel {
  readonly links = new Map<string, FakeLink>();

  /** `ip ...` (root namespace only); undefined when not a command this model knows. */
  answer(args: readonly string[]): { status?: number; stdout?: string; stderr?: string } | undefined {
    const a = args.filter((x) => x !== '-j' && x !== '-d' && !/^-[46]$/.test(x));
    const dev = a[a.indexOf('dev') + 1] ?? '';
    const add = (name: string) => this.links.set(name, { ifname: name, flags: [], addr_info: [] });
    if (a[0] === 'link' && a[1] === 'add') {
      add(a[2]!);
      if (a.includes('peer')) add(a[a.indexOf('name') + 1]!);
    } else if (a[0] === 'link' && a[1] === 'del') this.links.delete(a[2]!);
    else if (a[0] === 'link' && a[1] === 'set') {
      const l = this.links.get(dev);
      if (!l) return { status: 1, stderr: `Cannot find device "${dev}"` };
      if (a.includes('up')) l.flags = [...new Set([...l.flags, 'UP'])];
      if (a.includes('down')) l.flags = l.flags.filter((f) => f !== 'UP');
      if (a.includes('master')) l.master = a[a.indexOf('master') + 1]!;
      if (a.includes('nomaster')) delete l.master;
    } else if (a[0] === 'addr' && (a[1] === 'add' || a[1] === 'del')) {
      const l = this.links.get(dev);
      if (!l) return { status: 1, stderr: `Cannot find device "${dev}"` };
      const [local = '', len] = a[2]!.split('/');
      l.addr_info = l.addr_info.filter((x) => x.local !== local);
      if (a[1] === 'add')
        l.addr_info.push({ family: local.includes(':') ? 'inet6' : 'inet', local, prefixlen: Number(len) });
    } else if (a[0] === 'addr' && a[1] === 'show') {
      const l = this.links.get(dev);
      return l ? { stdout: JSON.stringify([l]) } : { status: 1, stderr: `Device "${dev}" does not exist.` };
    } else return undefined;
    return {};
  }

  names(): string[] {
    return [...this.links.keys()];
  }
}
