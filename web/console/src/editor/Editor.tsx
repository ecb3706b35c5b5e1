// The rule-set editor: catalogue on the left, canvas in the middle, side panel on the
// right. It edits one configuration (all its rule sets); each rule set has its own undo
// history. What it saves is the DESIGN §3 JSON with node positions.
import {
  Background,
  Connection,
  Controls,
  Edge,
  MiniMap,
  NodeChange,
  EdgeChange,
  ReactFlow,
  ReactFlowProvider,
  applyEdgeChanges,
  applyNodeChanges,
  useReactFlow,
} from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import { DragEvent, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { Catalogue, findRule } from '../model/catalogue';
import { ConfigurationDoc, exitsByRuleSet } from '../model/configuration';
import { History } from '../model/history';
import { autoLayout } from '../model/layout';
import {
  addChainPoint,
  addNode,
  connect,
  copyNodes,
  deleteNodes,
  disconnect,
  emptyRuleSet,
  Fragment,
  Json,
  moveNodes,
  pasteFragment,
  renameNode,
  RuleSetDoc,
  ruleSetExits,
  serializeRuleSet,
  setComment,
  setExits,
  setParam,
  setRuleSetField,
  setStart,
} from '../model/ruleset';
import { Diagnostic, validateRuleSet } from '../model/validate';
import { CatalogueSidebar, DRAG_TYPE } from './CatalogueSidebar';
import { buildEdges, buildNodes, parseEdgeId, RuleFlowNode } from './flow';
import { NodePanel, RuleSetPanel } from './ParamPanel';
import { RuleNode } from './RuleNode';

const nodeTypes = { rule: RuleNode };
const CLIPBOARD_KEY = 'cap.clipboard';

export interface EditorProps {
  config: ConfigurationDoc;
  catalogue: Catalogue;
  ruleSet: string;
  /** Opens another rule set of the configuration (double-click on a rule-set node). */
  onOpenRuleSet: (name: string) => void;
  /** Saves the whole configuration; resolves with a message or rejects with diagnostics. */
  onSave: (config: ConfigurationDoc) => Promise<string>;
  /** Problems the console reported for rule set files, by file (rulesets/NAME.json). */
  serverProblems?: Record<string, Diagnostic[]>;
  /** Reports whether there are unsaved changes. */
  onDirty?: (dirty: boolean) => void;
  /** Called with the whole configuration after every change (for validation by the console). */
  onChange?: (config: ConfigurationDoc) => void;
  /** Extra toolbar content (deploy button, download). */
  toolbarExtra?: (current: () => ConfigurationDoc) => React.ReactNode;
  stats?: Record<string, Record<string, { count: number; avg_ms: number }>>;
}

const SHORTCUTS: [string, string][] = [
  ['Ctrl+Z', 'undo'],
  ['Ctrl+Shift+Z, Ctrl+Y', 'redo'],
  ['Ctrl+C / Ctrl+V', 'copy / paste the selected nodes (also between rule sets)'],
  ['Ctrl+X', 'cut'],
  ['Ctrl+A', 'select every node'],
  ['Delete, Backspace', 'delete the selection'],
  ['Ctrl+S', 'save'],
  ['Shift+L', 'auto layout'],
  ['Enter on a catalogue rule', 'add it to the canvas'],
  ['Shift+drag, Ctrl+click', 'select several'],
  ['?', 'this list'],
];

function isTyping(e: { target: EventTarget | null }): boolean {
  const t = e.target as HTMLElement;
  return t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable;
}

function EditorInner(props: EditorProps) {
  const { catalogue, ruleSet, onOpenRuleSet } = props;
  const rf = useReactFlow();
  const histories = useRef(new Map<string, History<RuleSetDoc>>());
  const saved = useRef(new Map<string, string>());
  const configRef = useRef(props.config);
  const [version, setVersion] = useState(0);
  const bump = () => setVersion((v) => v + 1);
  const [status, setStatus] = useState<{ kind: 'ok' | 'error' | 'busy'; text: string } | null>(null);
  const [showHelp, setShowHelp] = useState(false);
  const [newName, setNewName] = useState('');
  const wrapper = useRef<HTMLDivElement>(null);

  // A new configuration from outside (loaded, or saved and reloaded) starts the histories over.
  useEffect(() => {
    configRef.current = props.config;
    histories.current = new Map();
    saved.current = new Map(Object.entries(props.config.rulesets).map(([n, rs]) => [n, serializeRuleSet(rs)]));
    bump();
  }, [props.config]);

  const history = (name: string): History<RuleSetDoc> => {
    let h = histories.current.get(name);
    if (!h) {
      h = new History(configRef.current.rulesets[name] ?? emptyRuleSet(name));
      histories.current.set(name, h);
    }
    return h;
  };
  const currentConfig = useCallback((): ConfigurationDoc => {
    const rulesets = { ...configRef.current.rulesets };
    for (const [n, h] of histories.current) rulesets[n] = h.present;
    return { ...configRef.current, rulesets };
  }, []);
  const dirty = () => {
    const c = currentConfig();
    const names = new Set([...Object.keys(c.rulesets), ...saved.current.keys()]);
    for (const n of names) if (!c.rulesets[n] || saved.current.get(n) !== serializeRuleSet(c.rulesets[n])) return true;
    return false;
  };

  const exists = ruleSet in configRef.current.rulesets || histories.current.has(ruleSet);
  const h = history(ruleSet);
  const doc = h.present;
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const config = useMemo(() => currentConfig(), [version, currentConfig]);
  const exits = useMemo(() => exitsByRuleSet(config), [config]);
  const file = `rulesets/${ruleSet}.json`;
  const local = useMemo(() => validateRuleSet(doc, catalogue, exits), [doc, catalogue, exits]);
  // The console's problems add what the editor cannot check itself (expression syntax, rule
  // checks done when a rule compiles); where the editor found a problem on the same node and
  // parameter, its own (current) message stands.
  const problems = useMemo(() => {
    const fromServer = (props.serverProblems?.[file] ?? []).filter((d) => !local.some((l) => l.node === d.node && l.param === d.param));
    return [...local, ...fromServer];
  }, [local, props.serverProblems, file]);

  useEffect(() => props.onDirty?.(dirty()));
  const onChange = props.onChange;
  useEffect(() => onChange?.(config), [config, onChange]);

  const [nodes, setNodes] = useState<RuleFlowNode[]>([]);
  // Fit the view once per opened rule set, when it has nodes; never while editing.
  const fitted = useRef('');
  useEffect(() => {
    // An empty rule set keeps the default view: nodes land where they are dropped.
    fitted.current = Object.keys(history(ruleSet).present.rules).length ? '' : ruleSet;
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [ruleSet, props.config]);
  useEffect(() => {
    if (fitted.current === ruleSet || !nodes.length || !nodes.every((n) => n.measured)) return;
    fitted.current = ruleSet;
    void rf.fitView({ padding: 0.2, maxZoom: 1 });
  }, [nodes, ruleSet, rf]);
  const [edges, setEdges] = useState<Edge[]>([]);
  useEffect(() => {
    setNodes((prev) => buildNodes(doc, catalogue, exits, problems, prev, props.stats?.[ruleSet]));
    setEdges((prev) => buildEdges(doc, prev));
  }, [doc, catalogue, exits, problems, props.stats, ruleSet]);
  const selectedIds = nodes.filter((n) => n.selected).map((n) => n.id);

  const apply = (next: RuleSetDoc, coalesce = '') => {
    h.push(next, coalesce);
    bump();
  };
  const select = (ids: string[]) => setNodes((ns) => ns.map((n) => ({ ...n, selected: ids.includes(n.id) })));

  const add = (name: string, kind: 'rule' | 'ruleset', pos?: [number, number]) => {
    let p = pos;
    if (!p) {
      const rect = wrapper.current?.getBoundingClientRect();
      const c = rf.screenToFlowPosition({ x: (rect?.left ?? 0) + (rect?.width ?? 800) / 2, y: (rect?.top ?? 0) + (rect?.height ?? 600) / 2 });
      p = [c.x - 110, c.y - 40];
    }
    const r = addNode(doc, name, p, kind);
    // A rule from an extension makes the configuration require that extension (cap.json).
    const spec = kind === 'rule' ? findRule(catalogue, name) : undefined;
    if (spec?.extension && spec.extension_version) {
      const m = configRef.current.manifest;
      if (m.extensions?.[spec.extension] !== spec.extension_version)
        configRef.current = { ...configRef.current, manifest: { ...m, extensions: { ...(m.extensions ?? {}), [spec.extension]: spec.extension_version } } };
    }
    apply(r.doc);
    setTimeout(() => select([r.id]));
  };

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    const raw = e.dataTransfer.getData(DRAG_TYPE);
    if (!raw) return;
    const { name, kind } = JSON.parse(raw) as { name: string; kind: 'rule' | 'ruleset' };
    const p = rf.screenToFlowPosition({ x: e.clientX, y: e.clientY });
    add(name, kind, [Math.round(p.x - 110), Math.round(p.y - 20)]);
  };

  const onNodesChange = (changes: NodeChange<RuleFlowNode>[]) => {
    setNodes((ns) => applyNodeChanges(changes.filter((c) => c.type !== 'remove'), ns));
  };
  const onEdgesChange = (changes: EdgeChange[]) => {
    setEdges((es) => applyEdgeChanges(changes.filter((c) => c.type !== 'remove'), es));
  };
  const onDelete = ({ nodes: ns, edges: es }: { nodes: RuleFlowNode[]; edges: Edge[] }) => {
    let next = doc;
    // Wires first, highest index first, so indexes stay right.
    const wires = es.map((e) => parseEdgeId(e.id)).sort((a, b) => b.index - a.index);
    for (const w of wires) next = disconnect(next, w.source, w.cp, w.index);
    next = deleteNodes(next, ns.map((n) => n.id));
    if (next !== doc) apply(next);
  };
  const onConnect = (c: Connection) => {
    if (c.source && c.target && c.sourceHandle) apply(connect(doc, c.source, c.sourceHandle, c.target));
  };

  const copy = () => {
    if (!selectedIds.length) return;
    localStorage.setItem(CLIPBOARD_KEY, JSON.stringify(copyNodes(doc, selectedIds)));
    setStatus({ kind: 'ok', text: `Copied ${selectedIds.length} node${selectedIds.length > 1 ? 's' : ''}` });
  };
  const paste = () => {
    const raw = localStorage.getItem(CLIPBOARD_KEY);
    if (!raw) return;
    const r = pasteFragment(doc, JSON.parse(raw) as Fragment);
    apply(r.doc);
    setTimeout(() => select(r.ids));
  };
  const undo = () => {
    h.undo();
    bump();
  };
  const redo = () => {
    h.redo();
    bump();
  };
  const layout = () => {
    apply(moveNodes(doc, autoLayout(doc)));
    setTimeout(() => rf.fitView({ padding: 0.2 }));
  };
  const save = async () => {
    setStatus({ kind: 'busy', text: 'Saving…' });
    const c = currentConfig();
    try {
      const msg = await props.onSave(c);
      saved.current = new Map(Object.entries(c.rulesets).map(([n, rs]) => [n, serializeRuleSet(rs)]));
      configRef.current = c;
      setStatus({ kind: 'ok', text: msg });
      bump();
    } catch (e) {
      setStatus({ kind: 'error', text: (e as Error).message });
    }
  };

  const onKeyDown = (e: globalThis.KeyboardEvent) => {
    if (isTyping(e)) return;
    const mod = e.ctrlKey || e.metaKey;
    const k = e.key.toLowerCase();
    if (mod && k === 'z' && !e.shiftKey) undo();
    else if (mod && (k === 'y' || (k === 'z' && e.shiftKey))) redo();
    else if (mod && k === 'c') copy();
    else if (mod && k === 'x') {
      copy();
      apply(deleteNodes(doc, selectedIds));
    } else if (mod && k === 'v') paste();
    else if (mod && k === 'a') select(Object.keys(doc.rules));
    else if (mod && k === 's') void save();
    else if (!mod && e.shiftKey && k === 'l') layout();
    else if (e.key === '?') setShowHelp((s) => !s);
    else if (e.key === 'Escape') {
      setShowHelp(false);
      select([]);
    } else return;
    e.preventDefault();
  };

  // Shortcuts work wherever the focus is, except while typing in a field or a dialog is open.
  const keyHandler = useRef(onKeyDown);
  keyHandler.current = onKeyDown;
  useEffect(() => {
    const on = (e: globalThis.KeyboardEvent) => {
      if (document.querySelector('.modal-backdrop')) return;
      keyHandler.current(e);
    };
    window.addEventListener('keydown', on);
    return () => window.removeEventListener('keydown', on);
  }, []);

  const selected = selectedIds.length === 1 ? selectedIds[0] : '';
  const node = selected ? doc.rules[selected] : undefined;
  const ruleSets = Object.keys(config.rulesets).map((name) => ({ name, exits: ruleSetExits(config.rulesets[name]) }));
  const errorCount = problems.filter((p) => p.severity === 'error').length;
  const warningCount = problems.length - errorCount;

  if (!exists)
    return (
      <div className="empty-state">
        <p>This configuration has no rule set “{ruleSet}”.</p>
        <button
          onClick={() => {
            configRef.current = { ...configRef.current, rulesets: { ...configRef.current.rulesets, [ruleSet]: emptyRuleSet(ruleSet) } };
            bump();
          }}
        >
          Create it
        </button>
      </div>
    );

  return (
    <div className="editor" data-testid="editor">
      <div className="toolbar" role="toolbar" aria-label="Editor">
        <select id="rs-select" aria-label="Rule set" value={ruleSet} onChange={(e) => onOpenRuleSet(e.target.value)} data-testid="ruleset-select">
          {ruleSets.map((r) => (
            <option key={r.name} value={r.name}>
              {r.name}
              {r.name === config.manifest.ruleset ? ' (entry)' : ''}
            </option>
          ))}
        </select>
        <input
          aria-label="New rule set name"
          placeholder="new rule set"
          value={newName}
          size={10}
          onChange={(e) => setNewName(e.target.value)}
        />
        <button
          disabled={!/^[A-Za-z0-9_.-]+$/.test(newName) || newName in config.rulesets}
          title="Add a rule set to this configuration"
          onClick={() => {
            configRef.current = { ...configRef.current, rulesets: { ...currentConfig().rulesets, [newName]: emptyRuleSet(newName) } };
            const n = newName;
            setNewName('');
            onOpenRuleSet(n);
          }}
        >
          + Rule set
        </button>
        <span className="sep" />
        <button onClick={undo} disabled={!h.canUndo} title="Undo (Ctrl+Z)">
          Undo
        </button>
        <button onClick={redo} disabled={!h.canRedo} title="Redo (Ctrl+Shift+Z)">
          Redo
        </button>
        <button onClick={copy} disabled={!selectedIds.length} title="Copy (Ctrl+C)">
          Copy
        </button>
        <button onClick={paste} title="Paste (Ctrl+V)">
          Paste
        </button>
        <button onClick={() => apply(deleteNodes(doc, selectedIds))} disabled={!selectedIds.length} title="Delete (Del)">
          Delete
        </button>
        <button onClick={layout} title="Auto layout (Shift+L)">
          Auto layout
        </button>
        <button onClick={() => setShowHelp((s) => !s)} title="Keyboard shortcuts (?)">
          ?
        </button>
        <span className="sep" />
        <span className={`validity ${errorCount ? 'bad' : 'good'}`} data-testid="validity">
          {errorCount ? `${errorCount} error${errorCount > 1 ? 's' : ''}` : 'valid'}
          {warningCount ? `, ${warningCount} warning${warningCount > 1 ? 's' : ''}` : ''}
        </span>
        {props.toolbarExtra?.(currentConfig)}
        <button className="primary" onClick={() => void save()} title="Save (Ctrl+S)" data-testid="save">
          Save
        </button>
        {status && (
          <span className={`status ${status.kind}`} role="status" data-testid="save-status">
            {status.text}
          </span>
        )}
      </div>
      <div className="editor-body">
        <CatalogueSidebar catalogue={catalogue} ruleSets={ruleSets} current={ruleSet} onAdd={(n, k) => add(n, k)} />
        <div className="canvas" ref={wrapper} onDragOver={(e) => e.preventDefault()} onDrop={onDrop} data-testid="canvas">
          {Object.keys(doc.rules).length === 0 && (
            <div className="canvas-empty">Drag a rule from the catalogue here to start. The first rule you add is where the rule set starts.</div>
          )}
          <ReactFlow
            nodes={nodes}
            edges={edges}
            nodeTypes={nodeTypes}
            onNodesChange={onNodesChange}
            onEdgesChange={onEdgesChange}
            onConnect={onConnect}
            onDelete={onDelete}
            onNodeDragStop={(_, __, dragged) =>
              apply(moveNodes(doc, Object.fromEntries(dragged.map((n) => [n.id, [Math.round(n.position.x), Math.round(n.position.y)] as [number, number]]))))
            }
            onNodeDoubleClick={(_, n) => n.data.kind === 'ruleset' && onOpenRuleSet(n.data.title)}
            deleteKeyCode={['Delete', 'Backspace']}
            multiSelectionKeyCode={['Control', 'Meta']}
            selectionKeyCode="Shift"
            minZoom={0.2}
            proOptions={{ hideAttribution: true }}
          >
            <Background />
            <Controls />
            <MiniMap pannable zoomable />
          </ReactFlow>
          {showHelp && (
            <div className="shortcuts" role="dialog" aria-label="Keyboard shortcuts">
              <h4>Keyboard shortcuts</h4>
              <table>
                <tbody>
                  {SHORTCUTS.map(([k, what]) => (
                    <tr key={k}>
                      <td>
                        <kbd>{k}</kbd>
                      </td>
                      <td>{what}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
              <button onClick={() => setShowHelp(false)}>Close</button>
            </div>
          )}
        </div>
        {node ? (
          <NodePanel
            id={selected}
            node={node}
            spec={node.rule !== undefined ? findRule(catalogue, node.rule) : undefined}
            isStart={doc.start === selected}
            problems={problems.filter((p) => p.node === selected)}
            onParam={(name, v: Json | undefined) => apply(setParam(doc, selected, name, v), `param:${selected}:${name}`)}
            onComment={(c) => apply(setComment(doc, selected, c), `comment:${selected}`)}
            onRename={(to) => {
              try {
                apply(renameNode(doc, selected, to));
                setTimeout(() => select([to]));
                return undefined;
              } catch (e) {
                return (e as Error).message;
              }
            }}
            onStart={() => apply(setStart(doc, selected))}
            onDelete={() => apply(deleteNodes(doc, [selected]))}
            onOpenRuleSet={onOpenRuleSet}
            onAddCase={(cp) => apply(addChainPoint(doc, selected, cp))}
            chainPoints={nodes.find((n) => n.id === selected)?.data.chainPoints ?? []}
            nodeIds={Object.keys(doc.rules)}
            onWire={(cp, target) => apply(connect(doc, selected, cp, target))}
            onUnwire={(cp, index) => apply(disconnect(doc, selected, cp, index))}
          />
        ) : (
          <RuleSetPanel
            doc={doc}
            problems={problems}
            onDescription={(d) => apply(setRuleSetField(doc, 'description', d), 'description')}
            onExits={(x) => apply(setExits(doc, x))}
            onSelect={(id) => select([id])}
          />
        )}
      </div>
    </div>
  );
}

export function Editor(props: EditorProps) {
  return (
    <ReactFlowProvider>
      <EditorInner {...props} />
    </ReactFlowProvider>
  );
}
