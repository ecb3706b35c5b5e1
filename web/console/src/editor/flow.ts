// The rule-set document drawn as React Flow nodes and edges. Edge ids name the wire:
// SOURCE\u0000CHAINPOINT\u0000INDEX, so a deleted edge maps back to disconnect().
import type { Edge, Node } from '@xyflow/react';
import { Catalogue, findRule, RuleSpec } from '../model/catalogue';
import { RuleSetDoc, targets } from '../model/ruleset';
import { chainPointsOf, Diagnostic } from '../model/validate';

export interface RuleNodeData extends Record<string, unknown> {
  id: string;
  title: string;
  kind: 'rule' | 'ruleset';
  spec?: RuleSpec;
  chainPoints: string[];
  isStart: boolean;
  comment: string;
  summary: string;
  problems: Diagnostic[];
  stat?: { count: number; avg_ms: number };
}

export type RuleFlowNode = Node<RuleNodeData, 'rule'>;

export function edgeId(source: string, cp: string, index: number): string {
  return `${source}\u0000${cp}\u0000${index}`;
}

export function parseEdgeId(id: string): { source: string; cp: string; index: number } {
  const [source, cp, index] = id.split('\u0000');
  return { source, cp, index: Number(index) };
}

/** A one-line summary of the most telling parameter, shown on the node. */
function summarize(spec: RuleSpec | undefined, w: Record<string, unknown> | undefined): string {
  if (!spec || !w) return '';
  for (const p of spec.params) {
    const v = w[p.name];
    if (v === undefined || v === null || v === '') continue;
    const text = typeof v === 'string' ? v : JSON.stringify(v);
    return `${p.name}: ${text.length > 48 ? text.slice(0, 47) + '…' : text}`;
  }
  return '';
}

export function buildNodes(
  doc: RuleSetDoc,
  cat: Catalogue,
  exits: Record<string, string[]>,
  diagnostics: Diagnostic[],
  prev: RuleFlowNode[],
  stats?: Record<string, { count: number; avg_ms: number }>,
): RuleFlowNode[] {
  const before = new Map(prev.map((n) => [n.id, n]));
  return Object.entries(doc.rules).map(([id, n], i) => {
    const spec = n.rule !== undefined ? findRule(cat, n.rule) : undefined;
    const old = before.get(id);
    const pos = n.pos ?? [40 + (i % 4) * 260, 40 + Math.floor(i / 4) * 140];
    return {
      id,
      type: 'rule',
      position: { x: pos[0], y: pos[1] },
      selected: old?.selected ?? false,
      measured: old?.measured,
      data: {
        id,
        title: n.ruleset !== undefined ? n.ruleset : (n.rule ?? '?'),
        kind: n.ruleset !== undefined ? 'ruleset' : 'rule',
        spec,
        chainPoints: chainPointsOf(n, cat, exits) ?? Object.keys(n.then ?? {}),
        isStart: doc.start === id,
        comment: n.comment ?? '',
        summary: summarize(spec, n.with),
        problems: diagnostics.filter((d) => d.node === id),
        stat: stats?.[id],
      },
    };
  });
}

export function buildEdges(doc: RuleSetDoc, prev: Edge[]): Edge[] {
  const selected = new Set(prev.filter((e) => e.selected).map((e) => e.id));
  const out: Edge[] = [];
  for (const [id, n] of Object.entries(doc.rules))
    for (const cp of Object.keys(n.then ?? {})) {
      const list = targets(n, cp);
      list.forEach((t, i) => {
        if (!(t in doc.rules)) return;
        const eid = edgeId(id, cp, i);
        out.push({
          id: eid,
          source: id,
          sourceHandle: cp,
          target: t,
          targetHandle: 'in',
          label: list.length > 1 ? `${i + 1}` : undefined,
          selected: selected.has(eid),
          className: 'cap-edge',
        });
      });
    }
  return out;
}
