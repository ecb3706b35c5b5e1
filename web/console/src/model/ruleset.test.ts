import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseCatalogue } from './catalogue';
import { readConfigurationZip, writeConfigurationZip, newConfiguration } from './configuration';
import { History } from './history';
import { autoLayout } from './layout';
import {
  addNode,
  connect,
  copyNodes,
  deleteNodes,
  disconnect,
  parseRuleSet,
  pasteFragment,
  renameNode,
  RuleSetDoc,
  serializeRuleSet,
  setComment,
  setParam,
  targets,
} from './ruleset';
import { validateRuleSet, mapServerErrors, templateProblem } from './validate';

const root = new URL('../../../../', import.meta.url);
// The real catalogue, from the capctl that the build made (ctest sets CAPCTL).
const capctl = process.env.CAPCTL ?? new URL('build/release/capctl', root).pathname;
const cat = parseCatalogue(JSON.parse(execFileSync(capctl, ['rules', '--json'], { encoding: 'utf8' })));
const helloText = readFileSync(new URL('examples/hello/rulesets/main.json', root), 'utf8');

describe('rule-set JSON round trip', () => {
  it('keeps every node, parameter, wire, position and comment of a real rule set', () => {
    const doc = parseRuleSet(helloText);
    const again = parseRuleSet(serializeRuleSet(doc));
    expect(again).toEqual(JSON.parse(JSON.stringify(doc)));
    expect(JSON.parse(serializeRuleSet(doc)).rules).toEqual(JSON.parse(helloText).rules);
  });

  it('saves what the editor built in the shape of DESIGN §3', () => {
    let doc: RuleSetDoc = { name: 'main', rules: {} };
    let r = addNode(doc, 'IfCondition', [10.4, 20.6]);
    doc = setParam(r.doc, r.id, 'condition', "URI == '/hello'");
    const cond = r.id;
    r = addNode(doc, 'HttpRespond', [0, 200]);
    doc = setParam(r.doc, r.id, 'status', 200);
    doc = connect(doc, cond, 'true', r.id);
    doc = setComment(doc, cond, 'only /hello');
    const saved = JSON.parse(serializeRuleSet(doc));
    expect(saved).toEqual({
      name: 'main',
      start: 'ifCondition1',
      exits: [],
      rules: {
        ifCondition1: {
          rule: 'IfCondition',
          with: { condition: "URI == '/hello'" },
          then: { true: ['httpRespond1'] },
          pos: [10, 21],
          comment: 'only /hello',
        },
        httpRespond1: { rule: 'HttpRespond', with: { status: 200 }, pos: [0, 200] },
      },
    });
  });

  it('keeps fields it does not know', () => {
    const doc = parseRuleSet('{"name":"x","format":1,"rules":{"a":{"rule":"Comment","x-note":"keep"}}}');
    const saved = JSON.parse(serializeRuleSet(doc));
    expect(saved.format).toBe(1);
    expect(saved.rules.a['x-note']).toBe('keep');
  });

  it('rejects text that is not a rule set, saying why', () => {
    expect(() => parseRuleSet('{nope')).toThrow(/not valid JSON/);
    expect(() => parseRuleSet('[]')).toThrow(/must be a JSON object/);
    expect(() => parseRuleSet('{"rules": []}')).toThrow(/"rules" must be an object/);
  });
});

