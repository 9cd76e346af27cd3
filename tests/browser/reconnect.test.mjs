// The server restarts: the widget shows that the connection is lost,
// reconnects with back-off, resumes after the last event it saw and shows
// what was sent while it was away.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Belfry, HostApp, items, launch, live, shot, toasts, until } from './harness.mjs';

let belfry;
let host;
let context;

before(async () => {
  belfry = new Belfry();
  await belfry.start();
  host = new HostApp(belfry);
  await host.start();
  context = await launch();
});

after(async () => {
  await context?.close();
  await host?.stop();
  await belfry?.dispose();
});

test('after a server restart the widget reconnects and shows what was sent meanwhile', async () => {
  const user = 'restart-user';
  await belfry.putUser(user, { name: 'Restart User' });
  const page = await context.newPage();
  await page.goto(host.url(user, { provider: true }));
  await live(page);
  await belfry.notify(user, { title: 'Before the restart' });
  await page.locator('belfry-inbox .bell').click();
  await items(page).filter({ hasText: 'Before the restart' }).waitFor();
  const conn = page.locator('belfry-inbox .conn');
  assert.ok(await conn.isHidden(), 'no indicator while connected');

  await belfry.stop();
  await page.waitForSelector('belfry-inbox[data-connection="offline"]', { state: 'attached' });
  await conn.waitFor({ state: 'visible' });
  assert.match(await page.locator('belfry-inbox .bell').getAttribute('aria-label'), /connection lost/);
  await page.locator('belfry-inbox .notice').filter({ hasText: 'Connection lost' }).waitFor();
  await shot(page, 'offline');

  // Keep the widget away until the server has new notifications for it.
  await page.route('**/v1/me/stream*', (route) => route.abort());
  await belfry.start();
  await belfry.notify(user, { title: 'While away 1' });
  await belfry.notify(user, { title: 'While away 2' });
  await page.unroute('**/v1/me/stream*');

  await live(page); // back-off is at most 15 s
  await conn.waitFor({ state: 'hidden' });
  // Replayed from the last event id: they arrive as events (toasts, waiting while the
  // drawer is open), not only by reloading the list.
  await toasts(page).filter({ hasText: 'While away 1' }).waitFor({ state: 'attached' });
  await toasts(page).filter({ hasText: 'While away 2' }).waitFor({ state: 'attached' });
  await until(async () => (await items(page).locator('.title').allTextContents()).join('|') === 'While away 2|While away 1|Before the restart', {
    what: 'the list in order',
  });
  assert.equal(await page.locator('belfry-inbox .badge').textContent(), '3');
  assert.ok(await page.locator('belfry-inbox .notice').isHidden());

  // And it is live again.
  await belfry.notify(user, { title: 'After the restart' });
  await items(page).filter({ hasText: 'After the restart' }).waitFor();
  await page.close();
});
