import { useEffect, useState } from 'preact/hooks';
import { del, post, put, type ImportReport, type NodeInfo, type State } from '../api';
import { byDelay, delayClass, loadTests, testAll, testOne, setTcpDefault, type NodeTest } from '../api-nodes';
import type { AppCtx } from '../ctx';
import { Groups } from './Groups';
import './nodes.css';
import { lang, t } from '../i18n';
import { type Action, ErrorText, Field, FormStatus, Section, rich, useAction } from '../ui';

const enc = encodeURIComponent;
/** " 2 links skipped: …" in the page's language (the server's summary is English). */
const skippedNote = (r?: ImportReport) => (r?.skipped?.length ? ` ${t('nodes.skipped', { n: r.skipped.length })}` : '');

export function Nodes({ state, setState }: AppCtx) {
  return (
    <>
      <AddNodes setState={setState} />
      <NodeList state={state} setState={setState} />
      <Groups state={state} setState={setState} />
      <Subscriptions state={state} setState={setState} />
    </>
  );
}

function AddNodes({ setState }: { setState: (s: State) => void }) {
  const a = useAction((f) => f === 'links');
  const [links, setLinks] = useState('');
  const submit = async (e: Event) => {
    e.preventDefault();
    const r = await a.run(
      () => post<{ added: string[]; report?: ImportReport; state?: State }>('/api/nodes', { links }),
      (r) =>
        `${r.added.length ? t('nodes.added', { names: r.added.join(', ') }) : t('nodes.addedNone')}${skippedNote(r.report)}`,
    );
    if (r) {
      setLinks('');
      if (r.state) setState(r.state);
    }
  };
  return (
    <form class="card" onSubmit={submit} aria-labelledby="add-h" noValidate>
      <h2 id="add-h">{t('nodes.add')}</h2>
      <Field
        a={a}
        multiline
        rows={4}
        name="links"
        label={t('nodes.links')}
        hint={rich('nodes.linksHint', {
          schemes: (
            <>
              <code>ss://…</code> (SIP002), <code>socks5://…</code>, <code>http://…</code>
            </>
          ),
          frag: <code>#name</code>,
        })}
        value={links}
        onInput={setLinks}
        spellcheck={false}
        autoComplete="off"
        placeholder="ss://YWVzLTI1Ni1nY206cGFzcw@203.0.113.1:8388#home"
      />
      <div class="actions">
        <button type="submit" class="primary" disabled={a.busy || !links.trim()}>
          {a.busy ? t('nodes.adding') : t('nodes.addButton')}
        </button>
      </div>
      <FormStatus a={a} />
    </form>
  );
}

const SORT_KEY = 'tranproxy.nodeSort';
type Sort = 'delay' | 'file';

/** Who uses node `n` now (the TCP default, the UDP one), in words. */
function usersOf(state: State, n: string): string[] {
  return [
    state.tcpNode === n ? t('nodes.usedTcp') : '',
    state.udpNode === n || (state.udpNode === 'same' && state.tcpNode === n) ? t('nodes.usedUdp') : '',
  ].filter(Boolean);
}

/** Node test results (kept by the gateway) and the nodes being tested now. */
function useNodeTests(a: Action, state: State) {
  const [tests, setTests] = useState<Record<string, NodeTest>>({});
  const [running, setRunning] = useState<Set<string>>(new Set());
  // Results are kept by the gateway: another page or a reload shows them again.
  useEffect(() => {
    loadTests().then(
      (r) => setTests(r.results),
      () => {},
    );
  }, []);
  const mark = (names: string[], on: boolean) =>
    setRunning((old) => {
      const next = new Set(old);
      for (const n of names) on ? next.add(n) : next.delete(n);
      return next;
    });
  const test = async (n: string) => {
    mark([n], true);
    try {
      const r = await testOne(n);
      setTests((old) => ({ ...old, [n]: r }));
    } catch (e) {
      setTests((old) => ({ ...old, [n]: { ok: false, url: '', error: (e as Error).message, at: '' } }));
    } finally {
      mark([n], false);
    }
  };
  const all = async () => {
    const names = state.nodes.map((n) => n.name);
    mark(names, true);
    const r = await a.run(testAll, (r) => t('nodes.testedAll', { n: Object.keys(r.results).length }));
    if (r) setTests(r.results);
    mark(names, false);
  };
  return { tests, running, test, all };
}

