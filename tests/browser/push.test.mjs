// Desktop notifications (web push) in Chromium: the service worker served
// from the host's origin with one importScripts line, the subscription made
// with Belfry's VAPID key and stored in Belfry, a push shown by the worker,
// switching off again, and the one-time offer in the drawer.
//
// The browser's own push service (Google's, for Chromium) cannot be reached
// from here, so PushManager.subscribe is replaced in the page by one that
// records the key it was given and answers with a subscription carrying a
// real P-256 key pair made by the test; the push itself is handed to the
// worker through the DevTools protocol (ServiceWorker.deliverPushMessage),
// as the push service would.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Belfry, HostApp, launch, live, until, watchErrors } from './harness.mjs';

const b64url = (buf) => Buffer.from(buf).toString('base64url');

describe('desktop notifications', () => {
  let belfry;
  let host;
  let context;
  let n = 0;
  const ecdh = crypto.createECDH('prime256v1');
  ecdh.generateKeys();
  const p256dh = b64url(ecdh.getPublicKey());
  const auth = b64url(crypto.randomBytes(16));
  const endpoint = 'https://push.example.net/send/belfry-browser-test';

  before(async () => {
    belfry = new Belfry();
    await belfry.start();
    host = new HostApp(belfry);
    await host.start();
    context = await launch();
    await context.grantPermissions(['notifications'], { origin: host.base });
    await context.addInitScript(
      ({ endpoint, p256dh, auth }) => {
        if (!window.PushManager) return;
        let current = null;
        window.subscribedWith = [];
        PushManager.prototype.subscribe = async function (options) {
          const key = new Uint8Array(options.applicationServerKey);
          window.subscribedWith.push(btoa(String.fromCharCode(...key)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, ''));
          current = {
            endpoint,
            options: { applicationServerKey: key.buffer },
            toJSON: () => ({ endpoint, expirationTime: null, keys: { p256dh, auth } }),
            unsubscribe: async () => {
              current = null;
              return true;
            },
          };
          return current;
        };
        PushManager.prototype.getSubscription = async () => current;
      },
      { endpoint, p256dh, auth },
    );
  });

  after(async () => {
    await context?.close();
    await host?.stop();
    await belfry?.dispose();
  });

  async function open(attrs) {
    const user = `push-${++n}`;
    await belfry.putUser(user, { name: `User ${n}` });
    const token = await belfry.token(user);
    const page = await context.newPage();
    const errors = watchErrors(page);
    await page.goto(host.url(user, { token, attrs }));
    await live(page);
    return { user, page, errors };
  }

  const device = (page) => page.locator('belfry-inbox .prefs .device');

  async function openPanel(page) {
    await page.locator('belfry-inbox .bell').click();
    await page.locator('belfry-inbox .gear').click();
    await page.locator('belfry-inbox .prefs [data-k="channels.email"]').waitFor();
  }

  test('switched on in the panel: the worker runs on the host origin, the subscription uses the VAPID key and reaches Belfry, a push is shown', async () => {
    const { user, page, errors } = await open({ 'service-worker': '/belfry-sw.js', 'push-prompt': 'off' });
    await openPanel(page);
    await until(async () => (await device(page).getAttribute('data-state')) === 'off', { what: 'the switch offered' });
    await device(page).locator('button').click();
    await until(async () => (await device(page).getAttribute('data-state')) === 'on', { what: 'desktop notifications on' });

    const { key } = await belfry.call('GET', '/v1/push/vapid-public-key');
    assert.deepEqual(await page.evaluate(() => window.subscribedWith), [key], 'subscribed with Belfry’s VAPID key');
    const subs = await belfry.call('GET', `/v1/users/${user}/push-subscriptions`);
    const items = subs.items || subs;
    assert.equal(items.length, 1, JSON.stringify(subs));
    assert.equal(items[0].endpoint, endpoint);

    const script = await page.evaluate(async () => {
      const regs = await navigator.serviceWorker.getRegistrations();
      return regs.map((r) => (r.active || r.waiting || r.installing).scriptURL);
    });
    assert.deepEqual(script, [`${host.base}/belfry-sw.js`], 'the host’s one-line worker');

    // A push, as the push service hands it to the worker.
    const cdp = await context.newCDPSession(page);
    const registered = new Promise((resolve) =>
      cdp.on('ServiceWorker.workerRegistrationUpdated', ({ registrations }) => {
        const r = registrations.find((x) => x.scopeURL.startsWith(host.base) && !x.isDeleted);
        if (r) resolve(r.registrationId);
      }),
    );
    await cdp.send('ServiceWorker.enable');
    const registrationId = await registered;

    await cdp.send('ServiceWorker.deliverPushMessage', {
      origin: host.base,
      registrationId,
      data: JSON.stringify({ id: 'n-1', title: 'Ticket #7 was assigned to you', body: 'Printer on fire', url: '/landing/t7', tag: 't7' }),
    });
    const [worker] = context.serviceWorkers().filter((w) => w.url() === `${host.base}/belfry-sw.js`);
    const shown = await until(
      async () => {
        const list = await worker.evaluate(async () => {
          // Headless Chromium lists a notification shown by a push handler
          // only once the worker shows another one: a probe, closed again.
          await self.registration.showNotification('probe', { tag: 'probe' });
          const all = await self.registration.getNotifications();
          all.filter((x) => x.tag === 'probe').forEach((x) => x.close());
          return all.filter((x) => x.tag !== 'probe').map((x) => `${x.title}|${x.body}|${x.tag}|${x.data && x.data.url}`);
        });
        return list.length ? list : null;
      },
      { what: 'the notification shown by the worker' },
    );
    assert.deepEqual(shown, ['Ticket #7 was assigned to you|Printer on fire|t7|/landing/t7']);

    // Switched off: the subscription is gone from Belfry.
    await device(page).locator('button').click();
    await until(async () => (await device(page).getAttribute('data-state')) === 'off', { what: 'desktop notifications off' });
    const left = await belfry.call('GET', `/v1/users/${user}/push-subscriptions`);
    assert.equal((left.items || left).length, 0);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('the drawer offers desktop notifications once; “Not now” is remembered; push-prompt="off" never offers', async () => {
    // A browser that has not been asked yet (the other tests' context granted it).
    const fresh = await launch();
    try {
      const user = `push-${++n}`;
      await belfry.putUser(user, { name: `User ${n}` });
      const token = await belfry.token(user);
      const page = await fresh.newPage();
      // Headless Chromium denies notifications unless told to ask, as a browser does.
      const cdp = await fresh.newCDPSession(page);
      await cdp.send('Browser.setPermission', { permission: { name: 'notifications' }, setting: 'prompt', origin: host.base });
      const errors = watchErrors(page);
      await page.goto(host.url(user, { token, attrs: { 'service-worker': '/belfry-sw.js' } }));
      await live(page);
      assert.equal(await page.evaluate(() => Notification.permission), 'default');
      await page.locator('belfry-inbox .bell').click();
      const offer = page.locator('belfry-inbox .push-offer');
      await offer.waitFor();
      assert.match(await offer.textContent(), /desktop notification/);
      await offer.locator('.push-later').click();
      assert.equal(await offer.count(), 0);
      await page.reload();
      await live(page);
      await page.locator('belfry-inbox .bell').click();
      await page.waitForTimeout(500);
      assert.equal(await page.locator('belfry-inbox .push-offer').count(), 0, 'asked once');
      // Another page of a host that switched the offer off (a fresh origin's storage is not needed:
      // the attribute alone keeps the module from offering).
      await page.evaluate(() => localStorage.removeItem('belfry-push-asked'));
      await page.goto(host.url(user, { token, attrs: { 'service-worker': '/belfry-sw.js', 'push-prompt': 'off' } }));
      await live(page);
      await page.locator('belfry-inbox .bell').click();
      await page.waitForTimeout(500);
      assert.equal(await page.locator('belfry-inbox .push-offer').count(), 0, 'push-prompt="off"');
      assert.deepEqual(errors, []);
    } finally {
      await fresh.close();
    }
  });

  test('without a worker on the host origin the switch is not offered (a worker must come from the page’s origin)', async () => {
    const { page, errors } = await open({ 'push-prompt': 'off' });
    await openPanel(page);
    await until(async () => (await device(page).getAttribute('data-state')) === 'unsupported', { what: 'no switch' });
    assert.equal(await device(page).isVisible(), false);
    assert.deepEqual(errors, []);
    await page.close();
  });
});
