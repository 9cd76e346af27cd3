// `belfry serve --demo`: the Harbor Desk page signs in as the demo user
// without any secret in the browser, its panel sends every sample kind, the
// page routes notification clicks itself, and it runs under a strict CSP.
// Saves the README's screenshot (docs/screenshots/demo.png) when
// BELFRY_UPDATE_SCREENSHOT=1.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Belfry, items, launch, live, repo, screenshots, shot, toasts, until, watchErrors } from './harness.mjs';

let belfry;
let context;

before(async () => {
  belfry = new Belfry({ demo: true });
  await belfry.start();
  context = await launch({ viewport: { width: 1280, height: 760 } });
});

after(async () => {
  await context?.close();
  await belfry?.dispose();
});

test('the demo help desk: sign-in, every sample kind, routing, entity reads, page mode', async () => {
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.addInitScript(() => {
    window.violations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.violations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const requests = [];
  page.on('request', (r) => requests.push(r));
  await page.goto(`${belfry.base}/`);
  await live(page);
  assert.equal(await page.title(), 'Harbor Desk');
  await page.getByRole('heading', { name: 'Open tickets' }).waitFor();
  for (const r of requests) {
    assert.ok(!(r.headers().authorization || '').includes('bfy_sk_'), 'no secret key in the browser');
  }
  assert.ok(!(await page.content()).includes('bfy_sk_'));

  const send = async (kind) => {
    await page.locator(`[data-kind="${kind}"]`).click();
    await page.locator('#trigger-status').filter({ hasText: 'Sent' }).waitFor();
    await page.locator('#trigger-status').evaluate((el) => (el.textContent = ''));
  };
  await send('assignment');
  await toasts(page).filter({ hasText: 'assigned to you' }).waitFor();
  const assignment = toasts(page).filter({ hasText: 'assigned to you' });
  assert.ok(await assignment.locator('.avatar img').count(), 'Sam has an avatar picture');
  // Accept is a callback answered once: the toast shows who accepted instead of the button.
  await assignment.getByRole('button', { name: 'Accept' }).click();
  const accepted = await page
    .waitForFunction(() => document.querySelector('belfry-inbox')?.shadowRoot.querySelector('.toast .answered')?.textContent)
    .catch((e) => assert.fail(`${e.message}: ${JSON.stringify(errors)}`));
  assert.match(await accepted.jsonValue(), /^✓ Accept · /, JSON.stringify(errors));
  await send('mention');
  await toasts(page).filter({ hasText: 'mentioned you' }).waitFor();
  await send('reminder');
  await toasts(page).filter({ hasText: 'Reminder: call back' }).waitFor();
  assert.ok(await toasts(page).filter({ hasText: 'Reminder: call back' }).evaluate((t) => t.classList.contains('sticky')));
  // Three sent, the accepted assignment read by its answer.
  await until(async () => (await page.title()) === '(2) Harbor Desk', { what: 'the title counts' });
  const picture = path.join(screenshots, 'demo.png');
  await shot(page, 'demo');
  if (process.env.BELFRY_UPDATE_SCREENSHOT === '1') {
    fs.mkdirSync(path.join(repo, 'docs', 'screenshots'), { recursive: true });
    fs.copyFileSync(picture, path.join(repo, 'docs', 'screenshots', 'demo.png'));
  }

  await send('customer_reply');
  await send('broadcast');
  await send('stacked_replies');
  await page.locator('belfry-inbox .bell').click();
  await items(page).filter({ hasText: 'Maintenance tonight' }).waitFor();
  await items(page).locator('.stack').filter({ hasText: '×3' }).waitFor();
  await until(async () => (await items(page).count()) === 6, { what: 'six entries (the stack is one)' });
  await shot(page, 'demo-drawer');

  // The page routes ticket links itself (belfry:open cancelled): no reload, the widget stays.
  await page.evaluate(() => (window.stillHere = true));
  await items(page).filter({ hasText: 'mentioned you' }).locator('.main').click();
  await page.waitForURL(/\/tickets\/\d+$/);
  assert.equal(await page.evaluate(() => window.stillHere), true);
  await page.getByRole('heading', { level: 1 }).filter({ hasText: '#' }).waitFor();

  // Viewing a ticket reads everything about it (the stacked replies are about another one).
  const ticket = page.url().split('/').pop();
  const token = (await (await fetch(`${belfry.base}/demo/token`, { method: 'POST' })).json()).token;
  await until(async () => {
    const res = await fetch(`${belfry.base}/v1/me/notifications?filter=unread`, { headers: { Authorization: `Bearer ${token}` } });
    return !(await res.json()).items.some((i) => i.entity && i.entity.id === ticket);
  }, { what: `notifications about #${ticket} read` });

  assert.deepEqual(await page.evaluate(() => window.violations), [], 'the page runs under its CSP');

  // The phone view.
  await page.goto(`${belfry.base}/notifications`);
  await live(page);
  await page.locator('belfry-inbox[mode="page"] .item').first().waitFor();
  assert.equal(await page.locator('belfry-inbox .bell').count(), 0);

  assert.deepEqual(await page.evaluate(() => window.violations), [], 'the page runs under its CSP');
  assert.deepEqual(errors, []);
  await page.close();
});
