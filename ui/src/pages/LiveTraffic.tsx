import type { ComponentChildren } from 'preact';
import { fmtAge, fmtBytes, type Closed, type Conn, type Traffic } from '../api';
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
function routeLabel(c: Pick<Conn, 'node' | 'path'>): string {
  return [c.node, ...(c.path ?? [])].map(outboundLabel).join(' → ');
}

const rateText = (r: { up: number; down: number } | undefined) =>
  r ? `▲ ${fmtBytes(r.up)}/s ▼ ${fmtBytes(r.down)}/s` : '–';

function outcomeLabel(o: string): string {
  return OUTCOMES.includes(o) ? t(`live.outcome.${o}` as Key) : o;
}

function fmtDuration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/** One cell of a flow row: `data-col` names the column, `data-label` heads the cell when narrow screens stack a row. */
function Cell(p: { col: string; label: Key; cls?: string; title?: string; children: ComponentChildren }) {
  return (
    <td data-col={p.col} data-label={t(p.label)} class={p.cls} title={p.title}>
      {p.children}
    </td>
  );
}

/** The rule and the route of a flow (open or closed); `unrouted` while it has no outbound. */
function RouteCells({ flow, unrouted }: { flow: Pick<Conn, 'rule' | 'node' | 'path'>; unrouted: ComponentChildren }) {
  return (
    <>
      <Cell col="rule" label="live.rule">
        {ruleLabel(flow.rule)}
      </Cell>
      <Cell col="node" label="live.node">
        {flow.node ? routeLabel(flow) : unrouted}
      </Cell>
    </>
  );
}

/** Bytes up and down of a flow. */
function ByteCells({ flow }: { flow: { up: number; down: number } }) {
  return (
    <>
      <Cell col="up" label="live.upCol" cls="num">
        {fmtBytes(flow.up)}
      </Cell>
      <Cell col="down" label="live.downCol" cls="num">
        {fmtBytes(flow.down)}
      </Cell>
    </>
  );
}

/** The cells of an open connection's row, before its actions. */
export function ConnCells({ c, now }: { c: Conn; now: number }) {
  return (
    <>
      <Cell col="src" label="live.src" cls="mono">
        {c.src}
      </Cell>
      <Cell col="dst" label="live.dst" cls="mono">
        {c.dst}
      </Cell>
      <Cell col="domain" label="live.domain">
        {c.domain || <span class="muted">–</span>}
      </Cell>
      <RouteCells flow={c} unrouted={<span class="muted">{t('live.connecting')}</span>} />
      <Cell col="rate" label="live.rate" cls="num">
        {rateText(c.rate)}
      </Cell>
      <ByteCells flow={c} />
      <Cell col="age" label="live.age" cls="num">
        {fmtAge(c.startedAt, now)}
      </Cell>
    </>
  );
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
                  <Cell col="src" label="live.src" cls="mono">
                    {c.src}
                  </Cell>
                  <Cell col="dst" label="live.dst" cls="mono">
                    {c.domain ? `${c.domain} (${c.dst})` : c.dst}
                  </Cell>
                  <RouteCells flow={c} unrouted={t('common.none')} />
                  <ByteCells flow={c} />
                  <Cell col="dur" label="live.duration" cls="num">
                    {fmtDuration(c.durMs)}
                  </Cell>
                  <Cell col="outcome" label="live.outcome" title={c.error}>
                    {outcomeLabel(c.outcome)}
                  </Cell>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Section>
  );
}
