// The administration console at /admin, on a fresh server with an admin
// created by `belfry admin create`: signing in (a wrong password, the
// lock-out), composing a broadcast to a group and watching it arrive in a
// user's widget in a second browser context, finding a suppressed delivery
// and its reason, creating and revoking a key, a template error shown at
// its line, a CSV import with a bad row, a webhook and its attempts, and
// the CSRF refusal of forged posts. Saves the README's screenshots
// (docs/screenshots/admin-*.png) when BELFRY_SCREENSHOTS=1.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Belfry, HostApp, binary, launch, live, repo, toasts, until, watchErrors } from './harness.mjs';

const EMAIL = 'ada@example.com';
const PASSWORD = 'correct horse battery staple';
const SCREENSHOTS = process.env.BELFRY_SCREENSHOTS === '1';

/** `belfry admin create` against the server's database, the password on stdin. */
function createAdmin(belfry, email, name, password) {
  return new Promise((resolve, reject) => {
    const proc = spawn(binary(), ['admin', 'create', '--email', email, '--name', name, '--password-stdin', '--data-dir', belfry.dataDir], {
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (c) => (out += c));
    proc.stderr.on('data', (c) => (out += c));
    proc.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`admin create exited with ${code}: ${out}`))));
    proc.stdin.end(`${password}\n`);
  });
}

