// Several tabs of one site: one stream connection per browser held by a
// leader tab, toasts only where the user looks, title and favicon in every
// tab, reads synced, and a new leader when the leader tab closes.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Belfry, HostApp, emulateVisibility, items, launch, live, shot, toasts, until } from './harness.mjs';

let belfry;
let host;

before(async () => {
  belfry = new Belfry();
  await belfry.start();
  host = new HostApp(belfry);
  await host.start();
});

after(async () => {
  await host?.stop();
  await belfry?.dispose();
});

const leader = (page) => page.locator('belfry-inbox').getAttribute('data-leader');
const favicon = (page) => page.evaluate(() => document.querySelector('link[rel~=icon]').getAttribute('href'));
const connections = () => belfry.metric('belfry_stream_connections');

test('two tabs share one stream; toasts only in the visible tab; title, favicon and reads in both; the other tab takes over', async () => {
  const user = 'tabs-user';
  await belfry.putUser(user, { name: 'Tab User' });
  const context = await launch();
  await emulateVisibility(context);
  try {
    const baseline = await connections();
    const a = await context.newPage();
    await a.goto(host.url(user, { provider: true }));
    await live(a);
    assert.equal(await leader(a), 'true');
    const b = await context.newPage();
    await b.goto(host.url(user, { provider: true }));
    await live(b); // b learns the state from the leader
    assert.equal(await leader(b), 'false');
    assert.equal(await connections(), baseline + 1, 'one stream connection for two tabs');
    const originalIcon = await favicon(a);

    // The user looks at tab b: the toast shows there, not in the leader tab a.
    await a.evaluate(() => window.setVisibility('hidden'));
    await belfry.notify(user, { title: 'Seen in b', url: '/landing/1' });
    await toasts(b).filter({ hasText: 'Seen in b' }).waitFor();
    assert.equal(await toasts(a).count(), 0, 'no toast in the hidden tab');
    for (const page of [a, b]) {
      await until(async () => (await page.title()) === '(1) My Desk', { what: 'title in both tabs' });
      await until(async () => (await favicon(page)).startsWith('data:image/png'), { what: 'favicon badge in both tabs' });
    }
    await shot(b, 'two-tabs-visible');

    // No tab visible: exactly one tab shows the toast.
    await b.evaluate(() => window.setVisibility('hidden'));
    await belfry.notify(user, { title: 'Nobody looks' });
    await until(async () => (await toasts(a).filter({ hasText: 'Nobody looks' }).count()) + (await toasts(b).filter({ hasText: 'Nobody looks' }).count()) >= 1, { what: 'a toast' });
    await until(async () => (await b.title()) === '(2) My Desk' && (await a.title()) === '(2) My Desk', { what: 'both tabs counted' });
    const shown = (await toasts(a).filter({ hasText: 'Nobody looks' }).count()) + (await toasts(b).filter({ hasText: 'Nobody looks' }).count());
    assert.equal(shown, 1, 'in exactly one tab');

    // A read in tab b shows in tab a.
    await a.evaluate(() => window.setVisibility('visible'));
    await a.locator('belfry-inbox .bell').click();
    await b.locator('belfry-inbox .bell').click();
    await items(a).filter({ hasText: 'Seen in b' }).waitFor();
    await items(b).filter({ hasText: 'Seen in b' }).getByRole('button', { name: 'Mark as read' }).click();
    await until(() => items(a).filter({ hasText: 'Seen in b' }).evaluate((li) => li.classList.contains('read')), { what: 'read in tab a' });
    await until(async () => (await a.title()) === '(1) My Desk', { what: 'title follows' });
    await b.locator('belfry-inbox').getByRole('button', { name: 'Mark all read' }).click();
    for (const page of [a, b]) {
      await until(async () => (await page.title()) === 'My Desk', { what: 'no count' });
      await until(async () => (await favicon(page)) === originalIcon, { what: 'favicon restored' });
    }

    // The leader tab closes: b takes over within a couple of seconds and still receives.
    await a.close();
    await until(async () => (await leader(b)) === 'true', { timeout: 3000, what: 'b leads' });
    await live(b);
    await until(async () => (await connections()) === baseline + 1, { timeout: 3000, what: 'one connection again' });
    await b.evaluate(() => window.setVisibility('visible'));
    await belfry.notify(user, { title: 'After the takeover' });
    // (b's drawer is open: the toast is there, waiting for it to close.)
    await toasts(b).filter({ hasText: 'After the takeover' }).waitFor({ state: 'attached' });
    await until(async () => (await b.title()) === '(1) My Desk', { what: 'count after takeover' });
    await b.close();
    await until(async () => (await connections()) === baseline, { what: 'no connection left' });
  } finally {
    await context.close();
  }
});
