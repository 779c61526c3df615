import { useEffect, useState } from 'preact/hooks';
import { put, type Rule, type State } from '../api';
import type { AppCtx } from '../ctx';
import { t, type Key } from '../i18n';
import {
  type Action,
  ErrorText,
  FieldErr,
  FormStatus,
  idOf,
  outboundLabel,
  rich,
  useAction,
  type Problem,
} from '../ui';

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
/** The JSON text of the rules, which must be a list (the server checks each rule). Throws a reason. */
function parseRulesJson(text: string): Rule[] {
  const parsed: unknown = JSON.parse(text);
  if (!Array.isArray(parsed)) throw new Error(NOT_ARRAY);
  return parsed as Rule[];
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

/** Changes a copy of the rows (each row's matchers copied too) and marks the form changed. */
type EditRows = (fn: (rs: Row[]) => Row[]) => void;

/** The page's state (rows for the table view, or the JSON text) and its save, view switch and revert. */
function useRulesEditor({ state, setState }: AppCtx) {
  const [rows, setRows] = useState<Row[]>(() => toRows(state.rules));
  const [json, setJson] = useState<string | null>(null);
  const a = useAction((f) => fieldShown(f, rows, json));
  const [dirty, setDirty] = useState(false);
  const [jsonError, setJsonError] = useState<Problem | null>(null);
  useEffect(() => {
    if (!dirty) setRows(toRows(state.rules));
  }, [state, dirty]);

  const edit: EditRows = (fn) => {
    setRows((rs) => fn(rs.map((r) => ({ ...r, matchers: r.matchers.map((m) => ({ ...m })) }))));
    setDirty(true);
  };

  const save = async (e: Event) => {
    e.preventDefault();
    let rules: Rule[];
    if (json !== null) {
      try {
        rules = parseRulesJson(json);
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
        setRows(toRows(parseRulesJson(json)));
        setJson(null);
      } catch (err) {
        setJsonError(jsonProblem(err));
      }
    }
  };

  const revert = () => {
    setDirty(false);
    setRows(toRows(state.rules));
    if (json !== null) setJson(JSON.stringify(state.rules, null, 2));
    a.clear();
    setJsonError(null);
  };

  const input = (v: string) => {
    setJson(v);
    setDirty(true);
  };
  return { rows, json, dirty, a, jsonError, edit, save, switchMode, revert, input };
}

/** Whether error field `f` has an input on the page (the rest go to the form-level message). */
function fieldShown(f: string, rows: Row[], json: string | null): boolean {
  if (json !== null) return f === 'rules' || f.startsWith('rules[');
  if (f === 'rules') return true;
  const m = /^rules\[(\d+)\](?:\.(.+))?$/.exec(f);
  const row = m ? rows[Number(m[1])] : undefined;
  if (!m || !row) return false;
  return !m[2] || m[2] === 'outbound' || row.matchers.some((x) => x.key === m[2]);
}

export function Rules(ctx: AppCtx) {
  const { state } = ctx;
  const { rows, json, dirty, a, jsonError, edit, save, switchMode, revert, input } = useRulesEditor(ctx);
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
        <RulesJson json={json} onInput={input} a={a} jsonError={jsonError} />
      ) : (
        <RuleList rows={rows} edit={edit} a={a} state={state} />
      )}
      <div class="actions">
        <button type="submit" class="primary" disabled={a.busy}>
          {a.busy ? t('rules.validating') : t('rules.save')}
        </button>
        <button type="button" class="ghost" disabled={a.busy || !dirty} onClick={revert}>
          {t('common.revert')}
        </button>
      </div>
      <FormStatus a={a} />
    </form>
  );
}

/** The rules as one JSON text, with every rule's problem (or the parse problem) under it. */
function RulesJson(props: { json: string; onInput: (text: string) => void; a: Action; jsonError: Problem | null }) {
  const { json, onInput, a, jsonError } = props;
  const invalid = a.fieldErrors.length > 0 || jsonError !== null;
  return (
    <div class={`field${invalid ? ' invalid' : ''}`}>
      <label for={idOf('rules')}>{t('rules.jsonLabel')}</label>
      <textarea
        id={idOf('rules')}
        name="rules"
        rows={16}
        class="mono"
        spellcheck={false}
        value={json}
        aria-describedby={`${idOf('rules')}-err`}
        aria-invalid={invalid ? 'true' : undefined}
        onInput={(e) => onInput(e.currentTarget.value)}
      />
      <div class="field-error" id={`${idOf('rules')}-err`} data-for="rules" aria-live="polite" hidden={!invalid}>
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
  );
}

