import { render } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import './style.css';
import { ApiError, get, post, setApiHandlers, setCsrf, type Closed, type Conn, type State, type Traffic } from './api';
import { t, type Key, type Lang } from './i18n';
import { applyLang, applyTheme, initialLang, initialTheme, type Theme } from './prefs';
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

function App() {
  const [lang, setLangState] = useState<Lang>(initialLang);
  const [theme, setThemeState] = useState<Theme>(initialTheme);
  const [auth, setAuth] = useState<Auth>('unknown');
  const [down, setDown] = useState(false);
  const [page, setPage] = useState<Page>(pageFromHash());
  const [state, setStateRaw] = useState<State | null>(null);
  const [loadError, setLoadError] = useState<Problem | null>(null);
  const [conns, setConns] = useState<Conn[]>([]);
  const [samples, setSamples] = useState<Sample[]>([]);
  const [traffic, setTraffic] = useState<Traffic | null>(null);
  const [closed, setClosed] = useState<Closed[]>([]);
  const [live, setLive] = useState<'connecting' | 'open' | 'closed'>('closed');
  const mainRef = useRef<HTMLElement>(null);

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

  // A session that ended (401 anywhere, e.g. after a gateway restart): forget what was shown.
  const sessionEnded = useCallback(() => {
    setCsrf('');
    setStateRaw(null);
    setConns([]);
    setSamples([]);
    setTraffic(null);
    setClosed([]);
    setAuth((a) => (a === 'in' ? 'expired' : a));
  }, []);

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

  // The gateway did not answer: ask /api/session until it does, then re-read everything (or
  // ask for a login when its sessions are gone, i.e. it restarted).
  useEffect(() => {
    if (!down) return;
    setConns([]);
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

  useEffect(() => {
    if (auth !== 'in') return;
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
    es.addEventListener('connections', (ev) => {
      try {
        setConns(JSON.parse((ev as MessageEvent).data) as Conn[]);
      } catch {
        /* ignore a bad frame */
      }
    });
    es.addEventListener('throughput', (ev) => {
      try {
        const s = JSON.parse((ev as MessageEvent).data) as Sample;
        setSamples((old) => [...old, s].slice(-60));
      } catch {
        /* ignore */
      }
    });
    es.addEventListener('traffic', (ev) => {
      try {
        setTraffic(JSON.parse((ev as MessageEvent).data) as Traffic);
      } catch {
        /* ignore */
      }
    });
    es.addEventListener('closed', (ev) => {
      try {
        setClosed(JSON.parse((ev as MessageEvent).data) as Closed[]);
      } catch {
        /* ignore */
      }
    });
    es.addEventListener('state', (ev) => {
      try {
        setState(JSON.parse((ev as MessageEvent).data) as State);
      } catch {
        /* ignore */
      }
    });
    return () => {
      es.close();
      setLive('closed');
    };
  }, [auth, reload, setState, sessionEnded]);

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
  const pill = state ? (state.enabled ? (state.applied ? 'on' : 'warn') : 'off') : '';
  return (
    <>
      <a class="skip" href="#main">
        {t('app.skip')}
      </a>
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
        {prefs}
        <button type="button" class="ghost small" id="logout" onClick={logout}>
          {t('top.logout')}
        </button>
      </header>
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
        {!ctx ? (
          <p class="loading">{t('app.loading')}</p>
        ) : page === 'settings' ? (
          <Settings {...ctx} />
        ) : page === 'nodes' ? (
          <Nodes {...ctx} />
        ) : page === 'rules' ? (
          <Rules {...ctx} />
        ) : page === 'dns' ? (
          <Dns {...ctx} />
        ) : page === 'live' ? (
          <Live conns={conns} samples={samples} live={live} traffic={traffic} closed={closed} />
        ) : page === 'logs' ? (
          <Logs />
        ) : (
          <Check {...ctx} />
        )}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
