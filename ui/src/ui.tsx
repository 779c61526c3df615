// Small shared pieces: a form-action hook that maps server validation errors onto fields,
// labelled fields with their error next to them, errors in plain words with the raw text
// under "Details", and list <-> text helpers.
import { Fragment, type ComponentChildren } from 'preact';
import { useCallback, useRef, useState } from 'preact/hooks';
import { ApiError } from './api';
import { explain, fieldLabel } from './errors';
import { t, type Key } from './i18n';

export const idOf = (name: string) => `f-${name.replace(/[^A-Za-z0-9_-]/g, '_')}`;

/** A problem as the gateway (or the browser) said it; put in words when shown. */
export interface Problem {
  field: string;
  message: string;
  status: number;
}

export interface Action {
  busy: boolean;
  /** Success message (role=status), in the current language. */
  ok: string;
  /** Problems not tied to a field that is on the page (role=alert). */
  errors: Problem[];
  /** Problems shown next to their field. */
  fieldErrors: Problem[];
  /** The raw problems for the field called `name`, '' when none (for `invalid` marks). */
  err(name: string): string;
  /** `okMessage` words the success from the result; it is called at render time (language switches). */
  run<T>(fn: () => Promise<T>, okMessage?: (r: T) => string): Promise<T | undefined>;
  /** Show a problem found in the browser (e.g. JSON that does not parse). */
  fail(p: Problem[]): void;
  clear(): void;
}

/**
 * `isField(name)` says whether the page shows an input called `name`; the server's
 * errors for other fields (and `""`) go into the form-level message.
 */
export function useAction(isField: (field: string) => boolean): Action {
  const [busy, setBusy] = useState(false);
  const [okFn, setOkFn] = useState<(() => string) | null>(null);
  const [errors, setErrors] = useState<Problem[]>([]);
  const [fieldErrors, setFieldErrors] = useState<Problem[]>([]);
  const timer = useRef<number | undefined>(undefined);
  const isFieldRef = useRef(isField);
  isFieldRef.current = isField;

  const clear = useCallback(() => {
    setOkFn(null);
    setErrors([]);
    setFieldErrors([]);
  }, []);

  const run = useCallback(
    async <T,>(fn: () => Promise<T>, okMessage?: (r: T) => string) => {
      setBusy(true);
      clear();
      window.clearTimeout(timer.current);
      try {
        const r = await fn();
        if (okMessage) {
          setOkFn(() => () => okMessage(r));
          timer.current = window.setTimeout(() => setOkFn(null), 6000);
        }
        return r;
      } catch (e) {
        const status = e instanceof ApiError ? e.status : 0;
        if (e instanceof ApiError && e.fields.length) {
          const all = e.fields.map((f) => ({ field: f.field, message: f.message, status }));
          const mine = all.filter((f) => f.field && isFieldRef.current(f.field));
          const rest = all.filter((f) => !mine.includes(f));
          setFieldErrors(mine);
          setErrors(rest);
          // Keyboard and screen-reader users land on the first field to fix.
          const first = mine[0]?.field;
          if (first)
            requestAnimationFrame(() => document.querySelector<HTMLElement>(`[name="${CSS.escape(first)}"]`)?.focus());
        } else {
          setErrors([{ field: '', message: (e as Error).message || String(e), status }]);
        }
        return undefined;
      } finally {
        setBusy(false);
      }
    },
    [clear],
  );

  const fail = useCallback(
    (p: Problem[]) => {
      clear();
      setErrors(p);
    },
    [clear],
  );
  const err = (name: string) =>
    fieldErrors
      .filter((f) => f.field === name)
      .map((f) => f.message)
      .join('; ');
  return { busy, ok: okFn ? okFn() : '', errors, fieldErrors, err, run, fail, clear };
}

const norm = (s: string) => s.toLowerCase().replace(/[\s.。]+$/, '');

