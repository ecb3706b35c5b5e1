// Repositories: the tree of configurations with their rule sets and files; a
// configuration's settings form, revision history with diff and restore; the rule-set
// editor page with save and deploy.
import { FormEvent, useCallback, useEffect, useRef, useState } from 'react';
import { loadCatalogue } from '../api/catalogue';
import { ApiError, getJson, request, seg, sendJson } from '../api/client';
import { configPath, loadConfiguration, RevisionMeta, saveConfiguration, validateConfiguration } from '../api/repositories';
import { Empty, ErrorBox, Loading, useData } from '../components/common';
import { Editor } from '../editor/Editor';
import { Catalogue } from '../model/catalogue';
import { ConfigurationDoc, Manifest, newConfiguration } from '../model/configuration';
import { Diagnostic, mapServerErrors } from '../model/validate';
import { Link, navigate, setNavigationGuard } from '../router';
import { downloadBytes, formatTime } from '../util';
import { DeployDialog } from './DeployDialog';
import { Agent, statsByNode } from './Agents';
import { listFrom } from '../util';

interface RepoSummary {
  name: string;
  description?: string;
  configurations?: number;
}

export function RepositoriesPage() {
  const repos = useData(() => getJson<{ repositories: RepoSummary[] }>('/repositories'), []);
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [error, setError] = useState<unknown>();
  const create = async (e: FormEvent) => {
    e.preventDefault();
    try {
      await sendJson('POST', '/repositories', { name, description });
      navigate(`/repositories/${encodeURIComponent(name)}`);
    } catch (err) {
      setError(err);
    }
  };
  const list = repos.data?.repositories ?? [];
  return (
    <div className="page">
      <h2>Repositories</h2>
      <ErrorBox error={repos.error} />
      {repos.loading && !repos.data && <Loading what="the repositories" />}
      {repos.data && list.length === 0 && <Empty>No repositories yet. Create one below to hold configurations.</Empty>}
      {list.length > 0 && (
        <ul className="tree" data-testid="repositories">
          {list.map((r) => (
            <li key={r.name}>
              <Link to={`/repositories/${encodeURIComponent(r.name)}`}>{r.name}</Link> <span className="muted">{r.description} · {r.configurations ?? 0} configurations</span>
            </li>
          ))}
        </ul>
      )}
      <h3>New repository</h3>
      <form className="inline-form" onSubmit={create} aria-label="New repository">
        <label>
          Name
          <input value={name} onChange={(e) => setName(e.target.value)} required pattern="[A-Za-z0-9_][A-Za-z0-9._-]*" />
        </label>
        <label>
          Description
          <input value={description} onChange={(e) => setDescription(e.target.value)} />
        </label>
        <button type="submit">Create</button>
      </form>
      <ErrorBox error={error} />
    </div>
  );
}

function ConfigurationNode({ repo, name, latest }: { repo: string; name: string; latest?: RevisionMeta }) {
  const [open, setOpen] = useState(false);
  const [cfg, setCfg] = useState<ConfigurationDoc>();
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    if (open && !cfg) loadConfiguration(repo, name).then((c) => setCfg(c.doc), setError);
  }, [open, cfg, repo, name]);
  const base = `/repositories/${encodeURIComponent(repo)}/configurations/${encodeURIComponent(name)}`;
  return (
    <li>
      <button className="link" aria-expanded={open} onClick={() => setOpen(!open)}>
        {open ? '▾' : '▸'}
      </button>{' '}
      <Link to={base}>{name}</Link> <span className="muted">revision {latest?.revision} · {latest?.author} · {formatTime(latest?.created_at)}</span>
      {open && (
        <ul>
          <ErrorBox error={error} />
          {!cfg && !error && <li className="muted">loading…</li>}
          {cfg &&
            Object.keys(cfg.rulesets).map((rs) => (
              <li key={rs}>
                ▣ <Link to={`${base}/rulesets/${encodeURIComponent(rs)}`}>{rs}</Link>
                {rs === cfg.manifest.ruleset && <span className="badge">entry</span>}
              </li>
            ))}
          {cfg &&
            Object.keys(cfg.files).map((f) => (
              <li key={f} className="muted">
                🗎 {f}
              </li>
            ))}
        </ul>
      )}
    </li>
  );
}

