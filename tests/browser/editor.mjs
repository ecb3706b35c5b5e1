// Editor steps the browser tests share: drag rules from the catalogue, wire chain points,
// edit parameters.

/** Waits until the canvas stops moving (the editor fits the view when a rule set opens). */
export async function settle(page) {
  const transform = () => page.locator('.react-flow__viewport').getAttribute('style');
  let last = await transform();
  for (let i = 0; i < 40; ++i) {
    await page.waitForTimeout(100);
    const now = await transform();
    if (now === last) return;
    last = now;
  }
}

/** Drags a catalogue rule onto the canvas at (x, y) relative to the canvas; returns nothing. */
export async function dragRule(page, rule, x, y) {
  await settle(page);
  await page.getByTestId('catalogue-search').fill(rule);
  await page.getByTestId(`catalogue-${rule}`).dragTo(page.getByTestId('canvas'), { targetPosition: { x, y } });
  await page.getByTestId('catalogue-search').fill('');
}

/**
 * Wires chain point `cp` of node `from` to node `to` by dragging from handle to handle, as a
 * person does; tries again (up to three times) when a loaded machine lost the gesture.
 */
export async function wire(page, from, cp, to) {
  const count = async () => (await wires(page)).filter((id) => id.startsWith(`${from}:${cp}:`)).length;
  const before = await count();
  for (let attempt = 0; attempt < 3; ++attempt) {
    await dragWire(page, from, cp, to);
    for (let i = 0; i < 20; ++i) {
      if ((await count()) > before) return;
      await page.waitForTimeout(50);
    }
  }
}

async function dragWire(page, from, cp, to) {
  // Both ends in view, as a person would arrange it: the canvas's "fit view" control.
  await page.locator('.react-flow__controls-fitview').click();
  await settle(page);
  const out = page.getByTestId(`out-${from}-${cp}`);
  const target = page.locator(`.react-flow__node[data-id="${to}"] .react-flow__handle.target`);
  const a = await out.boundingBox();
  const b = await target.boundingBox();
  await page.mouse.move(a.x + a.width / 2, a.y + a.height / 2);
  await page.mouse.down();
  await page.waitForTimeout(50);
  await page.mouse.move((a.x + b.x) / 2, (a.y + b.y) / 2, { steps: 5 });
  await page.mouse.move(b.x + b.width / 2, b.y + b.height / 2, { steps: 5 });
  await page.waitForTimeout(50);
  await page.mouse.up();
}

/** Selects a node by clicking its title. */
export async function selectNode(page, id) {
  await page.locator(`.react-flow__node[data-id="${id}"] .rule-node-title`).click();
}

/** Types a parameter value into the side panel of the selected node. */
export async function setParam(page, id, name, value) {
  await page.locator(`#param-${id}-${name}`).fill(value);
}

/** The problems shown on a node, as text lines. */
export async function nodeProblems(page, id) {
  const list = page.getByTestId(`problems-${id}`);
  if ((await list.count()) === 0) return [];
  return list.locator('li').allInnerTexts();
}

/** The rule set as the editor holds it: the edges drawn, as "from:cp->to". */
export async function wires(page) {
  return page.locator('.react-flow__edge').evaluateAll((els) =>
    els.map((e) => e.getAttribute('data-testid')?.replace('rf__edge-', '') ?? '').map((id) => id.replaceAll('\u0000', ':')),
  );
}