/** One problem in plain words, with the gateway's own text one click away. */
export function ErrorText({ p, withField }: { p: Problem; withField?: boolean }) {
  const x = explain(p.message, p.status);
  const text = withField && p.field ? t('err.inField', { field: fieldLabel(p.field), msg: x.text }) : x.text;
  return (
    <span class="err-line">
      <span class="err-text">{text}</span>
      {x.detail && norm(x.detail) !== norm(x.text) ? (
        <details class="err-detail">
          <summary>{t('common.details')}</summary>
          <code>{x.detail}</code>
        </details>
      ) : null}
    </span>
  );
}

/** The form-level success/error lines. Both regions exist always so screen readers hear changes. */
export function FormStatus({ a }: { a: Action }) {
  const onlyFields = a.errors.length === 0 && a.fieldErrors.length > 0;
  return (
    <div class="form-status">
      <p class="ok" role="status" aria-live="polite">
        {a.ok}
      </p>
      <div class="error" role="alert" aria-live="assertive">
        {onlyFields ? t('common.fixFields') : a.errors.map((p, i) => <ErrorText key={i} p={p} withField />)}
      </div>
    </div>
  );
}

export function FieldErr({ name, a }: { name: string; a: Action }) {
  const mine = a.fieldErrors.filter((f) => f.field === name);
  return (
    <div class="field-error" id={`${idOf(name)}-err`} data-for={name} aria-live="polite" hidden={!mine.length}>
      {mine.map((p, i) => (
        <ErrorText key={i} p={p} />
      ))}
    </div>
  );
}

interface InputProps {
  rows?: number;
  placeholder?: string;
  type?: string;
  autoComplete?: string;
  spellcheck?: boolean;
  required?: boolean;
}

/** A labelled input (or textarea) named `name` with its server error right below it. */
export function Field(
  props: {
    name: string;
    label: ComponentChildren;
    a: Action;
    hint?: ComponentChildren;
    multiline?: boolean;
    value: string;
    onInput: (v: string) => void;
  } & InputProps,
) {
  const { name, label, a, hint, multiline, value, onInput, ...rest } = props;
  const id = idOf(name);
  const m = a.err(name);
  const described = [hint ? `${id}-hint` : '', m ? `${id}-err` : ''].filter(Boolean).join(' ') || undefined;
  const common = {
    id,
    name,
    value,
    'aria-invalid': m ? ('true' as const) : undefined,
    'aria-describedby': described,
    onInput: (e: Event) => onInput((e.currentTarget as HTMLInputElement).value),
  };
  return (
    <div class={`field${m ? ' invalid' : ''}`}>
      <label for={id}>{label}</label>
      {multiline ? (
        <textarea {...(rest as object)} {...common} />
      ) : (
        <input type="text" {...(rest as object)} {...common} />
      )}
      {hint ? (
        <p class="hint" id={`${id}-hint`}>
          {hint}
        </p>
      ) : null}
      <FieldErr name={name} a={a} />
    </div>
  );
}

/** "a, b c\nd" -> ["a","b","c","d"] */
export const splitList = (s: string) =>
  s
    .split(/[\s,]+/)
    .map((x) => x.trim())
    .filter(Boolean);
export const splitLines = (s: string) =>
  s
    .split(/\n/)
    .map((x) => x.trim())
    .filter(Boolean);

export function Section(props: { title: string; children: ComponentChildren; id: string }) {
  const hid = `${props.id}-h`;
  return (
    <section class="card" aria-labelledby={hid}>
      <h2 id={hid}>{props.title}</h2>
      {props.children}
    </section>
  );
}

/** The message `key` with its `{name}` places filled by elements (e.g. <code>). */
export function rich(key: Key, parts: Record<string, ComponentChildren>): ComponentChildren[] {
  return t(key)
    .split(/\{(\w+)\}/)
    .map((s, i) => (i % 2 ? <Fragment key={i}>{parts[s]}</Fragment> : s));
}

/** Built-in outbounds in the page's words; node names as written. */
export const outboundLabel = (o: string) => (o === 'direct' || o === 'reject' ? t(`outbound.${o}`) : o);
