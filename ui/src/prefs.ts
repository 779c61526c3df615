// The reader's choices kept in localStorage: language (default from navigator.languages) and
// theme (default: the system's prefers-color-scheme). Applied to <html> (lang, data-theme).
import { pickLang, setLang, type Lang } from './i18n';

export type Theme = 'light' | 'dark';
const LANG_KEY = 'tpx-lang';
const THEME_KEY = 'tpx-theme';

function stored(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}
function store(key: string, v: string): void {
  try {
    localStorage.setItem(key, v);
  } catch {
    /* private mode: not remembered */
  }
}

export function initialLang(): Lang {
  return pickLang(stored(LANG_KEY), navigator.languages?.length ? navigator.languages : [navigator.language]);
}

export function applyLang(l: Lang, remember: boolean): void {
  setLang(l);
  if (remember) store(LANG_KEY, l);
  document.documentElement.lang = l === 'zh' ? 'zh-CN' : 'en';
}

const systemTheme = (): Theme => (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');

/** The remembered theme, else the system's. */
export function initialTheme(): Theme {
  const s = stored(THEME_KEY);
  return s === 'dark' || s === 'light' ? s : systemTheme();
}

/** Only a chosen theme is written to <html>; without it the CSS follows the system. */
export function applyTheme(th: Theme, remember: boolean): void {
  if (remember) store(THEME_KEY, th);
  if (remember || stored(THEME_KEY)) document.documentElement.dataset.theme = th;
}
