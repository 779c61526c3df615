import { useState } from 'preact/hooks';
import { del, post, put, type NodeInfo, type State, type TestResult } from '../api';
import type { AppCtx } from '../main';
import { Field, FormStatus, Section, useAction } from '../ui';

const enc = encodeURIComponent;

export function Nodes({ state, setState }: AppCtx) {
  return (
    <>
      <AddNodes setState={setState} />
      <NodeList state={state} setState={setState} />
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
      () => post<{ added: string[]; state?: State }>('/api/nodes', { links }),
      (r) => (r.added.length ? `Added ${r.added.length} node${r.added.length > 1 ? 's' : ''}: ${r.added.join(', ')}.` : 'Nothing added.'),
    );
    if (r) {
      setLinks('');
      if (r.state) setState(r.state);
    }
  };
  return (
    <form class="card" onSubmit={submit} aria-labelledby="add-h" noValidate>
      <h2 id="add-h">Add nodes</h2>
      <Field
        a={a}
        multiline
        rows={4}
        name="links"
        label="Links"
        hint={<>One or many, separated by new lines: <code>ss://…</code> (SIP002), <code>socks5://…</code>, <code>http://…</code>. The <code>#name</code> part names the node.</>}
        value={links}
        onInput={setLinks}
        spellcheck={false}
        autoComplete="off"
        placeholder="ss://YWVzLTI1Ni1nY206cGFzcw@203.0.113.1:8388#home"
      />
      <div class="actions">
        <button type="submit" class="primary" disabled={a.busy || !links.trim()}>{a.busy ? 'Adding…' : 'Add'}</button>
      </div>
      <FormStatus a={a} />
    </form>
  );
}

function NodeList({ state, setState }: { state: State; setState: (s: State) => void }) {
  const a = useAction(() => false);
  const [editing, setEditing] = useState<string | null>(null);
  const [tests, setTests] = useState<Record<string, TestResult | 'running'>>({});
  const users = (n: string) =>
    [state.tcpNode === n ? 'TCP' : '', state.udpNode === n || (state.udpNode === 'same' && state.tcpNode === n) ? 'UDP' : ''].filter(Boolean);

  const test = async (n: string) => {
    setTests((t) => ({ ...t, [n]: 'running' }));
    let r: TestResult;
    try {
      r = await post<TestResult>(`/api/nodes/${enc(n)}/test`);
    } catch (e) {
      r = { ok: false, error: (e as Error).message };
    }
    setTests((t) => ({ ...t, [n]: r }));
  };
  const remove = async (n: string) => {
    if (!confirm(`Delete node ${n}?`)) return;
    const r = await a.run(() => del<State>(`/api/nodes/${enc(n)}`), `Deleted ${n}.`);
    if (r) setState(r);
  };

  return (
    <Section title={`Nodes (${state.nodes.length})`} id="nodes">
      {state.nodes.length === 0 ? <p class="empty">No nodes yet: paste a link above.</p> : null}
      <ul class="nodes">
        {state.nodes.map((n) =>
          editing === n.name ? (
            <li key={n.name} class="node editing">
              <EditNode node={n} onDone={(s) => { setEditing(null); if (s) setState(s); }} />
            </li>
          ) : (
            <li key={n.name} class="node" data-node={n.name}>
              <div class="node-main">
                <strong class="node-name">{n.name}</strong>
                <span class="tag">{n.type}</span>
                {users(n.name).map((u) => <span key={u} class="tag used">{u}</span>)}
                <div class="muted mono">{n.server}:{n.port}</div>
              </div>
              <TestOut r={tests[n.name]} />
              <div class="node-actions">
                <button type="button" onClick={() => test(n.name)} disabled={tests[n.name] === 'running'} aria-label={`Test latency of ${n.name}`}>Test</button>
                <button type="button" onClick={() => setEditing(n.name)} aria-label={`Edit ${n.name}`}>Edit</button>
                <button type="button" class="danger" onClick={() => remove(n.name)} aria-label={`Delete ${n.name}`}>Delete</button>
              </div>
            </li>
          ),
        )}
      </ul>
      <FormStatus a={a} />
    </Section>
  );
}

function TestOut({ r }: { r: TestResult | 'running' | undefined }) {
  return (
    <div class="node-test" aria-live="polite">
      {r === undefined ? null : r === 'running' ? (
        <span class="muted">testing…</span>
      ) : r.ok ? (
        <span class="good">connect {r.connectMs ?? '–'} ms · handshake {r.handshakeMs ?? '–'} ms</span>
      ) : (
        <span class="bad">failed: {r.error ?? 'unknown error'}</span>
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
    const r = await a.run(() => put<State>(`/api/nodes/${enc(node.name)}`, body), 'Saved.');
    if (r) onDone(r);
  };
  return (
    <form onSubmit={save} aria-label={`Edit node ${node.name}`} noValidate>
      <Field a={a} name="name" label="Name" value={name} onInput={setName} autoComplete="off" spellcheck={false} />
      <Field a={a} name="uri" label="Link" hint="The password is shown redacted; leave it so to keep it." value={uri} onInput={setUri} autoComplete="off" spellcheck={false} />
      <div class="actions">
        <button type="submit" class="primary" disabled={a.busy}>Save</button>
        <button type="button" class="ghost" onClick={() => onDone()}>Cancel</button>
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
    const r = await a.run(() => post<State>('/api/subscriptions', { url }), 'Subscription imported.');
    if (r) {
      setState(r);
      setUrl('');
    }
  };
  const refresh = async (u: string) => {
    const r = await list.run(() => post<State>('/api/subscriptions/refresh', { url: u }), 'Subscription refreshed.');
    if (r) setState(r);
  };
  const remove = async (u: string) => {
    if (!confirm(`Remove the subscription ${u} and its nodes?`)) return;
    const r = await list.run(() => del<State>(`/api/subscriptions?url=${enc(u)}`), 'Subscription removed.');
    if (r) setState(r);
  };
  return (
    <Section title="Subscriptions">
      <form onSubmit={add} class="inline-form" noValidate>
        <Field a={a} name="url" label="Subscription URL" hint="A base64 list of links; its nodes are replaced on refresh." type="url" value={url} onInput={setUrl} autoComplete="off" spellcheck={false} placeholder="https://example.com/sub" />
        <div class="actions">
          <button type="submit" class="primary" disabled={a.busy || !url.trim()}>{a.busy ? 'Importing…' : 'Import'}</button>
        </div>
        <FormStatus a={a} />
      </form>
      {state.subscriptions.length ? (
        <ul class="subs">
          {state.subscriptions.map((s) => (
            <li key={s.url}>
              <div class="mono break">{s.url}</div>
              <div class="muted">
                {s.nodes.length} node{s.nodes.length === 1 ? '' : 's'} · {s.updatedAt ? `updated ${new Date(s.updatedAt).toLocaleString()}` : 'never updated'}
              </div>
              {s.error ? <div class="bad">{s.error}</div> : null}
              <div class="node-actions">
                <button type="button" disabled={list.busy} onClick={() => refresh(s.url)}>Refresh</button>
                <button type="button" class="danger" disabled={list.busy} onClick={() => remove(s.url)}>Remove</button>
              </div>
            </li>
          ))}
        </ul>
      ) : null}
      <FormStatus a={list} />
    </Section>
  );
}