describe('edits', () => {
  const base = () => {
    let doc: RuleSetDoc = { name: 'main', rules: {} };
    for (const [rule, y] of [['IfCondition', 0], ['SetVariable', 100], ['HttpRespond', 200]] as const)
      doc = addNode(doc, rule, [0, y]).doc;
    doc = connect(doc, 'ifCondition1', 'true', 'setVariable1');
    doc = connect(doc, 'setVariable1', 'next', 'httpRespond1');
    return doc;
  };

  it('wires in order, never twice, never to itself', () => {
    let doc = base();
    doc = connect(doc, 'ifCondition1', 'true', 'httpRespond1');
    expect(targets(doc.rules.ifCondition1, 'true')).toEqual(['setVariable1', 'httpRespond1']);
    expect(connect(doc, 'ifCondition1', 'true', 'httpRespond1')).toBe(doc);
    expect(connect(doc, 'ifCondition1', 'true', 'ifCondition1')).toBe(doc);
    doc = disconnect(doc, 'ifCondition1', 'true', 0);
    expect(targets(doc.rules.ifCondition1, 'true')).toEqual(['httpRespond1']);
  });

  it('deleting a node removes the wires into it and moves the start', () => {
    const doc = deleteNodes(base(), ['ifCondition1', 'httpRespond1']);
    expect(Object.keys(doc.rules)).toEqual(['setVariable1']);
    expect(doc.rules.setVariable1.then).toEqual({});
    expect(doc.start).toBe('setVariable1');
  });

  it('renaming a node renames its wires and the start; bad ids are refused', () => {
    const doc = renameNode(base(), 'ifCondition1', 'isHello');
    expect(doc.start).toBe('isHello');
    expect(Object.keys(doc.rules)).toContain('isHello');
    expect(() => renameNode(doc, 'isHello', 'setVariable1')).toThrow(/already exists/);
    expect(() => renameNode(doc, 'isHello', '1bad')).toThrow(/not a valid node id/);
  });

  it('copy and paste into another rule set keeps inner wires and renames taken ids', () => {
    const src = base();
    const frag = copyNodes(src, ['setVariable1', 'httpRespond1']);
    expect(frag.rules.setVariable1.then).toEqual({ next: ['httpRespond1'] });
    const other = addNode({ name: 'other', rules: {} }, 'SetVariable', [0, 0]).doc;
    const { doc, ids } = pasteFragment(other, frag, [50, 50]);
    expect(ids).toEqual(['setVariable2', 'httpRespond1']);
    expect(doc.rules.setVariable2.then).toEqual({ next: ['httpRespond1'] });
    expect(doc.rules.setVariable2.pos).toEqual([50, 150]);
    expect(doc.start).toBe('setVariable1');
  });

  it('auto layout puts each chain below the node it follows', () => {
    const pos = autoLayout(base());
    expect(pos.setVariable1[1]).toBeGreaterThan(pos.ifCondition1[1]);
    expect(pos.httpRespond1[1]).toBeGreaterThan(pos.setVariable1[1]);
  });
});

describe('undo and redo', () => {
  it('steps back and forth; typing in one field is one step', () => {
    const h = new History<RuleSetDoc>({ name: 'main', rules: {} });
    const a = addNode(h.present, 'SetVariable', [0, 0]);
    h.push(a.doc);
    h.push(setParam(h.present, a.id, 'name', 'M'), 'param:name');
    h.push(setParam(h.present, a.id, 'name', 'MS'), 'param:name');
    h.push(setParam(h.present, a.id, 'name', 'MSG'), 'param:name');
    expect(h.present.rules[a.id].with).toEqual({ name: 'MSG' });
    h.undo();
    expect(h.present.rules[a.id].with).toEqual({});
    h.undo();
    expect(h.present.rules).toEqual({});
    expect(h.canUndo).toBe(false);
    h.redo();
    h.redo();
    expect(h.present.rules[a.id].with).toEqual({ name: 'MSG' });
    h.undo();
    h.push(setParam(h.present, a.id, 'value', 'x'));
    expect(h.canRedo).toBe(false);
  });
});

