// The console UI end to end, against a real cap-console and a real cap-agent: log in, add
// the agent, create a repository and a configuration, build a rule set by dragging three
// rules and wiring them, see a validation error appear and clear, save, deploy to the agent
// and fetch its answer; then the dashboard, the agent's logs, trace and performance data.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { dragRule, nodeProblems, selectNode, setParam, wire, wires } from './editor.mjs';
import { eventually, launchBrowser, run, screenshotPath } from './harness.mjs';
import { startAgent, startConsole } from './processes.mjs';

let agent, consoleServer, browser, page;

before(async () => {
  agent = await startAgent();
  consoleServer = await startConsole();
  browser = await launchBrowser();
  page = await browser.context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
});

after(async () => {
  await browser?.close();
  await consoleServer?.stop();
  await agent?.stop();
});

test('a wrong password is refused with the console\'s message; the right one logs in', async () => {
  await page.goto(consoleServer.url + '/');
  await page.getByLabel('User name').fill('admin');
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').waitFor();
  assert.match(await page.getByRole('alert').innerText(), /password|credentials|user/i);
  await page.getByLabel('Password').fill(consoleServer.adminPassword);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Agents' }).waitFor();
  await page.getByText('No agents yet').waitFor();
});

test('an agent added in the form shows online on the dashboard', async () => {
  const form = page.getByRole('form', { name: 'Add an agent' });
  await form.getByLabel('Id').fill('web-1');
  await form.getByLabel('Host').fill('127.0.0.1');
  await form.getByLabel('Management port').fill(String(agent.mgmtPort));
  await form.getByLabel('Management key').fill(agent.key);
  await form.getByLabel('Group').fill('blue');
  await form.getByRole('button', { name: 'Add agent' }).click();
  await eventually(async () => assert.match(await page.getByTestId('agent-web-1').innerText(), /online/));
});

test('build a rule set in the editor, save it, deploy it, and the agent answers with it', async () => {
  await page.getByRole('link', { name: 'Repositories' }).click();
  await page.getByText('No repositories yet').waitFor();
  const repoForm = page.getByRole('form', { name: 'New repository' });
  await repoForm.getByLabel('Name').fill('shop');
  await repoForm.getByRole('button', { name: 'Create' }).click();
  await page.getByText('This repository has no configurations yet').waitFor();
  await page.getByTestId('new-configuration-name').fill('web');
  await page.getByRole('form', { name: 'New configuration' }).getByRole('button', { name: 'Create' }).click();
  await page.getByTestId('catalogue-IfCondition').waitFor();
  assert.match(page.url(), /\/repositories\/shop\/configurations\/web\/rulesets\/main$/);

  await dragRule(page, 'IfCondition', 300, 80);
  await dragRule(page, 'SetVariable', 200, 300);
  await dragRule(page, 'HttpRespond', 200, 500);
  await eventually(async () =>
    assert.deepEqual(await nodeProblems(page, 'ifCondition1'), ['condition: missing: rule IfCondition requires it (expression)']),
  );
  await selectNode(page, 'ifCondition1');
  await setParam(page, 'ifCondition1', 'condition', "URI == '/hi'");
  await eventually(async () => assert.deepEqual(await nodeProblems(page, 'ifCondition1'), []));
  await selectNode(page, 'setVariable1');
  await setParam(page, 'setVariable1', 'name', 'MSG');
  await setParam(page, 'setVariable1', 'value', 'Hello ${name} from the console');
  await selectNode(page, 'httpRespond1');
  await setParam(page, 'httpRespond1', 'body', '${MSG}');
  await wire(page, 'ifCondition1', 'true', 'setVariable1');
  await wire(page, 'setVariable1', 'next', 'httpRespond1');
  await eventually(async () => assert.deepEqual((await wires(page)).sort(), ['ifCondition1:true:0', 'setVariable1:next:0']));
  await eventually(async () => assert.equal(await page.getByTestId('validity').innerText(), 'valid'));

  // The console validates with the engine as you edit: an expression error shows on the
  // node, and saving it stores nothing.
  await selectNode(page, 'ifCondition1');
  await setParam(page, 'ifCondition1', 'condition', "URI == ");
  await eventually(async () => assert.equal((await nodeProblems(page, 'ifCondition1')).length, 1));
  await page.getByTestId('save').click();
  await eventually(async () => assert.match(await page.getByTestId('save-status').innerText(), /Not saved/));
  await eventually(async () => assert.equal((await nodeProblems(page, 'ifCondition1')).length, 1));
  await setParam(page, 'ifCondition1', 'condition', "URI == '/hi'");
  await eventually(async () => assert.deepEqual(await nodeProblems(page, 'ifCondition1'), []));
  await page.locator('.react-flow__pane').click({ position: { x: 10, y: 10 } });
  await page.getByTestId('save').click();
  await eventually(async () => assert.match(await page.getByTestId('save-status').innerText(), /Saved as revision 2/));
  await page.screenshot({ path: screenshotPath('console-editor.png') });

  await page.getByTestId('deploy-open').click();
  await page.getByLabel('deploy to web-1').check();
  await page.getByTestId('deploy-go').click();
  await eventually(async () => assert.match(await page.getByTestId('deploy-result-web-1').innerText(), /^deployed: /), 60000);
  const answer = await fetch(`${agent.webUrl}/hi?name=Ada`);
  assert.equal(answer.status, 200);
  assert.equal(await answer.text(), 'Hello Ada from the console');
  await page.getByRole('button', { name: 'Close' }).first().click();
});

