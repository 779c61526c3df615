import { useEffect, useState } from 'preact/hooks';
import { del, fmtBytes, type Closed, type Conn, type Traffic } from '../api';
import { t, type Key } from '../i18n';
import { FormStatus, Section, useAction } from '../ui';
import { ConnCells, NodeTotals, RecentlyClosed, TableHead, ruleLabel } from './LiveTraffic';

export interface Sample {
  t: number;
  up: number;
  down: number;
}

export function Live({
  conns,
  samples,
  live,
  traffic,
  closed,
}: {
  conns: Conn[];
  samples: Sample[];
  live: 'connecting' | 'open' | 'closed';
  traffic: Traffic | null;
  closed: Closed[];
}) {
  const a = useAction(() => false);
  const [now, setNow] = useState(Date.now());
  const [filter, setFilter] = useState('');
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  const close = (c: Conn) =>
    a.run(
      () => del(`/api/connections/${encodeURIComponent(c.id)}`),
      () => t('live.closed', { src: c.src, dst: c.domain || c.dst }),
    );
  const f = filter.trim().toLowerCase();
  const shown = f
    ? conns.filter((c) =>
        [c.src, c.dst, c.domain ?? '', c.node, ...(c.path ?? []), ruleLabel(c.rule)].some((x) =>
          x.toLowerCase().includes(f),
        ),
      )
    : conns;
  const last = samples[samples.length - 1];

  return (
    <>
      <Section title={t('live.throughput')} id="throughput">
        <div class="tp-head">
          <span class="legend up" data-bps={last?.up}>
            ▲ {t('live.up')} {last ? `${fmtBytes(last.up)}/s` : '–'}
          </span>
          <span class="legend down" data-bps={last?.down}>
            ▼ {t('live.down')} {last ? `${fmtBytes(last.down)}/s` : '–'}
          </span>
          <span class={`live-dot ${live}`} title={t('live.stateTitle', { state: t(`live.state.${live}` as Key) })}>
            {t(`live.state.${live}` as Key)}
          </span>
        </div>
        <Sparkline samples={samples} />
      </Section>
      <Section title={t('live.conns', { n: conns.length })} id="connections">
        <div class="field filter">
          <label for="f-filter">{t('live.filter')}</label>
          <input
            id="f-filter"
            type="search"
            value={filter}
            placeholder={t('live.filterPlaceholder')}
            onInput={(e) => setFilter(e.currentTarget.value)}
          />
        </div>
        <div class="table-wrap">
          <table class="conns">
            <TableHead
              cols={[
                'live.src',
                'live.dst',
                'live.domain',
                'live.rule',
                'live.node',
                ['live.rate', 'num'],
                ['live.upCol', 'num'],
                ['live.downCol', 'num'],
                ['live.age', 'num'],
                ['live.actions', 'sr'],
              ]}
            />
            <tbody>
              {shown.length === 0 ? (
                <tr>
                  <td colSpan={10} class="empty">
                    {conns.length ? t('live.noMatch') : t('live.none')}
                  </td>
                </tr>
              ) : (
                shown.map((c) => (
                  <tr key={c.id} data-id={c.id}>
                    <ConnCells c={c} now={now} />
                    <td class="act">
                      <button
                        type="button"
                        class="small danger"
                        aria-label={t('live.closeLabel', { src: c.src, dst: c.domain || c.dst })}
                        onClick={() => close(c)}
                      >
                        {t('live.close')}
                      </button>
                    </td>
                  </tr>
                ))
              )}
            </tbody>
          </table>
        </div>
        <FormStatus a={a} />
      </Section>
      <NodeTotals traffic={traffic} />
      <RecentlyClosed closed={closed} />
    </>
  );
}

const W = 600;
const H = 120;

/** Up and down bytes/s of the last 60 samples as two SVG lines (no inline styles: CSP). */
function Sparkline({ samples }: { samples: Sample[] }) {
  const max = Math.max(1024, ...samples.map((s) => Math.max(s.up, s.down)));
  const n = 60;
  const pts = (k: 'up' | 'down') =>
    samples
      .map((s, i) => {
        const x = ((n - samples.length + i) / (n - 1)) * W;
        const y = H - 4 - (s[k] / max) * (H - 12);
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      })
      .join(' ');
  const last = samples[samples.length - 1];
  const label = last
    ? t('live.sparkLabel', { n: samples.length, up: fmtBytes(last.up), down: fmtBytes(last.down), peak: fmtBytes(max) })
    : t('live.sparkEmpty');
  return (
    <figure class="spark">
      <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-label={label}>
        <line x1="0" y1={H - 4} x2={W} y2={H - 4} class="axis" />
        <line x1="0" y1="8" x2={W} y2="8" class="grid" />
        {samples.length > 1 ? <polyline points={pts('down')} class="down" /> : null}
        {samples.length > 1 ? <polyline points={pts('up')} class="up" /> : null}
      </svg>
      <figcaption class="muted">{t('live.sparkCaption', { max: fmtBytes(max) })}</figcaption>
    </figure>
  );
}
