import { useEffect, useState } from 'preact/hooks';
import { post, type CheckResult, type Probe } from '../api';
import type { AppCtx } from '../ctx';
import { t } from '../i18n';
import { ErrorText, Field, FormStatus, outboundLabel, splitLines, useAction } from '../ui';

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
        return t(state.tcpNode === 'direct' ? 'check.doneDirect' : 'check.doneNode', { good, n: r.results.length });
      },
    );
    if (r) setResults(r.results);
  };

  return (
    <form class="card" onSubmit={run} aria-labelledby="check-h" noValidate>
      <h2 id="check-h">{t('check.title')}</h2>
      <p class="hint">{t('check.hint', { node: outboundLabel(state.tcpNode) })}</p>
      <Field
        a={a}
        multiline
        rows={3}
        name="targets"
        label={t('check.targets')}
        hint={t('check.targetsHint')}
        value={targets}
        onInput={(v) => {
          setTargets(v);
          setTouched(true);
        }}
        spellcheck={false}
      />
      <div class="actions">
        <button type="submit" class="primary" disabled={a.busy}>
          {a.busy ? t('check.running') : t('check.run')}
        </button>
      </div>
      <FormStatus a={a} />
      {results ? (
        <div class="table-wrap">
          <table class="check">
            <caption class="sr-only">{t('check.caption')}</caption>
            <thead>
              <tr>
                <th scope="col">{t('check.target')}</th>
                <th scope="col">{t('check.direct')}</th>
                <th scope="col">{t('check.viaNode')}</th>
              </tr>
            </thead>
            <tbody>
              {results.map((r) => (
                <tr key={r.target} data-target={r.target}>
                  <th scope="row" class="mono">
                    {r.target}
                  </th>
                  <td data-label={t('check.direct')} class="probe-direct">
                    <ProbeOut p={r.direct} />
                  </td>
                  <td data-label={t('check.viaNode')} class="probe-node">
                    <span>
                      <ProbeOut p={r.node} />
                      {r.node.node ? (
                        <span class="muted">
                          {' '}
                          ·{' '}
                          {t('check.via', {
                            node: outboundLabel(r.node.node) + (r.node.member ? ` → ${r.node.member}` : ''),
                          })}
                        </span>
                      ) : null}
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
    <span class="good">
      ✓ {t('check.ok')}
      {p.ms !== undefined ? ` · ${p.ms} ms` : ''}
    </span>
  ) : (
    <span class="bad">
      ✗ {p.error ? <ErrorText p={{ field: '', message: p.error, status: 0 }} /> : t('check.failed')}
    </span>
  );
}
