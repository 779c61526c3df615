import { useState } from 'preact/hooks';
import { ApiError, post } from '../api';

export function Login({ onLogin }: { onLogin: (csrf: string) => void }) {
  const [password, setPassword] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      const r = await post<{ csrf: string }>('/api/login', { password });
      setPassword('');
      onLogin(r.csrf);
    } catch (err) {
      const st = err instanceof ApiError ? err.status : 0;
      setError(
        st === 401 ? 'Wrong password.' : st === 429 ? `Too many attempts: ${(err as Error).message}. Wait a minute.` : (err as Error).message,
      );
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="login" id="main">
      <form class="card" onSubmit={submit} aria-labelledby="login-h" noValidate>
        <h1 id="login-h"><span class="logo" aria-hidden="true">⇄</span> tranproxy console</h1>
        <div class={'field' + (error ? ' invalid' : '')}>
          <label for="f-password">Password</label>
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
          <p class="field-error" id="f-password-err" data-for="password" role="alert">{error}</p>
        </div>
        <button type="submit" class="primary" disabled={busy || !password}>{busy ? 'Logging in…' : 'Log in'}</button>
        <p class="hint">Set the password with <code>tranproxy console passwd</code>.</p>
      </form>
    </main>
  );
}
