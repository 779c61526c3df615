import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { ApiError, post } from '../api';
import { t } from '../i18n';
import { ErrorText, rich, type Problem } from '../ui';

export function Login({
  onLogin,
  notice,
  prefs,
}: {
  onLogin: (csrf: string) => void;
  notice: string;
  prefs: ComponentChildren;
}) {
  const [password, setPassword] = useState('');
  const [error, setError] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const r = await post<{ csrf: string }>('/api/login', { password });
      setPassword('');
      onLogin(r.csrf);
    } catch (err) {
      setError({
        field: 'password',
        message: (err as Error).message,
        status: err instanceof ApiError ? err.status : 0,
      });
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="login" id="main">
      <form class="card" onSubmit={submit} aria-labelledby="login-h" noValidate>
        <div class="card-head">
          <h1 id="login-h">
            <span class="logo" aria-hidden="true">
              ⇄
            </span>{' '}
            {t('login.heading')}
          </h1>
          {prefs}
        </div>
        {notice ? (
          <p class="notice" role="alert" id="session-ended">
            {notice}
          </p>
        ) : null}
        <div class={`field${error ? ' invalid' : ''}`}>
          <label for="f-password">{t('login.password')}</label>
          <input
            id="f-password"
            name="password"
            type="password"
            autocomplete="current-password"
            required
            autoFocus
            value={password}
            aria-invalid={error ? 'true' : undefined}
            aria-describedby="f-password-err"
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
          <div class="field-error" id="f-password-err" data-for="password" role="alert">
            {error ? <ErrorText p={error} /> : null}
          </div>
        </div>
        <button type="submit" class="primary" disabled={busy || !password}>
          {busy ? t('login.busy') : t('login.submit')}
        </button>
        <p class="hint">{rich('login.hint', { cmd: <code>tranproxy console passwd</code> })}</p>
      </form>
    </main>
  );
}