describe('validation as you edit', () => {
  const exits = { main: [] as string[], sub: ['OK', 'FAIL'] };

  it('the hello example has no problems', () => {
    expect(validateRuleSet(parseRuleSet(helloText), cat, exits)).toEqual([]);
  });

  it('reports a missing required parameter on its node, and clears when it is set', () => {
    const r = addNode({ name: 'main', rules: {} }, 'IfCondition', [0, 0]);
    expect(validateRuleSet(r.doc, cat, exits)).toEqual([
      { severity: 'error', node: 'ifCondition1', param: 'condition', message: 'missing: rule IfCondition requires it (expression)' },
    ]);
    expect(validateRuleSet(setParam(r.doc, r.id, 'condition', 'true'), cat, exits)).toEqual([]);
  });

  it('reports wrong types, choices, unknown parameters and templates left open', () => {
    let doc = addNode({ name: 'main', rules: {} }, 'HttpRespond', [0, 0]).doc;
    doc = setParam(doc, 'httpRespond1', 'status', 'two hundred');
    doc = setParam(doc, 'httpRespond1', 'colour', 'red');
    doc = setParam(doc, 'httpRespond1', 'body', 'Hello ${name');
    const msgs = validateRuleSet(doc, cat, exits).map((d) => `${d.node}: ${d.param}: ${d.message}`);
    expect(msgs).toContain('httpRespond1: status: must be a number, got a string "two hundred"');
    expect(msgs.some((m) => m.startsWith("httpRespond1: colour: rule HttpRespond has no parameter 'colour'"))).toBe(true);
    expect(msgs).toContain("httpRespond1: body: '${' at offset 6 is never closed with '}'");
    expect(templateProblem('${a} and ${b}')).toBe('');
  });

  it('reports unreachable nodes, loops, dangling wires and chain points a rule lacks', () => {
    let doc: RuleSetDoc = parseRuleSet(helloText);
    doc = addNode(doc, 'SetVariable', [0, 0]).doc;
    doc.rules.greet.then = { next: ['respond', 'ghost'] };
    doc.rules.respond.then = { next: ['isHello'], done: ['greet'] };
    const found = validateRuleSet(doc, cat, exits);
    const text = found.map((d) => `${d.severity} ${d.node}: ${d.param}: ${d.message}`);
    expect(text).toContain("error greet: then.next: refers to node 'ghost', which does not exist in main");
    expect(text).toContain("error respond: then.done: rule HttpRespond has no chain point 'done'; it has: next");
    expect(text).toContain("warning setVariable1: : unreachable: no chain point leads here from start 'isHello'");
    expect(text.some((t) => t.includes("leads back to node 'isHello'"))).toBe(true);
  });

  it('rule-set nodes take their chain points from the other rule set\'s exits', () => {
    let doc = addNode({ name: 'main', rules: {} }, 'sub', [0, 0], 'ruleset').doc;
    doc = addNode(doc, 'HttpRespond', [0, 100]).doc;
    doc = setParam(doc, 'httpRespond1', 'status', 200);
    expect(validateRuleSet(connect(doc, 'sub1', 'OK', 'httpRespond1'), cat, exits)).toEqual([]);
    const bad = validateRuleSet(connect(doc, 'sub1', 'MAYBE', 'httpRespond1'), cat, exits);
    expect(bad[0].message).toBe("rule set sub has no chain point 'MAYBE'; it has: OK, FAIL");
    const missing = addNode({ name: 'main', rules: {} }, 'nosuch', [0, 0], 'ruleset').doc;
    expect(validateRuleSet(missing, cat, exits)[0].message).toBe("rule set 'nosuch' does not exist");
  });

  it('maps the console\'s validation lines onto the nodes of one file', () => {
    const d = mapServerErrors(
      [
        "rulesets/main.json: node isHello: condition: expected an operand at offset 7",
        'rulesets/other.json: node x: rule: unknown rule',
        { file: 'rulesets/main.json', node: 'greet', param: 'value', message: 'bad' },
        'rulesets/main.json: start: missing: name the node the rule set starts at',
        "rulesets/main.json: node greet: warning: unreachable: no chain point leads here from start 'isHello'",
        'rulesets/main.json: node greet: x-note: warning: unknown field, ignored',
      ],
      'rulesets/main.json',
    );
    expect(d).toEqual([
      { severity: 'error', node: 'isHello', param: 'condition', message: 'expected an operand at offset 7' },
      { severity: 'error', node: 'greet', param: 'value', message: 'bad' },
      { severity: 'error', node: '', param: 'start', message: 'missing: name the node the rule set starts at' },
      { severity: 'warning', node: 'greet', param: '', message: "unreachable: no chain point leads here from start 'isHello'" },
      { severity: 'warning', node: 'greet', param: 'x-note', message: 'unknown field, ignored' },
    ]);
  });
});

