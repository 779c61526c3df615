import { useEffect, useState } from 'preact/hooks';
import { put, type Rule, type State } from '../api';
import type { AppCtx } from '../ctx';
import { t, type Key } from '../i18n';
import { ErrorText, FieldErr, FormStatus, idOf, outboundLabel, rich, useAction, type Problem } from '../ui';

const MATCHERS = [
  'domain',
  'domain-suffix',
  'domain-keyword',
  'domain-list',
  'cidr',
  'port',
  'source-cidr',
  'network',
] as const;
const PLACEHOLDER: Record<string, string> = {
  domain: 'www.example.com',
  'domain-suffix': 'example.com, example.org',
  'domain-keyword': 'ads',
  'domain-list': 'lists/ads.txt',
  cidr: '192.168.0.0/16',
  port: '25, 8000-9000',
  'source-cidr': '10.0.0.5/32',
  network: 'tcp',
};

const NOT_ARRAY = 'expected a JSON array of rules';
/** A JSON text that does not parse, or is not a list, as a problem shown in plain words. */
const jsonProblem = (err: unknown): Problem => ({ field: 'rules', message: (err as Error).message, status: -1 });
const matcherLabel = (k: string) => ((MATCHERS as readonly string[]).includes(k) ? t(`matcher.${k}` as Key) : k);

interface Row {
  matchers: { key: string; value: string }[];
  outbound: string;
  extra: Record<string, unknown>;
}

const asText = (v: unknown) => (Array.isArray(v) ? v.join(', ') : v === undefined || v === null ? '' : String(v));
function toRows(rules: Rule[]): Row[] {
  return rules.map((r) => {
    const matchers: Row['matchers'] = [];
    const extra: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(r)) {
      if (k === 'outbound') continue;
      if ((MATCHERS as readonly string[]).includes(k)) matchers.push({ key: k, value: asText(v) });
      else extra[k] = v;
    }
    return { matchers, outbound: r.outbound, extra };
  });
}
function toRules(rows: Row[]): Rule[] {
  return rows.map((row) => {
    const r: Record<string, unknown> = { ...row.extra };
    for (const m of row.matchers) {
      const items = m.value.split(/[\s,]+/).filter(Boolean);
      r[m.key] = m.key === 'port' ? items.map((x) => (/^\d+$/.test(x) ? Number(x) : x)) : items;
    }
    r.outbound = row.outbound;
    return r as Rule;
  });
}

