// The audit log: every change, newest first.
import { useState } from 'react';
import { getJson } from '../api/client';
import { Empty, ErrorBox, useData } from '../components/common';
import { formatTime } from '../util';

interface Entry {
  id: number;
  at: string;
  user: string;
  remote: string;
  action: string;
  target: string;
  details: unknown;
}

export function AuditPage() {
  const [limit, setLimit] = useState(100);
  const [filter, setFilter] = useState('');
  const log = useData(() => getJson<{ entries: Entry[] }>(`/audit?limit=${limit}`), [limit]);
  const entries = (log.data?.entries ?? []).filter((e) => !filter || `${e.user} ${e.action} ${e.target}`.toLowerCase().includes(filter.toLowerCase()));
  return (
    <div className="page">
      <h2>Audit log</h2>
      <div className="row">
        <input type="search" placeholder="Filter by user, action or target" aria-label="Filter" value={filter} onChange={(e) => setFilter(e.target.value)} />
        <label>
          Show
          <select value={limit} onChange={(e) => setLimit(Number(e.target.value))}>
            {[100, 500, 1000].map((n) => (
              <option key={n}>{n}</option>
            ))}
          </select>
        </label>
        <button onClick={log.reload}>Refresh</button>
      </div>
      <ErrorBox error={log.error} />
      {log.data && entries.length === 0 && <Empty>No entries{filter ? ' match the filter' : ''}.</Empty>}
      {entries.length > 0 && (
        <table className="grid" data-testid="audit">
          <thead>
            <tr>
              <th>When</th>
              <th>User</th>
              <th>From</th>
              <th>Action</th>
              <th>Target</th>
              <th>Details</th>
            </tr>
          </thead>
          <tbody>
            {entries.map((e) => (
              <tr key={e.id}>
                <td>{formatTime(e.at)}</td>
                <td>{e.user}</td>
                <td>{e.remote}</td>
                <td>{e.action}</td>
                <td>{e.target}</td>
                <td className="mono">{e.details && JSON.stringify(e.details) !== '{}' ? JSON.stringify(e.details) : ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