/** The rules as a table: one numbered row per rule, first match wins. */
function RuleList({ rows, edit, a, state }: { rows: Row[]; edit: EditRows; a: Action; state: State }) {
  const outbounds = ['direct', 'reject', ...state.nodes.map((n) => n.name)];
  return (
    <>
      <FieldErr name="rules" a={a} />
      {rows.length === 0 ? <p class="empty">{t('rules.empty')}</p> : null}
      <ol class="rules">
        {rows.map((row, i) => (
          <RuleRow key={i} row={row} i={i} count={rows.length} edit={edit} a={a} state={state} outbounds={outbounds} />
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
  );
}

interface RuleRowProps {
  row: Row;
  /** The row's index, and how many rows there are (for the move buttons). */
  i: number;
  count: number;
  edit: EditRows;
  a: Action;
  state: State;
  outbounds: string[];
}

function RuleRow({ row, i, count, edit, a, state, outbounds }: RuleRowProps) {
  const invalid = a.fieldErrors.some((f) => f.field === `rules[${i}]` || f.field.startsWith(`rules[${i}].`));
  const change = (fn: (rs: Row[]) => void) =>
    edit((rs) => {
      fn(rs);
      return rs;
    });
  const outboundName = `rules[${i}].outbound`;
  return (
    <li class={`rule${invalid ? ' invalid' : ''}`}>
      <div class="rule-num" aria-hidden="true">
        {i + 1}
      </div>
      <div class="rule-body">
        {row.matchers.map((m, j) => (
          <MatcherField key={j} row={row} i={i} j={j} edit={edit} a={a} />
        ))}
        <div class="rule-foot">
          <button
            type="button"
            class="small"
            onClick={() =>
              change((rs) => {
                const free = MATCHERS.find((k) => !rs[i]!.matchers.some((x) => x.key === k));
                if (free) rs[i]!.matchers.push({ key: free, value: '' });
              })
            }
          >
            {t('rules.addMatcher')}
          </button>
          <label for={idOf(outboundName)}>{t('rules.then')}</label>
          <select
            id={idOf(outboundName)}
            name={outboundName}
            value={row.outbound}
            aria-describedby={`${idOf(outboundName)}-err`}
            onChange={(e) =>
              change((rs) => {
                rs[i]!.outbound = e.currentTarget.value;
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
          <RuleMoves i={i} count={count} change={change} />
        </div>
        <FieldErr name={outboundName} a={a} />
        <FieldErr name={`rules[${i}]`} a={a} />
      </div>
    </li>
  );
}

/** Up, down and delete for rule `i`. */
function RuleMoves({ i, count, change }: { i: number; count: number; change: (fn: (rs: Row[]) => void) => void }) {
  return (
    <>
      <button
        type="button"
        class="icon"
        aria-label={t('rules.up', { i: i + 1 })}
        disabled={i === 0}
        onClick={() =>
          change((rs) => {
            [rs[i - 1], rs[i]] = [rs[i]!, rs[i - 1]!];
          })
        }
      >
        ↑
      </button>
      <button
        type="button"
        class="icon"
        aria-label={t('rules.down', { i: i + 1 })}
        disabled={i === count - 1}
        onClick={() =>
          change((rs) => {
            [rs[i + 1], rs[i]] = [rs[i]!, rs[i + 1]!];
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
          change((rs) => {
            rs.splice(i, 1);
          })
        }
      >
        {t('common.delete')}
      </button>
    </>
  );
}

/** Matcher `j` of rule `i`: its kind (each kind once per rule), its values, a remove button. */
function MatcherField({ row, i, j, edit, a }: { row: Row; i: number; j: number; edit: EditRows; a: Action }) {
  const m = row.matchers[j]!;
  const name = `rules[${i}].${m.key}`;
  const err = a.err(name);
  const change = (fn: (matcher: Row['matchers'][number], rs: Row[]) => void) =>
    edit((rs) => {
      fn(rs[i]!.matchers[j]!, rs);
      return rs;
    });
  return (
    <div class="matcher">
      <label class="sr-only" for={`${idOf(name)}-key-${j}`}>
        {t('rules.kindLabel', { i: i + 1, j: j + 1 })}
      </label>
      <select
        id={`${idOf(name)}-key-${j}`}
        value={m.key}
        onChange={(e) =>
          change((x) => {
            x.key = e.currentTarget.value;
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
          change((x) => {
            x.value = e.currentTarget.value;
          })
        }
      />
      <button
        type="button"
        class="icon"
        aria-label={t('rules.removeMatcher', { i: i + 1, kind: matcherLabel(m.key) })}
        onClick={() =>
          change((_, rs) => {
            rs[i]!.matchers.splice(j, 1);
          })
        }
      >
        ×
      </button>
      <FieldErr name={name} a={a} />
    </div>
  );
}
