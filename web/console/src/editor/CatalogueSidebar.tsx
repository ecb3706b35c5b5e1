// The catalogue: rules grouped and searchable, each with its doc; the configuration's
// other rule sets, usable as rules. Drag an entry onto the canvas, or focus it and press
// Enter to add it in the middle of the view.
import { useMemo, useState } from 'react';
import { Catalogue, groupCatalogue, RuleSpec } from '../model/catalogue';

export const DRAG_TYPE = 'application/x-cap-rule';

interface Props {
  catalogue: Catalogue;
  ruleSets: { name: string; exits: string[] }[];
  current: string;
  onAdd: (name: string, kind: 'rule' | 'ruleset') => void;
}

function RuleEntry({ r, open, onToggle, onAdd }: { r: RuleSpec; open: boolean; onToggle: () => void; onAdd: () => void }) {
  return (
    <li className="cat-rule">
      <div
        className="cat-rule-name"
        draggable
        tabIndex={0}
        role="button"
        aria-label={`${r.name}: drag onto the canvas, or press Enter to add`}
        data-testid={`catalogue-${r.name}`}
        onDragStart={(e) => {
          e.dataTransfer.setData(DRAG_TYPE, JSON.stringify({ name: r.name, kind: 'rule' }));
          e.dataTransfer.effectAllowed = 'copy';
        }}
        onKeyDown={(e) => {
          if (e.key === 'Enter') onAdd();
        }}
        onDoubleClick={onAdd}
      >
        <span>{r.name}</span>
        {r.extension && <span className="badge ext">{r.extension}</span>}
        <button className="link" aria-label={`about ${r.name}`} aria-expanded={open} onClick={onToggle}>
          {open ? '▾' : 'i'}
        </button>
      </div>
      {open && (
        <div className="cat-rule-doc">
          <p>{r.doc}</p>
          <p className="muted">chain points: {r.chain_points.length ? r.chain_points.join(', ') : 'none'}{r.user_chain_points ? ', plus one per case' : ''}</p>
          {r.params.length > 0 && (
            <ul>
              {r.params.map((p) => (
                <li key={p.name}>
                  <code>{p.name}</code> <span className="muted">{p.type}{p.required ? ', required' : ''}</span> {p.doc}
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
    </li>
  );
}

export function CatalogueSidebar({ catalogue, ruleSets, current, onAdd }: Props) {
  const [query, setQuery] = useState('');
  const [open, setOpen] = useState<string>('');
  const groups = useMemo(() => groupCatalogue(catalogue, query), [catalogue, query]);
  const others = ruleSets.filter((r) => r.name !== current && r.name.toLowerCase().includes(query.toLowerCase()));
  return (
    <aside className="catalogue" aria-label="Rule catalogue">
      <input
        type="search"
        placeholder="Search rules…"
        aria-label="Search rules"
        value={query}
        onChange={(e) => setQuery(e.target.value)}
        data-testid="catalogue-search"
      />
      {groups.length === 0 && others.length === 0 && <p className="empty">No rule matches “{query}”.</p>}
      {others.length > 0 && (
        <section>
          <h4>Rule sets</h4>
          <ul>
            {others.map((r) => (
              <li key={r.name} className="cat-rule">
                <div
                  className="cat-rule-name ruleset"
                  draggable
                  tabIndex={0}
                  role="button"
                  data-testid={`catalogue-ruleset-${r.name}`}
                  aria-label={`rule set ${r.name}: drag onto the canvas, or press Enter to add`}
                  onDragStart={(e) => {
                    e.dataTransfer.setData(DRAG_TYPE, JSON.stringify({ name: r.name, kind: 'ruleset' }));
                    e.dataTransfer.effectAllowed = 'copy';
                  }}
                  onKeyDown={(e) => e.key === 'Enter' && onAdd(r.name, 'ruleset')}
                  onDoubleClick={() => onAdd(r.name, 'ruleset')}
                  title={`exits: ${r.exits.join(', ') || 'none'}`}
                >
                  <span>▣ {r.name}</span>
                </div>
              </li>
            ))}
          </ul>
        </section>
      )}
      {groups.map((g) => (
        <section key={g.group}>
          <h4>{g.group}</h4>
          <ul>
            {g.rules.map((r) => (
              <RuleEntry
                key={r.name}
                r={r}
                open={open === r.name}
                onToggle={() => setOpen(open === r.name ? '' : r.name)}
                onAdd={() => onAdd(r.name, 'rule')}
              />
            ))}
          </ul>
        </section>
      ))}
    </aside>
  );
}
