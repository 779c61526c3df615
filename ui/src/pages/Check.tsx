import { useEffect, useState } from 'preact/hooks';
import { post, type CheckResult, type Probe } from '../api';
import type { AppCtx } from '../main';
import { Field, FormStatus, splitLines, useAction } from '../ui';

export function Check({ state }: AppCtx) {
  const a = useAction((f) => f === 'targets');
  const [targets, setTargets] = useState(state.checkTargets.join('\n'));
  const [touched, setTouched] = useState(false);
  const [results, setResults] = useState<CheckResult[] | null>(null);
  useEffect(() => {
    if (!touched) setTargets(state.checkTargets.join('\n'));
  }, [state, touched]);

  const run = async (e: Event) => {
    e.preventDefault();
    const list = splitLines(targets.replace(/,/g, '\n'));
    const body = touched && list.join('\n') !== state.checkTargets.join('\n') ? { targets: list } : {};
    setResults(null);
    const r = await a.run(
      () => post<{ results: CheckResult[] }>('/api/check', body),
      (r) => {
        const good = r.results.filter((x) => x.node.ok).length;
        return `Check done: ${good} of ${r.results.length} reachable through ${state.tcpNode === 'direct' ? 'the direct path' : 'the node'}.`;
      },
    );
    if (r) setResults(r.results);
  };

  return (
    <form class="card" onSubmit={run} aria-labelledby="check-h" noValidate>
      <h2 id="check-h">Reachability</h2>
      <p class="hint">
        Connects to each target directly from the gateway and through the TCP node (<code>{state.tcpNode}</code>).
      </p>
      <Field a={a} multiline rows={3} name="targets" label="Targets" hint="host:port, one per line. The saved list is on the Settings page." value={targets} onInput={(v) => { setTargets(v); setTouched(true); }} spellcheck={false} />
      <div class="actions">
        <button type="submit" class="primary" disabled={a.busy}>{a.busy ? 'Checking…' : 'Run check'}</button>
      </div>
      <FormStatus a={a} />
      {results ? (
        <div class="table-wrap">
          <table class="check">
            <caption class="sr-only">Check results</caption>
            <thead>
              <tr>
                <th scope="col">Target</th>
                <th scope="col">Direct</th>
                <th scope="col">Through node</th>
              </tr>
            </thead>
            <tbody>
              {results.map((r) => (
                <tr key={r.target} data-target={r.target}>
                  <th scope="row" class="mono">{r.target}</th>
                  <td data-label="Direct" class="probe-direct"><ProbeOut p={r.direct} /></td>
                  <td data-label={`Through ${r.node.node ?? 'node'}`} class="probe-node">
                    <span>
                      <ProbeOut p={r.node} />
                      {r.node.node ? <span class="muted"> via {r.node.node}</span> : null}
                    </span>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </form>
  );
}

function ProbeOut({ p }: { p: Probe }) {
  return p.ok ? (
    <span class="good">✓ ok{p.ms !== undefined ? ` · ${p.ms} ms` : ''}</span>
  ) : (
    <span class="bad">✗ {p.error ?? 'failed'}</span>
  );
}