export function RepositoryPage({ repo }: { repo: string }) {
  const data = useData(() => getJson<{ name: string; description: string; configurations: { name: string; latest: RevisionMeta }[] }>(seg('repositories', repo)), [repo]);
  const [name, setName] = useState('');
  const [error, setError] = useState<unknown>();
  const create = async (e: FormEvent) => {
    e.preventDefault();
    try {
      await saveConfiguration(repo, name, newConfiguration(name), 'created');
      navigate(`/repositories/${encodeURIComponent(repo)}/configurations/${encodeURIComponent(name)}/rulesets/main`);
    } catch (err) {
      setError(err);
    }
  };
  const cfgs = data.data?.configurations ?? [];
  return (
    <div className="page">
      <p>
        <Link to="/repositories">Repositories</Link> / {repo}
      </p>
      <h2>{repo}</h2>
      <p className="muted">{data.data?.description}</p>
      <ErrorBox error={data.error} />
      {data.data && cfgs.length === 0 && <Empty>This repository has no configurations yet. Create one below.</Empty>}
      {cfgs.length > 0 && (
        <ul className="tree" data-testid="configurations">
          {cfgs.map((c) => (
            <ConfigurationNode key={c.name} repo={repo} name={c.name} latest={c.latest} />
          ))}
        </ul>
      )}
      <h3>New configuration</h3>
      <form className="inline-form" onSubmit={create} aria-label="New configuration">
        <label>
          Name
          <input value={name} onChange={(e) => setName(e.target.value)} required pattern="[A-Za-z0-9_][A-Za-z0-9._-]*" data-testid="new-configuration-name" />
        </label>
        <button type="submit">Create</button>
      </form>
      <ErrorBox error={error} />
    </div>
  );
}

