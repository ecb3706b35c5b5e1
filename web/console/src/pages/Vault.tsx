// The vault: credential names and field names only; values are write-only.
import { FormEvent, useState } from 'react';
import { getJson, seg, sendJson } from '../api/client';
import { Empty, ErrorBox, useData } from '../components/common';
import { formatTime } from '../util';

interface Credential {
  name: string;
  fields: string[];
  updated_by: string;
  updated_at: string;
}

export function VaultPage() {
  const list = useData(() => getJson<{ credentials: Credential[] }>('/vault'), []);
  const [name, setName] = useState('');
  const [fields, setFields] = useState<{ k: string; v: string }[]>([{ k: '', v: '' }]);
  const [error, setError] = useState<unknown>();
  const [ok, setOk] = useState('');
  const save = async (e: FormEvent) => {
    e.preventDefault();
    setOk('');
    try {
      const named = fields.filter((f) => f.k.trim());
      const body = named.length ? { fields: Object.fromEntries(named.map((f) => [f.k.trim(), f.v])) } : { value: fields[0].v };
      await sendJson('PUT', seg('vault', name), body);
      setOk(`Stored ${name}. Its values cannot be read back, only replaced.`);
      setFields([{ k: '', v: '' }]);
      setError(undefined);
      list.reload();
    } catch (err) {
      setError(err);
    }
  };
  const creds = list.data?.credentials ?? [];
  return (
    <div className="page">
      <h2>Vault</h2>
      <p className="muted">Rules read credentials as ${'{'}vault:NAME{'}'} or ${'{'}vault:NAME.field{'}'}. Values are encrypted, shipped to agents on deploy, and never shown again.</p>
      <ErrorBox error={list.error} />
      {list.data && creds.length === 0 && <Empty>The vault is empty.</Empty>}
      {creds.length > 0 && (
        <table className="grid" data-testid="vault">
          <thead>
            <tr>
              <th>Name</th>
              <th>Fields</th>
              <th>Updated</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            {creds.map((c) => (
              <tr key={c.name}>
                <td>{c.name}</td>
                <td>{c.fields.length ? c.fields.join(', ') : <span className="muted">one value</span>}</td>
                <td>
                  {formatTime(c.updated_at)} by {c.updated_by}
                </td>
                <td>
                  <button onClick={() => setName(c.name)}>Replace…</button>{' '}
                  <button
                    className="danger"
                    onClick={async () => {
                      if (!confirm(`Delete the credential ${c.name}?`)) return;
                      try {
                        await sendJson('DELETE', seg('vault', c.name));
                        list.reload();
                      } catch (e) {
                        setError(e);
                      }
                    }}
                  >
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h3>Store a credential</h3>
      <form onSubmit={save} aria-label="Store a credential" className="settings">
        <div className="field">
          <label htmlFor="v-name">Name</label>
          <input id="v-name" value={name} onChange={(e) => setName(e.target.value)} required />
        </div>
        {fields.map((f, i) => (
          <div className="row" key={i}>
            <input aria-label="Field name" placeholder="field (empty: a single value)" value={f.k} onChange={(e) => setFields(fields.map((x, j) => (j === i ? { ...x, k: e.target.value } : x)))} />
            <input aria-label="Secret value" type="password" autoComplete="new-password" placeholder="value" value={f.v} onChange={(e) => setFields(fields.map((x, j) => (j === i ? { ...x, v: e.target.value } : x)))} />
          </div>
        ))}
        <div className="row">
          <button type="button" onClick={() => setFields([...fields, { k: '', v: '' }])}>
            + Field
          </button>
          <button className="primary" type="submit">
            Store
          </button>
        </div>
        {ok && <div className="status ok">{ok}</div>}
        <ErrorBox error={error} />
      </form>
    </div>
  );
}
