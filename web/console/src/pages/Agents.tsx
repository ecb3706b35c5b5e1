// The agents dashboard (live status and drift) and one agent's page: status, deployment
// history, logs with tail and follow, the trace viewer and the performance data.
import { FormEvent, useEffect, useRef, useState } from 'react';
import { getJson, request, seg, sendJson } from '../api/client';
import { Empty, ErrorBox, Loading, useData } from '../components/common';
import { timeClass } from '../editor/RuleNode';
import { Link } from '../router';
import { formatTime, listFrom } from '../util';

export interface AgentStatusView {
  online?: boolean;
  version?: string;
  error?: string;
  configuration?: { name?: string; id?: string; sha256?: string; activated_at?: string } | string | null;
  drift?: boolean | string | null;
  mode?: string;
  checked_at?: string | number;
  [k: string]: unknown;
}

export interface Agent {
  id: string;
  host: string;
  port: number;
  type?: string;
  group?: string;
  status?: AgentStatusView;
}

function configName(s?: AgentStatusView): string {
  const c = s?.configuration;
  if (!c) return '';
  if (typeof c === 'string') return c;
  return [c.name, c.id].filter(Boolean).join(' · ');
}

function driftText(s?: AgentStatusView): string {
  if (!s || s.drift === undefined || s.drift === null || s.drift === false) return '';
  if (typeof s.drift_reason === 'string') return s.drift_reason;
  return typeof s.drift === 'string' ? s.drift : 'differs from what the console deployed';
}

export function StatusDot({ s }: { s?: AgentStatusView }) {
  const state = !s ? 'unknown' : s.online ? 'online' : 'offline';
  return (
    <span className={`dot ${state}`} title={s?.error ?? state}>
      {state}
    </span>
  );
}

/** Polls `load` every `ms` while the page is shown. */
function usePoll<T>(load: () => Promise<T>, ms: number, deps: unknown[]) {
  const d = useData(load, deps);
  useEffect(() => {
    const t = setInterval(d.reload, ms);
    return () => clearInterval(t);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [ms, ...deps]);
  return d;
}

function AddAgent({ onAdded }: { onAdded: () => void }) {
  const [f, setF] = useState({ id: '', host: '127.0.0.1', port: '20001', key: '', type: 'test', group: '' });
  const [error, setError] = useState<unknown>();
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    try {
      await sendJson('POST', '/agents', { ...f, port: Number(f.port) });
      setF({ ...f, id: '', key: '' });
      setError(undefined);
      onAdded();
    } catch (err) {
      setError(err);
    }
  };
  const field = (k: keyof typeof f, label: string, type = 'text') => (
    <label>
      {label}
      <input type={type} value={f[k]} onChange={(e) => setF({ ...f, [k]: e.target.value })} required={k !== 'group'} />
    </label>
  );
  return (
    <form className="inline-form" onSubmit={submit} aria-label="Add an agent">
      {field('id', 'Id')}
      {field('host', 'Host')}
      {field('port', 'Management port')}
      {field('key', 'Management key', 'password')}
      <label>
        Type
        <select value={f.type} onChange={(e) => setF({ ...f, type: e.target.value })}>
          <option value="test">test</option>
          <option value="production">production</option>
        </select>
      </label>
      {field('group', 'Group')}
      <button type="submit">Add agent</button>
      <ErrorBox error={error} />
    </form>
  );
}

