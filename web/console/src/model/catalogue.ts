// The rule catalogue as the editor reads it: `capctl rules --json`, or the console's
// catalogue endpoint (the same shape, with the installed extensions' rules added).

export type ParamTypeName =
  | 'string'
  | 'number'
  | 'boolean'
  | 'expression'
  | 'variable'
  | 'list'
  | 'map'
  | 'any';

export interface ParamSpec {
  name: string;
  type: ParamTypeName;
  required: boolean;
  default: unknown;
  doc: string;
  choices: string[];
}

export interface RuleSpec {
  name: string;
  group: string;
  doc: string;
  params: ParamSpec[];
  chain_points: string[];
  /** The node's own `then` keys become extra chain points (Switch cases). */
  user_chain_points: boolean;
  may_wait?: boolean;
  /** The extension that brings the rule, when it is not a base rule, and its version. */
  extension?: string;
  extension_version?: string;
}

export interface Catalogue {
  rules: RuleSpec[];
}

/** Builds a catalogue from a parsed JSON document; throws Error naming what is wrong. */
export function parseCatalogue(doc: unknown): Catalogue {
  if (!doc || typeof doc !== 'object' || !Array.isArray((doc as { rules?: unknown }).rules))
    throw new Error('the catalogue must be an object with a "rules" list');
  const rules: RuleSpec[] = [];
  for (const raw of (doc as { rules: unknown[] }).rules) {
    const r = raw as Partial<RuleSpec>;
    if (!r || typeof r.name !== 'string') throw new Error('a catalogue rule has no name');
    rules.push({
      name: r.name,
      group: typeof r.group === 'string' && r.group ? r.group : 'Other',
      doc: typeof r.doc === 'string' ? r.doc : '',
      params: (Array.isArray(r.params) ? r.params : []).map((p) => ({
        name: String(p.name),
        type: (p.type ?? 'any') as ParamTypeName,
        required: Boolean(p.required),
        default: p.default ?? null,
        doc: typeof p.doc === 'string' ? p.doc : '',
        choices: Array.isArray(p.choices) ? p.choices.map(String) : [],
      })),
      chain_points: Array.isArray(r.chain_points) ? r.chain_points.map(String) : [],
      user_chain_points: Boolean(r.user_chain_points),
      may_wait: Boolean(r.may_wait),
      extension: typeof r.extension === 'string' ? r.extension : undefined,
      extension_version: typeof r.extension_version === 'string' ? r.extension_version : undefined,
    });
  }
  return { rules };
}

export function findRule(cat: Catalogue, name: string): RuleSpec | undefined {
  return cat.rules.find((r) => r.name === name);
}

export interface CatalogueGroup {
  group: string;
  rules: RuleSpec[];
}

/**
 * The catalogue grouped in catalogue order, keeping only rules whose name, group or doc
 * contains every word of `query` (case-insensitive). Groups left empty are dropped.
 */
export function groupCatalogue(cat: Catalogue, query = ''): CatalogueGroup[] {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  const groups: CatalogueGroup[] = [];
  for (const r of cat.rules) {
    const hay = `${r.name} ${r.group} ${r.doc}`.toLowerCase();
    if (!words.every((w) => hay.includes(w))) continue;
    let g = groups.find((x) => x.group === r.group);
    if (!g) groups.push((g = { group: r.group, rules: [] }));
    g.rules.push(r);
  }
  // Exact name matches first, so typing a rule's name puts it on top.
  if (words.length === 1)
    for (const g of groups) g.rules.sort((a, b) => Number(b.name.toLowerCase() === words[0]) - Number(a.name.toLowerCase() === words[0]));
  return groups;
}
