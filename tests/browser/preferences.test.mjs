// The preferences panel (a second module, loaded when the gear is first
// used): changes saved at once against the real API and still there after
// a reload, critical categories locked, failed saves explained and
// reverted, keyboard use, German strings, page mode; and the size budget of
// the first module.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { Belfry, HostApp, launch, live, repo, shot, until, watchErrors } from './harness.mjs';

const BUDGET = 20 * 1024;

test('the first module stays under 20 KB gzipped; the panel is a module of its own', () => {
  const first = fs.readFileSync(path.join(repo, 'web/widget/belfry.js'));
  const panel = fs.readFileSync(path.join(repo, 'web/widget/preferences.js'));
  const gz = (b) => zlib.gzipSync(b, { level: 9 }).length;
  console.log(`belfry.js: ${first.length} B, ${gz(first)} B gzipped; preferences.js: ${panel.length} B, ${gz(panel)} B gzipped`);
  assert.ok(gz(first) < BUDGET, `belfry.js is ${gz(first)} B gzipped, over the budget of ${BUDGET} B`);
  assert.ok(!first.includes('quiet_hours'), 'the panel code is not in the first module');
});

describe('the preferences panel', () => {
  let belfry;
  let host;
  let context;
  let n = 0;

  before(async () => {
    // The chat rows post to a receiver on 127.0.0.1: allowed here, refused by default.
    belfry = new Belfry({ env: { BELFRY_OUTBOUND_ALLOW: '127.0.0.0/8' } });
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

  async function open({ attrs = {}, user: fields = {} } = {}) {
    const user = `prefs-${++n}`;
    await belfry.putUser(user, { name: `User ${n}`, ...fields });
    const token = await belfry.token(user);
    const page = await context.newPage();
    const errors = watchErrors(page);
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));
    const url = host.url(user, { token, attrs });
    await page.goto(url);
    await live(page);
    return { user, page, errors, requests, url };
  }

  const prefs = (u) => belfry.call('GET', `/v1/users/${u}/preferences`);
  const bell = (page) => page.locator('belfry-inbox .bell');
  const gear = (page) => page.locator('belfry-inbox .gear');
  const panel = (page) => page.locator('belfry-inbox .prefs');
  const control = (page, key) => page.locator(`belfry-inbox .prefs [data-k="${key}"]`);
  const message = (page) => page.locator('belfry-inbox .prefs .msg');
  const focused = (page) =>
    page.evaluate(() => {
      const el = document.activeElement.shadowRoot.activeElement;
      return el && (el.dataset.k || el.className);
    });

  async function openPanel(page) {
    await bell(page).click();
    await gear(page).click();
    await control(page, 'channels.email').waitFor();
  }

  test('the gear loads the panel; every kind of change is saved at once and is still there after a reload', async () => {
    const { user, page, errors, requests, url } = await open({ user: { timezone: 'Europe/Berlin' } });
    const loaded = () => requests.some((u) => u.endsWith('/widget/preferences.js'));
    await bell(page).click();
    await page.locator('belfry-inbox .state').waitFor();
    assert.ok(!loaded(), 'the panel module is not loaded before the gear is used');
    assert.equal(await gear(page).getAttribute('aria-label'), 'Notification settings');
    await gear(page).click();
    await control(page, 'channels.email').waitFor();
    assert.ok(loaded(), 'the gear loaded the panel module');
    assert.ok(await page.locator('belfry-inbox [role=tablist]').isHidden(), 'the panel takes the list’s place');

    // What the API says is what the panel shows.
    assert.equal(await control(page, 'enabled').isChecked(), true);
    const inApp = control(page, 'channels.in_app');
    assert.ok((await inApp.isChecked()) && (await inApp.isDisabled()), 'in-app is shown on and cannot be switched');
    assert.equal(await control(page, 'timezone').textContent(), 'Europe/Berlin');
    assert.equal(await control(page, 'digest.time').inputValue(), '18:00');
    assert.equal(await control(page, 'quiet_hours').isChecked(), false);
    assert.ok(await control(page, 'quiet_hours.start').isDisabled());
    const rows = await page.locator('belfry-inbox .prefs [data-table=categories] tbody th').allTextContents();
    assert.ok(rows.some((r) => r.startsWith('Mentions')) && rows.some((r) => r.startsWith('System notices')), rows.join('|'));
    // A category without a choice shows its own defaults (mention: email off, pushes on, chat off).
    assert.equal(await control(page, 'categories.mention.email').inputValue(), 'off');
    assert.equal(await control(page, 'categories.mention.web_push').isChecked(), true);
    assert.equal(await control(page, 'categories.mention.chat').isChecked(), false);
    assert.deepEqual(
      await control(page, 'categories.mention.email').locator('option').allTextContents(),
      ['Instant', 'Daily digest', 'Off'],
      'the digest is offered',
    );

    await control(page, 'channels.email').click();
    await until(async () => (await prefs(user)).channels.email === false, { what: 'email channel off' });
    await page.locator('belfry-inbox .prefs [role=status]').filter({ hasText: 'Saved' }).waitFor();

    await control(page, 'categories.mention.email').selectOption('instant');
    await until(async () => (await prefs(user)).categories.mention?.email === 'instant', { what: 'mention instant' });
    await control(page, 'categories.mention.web_push').click();
    await until(async () => (await prefs(user)).categories.mention?.web_push === false, { what: 'mention web push off' });

    await control(page, 'quiet_hours').click();
    await until(async () => (await prefs(user)).quiet_hours?.start === '22:00', { what: 'quiet hours on' });
    // The panel enables the times once its save is answered: wait for it.
    await until(async () => control(page, 'quiet_hours.start').isEnabled(), { what: 'quiet hours times enabled' });
    await control(page, 'quiet_hours.start').fill('21:30');
    await until(async () => (await prefs(user)).quiet_hours?.start === '21:30', { what: 'quiet hours from 21:30' });
    await control(page, 'quiet_hours.days.sun').click();
    await until(async () => !(await prefs(user)).quiet_hours?.days.includes('sun'), { what: 'no quiet Sunday' });

    await control(page, 'digest.time').fill('07:15');
    await until(async () => (await prefs(user)).digest.time === '07:15', { what: 'digest at 07:15' });
    await shot(page, 'preferences');

    const api = await prefs(user);
    assert.equal(api.channels.email, false);
    assert.deepEqual(api.categories.mention, { email: 'instant', web_push: false });
    assert.deepEqual(api.quiet_hours, { start: '21:30', end: '07:00', days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat'] });

    await page.goto(url);
    await live(page);
    await openPanel(page);
    assert.equal(await control(page, 'channels.email').isChecked(), false);
    assert.equal(await control(page, 'channels.web_push').isChecked(), true);
    assert.equal(await control(page, 'categories.mention.email').inputValue(), 'instant');
    assert.equal(await control(page, 'categories.mention.web_push').isChecked(), false);
    assert.equal(await control(page, 'quiet_hours').isChecked(), true);
    assert.equal(await control(page, 'quiet_hours.start').inputValue(), '21:30');
    assert.equal(await control(page, 'quiet_hours.days.sun').isChecked(), false);
    assert.equal(await control(page, 'quiet_hours.days.sat').isChecked(), true);
    assert.equal(await control(page, 'digest.time').inputValue(), '07:15');

    // A category's choices can go back to its defaults.
    await control(page, 'categories.mention.reset').click();
    await until(async () => !(await prefs(user)).categories.mention, { what: 'mention reset' });
    // The panel shows the server's answer once it has it: wait for that.
    await until(async () => (await control(page, 'categories.mention.email').inputValue()) === 'off', {
      what: 'mention shown at its defaults',
    });
    await until(async () => control(page, 'categories.mention.reset').isHidden(), { what: 'reset hidden' });
    // Quiet hours off again.
    await control(page, 'quiet_hours').click();
    await until(async () => (await prefs(user)).quiet_hours === null, { what: 'quiet hours off' });
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('a critical category is shown locked and cannot be switched off', async () => {
    const { user, page } = await open();
    await openPanel(page);
    const row = page.locator('belfry-inbox .prefs tr[data-row="categories.system"]');
    assert.equal(await row.getAttribute('data-critical'), 'true');
    assert.equal(await row.locator('.lock .sr').textContent(), 'Required: cannot be switched off');
    const push = control(page, 'categories.system.web_push');
    assert.ok((await push.isChecked()) && (await push.isDisabled()), 'what is on is locked');
    assert.ok(await control(page, 'categories.mention.web_push').isEnabled(), 'ordinary categories are not');
    // Its email may become instant (or digest), and then never off.
    await control(page, 'categories.system.email').selectOption('instant');
    await until(async () => (await prefs(user)).categories.system?.email === 'instant', { what: 'system email instant' });
    await until(async () => control(page, 'categories.system.email').locator('option[value=off]').isDisabled(), {
      what: 'email off refused for a critical category',
    });
    // Even forced past the lock, the server refuses and the panel says so and reverts.
    await push.evaluate((box) => {
      box.disabled = false;
      box.click();
    });
    await message(page).waitFor();
    assert.match(await message(page).textContent(), /^Not saved: 'system' is a critical category and cannot be switched off/);
    assert.equal(await message(page).getAttribute('role'), 'alert');
    await until(async () => (await push.isChecked()) && (await push.isDisabled()), { what: 'reverted and locked again' });
    assert.equal((await prefs(user)).categories.system.web_push, undefined, 'nothing changed');
    await page.close();
  });

  test('a failed save says why and reverts the control; the digest is either saved or refused with the server’s message', async () => {
    const { user, page } = await open();
    await openPanel(page);
    const chat = control(page, 'channels.chat');
    assert.equal(await chat.isChecked(), true);

    // The server answers with a problem.
    await page.route('**/v1/me/preferences', (route) =>
      route.request().method() === 'PUT'
        ? route.fulfill({
            status: 503,
            contentType: 'application/problem+json',
            headers: { 'access-control-allow-origin': '*' },
            body: JSON.stringify({ type: 'about:blank', title: 'Service Unavailable', status: 503, detail: 'the database is busy; try again', code: 'database_busy' }),
          })
        : route.continue(),
    );
    await chat.click();
    await message(page).filter({ hasText: 'Not saved: the database is busy; try again' }).waitFor();
    assert.equal(await chat.isChecked(), true, 'reverted');
    // The server is not reached at all.
    await page.unroute('**/v1/me/preferences');
    await page.route('**/v1/me/preferences', (route) => (route.request().method() === 'PUT' ? route.abort('connectionrefused') : route.continue()));
    await control(page, 'enabled').click();
    await message(page).filter({ hasText: 'Belfry could not be reached' }).waitFor();
    assert.equal(await control(page, 'enabled').isChecked(), true, 'reverted');
    await page.unroute('**/v1/me/preferences');
    assert.equal((await prefs(user)).channels.chat, true);
    assert.equal((await prefs(user)).enabled, true);

    // The next change that works clears the message.
    await chat.click();
    await until(async () => (await prefs(user)).channels.chat === false, { what: 'chat off' });
    await message(page).waitFor({ state: 'hidden' });

    // The digest: this server may refuse it (422); then the panel shows why and reverts.
    const select = control(page, 'categories.reminder.email');
    const answer = page.waitForResponse((r) => r.url().endsWith('/v1/me/preferences') && r.request().method() === 'PUT');
    await select.selectOption('digest');
    const res = await answer;
    if (res.status() === 422) {
      const problem = await res.json();
      await message(page).filter({ hasText: `Not saved: ${problem.errors[0].message}` }).waitFor();
      await until(async () => (await select.inputValue()) === 'off', { what: 'reverted to off' });
      assert.equal((await prefs(user)).categories.reminder, undefined);
    } else {
      assert.equal(res.status(), 200);
      await until(async () => (await prefs(user)).categories.reminder?.email === 'digest', { what: 'digest saved' });
      assert.equal(await select.inputValue(), 'digest');
      assert.ok(await message(page).isHidden());
    }
    await page.close();
  });

  test('keyboard: Enter on the gear opens the panel, every control has a label, Escape closes it and focus returns to the gear', async () => {
    const { user, page } = await open();
    await page.keyboard.press('Tab');
    assert.equal(await focused(page), 'bell');
    await page.keyboard.press('Enter');
    assert.equal(await bell(page).getAttribute('aria-expanded'), 'true');
    // The gear comes before the tabs (mark all read is disabled with nothing unread).
    await page.keyboard.press('Shift+Tab');
    assert.equal(await focused(page), 'tool gear');
    assert.equal(await gear(page).evaluate((g) => getComputedStyle(g).outlineStyle), 'solid', 'visible focus');
    await page.keyboard.press('Enter');
    await control(page, 'channels.email').waitFor();
    assert.equal(await focused(page), 'tool back', 'the focus moves into the panel');
    await page.keyboard.press('Tab');
    assert.equal(await focused(page), 'enabled');
    assert.equal(await control(page, 'enabled').evaluate((c) => getComputedStyle(c).outlineStyle), 'solid', 'visible focus');
    await page.keyboard.press('Space');
    await until(async () => (await prefs(user)).enabled === false, { what: 'master switch off' });
    // The focus order follows the page: then the channel switches (in-app is not switchable).
    await page.keyboard.press('Tab');
    assert.equal(await focused(page), 'channels.email');

    // Every control has an accessible name.
    const unnamed = await page.locator('belfry-inbox .prefs').evaluate((root) =>
      [...root.querySelectorAll('input, select, button')]
        .filter((el) => !(el.getAttribute('aria-label') || (el.labels && [...el.labels].some((l) => l.textContent.trim()))))
        .map((el) => el.dataset.k || el.outerHTML),
    );
    assert.deepEqual(unnamed, []);
    const lab = page.locator('belfry-inbox');
    await lab.getByRole('checkbox', { name: 'Receive notifications', exact: true }).waitFor();
    await lab.getByRole('combobox', { name: 'Mentions: Email' }).waitFor();
    await lab.getByRole('checkbox', { name: 'Mentions: Browser push' }).waitFor();
    await lab.getByRole('region', { name: 'Notification settings' }).waitFor();

    await page.keyboard.press('Escape');
    await panel(page).waitFor({ state: 'detached' });
    assert.equal(await bell(page).getAttribute('aria-expanded'), 'true', 'Escape closes the panel, not the drawer');
    assert.equal(await focused(page), 'tool gear');
    assert.ok(await page.locator('belfry-inbox [role=tablist]').isVisible(), 'the list is back');
    await page.keyboard.press('Escape');
    assert.equal(await bell(page).getAttribute('aria-expanded'), 'false');
    assert.equal(await focused(page), 'bell');

    // Closing the drawer closes the panel with it; the next opening shows the list.
    await openPanel(page);
    await page.locator('main h1').click();
    assert.equal(await bell(page).getAttribute('aria-expanded'), 'false');
    await bell(page).click();
    assert.ok(await page.locator('belfry-inbox [role=tablist]').isVisible());
    assert.equal(await panel(page).count(), 0);
    await page.close();
  });

  test('German labels with the German locale', async () => {
    const { page, errors } = await open({ attrs: { locale: 'de' } });
    await bell(page).click();
    assert.equal(await gear(page).getAttribute('aria-label'), 'Benachrichtigungseinstellungen');
    await gear(page).click();
    await control(page, 'channels.email').waitFor();
    const de = page.locator('belfry-inbox');
    await de.getByRole('heading', { name: 'Benachrichtigungseinstellungen' }).waitFor();
    await de.getByRole('checkbox', { name: 'Benachrichtigungen erhalten' }).waitFor();
    await de.getByRole('checkbox', { name: 'E-Mail', exact: true }).waitFor();
    await de.getByRole('heading', { name: 'Ruhezeiten' }).waitFor();
    await de.getByRole('heading', { name: 'Kategorien' }).waitFor();
    assert.deepEqual(
      await control(page, 'categories.mention.email').locator('option').allTextContents(),
      ['Sofort', 'Tägliche Zusammenfassung', 'Aus'],
    );
    assert.match(await control(page, 'quiet_hours.days.mon').locator('..').textContent(), /^Mo/);
    assert.equal(await control(page, 'timezone').textContent(), 'UTC (keine festgelegt)');
    assert.equal(await page.locator('belfry-inbox .prefs .back').getAttribute('aria-label'), 'Zurück zu den Benachrichtigungen');
    await shot(page, 'preferences-de');
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('chat: a person connects their own Slack and webhook, a notification reaches Slack, and they disconnect', async () => {
    // A local receiver standing in for Slack's incoming webhook and the person's own endpoint.
    const received = [];
    const receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        received.push({ path: req.url, headers: req.headers, body: JSON.parse(body) });
        res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok');
      });
    });
    await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const origin = `http://127.0.0.1:${receiver.address().port}`;
    try {
      const { user, page, errors } = await open();
      await openPanel(page);
      const row = (kind) => page.locator(`belfry-inbox .prefs [data-chat="${kind}"]`);
      await until(async () => (await row('slack').getAttribute('data-state')) === 'off', { what: 'chat rows' });
      assert.equal(await row('teams').getAttribute('data-state'), 'off');

      // A URL the server refuses: its reason is shown, the row stays as it was.
      await control(page, 'chat.slack.url').fill('ftp://example.com/x');
      await control(page, 'chat.slack.connect').click();
      await message(page).waitFor();
      assert.match(await message(page).textContent(), /https/);
      assert.equal(await row('slack').getAttribute('data-state'), 'off');

      await control(page, 'chat.slack.url').fill(`${origin}/slack`);
      await control(page, 'chat.slack.url').press('Enter');
      await until(async () => (await row('slack').getAttribute('data-state')) === 'on', { what: 'slack connected' });
      assert.match(await row('slack').textContent(), new RegExp(`127\\.0\\.0\\.1:${receiver.address().port}`));
      assert.ok(await message(page).isHidden(), 'the earlier message is gone');

      // The webhook's signing secret is shown once, then only its host.
      await control(page, 'chat.webhook.url').fill(`${origin}/mine`);
      await control(page, 'chat.webhook.connect').click();
      const secret = control(page, 'chat.webhook.secret');
      await secret.waitFor();
      assert.match(await secret.textContent(), /^whsec_[A-Za-z0-9+/=]+$/);
      const listed = await belfry.call('GET', `/v1/users/${user}/channels`);
      assert.deepEqual(
        listed.items.map((x) => [x.kind, x.url]),
        [
          ['slack', `${origin}/slack`],
          ['webhook', `${origin}/mine`],
        ],
      );

      // A notification on the chat channel reaches Slack (and the webhook) in their formats.
      await belfry.notify(user, { title: 'Ticket #9 assigned to you', body: 'VPN down', channels: ['in_app', 'chat'] });
      await until(() => received.length === 2, { what: 'two chat posts' });
      const slack = received.find((r) => r.path === '/slack').body;
      assert.equal(slack.blocks[0].type, 'header');
      assert.equal(slack.blocks[0].text.text, 'Ticket #9 assigned to you');
      const mine = received.find((r) => r.path === '/mine');
      assert.match(mine.headers['webhook-signature'], /^v1,/);
      assert.equal(mine.body.data.title, 'Ticket #9 assigned to you');

      await control(page, 'chat.slack.disconnect').click();
      await until(async () => (await row('slack').getAttribute('data-state')) === 'off', { what: 'slack disconnected' });
      assert.ok(await control(page, 'chat.webhook.secret').isHidden(), 'the secret is not shown again');
      assert.deepEqual(
        (await belfry.call('GET', `/v1/users/${user}/channels`)).items.map((x) => x.kind),
        ['webhook'],
      );
      await shot(page, 'preferences-chat');
      // The refused URL's 422 is the only one the browser reports.
      assert.deepEqual(errors.filter((e) => !/status of 422/.test(e)), []);
      await page.close();
    } finally {
      receiver.close();
    }
  });

  test('page mode has the gear too', async () => {
    const { user, page } = await open({ attrs: { mode: 'page' } });
    await gear(page).click();
    await control(page, 'channels.web_push').click();
    await until(async () => (await prefs(user)).channels.web_push === false, { what: 'web push off' });
    assert.ok(await page.locator('belfry-inbox .page [role=tablist]').isHidden());
    await page.keyboard.press('Escape');
    await panel(page).waitFor({ state: 'detached' });
    assert.equal(await focused(page), 'tool gear');
    assert.ok(await page.locator('belfry-inbox .page [role=tablist]').isVisible());
    await page.close();
  });
});
