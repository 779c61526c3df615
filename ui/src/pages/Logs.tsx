import { useEffect, useState } from 'preact/hooks';
import { t, type Key } from '../i18n';
import { Section } from '../ui';

type Level = 'debug' | 'info' | 'warn' | 'error';
interface LogEntry {
  seq: number;
  t: number;
  level: Level;
  text: string;
  pid?: number;
}
interface LogPage {
  entries: LogEntry[];
  next: number;
  gap: boolean;
}

/** Lines the page keeps (the gateway keeps its own bounded ring). */
const KEEP = 1000;
const WAIT_S = 20;
const RETRY_MS = 2000;

/** Long-polls GET /api/logs with the filters; restarts from the ring's start when they change. */
function useLogTail(level: Level, q: string): { lines: LogEntry[]; gap: boolean; running: boolean } {
  const [lines, setLines] = useState<LogEntry[]>([]);
  const [gap, setGap] = useState(false);
  const [running, setRunning] = useState(false);
  useEffect(() => {
    const ac = new AbortController();
    let since = 0;
    setLines([]);
    setGap(false);
    const loop = async (): Promise<void> => {
      while (!ac.signal.aborted) {
        const qs = new URLSearchParams({ since: String(since), level, wait: since ? String(WAIT_S) : '0' });
        if (q.trim()) qs.set('q', q.trim());
        try {
          const res = await fetch(`/api/logs?${qs}`, { credentials: 'same-origin', signal: ac.signal });
          if (!res.ok) throw new Error(`HTTP ${res.status}`);
          const page = (await res.json()) as LogPage;
          since = page.next;
          setRunning(true);
          if (page.gap) setGap(true);
          if (page.entries.length) setLines((old) => [...page.entries.reverse(), ...old].slice(0, KEEP));
        } catch {
          if (ac.signal.aborted) return;
          setRunning(false);
          await new Promise((r) => setTimeout(r, RETRY_MS));
        }
      }
    };
    void loop();
    return () => ac.abort();
  }, [level, q]);
  return { lines, gap, running };
}

const time = (ms: number) => new Date(ms).toTimeString().slice(0, 8);

export function Logs() {
  const [level, setLevel] = useState<Level>('info');
  const [typed, setTyped] = useState('');
  const [q, setQ] = useState('');
  // The search is the server's: ask again once typing pauses.
  useEffect(() => {
    const timer = setTimeout(() => setQ(typed), 300);
    return () => clearTimeout(timer);
  }, [typed]);
  const { lines, gap, running } = useLogTail(level, q);
  return (
    <Section title={t('logs.title')} id="logs">
      <p class="hint">{t('logs.hint')}</p>
      <div class="logs-filters">
        <div class="field">
          <label for="f-log-level">{t('logs.level')}</label>
          <select id="f-log-level" value={level} onChange={(e) => setLevel(e.currentTarget.value as Level)}>
            {(['debug', 'info', 'warn', 'error'] as const).map((l) => (
              <option key={l} value={l}>
                {t(`logs.atLeast.${l}` as Key)}
              </option>
            ))}
          </select>
        </div>
        <div class="field filter">
          <label for="f-log-q">{t('logs.search')}</label>
          <input
            id="f-log-q"
            type="search"
            value={typed}
            placeholder={t('logs.searchPlaceholder')}
            onInput={(e) => setTyped(e.currentTarget.value)}
          />
        </div>
        <span class={`live-dot ${running ? 'open' : 'connecting'}`} id="logs-state">
          {t(running ? 'live.state.open' : 'live.state.connecting')}
        </span>
      </div>
      {gap ? <p class="muted">{t('logs.gap')}</p> : null}
      {lines.length === 0 ? (
        <p class="empty" id="logs-empty">
          {q || level !== 'debug' ? t('logs.noMatch') : t('logs.none')}
        </p>
      ) : (
        <ol class="logs" aria-live="polite" data-count={lines.length}>
          {lines.map((e) => (
            <li key={e.seq} data-level={e.level} data-seq={e.seq}>
              <time class="muted">{time(e.t)}</time>{' '}
              <span class={`lvl ${e.level}`}>{t(`logs.lvl.${e.level}` as Key)}</span>{' '}
              <span class="mono text">{e.text}</span>
            </li>
          ))}
        </ol>
      )}
    </Section>
  );
}
