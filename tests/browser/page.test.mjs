// mode="page": the full-page list for phones, with large touch targets and
// swipe left (archive) / swipe right (mark read).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Belfry, HostApp, items, launch, live, shot, until } from './harness.mjs';

let belfry;
let host;
let context;

before(async () => {
  belfry = new Belfry();
  await belfry.start();
  host = new HostApp(belfry);
  await host.start();
  context = await launch({ viewport: { width: 390, height: 844 }, hasTouch: true });
});

after(async () => {
  await context?.close();
  await host?.stop();
  await belfry?.dispose();
});

/** A horizontal finger swipe across `locator`, as touch events through the DevTools protocol. */
async function swipe(page, locator, dx) {
  const box = await locator.boundingBox();
  const y = box.y + box.height / 2;
  const x0 = box.x + box.width / 2;
  const cdp = await page.context().newCDPSession(page);
  const touch = (type, x) => cdp.send('Input.dispatchTouchEvent', { type, touchPoints: type === 'touchEnd' ? [] : [{ x, y }] });
  await touch('touchStart', x0);
  for (let i = 1; i <= 10; i++) await touch('touchMove', x0 + (dx * i) / 10);
  await touch('touchEnd', x0 + dx);
  await cdp.detach();
}

test('page mode lists the inbox full-page; swipes archive and mark read', async () => {
  const user = 'phone-user';
  await belfry.putUser(user, { name: 'Phone User' });
  await belfry.batch(user, [
    { title: 'Swipe me left', body: 'to archive', category: 'assignment', actor: { name: 'Ana Lima' } },
    { title: 'Swipe me right', body: 'to mark read', category: 'mention', actor: { name: 'Bo Berg' } },
    { title: 'Leave me', category: 'reminder' },
  ]);
  const page = await context.newPage();
  await page.goto(host.url(user, { provider: true, attrs: { mode: 'page' } }));
  await live(page);
  await until(async () => (await items(page).count()) === 3, { what: '3 items' });
  assert.equal(await page.locator('belfry-inbox .bell').count(), 0, 'no bell in page mode');
  assert.equal(await page.locator('belfry-inbox .count').textContent(), '3 unread');
  // Opening the page means the user has seen everything.
  await until(async () => (await belfry.counts(user)).unseen === 0, { what: 'seen' });

  // Large touch targets.
  const main = await items(page).first().locator('.main').boundingBox();
  const tool = await items(page).first().locator('.tool').first().boundingBox();
  assert.ok(main.height >= 64, `row height ${main.height}`);
  assert.ok(tool.width >= 44 && tool.height >= 44, `tool ${tool.width}×${tool.height}`);
  await shot(page, 'page-mode');

  await swipe(page, items(page).filter({ hasText: 'Swipe me left' }), -220);
  await until(async () => (await items(page).filter({ hasText: 'Swipe me left' }).count()) === 0, { what: 'archived' });
  const archived = await belfry.inbox(user, '?filter=archived');
  assert.deepEqual(archived.items.map((i) => i.title), ['Swipe me left']);

  await swipe(page, items(page).filter({ hasText: 'Swipe me right' }), 220);
  await until(() => items(page).filter({ hasText: 'Swipe me right' }).evaluate((li) => li.classList.contains('read')), { what: 'read' });
  // The widget marks it read at once and tells the server right after.
  await until(async () => (await belfry.inbox(user)).items.find((i) => i.title === 'Swipe me right').read, { what: 'read on the server' });
  assert.ok(page.url().includes('/app?'), 'a swipe does not open the notification');

  // A short drag does nothing.
  await swipe(page, items(page).filter({ hasText: 'Leave me' }), -30);
  assert.equal((await belfry.counts(user)).unread, 1);
  assert.equal(await items(page).count(), 2);

  // A tap still opens.
  await belfry.notify(user, { title: 'Tap me', url: '/landing/tap' });
  await items(page).filter({ hasText: 'Tap me' }).locator('.main').tap();
  await page.waitForURL(`${host.base}/landing/tap`);
  await page.close();
});