test('the dashboard shows what the agent runs; its page shows logs, a trace and timings', async () => {
  await page.getByRole('link', { name: 'Agents' }).click();
  await eventually(async () => assert.match(await page.getByTestId('agent-web-1').innerText(), /web/));
  await eventually(async () => assert.match(await page.getByTestId('agent-web-1').innerText(), /in sync/));
  await page.screenshot({ path: screenshotPath('dashboard.png') });

  await page.getByRole('link', { name: 'web-1' }).click();
  await page.getByRole('tab', { name: 'Deployments' }).click();
  await eventually(async () => assert.match(await page.getByTestId('deployments').innerText({ timeout: 1000 }), /shop\/web\s+2\s+admin/));
  await page.getByRole('tab', { name: 'Trace' }).click();
  await page.getByRole('button', { name: 'Arm the trace' }).click();
  await page.getByText('5 still to record').waitFor();
  await fetch(`${agent.webUrl}/hi?name=Trace`);
  await eventually(async () => {
    await page.getByRole('button', { name: 'Refresh' }).click();
    await page.screenshot({ path: screenshotPath('trace.png') });
    const text = await page.getByTestId('trace').first().innerText({ timeout: 2000 });
    assert.match(text, /GET \/hi/);
    assert.match(text, /setVariable1/);
  });

  await page.getByRole('tab', { name: 'Performance' }).click();
  await eventually(async () => {
    const cell = page.getByTestId('time-main-httpRespond1');
    assert.match(await cell.innerText(), /ms$/);
    assert.equal(await cell.getAttribute('class'), 'time-fast');
  });

  await page.getByRole('tab', { name: 'Logs' }).click();
  await eventually(async () => assert.match(await page.getByTestId('log-text').innerText(), /\S/));

  // The same figures on the editor's nodes.
  await page.goto(`${consoleServer.url}/repositories/shop/configurations/web/rulesets/main`);
  await page.getByLabel('Timings from agent').selectOption('web-1');
  const stat = page.getByTestId('stat-httpRespond1');
  await eventually(async () => assert.match(await stat.innerText({ timeout: 1000 }), /^\d+ runs · \d+\.\d\d ms$/));
  assert.match(await stat.getAttribute('class'), /time-fast/);
});

test('an uploaded extension shows with progress, and its rules join the editor\'s catalogue', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cap-extension-'));
  mkdirSync(path.join(dir, 'rules'));
  writeFileSync(
    path.join(dir, 'extension.json'),
    JSON.stringify({
      name: 'demo',
      version: '1.0.0',
      cap: '>=0.1',
      rules: [
        {
          name: 'Threshold',
          group: 'Demo',
          doc: 'Compares a number with a threshold.',
          params: [
            { name: 'value', type: 'number', required: true },
            { name: 'threshold', type: 'number', default: 0 },
          ],
          chain_points: ['above', 'equal', 'below'],
          script: 'rules/threshold.lua',
        },
      ],
    }),
  );
  writeFileSync(path.join(dir, 'rules/threshold.lua'), 'return function(ctx, p) if p.value > p.threshold then return "above" end return "below" end\n');
  const zipped = await run('zip', ['-q', '-r', 'demo.zip', 'extension.json', 'rules'], { cwd: dir });
  assert.equal(zipped.code, 0, zipped.stderr);

  await page.getByRole('link', { name: 'Extensions' }).click();
  await page.getByText('No extensions uploaded yet').waitFor();
  await page.getByTestId('extension-file').setInputFiles(path.join(dir, 'demo.zip'));
  await page.getByText('Uploaded demo 1.0.0').waitFor();
  await eventually(async () => assert.match(await page.getByTestId('extensions').innerText(), /demo\s+1\.0\.0/));

  await page.goto(`${consoleServer.url}/repositories/shop/configurations/web/rulesets/main`);
  await page.getByTestId('catalogue-search').fill('threshold');
  await page.getByTestId('catalogue-Threshold').waitFor();
  assert.deepEqual(await page.locator('.catalogue h4').allInnerTexts(), ['DEMO']);
  assert.match(await page.getByTestId('catalogue-Threshold').innerText(), /demo/);
});