export function AgentsPage() {
  const { data, error, reload } = usePoll(() => getJson<unknown>('/agents').then((a) => listFrom<Agent>(a, 'agents')), 3000, []);
  return (
    <div className="page">
      <h2>Agents</h2>
      <ErrorBox error={error} />
      {!data && !error && <Loading what="the agents" />}
      {data && data.length === 0 && <Empty>No agents yet. Add one below with its management address and key.</Empty>}
      {data && data.length > 0 && (
        <table className="grid" data-testid="agents-table">
          <thead>
            <tr>
              <th>Agent</th>
              <th>Status</th>
              <th>Version</th>
              <th>Configuration</th>
              <th>Drift</th>
              <th>Type</th>
              <th>Group</th>
            </tr>
          </thead>
          <tbody>
            {data.map((a) => (
              <tr key={a.id} data-testid={`agent-${a.id}`}>
                <td>
                  <Link to={`/agents/${encodeURIComponent(a.id)}`}>{a.id}</Link>
                  <div className="muted">
                    {a.host}:{a.port}
                  </div>
                </td>
                <td>
                  <StatusDot s={a.status} />
                </td>
                <td>{a.status?.version ?? ''}</td>
                <td>{configName(a.status) || <span className="muted">none</span>}</td>
                <td className={driftText(a.status) ? 'warn' : ''}>{driftText(a.status) || 'in sync'}</td>
                <td>{a.type}</td>
                <td>{a.group}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h3>Add an agent</h3>
      <AddAgent onAdded={reload} />
    </div>
  );
}

function Logs({ id }: { id: string }) {
  const files = useData(() => getJson<unknown>(`${seg('agents', id)}/logs`).then((a) => listFrom<string | { name: string }>(a, 'files')), [id]);
  const names = (files.data ?? []).map((f) => (typeof f === 'string' ? f : f.name)).sort().reverse();
  const [file, setFile] = useState('');
  const [tail, setTail] = useState(200);
  const [follow, setFollow] = useState(false);
  const [text, setText] = useState('');
  const [error, setError] = useState<unknown>();
  const pre = useRef<HTMLPreElement>(null);
  const chosen = file || names[0] || '';
  useEffect(() => {
    if (!chosen) return;
    let live = true;
    const load = () =>
      request('GET', `${seg('agents', id, 'logs', chosen)}?tail=${tail}`)
        .then((r) => r.text())
        .then((t) => {
          if (!live) return;
          setText(t);
          setError(undefined);
          if (follow && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
        }, setError);
    void load();
    const t = follow ? setInterval(load, 2000) : undefined;
    return () => {
      live = false;
      if (t) clearInterval(t);
    };
  }, [id, chosen, tail, follow]);
  return (
    <section>
      <h3>Logs</h3>
      <ErrorBox error={files.error} />
      {files.data && names.length === 0 && <Empty>The agent has no log files yet.</Empty>}
      {names.length > 0 && (
        <div className="row">
          <select aria-label="Log file" value={chosen} onChange={(e) => setFile(e.target.value)}>
            {names.map((n) => (
              <option key={n}>{n}</option>
            ))}
          </select>
          <label>
            last
            <input type="number" min={1} max={100000} value={tail} onChange={(e) => setTail(Math.max(1, Number(e.target.value) || 1))} style={{ width: '6em' }} /> lines
          </label>
          <label>
            <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} /> follow
          </label>
        </div>
      )}
      <ErrorBox error={error} />
      {chosen && (
        <pre className="log" ref={pre} data-testid="log-text">
          {text || '(empty)'}
        </pre>
      )}
    </section>
  );
}

interface TraceEvent {
  kind: string;
  ruleset?: string;
  node?: string;
  detail?: string;
}

interface TraceRecord {
  request: string;
  timestamp_ms?: number;
  status?: number;
  events: TraceEvent[];
  text?: string;
}

function Trace({ id }: { id: string }) {
  const [count, setCount] = useState(5);
  const [error, setError] = useState<unknown>();
  const trace = useData(() => getJson<{ remaining?: number; traces?: TraceRecord[] }>(`${seg('agents', id)}/trace`), [id]);
  const transactions = trace.data?.traces ?? [];
  return (
    <section>
      <h3>Trace</h3>
      <div className="row">
        <label>
          Record the next
          <input type="number" min={1} max={10000} value={count} onChange={(e) => setCount(Number(e.target.value) || 1)} style={{ width: '5em' }} />
          transactions
        </label>
        <button
          onClick={async () => {
            try {
              await sendJson('POST', `${seg('agents', id)}/trace`, { count });
              setError(undefined);
              trace.reload();
            } catch (e) {
              setError(e);
            }
          }}
        >
          Arm the trace
        </button>
        <button onClick={trace.reload}>Refresh</button>
        {trace.data?.remaining ? <span className="muted">{trace.data.remaining} still to record</span> : null}
      </div>
      <ErrorBox error={error ?? trace.error} />
      {trace.data !== undefined && transactions.length === 0 && <Empty>No transactions recorded. Arm the trace, then send requests to the agent.</Empty>}
      {transactions.map((t, i) => (
        <details key={i} className="trace" open={i === transactions.length - 1} data-testid="trace">
          <summary>
            {t.request} → {t.status ? t.status : 'no response'} <span className="muted">{t.timestamp_ms ? formatTime(t.timestamp_ms) : ''}</span>
          </summary>
          <ol className="trace-events">
            {t.events.map((ev, j) => (
              <li key={j} className={`ev-${ev.kind}`}>
                <code>{ev.kind}</code> {ev.ruleset ? `${ev.ruleset}/` : ''}
                {ev.node ?? ''} {ev.detail ? <span className="muted">{ev.detail}</span> : null}
              </li>
            ))}
          </ol>
        </details>
      ))}
    </section>
  );
}

interface NodeStat {
  id: string;
  rule: string;
  count: number;
  inline_ns: number;
  avg_ns: number;
  errors?: number;
}

interface Stats {
  rules?: { requests?: number; performance?: string; rulesets?: { name: string; nodes: NodeStat[] }[] } | null;
}

/** Per rule set and node: runs and average inline milliseconds (for the editor's overlay too). */
export function statsByNode(s: Stats | undefined): Record<string, Record<string, { count: number; avg_ms: number }>> {
  const out: Record<string, Record<string, { count: number; avg_ms: number }>> = {};
  for (const rs of s?.rules?.rulesets ?? []) {
    out[rs.name] = {};
    for (const n of rs.nodes) out[rs.name][n.id] = { count: n.count, avg_ms: n.avg_ns / 1e6 };
  }
  return out;
}

function Performance({ id }: { id: string }) {
  const stats = useData(() => getJson<Stats>(`${seg('agents', id)}/stats`), [id]);
  const sets = stats.data?.rules?.rulesets ?? [];
  const any = sets.some((r) => r.nodes.length > 0);
  return (
    <section>
      <h3>Performance</h3>
      <p className="muted">
        Average inline time per rule: <span className="time-fast">under 10 ms</span>, <span className="time-medium">10–50 ms</span>, <span className="time-slow">over 50 ms</span>.
        {stats.data?.rules ? ` ${stats.data.rules.requests ?? 0} requests; level ${stats.data.rules.performance}.` : ''}
      </p>
      <button onClick={stats.reload}>Refresh</button>
      <ErrorBox error={stats.error} />
      {stats.data !== undefined && !any && <Empty>No performance data: the agent runs no configuration, or none with performance data.</Empty>}
      {any && (
        <table className="grid" data-testid="stats-table">
          <thead>
            <tr>
              <th>Rule set</th>
              <th>Node</th>
              <th>Rule</th>
              <th>Runs</th>
              <th>Errors</th>
              <th>Average inline time</th>
            </tr>
          </thead>
          <tbody>
            {sets.flatMap((rs) =>
              rs.nodes.map((n) => {
                const ms = n.avg_ns / 1e6;
                return (
                  <tr key={`${rs.name}/${n.id}`}>
                    <td>{rs.name}</td>
                    <td>{n.id}</td>
                    <td>{n.rule}</td>
                    <td>{n.count}</td>
                    <td>{n.errors ?? 0}</td>
                    <td className={timeClass(ms)} data-testid={`time-${rs.name}-${n.id}`}>
                      {ms.toFixed(3)} ms
                    </td>
                  </tr>
                );
              }),
            )}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Deployments({ id }: { id: string }) {
  // The console lists every deployment; this agent's are those with a result for it.
  const d = useData(() => getJson<unknown>('/deployments?limit=1000'), [id]);
  const list = listFrom<Record<string, unknown>>(d.data, 'deployments').filter((x) =>
    listFrom<Record<string, unknown>>(x, 'results').some((r) => r.agent === id),
  );
  return (
    <section>
      <h3>Deployment history</h3>
      <ErrorBox error={d.error} />
      {d.data !== undefined && list.length === 0 && <Empty>Nothing was deployed to this agent from the console yet.</Empty>}
      {list.length > 0 && (
        <table className="grid" data-testid="deployments">
          <thead>
            <tr>
              <th>When</th>
              <th>Configuration</th>
              <th>Revision</th>
              <th>By</th>
              <th>Result</th>
            </tr>
          </thead>
          <tbody>
            {list.map((x, i) => {
              const results = listFrom<Record<string, unknown>>(x, 'results');
              const mine = results.find((r) => r.agent === id) ?? x;
              return (
                <tr key={i}>
                  <td>{formatTime(x.created_at)}</td>
                  <td>{String(x.configuration ?? '')}</td>
                  <td>{String(x.revision ?? '')}</td>
                  <td>{String(x.requested_by ?? '')}</td>
                  <td className={mine.ok === false ? 'bad' : ''}>{mine.ok === false ? listFrom<string>(mine, 'errors').join('; ') || String(mine.error ?? 'failed') : String(mine.configuration_id ?? 'ok')}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}

export function AgentPage({ id }: { id: string }) {
  const agent = usePoll(() => getJson<Agent>(seg('agents', id)), 3000, [id]);
  const [tab, setTab] = useState<'status' | 'deployments' | 'logs' | 'trace' | 'performance'>('status');
  const a = agent.data;
  return (
    <div className="page">
      <p>
        <Link to="/">Agents</Link> / {id}
      </p>
      <h2>
        Agent {id} {a && <StatusDot s={a.status} />}
      </h2>
      <ErrorBox error={agent.error} />
      <div className="tabs" role="tablist">
        {(['status', 'deployments', 'logs', 'trace', 'performance'] as const).map((t) => (
          <button key={t} role="tab" aria-selected={tab === t} className={tab === t ? 'active' : ''} onClick={() => setTab(t)}>
            {t[0].toUpperCase() + t.slice(1)}
          </button>
        ))}
      </div>
      {tab === 'status' && a && (
        <section>
          <table className="kv">
            <tbody>
              <tr><th>Address</th><td>{a.host}:{a.port}</td></tr>
              <tr><th>Type / group</th><td>{a.type} {a.group ? `· ${a.group}` : ''}</td></tr>
              <tr><th>Version</th><td>{a.status?.version}</td></tr>
              <tr><th>Configuration</th><td data-testid="agent-configuration">{configName(a.status) || 'none'}</td></tr>
              <tr><th>Drift</th><td>{driftText(a.status) || 'in sync'}</td></tr>
              <tr><th>Mode</th><td>{a.status?.mode ?? ''}</td></tr>
              {a.status?.error && <tr><th>Error</th><td className="bad">{a.status.error}</td></tr>}
            </tbody>
          </table>
          <details>
            <summary>Everything the agent reported</summary>
            <pre>{JSON.stringify(a.status, null, 2)}</pre>
          </details>
        </section>
      )}
      {tab === 'deployments' && <Deployments id={id} />}
      {tab === 'logs' && <Logs id={id} />}
      {tab === 'trace' && <Trace id={id} />}
      {tab === 'performance' && <Performance id={id} />}
    </div>
  );
}
