import { fmtBytes, type Closed, type Conn, type Traffic } from '../api';
import { t, type Key } from '../i18n';
import { Section, outboundLabel } from '../ui';

const OUTCOMES = [
  'eof',
  'idle',
  'head-timeout',
  'client-error',
  'upstream-error',
  'rejected',
  'aborted',
  'connect-failed',
  'rejected-by-rule',
  'client-gone',
];

/** `rules[0]` → "rule 1" (the page numbers rules from 1), `default` → "default". */
export function ruleLabel(rule: string | undefined): string {
  if (!rule) return t('common.none');
  if (rule === 'default') return t('live.ruleDefault');
  const m = /^rules\[(\d+)\]$/.exec(rule);
  return m ? t('live.ruleN', { n: Number(m[1]) + 1 }) : rule;
}

/** The outbound, and through groups the member the flow went through: `auto → hk-1`. */
export function routeLabel(c: Pick<Conn, 'node' | 'path'>): string {
  return [c.node, ...(c.path ?? [])].map(outboundLabel).join(' → ');
}

export const rateText = (r: { up: number; down: number } | undefined) =>
  r ? `▲ ${fmtBytes(r.up)}/s ▼ ${fmtBytes(r.down)}/s` : '–';

function outcomeLabel(o: string): string {
  return OUTCOMES.includes(o) ? t(`live.outcome.${o}` as Key) : o;
}

function fmtDuration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/** A column: its label key, `num` for right-aligned numbers; `sr` names an icon column for screen readers only. */
type Column = Key | [Key, 'num' | 'sr'];

/** The header row of a Live table. */
export function TableHead({ cols }: { cols: Column[] }) {
  return (
    <thead>
      <tr>
        {cols.map((c) => {
          const [key, kind] = typeof c === 'string' ? [c, undefined] : c;
          return (
            <th scope="col" key={key} class={kind === 'num' ? 'num' : undefined}>
              {kind === 'sr' ? <span class="sr-only">{t(key)}</span> : t(key)}
            </th>
          );
        })}
      </tr>
    </thead>
  );
}

/** Bytes up and down per node since the gateway started. */
export function NodeTotals({ traffic }: { traffic: Traffic | null }) {
  const rows = Object.entries(traffic?.byNode ?? {}).sort((a, b) => b[1].up + b[1].down - (a[1].up + a[1].down));
  return (
    <Section title={t('live.nodesTitle')} id="node-totals">
      {traffic ? (
        <p class="muted" id="traffic-total">
          {t('live.totalSince', { up: fmtBytes(traffic.totals.up), down: fmtBytes(traffic.totals.down) })}
        </p>
      ) : null}
      {rows.length === 0 ? (
        <p class="empty">{t('live.nodesNone')}</p>
      ) : (
        <table class="totals">
          <TableHead cols={['live.node', ['live.upCol', 'num'], ['live.downCol', 'num']]} />
          <tbody>
            {rows.map(([node, b]) => (
              <tr key={node} data-node={node}>
                <td>{outboundLabel(node)}</td>
                <td class="num" data-col="up">
                  {fmtBytes(b.up)}
                </td>
                <td class="num" data-col="down">
                  {fmtBytes(b.down)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Section>
  );
}

/** The last closed flows (the gateway keeps 200), newest first. */
export function RecentlyClosed({ closed }: { closed: Closed[] }) {
  return (
    <Section title={t('live.closedTitle', { n: closed.length })} id="closed">
      {closed.length === 0 ? (
        <p class="empty">{t('live.closedNone')}</p>
      ) : (
        <div class="table-wrap">
          <table class="closed-list">
            <TableHead
              cols={[
                'live.src',
                'live.dst',
                'live.rule',
                'live.node',
                ['live.upCol', 'num'],
                ['live.downCol', 'num'],
                ['live.duration', 'num'],
                'live.outcome',
              ]}
            />
            <tbody>
              {closed.map((c) => (
                <tr key={c.id} data-id={c.id}>
                  <td data-col="src" data-label={t('live.src')} class="mono">
                    {c.src}
                  </td>
                  <td data-col="dst" data-label={t('live.dst')} class="mono">
                    {c.domain ? `${c.domain} (${c.dst})` : c.dst}
                  </td>
                  <td data-col="rule" data-label={t('live.rule')}>
                    {ruleLabel(c.rule)}
                  </td>
                  <td data-col="node" data-label={t('live.node')}>
                    {c.node ? routeLabel(c) : t('common.none')}
                  </td>
                  <td data-col="up" data-label={t('live.upCol')} class="num">
                    {fmtBytes(c.up)}
                  </td>
                  <td data-col="down" data-label={t('live.downCol')} class="num">
                    {fmtBytes(c.down)}
                  </td>
                  <td data-col="dur" data-label={t('live.duration')} class="num">
                    {fmtDuration(c.durMs)}
                  </td>
                  <td data-col="outcome" data-label={t('live.outcome')} title={c.error}>
                    {outcomeLabel(c.outcome)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Section>
  );
}
