// Validation as you edit: the structural checks of the engine's loader (DESIGN §3),
// reported per node and parameter with the loader's wording. Expression syntax is checked
// by the console when the configuration is saved; its errors map onto nodes the same way
// (see mapServerErrors).
import { Catalogue, findRule, ParamSpec } from './catalogue';
import { Json, RuleNodeDoc, RuleSetDoc, targets } from './ruleset';

export interface Diagnostic {
  severity: 'error' | 'warning';
  /** The node id, or '' for the rule set itself. */
  node: string;
  /** The parameter or field ('condition', 'then.true', 'start'), or ''. */
  param: string;
  message: string;
}

const VARIABLE_RE = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** The loader's words for a JSON value's kind. */
function kind(v: Json): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  return typeof v === 'boolean' ? 'a boolean' : typeof v === 'number' ? 'a number' : 'a string';
}

/** Checks `${...}` parts of a template are closed; returns the problem or ''. */
export function templateProblem(text: string): string {
  let i = 0;
  while ((i = text.indexOf('${', i)) !== -1) {
    let depth = 0;
    let quote = '';
    let j = i + 2;
    for (; j < text.length; ++j) {
      const c = text[j];
      if (quote) {
        if (c === '\\') ++j;
        else if (c === quote) quote = '';
      } else if (c === "'" || c === '"') quote = c;
      else if (c === '{') ++depth;
      else if (c === '}') {
        if (depth === 0) break;
        --depth;
      }
    }
    if (j >= text.length) return `'\${' at offset ${i} is never closed with '}'`;
    if (!text.slice(i + 2, j).trim()) return `empty '\${}' at offset ${i}`;
    i = j + 1;
  }
  return '';
}

function checkParam(spec: ParamSpec, v: Json): string {
  const got = () => `, got ${kind(v)} ${JSON.stringify(v).slice(0, 60)}`;
  const isTemplate = typeof v === 'string' && v.includes('${');
  switch (spec.type) {
    case 'expression':
      if (typeof v === 'boolean') return '';
      if (typeof v !== 'string') return `must be an expression (a string)${got()}`;
      if (!v.trim()) return 'must not be empty: write an expression such as URI == \'/hello\'';
      return '';
    case 'variable':
      if (typeof v !== 'string') return `must be a variable name${got()}`;
      if (!VARIABLE_RE.test(v))
        return `'${v}' is not a valid variable name (letters, digits, _ - and ., starting with a letter or _)`;
      return '';
    case 'number':
      if (typeof v === 'number') return '';
      if (typeof v !== 'string') return `must be a number${got()}`;
      if (!isTemplate && (v.trim() === '' || Number.isNaN(Number(v)))) return `must be a number${got()}`;
      return templateProblem(v);
    case 'boolean':
      if (typeof v === 'boolean') return '';
      if (typeof v !== 'string') return `must be true or false${got()}`;
      if (!isTemplate && v !== 'true' && v !== 'false') return `must be true or false${got()}`;
      return templateProblem(v);
    case 'string':
      if (Array.isArray(v) || (v !== null && typeof v === 'object')) return `must be a string${got()}`;
      return typeof v === 'string' ? templateProblem(v) : '';
    case 'list':
      if (!Array.isArray(v) && typeof v !== 'string' && v !== null) return `must be a list${got()}`;
      return typeof v === 'string' ? templateProblem(v) : '';
    case 'map':
      if ((typeof v !== 'object' || Array.isArray(v)) && typeof v !== 'string') return `must be an object${got()}`;
      return typeof v === 'string' ? templateProblem(v) : '';
    default:
      return typeof v === 'string' ? templateProblem(v) : '';
  }
}

/** The chain points a node offers: its rule's, a Switch's own cases, or a rule set's exits. */
export function chainPointsOf(
  node: RuleNodeDoc,
  cat: Catalogue,
  ruleSetExits: Record<string, string[]>,
): string[] | undefined {
  if (node.ruleset !== undefined) return ruleSetExits[node.ruleset];
  const spec = node.rule !== undefined ? findRule(cat, node.rule) : undefined;
  if (!spec) return undefined;
  const cps = [...spec.chain_points];
  if (spec.user_chain_points) for (const k of Object.keys(node.then ?? {})) if (!cps.includes(k)) cps.push(k);
  return cps;
}

/**
 * Every problem in a rule set. `ruleSetExits` maps each rule set of the configuration to
 * its exits (for rule-set nodes and cycle-free nesting is checked by the console).
 */
