// Small shared pieces: a form-action hook that maps server validation errors onto fields,
// labelled fields with their error next to them, and list <-> text helpers.
import type { ComponentChildren } from 'preact';
import { useCallback, useRef, useState } from 'preact/hooks';
import { ApiError, type FieldError } from './api';

export const idOf = (name: string) => 'f-' + name.replace(/[^A-Za-z0-9_-]/g, '_');

export interface Action {
  busy: boolean;
  /** Success message (role=status). */
  ok: string;
  /** Error not tied to a field that is on the page (role=alert). */
  error: string;
  fieldErrors: FieldError[];
  /** Error message(s) for the field called `name`, or ''. */
  err(name: string): string;
  run<T>(fn: () => Promise<T>, okMessage?: string | ((r: T) => string)): Promise<T | undefined>;
  clear(): void;
}

/**
 * `isField(name)` says whether the page shows an input called `name`; the server's
 * errors for other fields (and `""`) go into the form-level message.
 */
export function useAction(isField: (field: string) => boolean): Action {
  const [busy, setBusy] = useState(false);
  const [ok, setOk] = useState('');
  const [error, setError] = useState('');
  const [fieldErrors, setFieldErrors] = useState<FieldError[]>([]);
  const timer = useRef<number | undefined>(undefined);
  const isFieldRef = useRef(isField);
  isFieldRef.current = isField;

  const clear = useCallback(() => {
    setOk('');
    setError('');
    setFieldErrors([]);
  }, []);

  const run = useCallback(async <T,>(fn: () => Promise<T>, okMessage?: string | ((r: T) => string)) => {
    setBusy(true);
    setOk('');
    setError('');
    setFieldErrors([]);
    window.clearTimeout(timer.current);
    try {
      const r = await fn();
      const msg = typeof okMessage === 'function' ? okMessage(r) : okMessage;
      if (msg) {
        setOk(msg);
        timer.current = window.setTimeout(() => setOk(''), 6000);
      }
      return r;
    } catch (e) {
      if (e instanceof ApiError && e.fields.length) {
        const mine = e.fields.filter((f) => f.field && isFieldRef.current(f.field));
        const rest = e.fields.filter((f) => !mine.includes(f));
        setFieldErrors(mine);
        setError(rest.length ? rest.map((f) => (f.field ? `${f.field}: ${f.message}` : f.message)).join('; ') : 'Not saved: see the errors next to the fields.');
        // Keyboard and screen-reader users land on the first field to fix.
        const first = mine[0]?.field;
        if (first) requestAnimationFrame(() => document.querySelector<HTMLElement>(`[name="${CSS.escape(first)}"]`)?.focus());
      } else {
        setError((e as Error).message || String(e));
      }
      return undefined;
    } finally {
      setBusy(false);
    }
  }, []);

  const err = (name: string) => fieldErrors.filter((f) => f.field === name).map((f) => f.message).join('; ');
  return { busy, ok, error, fieldErrors, err, run, clear };
}

/** The form-level success/error lines. Both regions exist always so screen readers hear changes. */
export function FormStatus({ a }: { a: Action }) {
  return (
    <div class="form-status">
      <p class="ok" role="status" aria-live="polite">{a.ok}</p>
      <p class="error" role="alert" aria-live="assertive">{a.error}</p>
    </div>
  );
}

export function FieldErr({ name, a }: { name: string; a: Action }) {
  const m = a.err(name);
  return (
    <p class="field-error" id={idOf(name) + '-err'} data-for={name} aria-live="polite" hidden={!m}>
      {m}
    </p>
  );
}

interface InputProps { rows?: number; placeholder?: string; type?: string; autoComplete?: string; spellcheck?: boolean; required?: boolean }

/** A labelled input (or textarea) named `name` with its server error right below it. */
export function Field(props: {
  name: string;
  label: ComponentChildren;
  a: Action;
  hint?: ComponentChildren;
  multiline?: boolean;
  value: string;
  onInput: (v: string) => void;
} & InputProps) {
  const { name, label, a, hint, multiline, value, onInput, ...rest } = props;
  const id = idOf(name);
  const m = a.err(name);
  const described = [hint ? id + '-hint' : '', m ? id + '-err' : ''].filter(Boolean).join(' ') || undefined;
  const common = {
    id,
    name,
    value,
    'aria-invalid': m ? ('true' as const) : undefined,
    'aria-describedby': described,
    onInput: (e: Event) => onInput((e.currentTarget as HTMLInputElement).value),
  };
  return (
    <div class={'field' + (m ? ' invalid' : '')}>
      <label for={id}>{label}</label>
      {multiline ? <textarea {...(rest as object)} {...common} /> : <input type="text" {...(rest as object)} {...common} />}
      {hint ? <p class="hint" id={id + '-hint'}>{hint}</p> : null}
      <FieldErr name={name} a={a} />
    </div>
  );
}

/** "a, b c\nd" -> ["a","b","c","d"] */
export const splitList = (s: string) => s.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
export const splitLines = (s: string) => s.split(/\n/).map((x) => x.trim()).filter(Boolean);

export function Section(props: { title: string; children: ComponentChildren; id?: string }) {
  const hid = (props.id ?? props.title.toLowerCase().replace(/\W+/g, '-')) + '-h';
  return (
    <section class="card" aria-labelledby={hid}>
      <h2 id={hid}>{props.title}</h2>
      {props.children}
    </section>
  );
}
