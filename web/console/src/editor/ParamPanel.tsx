// The side panel: the selected node's id, doc, type-aware parameter inputs with their
// problems inline, comment and actions; with nothing selected, the rule set itself.
import { useEffect, useState } from 'react';
import { ParamSpec, RuleSpec } from '../model/catalogue';
import { Json, RuleNodeDoc, RuleSetDoc } from '../model/ruleset';
import { Diagnostic } from '../model/validate';

const EXPRESSION_HELP =
  "Expressions: literals ('text', 12, true, null), variables (URI, HEADERS['user-agent'], ITEMS[0]), " +
  '== != < <= > >=, and or not, + - * / %, and functions: contains, startsWith, endsWith, lower, upper, ' +
  'trim, len, matches, replace, split, join, number, string, json, now. ${env:NAME} reads the environment, ' +
  '${vault:NAME.field} the vault.';
const TEMPLATE_HELP = 'A template: ${expr} parts are replaced by the value of the expression, e.g. Hello, ${name}!';

/** The text an input shows for a stored value. */
function display(v: Json | undefined, type: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (type === 'number' || type === 'boolean') return String(v);
  return JSON.stringify(v, null, typeof v === 'object' ? 2 : 0);
}

/** The value stored for what was typed: numbers stay numbers, JSON stays JSON. */
export function parseInput(text: string, type: string): Json | undefined {
  if (text === '') return undefined;
  switch (type) {
    case 'number':
      return text.trim() !== '' && !Number.isNaN(Number(text)) ? Number(text) : text;
    case 'boolean':
      return text === 'true' ? true : text === 'false' ? false : text;
    case 'list':
    case 'map':
    case 'any':
      if (/^\s*[[{"\d-]|^\s*(true|false|null)\s*$/.test(text))
        try {
          return JSON.parse(text) as Json;
        } catch {
          return text;
        }
      return text;
    default:
      return text;
  }
}

function ParamInput({
  nodeId,
  spec,
  value,
  problems,
  onChange,
}: {
  nodeId: string;
  spec: ParamSpec;
  value: Json | undefined;
  problems: Diagnostic[];
  onChange: (v: Json | undefined) => void;
}) {
  const [text, setText] = useState(display(value, spec.type));
  useEffect(() => setText(display(value, spec.type)), [value, spec.type, nodeId]);
  const id = `param-${nodeId}-${spec.name}`;
  const placeholder = spec.default !== null && spec.default !== undefined ? `default: ${JSON.stringify(spec.default)}` : spec.required ? 'required' : '';
  const commit = (t: string) => {
    setText(t);
    onChange(parseInput(t, spec.type));
  };
  let input;
  if (spec.choices.length) {
    input = (
      <select id={id} value={text} onChange={(e) => commit(e.target.value)}>
        <option value="">{placeholder || '—'}</option>
        {spec.choices.map((c) => (
          <option key={c} value={c}>
            {c}
          </option>
        ))}
        {text && !spec.choices.includes(text) && <option value={text}>{text}</option>}
      </select>
    );
  } else if (spec.type === 'boolean') {
    input = (
      <select id={id} value={text} onChange={(e) => commit(e.target.value)}>
        <option value="">{placeholder || '—'}</option>
        <option value="true">true</option>
        <option value="false">false</option>
        {text && text !== 'true' && text !== 'false' && <option value={text}>{text}</option>}
      </select>
    );
  } else if (spec.type === 'list' || spec.type === 'map' || spec.type === 'any' || (spec.type === 'string' && text.length > 40)) {
    input = (
      <textarea id={id} rows={spec.type === 'string' || spec.type === 'any' ? 3 : 4} value={text} placeholder={placeholder} spellCheck={false} onChange={(e) => commit(e.target.value)} />
    );
  } else {
    input = (
      <input
        id={id}
        type="text"
        inputMode={spec.type === 'number' ? 'decimal' : undefined}
        className={spec.type === 'expression' || spec.type === 'variable' ? 'mono' : ''}
        value={text}
        placeholder={placeholder}
        spellCheck={false}
        onChange={(e) => commit(e.target.value)}
      />
    );
  }
  const help =
    spec.type === 'expression' ? EXPRESSION_HELP : spec.type === 'string' ? TEMPLATE_HELP : spec.type === 'variable' ? 'A variable name (not evaluated).' : spec.type === 'list' ? 'A JSON list, or a template that yields one.' : spec.type === 'map' ? 'A JSON object, or a template that yields one.' : spec.type === 'any' ? 'Any JSON value; strings are templates.' : '';
  return (
    <div className={`field ${problems.some((p) => p.severity === 'error') ? 'invalid' : ''}`}>
      <label htmlFor={id}>
        {spec.name} <span className="muted">{spec.type}{spec.required ? ' · required' : ''}</span>
      </label>
      {input}
      {spec.doc && <div className="hint">{spec.doc}</div>}
      {help && (
        <details className="hint">
          <summary>help</summary>
          {help}
        </details>
      )}
      {problems.map((p, i) => (
        <div key={i} className={`problem ${p.severity}`} role="alert">
          {p.message}
        </div>
      ))}
    </div>
  );
}

interface NodePanelProps {
  id: string;
  node: RuleNodeDoc;
  spec?: RuleSpec;
  isStart: boolean;
  problems: Diagnostic[];
  onParam: (name: string, v: Json | undefined) => void;
  onComment: (c: string) => void;
  onRename: (to: string) => string | undefined;
  onStart: () => void;
  onDelete: () => void;
  onOpenRuleSet: (name: string) => void;
  onAddCase: (name: string) => void;
  /** The node's chain points, the other nodes' ids, and wiring without a mouse. */
  chainPoints: string[];
  nodeIds: string[];
  onWire: (cp: string, target: string) => void;
  onUnwire: (cp: string, index: number) => void;
}

/** Each chain point with the nodes it runs, in order; add or remove wires from the keyboard. */
function ChainPoints({ id, node, chainPoints, nodeIds, onWire, onUnwire }: Pick<NodePanelProps, 'id' | 'node' | 'chainPoints' | 'nodeIds' | 'onWire' | 'onUnwire'>) {
  if (!chainPoints.length) return null;
  return (
    <div className="field">
      <label>Chain points</label>
      {chainPoints.map((cp) => {
        const raw = node.then?.[cp];
        const list = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
        return (
          <div key={cp} className="chain-point" data-testid={`chain-${cp}`}>
            <code>{cp}</code> →{' '}
            {list.length === 0 && <span className="muted">nothing</span>}
            {list.map((t, i) => (
              <span key={`${t}-${i}`} className="wire-chip">
                {t}
                <button className="link" aria-label={`remove the wire from ${cp} to ${t}`} onClick={() => onUnwire(cp, i)}>
                  ✕
                </button>
              </span>
            ))}
            <select
              aria-label={`wire ${cp} to a node`}
              value=""
              onChange={(e) => e.target.value && onWire(cp, e.target.value)}
            >
              <option value="">+ wire to…</option>
              {nodeIds
                .filter((n) => n !== id && !list.includes(n))
                .map((n) => (
                  <option key={n} value={n}>
                    {n}
                  </option>
                ))}
            </select>
          </div>
        );
      })}
    </div>
  );
}

export function NodePanel(p: NodePanelProps) {
  const [idText, setIdText] = useState(p.id);
  const [idError, setIdError] = useState('');
  const [caseName, setCaseName] = useState('');
  useEffect(() => {
    setIdText(p.id);
    setIdError('');
  }, [p.id]);
  const general = p.problems.filter((d) => !d.param || (p.spec && !p.spec.params.some((s) => s.name === d.param)));
  return (
    <aside className="side-panel" aria-label="Node properties" data-testid="node-panel">
      <h3>{p.node.ruleset !== undefined ? `Rule set ${p.node.ruleset}` : p.node.rule}</h3>
      <div className="field">
        <label htmlFor="node-id">Node id</label>
        <input
          id="node-id"
          className="mono"
          value={idText}
          onChange={(e) => setIdText(e.target.value)}
          onBlur={() => setIdError(p.onRename(idText) ?? '')}
          onKeyDown={(e) => e.key === 'Enter' && setIdError(p.onRename(idText) ?? '')}
        />
        {idError && <div className="problem error" role="alert">{idError}</div>}
      </div>
      {p.spec && <p className="doc">{p.spec.doc}</p>}
      {general.map((d, i) => (
        <div key={i} className={`problem ${d.severity}`} role="alert">
          {d.param ? `${d.param}: ` : ''}
          {d.message}
        </div>
      ))}
      {p.spec?.params.map((s) => (
        <ParamInput
          key={s.name}
          nodeId={p.id}
          spec={s}
          value={p.node.with?.[s.name]}
          problems={p.problems.filter((d) => d.param === s.name)}
          onChange={(v) => p.onParam(s.name, v)}
        />
      ))}
      <ChainPoints id={p.id} node={p.node} chainPoints={p.chainPoints} nodeIds={p.nodeIds} onWire={p.onWire} onUnwire={p.onUnwire} />
      {p.spec?.user_chain_points && (
        <div className="field">
          <label htmlFor="case-name">Add a case (a chain point)</label>
          <div className="row">
            <input id="case-name" value={caseName} onChange={(e) => setCaseName(e.target.value)} />
            <button
              disabled={!caseName.trim()}
              onClick={() => {
                p.onAddCase(caseName.trim());
                setCaseName('');
              }}
            >
              Add
            </button>
          </div>
        </div>
      )}
      <div className="field">
        <label htmlFor="node-comment">Comment</label>
        <textarea id="node-comment" rows={2} value={p.node.comment ?? ''} onChange={(e) => p.onComment(e.target.value)} />
      </div>
      <div className="row">
        {!p.isStart && <button onClick={p.onStart}>Start here</button>}
        {p.node.ruleset !== undefined && <button onClick={() => p.onOpenRuleSet(p.node.ruleset!)}>Open rule set</button>}
        <button className="danger" onClick={p.onDelete}>
          Delete
        </button>
      </div>
    </aside>
  );
}

interface RuleSetPanelProps {
  doc: RuleSetDoc;
  problems: Diagnostic[];
  onDescription: (d: string) => void;
  onExits: (e: string[]) => void;
  onSelect: (node: string) => void;
}

export function RuleSetPanel({ doc, problems, onDescription, onExits, onSelect }: RuleSetPanelProps) {
  const [exits, setExits] = useState((doc.exits ?? []).join(', '));
  useEffect(() => setExits((doc.exits ?? []).join(', ')), [doc.exits]);
  return (
    <aside className="side-panel" aria-label="Rule set properties" data-testid="ruleset-panel">
      <h3>Rule set {doc.name}</h3>
      <div className="field">
        <label htmlFor="rs-description">Description</label>
        <textarea id="rs-description" rows={2} value={doc.description ?? ''} onChange={(e) => onDescription(e.target.value)} />
      </div>
      <div className="field">
        <label htmlFor="rs-exits">Exits (chain points when used as a rule), comma separated</label>
        <input
          id="rs-exits"
          value={exits}
          onChange={(e) => setExits(e.target.value)}
          onBlur={() => onExits(exits.split(',').map((s) => s.trim()).filter(Boolean))}
        />
      </div>
      <h4>Problems</h4>
      {problems.length === 0 ? (
        <p className="empty" data-testid="no-problems">No problems found.</p>
      ) : (
        <ul className="problem-list" data-testid="problem-list">
          {problems.map((d, i) => (
            <li key={i} className={d.severity}>
              {d.node ? (
                <button className="link" onClick={() => onSelect(d.node)}>
                  {d.node}
                </button>
              ) : (
                'rule set'
              )}
              {d.param ? ` · ${d.param}` : ''}: {d.message}
            </li>
          ))}
        </ul>
      )}
      <p className="muted">Select a node to edit it. Shift-drag selects several; press ? for the keyboard shortcuts.</p>
    </aside>
  );
}
