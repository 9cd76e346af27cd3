// Belfry inbox widget: desktop notifications (web push) on this device.
//
// A module of its own, imported by belfry.js only where desktop
// notifications are on or may be offered, and by the preferences panel.
// It registers the service worker (the widget's `service-worker` attribute:
// a script on the host's origin that imports Belfry's /widget/sw.js; or
// /widget/sw.js itself when Belfry serves the page), subscribes with
// Belfry's VAPID key (`GET /v1/push/vapid-public-key`), and posts the
// subscription to `/v1/me/push-subscriptions`. It hands the worker a current
// user token so that a click on a notification can mark it read, and takes
// the reads the worker could not make. Without `push-prompt="off"` it offers
// desktop notifications once, in the drawer.

const STRINGS = {
  en: {
    offer: 'Get a desktop notification when something new arrives, even with this tab closed?',
    on: 'Turn on',
    later: 'Not now',
  },
  de: {
    offer: 'Eine Desktop-Benachrichtigung erhalten, wenn etwas Neues kommt, auch wenn dieser Tab geschlossen ist?',
    on: 'Einschalten',
    later: 'Nicht jetzt',
  },
};

const ASKED = 'belfry-push-asked';
const key = (w) => `belfry-push:${w.server}`;

/** Whether this browser can take web pushes at all. */
export function supported() {
  return 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
}

/** The service worker's URL, or null when the host provides none and the page is on another origin. */
function workerUrl(w) {
  const own = w.getAttribute('service-worker');
  if (own) return new URL(own, location.href).href;
  return new URL(w.server).origin === location.origin ? `${w.server}/widget/sw.js` : null;
}

/** Belfry's VAPID public key (base64url), or null when push is not set up there. */
async function vapidKey(w) {
  try {
    const r = await fetch(`${w.server}/v1/push/vapid-public-key`, { cache: 'no-store' });
    return r.ok ? (await r.json()).key || null : null;
  } catch {
    return null;
  }
}

function bytes(base64url) {
  const b64 = base64url.replace(/-/g, '+').replace(/_/g, '/');
  const raw = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function same(a, b) {
  if (!a || a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a);
  return x.every((v, i) => v === b[i]);
}

async function registration(w) {
  const url = workerUrl(w);
  if (!url) return null;
  const regs = await navigator.serviceWorker.getRegistrations();
  return regs.find((r) => [r.active, r.waiting, r.installing].some((s) => s && s.scriptURL === url)) || null;
}

/** Resolves once `reg` has an active worker. */
function activated(reg) {
  if (reg.active) return Promise.resolve(reg);
  return new Promise((resolve) => {
    const worker = reg.installing || reg.waiting;
    if (!worker) return resolve(reg);
    worker.addEventListener('statechange', () => {
      if (worker.state === 'activated' || worker.state === 'redundant') resolve(reg);
    });
  });
}

/** Gives the worker where Belfry is and a current token (it marks notifications read on click). */
async function handOver(w, reg) {
  const worker = reg && (reg.active || reg.waiting || reg.installing);
  if (!worker) return;
  try {
    worker.postMessage({ type: 'belfry:auth', server: w.server, token: await w.getToken() });
  } catch {
    // No token now: the next start hands one over.
  }
}

/** `unsupported` (this browser or page cannot), `unavailable` (not set up on Belfry), `denied`, `on` or `off`. */
export async function status(w) {
  if (!supported() || !workerUrl(w)) return 'unsupported';
  if (Notification.permission === 'denied') return 'denied';
  const reg = await registration(w);
  const sub = reg && (await reg.pushManager.getSubscription());
  if (sub && localStorage.getItem(key(w))) return 'on';
  return (await vapidKey(w)) ? 'off' : 'unavailable';
}

/** Asks for permission, subscribes and tells Belfry; resolves to the new status. */
export async function enable(w) {
  if (!supported() || !workerUrl(w)) return 'unsupported';
  const vapid = await vapidKey(w);
  if (!vapid) return 'unavailable';
  localStorage.setItem(ASKED, '1');
  if ((await Notification.requestPermission()) !== 'granted') return Notification.permission === 'denied' ? 'denied' : 'off';
  const scope = w.getAttribute('service-worker-scope') || undefined;
  const reg = await navigator.serviceWorker.register(workerUrl(w), scope ? { scope } : undefined);
  // A push subscription needs an active worker.
  await activated(reg);
  const applicationServerKey = bytes(vapid);
  let sub = await reg.pushManager.getSubscription();
  if (sub && !same(sub.options && sub.options.applicationServerKey, applicationServerKey)) {
    // Belfry's key changed: a subscription for the old one no longer works.
    await sub.unsubscribe();
    sub = null;
  }
  sub = sub || (await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey }));
  const saved = await w.api('POST', '/v1/me/push-subscriptions', sub.toJSON());
  localStorage.setItem(key(w), saved.id);
  await handOver(w, reg);
  return 'on';
}