/** An object field edited as NAME = VALUE lines. */
function KeyValueField({ label, value, onChange, hint }: { label: string; value: Record<string, unknown> | undefined; onChange: (v: Record<string, unknown>) => void; hint: string }) {
  const toText = (v?: Record<string, unknown>) => Object.entries(v ?? {}).map(([k, x]) => `${k} = ${typeof x === 'string' ? x : JSON.stringify(x)}`).join('\n');
  const [text, setText] = useState(toText(value));
  const [problem, setProblem] = useState('');
  const id = `kv-${label.replace(/\W/g, '')}`;
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <textarea
        id={id}
        rows={3}
        className="mono"
        value={text}
        onChange={(e) => setText(e.target.value)}
        onBlur={() => {
          const out: Record<string, unknown> = {};
          for (const [i, line] of text.split('\n').entries()) {
            if (!line.trim()) continue;
            const eq = line.indexOf('=');
            if (eq < 1) return setProblem(`line ${i + 1}: write NAME = VALUE`);
            const raw = line.slice(eq + 1).trim();
            let v: unknown = raw;
            if (/^-?\d+(\.\d+)?$|^(true|false|null)$|^[[{"]/.test(raw))
              try {
                v = JSON.parse(raw);
              } catch {
                v = raw;
              }
            out[line.slice(0, eq).trim()] = v;
          }
          setProblem('');
          onChange(out);
        }}
      />
      <div className="hint">{hint}</div>
      {problem && <div className="problem error">{problem}</div>}
    </div>
  );
}

function SettingsForm({ repo, name, doc, onSaved }: { repo: string; name: string; doc: ConfigurationDoc; onSaved: () => void }) {
  const [m, setM] = useState<Manifest>(doc.manifest);
  const [error, setError] = useState<unknown>();
  const [ok, setOk] = useState('');
  useEffect(() => setM(doc.manifest), [doc]);
  const names = Object.keys(doc.rulesets);
  const rsSelect = (key: 'ruleset' | 'content_ruleset' | 'startup_ruleset' | 'completion_ruleset', label: string, optional: boolean) => (
    <div className="field">
      <label htmlFor={`m-${key}`}>{label}</label>
      <select id={`m-${key}`} value={(m[key] as string) ?? ''} onChange={(e) => setM({ ...m, [key]: e.target.value || (optional ? null : '') })}>
        {optional && <option value="">none</option>}
        {names.map((n) => (
          <option key={n}>{n}</option>
        ))}
      </select>
    </div>
  );
  const save = async (e: FormEvent) => {
    e.preventDefault();
    try {
      const clean = { ...m };
      for (const k of ['origin', 'description'] as const) if (!clean[k]) delete clean[k];
      const a = await saveConfiguration(repo, name, { ...doc, manifest: clean }, 'settings');
      setError(undefined);
      setOk(a.unchanged ? 'Nothing changed.' : `Saved as revision ${a.revision}.`);
      onSaved();
    } catch (err) {
      setOk('');
      setError(err);
    }
  };
  return (
    <form onSubmit={save} className="settings" aria-label="Configuration settings">
      <div className="field">
        <label htmlFor="m-description">Description</label>
        <input id="m-description" value={m.description ?? ''} onChange={(e) => setM({ ...m, description: e.target.value })} />
      </div>
      {rsSelect('ruleset', 'Entry rule set', false)}
      {rsSelect('content_ruleset', 'Content rule set', true)}
      {rsSelect('startup_ruleset', 'Startup rule set', true)}
      {rsSelect('completion_ruleset', 'Completion rule set', true)}
      <div className="field">
        <label htmlFor="m-origin">Origin (proxy mode)</label>
        <input id="m-origin" placeholder="http://127.0.0.1:9000" value={m.origin ?? ''} onChange={(e) => setM({ ...m, origin: e.target.value })} />
      </div>
      <div className="field">
        <label htmlFor="m-performance">Performance data</label>
        <select id="m-performance" value={m.performance ?? 'timings'} onChange={(e) => setM({ ...m, performance: e.target.value as Manifest['performance'] })}>
          <option value="off">off</option>
          <option value="counts">counts</option>
          <option value="timings">timings</option>
        </select>
      </div>
      <KeyValueField label="Modes" value={m.modes} onChange={(v) => setM({ ...m, modes: v as Record<string, string> })} hint="MODE = rule set, one a line" />
      <KeyValueField label="Globals" value={m.globals} onChange={(v) => setM({ ...m, globals: v })} hint="NAME = value, one a line (numbers and JSON stay typed; ${env:NAME} allowed)" />
      <KeyValueField
        label="Databases"
        value={Object.fromEntries(Object.entries(m.databases ?? {}).map(([k, v]) => [k, v.url]))}
        onChange={(v) => setM({ ...m, databases: Object.fromEntries(Object.entries(v).map(([k, url]) => [k, { url: String(url) }])) })}
        hint="NAME = postgresql://… or sqlite:///path or ${env:CAP_DB_URL}"
      />
      <button className="primary" type="submit">
        Save settings
      </button>
      {ok && <span className="status ok">{ok}</span>}
      <ErrorBox error={error} />
    </form>
  );
}

function History({ repo, name, onRestored }: { repo: string; name: string; onRestored: () => void }) {
  const revs = useData(() => getJson<{ revisions: RevisionMeta[] }>(`${configPath(repo, name)}/revisions`), [repo, name]);
  const [diff, setDiff] = useState<{ from: number; to: number; files: { path: string; change: string; diff: string }[] }>();
  const [error, setError] = useState<unknown>();
  const list = revs.data?.revisions ?? [];
  return (
    <section>
      <ErrorBox error={revs.error ?? error} />
      {list.length > 0 && (
        <table className="grid" data-testid="revisions">
          <thead>
            <tr>
              <th>Revision</th>
              <th>When</th>
              <th>By</th>
              <th>Message</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            {list.map((r, i) => (
              <tr key={r.revision}>
                <td>{r.revision}</td>
                <td>{formatTime(r.created_at)}</td>
                <td>{r.author}</td>
                <td>{r.message}</td>
                <td className="row">
                  {i + 1 < list.length && (
                    <button
                      onClick={() =>
                        getJson<typeof diff>(`${configPath(repo, name)}/diff?from=${list[i + 1].revision}&to=${r.revision}`).then(setDiff, setError)
                      }
                    >
                      Diff with {list[i + 1].revision}
                    </button>
                  )}
                  {i > 0 && (
                    <button
                      onClick={async () => {
                        try {
                          await sendJson('POST', `${configPath(repo, name)}/revisions/${r.revision}/restore`);
                          revs.reload();
                          onRestored();
                        } catch (e) {
                          setError(e);
                        }
                      }}
                    >
                      Restore
                    </button>
                  )}
                  <button
                    onClick={async () => {
                      try {
                        const res = await request('GET', `${configPath(repo, name)}/revisions/${r.revision}/zip`);
                        downloadBytes(new Uint8Array(await res.arrayBuffer()), `${name}-r${r.revision}.zip`, 'application/zip');
                      } catch (e) {
                        setError(e);
                      }
                    }}
                  >
                    Zip
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {diff && (
        <div className="diff" data-testid="diff">
          <h4>
            Revision {diff.from} → {diff.to}
          </h4>
          {diff.files.length === 0 && <Empty>The two revisions hold the same files.</Empty>}
          {diff.files.map((f) => (
            <div key={f.path}>
              <h5>
                {f.path} <span className="muted">{f.change}</span>
              </h5>
              <pre>
                {f.diff.split('\n').map((line, i) => (
                  <div key={i} className={line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : ''}>
                    {line}
                  </div>
                ))}
              </pre>
            </div>
          ))}
        </div>
      )}
    </section>
  );
}

export function ConfigurationPage({ repo, name }: { repo: string; name: string }) {
  const cfg = useData(() => loadConfiguration(repo, name), [repo, name]);
  const [tab, setTab] = useState<'rulesets' | 'settings' | 'history'>('rulesets');
  const [deploy, setDeploy] = useState(false);
  const base = `/repositories/${encodeURIComponent(repo)}/configurations/${encodeURIComponent(name)}`;
  return (
    <div className="page">
      <p>
        <Link to="/repositories">Repositories</Link> / <Link to={`/repositories/${encodeURIComponent(repo)}`}>{repo}</Link> / {name}
      </p>
      <h2>
        {name} {cfg.data && <span className="muted">revision {cfg.data.revision}</span>}{' '}
        {cfg.data && (
          <button className="primary" onClick={() => setDeploy(true)}>
            Deploy…
          </button>
        )}
      </h2>
      <ErrorBox error={cfg.error} />
      <div className="tabs" role="tablist">
        {(['rulesets', 'settings', 'history'] as const).map((t) => (
          <button key={t} role="tab" aria-selected={tab === t} className={tab === t ? 'active' : ''} onClick={() => setTab(t)}>
            {t === 'rulesets' ? 'Rule sets and files' : t[0].toUpperCase() + t.slice(1)}
          </button>
        ))}
      </div>
      {tab === 'rulesets' && cfg.data && (
        <ul className="tree">
          {Object.keys(cfg.data.doc.rulesets).map((rs) => (
            <li key={rs}>
              ▣ <Link to={`${base}/rulesets/${encodeURIComponent(rs)}`}>{rs}</Link> {rs === cfg.data!.doc.manifest.ruleset && <span className="badge">entry</span>}{' '}
              <span className="muted">{Object.keys(cfg.data!.doc.rulesets[rs].rules).length} nodes</span>
            </li>
          ))}
          {Object.entries(cfg.data.doc.files).map(([f, b]) => (
            <li key={f} className="muted">
              🗎 {f} ({b.length} bytes)
            </li>
          ))}
        </ul>
      )}
      {tab === 'settings' && cfg.data && <SettingsForm repo={repo} name={name} doc={cfg.data.doc} onSaved={cfg.reload} />}
      {tab === 'history' && <History repo={repo} name={name} onRestored={cfg.reload} />}
      {deploy && cfg.data && <DeployDialog configuration={`${repo}/${name}`} revision={cfg.data.revision} onClose={() => setDeploy(false)} />}
    </div>
  );
}

export function RuleSetEditorPage({ repo, name, ruleSet }: { repo: string; name: string; ruleSet: string }) {
  const [loaded, setLoaded] = useState<{ doc: ConfigurationDoc; revision: number }>();
  const [catalogue, setCatalogue] = useState<Catalogue>();
  const [error, setError] = useState<unknown>();
  const [serverProblems, setServerProblems] = useState<Record<string, Diagnostic[]>>({});
  const [dirty, setDirty] = useState(false);
  const [deploy, setDeploy] = useState(false);
  // Performance data of one agent drawn on the nodes (runs and average inline time).
  const [agents, setAgents] = useState<Agent[]>([]);
  const [timingsFrom, setTimingsFrom] = useState('');
  const [stats, setStats] = useState<Record<string, Record<string, { count: number; avg_ms: number }>>>();
  useEffect(() => {
    getJson<unknown>('/agents').then((a) => setAgents(listFrom<Agent>(a, 'agents')), () => setAgents([]));
  }, []);
  useEffect(() => {
    if (!timingsFrom) return setStats(undefined);
    getJson<Parameters<typeof statsByNode>[0]>(`${seg('agents', timingsFrom)}/stats`).then((s) => setStats(statsByNode(s)), setError);
  }, [timingsFrom]);
  useEffect(() => {
    loadConfiguration(repo, name).then(setLoaded, setError);
    loadCatalogue().then(setCatalogue, setError);
  }, [repo, name]);
  useEffect(() => {
    setNavigationGuard(() => (dirty && !location.pathname.startsWith(`/repositories/${encodeURIComponent(repo)}/configurations/${encodeURIComponent(name)}/rulesets/`) ? 'Leave the editor? Your changes are not saved.' : undefined));
    const before = (e: BeforeUnloadEvent) => {
      if (dirty) e.preventDefault();
    };
    window.addEventListener('beforeunload', before);
    return () => {
      setNavigationGuard(undefined);
      window.removeEventListener('beforeunload', before);
    };
  }, [dirty, repo, name]);
  // The console validates as you edit, with the engine itself (expression syntax included),
  // half a second after the last change; only the newest answer counts.
  const timer = useRef<ReturnType<typeof setTimeout>>(undefined);
  const seq = useRef(0);
  const validateLater = useCallback((c: ConfigurationDoc) => {
    clearTimeout(timer.current);
    timer.current = setTimeout(() => {
      const n = ++seq.current;
      validateConfiguration(c).then(
        (v) => {
          if (n !== seq.current) return;
          const byFile: Record<string, Diagnostic[]> = {};
          for (const rs of Object.keys(c.rulesets)) {
            const f = `rulesets/${rs}.json`;
            byFile[f] = mapServerErrors([...v.errors, ...v.warnings], f);
          }
          setServerProblems(byFile);
        },
        () => undefined, // the editor's own checks still run; saving reports what is wrong
      );
    }, 500);
  }, []);
  useEffect(() => () => clearTimeout(timer.current), []);
  const base = `/repositories/${encodeURIComponent(repo)}/configurations/${encodeURIComponent(name)}`;
  if (error) return <ErrorBox error={error} />;
  if (!loaded || !catalogue) return <Loading what="the rule set" />;
  return (
    <div className="editor-page">
      <div className="crumbs">
        <Link to="/repositories">Repositories</Link> / <Link to={`/repositories/${encodeURIComponent(repo)}`}>{repo}</Link> / <Link to={base}>{name}</Link> / {ruleSet}{' '}
        <span className="muted">revision {loaded.revision}</span>
      </div>
      <Editor
        config={loaded.doc}
        catalogue={catalogue}
        ruleSet={ruleSet}
        serverProblems={serverProblems}
        onDirty={setDirty}
        onChange={validateLater}
        onOpenRuleSet={(rs) => navigate(`${base}/rulesets/${encodeURIComponent(rs)}`)}
        onSave={async (c) => {
          try {
            const a = await saveConfiguration(repo, name, c);
            setServerProblems({});
            setLoaded((l) => (l ? { doc: l.doc, revision: a.revision } : l));
            const warn = a.warnings?.length ? ` (${a.warnings.length} warning${a.warnings.length > 1 ? 's' : ''})` : '';
            return a.unchanged ? `No change since revision ${a.revision}` : `Saved as revision ${a.revision}${warn}`;
          } catch (e) {
            if (e instanceof ApiError && e.status === 422) {
              const byFile: Record<string, Diagnostic[]> = {};
              for (const rs of Object.keys(c.rulesets)) byFile[`rulesets/${rs}.json`] = mapServerErrors(e.details, `rulesets/${rs}.json`);
              setServerProblems(byFile);
              throw new Error(`Not saved: ${e.details.length} error${e.details.length === 1 ? '' : 's'} — ${e.details.slice(0, 2).join('; ')}`);
            }
            throw e instanceof ApiError ? new Error(e.lines.join(' — ')) : e;
          }
        }}
        stats={stats}
        toolbarExtra={() => (
          <>
          <select aria-label="Timings from agent" value={timingsFrom} onChange={(e) => setTimingsFrom(e.target.value)} title="Show an agent's runs and inline time on the nodes">
            <option value="">no timings</option>
            {agents.map((a) => (
              <option key={a.id} value={a.id}>
                timings: {a.id}
              </option>
            ))}
          </select>
          <button onClick={() => setDeploy(true)} disabled={dirty} title={dirty ? 'Save first: deploy sends a saved revision' : 'Deploy the saved revision'} data-testid="deploy-open">
            Deploy…
          </button>
          </>
        )}
      />
      {deploy && <DeployDialog configuration={`${repo}/${name}`} revision={loaded.revision} onClose={() => setDeploy(false)} />}
    </div>
  );
}
