// The extension store: upload a zip (with progress), list versions and where they run.
import { useState } from 'react';
import { ApiError, getJson, upload } from '../api/client';
import { Empty, ErrorBox, useData } from '../components/common';

interface Extension {
  name: string;
  versions: ({ version: string; sha256?: string; uploaded_by?: string; rules?: string[] } | string)[];
  agents?: string[];
}

export function ExtensionsPage() {
  const list = useData(() => getJson<{ extensions: Extension[] }>('/extensions'), []);
  const [progress, setProgress] = useState<number | null>(null);
  const [result, setResult] = useState('');
  const [error, setError] = useState<unknown>();
  const send = async (file: File) => {
    setError(undefined);
    setResult('');
    setProgress(0);
    try {
      const a = await upload<{ name: string; version: string }>('POST', '/extensions', file, 'application/zip', setProgress);
      setResult(`Uploaded ${a.name} ${a.version}. Its rules are now in the editor's catalogue.`);
      list.reload();
    } catch (e) {
      setError(e instanceof ApiError ? e : new Error(String(e)));
    } finally {
      setProgress(null);
    }
  };
  const exts = list.data?.extensions ?? [];
  return (
    <div className="page">
      <h2>Extensions</h2>
      <p className="muted">An extension is a zip with extension.json and one Lua script per rule (see DESIGN §3). Uploaded extensions add their rules to the catalogue and are installed on agents when a configuration that requires them is deployed.</p>
      <label className="button primary">
        Upload an extension zip…
        <input type="file" accept=".zip,application/zip" hidden data-testid="extension-file" onChange={(e) => e.target.files?.[0] && void send(e.target.files[0])} />
      </label>
      {progress !== null && (
        <div className="progress" role="progressbar" aria-valuenow={Math.round(progress * 100)} aria-valuemin={0} aria-valuemax={100}>
          <div style={{ width: `${progress * 100}%` }} />
          <span>{Math.round(progress * 100)}%</span>
        </div>
      )}
      {result && <div className="status ok" role="status">{result}</div>}
      <ErrorBox error={error ?? list.error} />
      {list.data && exts.length === 0 && <Empty>No extensions uploaded yet.</Empty>}
      {exts.length > 0 && (
        <table className="grid" data-testid="extensions">
          <thead>
            <tr>
              <th>Extension</th>
              <th>Versions</th>
              <th>On agents</th>
            </tr>
          </thead>
          <tbody>
            {exts.map((x) => (
              <tr key={x.name}>
                <td>{x.name}</td>
                <td>{x.versions.map((v) => (typeof v === 'string' ? v : v.version)).join(', ')}</td>
                <td>{(x.agents ?? []).join(', ')}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
