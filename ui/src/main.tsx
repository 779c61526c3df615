import { render } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import './style.css';
import { get, post, setCsrf, setUnauthorizedHandler, type Conn, type State } from './api';
import { Login } from './pages/Login';
import { Nodes } from './pages/Nodes';
import { Settings } from './pages/Settings';
import { Dns } from './pages/Dns';
import { Rules } from './pages/Rules';
import { Live, type Sample } from './pages/Live';
import { Check } from './pages/Check';

const PAGES = [
  ['settings', 'Settings'],
  ['nodes', 'Nodes'],
  ['rules', 'Rules'],
  ['dns', 'DNS'],
  ['live', 'Live'],
  ['check', 'Check'],
] as const;
type Page = (typeof PAGES)[number][0];

function pageFromHash(): Page {
  const h = location.hash.replace(/^#\/?/, '');
  return (PAGES.find(([p]) => p === h)?.[0] ?? 'settings') as Page;
}

export interface AppCtx {
  state: State;
  setState: (s: State) => void;
  reload: () => Promise<void>;
}

function App() {
  const [auth, setAuth] = useState<'unknown' | 'in' | 'out'>('unknown');
  const [page, setPage] = useState<Page>(pageFromHash());
  const [state, setStateRaw] = useState<State | null>(null);
  const [loadError, setLoadError] = useState('');
  const [conns, setConns] = useState<Conn[]>([]);
  const [samples, setSamples] = useState<Sample[]>([]);
  const [live, setLive] = useState<'connecting' | 'open' | 'closed'>('closed');
  const mainRef = useRef<HTMLElement>(null);

  const setState = useCallback((s: State) => {
    if (s && typeof s === 'object' && 'enabled' in s) setStateRaw(s);
  }, []);

  const reload = useCallback(async () => {
    try {
      setState(await get<State>('/api/state'));
      setLoadError('');
    } catch (e) {
      setLoadError((e as Error).message);
    }
  }, [setState]);

  useEffect(() => {
    setUnauthorizedHandler(() => setAuth('out'));
    get<{ authenticated: boolean; csrf?: string }>('/api/session')
      .then((s) => {
        if (s.authenticated && s.csrf) setCsrf(s.csrf);
        setAuth(s.authenticated ? 'in' : 'out');
      })
      .catch(() => setAuth('out'));
    const onHash = () => setPage(pageFromHash());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);

  useEffect(() => {
    if (auth !== 'in') return;
    void reload();
    setLive('connecting');
    const es = new EventSource('/api/events');
    es.onopen = () => setLive('open');
    es.onerror = () => setLive(es.readyState === EventSource.CLOSED ? 'closed' : 'connecting');
    es.addEventListener('connections', (ev) => {
      try { setConns(JSON.parse((ev as MessageEvent).data) as Conn[]); } catch { /* ignore a bad frame */ }
    });
    es.addEventListener('throughput', (ev) => {
      try {
        const s = JSON.parse((ev as MessageEvent).data) as Sample;
        setSamples((old) => [...old, s].slice(-60));
      } catch { /* ignore */ }
    });
    es.addEventListener('state', (ev) => {
      try { setState(JSON.parse((ev as MessageEvent).data) as State); } catch { /* ignore */ }
    });
    return () => { es.close(); setLive('closed'); };
  }, [auth, reload, setState]);

  // Move focus to the page heading on navigation (keyboard and screen-reader users).
  useEffect(() => {
    mainRef.current?.querySelector<HTMLElement>('h1')?.focus();
  }, [page]);

  if (auth === 'unknown') return <p class="loading">Loading…</p>;
  if (auth === 'out') {
    return (
      <Login
        onLogin={(csrf) => {
          setCsrf(csrf);
          setAuth('in');
        }}
      />
    );
  }

  const logout = async () => {
    try { await post('/api/logout'); } catch { /* logged out anyway */ }
    setCsrf('');
    setStateRaw(null);
    setAuth('out');
  };

  const title = PAGES.find(([p]) => p === page)![1];
  const ctx = state ? { state, setState, reload } : null;
  return (
    <>
      <a class="skip" href="#main">Skip to content</a>
      <header class="top">
        <div class="brand">
          <span class="logo" aria-hidden="true">⇄</span> tranproxy
          {state ? (
            <span class={'pill ' + (state.enabled ? (state.applied ? 'on' : 'warn') : 'off')} id="switch-pill">
              {state.enabled ? (state.applied ? 'on' : 'on · not applied') : 'off'}
            </span>
          ) : null}
        </div>
        <nav aria-label="Pages">
          <ul>
            {PAGES.map(([p, label]) => (
              <li key={p}>
                <a href={'#/' + p} aria-current={p === page ? 'page' : undefined}>{label}</a>
              </li>
            ))}
          </ul>
        </nav>
        <button type="button" class="ghost" onClick={logout}>Log out</button>
      </header>
      <main id="main" ref={mainRef}>
        <h1 tabIndex={-1}>{title}</h1>
        {loadError ? <p class="error" role="alert">Could not load the state: {loadError}</p> : null}
        {!ctx ? (
          <p class="loading">Loading…</p>
        ) : page === 'settings' ? (
          <Settings {...ctx} />
        ) : page === 'nodes' ? (
          <Nodes {...ctx} />
        ) : page === 'rules' ? (
          <Rules {...ctx} />
        ) : page === 'dns' ? (
          <Dns {...ctx} />
        ) : page === 'live' ? (
          <Live conns={conns} samples={samples} live={live} />
        ) : (
          <Check {...ctx} />
        )}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