function NodeList({ state, setState }: { state: State; setState: (s: State) => void }) {
  const a = useAction(() => false);
  const [editing, setEditing] = useState<string | null>(null);
  const { tests, running, test, all } = useNodeTests(a, state);
  const [sort, setSortState] = useState<Sort>(() => (localStorage.getItem(SORT_KEY) === 'file' ? 'file' : 'delay'));
  const setSort = (s: Sort) => {
    localStorage.setItem(SORT_KEY, s);
    setSortState(s);
  };
  const remove = async (n: string) => {
    if (!confirm(t('nodes.confirmDelete', { name: n }))) return;
    const r = await a.run(
      () => del<State>(`/api/nodes/${enc(n)}`),
      () => t('nodes.deleted', { name: n }),
    );
    if (r) setState(r);
  };
  const use = async (n: string) => {
    const r = await a.run(
      () => setTcpDefault(n),
      () => t('nodes.nowUsed', { name: n }),
    );
    if (r) setState(r);
  };

  const byName = new Map(state.nodes.map((n) => [n.name, n]));
  const names = state.nodes.map((n) => n.name);
  const order = sort === 'delay' ? byDelay(names, tests) : names;
  return (
    <Section title={t('nodes.list', { n: state.nodes.length })} id="nodes">
      {state.nodes.length === 0 ? <p class="empty">{t('nodes.empty')}</p> : null}
      {state.nodes.length ? (
        <NodeToolbar testing={running.size > 0} onTestAll={all} sort={sort} setSort={setSort} />
      ) : null}
      <ul class="nodes">
        {order.map((name) => {
          const n = byName.get(name)!;
          return editing === n.name ? (
            <li key={n.name} class="node editing">
              <EditNode
                node={n}
                onDone={(s) => {
                  setEditing(null);
                  if (s) setState(s);
                }}
              />
            </li>
          ) : (
            <li key={n.name} class="node" data-node={n.name}>
              <NodeEntry
                n={n}
                users={usersOf(state, n.name)}
                result={running.has(n.name) ? 'running' : tests[n.name]}
                isTcpDefault={state.tcpNode === n.name}
                busy={a.busy}
                onTest={() => test(n.name)}
                onUse={() => use(n.name)}
                onEdit={() => setEditing(n.name)}
                onRemove={() => remove(n.name)}
              />
            </li>
          );
        })}
      </ul>
      <FormStatus a={a} />
    </Section>
  );
}

function NodeToolbar(props: { testing: boolean; onTestAll: () => void; sort: Sort; setSort: (s: Sort) => void }) {
  return (
    <div class="node-toolbar">
      <button type="button" class="primary" id="test-all" onClick={props.onTestAll} disabled={props.testing}>
        {props.testing ? t('nodes.testingAll') : t('nodes.testAll')}
      </button>
      <label class="inline">
        {t('nodes.sort')}{' '}
        <select
          name="sort"
          value={props.sort}
          onChange={(e) => props.setSort((e.currentTarget as HTMLSelectElement).value as Sort)}
        >
          <option value="delay">{t('nodes.sortDelay')}</option>
          <option value="file">{t('nodes.sortFile')}</option>
        </select>
      </label>
    </div>
  );
}

/** One node: name, type, who uses it, address, its test result, and its buttons. */
function NodeEntry(props: {
  n: NodeInfo;
  users: string[];
  result: NodeTest | 'running' | undefined;
  isTcpDefault: boolean;
  busy: boolean;
  onTest: () => void;
  onUse: () => void;
  onEdit: () => void;
  onRemove: () => void;
}) {
  const { n } = props;
  return (
    <>
      <div class="node-main">
        <strong class="node-name">{n.label ?? n.name}</strong>
        {n.label && n.label !== n.name ? <span class="muted mono node-key">{n.name}</span> : null}
        <span class="tag">{n.plugin ? `${n.type}+${n.plugin}` : n.type}</span>
        {props.users.map((u) => (
          <span key={u} class="tag used">
            {u}
          </span>
        ))}
        <div class="muted mono">
          {n.server}:{n.port}
        </div>
      </div>
      <TestOut r={props.result} />
      <div class="node-actions">
        <button
          type="button"
          onClick={props.onTest}
          disabled={props.result === 'running'}
          aria-label={t('nodes.testLabel', { name: n.label ?? n.name })}
        >
          {t('nodes.test')}
        </button>
        {props.isTcpDefault ? null : (
          <button
            type="button"
            class="use"
            disabled={props.busy}
            onClick={props.onUse}
            aria-label={t('nodes.useLabel', { name: n.label ?? n.name })}
          >
            {t('nodes.use')}
          </button>
        )}
        <button type="button" onClick={props.onEdit} aria-label={t('nodes.editLabel', { name: n.name })}>
          {t('common.edit')}
        </button>
        <button
          type="button"
          class="danger"
          onClick={props.onRemove}
          aria-label={t('nodes.deleteLabel', { name: n.name })}
        >
          {t('common.delete')}
        </button>
      </div>
    </>
  );
}

