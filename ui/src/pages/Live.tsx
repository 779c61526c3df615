import { useEffect, useState } from 'preact/hooks';
import { del, fmtAge, fmtBytes, type Conn } from '../api';
import { FormStatus, Section, useAction } from '../ui';

export interface Sample { t: number; up: number; down: number }

export function Live({ conns, samples, live }: { conns: Conn[]; samples: Sample[]; live: 'connecting' | 'open' | 'closed' }) {
  const a = useAction(() => false);
  const [now, setNow] = useState(Date.now());
  const [filter, setFilter] = useState('');
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  const close = (c: Conn) => a.run(() => del(`/api/connections/${encodeURIComponent(c.id)}`), `Closed ${c.src} → ${c.domain || c.dst}.`);
  const f = filter.trim().toLowerCase();
  const shown = f ? conns.filter((c) => [c.src, c.dst, c.domain ?? '', c.node].some((x) => x.toLowerCase().includes(f))) : conns;
  const last = samples[samples.length - 1];

  return (
    <>
      <Section title="Throughput">
        <div class="tp-head">
          <span class="legend up">▲ up {last ? fmtBytes(last.up) + '/s' : '–'}</span>
          <span class="legend down">▼ down {last ? fmtBytes(last.down) + '/s' : '–'}</span>
          <span class={'live-dot ' + live} title={`live updates: ${live}`}>{live === 'open' ? 'live' : live}</span>
        </div>
        <Sparkline samples={samples} />
      </Section>
      <Section title={`Connections (${conns.length})`} id="connections">
        <div class="field filter">
          <label for="f-filter">Filter</label>
          <input id="f-filter" type="search" value={filter} placeholder="address, domain or node" onInput={(e) => setFilter(e.currentTarget.value)} />
        </div>
        <div class="table-wrap">
          <table class="conns">
            <thead>
              <tr>
                <th scope="col">Source</th>
                <th scope="col">Destination</th>
                <th scope="col">Domain</th>
                <th scope="col">Node</th>
                <th scope="col" class="num">Up</th>
                <th scope="col" class="num">Down</th>
                <th scope="col" class="num">Age</th>
                <th scope="col"><span class="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {shown.length === 0 ? (
                <tr><td colSpan={8} class="empty">{conns.length ? 'No connection matches the filter.' : 'No active connections.'}</td></tr>
              ) : (
                shown.map((c) => (
                  <tr key={c.id} data-id={c.id}>
                    <td data-label="Source" class="mono">{c.src}</td>
                    <td data-label="Destination" class="mono">{c.dst}</td>
                    <td data-label="Domain">{c.domain || <span class="muted">–</span>}</td>
                    <td data-label="Node">{c.node || <span class="muted">connecting</span>}</td>
                    <td data-label="Up" class="num">{fmtBytes(c.up)}</td>
                    <td data-label="Down" class="num">{fmtBytes(c.down)}</td>
                    <td data-label="Age" class="num">{fmtAge(c.startedAt, now)}</td>
                    <td class="act"><button type="button" class="small danger" aria-label={`Close connection from ${c.src} to ${c.domain || c.dst}`} onClick={() => close(c)}>Close</button></td>
                  </tr>
                ))
              )}
            </tbody>
          </table>
        </div>
        <FormStatus a={a} />
      </Section>
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
    ? `Throughput over the last ${samples.length} seconds; now ${fmtBytes(last.up)}/s up, ${fmtBytes(last.down)}/s down; peak ${fmtBytes(max)}/s.`
    : 'Throughput: no data yet.';
  return (
    <figure class="spark">
      <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-label={label}>
        <line x1="0" y1={H - 4} x2={W} y2={H - 4} class="axis" />
        <line x1="0" y1="8" x2={W} y2="8" class="grid" />
        {samples.length > 1 ? <polyline points={pts('down')} class="down" /> : null}
        {samples.length > 1 ? <polyline points={pts('up')} class="up" /> : null}
      </svg>
      <figcaption class="muted">last 60 s · scale {fmtBytes(max)}/s</figcaption>
    </figure>
  );
}