export function validateRuleSet(
  doc: RuleSetDoc,
  cat: Catalogue,
  ruleSetExits: Record<string, string[]>,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  const err = (node: string, param: string, message: string) => out.push({ severity: 'error', node, param, message });
  const warn = (node: string, param: string, message: string) => out.push({ severity: 'warning', node, param, message });
  const ids = Object.keys(doc.rules);
  const exits = doc.exits && doc.exits.length ? doc.exits : undefined;

  for (const [id, node] of Object.entries(doc.rules)) {
    if ((node.rule === undefined) === (node.ruleset === undefined)) {
      err(id, '', 'needs exactly one of "rule" (a rule type) or "ruleset" (a rule set name)');
      continue;
    }
    if (node.ruleset !== undefined) {
      if (!(node.ruleset in ruleSetExits)) err(id, 'ruleset', `rule set '${node.ruleset}' does not exist`);
      else if (node.ruleset === doc.name) err(id, 'ruleset', `rule set cycle: ${doc.name} -> ${doc.name}`);
    } else {
      const spec = findRule(cat, node.rule!);
      if (!spec) {
        err(id, 'rule', `unknown rule '${node.rule}'; the catalogue lists the rules there are`);
      } else {
        const w = node.with ?? {};
        const names = spec.params.map((p) => p.name);
        for (const k of Object.keys(w))
          if (!names.includes(k))
            err(id, k, `rule ${spec.name} has no parameter '${k}'; its parameters: ${names.join(', ')}`);
        for (const p of spec.params) {
          const v = w[p.name];
          if (v === undefined || (v === null && p.required)) {
            if (p.required) err(id, p.name, `missing: rule ${spec.name} requires it (${p.type})`);
            continue;
          }
          const problem = checkParam(p, v);
          if (problem) err(id, p.name, problem);
          else if (p.choices.length && typeof v !== 'object' && !(typeof v === 'string' && v.includes('${')))
            if (!p.choices.includes(String(v))) err(id, p.name, `'${String(v)}' is not one of ${p.choices.join(', ')}`);
        }
        if (spec.name === 'RuleSetExit' && exits && typeof w.name === 'string' && !exits.includes(w.name))
          err(id, 'name', `exit '${w.name}' is not listed in the rule set's "exits" (${exits.join(', ')})`);
      }
    }
    const cps = chainPointsOf(node, cat, ruleSetExits);
    for (const cp of Object.keys(node.then ?? {})) {
      if (cps && !cps.includes(cp))
        err(id, `then.${cp}`, `${node.ruleset !== undefined ? 'rule set' : 'rule'} ${node.ruleset ?? node.rule} has no chain point '${cp}'; it has: ${cps.join(', ')}`);
      for (const t of targets(node, cp))
        if (!(t in doc.rules)) err(id, `then.${cp}`, `refers to node '${t}', which does not exist in ${doc.name}`);
    }
  }

  if (!doc.start) {
    if (ids.length) err('', 'start', 'missing: name the node the rule set starts at');
    return out;
  }
  if (!(doc.start in doc.rules)) {
    err('', 'start', `node '${doc.start}' does not exist`);
    return out;
  }
  // Loops: a node reached again on its own path would run forever.
  const state = new Map<string, number>();
  const visit = (id: string) => {
    state.set(id, 1);
    const node = doc.rules[id];
    for (const cp of Object.keys(node.then ?? {}))
      for (const t of targets(node, cp)) {
        if (!(t in doc.rules)) continue;
        const st = state.get(t) ?? 0;
        if (st === 1) err(id, `then.${cp}`, `leads back to node '${t}', which would loop forever (use ForEach to repeat)`);
        else if (st === 0) visit(t);
      }
    state.set(id, 2);
  };
  for (const id of ids) if (!state.get(id)) visit(id);
  const seen = new Set<string>();
  const todo = [doc.start];
  while (todo.length) {
    const id = todo.pop()!;
    if (seen.has(id) || !(id in doc.rules)) continue;
    seen.add(id);
    const node = doc.rules[id];
    for (const cp of Object.keys(node.then ?? {})) todo.push(...targets(node, cp));
  }
  for (const id of ids)
    if (!seen.has(id)) warn(id, '', `unreachable: no chain point leads here from start '${doc.start}'`);
  return out;
}

/**
 * Parses the console's validation details (the engine's "FILE: node ID: PARAM: message"
 * lines, or objects with file/node/param/message) into diagnostics of one rule set file.
 */
export function mapServerErrors(details: unknown[], file: string): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const d of details) {
    if (d && typeof d === 'object') {
      const o = d as Record<string, unknown>;
      if (o.file !== undefined && o.file !== file) continue;
      out.push({
        severity: o.severity === 'warning' ? 'warning' : 'error',
        node: String(o.node ?? ''),
        param: String(o.param ?? ''),
        message: String(o.message ?? ''),
      });
      continue;
    }
    if (typeof d !== 'string') continue;
    // FILE[: node ID][: PARAM]: [warning: ]MESSAGE (Diagnostic::format)
    const m = /^([^:]+): (?:node ([^:]+): )?(.*)$/.exec(d);
    if (!m || m[1] !== file) continue;
    let rest = m[3];
    let param = '';
    let severity: Diagnostic['severity'] = 'error';
    if (rest.startsWith('warning: ')) {
      severity = 'warning';
      rest = rest.slice(9);
    } else {
      const p = /^([^:\s]+): (warning: )?(.*)$/.exec(rest);
      if (p) {
        param = p[1];
        if (p[2]) severity = 'warning';
        rest = p[3];
      }
    }
    out.push({ severity, node: m[2] ?? '', param, message: rest });
  }
  return out;
}
