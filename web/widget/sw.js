// Belfry inbox widget: the service worker of desktop notifications (web push).
//
// A classic script, so that a host application on another origin can serve
// it from its own origin with one line (a service worker must come from the
// page's origin):
//
//   // /belfry-sw.js on the host
//   importScripts('https://belfry.example.com/widget/sw.js');
//
// and name it on the widget: <belfry-inbox service-worker="/belfry-sw.js">.
// When Belfry serves the host page itself, /widget/sw.js is used directly
// (it is sent with `Service-Worker-Allowed: /`).
//
// It shows each push (title, body, icon, up to two actions; a newer push of
// the same stack replaces the older one through its tag), and on a click
// focuses an open tab of the host (navigating it to the link) or opens the
// link, and marks the notification read: with the user token the widget last
// handed over, else by asking the widget in that tab to do it, else when the
// widget next starts.

/* global self, clients, caches */
'use strict';

const STORE = 'belfry-push';
const AUTH = '/__belfry/auth';
const PENDING = '/__belfry/pending';

async function readJson(key, fallback) {
  try {
    const cache = await caches.open(STORE);
    const r = await cache.match(key);
    return r ? await r.json() : fallback;
  } catch {
    return fallback;
  }
}

async function writeJson(key, value) {
  const cache = await caches.open(STORE);
  await cache.put(key, new Response(JSON.stringify(value), { headers: { 'Content-Type': 'application/json' } }));
}

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

// The widget hands over where Belfry is and a current user token; it takes
// the reads the worker could not make itself.
self.addEventListener('message', (event) => {
  const data = event.data || {};
  if (data.type === 'belfry:auth' && typeof data.server === 'string' && typeof data.token === 'string') {
    event.waitUntil(
      (async () => {
        await writeJson(AUTH, { server: data.server, token: data.token });
        const pending = await readJson(PENDING, []);
        if (pending.length && event.source) {
          await writeJson(PENDING, []);
          event.source.postMessage({ type: 'belfry:read', ids: pending });
        }
      })(),
    );
  }
});

function parse(event) {
  if (!event.data) return null;
  try {
    return event.data.json();
  } catch {
    return { title: event.data.text() };
  }
}

self.addEventListener('push', (event) => {
  const p = parse(event);
  if (!p || !p.title) return;
  // Belfry sends actions as the browser takes them: {action, title, url}.
  const actions = (Array.isArray(p.actions) ? p.actions : []).filter((a) => a && a.action && a.title).slice(0, 2);
  const options = {
    body: p.body || '',
    icon: p.icon || undefined,
    tag: p.tag || p.id || undefined,
    renotify: !!p.tag,
    requireInteraction: !!p.sticky,
    data: { id: p.id || null, url: p.url || null, actions: actions.map((a) => ({ id: String(a.action), url: a.url || null })) },
    actions: actions.map((a) => ({ action: String(a.action), title: String(a.title) })),
  };
  event.waitUntil(self.registration.showNotification(String(p.title), options));
});

async function markRead(id) {
  if (!id) return true;
  const auth = await readJson(AUTH, null);
  if (!auth) return false;
  try {
    const r = await fetch(`${auth.server}/v1/me/notifications/${encodeURIComponent(id)}/read`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${auth.token}` },
    });
    return r.ok || r.status === 404;
  } catch {
    return false;
  }
}

self.addEventListener('notificationclick', (event) => {
  const n = event.notification;
  const data = n.data || {};
  n.close();
  const action = (data.actions || []).find((a) => a.id === event.action);
  const link = (action && action.url) || data.url;
  const target = link ? new URL(link, self.location.origin).href : null;
  event.waitUntil(
    (async () => {
      const read = await markRead(data.id);
      const open = await clients.matchAll({ type: 'window', includeUncontrolled: true });
      const same = open.filter((c) => new URL(c.url).origin === self.location.origin);
      let client = same.find((c) => c.focused) || same[0] || null;
      if (client) {
        client = await client.focus();
        if (target && client && client.url !== target && new URL(target).origin === self.location.origin) {
          client = (await client.navigate(target)) || client;
        } else if (target && new URL(target).origin !== self.location.origin) {
          await clients.openWindow(target);
        }
      } else if (target) {
        client = await clients.openWindow(target);
      }
      if (!read && data.id) {
        if (client) client.postMessage({ type: 'belfry:read', ids: [data.id] });
        // Kept until a widget hands over a token (it may be a new page).
        const pending = await readJson(PENDING, []);
        if (!pending.includes(data.id)) await writeJson(PENDING, [...pending, data.id].slice(-100));
      }
    })(),
  );
});
