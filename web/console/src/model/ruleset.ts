// A rule set as DESIGN §3 writes it (rulesets/NAME.json), and the edits the editor makes
// to it. Every edit is a pure function returning a new document, so the undo history is a
// list of documents and what is saved is exactly what is shown.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface RuleNodeDoc {
  rule?: string;
  ruleset?: string;
  with?: Record<string, Json>;
  /** Chain point → the node ids it runs, in order. */
  then?: Record<string, string[] | string>;
  /** Editor position; the engine ignores it. */
  pos?: [number, number];
  /** Editor note; the engine ignores it. */
  comment?: string;
  [extra: string]: unknown;
}

export interface RuleSetDoc {
  name: string;
  description?: string;
  start?: string;
  exits?: string[];
  rules: Record<string, RuleNodeDoc>;
  [extra: string]: unknown;
}

export function emptyRuleSet(name: string): RuleSetDoc {
  return { name, description: '', start: undefined, exits: [], rules: {} };
}

/** Parses rulesets/NAME.json text; throws Error with the reason when it is not a rule set. */
export function parseRuleSet(text: string, fallbackName = ''): RuleSetDoc {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`not valid JSON: ${(e as Error).message}`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Error('a rule set must be a JSON object');
  const doc = raw as RuleSetDoc;
  if (doc.rules === undefined) doc.rules = {};
  if (!doc.rules || typeof doc.rules !== 'object' || Array.isArray(doc.rules))
    throw new Error('"rules" must be an object of node id to node');
  if (typeof doc.name !== 'string') doc.name = fallbackName;
  return doc;
}

/**
 * The rule-set JSON as saved: two-space indented, fields in the order of DESIGN §3, empty
 * optional fields (description, start, with, then, comment) left out.
 */
export function serializeRuleSet(doc: RuleSetDoc): string {
  const out: Record<string, unknown> = { name: doc.name };
  if (doc.description) out.description = doc.description;
  if (doc.start) out.start = doc.start;
  out.exits = doc.exits ?? [];
  const known = new Set(['name', 'description', 'start', 'exits', 'rules']);
  for (const [k, v] of Object.entries(doc)) if (!known.has(k) && v !== undefined) out[k] = v;
  const rules: Record<string, unknown> = {};
  for (const [id, n] of Object.entries(doc.rules)) {
    const node: Record<string, unknown> = {};
    if (n.rule !== undefined) node.rule = n.rule;
    if (n.ruleset !== undefined) node.ruleset = n.ruleset;
    if (n.with && Object.keys(n.with).length) node.with = n.with;
    const then = Object.entries(n.then ?? {}).filter(([, t]) => (Array.isArray(t) ? t.length > 0 : !!t));
    if (then.length) node.then = Object.fromEntries(then);
    if (n.pos) node.pos = [Math.round(n.pos[0]), Math.round(n.pos[1])];
    if (n.comment) node.comment = n.comment;
    for (const [k, v] of Object.entries(n))
      if (!['rule', 'ruleset', 'with', 'then', 'pos', 'comment'].includes(k) && v !== undefined) node[k] = v;
    rules[id] = node;
  }
  out.rules = rules;
  return JSON.stringify(out, null, 2) + '\n';
}

/** The targets of one chain point as a list (the file may hold a single id string). */
export function targets(node: RuleNodeDoc, cp: string): string[] {
  const t = node.then?.[cp];
  if (t === undefined) return [];
  return Array.isArray(t) ? t : [t];
}

/** The exits of a rule set: listed, or else the names of its RuleSetExit nodes. */
export function ruleSetExits(doc: RuleSetDoc): string[] {
  if (doc.exits && doc.exits.length) return doc.exits;
  const names: string[] = [];
  for (const n of Object.values(doc.rules)) {
    const name = n.rule === 'RuleSetExit' ? n.with?.name : undefined;
    if (typeof name === 'string' && name && !names.includes(name)) names.push(name);
  }
  return names;
}