test('a deploy an agent refuses shows that agent\'s error; nothing changes on the running one', async () => {
  await page.getByRole('link', { name: 'Agents' }).click();
  const form = page.getByRole('form', { name: 'Add an agent' });
  await form.getByLabel('Id').fill('web-2');
  await form.getByLabel('Management port').fill(String(agent.mgmtPort));
  await form.getByLabel('Management key').fill('a-key-the-agent-does-not-have');
  await form.getByRole('button', { name: 'Add agent' }).click();
  await eventually(async () => assert.match(await page.getByTestId('agent-web-2').innerText(), /offline/));

  await page.goto(`${consoleServer.url}/repositories/shop/configurations/web`);
  await page.getByRole('button', { name: 'Deploy…' }).click();
  await page.getByLabel('deploy to web-2').check();
  await page.getByTestId('deploy-go').click();
  await eventually(async () => assert.match(await page.getByTestId('deploy-result-web-2').innerText(), /\S/), 60000);
  await eventually(async () => assert.equal(await page.getByTestId('deploy-result-web-2').getAttribute('class'), 'bad'));
  await page.getByRole('button', { name: 'Close' }).first().click();
  const answer = await fetch(`${agent.webUrl}/hi?name=Still`);
  assert.equal(await answer.text(), 'Hello Still from the console');
});

test('vault values are write-only; users and roles; the audit log lists the changes', async () => {
  const secret = 'hunter2-very-secret';
  // A second tab shares the session and gets its CSRF token from the console.
  const first = page;
  page = await browser.context.newPage();
  await page.goto(`${consoleServer.url}/vault`);
  await page.getByText('The vault is empty').waitFor();
  const vault = page.getByRole('form', { name: 'Store a credential' });
  await vault.getByLabel('Name', { exact: true }).fill('shopdb');
  await vault.getByLabel('Field name').fill('password');
  await vault.getByLabel('Secret value').fill(secret);
  await vault.getByRole('button', { name: 'Store' }).click();
  await eventually(async () => assert.match(await page.getByTestId('vault').innerText(), /shopdb\s+password/));
  assert.ok(!(await page.content()).includes(secret), 'the secret is not on the page');

  await page.getByRole('link', { name: 'Users' }).click();
  const users = page.getByRole('form', { name: 'New user' });
  await users.getByLabel('User name').fill('ops');
  await users.getByLabel('Password').fill('ops-password-long-enough');
  await users.getByRole('button', { name: 'Add user' }).click();
  await eventually(async () => assert.match(await page.getByTestId('users').innerText(), /ops\s+user/));

  await page.getByRole('link', { name: 'Audit log' }).click();
  await eventually(async () => {
    const text = await page.getByTestId('audit').innerText();
    for (const action of ['auth.login', 'agent.create', 'repository.create', 'configuration.save', 'vault.create', 'user.create'])
      assert.ok(text.includes(action), `${action} in the audit log`);
  });
  await page.close();
  page = first;
});

test('revision history: diff two revisions, restore the first', async () => {
  await page.goto(`${consoleServer.url}/repositories/shop/configurations/web`);
  await page.getByRole('tab', { name: 'History' }).click();
  await page.getByRole('button', { name: 'Diff with 1' }).click();
  await eventually(async () => {
    const diff = await page.getByTestId('diff').innerText({ timeout: 1000 });
    assert.match(diff, /rulesets\/main\.json\s+modified/);
    assert.match(diff, /\+\s*"ifCondition1"/);
  });
  await page.getByRole('button', { name: 'Restore' }).click();
  await eventually(async () => assert.match(await page.getByTestId('revisions').innerText({ timeout: 1000 }), /^3\s.*restore of revision 1/m));
  await page.getByRole('tab', { name: 'Rule sets and files' }).click();
  await eventually(async () => assert.match(await page.locator('.tree').innerText({ timeout: 1000 }), /main\s+entry\s+0 nodes/));
});
