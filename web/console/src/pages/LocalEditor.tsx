// The editor without a console: a configuration kept in this browser, opened from and
// saved to a zip on disk (the zip capctl validates, runs and deploys).
import { useEffect, useState } from 'react';
import { loadCatalogue } from '../api/catalogue';
import { Editor } from '../editor/Editor';
import { Catalogue } from '../model/catalogue';
import { ConfigurationDoc, newConfiguration, readConfigurationZip, writeConfigurationZip } from '../model/configuration';
import { navigate } from '../router';
import { downloadBytes, bytesToBase64, base64ToBytes } from '../util';

const KEY = 'cap.local.configuration';

function loadLocal(): ConfigurationDoc {
  const raw = localStorage.getItem(KEY);
  if (raw) {
    try {
      return readConfigurationZip(base64ToBytes(raw));
    } catch {
      // a damaged copy: start over
    }
  }
  return newConfiguration('local');
}

export function LocalEditorPage({ ruleSet }: { ruleSet: string }) {
  const [catalogue, setCatalogue] = useState<Catalogue | null>(null);
  const [error, setError] = useState('');
  const [config, setConfig] = useState<ConfigurationDoc>(loadLocal);
  useEffect(() => {
    loadCatalogue().then(setCatalogue, (e: Error) => setError(e.message));
  }, []);
  if (error) return <div className="problem error">{error}</div>;
  if (!catalogue) return <div className="loading">Loading the catalogue…</div>;
  return (
    <div className="app">
      <header className="topbar">
        <span className="brand">CAP rule editor (offline)</span>
        <span className="muted">kept in this browser; download the zip for capctl</span>
      </header>
      <main>
        <Editor
          config={config}
          catalogue={catalogue}
          ruleSet={ruleSet}
          onOpenRuleSet={(rs) => navigate(`/local/${encodeURIComponent(rs)}`)}
          onSave={async (c) => {
            localStorage.setItem(KEY, bytesToBase64(writeConfigurationZip(c)));
            return 'Saved in this browser';
          }}
          toolbarExtra={(current) => (
            <>
              <button onClick={() => downloadBytes(writeConfigurationZip(current()), `${current().manifest.name}.zip`, 'application/zip')} data-testid="download-zip">
                Download zip
              </button>
              <label className="button">
                Open zip…
                <input
                  type="file"
                  accept=".zip,application/zip"
                  hidden
                  onChange={async (e) => {
                    const f = e.target.files?.[0];
                    if (!f) return;
                    try {
                      setConfig(readConfigurationZip(new Uint8Array(await f.arrayBuffer())));
                    } catch (err) {
                      alert((err as Error).message);
                    }
                  }}
                />
              </label>
            </>
          )}
        />
      </main>
    </div>
  );
}
