// Actions and forms (I7) in the widget: the approval flow of seed 000. An
// approval with a form goes to two managers; one answers it in the drawer
// (a refused answer is explained next to its field); the other manager's
// open widget shows "Approve · Bo Berg" at once and loses the buttons; a
// second answer through the API is refused; the requester's open widget
// gets the follow-up live. A toast with a form stays until it is answered.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { Belfry, HostApp, items, launch, live, shot, toasts, until, watchErrors } from './harness.mjs';

const approval = (to, title) => ({
  to: { users: to },
  title,
  body: '22–24 December, 3 days',
  actor: { id: 'ana', name: 'Ana Alves' },
  actions: [
    {
      id: 'approve', label: 'Approve', kind: 'callback', style: 'primary', once: true,
      form: { fields: [
        { name: 'budget', label: 'Budget checked', type: 'checkbox', required: true },
        { name: 'note', label: 'Note', type: 'textarea' },
      ] },
    },
    {
      id: 'deny', label: 'Deny', kind: 'callback', style: 'danger', once: true,
      form: { fields: [{ name: 'reason', label: 'Reason', type: 'select', required: true, options: [{ value: 'staffing', label: 'Not enough staff' }] }] },
    },
    { id: 'open', label: 'Open request', url: '/landing/requests/7' },
  ],
});

