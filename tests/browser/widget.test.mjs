// One tab: the bell, the drawer, toasts, links, stacking, tokens, language,
// keyboard and screen-reader support, and content that tries to inject markup.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Belfry, HostApp, items, launch, live, shot, toasts, until, watchErrors } from './harness.mjs';

describe('the inbox widget in one tab', () => {
  let belfry;
  let host;
  let context;
  let n = 0;

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

  /** A new user, and a page of the host application signed in as them. */
  async function open(options = {}) {
    const user = `user-${++n}`;
    await belfry.putUser(user, { name: `User ${n}`, ...(options.user || {}) });
    const token = options.noToken ? undefined : (options.token ?? (await belfry.token(user)));
    const page = await context.newPage();
    const errors = watchErrors(page);
    await page.goto(host.url(user, { token, ...options }));
    await live(page);
    return { user, page, errors };
  }

  const bell = (page) => page.locator('belfry-inbox .bell');
  const badge = (page) => page.locator('belfry-inbox .badge');
  const dot = (page) => page.locator('belfry-inbox .dot');

  test('the bell shows the unread count (99+ past 99), the unseen dot, and its accessible name', async () => {
    const { user, page, errors } = await open();
    await assert.rejects(badge(page).waitFor({ state: 'visible', timeout: 300 }), 'no badge without notifications');
    await belfry.batch(user, [{ title: 'one' }, { title: 'two' }, { title: 'three' }]);
    await until(async () => (await badge(page).textContent()) === '3', { what: 'badge 3' });
    assert.equal(await bell(page).getAttribute('aria-label'), 'Notifications, 3 unread');
    assert.ok(await dot(page).isVisible(), 'the red dot shows unseen notifications');
    assert.equal(await page.title(), '(3) My Desk');

    // Opening the drawer marks everything seen: the dot goes, the count stays.
    await bell(page).click();
    await dot(page).waitFor({ state: 'hidden' });
    assert.equal(await badge(page).textContent(), '3');
    assert.deepEqual(await belfry.counts(user), { unread: 3, unseen: 0 });
    await shot(page, 'drawer');

    await belfry.batch(user, Array.from({ length: 97 }, (_, i) => ({ title: `bulk ${i}` })));
    await until(async () => (await badge(page).textContent()) === '99+', { what: 'badge 99+' });
    assert.equal(await bell(page).getAttribute('aria-label'), 'Notifications, 100 unread');
    assert.equal(await page.title(), '(99+) My Desk');
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('the bell counts broadcasts from the notifications alone (the stream sends no counts after a new entry)', async () => {
    const streams = [];
    const { user, page, errors } = await open({ user: { groups: ['night-shift'] } });
    page.on('request', (r) => r.url().includes('/v1/me/stream') && streams.push(r.url()));
    const send = (body) => belfry.call('POST', '/v1/notifications', body);
    for (let i = 0; i < 5; i++) await send({ to: { groups: ['night-shift'] }, title: `shift note ${i}` });
    await send({ to: { all: true }, title: 'for everyone' });
    await belfry.notify(user, { title: 'direct' });
    await until(async () => (await badge(page).textContent()) === '7', { what: 'badge 7' });
    assert.equal((await belfry.counts(user)).unread, 7);
    // A change of state is counted on the server and its counts follow.
    const [first] = (await belfry.inbox(user)).items;
    await belfry.call('POST', `/v1/users/${user}/notifications/${first.id}/read`);
    await until(async () => (await badge(page).textContent()) === '6', { what: 'badge 6 after a read' });
    // A stack: the first is a new entry, the second grows it (counted on the server).
    await belfry.notify(user, { title: 'reply', stack_key: 'thread' });
    await belfry.notify(user, { title: 'another reply', stack_key: 'thread' });
    await until(async () => (await badge(page).textContent()) === '7', { what: 'badge 7 with the stack' });
    assert.equal((await belfry.counts(user)).unread, 7);
    // After a reconnect (the page reloads) the count is still right.
    await page.reload();
    await live(page);
    await send({ to: { all: true }, title: 'after the reload' });
    await until(async () => (await badge(page).textContent()) === '8', { what: 'badge 8 after the reload' });
    assert.ok(streams.length >= 1 && streams.every((u) => new URL(u).searchParams.get('counts') === 'derived'), `streams: ${streams}`);
    const raw = await belfry.call('GET', `/v1/users/${user}/counts`);
    assert.equal(typeof raw.seq, 'number', 'counts say the seq they are as of');
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('a notification sent over the API shows as a toast and in the list within a second', async () => {
    const { user, page } = await open();
    await bell(page).click();
    await page.locator('belfry-inbox .state').filter({ hasText: 'No notifications yet.' }).waitFor();
    const started = Date.now();
    await belfry.notify(user, {
      title: 'Ticket #123 assigned to you',
      body: 'Printer on floor 3 is jammed',
      category: 'assignment',
      actor: { id: 'bo', name: 'Bo Berg' },
      entity: { type: 'ticket', id: '123' },
    });
    const toast = toasts(page).filter({ hasText: 'Ticket #123 assigned to you' });
    // The toast is there, but waits while the drawer is open: it never covers it.
    await toast.waitFor({ state: 'attached', timeout: 1000 });
    assert.ok(await toast.isHidden(), 'no toast over the open drawer');
    await items(page).filter({ hasText: 'Ticket #123 assigned to you' }).waitFor({ timeout: 1000 });
    assert.ok(Date.now() - started < 1500, 'both within about a second of the send');
    const item = items(page).first();
    assert.match(await item.locator('.body').textContent(), /Printer on floor 3/);
    assert.equal(await item.locator('.entity').textContent(), '#123');
    assert.equal(await item.locator('.avatar').first().textContent(), 'BB', 'initials without an avatar');
    assert.equal(await item.locator('time').textContent(), 'now');
    assert.ok(await item.evaluate((li) => li.classList.contains('unread')));
    await shot(page, 'drawer-with-a-waiting-toast');
    await page.waitForTimeout(6500); // longer than a toast lasts: it is paused while it waits
    await page.keyboard.press('Escape');
    await toast.waitFor();
    await shot(page, 'toast-after-the-drawer');
    const events = await page.evaluate(() => window.events.filter((e) => e.type === 'belfry:notification'));
    assert.equal(events.length, 1);
    assert.equal(events[0].detail.notification.title, 'Ticket #123 assigned to you');
    await page.close();
  });

  test('clicking a notification marks it read and goes to its link', async () => {
    const { user, page } = await open();
    await belfry.notify(user, { title: 'Go there', url: `${host.base}/landing/123` });
    await belfry.notify(user, { title: 'Relative link', url: '/landing/456' });
    await bell(page).click();
    await items(page).filter({ hasText: 'Go there' }).locator('.main').click();
    await page.waitForURL(`${host.base}/landing/123`);
    await until(async () => (await belfry.inbox(user)).items.find((i) => i.title === 'Go there').read, { what: 'read on the server' });

    // A path is a path of the host application.
    await page.goBack();
    await live(page);
    await bell(page).click();
    await items(page).filter({ hasText: 'Relative link' }).locator('.main').click();
    await page.waitForURL(`${host.base}/landing/456`);
    assert.deepEqual(await belfry.counts(user), { unread: 0, unseen: 0 });
    await page.close();
  });

  test('a single-page application cancels belfry:open and routes itself', async () => {
    const { user, page } = await open({ preventOpen: true });
    await belfry.notify(user, { title: 'Routed', url: '/landing/9' });
    await bell(page).click();
    await items(page).filter({ hasText: 'Routed' }).locator('.main').click();
    await until(() => page.evaluate(() => window.events.some((e) => e.type === 'belfry:open')), { what: 'belfry:open' });
    const opened = await page.evaluate(() => window.events.find((e) => e.type === 'belfry:open').detail);
    assert.equal(opened.url, `${host.base}/landing/9`);
    assert.equal(opened.notification.title, 'Routed');
    assert.ok(page.url().includes('/app?'), 'no navigation');
    await until(async () => (await belfry.counts(user)).unread === 0, { what: 'read' });
    await page.close();
  });

  test('mark read, mark unread, archive, the tabs, and mark all read', async () => {
    const { user, page } = await open();
    await belfry.batch(user, [{ title: 'first' }, { title: 'second' }, { title: 'third' }]);
    await bell(page).click();
    await until(async () => (await items(page).count()) === 3, { what: '3 items' });
    const titles = await items(page).locator('.title').allTextContents();
    assert.deepEqual(titles, ['third', 'second', 'first'], 'newest first');

    const second = items(page).filter({ hasText: 'second' });
    await second.getByRole('button', { name: 'Mark as read' }).click();
    await until(async () => (await belfry.counts(user)).unread === 2, { what: 'unread 2' });
    await second.getByRole('button', { name: 'Mark as unread' }).click();
    await until(async () => (await belfry.counts(user)).unread === 3, { what: 'unread 3' });
    await items(page).filter({ hasText: 'first' }).getByRole('button', { name: 'Archive' }).click();
    await until(async () => (await items(page).count()) === 2, { what: 'archived item leaves the list' });

    await page.getByRole('tab', { name: 'Archived' }).click();
    await items(page).filter({ hasText: 'first' }).waitFor();
    assert.equal(await items(page).count(), 1);
    const [fourth] = (await belfry.batch(user, [{ title: 'fourth' }])).results;
    await belfry.archive(user, fourth.id);
    await until(async () => (await items(page).count()) === 2, { what: 'archived elsewhere shows up' });
    await items(page).filter({ hasText: 'fourth' }).getByRole('button', { name: 'Delete' }).click();
    await until(async () => (await items(page).locator('.title').allTextContents()).join() === 'first', { what: 'deleted item leaves the list' });
    const stored = await belfry.inbox(user, '?filter=archived');
    assert.deepEqual(stored.items.map((i) => i.title), ['first'], 'deleted on the server');
    await page.getByRole('tab', { name: 'Unread' }).click();
    await until(async () => (await items(page).locator('.title').allTextContents()).join() === 'third,second', { what: 'unread tab' });

    await page.locator('belfry-inbox').getByRole('button', { name: 'Mark all read' }).click();
    await badge(page).waitFor({ state: 'hidden' });
    await until(async () => (await items(page).evaluateAll((els) => els.every((e) => e.classList.contains('read')))), { what: 'all read' });
    assert.equal((await belfry.counts(user)).unread, 0);
    assert.equal(await page.title(), 'My Desk');
    await page.close();
  });

  test('the drawer loads more on scroll', async () => {
    const { user, page } = await open();
    await belfry.batch(user, Array.from({ length: 45 }, (_, i) => ({ title: `message ${i}` })));
    await until(async () => (await badge(page).textContent()) === '45', { what: 'all arrived live' });
    await bell(page).click();
    await until(async () => (await items(page).count()) === 20, { what: 'first page' });
    for (const expected of [40, 45]) {
      await items(page).last().scrollIntoViewIfNeeded();
      await until(async () => (await items(page).count()) === expected, { what: `${expected} items` });
    }
    assert.equal(await items(page).last().locator('.title').textContent(), 'message 0');
    await page.close();
  });

  test('stacked notifications are one entry whose count grows', async () => {
    const { user, page } = await open();
    const reply = (body) => ({ title: 'New replies on #77', body, stack_key: 'ticket:77:replies', entity: { type: 'ticket', id: '77' } });
    await belfry.notify(user, reply('one'));
    await bell(page).click();
    await items(page).first().waitFor();
    await belfry.notify(user, reply('two'));
    await items(page).locator('.stack').filter({ hasText: '×2' }).waitFor();
    await belfry.notify(user, reply('three'));
    await items(page).locator('.stack').filter({ hasText: '×3' }).waitFor();
    assert.equal(await items(page).count(), 1);
    assert.equal(await items(page).locator('.body').textContent(), 'three');
    assert.equal(await items(page).locator('.stack').getAttribute('aria-label'), '3 notifications');
    assert.equal(await toasts(page).count(), 1, 'one toast for the stack, replaced in place');
    await page.close();
  });

  test('a sticky toast stays, a normal one hides; shift-click on close closes them all', async () => {
    const { user, page } = await open({ attrs: { 'toast-duration': '1500' } });
    await belfry.notify(user, { title: 'Call back Mrs. Novak', sticky: true, category: 'reminder' });
    await toasts(page).filter({ hasText: 'Call back' }).waitFor();
    await belfry.notify(user, { title: 'Passing by' });
    await toasts(page).filter({ hasText: 'Passing by' }).waitFor();
    await toasts(page).filter({ hasText: 'Passing by' }).waitFor({ state: 'detached', timeout: 5000 });
    assert.equal(await toasts(page).count(), 1, 'the sticky toast outlived the normal one');
    assert.ok(await toasts(page).first().evaluate((t) => t.classList.contains('sticky')));

    await belfry.batch(user, [{ title: 'Sticky 2', sticky: true }, { title: 'Sticky 3', sticky: true }]);
    await until(async () => (await toasts(page).count()) === 3, { what: '3 toasts' });
    await shot(page, 'toasts');
    await toasts(page).nth(1).getByRole('button', { name: /Close/ }).click();
    assert.equal(await toasts(page).count(), 2, 'a click closes one');
    await toasts(page).first().getByRole('button', { name: /Close/ }).click({ modifiers: ['Shift'] });
    assert.equal(await toasts(page).count(), 0, 'shift-click closes all');
    assert.equal((await belfry.counts(user)).unread, 4, 'closing a toast does not read it');
    await page.close();
  });

  test('link actions work; callback actions are enabled (answered through actions.js)', async () => {
    const { user, page } = await open();
    await belfry.notify(user, {
      title: 'Approve the order',
      actions: [
        { id: 'view', label: 'View order', kind: 'link', url: '/landing/order-5', style: 'primary' },
        { id: 'ok', label: 'Approve', kind: 'callback', style: 'secondary' },
      ],
    });
    const toast = toasts(page).first();
    await toast.waitFor();
    assert.ok(await toast.getByRole('button', { name: 'Approve', exact: true }).isEnabled());
    await toast.getByRole('button', { name: 'View order' }).click();
    await page.waitForURL(`${host.base}/landing/order-5`);
    await until(async () => (await belfry.counts(user)).unread === 0, { what: 'read by the action' });
    await page.close();
  });

  test('content is text: markup in a notification runs nothing', async () => {
    const { user, page, errors } = await open();
    const evil = '<img src=x onerror="window.pwned=1">';
    page.on('dialog', (d) => {
      errors.push(`dialog: ${d.message()}`);
      d.dismiss();
    });
    await belfry.notify(user, {
      title: evil,
      body: '<script>window.pwned=2</script><b>bold</b>',
      actor: { name: '<svg onload="window.pwned=3">' },
      data: { html: '<img src=x onerror=window.pwned=4>' },
      actions: [{ id: 'a', label: '<i onmouseover=window.pwned=5>hi</i>', kind: 'link', url: 'https://example.invalid/?q=<script>' }],
    });
    const toast = toasts(page).first();
    await toast.waitFor();
    await bell(page).click();
    await items(page).first().waitFor();
    await items(page).first().hover();
    assert.equal(await toast.locator('.title').textContent(), evil);
    assert.equal(await items(page).first().locator('.title').textContent(), evil);
    assert.equal(await page.locator('belfry-inbox img, belfry-inbox script, belfry-inbox b, belfry-inbox i').count(), 0);
    assert.equal(await page.evaluate(() => window.pwned), undefined);
    await shot(page, 'injection');
    // Links that are not http(s) or a path are never followed, whatever reaches the browser.
    const verdicts = await page.evaluate(async (base) => {
      const { safeUrl } = await import(`${base}/widget/belfry.js`);
      return ['javascript:alert(1)', 'data:text/html,x', '//evil.example', ' JAVASCRIPT:x', '/ok', 'https://ok.example/x'].map(safeUrl);
    }, belfry.base);
    assert.deepEqual(verdicts.slice(0, 4), [null, null, null, null]);
    assert.ok(verdicts[4].endsWith('/ok') && verdicts[5] === 'https://ok.example/x');
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('keyboard: the bell is a button, Escape closes the drawer, focus comes back; toasts are announced politely', async () => {
    const { user, page } = await open();
    await belfry.notify(user, { title: 'Keyboard user' });
    await until(async () => (await bell(page).getAttribute('aria-label')) === 'Notifications, 1 unread', { what: 'label' });
    const live = page.locator('belfry-inbox [aria-live="polite"]');
    await until(async () => (await live.textContent()).includes('New notification: Keyboard user'), { what: 'announcement' });

    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.shadowRoot.activeElement.className), 'bell');
    await page.keyboard.press('Enter');
    assert.equal(await bell(page).getAttribute('aria-expanded'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement.shadowRoot.activeElement.getAttribute('role')), 'tab');
    await page.keyboard.press('ArrowLeft'); // All → Unread
    assert.equal(await page.locator('belfry-inbox [role=tab][aria-selected=true]').textContent(), 'Unread');
    await page.keyboard.press('Escape');
    assert.equal(await bell(page).getAttribute('aria-expanded'), 'false');
    assert.ok(await page.locator('belfry-inbox .drawer').isHidden());
    assert.equal(await page.evaluate(() => document.activeElement.shadowRoot.activeElement.className), 'bell');
    await page.close();
  });

  test('German strings by the locale attribute', async () => {
    const { user, page } = await open({ attrs: { locale: 'de' } });
    await belfry.batch(user, [{ title: 'Eins' }, { title: 'Zwei', sticky: true }]);
    await until(async () => (await bell(page).getAttribute('aria-label')) === 'Benachrichtigungen, 2 ungelesen', { what: 'German label' });
    await bell(page).click();
    assert.deepEqual(await page.locator('belfry-inbox [role=tab]').allTextContents(), ['Ungelesen', 'Alle', 'Archiviert']);
    await items(page).first().waitFor();
    assert.equal(await items(page).first().locator('time').textContent(), 'jetzt');
    assert.ok(await page.locator('belfry-inbox').getByRole('button', { name: 'Alle als gelesen markieren' }).isVisible());
    await page.close();
  });

  test('attributes, methods and theming: toasts="off", tab-badge="off", page-url, open(), counts, CSS custom properties', async () => {
    const { user, page } = await open({ attrs: { toasts: 'off', 'tab-badge': 'off', 'page-url': '/landing/all' } });
    await page.addStyleTag({ content: 'belfry-inbox { --belfry-badge-bg: rgb(1, 2, 3); --belfry-accent: rgb(4, 5, 6) }' });
    await belfry.notify(user, { title: 'Quiet' });
    await until(async () => (await badge(page).textContent()) === '1', { what: 'badge' });
    assert.deepEqual(await page.evaluate(() => document.getElementById('inbox').counts), { unread: 1, unseen: 1 });
    assert.equal(await toasts(page).count(), 0, 'no toasts');
    assert.equal(await page.title(), 'My Desk', 'the title is left alone');
    assert.equal(await page.evaluate(() => document.querySelector('link[rel~=icon]').getAttribute('href')), '/favicon.svg');
    assert.equal(await badge(page).evaluate((b) => getComputedStyle(b).backgroundColor), 'rgb(1, 2, 3)');

    await page.evaluate(() => document.getElementById('inbox').open());
    assert.equal(await bell(page).getAttribute('aria-expanded'), 'true');
    assert.equal(await page.locator('belfry-inbox [role=tab][aria-selected=true]').evaluate((t) => getComputedStyle(t).borderBottomColor), 'rgb(4, 5, 6)');
    await page.locator('belfry-inbox .foot a').filter({ hasText: 'See all' }).click();
    await page.waitForURL(`${host.base}/landing/all`);
    await page.close();
  });

  test('an expired or refused token is replaced through tokenProvider', async () => {
    const before = host.tokenRequests;
    const { user, page } = await open({ token: 'expired.or.forged', provider: true });
    assert.ok(host.tokenRequests > before, 'the host was asked for a token');
    await belfry.notify(user, { title: 'After refresh' });
    await toasts(page).filter({ hasText: 'After refresh' }).waitFor();
    await page.close();
  });

  test('a revoked or expired token ends the stream; the widget gets a new one from tokenProvider and misses nothing', async () => {
    // Revoked: the server ends the stream at once; the widget reconnects,
    // is refused, asks tokenProvider and resumes after its last event.
    const { user, page, errors } = await open({ noToken: true, provider: true });
    await belfry.notify(user, { title: 'Before revocation' });
    await toasts(page).filter({ hasText: 'Before revocation' }).waitFor();
    let asked = host.tokenRequests;
    await belfry.call('DELETE', `/v1/users/${user}/tokens`);
    // Committed after the revocation: never on the old stream, only replayed.
    await belfry.notify(user, { title: 'After revocation' });
    await toasts(page).filter({ hasText: 'After revocation' }).waitFor();
    assert.ok(host.tokenRequests > asked, 'a new token was asked for');
    await live(page);
    await belfry.notify(user, { title: 'Live again' });
    await toasts(page).filter({ hasText: 'Live again' }).waitFor();

    await page.close();

    // Expired: a token of two seconds ends its stream when it runs out.
    const again = await context.newPage();
    asked = host.tokenRequests;
    await again.goto(host.url(user, { token: await belfry.token(user, 2), provider: true }));
    await live(again);
    await until(async () => host.tokenRequests > asked, { timeout: 15000, what: 'a new token after the first expired' });
    await live(again);
    await belfry.notify(user, { title: 'After expiry' });
    await toasts(again).filter({ hasText: 'After expiry' }).waitFor();
    assert.deepEqual(errors.filter((e) => !/401/.test(e)), []);
    await again.close();
  });

  test('a tokenProvider alone signs the widget in', async () => {
    const { user, page } = await open({ noToken: true, provider: true });
    await belfry.notify(user, { title: 'Provider only' });
    await toasts(page).filter({ hasText: 'Provider only' }).waitFor();
    await page.close();
  });
});
