// The rule-set editor in a real browser, without a console: build a rule set by dragging
// three rules and wiring them, watch a validation error appear and clear, undo and redo,
// copy and paste, then download the zip and check that capctl validates and runs it.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { dragRule, nodeProblems, selectNode, setParam, settle, wire, wires } from './editor.mjs';
import { eventually, launchBrowser, run, screenshotPath, serveStatic, uiDir } from './harness.mjs';

const capctl = process.env.CAPCTL;
let server, browser, page;

before(async () => {
  assert.ok(capctl, 'CAPCTL must name the capctl binary');
  server = await serveStatic(uiDir);
  browser = await launchBrowser();
  page = await browser.context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(`${server.url}/local/main`);
  await page.getByTestId('catalogue-IfCondition').waitFor();
});

after(async () => {
  await browser?.close();
  await server?.close();
});

test('the catalogue is grouped, searchable and shows each rule\'s doc', async () => {
  const groups = await page.locator('.catalogue h4').allInnerTexts();
  for (const g of ['FLOW', 'HTTP', 'DATA']) assert.ok(groups.includes(g), `group ${g} in ${groups}`);
  await page.getByTestId('catalogue-search').fill('RegexExtract');
  await eventually(async () => assert.deepEqual(await page.locator('.cat-rule-name > span:first-child').allInnerTexts(), ['RegexExtract']));
  await page.getByRole('button', { name: 'about RegexExtract' }).click();
  await page.getByText('chain points: found, not_found').waitFor();
  await page.getByTestId('catalogue-search').fill('no such rule at all');
  await page.getByText('No rule matches').waitFor();
  await page.getByTestId('catalogue-search').fill('');
});

test('three rules dragged and wired; a validation error appears and clears', async () => {
  await dragRule(page, 'IfCondition', 300, 80);
  await dragRule(page, 'SetVariable', 200, 300);
  await dragRule(page, 'HttpRespond', 200, 500);
  await eventually(async () => assert.equal(await page.locator('.react-flow__node').count(), 3));
  // The first rule is the start; its required condition is missing, and says so on the node.
  await page.locator('.react-flow__node[data-id="ifCondition1"] .badge.start').waitFor();
  await eventually(async () => assert.deepEqual(await nodeProblems(page, 'ifCondition1'), ['condition: missing: rule IfCondition requires it (expression)']));
  await eventually(async () => assert.match(await page.getByTestId('validity').innerText(), /error/));

  await selectNode(page, 'ifCondition1');
  await setParam(page, 'ifCondition1', 'condition', "URI == '/hi'");
  await eventually(async () => assert.deepEqual(await nodeProblems(page, 'ifCondition1'), []));

  await selectNode(page, 'setVariable1');
  await setParam(page, 'setVariable1', 'name', 'MSG');
  await setParam(page, 'setVariable1', 'value', 'hello from the editor');
  await selectNode(page, 'httpRespond1');
  await setParam(page, 'httpRespond1', 'status', 'two hundred');
  await eventually(async () =>
    assert.deepEqual(await nodeProblems(page, 'httpRespond1'), [
      'status: must be a number, got a string "two hundred"',
      "unreachable: no chain point leads here from start 'ifCondition1'",
    ]),
  );
  await setParam(page, 'httpRespond1', 'status', '200');
  await setParam(page, 'httpRespond1', 'body', '${MSG}');
  await eventually(async () => assert.deepEqual(await nodeProblems(page, 'httpRespond1'), ['unreachable: no chain point leads here from start \'ifCondition1\'']));

  await wire(page, 'ifCondition1', 'true', 'setVariable1');
  await wire(page, 'setVariable1', 'next', 'httpRespond1');
  await eventually(async () => assert.deepEqual((await wires(page)).sort(), ['ifCondition1:true:0', 'setVariable1:next:0']));
  await eventually(async () => assert.deepEqual(await nodeProblems(page, 'httpRespond1'), []));
  await eventually(async () => assert.equal(await page.getByTestId('validity').innerText(), 'valid'));
  await page.locator('.react-flow__pane').click({ position: { x: 10, y: 10 } });
  await page.screenshot({ path: screenshotPath('editor.png') });
});

test('undo and redo with the keyboard', async () => {
  await page.locator('.react-flow__pane').click({ position: { x: 10, y: 10 } });
  await page.keyboard.press('Control+z');
  await eventually(async () => assert.deepEqual(await wires(page), ['ifCondition1:true:0']));
  await page.keyboard.press('Control+Shift+z');
  await eventually(async () => assert.deepEqual((await wires(page)).sort(), ['ifCondition1:true:0', 'setVariable1:next:0']));
});

test('copy and paste into another rule set keeps the wires between the copies', async () => {
  await selectNode(page, 'setVariable1');
  await page.locator('.react-flow__node[data-id="httpRespond1"] .rule-node-title').click({ modifiers: ['Control'] });
  await page.keyboard.press('Control+c');
  await page.getByLabel('New rule set name').fill('other');
  await page.getByRole('button', { name: '+ Rule set' }).click();
  await page.waitForURL(/\/local\/other$/);
  await page.locator('.react-flow__pane').click({ position: { x: 10, y: 10 } });
  await page.keyboard.press('Control+v');
  await eventually(async () => assert.equal(await page.locator('.react-flow__node').count(), 2));
  await eventually(async () => assert.deepEqual(await wires(page), ['setVariable1:next:0']));
  await page.getByTestId('ruleset-select').selectOption('main');
  await page.waitForURL(/\/local\/main$/);
  await eventually(async () => assert.equal(await page.locator('.react-flow__node').count(), 3));
});