describe('configuration zip', () => {
  it('writes and reads back cap.json, rule sets and data files', () => {
    const c = newConfiguration('demo');
    c.rulesets.main = parseRuleSet(helloText);
    c.files['data/list.csv'] = new TextEncoder().encode('a,b\n');
    const back = readConfigurationZip(writeConfigurationZip(c));
    expect(back.manifest).toEqual(c.manifest);
    expect(back.rulesets.main).toEqual(JSON.parse(JSON.stringify(c.rulesets.main)));
    expect(new TextDecoder().decode(back.files['data/list.csv'])).toBe('a,b\n');
  });

  it('refuses bytes that are not a configuration zip', () => {
    expect(() => readConfigurationZip(new Uint8Array([1, 2, 3]))).toThrow(/not a zip/);
    expect(() => readConfigurationZip(writeConfigurationZip({ ...newConfiguration('x'), manifest: undefined as never }))).toThrow();
  });
});

describe('the console\'s files form', () => {
  it('round-trips text and binary files', async () => {
    const { configurationFromFiles, configurationToFiles } = await import('./configuration');
    const c = newConfiguration('demo');
    c.rulesets.main = parseRuleSet(helloText);
    c.files['data/list.csv'] = new TextEncoder().encode('a,b\n');
    c.files['content/logo.bin'] = new Uint8Array([0xff, 0x00, 0xfe]);
    const files = configurationToFiles(c);
    expect(files['data/list.csv']).toBe('a,b\n');
    expect(files['content/logo.bin']).toEqual({ base64: '/wD+' });
    const back = configurationFromFiles(files);
    expect(Array.from(back.files['content/logo.bin'])).toEqual([0xff, 0x00, 0xfe]);
    expect(back.rulesets.main.start).toBe('isHello');
  });
});

describe('extension rules in the catalogue', () => {
  it('reads an extension zip\'s rules, grouped under the extension and marked with its version', async () => {
    const { extensionRules } = await import('../api/catalogue');
    const { strToU8, zipSync } = await import('fflate');
    const manifest = {
      name: 'demo',
      version: '1.0.0',
      rules: [
        {
          name: 'Threshold',
          doc: 'Compares a number with a threshold.',
          params: [{ name: 'value', type: 'number', required: true }, { name: 'threshold', type: 'number', default: 0 }],
          chain_points: ['above', 'equal', 'below'],
          script: 'rules/threshold.lua',
        },
      ],
    };
    const zip = zipSync({ 'extension.json': strToU8(JSON.stringify(manifest)), 'rules/threshold.lua': strToU8('return function() return "above" end') });
    const [r] = extensionRules(zip);
    expect(r).toMatchObject({ name: 'Threshold', group: 'demo', extension: 'demo', extension_version: '1.0.0', chain_points: ['above', 'equal', 'below'] });
    expect(r.params[0]).toMatchObject({ name: 'value', type: 'number', required: true });
    const doc = addNode({ name: 'main', rules: {} }, 'Threshold', [0, 0]).doc;
    expect(validateRuleSet(doc, { rules: [...cat.rules, r] }, {})[0].message).toBe('missing: rule Threshold requires it (number)');
    expect(() => extensionRules(zipSync({ 'x.txt': strToU8('') }))).toThrow(/no extension.json/);
  });
});