describe('the admin console', () => {
  let belfry;
  let host;
  let context;
  let userContext;

  before(async () => {
    // Webhooks may call the host application on this machine.
    belfry = new Belfry({ env: { BELFRY_OUTBOUND_ALLOW: '127.0.0.1' } });
    await belfry.start();
    await createAdmin(belfry, EMAIL, 'Ada Admin', PASSWORD);
    host = new HostApp(belfry);
    await host.start();
    context = await launch({ viewport: { width: 1280, height: 900 } });
    userContext = await launch();
  });

  after(async () => {
    await userContext?.close();
    await context?.close();
    await host?.stop();
    await belfry?.dispose();
  });

  /** A console page, watched for script errors and CSP violations. */
  async function consolePage() {
    const page = await context.newPage();
    const errors = watchErrors(page);
    if (process.env.DEBUG_UI17) page.on('response', (r) => console.log('RESP', r.request().method(), r.url(), r.status()));
    await page.addInitScript(() => {
      window.violations = [];
      document.addEventListener('securitypolicyviolation', (e) => window.violations.push(`${e.violatedDirective} ${e.blockedURI}`));
    });
    return { page, errors };
  }

  async function signIn(page, password = PASSWORD, { stay = false } = {}) {
    if (!stay) await page.goto(`${belfry.base}/admin`);
    await page.getByLabel('Email').fill(EMAIL);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }

  /** Signs in unless the context's cookie already does, and opens a page. */
  async function open(route) {
    const { page, errors } = await consolePage();
    await page.goto(`${belfry.base}/admin#/${route}`);
    const nav = page.getByRole('navigation', { name: 'Console' });
    await Promise.race([nav.waitFor(), page.getByRole('button', { name: 'Sign in' }).waitFor()]);
    if (process.env.DEBUG_UI17) console.log('NAV', await nav.isVisible(), await page.locator('main').innerText());
    if (!(await nav.isVisible())) {
      await signIn(page, PASSWORD, { stay: true });
      await nav.waitFor();
    }
    return { page, errors };
  }

  async function screenshot(page, name, { fullPage = false } = {}) {
    if (!SCREENSHOTS) return;
    const dir = path.join(repo, 'docs', 'screenshots');
    fs.mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: path.join(dir, `admin-${name}.png`), animations: 'disabled', fullPage });
  }

  /**
   * No script errors and no CSP violations. Chromium also logs every 4xx
   * answer to fetch() as a console error; the console shows those (a wrong
   * password, a template that does not parse), so they are not errors here;
   * nor is Chromium's note that an email's sandboxed frame refused a script.
   */
  async function clean(page, errors) {
    const real = errors.filter((e) => !/Failed to load resource: the server responded with a status of 4\d\d/.test(e)
      // An email's scripts are refused by its sandboxed frame (as intended).
      && !/^Blocked script execution in 'about:srcdoc' because the document's frame is sandboxed/.test(e));
    assert.deepEqual(real, [], 'no script errors');
    assert.deepEqual(await page.evaluate(() => window.violations), [], 'no CSP violations');
  }

  test('/admin is served with a strict CSP, no framing, and its modules', async () => {
    const res = await fetch(`${belfry.base}/admin`);
    assert.equal(res.status, 200);
    const csp = res.headers.get('content-security-policy');
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp.match(/script-src[^;]*/)[0], /unsafe-inline|unsafe-eval/, 'no inline script, no eval');
    assert.equal(res.headers.get('x-frame-options'), 'DENY');
    assert.doesNotMatch(await res.text(), /<script>|<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
    const mod = await fetch(`${belfry.base}/admin/pages/compose.js`);
    assert.equal(mod.status, 200);
    assert.match(mod.headers.get('content-type'), /javascript/);
    assert.equal((await fetch(`${belfry.base}/admin/pages/nothing.js`)).status, 404);
  });

  test('sign-in: a wrong password is refused with a message; the right one opens the console; sign-out', async () => {
    const { page, errors } = await consolePage();
    await signIn(page, 'not the password at all');
    const alert = page.getByRole('alert').filter({ hasText: 'Wrong email address or password.' });
    await alert.waitFor();
    await screenshot(page, 'sign-in');
    assert.ok(await page.getByLabel('Password').evaluate((el) => el === document.activeElement), 'focus back on the password');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByLabel('Password').press('Enter');
    await page.getByRole('heading', { name: 'Compose a notification' }).waitFor();
    assert.equal(await page.locator('#who').textContent(), 'Ada Admin');
    const cookies = await context.cookies(belfry.base);
    const cookie = cookies.find((c) => c.name === 'belfry_admin');
    assert.ok(cookie?.httpOnly, 'an HttpOnly session cookie');
    assert.equal(cookie.sameSite, 'Strict');
    assert.equal(await page.evaluate(() => document.cookie.includes('belfry_admin')), false);

    // The session survives a reload; sign-out ends it on the server.
    await page.reload();
    await page.getByRole('heading', { name: 'Compose a notification' }).waitFor();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    const res = await page.evaluate(async () => (await fetch('/v1/admin/session')).status);
    assert.equal(res, 401);
    await clean(page, errors);
    await page.close();
  });

  test('a locked-out account is told so', async () => {
    const email = 'locked@example.com';
    await createAdmin(belfry, email, 'Lou Locked', PASSWORD);
    // Fail until the server locks the account (its threshold is its own).
    let status = 0;
    for (let i = 0; i < 30 && status !== 429; i++) {
      const res = await fetch(`${belfry.base}/v1/admin/sessions`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ email, password: `wrong password ${i}` }),
      });
      status = res.status;
    }
    assert.equal(status, 429, 'locked after repeated failures');
    const { page, errors } = await consolePage();
    await page.goto(`${belfry.base}/admin`);
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'this account is locked' }).waitFor();
    await clean(page, errors);
    await page.close();
  });

  test('compose a broadcast to a group: the audience size, the previews, the progress, and the widget of a member', async () => {
    await belfry.putUser('ana', { name: 'Ana Alves', email: 'ana@example.com', groups: ['support'] });
    await belfry.putUser('ben', { name: 'Ben Berg', email: 'ben@example.com', groups: ['support'] });
    await belfry.putUser('cy', { name: 'Cy Chen', groups: ['sales'] });
    await belfry.call('PUT', '/v1/groups/support', { name: 'Support' });

    // Ana's application is open in another browser.
    const userPage = await userContext.newPage();
    await userPage.goto(host.url('ana', { token: await belfry.token('ana') }));
    await live(userPage);

    const { page, errors } = await open('compose');
    await page.getByRole('heading', { name: 'Compose a notification' }).waitFor();
    await page.getByRole('checkbox', { name: /^Support/ }).check();
    const size = page.locator('#audience-size');
    await until(async () => (await size.textContent()) === 'Will reach 2 people.', { what: 'audience size 2' });
    await page.getByRole('radio', { name: 'Everyone' }).check();
    await until(async () => (await size.textContent()) === 'Will reach 3 people.', { what: 'audience size 3' });
    await page.getByRole('radio', { name: 'Groups' }).check();
    await until(async () => (await size.textContent()) === 'Will reach 2 people.', { what: 'back to 2' });

    await page.getByLabel('Title').fill('Printer on floor 3 is <b>down</b>');
    await page.getByLabel('Body').fill('Use the one on floor 2 until noon.');
    // In the app and by email (without a choice, the category's defaults decide).
    await page.getByRole('radio', { name: 'These channels:' }).check();
    assert.ok(await page.getByRole('checkbox', { name: 'Email' }).isChecked());
    await page.getByRole('checkbox', { name: 'Browser push' }).uncheck();
    await page.getByRole('button', { name: 'Add a link button' }).click();
    await page.getByLabel('Button label').fill('Status page');
    await page.getByLabel('Button link').fill('https://status.example.com/');
    // Previews: texts stay text (no markup), the email in a sandboxed frame.
    await page.locator('.pv-toast strong').filter({ hasText: 'Printer on floor 3 is <b>down</b>' }).waitFor();
    assert.equal(await page.locator('.pv-toast b').count(), 0);
    const frame = page.locator('iframe.email');
    assert.equal(await frame.getAttribute('sandbox'), '');
    const email = page.frameLocator('iframe.email');
    await email.locator('h1').filter({ hasText: 'Printer on floor 3 is <b>down</b>' }).waitFor();
    assert.equal(await email.locator('a').first().getAttribute('href'), 'https://status.example.com/');
    await screenshot(page, 'compose');

    await page.getByRole('button', { name: 'Send', exact: true }).click();
    await page.waitForURL(/#\/notifications\//);
    const nid = decodeURIComponent(page.url().split('/').pop());
    assert.deepEqual((await belfry.call('GET', `/v1/notifications/${nid}`)).channels, ['in_app', 'email']);
    const inApp = page.locator('span.count[data-channel="in_app"][data-status="sent"]');
    await until(async () => Number(await inApp.textContent().catch(() => 0)) >= 1, { what: 'in-app progress' });
    assert.match(await page.locator('.n-audience').textContent(), /support/);
    await screenshot(page, 'progress');

    // It arrives in Ana's widget.
    await toasts(userPage).filter({ hasText: 'Printer on floor 3 is <b>down</b>' }).waitFor();
    await userPage.close();

    // Its email, in the development mailbox: rendered in a sandboxed frame.
    await until(async () => (await belfry.call('GET', '/v1/dev/mailbox')).items.some((m) => m.to.includes('ana@example.com')), { what: 'the email to Ana', timeout: 20000 });
    await page.getByRole('link', { name: 'Mailbox' }).click();
    await page.getByRole('heading', { name: 'Development mailbox' }).waitFor();
    await page.locator('tbody tr').filter({ hasText: 'ana@example.com' }).getByRole('link').click();
    const mail = page.locator('iframe.email');
    await mail.waitFor();
    assert.equal(await mail.getAttribute('sandbox'), '', 'no scripts, no same origin');
    await page.frameLocator('iframe.email').getByText('Use the one on floor 2 until noon.').waitFor();
    await screenshot(page, 'mailbox');
    await clean(page, errors);
    await page.close();
  });

  test('a notification scheduled for later can be cancelled from its page', async () => {
    await belfry.putUser('sam', { name: 'Sam Stone' });
    const { page, errors } = await open('compose');
    await page.getByRole('radio', { name: 'Users' }).check();
    await page.getByLabel('User ids').fill('sam');
    await page.getByLabel('Title').fill('Later');
    const inAnHour = new Date(Date.now() + 3600 * 1000);
    const local = new Date(inAnHour.getTime() - inAnHour.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
    await page.getByLabel('Send later (optional)').fill(local);
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    await page.waitForURL(/#\/notifications\//);
    const id = decodeURIComponent(page.url().split('/').pop());
    await page.locator('.n-status').filter({ hasText: 'scheduled for' }).waitFor();
    page.once('dialog', (d) => d.accept());
    await page.getByRole('button', { name: 'Cancel the scheduled send' }).click();
    await page.locator('.n-status').filter({ hasText: 'cancelled' }).waitFor();
    assert.equal((await belfry.call('GET', `/v1/notifications/${id}`)).status, 'cancelled');
    await clean(page, errors);
    await page.close();
  });

  test('why did Dan not get the email? The delivery log shows the suppressed delivery and its reason', async () => {
    await belfry.putUser('dan', { name: 'Dan Diaz', email: 'dan@example.com' });
    await belfry.call('PUT', '/v1/users/dan/preferences', { channels: { email: false } });
    const receipt = await belfry.notify('dan', { title: 'Your report is ready', channels: ['in_app', 'email'] });
    await until(async () => (await belfry.call('GET', `/v1/notifications/${receipt.id}/deliveries`)).items.some((e) => e.status === 'suppressed'), { what: 'the suppressed email' });

    const { page, errors } = await open('deliveries');
    await page.getByRole('heading', { name: 'Deliveries', exact: true }).waitFor();
    await page.getByLabel('Recipient').fill('dan');
    await page.getByLabel('Status').selectOption('suppressed');
    await page.getByRole('button', { name: 'Filter' }).click();
    const row = page.locator('tbody tr').filter({ hasText: 'dan' });
    await until(async () => (await row.count()) === 1, { what: 'one row for dan' });
    assert.match(await row.textContent(), /Email/);
    assert.match(await row.locator('.reason').textContent(), /the person switched this channel off/);
    assert.equal(await page.locator('tbody tr').count(), 1, 'only the filtered row');
    // The chart shows this hour's deliveries as SVG bars.
    assert.ok((await page.locator('svg.bars rect').count()) > 0, 'bars in the chart');
    await screenshot(page, 'deliveries', { fullPage: true });
    await row.getByRole('link').click();
    await page.waitForURL(new RegExp(`#/notifications/${receipt.id}$`));
    await page.locator('span.count[data-channel="email"][data-status="suppressed"]').filter({ hasText: '1' }).waitFor();
    await clean(page, errors);
    await page.close();
  });

  /** Sends with a key; answers the status. */
  const sendWith = (secret, fields = {}) => fetch(`${belfry.base}/v1/notifications`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${secret}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ to: { users: ['kim'] }, title: 'From billing', ...fields }),
  }).then((r) => r.status);

  test('a source and its key: the secret shown once, it sends as the source, deleting the source revokes it', async () => {
    await belfry.putUser('kim', { name: 'Kim Kahn' });
    const { page, errors } = await open('keys');
    await page.getByLabel('Source id').fill('billing');
    await page.getByLabel('Source name').fill('Billing');
    await page.getByRole('button', { name: 'Save the source' }).click();
    await page.getByRole('button', { name: 'Create a key for Billing' }).click();
    assert.equal(await page.getByLabel('For the source').inputValue(), 'billing');
    assert.ok(await page.getByLabel('Key name').evaluate((el) => el === document.activeElement), 'focus on the key name');
    await page.getByLabel('Key name').fill('billing production');
    await page.getByRole('button', { name: 'Create the key' }).click();
    const secret = await page.getByLabel('The new secret').inputValue();
    assert.match(secret, /^bfy_sk_/);
    await screenshot(page, 'keys');
    assert.equal(await sendWith(secret), 202);
    assert.equal(await sendWith(secret, { source: 'crm' }), 403, 'a source key sends only as its source');
    await page.getByRole('button', { name: 'Done, hide it' }).click();
    assert.equal(await page.getByLabel('The new secret').count(), 0, 'the secret is gone from the page');
    await page.reload();
    await page.getByRole('cell', { name: 'Billing', exact: true }).waitFor();
    assert.equal(await page.getByLabel('The new secret').count(), 0, 'never shown again');

    page.once('dialog', (d) => d.accept());
    await page.getByRole('button', { name: 'Delete the source Billing' }).click();
    await page.getByRole('cell', { name: 'Billing', exact: true }).waitFor({ state: 'detached' });
    assert.equal(await sendWith(secret), 401, 'its key is revoked with it');
    await clean(page, errors);
    await page.close();
  });

  test('create a key with scopes and revoke it from the list', async () => {
    await belfry.putUser('kim', { name: 'Kim Kahn' });
    const { page, errors } = await open('keys');
    await page.getByLabel('Key name').fill('deploy bot');
    await page.getByRole('button', { name: 'Create the key' }).click();
    const secret = await page.getByLabel('The new secret').inputValue();
    assert.match(secret, /^bfy_sk_/);
    assert.equal(await sendWith(secret, { title: 'Deployed' }), 202);
    page.once('dialog', (d) => d.accept());
    await page.getByRole('button', { name: 'Revoke deploy bot' }).click();
    await page.getByRole('button', { name: 'Revoke deploy bot' }).waitFor({ state: 'detached' });
    assert.equal(await sendWith(secret), 401);
    await clean(page, errors);
    await page.close();
  });

  test('a template error is shown at its line; the fixed template previews for every channel', async () => {
    const { page, errors } = await open('templates/ticket-assigned');
    await page.getByLabel('title', { exact: true }).fill('{{ actor.name }} assigned #{{ entity.id }} to you');
    await page.getByLabel('body', { exact: true }).fill('Ticket {{ entity.id }}\nSubject: {{ data.subject }}\nFrom {% if actor %}{{ actor.name }\nThanks');
    await page.getByRole('button', { name: 'Save and preview' }).click();
    const at = page.locator('.error-at:not([hidden])');
    await at.waitFor();
    assert.equal(await at.getAttribute('data-field'), 'en.body');
    const line = Number(await at.locator('.error-line').getAttribute('data-line'));
    assert.equal(line, 3, 'the error is on the third line of the body');
    assert.match(await at.locator('li.bad').textContent(), /^From \{% if actor %\}/);
    assert.equal(await page.getByLabel('body', { exact: true }).getAttribute('aria-invalid'), 'true');
    await screenshot(page, 'template-error');

    await page.getByLabel('body', { exact: true }).fill('Ticket {{ entity.id }}\nSubject: {{ data.subject }}\nFrom {% if actor %}{{ actor.name }}{% endif %}');
    await page.getByLabel('email_html', { exact: true }).fill('<p>{{ data.subject }}</p><script>parent.pwned = 1</script>');
    await page.getByRole('button', { name: 'Save and preview' }).click();
    await page.locator('.template-preview .pv-title').filter({ hasText: 'Bo Berg assigned #123 to you' }).waitFor();
    assert.equal(await page.locator('.error-at:not([hidden])').count(), 0);
    const email = page.frameLocator('.template-preview iframe.email');
    await email.locator('p').filter({ hasText: 'Printer on floor 3 is jammed' }).waitFor();
    assert.equal(await page.evaluate(() => window.pwned), undefined, 'nothing from the email runs in the console');
    // Chromium says that it blocked the email's script: the sandbox at work.
    await until(() => errors.some((e) => /Blocked script execution in 'about:srcdoc'.*sandboxed/.test(e)), { what: 'the blocked script' });
    await clean(page, errors);
    await page.close();
  });

  test('CSV import: good rows are imported, the bad one is reported with its row', async () => {
    const { page, errors } = await open('users');
    const csv = [
      'id,email,name,locale,timezone,groups',
      'eva,eva@example.com,Eva Eklund,de,Europe/Berlin,support;berlin',
      'finn,not-an-address,Finn Fox,en,Europe/London,',
      'gus,gus@example.com,Gus Gray,en,,support',
    ].join('\n');
    await page.getByLabel('or paste CSV').fill(csv);
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    const report = page.locator('.import-report');
    await report.getByText('2 created, 0 updated, 1 rows with errors.').waitFor();
    const bad = report.locator('tbody tr');
    assert.equal(await bad.count(), 1);
    assert.match(await bad.textContent(), /3/);
    assert.match(await bad.textContent(), /email/);
    assert.deepEqual((await belfry.call('GET', '/v1/users/eva')).groups.sort(), ['berlin', 'support']);
    await assert.rejects(belfry.call('GET', '/v1/users/finn'), /404/);

    // Search finds the imported people (the server filters).
    await page.getByLabel('Search', { exact: true }).fill('eva');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await page.locator('#users-list tbody tr').filter({ hasText: 'Eva Eklund' }).waitFor();
    await until(async () => (await page.locator('#users-list tbody tr').count()) === 1, { what: 'one match' });
    await screenshot(page, 'users');
    await clean(page, errors);
    await page.close();
  });

  test('CSRF: a forged cross-origin form post and a header-less request with the cookie are refused', async () => {
    await belfry.putUser('watcher', { name: 'Wat Cher' });
    const { page, errors } = await open('compose');
    // Without the X-CSRF-Token header the cookie is not enough.
    const refused = await page.evaluate(async () => {
      const res = await fetch('/v1/groups/forged', {
        method: 'PUT',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ name: 'Forged' }),
      });
      return [res.status, (await res.json()).code];
    });
    assert.deepEqual(refused, [403, 'csrf_failed']);
    await clean(page, errors);

    // Another origin on the same site (127.0.0.1, another port: SameSite
    // does not stop it) posts a form to the API with the admin's cookie.
    const forger = await context.newPage();
    const target = `${belfry.base}/v1/notifications`;
    const response = forger.waitForResponse((r) => r.url() === target);
    await forger.goto(`${host.base}/landing/forger`);
    await forger.evaluate((action) => {
      const form = document.createElement('form');
      form.method = 'POST';
      form.action = action;
      form.enctype = 'text/plain';
      const input = document.createElement('input');
      input.name = '{"to":{"all":true},"title":"forged","x":"';
      input.value = '"}';
      form.append(input);
      document.body.append(form);
      form.submit();
    }, target);
    // 403 csrf_failed, not 401: the cookie went along, and was not enough.
    assert.equal((await response).status(), 403);
    assert.equal((await (await response).json()).code, 'csrf_failed');
    assert.equal((await belfry.call('GET', '/v1/groups')).items.some((g) => g.id === 'forged'), false);
    assert.equal((await belfry.inbox('watcher')).items.some((i) => i.title === 'forged'), false);
    await forger.close();
    await page.close();
  });

  test('a webhook registered from the console, its secret shown once, and its attempts', async () => {
    await belfry.putUser('lea', { name: 'Lea Lund' });
    const { page, errors } = await open('webhooks');
    await page.getByLabel('Id').fill('crm');
    await page.getByLabel('URL').fill(`${host.base}/landing/hook`);
    await page.getByRole('checkbox', { name: 'delivery.failed' }).uncheck();
    await page.getByRole('checkbox', { name: 'notification.read' }).check();
    await page.getByRole('button', { name: 'Save' }).click();
    assert.match(await page.getByLabel('Signing secret').inputValue(), /\S{16,}/);
    await page.getByRole('link', { name: 'crm' }).click();
    await page.getByRole('heading', { name: 'Attempts of crm' }).waitFor();
    const { id } = await belfry.notify('lea', { title: 'Read me' });
    await belfry.call('POST', `/v1/users/lea/notifications/${id}/read`);
    // The page shows the attempt once it was made (reloaded until then).
    await until(async () => {
      await page.reload();
      await page.getByRole('heading', { name: 'Attempts of crm' }).waitFor();
      return (await page.locator('tbody tr').filter({ hasText: 'notification.read' }).count()) > 0;
    }, { what: 'the attempt', timeout: 20000, interval: 500 });
    const row = page.locator('tbody tr').filter({ hasText: 'notification.read' }).first();
    assert.match(await row.textContent(), /200/);
    await clean(page, errors);
    await page.close();
  });

  test('the other pages open without errors, on a phone too, and in German', async () => {
    const { page, errors } = await open('webhooks');
    for (const route of ['webhooks', 'settings', 'admins', 'mailbox', 'users', 'templates']) {
      await page.goto(`${belfry.base}/admin#/${route}`);
      await page.locator('.page h1').waitFor();
      await page.waitForLoadState('networkidle');
      assert.equal(await page.locator('.page .error:not([hidden])').count(), 0, `${route}: no error shown`);
      if (['settings', 'admins'].includes(route)) await screenshot(page, route);
      if (route === 'settings') {
        const days = page.getByLabel('Days read or archived inbox items are kept (0: forever)');
        await days.fill('30');
        await page.getByRole('button', { name: 'Save' }).first().click();
        await page.locator('#status').filter({ hasText: 'Saved.' }).waitFor();
        assert.equal((await belfry.call('GET', '/v1/settings')).retention_days, 30);
      }
      if (route === 'admins') assert.equal(await page.getByRole('cell', { name: EMAIL }).count(), 1, 'the admins list names Ada');
    }
    await page.getByLabel('Language').selectOption('de');
    await page.goto(`${belfry.base}/admin#/compose`);
    await page.getByRole('heading', { name: 'Benachrichtigung verfassen' }).waitFor();
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'de');
    await page.getByLabel('Sprache').selectOption('en');
    await page.getByRole('heading', { name: 'Compose a notification' }).waitFor();

    await page.setViewportSize({ width: 390, height: 844 });
    const menu = page.getByRole('button', { name: 'Menu' });
    await menu.waitFor();
    assert.equal(await page.getByRole('link', { name: 'Deliveries' }).isVisible(), false, 'the menu is folded on a phone');
    await menu.click();
    assert.equal(await menu.getAttribute('aria-expanded'), 'true');
    await page.getByRole('link', { name: 'Deliveries' }).click();
    await page.getByRole('heading', { name: 'Deliveries', exact: true }).waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal scrolling on a phone (${overflow}px)`);
    await screenshot(page, 'phone');
    await clean(page, errors);
    await page.close();
  });
});