const ID_RE = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** A node id that is not yet used in `doc`, from a rule name: IfCondition → ifCondition1. */
export function freshId(doc: RuleSetDoc, base: string, taken: Set<string> = new Set()): string {
  let stem = base.replace(/[^A-Za-z0-9_]/g, '') || 'node';
  stem = stem[0].toLowerCase() + stem.slice(1);
  stem = stem.replace(/\d+$/, '');
  if (!/^[A-Za-z_]/.test(stem)) stem = 'n' + stem;
  for (let i = 1; ; ++i) {
    const id = `${stem}${i}`;
    if (!(id in doc.rules) && !taken.has(id)) return id;
  }
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

export interface AddNodeResult {
  doc: RuleSetDoc;
  id: string;
}

/** Adds a rule node (or a rule-set node when `kind` is 'ruleset'); the first node becomes the start. */
export function addNode(
  doc: RuleSetDoc,
  name: string,
  pos: [number, number],
  kind: 'rule' | 'ruleset' = 'rule',
): AddNodeResult {
  const next = clone(doc);
  const id = freshId(next, name);
  next.rules[id] = kind === 'rule' ? { rule: name, with: {}, pos } : { ruleset: name, pos };
  if (!next.start || !(next.start in next.rules)) next.start = id;
  return { doc: next, id };
}

export function moveNodes(doc: RuleSetDoc, moves: Record<string, [number, number]>): RuleSetDoc {
  const next = clone(doc);
  for (const [id, pos] of Object.entries(moves)) if (next.rules[id]) next.rules[id].pos = [pos[0], pos[1]];
  return next;
}

/** Wires chain point `cp` of `source` to run `target` after the nodes it already runs. */
export function connect(doc: RuleSetDoc, source: string, cp: string, target: string): RuleSetDoc {
  if (!doc.rules[source] || !doc.rules[target] || source === target) return doc;
  const list = targets(doc.rules[source], cp);
  if (list.includes(target)) return doc;
  const next = clone(doc);
  const node = next.rules[source];
  node.then = { ...(node.then ?? {}), [cp]: [...list, target] };
  return next;
}

/** Removes one wire: the `index`-th target of `source`'s chain point `cp`. */
export function disconnect(doc: RuleSetDoc, source: string, cp: string, index: number): RuleSetDoc {
  const next = clone(doc);
  const node = next.rules[source];
  if (!node) return doc;
  const list = targets(node, cp).filter((_, i) => i !== index);
  const then = { ...(node.then ?? {}) };
  if (list.length) then[cp] = list;
  else delete then[cp];
  node.then = then;
  return next;
}

/** Deletes nodes and every wire into them; the start moves to no node when it was deleted. */
export function deleteNodes(doc: RuleSetDoc, ids: Iterable<string>): RuleSetDoc {
  const gone = new Set(ids);
  if (![...gone].some((id) => id in doc.rules)) return doc;
  const next = clone(doc);
  for (const id of gone) delete next.rules[id];
  for (const node of Object.values(next.rules)) {
    if (!node.then) continue;
    for (const cp of Object.keys(node.then)) {
      const list = targets(node, cp).filter((t) => !gone.has(t));
      if (list.length) node.then[cp] = list;
      else delete node.then[cp];
    }
  }
  if (next.start && gone.has(next.start)) next.start = Object.keys(next.rules)[0];
  return next;
}

/** Sets (or, with `undefined`, removes) one parameter of a node. */
export function setParam(doc: RuleSetDoc, id: string, name: string, value: Json | undefined): RuleSetDoc {
  if (!doc.rules[id]) return doc;
  const next = clone(doc);
  const node = next.rules[id];
  const w = { ...(node.with ?? {}) };
  if (value === undefined) delete w[name];
  else w[name] = value;
  node.with = w;
  return next;
}

export function setComment(doc: RuleSetDoc, id: string, comment: string): RuleSetDoc {
  if (!doc.rules[id]) return doc;
  const next = clone(doc);
  if (comment) next.rules[id].comment = comment;
  else delete next.rules[id].comment;
  return next;
}

export function setStart(doc: RuleSetDoc, id: string): RuleSetDoc {
  if (!doc.rules[id] || doc.start === id) return doc;
  return { ...clone(doc), start: id };
}

/** Adds a user chain point (a Switch case) with no targets yet. */
export function addChainPoint(doc: RuleSetDoc, id: string, cp: string): RuleSetDoc {
  if (!doc.rules[id] || !cp) return doc;
  const next = clone(doc);
  const node = next.rules[id];
  node.then = { ...(node.then ?? {}) };
  if (!(cp in node.then)) node.then[cp] = [];
  return next;
}

/**
 * Renames a node, and every wire and the start that name it. Throws Error when the new id
 * is not a valid node id or is taken.
 */
export function renameNode(doc: RuleSetDoc, from: string, to: string): RuleSetDoc {
  if (from === to) return doc;
  if (!ID_RE.test(to)) throw new Error(`'${to}' is not a valid node id (letters, digits, _ . -, not starting with a digit)`);
  if (to in doc.rules) throw new Error(`a node '${to}' already exists`);
  if (!(from in doc.rules)) throw new Error(`no node '${from}'`);
  const next = clone(doc);
  const rules: Record<string, RuleNodeDoc> = {};
  for (const [id, n] of Object.entries(next.rules)) rules[id === from ? to : id] = n;
  for (const n of Object.values(rules))
    for (const cp of Object.keys(n.then ?? {})) n.then![cp] = targets(n, cp).map((t) => (t === from ? to : t));
  next.rules = rules;
  if (next.start === from) next.start = to;
  return next;
}

export function setRuleSetField(doc: RuleSetDoc, field: 'description', value: string): RuleSetDoc {
  return { ...clone(doc), [field]: value };
}

export function setExits(doc: RuleSetDoc, exits: string[]): RuleSetDoc {
  return { ...clone(doc), exits };
}

/** A copied part of a rule set: the nodes and the wires between them. */
export interface Fragment {
  rules: Record<string, RuleNodeDoc>;
}

/** Copies nodes; wires to nodes outside the selection are dropped. */
export function copyNodes(doc: RuleSetDoc, ids: Iterable<string>): Fragment {
  const keep = new Set([...ids].filter((id) => id in doc.rules));
  const rules: Record<string, RuleNodeDoc> = {};
  for (const id of keep) {
    const n = clone(doc.rules[id]);
    if (n.then)
      for (const cp of Object.keys(n.then)) {
        const list = targets(n, cp).filter((t) => keep.has(t));
        if (list.length) n.then[cp] = list;
        else delete n.then[cp];
      }
    rules[id] = n;
  }
  return { rules };
}

/**
 * Pastes a fragment, renaming ids that are taken and moving the nodes by `offset`.
 * Returns the new document and the ids of the pasted nodes.
 */
export function pasteFragment(
  doc: RuleSetDoc,
  frag: Fragment,
  offset: [number, number] = [40, 40],
): { doc: RuleSetDoc; ids: string[] } {
  const next = clone(doc);
  const rename = new Map<string, string>();
  const taken = new Set<string>();
  for (const id of Object.keys(frag.rules)) {
    const nid = id in next.rules || taken.has(id) ? freshId(next, id, taken) : id;
    taken.add(nid);
    rename.set(id, nid);
  }
  for (const [id, n] of Object.entries(frag.rules)) {
    const c = clone(n);
    if (c.then)
      for (const cp of Object.keys(c.then)) c.then[cp] = targets(c, cp).map((t) => rename.get(t) ?? t);
    const p = c.pos ?? [0, 0];
    c.pos = [p[0] + offset[0], p[1] + offset[1]];
    next.rules[rename.get(id)!] = c;
  }
  if (!next.start && rename.size) next.start = [...rename.values()][0];
  return { doc: next, ids: [...rename.values()] };
}