/** Unsubscribes this device and tells Belfry; resolves to the new status. */
export async function disable(w) {
  const id = localStorage.getItem(key(w));
  if (id) {
    try {
      await w.api('DELETE', `/v1/me/push-subscriptions/${encodeURIComponent(id)}`);
    } catch (e) {
      if (!e || e.status !== 404) throw e;
    }
    localStorage.removeItem(key(w));
  }
  const reg = await registration(w);
  const sub = reg && (await reg.pushManager.getSubscription());
  if (sub) await sub.unsubscribe();
  return status(w);
}

let listening = false;

/** Called by the widget when it starts: hand over a token, take pending reads, maybe offer push once. */
export async function start(w) {
  if (!supported()) return;
  if (!listening) {
    listening = true;
    navigator.serviceWorker.addEventListener('message', (e) => {
      const d = e.data || {};
      if (d.type !== 'belfry:read' || !Array.isArray(d.ids)) return;
      for (const id of d.ids) {
        if (typeof id === 'string') w.api('POST', `/v1/me/notifications/${encodeURIComponent(id)}/read`).catch(() => {});
      }
    });
  }
  if (localStorage.getItem(key(w))) {
    await handOver(w, await registration(w));
    return;
  }
  if (
    w.getAttribute('push-prompt') === 'off' ||
    localStorage.getItem(ASKED) ||
    Notification.permission !== 'default' ||
    !workerUrl(w) ||
    !(await vapidKey(w))
  ) {
    return;
  }
  offer(w);
}

function offer(w) {
  const host = w.scroller && w.scroller.parentNode;
  if (!host || w.root.querySelector('.push-offer')) return;
  const t = STRINGS[w.lang] || STRINGS.en;
  const box = document.createElement('div');
  box.className = 'push-offer';
  box.setAttribute('part', 'push-offer');
  box.setAttribute('role', 'region');
  box.setAttribute('aria-label', t.on);
  box.style.cssText = 'display:flex;flex-wrap:wrap;gap:6px 10px;align-items:center;padding:8px 12px;font-size:.85em;border-bottom:1px solid var(--_border,#e5e7eb)';
  const text = document.createElement('span');
  text.textContent = t.offer;
  text.style.flex = '1 1 100%';
  const button = (label, primary, run) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.className = primary ? 'push-on' : 'push-later';
    b.style.cssText = `font:inherit;padding:3px 10px;border-radius:6px;cursor:pointer;border:1px solid var(--_accent,#2563eb);${
      primary ? 'background:var(--_accent,#2563eb);color:#fff' : 'background:transparent;color:var(--_accent,#2563eb)'
    }`;
    b.addEventListener('click', run);
    return b;
  };
  const done = () => {
    localStorage.setItem(ASKED, '1');
    box.remove();
  };
  box.append(
    text,
    button(t.on, true, () => {
      done();
      enable(w).catch((e) => console.warn('belfry: desktop notifications:', e));
    }),
    button(t.later, false, done),
  );
  host.insertBefore(box, w.scroller);
}
