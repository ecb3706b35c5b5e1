// Deploys one revision of a configuration to agents chosen by id or group, one after
// another (each agent's answer shown as it comes) or all at once.
import { useState } from 'react';
import { ApiError, getJson, sendJson } from '../api/client';
import { ErrorBox, Modal, useData } from '../components/common';
import { listFrom } from '../util';
import type { Agent } from './Agents';
import { StatusDot } from './Agents';

interface Result {
  agent: string;
  ok: boolean;
  configuration_id?: string;
  errors?: string[];
  error?: string;
}

type Row = { state: 'waiting' | 'deploying' | 'done'; result?: Result };

export function DeployDialog({ configuration, revision, onClose }: { configuration: string; revision: number; onClose: () => void }) {
  const agents = useData(() => getJson<unknown>('/agents').then((a) => listFrom<Agent>(a, 'agents')), []);
  const [chosen, setChosen] = useState<Set<string>>(new Set());
  const [strategy, setStrategy] = useState<'rolling' | 'parallel'>('rolling');
  const [rows, setRows] = useState<Record<string, Row>>({});
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const list = agents.data ?? [];
  const groups = [...new Set(list.map((a) => a.group).filter(Boolean))] as string[];

  const toggle = (id: string) => {
    const s = new Set(chosen);
    if (s.has(id)) s.delete(id);
    else s.add(id);
    setChosen(s);
  };
  const run = async () => {
    const ids = list.map((a) => a.id).filter((id) => chosen.has(id));
    setBusy(true);
    setError(undefined);
    const state: Record<string, Row> = Object.fromEntries(ids.map((id) => [id, { state: 'waiting' } as Row]));
    setRows({ ...state });
    const post = (agents: string[]) => sendJson<{ id: number; results: Result[] }>('POST', '/deployments', { configuration, revision, agents, strategy });
    const record = (results: Result[]) => {
      for (const r of results) state[r.agent] = { state: 'done', result: r };
      setRows({ ...state });
    };
    const fail = (ids: string[], e: unknown) => {
      const msg = e instanceof ApiError ? e.lines : [String(e)];
      for (const id of ids) state[id] = { state: 'done', result: { agent: id, ok: false, errors: msg } };
      setRows({ ...state });
    };
    try {
      if (strategy === 'rolling') {
        // One request per agent, so each answer shows as soon as it is known; a failure stops the roll.
        for (const id of ids) {
          state[id] = { state: 'deploying' };
          setRows({ ...state });
          try {
            record((await post([id])).results);
          } catch (e) {
            fail([id], e);
          }
          if (!state[id].result?.ok) break;
        }
      } else {
        for (const id of ids) state[id] = { state: 'deploying' };
        setRows({ ...state });
        try {
          record((await post(ids)).results);
        } catch (e) {
          fail(ids, e);
        }
      }
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Modal title={`Deploy ${configuration} revision ${revision}`} onClose={onClose}>
      <ErrorBox error={agents.error ?? error} />
      {agents.data && list.length === 0 && <p className="empty">No agents are defined. Add one on the Agents page first.</p>}
      {list.length > 0 && (
        <>
          <div className="row">
            <button onClick={() => setChosen(new Set(list.map((a) => a.id)))}>All</button>
            {groups.map((g) => (
              <button key={g} onClick={() => setChosen(new Set(list.filter((a) => a.group === g).map((a) => a.id)))}>
                Group {g}
              </button>
            ))}
            <button onClick={() => setChosen(new Set())}>None</button>
          </div>
          <table className="grid" data-testid="deploy-agents">
            <thead>
              <tr>
                <th></th>
                <th>Agent</th>
                <th>Status</th>
                <th>Result</th>
              </tr>
            </thead>
            <tbody>
              {list.map((a) => {
                const row = rows[a.id];
                return (
                  <tr key={a.id} data-testid={`deploy-row-${a.id}`}>
                    <td>
                      <input type="checkbox" aria-label={`deploy to ${a.id}`} checked={chosen.has(a.id)} onChange={() => toggle(a.id)} disabled={busy} />
                    </td>
                    <td>
                      {a.id} <span className="muted">{a.type} {a.group}</span>
                    </td>
                    <td>
                      <StatusDot s={a.status} />
                    </td>
                    <td data-testid={`deploy-result-${a.id}`} className={row?.result ? (row.result.ok ? 'good' : 'bad') : ''}>
                      {!row && ''}
                      {row?.state === 'waiting' && 'waiting'}
                      {row?.state === 'deploying' && <span className="spinner">deploying…</span>}
                      {row?.result?.ok && `deployed: ${row.result.configuration_id ?? 'ok'}`}
                      {row?.result && !row.result.ok && (
                        <ul>
                          {(row.result.errors ?? [row.result.error ?? 'failed']).map((e, i) => (
                            <li key={i}>{e}</li>
                          ))}
                        </ul>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          <div className="row">
            <label>
              <input type="radio" checked={strategy === 'rolling'} onChange={() => setStrategy('rolling')} /> one after another (stops at the first failure)
            </label>
            <label>
              <input type="radio" checked={strategy === 'parallel'} onChange={() => setStrategy('parallel')} /> all at once
            </label>
          </div>
          <div className="row">
            <button className="primary" disabled={busy || chosen.size === 0} onClick={() => void run()} data-testid="deploy-go">
              {busy ? 'Deploying…' : `Deploy to ${chosen.size} agent${chosen.size === 1 ? '' : 's'}`}
            </button>
            <button onClick={onClose}>Close</button>
          </div>
        </>
      )}
    </Modal>
  );
}
