// Summary of a V8 .cpuprofile (node --cpu-prof): self time per function and per area.

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** Sampled wall time, ms. */
  totalMs: number;
  /** Time not idle, ms. */
  busyMs: number;
  areas: Array<{ area: string; ms: number }>;
  top: Array<{ fn: string; where: string; ms: number }>;
}

const NATIVE = 'native functions called from JS';
const TRANPROXY = 'tranproxy JS';
const GC = 'garbage collector';

function area(f: CallFrame): string {
  if (f.functionName === '(idle)') return 'idle (waiting in epoll)';
  if (f.functionName === '(garbage collector)') return GC;
  if (f.functionName === '(program)') return 'native: libuv/V8/syscalls outside JS frames';
  if (f.url.includes('/dist/') || f.url.includes('/src/')) return TRANPROXY;
  if (f.url.startsWith('node:')) return 'Node.js core JS (net, stream, …)';
  if (f.url === '') return NATIVE;
  return 'other JS';
}

function where(f: CallFrame): string {
  if (!f.url) return '';
  const short = f.url.replace(/^file:\/\/.*?\/dist\//, 'dist/').replace(/^file:\/\//, '');
  return `${short}:${f.lineNumber + 1}`;
}

export function summarizeProfile(json: string, topN = 12): ProfileSummary {
  const p = JSON.parse(json) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  // timeDeltas[i] is the time between sample i-1 and i; attribute it to sample i's node.
  for (let i = 0; i < p.samples.length; i++)
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  const areas = new Map<string, number>();
  const fns = new Map<string, { fn: string; where: string; ms: number }>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    const ms = us / 1000;
    total += ms;
    if (f.functionName === '(idle)') idle += ms;
    const a = area(f);
    areas.set(a, (areas.get(a) ?? 0) + ms);
    const fn = f.functionName || '(anonymous)';
    const w = where(f);
    const key = `${fn}@${w}`;
    const e = fns.get(key) ?? { fn, where: w, ms: 0 };
    e.ms += ms;
    fns.set(key, e);
  }
  return {
    totalMs: total,
    busyMs: total - idle,
    areas: [...areas].map(([a, ms]) => ({ area: a, ms })).sort((x, y) => y.ms - x.ms),
    top: [...fns.values()]
      .filter((e) => e.fn !== '(idle)')
      .sort((x, y) => y.ms - x.ms)
      .slice(0, topN),
  };
}

export function renderProfile(title: string, s: ProfileSummary): string[] {
  const pct = (ms: number): string => `${((100 * ms) / s.busyMs).toFixed(1)}%`;
  const share = (name: string): number => s.areas.find((a) => a.area === name)?.ms ?? 0;
  const natives = s.top
    .filter((t) => !t.where && !t.fn.startsWith('('))
    .slice(0, 4)
    .map((t) => `\`${t.fn}\``);
  const out = [
    `**${title}** — ${(s.totalMs / 1000).toFixed(1)} s sampled, ${(s.busyMs / 1000).toFixed(1)} s busy. ` +
      `${pct(share(NATIVE))} of the busy time is in native bindings called from JS — system calls (${natives.join(', ')}) — ` +
      `${pct(share(TRANPROXY))} in tranproxy's own JS, ${pct(share(GC))} in the garbage collector.`,
    '',
  ];
  out.push('| area | share |', '|---|---:|');
  for (const a of s.areas.filter((x) => !x.area.startsWith('idle'))) out.push(`| ${a.area} | ${pct(a.ms)} |`);
  out.push('', '| function (self time) | where | share |', '|---|---|---:|');
  for (const t of s.top) out.push(`| \`${t.fn}\` | ${t.where ? `\`${t.where}\`` : ''} | ${pct(t.ms)} |`);
  out.push('');
  return out;
}
