// One node on the canvas: the rule (or rule set) and its id, the start badge, a summary
// of its parameters, its comment, its problems, and one output handle per chain point.
import { Handle, NodeProps, Position } from '@xyflow/react';
import { memo } from 'react';
import type { RuleFlowNode } from './flow';

export function timeClass(ms: number): string {
  if (ms < 10) return 'time-fast';
  if (ms <= 50) return 'time-medium';
  return 'time-slow';
}

function RuleNodeView({ data, selected }: NodeProps<RuleFlowNode>) {
  const errors = data.problems.filter((p) => p.severity === 'error');
  const warnings = data.problems.filter((p) => p.severity === 'warning');
  const cls = ['rule-node', data.kind, selected ? 'selected' : '', errors.length ? 'has-errors' : warnings.length ? 'has-warnings' : '']
    .filter(Boolean)
    .join(' ');
  return (
    <div className={cls} data-testid={`node-${data.id}`} title={data.spec?.doc ?? (data.kind === 'ruleset' ? 'A rule set used as a rule: double-click to open it' : '')}>
      <Handle type="target" position={Position.Top} id="in" className="handle-in" />
      <div className="rule-node-head">
        {data.isStart && <span className="badge start" title="The rule set starts here">start</span>}
        <span className="rule-node-title">{data.kind === 'ruleset' ? `▣ ${data.title}` : data.title}</span>
      </div>
      <div className="rule-node-id">{data.id}</div>
      {data.summary && <div className="rule-node-summary">{data.summary}</div>}
      {data.comment && <div className="rule-node-comment">{data.comment}</div>}
      {data.stat && (
        <div className={`rule-node-stat ${timeClass(data.stat.avg_ms)}`} data-testid={`stat-${data.id}`}>
          {data.stat.count} runs · {data.stat.avg_ms.toFixed(2)} ms
        </div>
      )}
      {data.problems.length > 0 && (
        <ul className="rule-node-problems" data-testid={`problems-${data.id}`}>
          {data.problems.slice(0, 3).map((p, i) => (
            <li key={i} className={p.severity}>
              {p.param ? `${p.param}: ` : ''}
              {p.message}
            </li>
          ))}
          {data.problems.length > 3 && <li>…and {data.problems.length - 3} more</li>}
        </ul>
      )}
      <div className="rule-node-outs">
        {data.chainPoints.map((cp, i) => (
          <div key={cp} className="rule-node-out" style={{ left: `${((i + 0.5) / data.chainPoints.length) * 100}%` }}>
            <span className="cp-label">{cp}</span>
            <Handle type="source" position={Position.Bottom} id={cp} className="handle-out" data-testid={`out-${data.id}-${cp}`} />
          </div>
        ))}
      </div>
    </div>
  );
}

export const RuleNode = memo(RuleNodeView);
