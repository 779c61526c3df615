// Results as data, and their rendering as Markdown (bench/RESULTS.md and the console).
import { fmtNum, median } from './parse.js';

export interface Variant {
  key: string;
  label: string;
  /** How it was set up, one line. */
  detail: string;
}

export interface Metric {
  key: string;
  /** Column header, with unit. */
  label: string;
  better: 'higher' | 'lower';
  /** variant key → round → value (a failed round has none). */
  values: Map<string, Map<number, number>>;
}

export interface CaseResult {
  id: string;
  title: string;
  /** Markdown lines describing what was measured and how. */
  method: string[];
  variants: Variant[];
  metrics: Metric[];
  /** The variant the ratios are for (tranproxy) and the anchors it is compared with. */
  subject: string;
  anchors: string[];
  notes: string[];
  errors: string[];
}

export function newCase(
  c: Omit<CaseResult, 'metrics' | 'notes' | 'errors'>,
  metrics: Array<Omit<Metric, 'values'>>,
): CaseResult {
  return { ...c, metrics: metrics.map((m) => ({ ...m, values: new Map() })), notes: [], errors: [] };
}

export function record(c: CaseResult, metric: string, variant: string, round: number, value: number): void {
  const m = c.metrics.find((x) => x.key === metric);
  if (!m) throw new Error(`no metric ${metric} in case ${c.id}`);
  if (!Number.isFinite(value)) return;
  const byRound = m.values.get(variant) ?? new Map<number, number>();
  byRound.set(round, value);
  m.values.set(variant, byRound);
}

/** The values of one variant, in round order. */
export function valuesOf(m: Metric, variant: string): number[] {
  return [...(m.values.get(variant) ?? new Map<number, number>())].sort((a, b) => a[0] - b[0]).map(([, v]) => v);
}

export function medianOf(c: CaseResult, metric: string, variant: string): number {
  const m = c.metrics.find((x) => x.key === metric);
  return m ? median(valuesOf(m, variant)) : NaN;
}

/** Median over the rounds where both ran of a/b, each pair measured minutes apart at most. */
export function pairedRatio(m: Metric, a: string, b: string): number {
  const va = m.values.get(a);
  const vb = m.values.get(b);
  if (!va || !vb) return NaN;
  const ratios = [...va].filter(([r]) => vb.has(r) && vb.get(r)! !== 0).map(([r, v]) => v / vb.get(r)!);
  return median(ratios);
}

function cell(xs: number[]): string {
  if (xs.length === 0) return '–';
  const m = median(xs);
  if (xs.length === 1) return `**${fmtNum(m)}**`;
  return `**${fmtNum(m)}** (${fmtNum(Math.min(...xs))}–${fmtNum(Math.max(...xs))})`;
}

function ratio(a: number, b: number, paired: number): string {
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '–';
  return `${(a / b).toFixed(2)}×${Number.isFinite(paired) ? ` (${paired.toFixed(2)}×)` : ''}`;
}

/** Metrics that have a value for at least one variant. */
function present(c: CaseResult): Metric[] {
  return c.metrics.filter((m) => [...m.values.values()].some((v) => v.size > 0));
}