describe('actions and forms in the widget', () => {
  let belfry;
  let host;
  const contexts = [];

  let receiver;
  let received = [];

  before(async () => {
    // The producer's webhook endpoint on 127.0.0.1 (allowed here; refused by default).
    belfry = new Belfry({ env: { BELFRY_OUTBOUND_ALLOW: '127.0.0.0/8' } });
    await belfry.start();
    receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', async () => {
        received.push({ headers: req.headers, body });
        res.writeHead(204).end();
        // The producer answers an approval by telling the requester.
        const event = JSON.parse(body);
        if (event.type === 'action.submitted' && event.data.action.id === 'approve') {
          await belfry.notify('ana', { title: `Your vacation was approved by ${event.data.user.name}`, body: event.data.values.note || '' });
        }
      });
    });
    await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
    host = new HostApp(belfry);
    await host.start();
  });

  after(async () => {
    for (const c of contexts) await c.close();
    receiver?.close();
    await host?.stop();
    await belfry?.dispose();
  });

  /** A page of the host application signed in as `user`, in a browser of its own. */
  async function open(user, attrs = {}) {
    const context = await launch();
    contexts.push(context);
    const page = await context.newPage();
    const errors = watchErrors(page);
    await page.goto(host.url(user, { token: await belfry.token(user), attrs }));
    await live(page);
    return { page, errors };
  }

  const item = (page, title) => items(page).filter({ hasText: title });

  test('the approval flow: one manager answers in the drawer, the other sees it live, the requester gets the follow-up', async () => {
    await belfry.putUser('ana', { name: 'Ana Alves' });
    await belfry.putUser('bo', { name: 'Bo Berg' });
    await belfry.putUser('cy', { name: 'Cy Chen' });
    const hook = await belfry.call('PUT', '/v1/webhooks/hr', { url: `http://127.0.0.1:${receiver.address().port}/belfry`, events: ['action.submitted'] });
    received = [];
    const bo = await open('bo');
    const cy = await open('cy');
    const ana = await open('ana');

    const title = 'Vacation request from Ana';
    const sent = await belfry.call('POST', '/v1/notifications', approval(['bo', 'cy'], title));

    // Bo opens the drawer and the approval's form.
    await bo.page.locator('belfry-inbox .bell').click();
    const mine = item(bo.page, title);
    await mine.waitFor();
    const approve = mine.locator('[data-action="approve"]');
    assert.equal(await approve.getAttribute('aria-expanded'), 'false');
    await approve.click();
    const form = mine.locator('form.aform');
    await form.waitFor();
    assert.equal(await approve.getAttribute('aria-expanded'), 'true');
    assert.equal(await form.getAttribute('aria-label'), 'Approve');
    // The required checkbox left unchecked: the server's reason, next to the field.
    await form.getByLabel('Note').fill('Enjoy the break');
    await form.locator('button[type=submit]').click();
    const budget = form.getByRole('checkbox', { name: /Budget checked/ });
    await until(async () => (await budget.getAttribute('aria-invalid')) === 'true', { what: 'the field marked' });
    assert.match(await form.locator('.err:not([hidden])').first().textContent(), /must be checked/);
    await shot(bo.page, 'action-form-refused');

    await budget.check();
    await form.locator('button[type=submit]').click();
    await form.waitFor({ state: 'detached' });
    const answered = mine.locator('.answered');
    await answered.waitFor();
    assert.equal(await answered.textContent(), '✓ Approve · Bo Berg');
    assert.equal(await mine.locator('[data-action="approve"], [data-action="deny"]').count(), 0, 'the once buttons are gone');
    assert.equal(await mine.locator('[data-action="open"]').count(), 1, 'the link stays');
    const answers = await bo.page.evaluate(() => window.events.filter((e) => e.type === 'belfry:answer'));
    assert.equal(answers.length, 1);
    assert.deepEqual(answers[0].detail.values, { budget: true, note: 'Enjoy the break' });
    assert.equal(answers[0].detail.action.id, 'approve');
    assert.equal((await belfry.call('GET', `/v1/users/bo/notifications`)).items[0].read, true, 'answering reads it');
    await shot(bo.page, 'action-answered');

    // Cy's open widget shows the answer without a reload, buttons gone.
    await cy.page.locator('belfry-inbox .bell').click();
    const theirs = item(cy.page, title);
    await until(async () => (await theirs.locator('.answered').count()) === 1, { what: 'the answer on the other manager\'s item' });
    assert.equal(await theirs.locator('.answered').textContent(), '✓ Approve · Bo Berg');
    assert.equal(await theirs.locator('[data-action="deny"]').count(), 0);
    // Her toast (it arrived while the drawer was closed) lost its buttons too.
    const toast = toasts(cy.page).filter({ hasText: title });
    if (await toast.count()) assert.equal(await toast.locator('[data-action="approve"]').count(), 0);

    // A second answer through the API: 409.
    const res = await fetch(`${belfry.base}/v1/me/notifications/${sent.id}/actions/deny`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${await belfry.token('cy')}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ values: { reason: 'staffing' } }),
    });
    assert.equal(res.status, 409);
    assert.equal((await res.json()).code, 'already_answered');

    // The producer got the answer, signed per Standard Webhooks, and told
    // the requester; her open widget shows that live.
    await until(() => received.length === 1, { what: 'the action.submitted webhook' });
    const { headers, body } = received[0];
    const key = Buffer.from(hook.secret.slice('whsec_'.length), 'base64');
    const expected = crypto.createHmac('sha256', key).update(`${headers['webhook-id']}.${headers['webhook-timestamp']}.${body}`).digest('base64');
    assert.ok(headers['webhook-signature'].split(' ').includes(`v1,${expected}`), 'a valid signature');
    const event = JSON.parse(body);
    assert.equal(event.type, 'action.submitted');
    assert.deepEqual(event.data.values, { budget: true, note: 'Enjoy the break' });
    assert.equal(event.data.user.id, 'bo');
    assert.equal(event.data.notification_id, sent.id);
    await toasts(ana.page).filter({ hasText: 'Your vacation was approved by Bo Berg' }).waitFor();

    for (const who of [bo, cy, ana]) assert.deepEqual(who.errors.filter((e) => !/status of 422/.test(e)), []);
  });

  test('a toast with a form stays until it is answered; a callback without a form is answered at once', async () => {
    await belfry.putUser('dee', { name: 'Dee Dunn' });
    const dee = await open('dee', { 'toast-duration': '800' });
    const title = 'Approve the purchase order';
    await belfry.call('POST', '/v1/notifications', approval(['dee'], title));
    const toast = toasts(dee.page).filter({ hasText: title });
    await toast.waitFor();
    // Keyboard: the toast's buttons are reachable and open the form.
    await toast.locator('[data-action="deny"]').focus();
    await dee.page.keyboard.press('Enter');
    const form = toast.locator('form.aform');
    await form.waitFor();
    await dee.page.waitForTimeout(1500); // well past the toast duration
    assert.ok(await toast.isVisible(), 'a toast with an open form stays');
    await form.getByLabel(/Reason/).selectOption('staffing');
    await form.locator('button[type=submit]').click();
    await toast.locator('.answered').waitFor();
    assert.equal(await toast.locator('.answered').textContent(), '✓ Deny · Dee Dunn');
    await toast.waitFor({ state: 'detached' });
    await until(async () => (await belfry.counts('dee')).unread === 0, { what: 'read by the answer' });

    await belfry.call('POST', '/v1/notifications', {
      to: { users: ['dee'] },
      title: 'Shift swap done',
      actions: [{ id: 'ack', label: 'Got it', kind: 'callback' }],
    });
    await dee.page.locator('belfry-inbox .bell').click();
    const it = item(dee.page, 'Shift swap done');
    await it.locator('[data-action="ack"]').click();
    await it.locator('.sent').waitFor();
    assert.equal(await it.locator('.sent').textContent(), '✓ Sent');
    assert.equal(await it.locator('[data-action="ack"]').count(), 1, 'not a once action: it may be answered again');
    assert.deepEqual(dee.errors, []);
  });

  test('a sticky reminder comes back on every page load until it is closed; closing it closes it on every device', async () => {
    await belfry.putUser('eve', { name: 'Eve Ek' });
    const token = await belfry.token('eve');
    const context = await launch();
    contexts.push(context);
    const first = await context.newPage();
    const errors = watchErrors(first);
    await first.goto(host.url('eve', { token }));
    await live(first);
    // A task reminder, scheduled a moment ahead (send_at), sticky.
    const at = new Date(Date.now() + 1500).toISOString();
    await belfry.call('POST', '/v1/notifications', { to: { users: ['eve'] }, title: 'Call back Mr. Ode', sticky: true, send_at: at });
    const reminder = (page) => toasts(page).filter({ hasText: 'Call back Mr. Ode' });
    await reminder(first).waitFor();
    assert.ok(await reminder(first).evaluate((t) => t.classList.contains('sticky')));
    await first.waitForTimeout(800);
    assert.ok(await reminder(first).isVisible(), 'a sticky toast does not time out');

    // A reload, and a second device: it is shown again on both.
    await first.reload();
    await live(first);
    await reminder(first).waitFor();
    const phone = await (await launch()).newPage();
    contexts.push(phone.context());
    await phone.goto(host.url('eve', { token }));
    await live(phone);
    await reminder(phone).waitFor();

    // Closed on one: gone on the other at once, and not back after a reload; still unread.
    await reminder(first).locator('.x').click();
    await reminder(phone).waitFor({ state: 'detached' });
    const listed = await belfry.call('GET', '/v1/users/eve/notifications');
    assert.equal(listed.items[0].dismissed, true);
    assert.equal(listed.items[0].read, false);
    await phone.reload();
    await live(phone);
    await phone.waitForTimeout(500);
    assert.equal(await reminder(phone).count(), 0);
    assert.equal((await belfry.counts('eve')).unread, 1, 'closing is not reading');
    assert.deepEqual(errors, []);
  });

  test('in page mode the buttons answer too (above the swipe layer) and the form opens in the list', async () => {
    await belfry.putUser('fay', { name: 'Fay Fox' });
    const fay = await open('fay', { mode: 'page' });
    await belfry.call('POST', '/v1/notifications', approval(['fay'], 'Page approval'));
    const it = item(fay.page, 'Page approval');
    await it.waitFor();
    await it.locator('[data-action="approve"]').click();
    const form = it.locator('form.aform');
    await form.getByRole('checkbox', { name: /Budget checked/ }).check();
    await form.locator('button[type=submit]').click();
    await it.locator('.answered').waitFor();
    assert.equal(await it.locator('.answered').textContent(), '✓ Approve · Fay Fox');
    assert.deepEqual(fay.errors, []);
  });
});
