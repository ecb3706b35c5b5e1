// Users and roles: who may do what on which agents and repositories.
import { FormEvent, useState } from 'react';
import { getJson, seg, sendJson } from '../api/client';
import { Empty, ErrorBox, useData } from '../components/common';

interface User {
  username: string;
  type: string;
  roles: string[];
  disabled?: boolean;
}
interface Right {
  resource: string;
  match: string;
  actions: string[];
}
interface Role {
  name: string;
  description: string;
  rights: Right[];
}

export function UsersPage() {
  const users = useData(() => getJson<{ users: User[] }>('/users'), []);
  const roles = useData(() => getJson<{ roles: Role[] }>('/roles'), []);
  const [u, setU] = useState({ username: '', password: '', type: 'user', roles: '' });
  const [r, setR] = useState({ name: '', description: '', rights: '[{"resource": "repository", "match": "*", "actions": ["read", "write"]}]' });
  const [error, setError] = useState<unknown>();
  const addUser = async (e: FormEvent) => {
    e.preventDefault();
    try {
      await sendJson('POST', '/users', { ...u, roles: u.roles.split(',').map((s) => s.trim()).filter(Boolean) });
      setU({ username: '', password: '', type: 'user', roles: '' });
      setError(undefined);
      users.reload();
    } catch (err) {
      setError(err);
    }
  };
  const addRole = async (e: FormEvent) => {
    e.preventDefault();
    try {
      let rights: unknown;
      try {
        rights = JSON.parse(r.rights);
      } catch {
        throw new Error('Rights must be a JSON list of {"resource", "match", "actions"}');
      }
      await sendJson('POST', '/roles', { name: r.name, description: r.description, rights });
      setError(undefined);
      roles.reload();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <div className="page">
      <h2>Users</h2>
      <ErrorBox error={users.error ?? error} />
      {users.data && users.data.users.length === 0 && <Empty>No users.</Empty>}
      {users.data && users.data.users.length > 0 && (
        <table className="grid" data-testid="users">
          <thead>
            <tr>
              <th>User</th>
              <th>Type</th>
              <th>Roles</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            {users.data.users.map((x) => (
              <tr key={x.username}>
                <td>{x.username}</td>
                <td>{x.type}</td>
                <td>{x.roles.join(', ')}</td>
                <td>
                  <button
                    onClick={async () => {
                      try {
                        await sendJson('PUT', seg('users', x.username), { disabled: !x.disabled });
                        users.reload();
                      } catch (e) {
                        setError(e);
                      }
                    }}
                  >
                    {x.disabled ? 'Enable' : 'Disable'}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h3>New user</h3>
      <form className="inline-form" onSubmit={addUser} aria-label="New user">
        <label>
          User name
          <input value={u.username} onChange={(e) => setU({ ...u, username: e.target.value })} required />
        </label>
        <label>
          Password
          <input type="password" autoComplete="new-password" value={u.password} onChange={(e) => setU({ ...u, password: e.target.value })} required />
        </label>
        <label>
          Type
          <select value={u.type} onChange={(e) => setU({ ...u, type: e.target.value })}>
            {['user', 'super', 'security', 'admin'].map((t) => (
              <option key={t}>{t}</option>
            ))}
          </select>
        </label>
        <label>
          Roles
          <input placeholder="comma separated" value={u.roles} onChange={(e) => setU({ ...u, roles: e.target.value })} />
        </label>
        <button type="submit">Add user</button>
      </form>
      <h2>Roles</h2>
      <ErrorBox error={roles.error} />
      {roles.data && roles.data.roles.length === 0 && <Empty>No roles yet. A role grants rights on agents (read, deploy, operate) or repositories (read, write).</Empty>}
      {roles.data && roles.data.roles.length > 0 && (
        <table className="grid">
          <thead>
            <tr>
              <th>Role</th>
              <th>Description</th>
              <th>Rights</th>
            </tr>
          </thead>
          <tbody>
            {roles.data.roles.map((x) => (
              <tr key={x.name}>
                <td>{x.name}</td>
                <td>{x.description}</td>
                <td>
                  {x.rights.map((g, i) => (
                    <div key={i}>
                      {g.resource} {g.match}: {g.actions.join(', ')}
                    </div>
                  ))}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h3>New role</h3>
      <form className="settings" onSubmit={addRole} aria-label="New role">
        <div className="field">
          <label htmlFor="r-name">Name</label>
          <input id="r-name" value={r.name} onChange={(e) => setR({ ...r, name: e.target.value })} required />
        </div>
        <div className="field">
          <label htmlFor="r-desc">Description</label>
          <input id="r-desc" value={r.description} onChange={(e) => setR({ ...r, description: e.target.value })} />
        </div>
        <div className="field">
          <label htmlFor="r-rights">Rights (JSON)</label>
          <textarea id="r-rights" className="mono" rows={3} value={r.rights} onChange={(e) => setR({ ...r, rights: e.target.value })} />
          <div className="hint">resource "agent" (match an id, "group:NAME" or "*"; actions read, deploy, operate) or "repository" (match a name or "*"; actions read, write)</div>
        </div>
        <button type="submit">Add role</button>
      </form>
    </div>
  );
}
