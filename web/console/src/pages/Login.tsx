import { FormEvent, useState } from 'react';
import { ApiError, sendJson, setCsrf } from '../api/client';
import type { Me } from '../App';

interface LoginAnswer {
  csrf?: string;
  csrf_token?: string;
  user?: Me;
  username?: string;
  type?: string;
}

export function Login({ onLogin }: { onLogin: (me: Me) => void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      const a = await sendJson<LoginAnswer>('POST', '/auth/login', { username, password });
      setCsrf(a.csrf ?? a.csrf_token ?? '');
      onLogin(a.user ?? { username: a.username ?? username, type: a.type });
    } catch (err) {
      setError(err instanceof ApiError ? err.lines.join(' — ') : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="login">
      <form onSubmit={submit} aria-label="Log in">
        <h1>CAP console</h1>
        <label htmlFor="username">User name</label>
        <input id="username" autoComplete="username" value={username} onChange={(e) => setUsername(e.target.value)} autoFocus required />
        <label htmlFor="password">Password</label>
        <input id="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
        {error && (
          <div className="problem error" role="alert">
            {error}
          </div>
        )}
        <button className="primary" type="submit" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
        <p className="muted">
          The first administrator's password is CAP_ADMIN_PASSWORD, or the one the console printed at its first start.
        </p>
      </form>
    </div>
  );
}
