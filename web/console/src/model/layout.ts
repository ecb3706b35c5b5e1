// Auto layout: chains flow top to bottom, chain points side by side (dagre's layered layout).
import dagre from '@dagrejs/dagre';
import { RuleSetDoc, targets } from './ruleset';

export const NODE_WIDTH = 220;
export const NODE_HEIGHT = 90;

/** New positions for every node; nodes keep their order within a chain point. */
export function autoLayout(doc: RuleSetDoc): Record<string, [number, number]> {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: 'TB', nodesep: 40, ranksep: 70, marginx: 20, marginy: 20 });
  g.setDefaultEdgeLabel(() => ({}));
  const ids = Object.keys(doc.rules);
  // The start first, so it lands top left when chains do not connect everything.
  if (doc.start && ids.includes(doc.start)) ids.sort((a, b) => Number(b === doc.start) - Number(a === doc.start));
  for (const id of ids) g.setNode(id, { width: NODE_WIDTH, height: NODE_HEIGHT });
  for (const id of ids) {
    const n = doc.rules[id];
    for (const cp of Object.keys(n.then ?? {}))
      for (const t of targets(n, cp)) if (t in doc.rules) g.setEdge(id, t);
  }
  dagre.layout(g);
  const out: Record<string, [number, number]> = {};
  for (const id of ids) {
    const p = g.node(id);
    out[id] = [Math.round(p.x - NODE_WIDTH / 2), Math.round(p.y - NODE_HEIGHT / 2)];
  }
  return out;
}