function TestOut({ r }: { r: NodeTest | 'running' | undefined }) {
  return (
    <div class="node-test" aria-live="polite">
      {r === undefined ? null : r === 'running' ? (
        <span class="muted">{t('nodes.testing')}</span>
      ) : r.ok && r.delayMs !== undefined ? (
        <span class={`delay ${delayClass(r.delayMs)}`} data-delay={r.delayMs}>
          {t('nodes.delay', { ms: Math.round(r.delayMs) })}
        </span>
      ) : (
        <span class="bad">
          {rich('nodes.testFailed', { error: <ErrorText p={{ field: '', message: r.error ?? '', status: 0 }} /> })}
        </span>
      )}
    </div>
  );
}

function EditNode({ node, onDone }: { node: NodeInfo; onDone: (s?: State) => void }) {
  const a = useAction((f) => f === 'name' || f === 'uri');
  const [name, setName] = useState(node.name);
  const [uri, setUri] = useState(node.uri);
  const save = async (e: Event) => {
    e.preventDefault();
    const body: { name?: string; uri: string } = { uri };
    if (name !== node.name) body.name = name;
    const r = await a.run(
      () => put<State>(`/api/nodes/${enc(node.name)}`, body),
      () => t('nodes.saved'),
    );
    if (r) onDone(r);
  };
  return (
    <form onSubmit={save} aria-label={t('nodes.editForm', { name: node.name })} noValidate>
      <Field
        a={a}
        name="name"
        label={t('nodes.name')}
        value={name}
        onInput={setName}
        autoComplete="off"
        spellcheck={false}
      />
      <Field
        a={a}
        name="uri"
        label={t('nodes.link')}
        hint={t('nodes.linkHint')}
        value={uri}
        onInput={setUri}
        autoComplete="off"
        spellcheck={false}
      />
      <div class="actions">
        <button type="submit" class="primary" disabled={a.busy}>
          {t('common.save')}
        </button>
        <button type="button" class="ghost" onClick={() => onDone()}>
          {t('common.cancel')}
        </button>
      </div>
      <FormStatus a={a} />
    </form>
  );
}

function Subscriptions({ state, setState }: { state: State; setState: (s: State) => void }) {
  const a = useAction((f) => f === 'url');
  const list = useAction(() => false);
  const [url, setUrl] = useState('');
  const add = async (e: Event) => {
    e.preventDefault();
    const r = await a.run(
      () => post<State & { report?: ImportReport }>('/api/subscriptions', { url }),
      (r) => `${t('subs.imported')}${skippedNote(r.report)}`,
    );
    if (r) {
      setState(r);
      setUrl('');
    }
  };
  const refresh = async (u: string) => {
    const r = await list.run(
      () => post<State & { report?: ImportReport }>('/api/subscriptions/refresh', { url: u }),
      (r) => `${t('subs.refreshed')}${skippedNote(r.report)}`,
    );
    if (r) setState(r);
  };
  const remove = async (u: string) => {
    if (!confirm(t('subs.confirmRemove', { url: u }))) return;
    const r = await list.run(
      () => del<State>(`/api/subscriptions?url=${enc(u)}`),
      () => t('subs.removed'),
    );
    if (r) setState(r);
  };
  return (
    <Section title={t('subs.title')} id="subscriptions">
      <form onSubmit={add} class="inline-form" noValidate>
        <Field
          a={a}
          name="url"
          label={t('subs.url')}
          hint={t('subs.urlHint')}
          type="url"
          value={url}
          onInput={setUrl}
          autoComplete="off"
          spellcheck={false}
          placeholder="https://example.com/sub"
        />
        <div class="actions">
          <button type="submit" class="primary" disabled={a.busy || !url.trim()}>
            {a.busy ? t('subs.importing') : t('subs.import')}
          </button>
        </div>
        <FormStatus a={a} />
      </form>
      {state.subscriptions.length ? (
        <ul class="subs">
          {state.subscriptions.map((s) => (
            <li key={s.url}>
              <div class="mono break">{s.url}</div>
              <div class="muted">
                {s.nodes.length === 1 ? t('subs.nodeCountOne') : t('subs.nodeCount', { n: s.nodes.length })} ·{' '}
                {s.updatedAt
                  ? t('subs.updated', { when: new Date(s.updatedAt).toLocaleString(lang() === 'zh' ? 'zh-CN' : 'en') })
                  : t('subs.never')}
              </div>
              {s.result ? <div class="muted">{s.result}</div> : null}
              {s.kept?.length ? <div class="warn">{t('subs.kept', { names: s.kept.join(', ') })}</div> : null}
              {s.error ? (
                <div class="bad">
                  <ErrorText p={{ field: '', message: s.error, status: 0 }} />
                </div>
              ) : null}
              <div class="node-actions">
                <button type="button" disabled={list.busy} onClick={() => refresh(s.url)}>
                  {t('subs.refresh')}
                </button>
                <button type="button" class="danger" disabled={list.busy} onClick={() => remove(s.url)}>
                  {t('subs.remove')}
                </button>
              </div>
            </li>
          ))}
        </ul>
      ) : null}
      <FormStatus a={list} />
    </Section>
  );
}