test('keyboard: Enter on a catalogue rule adds it; Delete removes the selection; auto layout stacks chains', async () => {
  await page.getByTestId('catalogue-search').fill('Comment');
  await page.getByTestId('catalogue-Comment').focus();
  await page.keyboard.press('Enter');
  await eventually(async () => assert.equal(await page.locator('.react-flow__node').count(), 4));
  await page.locator('.react-flow__node[data-id="comment1"]').waitFor();
  await page.getByTestId('catalogue-search').fill('');
  await selectNode(page, 'comment1');
  await page.getByLabel('Comment', { exact: true }).fill('explains the rule set');
  await eventually(async () => assert.match(await page.locator('.react-flow__node[data-id="comment1"]').innerText(), /explains the rule set/));
  // Wiring without a mouse: the side panel lists each chain point's wires.
  await page.getByLabel('wire next to a node').selectOption('httpRespond1');
  await eventually(async () => assert.ok((await wires(page)).includes('comment1:next:0')));
  await page.getByRole('button', { name: 'remove the wire from next to httpRespond1' }).click();
  await eventually(async () => assert.ok(!(await wires(page)).includes('comment1:next:0')));
  await page.locator('.react-flow__node[data-id="comment1"] .rule-node-title').click();
  await eventually(async () => {
    await page.locator('.react-flow__node[data-id="comment1"]').focus({ timeout: 1000 }).catch(() => {});
    await page.keyboard.press('Delete');
    assert.equal(await page.locator('.react-flow__node').count(), 3);
  });
  await page.getByRole('button', { name: 'Auto layout' }).click();
  await eventually(async () => {
    const y = async (id) => (await page.locator(`.react-flow__node[data-id="${id}"]`).boundingBox()).y;
    assert.ok((await y('ifCondition1')) < (await y('setVariable1')));
    assert.ok((await y('setVariable1')) < (await y('httpRespond1')));
  });
});

test('a rule set used as a node takes its exits as chain points; double-click opens it', async () => {
  await page.getByTestId('ruleset-select').selectOption('other');
  await page.waitForURL(/\/local\/other$/);
  await dragRule(page, 'RuleSetExit', 300, 420);
  await selectNode(page, 'ruleSetExit1');
  await setParam(page, 'ruleSetExit1', 'name', 'DONE');
  await wire(page, 'httpRespond1', 'next', 'ruleSetExit1');
  await page.getByTestId('ruleset-select').selectOption('main');
  await page.waitForURL(/\/local\/main$/);
  await settle(page);
  await page.getByTestId('catalogue-ruleset-other').dragTo(page.getByTestId('canvas'), { targetPosition: { x: 480, y: 330 } });
  await page.locator('.react-flow__node[data-id="other1"] [data-testid="out-other1-DONE"]').waitFor();
  await page.screenshot({ path: screenshotPath('editor-ruleset-node.png') });
  await wire(page, 'ifCondition1', 'false', 'other1');
  await page.locator('.react-flow__pane').click({ position: { x: 10, y: 10 } });
  await eventually(async () =>
    assert.equal(await page.getByTestId('validity').innerText(), 'valid', `${await wires(page)} ${await page.getByTestId('ruleset-panel').innerText()}`),
  );
  await page.locator('.react-flow__node[data-id="other1"]').dblclick();
  await page.waitForURL(/\/local\/other$/);
  await page.getByTestId('ruleset-select').selectOption('main');
  await page.waitForURL(/\/local\/main$/);
});

test('the downloaded zip is what capctl validates and runs', async () => {
  await page.getByTestId('save').click();
  await page.getByTestId('save-status').getByText('Saved').waitFor();
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download-zip').click()]);
  const dir = mkdtempSync(path.join(tmpdir(), 'cap-editor-'));
  const zip = path.join(dir, 'local.zip');
  await download.saveAs(zip);
  const v = await run(capctl, ['validate', zip]);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  const r = await run(capctl, ['run', zip, '--request', 'GET /hi']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^HTTP\/1.1 200/);
  assert.match(r.stdout, /hello from the editor$/m);
  // Anything else goes through the rule set "other" (the pasted copy), which answers too.
  const other = await run(capctl, ['run', zip, '--request', 'GET /other']);
  assert.match(other.stdout, /^HTTP\/1.1 200/);
  // Positions are saved with the nodes (DESIGN §3 "pos").
  const unz = await run('unzip', ['-p', zip, 'rulesets/main.json']);
  const main = JSON.parse(unz.stdout);
  assert.equal(main.start, 'ifCondition1');
  for (const n of Object.values(main.rules)) assert.equal(n.pos.length, 2);
  writeFileSync(screenshotPath('main.json'), JSON.stringify(main, null, 2));
  assert.ok(readFileSync(screenshotPath('main.json'), 'utf8').includes('"pos"'));
});
