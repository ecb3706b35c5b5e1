// The console UI: login, then the pages in the navigation bar. Paths are real URLs (the
// console answers every UI path with index.html).
import { ReactNode, useEffect, useState } from 'react';
import { ApiError, getJson, sendJson, setCsrf, setUnauthorizedHandler } from './api/client';
import { Login } from './pages/Login';
import { LocalEditorPage } from './pages/LocalEditor';
import { Link, navigate, usePath } from './router';
import { AgentsPage, AgentPage } from './pages/Agents';
import { RepositoriesPage, RepositoryPage, ConfigurationPage, RuleSetEditorPage } from './pages/Repositories';
import { ExtensionsPage } from './pages/Extensions';
import { VaultPage } from './pages/Vault';
import { UsersPage } from './pages/Users';
import { AuditPage } from './pages/Audit';

export interface Me {
  username: string;
  type?: string;
}

const NAV: [string, string][] = [
  ['/', 'Agents'],
  ['/repositories', 'Repositories'],
  ['/extensions', 'Extensions'],
  ['/vault', 'Vault'],
  ['/users', 'Users'],
  ['/audit', 'Audit log'],
];

function match(path: string, pattern: string): Record<string, string> | null {
  const p = path.split('/').filter(Boolean);
  const q = pattern.split('/').filter(Boolean);
  if (p.length !== q.length) return null;
  const out: Record<string, string> = {};
  for (let i = 0; i < q.length; ++i) {
    if (q[i].startsWith(':')) out[q[i].slice(1)] = decodeURIComponent(p[i]);
    else if (q[i] !== p[i]) return null;
  }
  return out;
}

function Page({ path }: { path: string }): ReactNode {
  let m;
  if (path === '/' || path === '/agents') return <AgentsPage />;
  if ((m = match(path, '/agents/:id'))) return <AgentPage id={m.id} />;
  if (path === '/repositories') return <RepositoriesPage />;
  if ((m = match(path, '/repositories/:repo'))) return <RepositoryPage repo={m.repo} />;
  if ((m = match(path, '/repositories/:repo/configurations/:name'))) return <ConfigurationPage repo={m.repo} name={m.name} />;
  if ((m = match(path, '/repositories/:repo/configurations/:name/rulesets/:rs')))
    return <RuleSetEditorPage repo={m.repo} name={m.name} ruleSet={m.rs} />;
  if (path === '/extensions') return <ExtensionsPage />;
  if (path === '/vault') return <VaultPage />;
  if (path === '/users') return <UsersPage />;
  if (path === '/audit') return <AuditPage />;
  return (
    <div className="empty-state">
      <p>There is no page at {path}.</p>
      <Link to="/">Go to the agents</Link>
    </div>
  );
}

export function App() {
  const path = usePath();
  const [me, setMe] = useState<Me | null | undefined>(undefined);

  useEffect(() => {
    setUnauthorizedHandler(() => setMe(null));
    // A new tab has the session cookie but not the CSRF token: /auth/me gives it again.
    getJson<Me & { csrf_token?: string }>('/auth/me')
      .then((m) => {
        if (m.csrf_token) setCsrf(m.csrf_token);
        setMe(m);
      })
      .catch(() => setMe(null));
  }, []);

  // The offline editor needs no console.
  const local = match(path, '/local') ?? match(path, '/local/:rs');
  if (local) return <LocalEditorPage ruleSet={local.rs ?? 'main'} />;

  if (me === undefined) return <div className="loading">Loading…</div>;
  if (me === null)
    return (
      <Login
        onLogin={(u) => {
          setMe(u);
          if (path === '/login') navigate('/', true);
        }}
      />
    );

  const logout = async () => {
    try {
      await sendJson('POST', '/auth/logout');
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
    }
    setCsrf('');
    setMe(null);
  };

  return (
    <div className="app">
      <header className="topbar">
        <span className="brand">CAP console</span>
        <nav aria-label="Main">
          {NAV.map(([to, label]) => (
            <Link key={to} to={to} className={(to === '/' ? path === '/' || path.startsWith('/agents') : path.startsWith(to)) ? 'active' : ''}>
              {label}
            </Link>
          ))}
        </nav>
        <span className="user">
          {me.username}
          <button className="link" onClick={() => void logout()}>
            Log out
          </button>
        </span>
      </header>
      <main>
        <Page path={path} />
      </main>
    </div>
  );
}