export function Rules({ state, setState }: AppCtx) {
  const [rows, setRows] = useState<Row[]>(() => toRows(state.rules));
  const [json, setJson] = useState<string | null>(null);
  // Which error fields have an input on the page (the rest go to the form-level message).
  const a = useAction((f) => {
    if (json !== null) return f === 'rules' || f.startsWith('rules[');
    if (f === 'rules') return true;
    const m = /^rules\[(\d+)\](?:\.(.+))?$/.exec(f);
    const row = m ? rows[Number(m[1])] : undefined;
    if (!m || !row) return false;
    return !m[2] || m[2] === 'outbound' || row.matchers.some((x) => x.key === m[2]);
  });
  const [dirty, setDirty] = useState(false);
  const [jsonError, setJsonError] = useState<Problem | null>(null);
  useEffect(() => {
    if (!dirty) setRows(toRows(state.rules));
  }, [state, dirty]);

  const edit = (fn: (rs: Row[]) => Row[]) => {
    setRows((rs) => fn(rs.map((r) => ({ ...r, matchers: r.matchers.map((m) => ({ ...m })) }))));
    setDirty(true);
  };
  const outbounds = ['direct', 'reject', ...state.nodes.map((n) => n.name)];

  const save = async (e: Event) => {
    e.preventDefault();
    let rules: Rule[];
    if (json !== null) {
      try {
        const parsed: unknown = JSON.parse(json);
        if (!Array.isArray(parsed)) throw new Error(NOT_ARRAY);
        rules = parsed as Rule[];
        setJsonError(null);
      } catch (err) {
        setJsonError(jsonProblem(err));
        return;
      }
    } else {
      rules = toRules(rows);
    }
    const r = await a.run(
      () => put<State>('/api/rules', { rules }),
      () => t('rules.saved'),
    );
    if (r) {
      setState(r);
      setDirty(false);
      setRows(toRows(r.rules));
      if (json !== null) setJson(JSON.stringify(r.rules, null, 2));
    }
  };

  const switchMode = () => {
    a.clear();
    setJsonError(null);
    if (json === null) {
      setJson(JSON.stringify(toRules(rows), null, 2));
    } else {
      try {
        const parsed = JSON.parse(json) as Rule[];
        if (!Array.isArray(parsed)) throw new Error(NOT_ARRAY);
        setRows(toRows(parsed));
        setJson(null);
      } catch (err) {
        setJsonError(jsonProblem(err));
      }
    }
  };

  const allRuleErrors = a.fieldErrors.length > 0;

  return (
    <form class="card" onSubmit={save} aria-labelledby="rules-h" noValidate>
      <div class="card-head">
        <h2 id="rules-h">{t('rules.title')}</h2>
        <button type="button" class="ghost" onClick={switchMode} aria-pressed={json !== null ? 'true' : 'false'}>
          {t(json === null ? 'rules.asJson' : 'rules.asTable')}
        </button>
      </div>
      <p class="hint">
        {rich('rules.hint', {
          settings: <a href="#/settings">{t('nav.settings')}</a>,
          node: <code>{outboundLabel(state.tcpNode)}</code>,
        })}
      </p>
      {json !== null ? (
        <div class={`field${allRuleErrors || jsonError ? ' invalid' : ''}`}>
          <label for={idOf('rules')}>{t('rules.jsonLabel')}</label>
          <textarea
            id={idOf('rules')}
            name="rules"
            rows={16}
            class="mono"
            spellcheck={false}
            value={json}
            aria-describedby={`${idOf('rules')}-err`}
            aria-invalid={allRuleErrors || jsonError ? 'true' : undefined}
            onInput={(e) => {
              setJson(e.currentTarget.value);
              setDirty(true);
            }}
          />
          <div
            class="field-error"
            id={`${idOf('rules')}-err`}
            data-for="rules"
            aria-live="polite"
            hidden={!(allRuleErrors || jsonError)}
          >
            {jsonError ? (
              <ErrorText p={jsonError} />
            ) : (
              a.fieldErrors.map((p, i) => (
                <div key={i}>
                  <ErrorText p={p} withField />
                </div>
              ))
            )}
          </div>
        </div>
      ) : (
        <>
          <FieldErr name="rules" a={a} />
          {rows.length === 0 ? <p class="empty">{t('rules.empty')}</p> : null}
          <ol class="rules">
            {rows.map((row, i) => (
              <li
                key={i}
                class={
                  'rule' +
                  (a.fieldErrors.some((f) => f.field === `rules[${i}]` || f.field.startsWith(`rules[${i}].`))
                    ? ' invalid'
                    : '')
                }
              >
                <div class="rule-num" aria-hidden="true">
                  {i + 1}
                </div>
                <div class="rule-body">
                  {row.matchers.map((m, j) => {
                    const name = `rules[${i}].${m.key}`;
                    const err = a.err(name);
                    return (
                      <div class="matcher" key={j}>
                        <label class="sr-only" for={`${idOf(name)}-key-${j}`}>
                          {t('rules.kindLabel', { i: i + 1, j: j + 1 })}
                        </label>
                        <select
                          id={`${idOf(name)}-key-${j}`}
                          value={m.key}
                          onChange={(e) =>
                            edit((rs) => {
                              rs[i]!.matchers[j]!.key = e.currentTarget.value;
                              return rs;
                            })
                          }
                        >
                          {MATCHERS.map((k) => (
                            <option key={k} value={k} disabled={k !== m.key && row.matchers.some((x) => x.key === k)}>
                              {matcherLabel(k)}
                            </option>
                          ))}
                        </select>
                        <label class="sr-only" for={idOf(name)}>
                          {t('rules.valueLabel', { i: i + 1, kind: matcherLabel(m.key) })}
                        </label>
                        <input
                          type="text"
                          id={idOf(name)}
                          name={name}
                          value={m.value}
                          placeholder={PLACEHOLDER[m.key]}
                          spellcheck={false}
                          autoComplete="off"
                          aria-invalid={err ? 'true' : undefined}
                          aria-describedby={`${idOf(name)}-err`}
                          onInput={(e) =>
                            edit((rs) => {
                              rs[i]!.matchers[j]!.value = e.currentTarget.value;
                              return rs;
                            })
                          }
                        />
                        <button
                          type="button"
                          class="icon"
                          aria-label={t('rules.removeMatcher', { i: i + 1, kind: matcherLabel(m.key) })}
                          onClick={() =>
                            edit((rs) => {
                              rs[i]!.matchers.splice(j, 1);
                              return rs;
                            })
                          }
                        >
                          ×
                        </button>
                        <FieldErr name={name} a={a} />
                      </div>
                    );
                  })}
                  <div class="rule-foot">
                    <button
                      type="button"
                      class="small"
                      onClick={() =>
                        edit((rs) => {
                          const free = MATCHERS.find((k) => !rs[i]!.matchers.some((x) => x.key === k));
                          if (free) rs[i]!.matchers.push({ key: free, value: '' });
                          return rs;
                        })
                      }
                    >
                      {t('rules.addMatcher')}
                    </button>
                    <label for={idOf(`rules[${i}].outbound`)}>{t('rules.then')}</label>
                    <select
                      id={idOf(`rules[${i}].outbound`)}
                      name={`rules[${i}].outbound`}
                      value={row.outbound}
                      aria-describedby={`${idOf(`rules[${i}].outbound`)}-err`}
                      onChange={(e) =>
                        edit((rs) => {
                          rs[i]!.outbound = e.currentTarget.value;
                          return rs;
                        })
                      }
                    >
                      {[...outbounds, ...(outbounds.includes(row.outbound) ? [] : [row.outbound])].map((o) => (
                        <option key={o} value={o}>
                          {state.nodes.find((n) => n.name === o)?.label || outboundLabel(o)}
                        </option>
                      ))}
                    </select>
                    <span class="spacer" />
                    <button
                      type="button"
                      class="icon"
                      aria-label={t('rules.up', { i: i + 1 })}
                      disabled={i === 0}
                      onClick={() =>
                        edit((rs) => {
                          [rs[i - 1], rs[i]] = [rs[i]!, rs[i - 1]!];
                          return rs;
                        })
                      }
                    >
                      ↑
                    </button>
                    <button
                      type="button"
                      class="icon"
                      aria-label={t('rules.down', { i: i + 1 })}
                      disabled={i === rows.length - 1}
                      onClick={() =>
                        edit((rs) => {
                          [rs[i + 1], rs[i]] = [rs[i]!, rs[i + 1]!];
                          return rs;
                        })
                      }
                    >
                      ↓
                    </button>
                    <button
                      type="button"
                      class="small danger"
                      aria-label={t('rules.deleteLabel', { i: i + 1 })}
                      onClick={() =>
                        edit((rs) => {
                          rs.splice(i, 1);
                          return rs;
                        })
                      }
                    >
                      {t('common.delete')}
                    </button>
                  </div>
                  <FieldErr name={`rules[${i}].outbound`} a={a} />
                  <FieldErr name={`rules[${i}]`} a={a} />
                </div>
              </li>
            ))}
          </ol>
          <button
            type="button"
            onClick={() =>
              edit((rs) => [...rs, { matchers: [{ key: 'domain-suffix', value: '' }], outbound: 'direct', extra: {} }])
            }
          >
            {t('rules.add')}
          </button>
        </>
      )}
      <div class="actions">
        <button type="submit" class="primary" disabled={a.busy}>
          {a.busy ? t('rules.validating') : t('rules.save')}
        </button>
        <button
          type="button"
          class="ghost"
          disabled={a.busy || !dirty}
          onClick={() => {
            setDirty(false);
            setRows(toRows(state.rules));
            if (json !== null) setJson(JSON.stringify(state.rules, null, 2));
            a.clear();
            setJsonError(null);
          }}
        >
          {t('common.revert')}
        </button>
      </div>
      <FormStatus a={a} />
    </form>
  );
}
