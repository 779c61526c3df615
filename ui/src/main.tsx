import { type ComponentChildren, type Ref, render } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import './style.css';
import { ApiError, get, post, setApiHandlers, setCsrf, type Closed, type Conn, type State, type Traffic } from './api';
import { t, type Key, type Lang } from './i18n';
import { applyLang, applyTheme, initialLang, initialTheme, type Theme } from './prefs';
import type { AppCtx } from './ctx';
import { ErrorText, type Problem } from './ui';
import { Login } from './pages/Login';
import { Nodes } from './pages/Nodes';
import { Settings } from './pages/Settings';
import { Dns } from './pages/Dns';
import { Rules } from './pages/Rules';
import { Live, type Sample } from './pages/Live';
import { Check } from './pages/Check';
import { Logs } from './pages/Logs';

const PAGES = ['settings', 'nodes', 'rules', 'dns', 'live', 'logs', 'check'] as const;
type Page = (typeof PAGES)[number];
/** While the gateway does not answer, ask again this often. */
const RETRY_MS = 2000;

function pageFromHash(): Page {
  const h = location.hash.replace(/^#\/?/, '');
  return PAGES.find((p) => p === h) ?? 'settings';
}

/** Language and theme buttons (header and login page). */
export function Prefs(props: { lang: Lang; theme: Theme; setLang: (l: Lang) => void; setTheme: (th: Theme) => void }) {
  const other: Theme = props.theme === 'dark' ? 'light' : 'dark';
  return (
    <div class="prefs">
      <button
        type="button"
        class="ghost small"
        id="lang-toggle"
        lang={props.lang === 'zh' ? 'en' : 'zh-CN'}
        aria-label={t('top.langLabel')}
        onClick={() => props.setLang(props.lang === 'zh' ? 'en' : 'zh')}
      >
        {t('top.lang')}
      </button>
      <button
        type="button"
        class="ghost small"
        id="theme-toggle"
        aria-label={t(other === 'dark' ? 'top.themeToDark' : 'top.themeToLight')}
        aria-pressed={props.theme === 'dark' ? 'true' : 'false'}
        onClick={() => props.setTheme(other)}
      >
        <span aria-hidden="true">{props.theme === 'dark' ? '☾' : '☀'}</span>
        <span class="wide-only"> {t(props.theme === 'dark' ? 'top.themeDark' : 'top.themeLight')}</span>
      </button>
    </div>
  );
}

type Auth = 'unknown' | 'in' | 'out' | 'expired';
type LiveState = 'connecting' | 'open' | 'closed';

/** What the event stream delivers for the Live page, and its setters. */
function useLiveFeed() {
  const [conns, setConns] = useState<Conn[]>([]);
  const [samples, setSamples] = useState<Sample[]>([]);
  const [traffic, setTraffic] = useState<Traffic | null>(null);
  const [closed, setClosed] = useState<Closed[]>([]);
  const [live, setLive] = useState<LiveState>('closed');
  const clear = useCallback(() => {
    setConns([]);
    setSamples([]);
    setTraffic(null);
    setClosed([]);
  }, []);
  return { conns, samples, traffic, closed, live, setConns, setSamples, setTraffic, setClosed, setLive, clear };
}
type LiveFeed = ReturnType<typeof useLiveFeed>;

/** Language and theme, remembered when chosen; the theme follows the system's until then. */
function usePrefs() {
  const [lang, setLangState] = useState<Lang>(initialLang);
  const [theme, setThemeState] = useState<Theme>(initialTheme);
  applyLang(lang, false);
  const setLang = (l: Lang) => {
    applyLang(l, true);
    setLangState(l);
  };
  const setTheme = (th: Theme) => {
    applyTheme(th, true);
    setThemeState(th);
  };
  useEffect(() => {
    applyTheme(theme, false);
    // Not chosen yet: follow the system's changes too.
    const mq = matchMedia('(prefers-color-scheme: dark)');
    const onChange = () => setThemeState(initialTheme());
    mq.addEventListener('change', onChange);
    return () => mq.removeEventListener('change', onChange);
  }, []);
  return { lang, theme, setLang, setTheme };
}

/** Calls `use` with each JSON frame of the named event; a bad frame is ignored. */
function onJsonEvent<T>(es: EventSource, name: string, use: (v: T) => void): void {
  es.addEventListener(name, (ev) => {
    try {
      use(JSON.parse((ev as MessageEvent).data) as T);
    } catch {
      /* ignore a bad frame */
    }
  });
}

/** While logged in: the state, then the event stream (connections, throughput, traffic, closed, state). */
function useEventStream(
  loggedIn: boolean,
  feed: LiveFeed,
  reload: () => Promise<void>,
  setState: (s: State) => void,
  sessionEnded: () => void,
) {
  const { setConns, setSamples, setTraffic, setClosed, setLive } = feed;
  useEffect(() => {
    if (!loggedIn) return;
    void reload();
    setLive('connecting');
    const es = new EventSource('/api/events');
    es.onopen = () => setLive('open');
    es.onerror = () => {
      setLive(es.readyState === EventSource.CLOSED ? 'closed' : 'connecting');
      // The stream broke: is the gateway down, or did it restart (and forget the session)?
      void get<{ authenticated: boolean }>('/api/session').then(
        (s) => {
          if (!s.authenticated) sessionEnded();
        },
        () => {},
      );
    };
    onJsonEvent<Conn[]>(es, 'connections', setConns);
    onJsonEvent<Sample>(es, 'throughput', (s) => setSamples((old) => [...old, s].slice(-60)));
    onJsonEvent<Traffic>(es, 'traffic', setTraffic);
    onJsonEvent<Closed[]>(es, 'closed', setClosed);
    onJsonEvent<State>(es, 'state', setState);
    return () => {
      es.close();
      setLive('closed');
    };
  }, [loggedIn, reload, setState, sessionEnded]);
}

/** The gateway did not answer: ask /api/session until it does, then re-read everything (or
 *  ask for a login when its sessions are gone, i.e. it restarted). */
function useReconnect(down: boolean, setDown: (d: boolean) => void, reload: () => void, sessionEnded: () => void) {
  useEffect(() => {
    if (!down) return;
    const timer = setInterval(() => {
      fetch('/api/session', { credentials: 'same-origin' })
        .then((r) => r.json() as Promise<{ authenticated: boolean }>)
        .then((s) => {
          setDown(false);
          if (!s.authenticated) sessionEnded();
          else void reload();
        })
        .catch(() => {
          /* still down */
        });
    }, RETRY_MS);
    return () => clearInterval(timer);
  }, [down, reload, sessionEnded]);
}

/** The gateway's state as last read (or pushed), and the problem when reading it failed. */
function useGatewayState() {
  const [state, setStateRaw] = useState<State | null>(null);
  const [loadError, setLoadError] = useState<Problem | null>(null);
  const setState = useCallback((s: State) => {
    if (s && typeof s === 'object' && 'enabled' in s) setStateRaw(s);
  }, []);
  const reload = useCallback(async () => {
    try {
      setState(await get<State>('/api/state'));
      setLoadError(null);
    } catch (e) {
      if (e instanceof ApiError && (e.status === 401 || e.status === 0)) return; // handled by the banners
      setLoadError({ field: '', message: (e as Error).message, status: e instanceof ApiError ? e.status : 0 });
    }
  }, [setState]);

  return { state, setStateRaw, setState, loadError, reload };
}

function App() {
  const { lang, theme, setLang, setTheme } = usePrefs();
  const [auth, setAuth] = useState<Auth>('unknown');
  const [down, setDown] = useState(false);
  const [page, setPage] = useState<Page>(pageFromHash());
  const { state, setStateRaw, setState, loadError, reload } = useGatewayState();
  const feed = useLiveFeed();
  const { clear: clearFeed, setConns } = feed;
  const mainRef = useRef<HTMLElement>(null);

  // A session that ended (401 anywhere, e.g. after a gateway restart): forget what was shown.
  const sessionEnded = useCallback(() => {
    setCsrf('');
    setStateRaw(null);
    clearFeed();
    setAuth((a) => (a === 'in' ? 'expired' : a));
  }, [clearFeed]);

  useEffect(() => {
    setApiHandlers({ unauthorized: sessionEnded, unreachable: () => setDown(true), changed: () => void reload() });
    get<{ authenticated: boolean; csrf?: string }>('/api/session')
      .then((s) => {
        if (s.authenticated && s.csrf) setCsrf(s.csrf);
        setAuth(s.authenticated ? 'in' : 'out');
      })
      .catch(() => setAuth('out'));
    const onHash = () => setPage(pageFromHash());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, [reload, sessionEnded]);

  useEffect(() => {
    if (down) setConns([]);
  }, [down]);
  useReconnect(down, setDown, reload, sessionEnded);
  useEventStream(auth === 'in', feed, reload, setState, sessionEnded);

  // Move focus to the page heading on navigation (keyboard and screen-reader users).
  useEffect(() => {
    mainRef.current?.querySelector<HTMLElement>('h1')?.focus();
  }, [page]);

  useEffect(() => {
    document.title = t('app.title');
  }, [lang]);

  const prefs = <Prefs lang={lang} theme={theme} setLang={setLang} setTheme={setTheme} />;
  if (auth === 'unknown') return <p class="loading">{t('app.loading')}</p>;
  if (auth === 'out' || auth === 'expired') {
    return (
      <Login
        prefs={prefs}
        notice={auth === 'expired' ? t('session.ended') : ''}
        onLogin={(csrf) => {
          setCsrf(csrf);
          setDown(false);
          setAuth('in');
        }}
      />
    );
  }

  const logout = async () => {
    try {
      await post('/api/logout');
    } catch {
      /* logged out anyway */
    }
    setCsrf('');
    setStateRaw(null);
    setAuth('out');
  };

  const ctx = state ? { state, setState, reload } : null;
  return (
    <Shell ctx={ctx} page={page} down={down} loadError={loadError} feed={feed} mainRef={mainRef}>
      <TopBar state={state} page={page} prefs={prefs} logout={logout} />
    </Shell>
  );
}

/** The logged-in page: the top bar (children), the gateway-down banner, the page. */
function Shell(props: {
  ctx: AppCtx | null;
  page: Page;
  down: boolean;
  loadError: Problem | null;
  feed: LiveFeed;
  mainRef: Ref<HTMLElement>;
  children: ComponentChildren;
}) {
  const { ctx, page, down, loadError, feed, mainRef } = props;
  return (
    <>
      <a class="skip" href="#main">
        {t('app.skip')}
      </a>
      {props.children}
      {down ? (
        <p class="banner bad" role="alert" id="gateway-down">
          {t('conn.down')}
        </p>
      ) : null}
      <main id="main" ref={mainRef}>
        <h1 tabIndex={-1}>{t(`nav.${page}` as Key)}</h1>
        {loadError ? (
          <div class="error" role="alert">
            {t('state.loadFailed')} <ErrorText p={loadError} />
          </div>
        ) : null}
        {!ctx ? <p class="loading">{t('app.loading')}</p> : <PageView page={page} ctx={ctx} feed={feed} />}
      </main>
    </>
  );
}

/** Brand with the on/off pill, the page links, language and theme, log out. */
function TopBar(props: { state: State | null; page: Page; prefs: ComponentChildren; logout: () => void }) {
  const { state, page } = props;
  const pill = state ? (state.enabled ? (state.applied ? 'on' : 'warn') : 'off') : '';
  return (
    <header class="top">
      <div class="brand">
        <span class="logo" aria-hidden="true">
          ⇄
        </span>
        <span class="wide-only">tranproxy</span>
        {state ? (
          <span class={`pill ${pill}`} id="switch-pill" data-state={pill}>
            {t(pill === 'on' ? 'pill.on' : pill === 'warn' ? 'pill.notApplied' : 'pill.off')}
          </span>
        ) : null}
      </div>
      <nav aria-label={t('nav.label')}>
        <ul>
          {PAGES.map((p) => (
            <li key={p}>
              <a href={`#/${p}`} aria-current={p === page ? 'page' : undefined}>
                {t(`nav.${p}` as Key)}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      {props.prefs}
      <button type="button" class="ghost small" id="logout" onClick={props.logout}>
        {t('top.logout')}
      </button>
    </header>
  );
}

function PageView({ page, ctx, feed }: { page: Page; ctx: AppCtx; feed: LiveFeed }) {
  switch (page) {
    case 'settings':
      return <Settings {...ctx} />;
    case 'nodes':
      return <Nodes {...ctx} />;
    case 'rules':
      return <Rules {...ctx} />;
    case 'dns':
      return <Dns {...ctx} />;
    case 'live': {
      const { conns, samples, live, traffic, closed } = feed;
      return <Live conns={conns} samples={samples} live={live} traffic={traffic} closed={closed} />;
    }
    case 'logs':
      return <Logs />;
    default:
      return <Check {...ctx} />;
  }
}

render(<App />, document.getElementById('app')!);