export function renderCase(c: CaseResult): string {
  const out: string[] = [`## ${c.title}`, ''];
  out.push(...c.method, '');
  const metrics = present(c);
  if (metrics.length > 0) {
    out.push(`| | ${metrics.map((m) => `${m.label}${m.better === 'lower' ? ' ↓' : ' ↑'}`).join(' | ')} |`);
    out.push(`|---|${metrics.map(() => '---:').join('|')}|`);
    for (const v of c.variants) {
      out.push(`| ${v.label} | ${metrics.map((m) => cell(valuesOf(m, v.key))).join(' | ')} |`);
    }
    out.push('', 'Median of the rounds in bold, (min–max) after it; ↑ higher is better, ↓ lower is better.', '');
    const anchors = c.anchors.filter((a) => metrics.some((m) => (m.values.get(a)?.size ?? 0) > 0));
    if (anchors.length > 0) {
      const subj = c.variants.find((v) => v.key === c.subject)?.label ?? c.subject;
      out.push(
        `Ratios, ${subj} ÷ anchor: ratio of the medians, and in parentheses the median of the per-round ratios (each pair run back to back):`,
        '',
      );
      out.push(`| ${subj} ÷ | ${metrics.map((m) => m.label).join(' | ')} |`);
      out.push(`|---|${metrics.map(() => '---:').join('|')}|`);
      for (const a of anchors) {
        const label = c.variants.find((v) => v.key === a)?.label ?? a;
        out.push(
          `| ${label} | ${metrics.map((m) => ratio(median(valuesOf(m, c.subject)), median(valuesOf(m, a)), pairedRatio(m, c.subject, a))).join(' | ')} |`,
        );
      }
      out.push('');
    }
    out.push('<details><summary>Set-up of each variant and per-round values</summary>', '');
    for (const v of c.variants) out.push(`- **${v.label}**: ${v.detail}`);
    out.push('');
    for (const m of metrics) {
      const rounds = c.variants
        .filter((v) => (m.values.get(v.key)?.size ?? 0) > 0)
        .map(
          (v) =>
            `${v.label} ${[...m.values.get(v.key)!]
              .sort((x, y) => x[0] - y[0])
              .map(([r, x]) => `r${r} ${fmtNum(x)}`)
              .join(', ')}`,
        );
      out.push(`- ${m.label}: ${rounds.join('; ')}`);
    }
    out.push('', '</details>', '');
  }
  for (const n of c.notes) out.push(`- ${n}`);
  if (c.notes.length) out.push('');
  if (c.errors.length) {
    out.push('**Failures:**', '');
    for (const e of c.errors) out.push(`- ${e.split('\n')[0]}`);
    out.push('');
  }
  return out.join('\n');
}

/**
 * Adds variant `key`: per metric, the values of whichever of `from` has the better median
 * (e.g. "best HAProxy" of its default-threads and splice-auto runs), so ratios can be taken
 * against the anchor at its best. Its detail says which one each metric came from.
 */
export function addBestOf(c: CaseResult, key: string, label: string, from: string[]): void {
  const picked: string[] = [];
  for (const m of c.metrics) {
    const candidates = from.filter((k) => (m.values.get(k)?.size ?? 0) > 0);
    if (candidates.length === 0) continue;
    const med = (k: string): number => median(valuesOf(m, k));
    const best = candidates.reduce((a, b) => ((m.better === 'higher' ? med(b) > med(a) : med(b) < med(a)) ? b : a));
    m.values.set(key, new Map(m.values.get(best)));
    picked.push(`${m.label}: ${c.variants.find((v) => v.key === best)?.label ?? best}`);
  }
  if (picked.length === 0) return;
  c.variants.push({ key, label, detail: `per metric, the better median of the variants above (${picked.join('; ')})` });
}

/** The generated part of RESULTS.md stands between these; what follows the end marker is hand-written and kept. */
export const GENERATED_BEGIN =
  '<!-- bench/run.ts: generated part begins; a run replaces everything down to the end marker -->';
export const GENERATED_END =
  '<!-- bench/run.ts: generated part ends; hand-written sections below are kept by every run -->';

/**
 * The results file after a run: `generated` between the markers, and whatever the old file had
 * before the begin marker and after the end marker. An old file without both markers (in order)
 * is kept whole below the end marker, so a first run never loses hand-written text.
 */
export function replaceGenerated(old: string | undefined, generated: string): string {
  const block = `${GENERATED_BEGIN}\n${generated.replace(/\n+$/, '')}\n\n${GENERATED_END}\n`;
  if (!old?.trim()) return block;
  const begin = old.indexOf(GENERATED_BEGIN);
  const end = old.indexOf(GENERATED_END);
  if (begin < 0 || end < begin) return `${block}\n${old}`;
  return old.slice(0, begin) + block + old.slice(end + GENERATED_END.length).replace(/^\n/, '');
}
