// Belfry inbox widget: the <belfry-inbox> custom element.
//
// One dependency-free ES module, served by Belfry at /widget/belfry.js:
//   <script type="module" src="https://belfry.example.com/widget/belfry.js"></script>
//   <belfry-inbox server="https://belfry.example.com" token="…"></belfry-inbox>
//
// Bell with unread count and unseen dot, drawer, toasts, live updates over
// one Server-Sent Events stream per browser (a leader tab elected with the
// Web Locks API shares it with the other tabs over a BroadcastChannel), tab
// title and favicon badge, and a full-page mode for phones (mode="page").
// The gear opens the preferences panel, a second module (preferences.js,
// next to this one) imported only when it is first used.
// Everything a producer sends is rendered as text; links open only when
// they are http(s) or a path of the host page's origin.

const STRINGS = {
  en: {
    notifications: 'Notifications',
    bell: (n) => (n ? `Notifications, ${n} unread` : 'Notifications'),
    unreadCount: (n) => `${n} unread`,
    offlineSuffix: 'connection lost',
    unread: 'Unread',
    all: 'All',
    archived: 'Archived',
    markAllRead: 'Mark all read',
    markRead: 'Mark as read',
    markUnread: 'Mark as unread',
    archive: 'Archive',
    unarchive: 'Move back to inbox',
    remove: 'Delete',
    close: 'Close',
    closeHint: 'Close (Shift+click closes all)',
    empty: { unread: 'You are all caught up.', all: 'No notifications yet.', archived: 'Nothing archived.' },
    loading: 'Loading…',
    offline: 'Connection lost. Reconnecting…',
    failed: 'Could not load the notifications.',
    retry: 'Try again',
    expired: 'Your session has expired. Reload the page to sign in again.',
    announce: 'New notification',
    stacked: (n) => `${n} notifications`,
    unreadMarker: 'Unread',
    swipe: 'Swipe left to archive, right to mark as read.',
    seeAll: 'See all',
    toasts: 'New notifications',
    settings: 'Notification settings',
    settingsFailed: 'Could not open the settings.',
  },
  de: {
    notifications: 'Benachrichtigungen',
    bell: (n) => (n ? `Benachrichtigungen, ${n} ungelesen` : 'Benachrichtigungen'),
    unreadCount: (n) => `${n} ungelesen`,
    offlineSuffix: 'Verbindung unterbrochen',
    unread: 'Ungelesen',
    all: 'Alle',
    archived: 'Archiviert',
    markAllRead: 'Alle als gelesen markieren',
    markRead: 'Als gelesen markieren',
    markUnread: 'Als ungelesen markieren',
    archive: 'Archivieren',
    unarchive: 'Zurück in den Posteingang',
    remove: 'Löschen',
    close: 'Schließen',
    closeHint: 'Schließen (Umschalt+Klick schließt alle)',
    empty: { unread: 'Alles gelesen.', all: 'Noch keine Benachrichtigungen.', archived: 'Nichts archiviert.' },
    loading: 'Wird geladen…',
    offline: 'Verbindung unterbrochen. Neuer Versuch…',
    failed: 'Die Benachrichtigungen konnten nicht geladen werden.',
    retry: 'Erneut versuchen',
    expired: 'Ihre Sitzung ist abgelaufen. Laden Sie die Seite neu, um sich wieder anzumelden.',
    announce: 'Neue Benachrichtigung',
    stacked: (n) => `${n} Benachrichtigungen`,
    unreadMarker: 'Ungelesen',
    swipe: 'Nach links wischen zum Archivieren, nach rechts zum Markieren als gelesen.',
    seeAll: 'Alle anzeigen',
    toasts: 'Neue Benachrichtigungen',
    settings: 'Benachrichtigungseinstellungen',
    settingsFailed: 'Die Einstellungen konnten nicht geöffnet werden.',
  },
};

// Icons: 24×24 strokes, drawn for Belfry.
const ICONS = {
  bell: 'M12 3a6 6 0 0 0-6 6v4.5L4 16.5h16l-2-3V9a6 6 0 0 0-6-6zM10 19.5a2 2 0 0 0 4 0',
  read: 'M5 12.5l4.5 4.5L19 7.5',
  unread: 'M12 8.5a3.5 3.5 0 1 0 0 7 3.5 3.5 0 1 0 0-7z',
  archive: 'M4 5h16v4H4zM5.5 9v10h13V9M10 13h4',
  unarchive: 'M4 5h16v4H4zM5.5 9v10h13V9M12 17.5v-5.5M9.5 14.5L12 12l2.5 2.5',
  close: 'M6.5 6.5l11 11M17.5 6.5l-11 11',
  remove: 'M4.5 6.5h15M9.5 6.5V4h5v2.5M6.5 6.5l1 13.5h9l1-13.5M10.5 10.5v6M13.5 10.5v6',
  assignment: 'M9 11a3.5 3.5 0 1 0 0-7 3.5 3.5 0 0 0 0 7zM2.5 20a6.5 6.5 0 0 1 13 0M16.5 11.5h5M19 9l2.5 2.5L19 14',
  mention: 'M15.5 12a3.5 3.5 0 1 1-7 0 3.5 3.5 0 0 1 7 0zM15.5 12v1.5a2.5 2.5 0 0 0 5 0V12a8.5 8.5 0 1 0-3.3 6.7',
  reply: 'M4 5h16v11H10l-5 4v-4H4z',
  broadcast: 'M3.5 10v4h3l7.5 4.5v-13L6.5 10zM17 9.5a3.5 3.5 0 0 1 0 5M19.5 7a7 7 0 0 1 0 10',
  reminder: 'M12 3.5a8.5 8.5 0 1 0 0 17 8.5 8.5 0 0 0 0-17zM12 7.5V12l3 2',
  gear: 'M12 9a3 3 0 1 0 0 6 3 3 0 0 0 0-6zM12 5.5a6.5 6.5 0 1 0 0 13 6.5 6.5 0 0 0 0-13zM12 2.5v3M12 18.5v3M2.5 12h3M18.5 12h3M5.3 5.3l2.1 2.1M16.6 16.6l2.1 2.1M5.3 18.7l2.1-2.1M16.6 7.4l2.1-2.1',
};

const CATEGORY_ICONS = {
  assignment: 'assignment', assigned: 'assignment',
  mention: 'mention',
  customer_reply: 'reply', reply: 'reply', comment: 'reply', message: 'reply',
  broadcast: 'broadcast', announcement: 'broadcast',
  reminder: 'reminder', task: 'reminder',
};

const CSS = `
:host{display:inline-block;position:relative;font:var(--belfry-font,inherit);
  --_accent:var(--belfry-accent,#2563eb);--_bg:var(--belfry-bg,#fff);--_fg:var(--belfry-fg,#111827);
  --_muted:var(--belfry-muted,#6b7280);--_border:var(--belfry-border,#e5e7eb);--_hover:var(--belfry-hover,#f3f4f6);
  --_unread:var(--belfry-unread-bg,#eff6ff);--_radius:var(--belfry-radius,10px);--_dot:var(--belfry-dot,#ef4444);
  --_shadow:var(--belfry-shadow,0 12px 32px rgba(15,23,42,.18),0 2px 6px rgba(15,23,42,.08));--_z:var(--belfry-z,1000)}
:host([mode=page]){display:block}
[hidden]{display:none!important}
*{box-sizing:border-box}
button{font:inherit;color:inherit;background:none;border:0;margin:0;padding:0;cursor:pointer}
button:focus-visible,a:focus-visible,[tabindex]:focus-visible{outline:2px solid var(--_accent);outline-offset:2px}
svg{width:1.25em;height:1.25em;flex:none;fill:none;stroke:currentColor;stroke-width:1.8;stroke-linecap:round;stroke-linejoin:round}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.bell{position:relative;display:grid;place-items:center;width:var(--belfry-bell-size,40px);height:var(--belfry-bell-size,40px);
  border-radius:50%;color:var(--belfry-bell-color,currentColor)}
.bell:hover{background:var(--belfry-bell-hover,rgba(127,127,127,.15))}
.bell svg{width:58%;height:58%}
.badge{position:absolute;top:1px;right:-2px;min-width:19px;height:19px;padding:0 5px;border-radius:10px;
  background:var(--belfry-badge-bg,var(--_accent));color:var(--belfry-badge-fg,#fff);font-size:11px;font-weight:700;line-height:19px;text-align:center;
  box-shadow:0 0 0 2px var(--belfry-badge-ring,var(--_bg))}
.dot{position:absolute;top:5px;left:6px;width:10px;height:10px;border-radius:50%;background:var(--_dot);box-shadow:0 0 0 2px var(--belfry-badge-ring,var(--_bg))}
.conn{position:absolute;bottom:3px;left:4px;width:10px;height:10px;border-radius:50%;background:var(--belfry-offline,#9ca3af);
  box-shadow:0 0 0 2px var(--belfry-badge-ring,var(--_bg))}
.drawer{position:absolute;top:calc(100% + 8px);right:0;z-index:var(--_z);width:var(--belfry-drawer-width,400px);max-width:calc(100vw - 16px);
  display:flex;flex-direction:column;max-height:min(640px,calc(100vh - 96px));background:var(--_bg);color:var(--_fg);
  border:1px solid var(--_border);border-radius:var(--_radius);box-shadow:var(--_shadow);overflow:hidden;text-align:left}
.drawer.start{right:auto;left:0}
@media (max-width:520px){.drawer{position:fixed;top:60px;left:8px;right:8px;width:auto;max-height:calc(100vh - 72px)}}
.head{display:flex;align-items:center;gap:8px;padding:12px 14px 6px}
.head h2{margin:0;font-size:1.05em;font-weight:650;flex:1}
.link{color:var(--_accent);font-size:.85em;font-weight:550;padding:4px 6px;border-radius:6px}
.link:hover{background:var(--_hover)}
.link:disabled{color:var(--_muted);cursor:default;background:none}
.tabs{display:flex;gap:4px;padding:4px 10px 0;border-bottom:1px solid var(--_border)}
.tab{padding:8px 10px;font-size:.88em;color:var(--_muted);border-bottom:2px solid transparent;margin-bottom:-1px}
.tab[aria-selected=true]{color:var(--_fg);border-bottom-color:var(--_accent);font-weight:600}
.notice{padding:8px 14px;font-size:.85em;background:var(--belfry-notice-bg,#fef3c7);color:var(--belfry-notice-fg,#92400e)}
.scroll{overflow-y:auto;overscroll-behavior:contain;flex:1}
ul{list-style:none;margin:0;padding:0}
.item{position:relative;border-bottom:1px solid var(--_border);background:var(--_bg);overflow:hidden}
.row{position:relative;display:flex;align-items:flex-start;background:inherit;transition:transform .18s ease}
.item.unread{background:var(--_unread)}
.main{flex:1;min-width:0;display:flex;gap:12px;padding:12px 4px 12px 14px;text-align:left;align-items:flex-start}
.main:hover{background:var(--_hover)}
.pic{position:relative;flex:none;width:38px;height:38px}
.avatar{position:relative;width:38px;height:38px;border-radius:50%;display:grid;place-items:center;font-size:.8em;font-weight:700;color:#fff;overflow:hidden;
  background:var(--_muted)}
.avatar img{position:absolute;inset:0;width:100%;height:100%;object-fit:cover}
.avatar.icon{background:var(--_hover);color:var(--_fg)}
.avatar.icon svg{width:20px;height:20px}
.cat{position:absolute;right:-4px;bottom:-4px;width:20px;height:20px;border-radius:50%;display:grid;place-items:center;
  background:var(--_bg);color:var(--_accent);box-shadow:0 0 0 1px var(--_border)}
.cat svg{width:13px;height:13px;stroke-width:2.2}
.text{flex:1;min-width:0;display:flex;flex-direction:column;gap:2px}
.title{font-weight:600;font-size:.92em;line-height:1.3;overflow-wrap:anywhere}
.item.read .title{font-weight:500}
.body{font-size:.86em;line-height:1.35;color:var(--_muted);overflow:hidden;display:-webkit-box;-webkit-line-clamp:2;-webkit-box-orient:vertical;overflow-wrap:anywhere}
.meta{display:flex;flex-wrap:wrap;gap:6px;align-items:center;font-size:.78em;color:var(--_muted)}
.entity{font-weight:600;color:var(--_fg)}
.stack{font-weight:700;color:var(--_accent);background:var(--_hover);border-radius:8px;padding:0 6px}
.mark{flex:none;width:9px;height:9px;margin-top:6px;border-radius:50%;background:var(--_accent);visibility:hidden}
.item.unread .mark{visibility:visible}
.tools{display:flex;flex-direction:column;gap:2px;padding:8px 8px 8px 0}
.tool{display:grid;place-items:center;width:30px;height:30px;border-radius:8px;color:var(--_muted)}
.tool:hover{background:var(--_hover);color:var(--_fg)}
.actions{position:relative;display:flex;flex-wrap:wrap;gap:6px;padding:0 14px 12px 64px}
.btn{display:inline-flex;align-items:center;padding:5px 11px;border-radius:7px;font-size:.82em;font-weight:600;
  border:1px solid var(--_border);background:var(--_bg);color:var(--_fg);text-decoration:none}
.btn.primary{background:var(--_accent);border-color:var(--_accent);color:#fff}
.btn.danger{color:#b91c1c;border-color:#fecaca}
.btn:disabled{opacity:.5;cursor:not-allowed}
.aform{position:relative}
.answered{font-size:.82em;font-weight:600;color:var(--belfry-answered,#15803d);padding:5px 0}
.state{padding:28px 16px;text-align:center;color:var(--_muted);font-size:.9em}
.foot{display:flex;justify-content:center;border-top:1px solid var(--_border);padding:6px}
.foot a{color:var(--_accent);font-size:.85em;font-weight:550;text-decoration:none;padding:6px}
.sentinel{height:1px}
.toasts{position:fixed;right:16px;bottom:16px;z-index:calc(var(--_z) + 1);display:flex;flex-direction:column;gap:10px;
  width:var(--belfry-toast-width,360px);max-width:calc(100vw - 32px);pointer-events:none}
.toast{pointer-events:auto;position:relative;display:flex;flex-direction:column;background:var(--_bg);color:var(--_fg);
  border:1px solid var(--_border);border-radius:var(--_radius);box-shadow:var(--_shadow);animation:belfry-in .2s ease-out;overflow:hidden;text-align:left}
.toast.sticky{border-left:4px solid var(--belfry-sticky,#f59e0b)}
.toast .main{padding:12px 40px 10px 14px;background:none}
.toast .x{position:absolute;top:6px;right:6px}
.toast .actions{padding:0 14px 12px 64px}
@keyframes belfry-in{from{transform:translateY(12px);opacity:0}}
@media (prefers-reduced-motion:reduce){.toast{animation:none}.row{transition:none}}
.page{background:var(--_bg);color:var(--_fg);border:1px solid var(--_border);border-radius:var(--_radius);overflow:hidden}
.page .head{padding:16px 16px 8px}
.page .head h2{font-size:1.3em}
.page .count{color:var(--_muted);font-size:.9em}
.page .main{padding:16px 6px 16px 16px;min-height:76px}
.page .tool{width:44px;height:44px}
.page .tab{padding:12px 14px;font-size:.95em}
.page .item{touch-action:pan-y;user-select:none;-webkit-user-select:none}
.swipe{position:absolute;inset:0;display:flex;align-items:center;justify-content:space-between;padding:0 22px;font-weight:700;font-size:.9em;color:#fff}
.swipe span{display:flex;gap:6px;align-items:center;visibility:hidden}
.item.swipe-r .swipe{background:var(--belfry-swipe-read,#16a34a)}
.item.swipe-l .swipe{background:var(--belfry-swipe-archive,#6b7280)}
.item.swipe-r .swipe .r,.item.swipe-l .swipe .l{visibility:visible}
.item.dragging .row{transition:none}
.hint{padding:0 16px 10px;font-size:.8em;color:var(--_muted)}
`;

const PAGE_SIZE = 20;
const MAX_TOASTS = 5;

// ---------- small helpers ----------

/** Creates an element; strings become text nodes, never markup. */
function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'text') el.textContent = v;
    else if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat()) if (kid != null && kid !== false) el.append(kid);
  return el;
}

function icon(name) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(NS, 'path');
  path.setAttribute('d', ICONS[name] || ICONS.bell);
  svg.append(path);
  return svg;
}

/** An http(s) URL, or a path resolved against the host page; anything else is refused. */
export function safeUrl(value) {
  if (typeof value !== 'string' || !value) return null;
  const v = value.trim();
  const absolute = /^https?:\/\//i.test(v);
  const path = v.startsWith('/') && !v.startsWith('//') && !v.startsWith('/\\');
  if (!absolute && !path) return null;
  try {
    const url = new URL(v, document.baseURI);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

function initials(name) {
  const words = String(name || '?').trim().split(/\s+/).filter(Boolean);
  return ((words[0] || '?')[0] + (words.length > 1 ? words[words.length - 1][0] : '')).toUpperCase();
}

function hue(text) {
  let n = 0;
  for (const c of String(text)) n = (n * 31 + c.codePointAt(0)) % 360;
  return n;
}

const count99 = (n) => (n > 99 ? '99+' : String(n));

const UNITS = [['year', 31557600], ['month', 2629800], ['week', 604800], ['day', 86400], ['hour', 3600], ['minute', 60]];

function relTime(iso, lang) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  const diff = (t - Date.now()) / 1000;
  const rtf = new Intl.RelativeTimeFormat(lang, { numeric: 'auto' });
  for (const [unit, secs] of UNITS) {
    if (Math.abs(diff) >= secs) return rtf.format(Math.round(diff / secs), unit);
  }
  return rtf.format(0, 'second');
}

/** The `sub` of a JWT, to give each user of a browser their own channel. */
function tokenSubject(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part)).sub || '';
  } catch {
    return '';
  }
}

class HttpError extends Error {
  constructor(status, problem) {
    super((problem && problem.detail) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

// ---------- the stream, shared by the tabs of one browser ----------

/**
 * One stream connection per browser and user. The tab holding the leader
 * lock reads the stream and forwards every event to the other tabs over a
 * BroadcastChannel; when it closes, the lock passes to a waiting tab at
 * once, which resumes from the last seq it has seen. The leader also
 * decides which tab shows a toast: the one the user looks at, else itself.
 * Without the Web Locks API (insecure origins) every tab runs alone.
 */
class Link {
  constructor(widget, key) {
    this.w = widget;
    this.key = key;
    this.id = Math.random().toString(36).slice(2) + Date.now().toString(36);
    this.leading = false;
    this.closed = false;
    this.lastSeq = 0;
    this.state = 'connecting';
    this.tabs = new Map();
    this.chain = Promise.resolve();
    this.seenAt = Date.now();
  }

  get shared() {
    return !!(navigator.locks && window.BroadcastChannel);
  }

  start() {
    this.onVis = () => {
      this.seenAt = Date.now();
      this.post({ t: 'vis', ...this.me() });
    };
    document.addEventListener('visibilitychange', this.onVis);
    window.addEventListener('focus', this.onVis);
    this.onOnline = () => this.wake && this.wake();
    window.addEventListener('online', this.onOnline);
    if (!this.shared) {
      this.lead();
      return;
    }
    this.bc = new BroadcastChannel(`belfry:${this.key}`);
    this.bc.onmessage = (e) => this.receive(e.data);
    this.w.onRole(false);
    // A lock is held until its callback's promise settles: ours settle in stop(),
    // or never, and the browser releases them when the tab goes away.
    this.releases = [];
    const hold = (name, onGrant) =>
      navigator.locks
        .request(name, () => {
          if (this.closed) return null;
          onGrant();
          return new Promise((resolve) => this.releases.push(resolve));
        })
        .catch(() => {});
    hold(`belfry-tab:${this.key}:${this.id}`, () => {}); // presence, for toastTab()
    hold(`belfry-leader:${this.key}`, () => this.lead());
    this.post({ t: 'hello', ...this.me() });
  }

  stop() {
    this.closed = true;
    this.leading = false;
    if (this.ctrl) this.ctrl.abort();
    if (this.wake) this.wake();
    (this.releases || []).forEach((release) => release());
    document.removeEventListener('visibilitychange', this.onVis);
    window.removeEventListener('focus', this.onVis);
    window.removeEventListener('online', this.onOnline);
    if (this.bc) {
      this.post({ t: 'bye', id: this.id });
      this.bc.close();
    }
  }

  me() {
    return { id: this.id, vis: document.visibilityState === 'visible', focus: document.hasFocus(), at: this.seenAt };
  }

  post(msg) {
    try {
      if (this.bc && !this.closed) this.bc.postMessage(msg);
    } catch {
      /* closed channel */
    }
  }

  receive(m) {
    if (!m || typeof m !== 'object') return;
    switch (m.t) {
      case 'ev':
        if (m.kind === 'notification' && m.seq > this.lastSeq) this.lastSeq = m.seq;
        this.w.onStreamEvent(m.kind, m.data, m.toast === this.id);
        break;
      case 'state':
        if (!this.leading) this.setState(m.state);
        break;
      case 'resync':
        this.w.resync();
        break;
      case 'hello':
      case 'vis':
        this.tabs.set(m.id, m);
        if (m.t === 'hello' && this.leading) this.post({ t: 'state', state: this.state });
        break;
      case 'who':
        this.post({ t: 'vis', ...this.me() });
        break;
      case 'bye':
        this.tabs.delete(m.id);
        break;
    }
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    if (this.leading) this.post({ t: 'state', state });
    this.w.onConnection(state);
  }

  lead() {
    if (this.closed) return;
    this.leading = true;
    this.w.onRole(true);
    this.post({ t: 'who' });
    this.run();
  }

  /** Which tab shows the toast: a visible one (focused, else most recently shown), else the leader. */
  async toastTab() {
    const me = this.me();
    let tabs = [me, ...[...this.tabs.values()].filter((t) => t.id !== this.id)];
    if (this.shared) {
      try {
        const held = new Set(((await navigator.locks.query()).held || []).map((l) => l.name));
        tabs = tabs.filter((t) => t.id === this.id || held.has(`belfry-tab:${this.key}:${t.id}`));
      } catch {
        /* keep the list */
      }
    }
    const visible = tabs.filter((t) => t.vis);
    if (!visible.length) return this.id;
    visible.sort((a, b) => (b.focus - a.focus) || (b.at - a.at));
    return visible[0].id;
  }

  dispatch(kind, data, seq) {
    this.chain = this.chain.then(async () => {
      if (this.closed) return;
      if (kind === 'notification' && seq > this.lastSeq) this.lastSeq = seq;
      const toast = kind === 'notification' ? await this.toastTab() : null;
      this.post({ t: 'ev', kind, data, seq, toast });
      this.w.onStreamEvent(kind, data, toast === this.id);
    });
  }

  sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  /** The reconnect loop: back-off 1 s doubling up to 15 s, with jitter. */
  async run() {
    let failures = 0;
    let refreshed = false;
    while (this.leading && !this.closed) {
      const ctrl = (this.ctrl = new AbortController());
      let opened = false;
      let retryNow = false;
      try {
        const token = await this.w.getToken();
        const url = new URL(`${this.w.server}/v1/me/stream`);
        // No counts event after a new entry: setCounts/onNotification derive them.
        url.searchParams.set('counts', 'derived');
        if (this.lastSeq > 0) url.searchParams.set('after', String(this.lastSeq));
        const res = await fetch(url, {
          headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' },
          cache: 'no-store',
          signal: ctrl.signal,
        });
        if (res.status === 401) {
          if (!refreshed && this.w.canRefresh()) {
            refreshed = true;
            await this.w.refreshToken();
            retryNow = true;
          } else {
            this.setState('unauthorized');
            return;
          }
        } else if (res.status === 400) {
          const problem = await res.json().catch(() => null);
          if (problem && problem.code === 'invalid_cursor') {
            // The server was reset: start over from what it has now.
            this.lastSeq = 0;
            retryNow = true;
          } else throw new HttpError(400, problem);
        } else if (!res.ok || !res.body) {
          throw new HttpError(res.status, null);
        } else {
          opened = true;
          refreshed = false;
          failures = 0;
          this.setState('live');
          this.post({ t: 'resync' });
          this.w.resync();
          await this.read(res.body, ctrl);
        }
      } catch (e) {
        if (this.closed || !this.leading) return;
        if (e && e.name !== 'AbortError' && !(e instanceof HttpError) && !(e instanceof TypeError)) console.warn('belfry:', e);
      }
      if (!this.leading || this.closed) return;
      if (retryNow) continue;
      if (!opened) failures++;
      this.setState('offline');
      const base = opened ? 500 : Math.min(15000, 1000 * 2 ** Math.max(0, failures - 1));
      await this.sleep(base * (0.75 + Math.random() * 0.5));
    }
  }

  /** Reads Server-Sent Events until the stream ends; a silent stream (no heartbeat) is dropped. */
  async read(body, ctrl) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let id = null;
    let event = '';
    let data = [];
    let stall;
    const arm = () => {
      clearTimeout(stall);
      stall = setTimeout(() => ctrl.abort(), 45000);
    };
    arm();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        arm();
        buf += value;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, '');
          buf = buf.slice(nl + 1);
          if (line === '') {
            if (data.length) {
              let parsed = null;
              try {
                parsed = JSON.parse(data.join('\n'));
              } catch {
                /* not ours */
              }
              if (parsed) this.dispatch(event || 'message', parsed, id == null ? null : Number(id));
            }
            id = null;
            event = '';
            data = [];
          } else if (line[0] !== ':') {
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
            if (field === 'data') data.push(val);
            else if (field === 'event') event = val;
            else if (field === 'id') id = val;
          }
        }
      }
    } finally {
      clearTimeout(stall);
      reader.cancel().catch(() => {});
    }
  }
}

// ---------- tab title and favicon ----------

/** The unread count in the tab's title ("(3) My Desk") and as a badge on its favicon. */
const tabBadge = {
  owner: null,
  base: null,
  ours: null,
  count: 0,
  icons: null,
  image: undefined,

  set(owner, n) {
    if (this.owner && this.owner !== owner && this.owner.isConnected) return;
    this.owner = owner;
    this.count = n;
    this.title();
    this.favicon();
  },

  title() {
    if (!this.observer) {
      // The host may change its title (single-page apps): keep our prefix on the new one.
      this.observer = new MutationObserver(() => {
        if (document.title !== this.ours) this.title();
      });
      this.observer.observe(document.head || document.documentElement, { subtree: true, childList: true, characterData: true });
    }
    if (document.title !== this.ours) this.base = document.title.replace(/^\(\d+\+?\) /, '');
    this.ours = this.count > 0 ? `(${count99(this.count)}) ${this.base}` : this.base;
    if (document.title !== this.ours) document.title = this.ours;
  },

  favicon() {
    if (!this.icons) {
      let links = [...document.querySelectorAll('link[rel~="icon"]')];
      this.created = !links.length;
      if (this.created) links = [h('link', { rel: 'icon' })];
      this.icons = links.map((link) => ({ link, href: link.getAttribute('href') }));
      const original = this.icons.find((i) => i.href);
      this.image = original ? loadImage(new URL(original.href, document.baseURI).href) : Promise.resolve(null);
    }
    const n = this.count;
    const version = (this.version = (this.version || 0) + 1);
    this.image.then((img) => {
      if (version !== this.version) return;
      if (n === 0) {
        for (const { link, href } of this.icons) {
          if (href == null) link.remove();
          else link.setAttribute('href', href);
        }
        return;
      }
      const url = drawBadge(img, count99(n));
      for (const { link } of this.icons) {
        link.setAttribute('href', url);
        if (!link.isConnected) document.head.append(link);
      }
    });
  },
};

function loadImage(src) {
  return new Promise((resolve) => {
    const img = new Image();
    img.crossOrigin = 'anonymous';
    img.onload = () => resolve(img);
    img.onerror = () => resolve(null);
    img.src = src;
  });
}

function drawBadge(img, text) {
  const size = 64;
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext('2d');
  const paint = (withImage) => {
    ctx.clearRect(0, 0, size, size);
    if (withImage && img) ctx.drawImage(img, 0, 0, size, size);
    const r = text.length > 1 ? 20 : 17;
    ctx.fillStyle = '#dc2626';
    ctx.beginPath();
    ctx.arc(size - r, r, r, 0, Math.PI * 2);
    ctx.fill();
    ctx.fillStyle = '#fff';
    ctx.font = `bold ${text.length > 2 ? 18 : 26}px sans-serif`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(text, size - r, r + 1);
    return canvas.toDataURL('image/png');
  };
  try {
    return paint(true);
  } catch {
    return paint(false); // a cross-origin icon without CORS taints the canvas
  }
}

// ---------- the element ----------

export class BelfryInbox extends HTMLElement {
  static get observedAttributes() {
    return ['server', 'token', 'locale', 'mode'];
  }

  constructor() {
    super();
    this.root = this.attachShadow({ mode: 'open' });
    this._token = null;
    this._provider = null;
    this.items = [];
    this.nodes = new Map();
    this.view = 'all';
    this.cursor = null;
    this.loaded = false;
    this.loading = false;
    this.failed = false;
    this.generation = 0;
    this._counts = { unread: 0, unseen: 0 };
    this.isOpen = false;
    this.toastMap = new Map();
    this.connection = 'connecting';
    // Properties set before the element was defined shadow the accessors: move them over.
    for (const name of ['tokenProvider', 'token']) {
      if (Object.prototype.hasOwnProperty.call(this, name)) {
        const value = this[name];
        delete this[name];
        this[name] = value;
      }
    }
  }

  // ----- public API -----

  /** `async () => token`: called for the first token without a `token` attribute, and whenever one expired. */
  get tokenProvider() {
    return this._provider;
  }

  set tokenProvider(fn) {
    this._provider = typeof fn === 'function' ? fn : null;
    if (this.built && !this.link) this.restart();
  }

  /** Reads `token` (attribute or property). */
  get token() {
    return this._token || this.getAttribute('token') || '';
  }

  set token(value) {
    this._token = value || null;
    this.refreshedToken = null;
    if (this.built) this.restart();
  }

  get counts() {
    return { ...this._counts };
  }

  get server() {
    const attr = (this.getAttribute('server') || '').trim();
    return (attr || new URL(import.meta.url).origin).replace(/\/+$/, '');
  }

  get lang() {
    const wanted = (this.getAttribute('locale') || navigator.language || 'en').toLowerCase();
    return STRINGS[wanted.split('-')[0]] ? wanted.split('-')[0] : 'en';
  }

  get t() {
    return STRINGS[this.lang];
  }

  get pageMode() {
    return this.getAttribute('mode') === 'page';
  }

  open() {
    if (this.pageMode || this.isOpen) return;
    this.isOpen = true;
    this.bellBtn.setAttribute('aria-expanded', 'true');
    this.drawer.hidden = false;
    // Toasts never cover the open drawer: they wait (paused) until it closes.
    this.toastBox.hidden = true;
    for (const e of this.toastMap.values()) clearTimeout(e.timer);
    const rect = this.getBoundingClientRect();
    this.drawer.classList.toggle('start', rect.right < Math.min(400, window.innerWidth - 16));
    this.markSeen();
    if (!this.loaded && !this.loading) this.load(true);
    this.drawer.querySelector('.tab[aria-selected=true]').focus();
    this.observeMore();
  }

  close(restoreFocus = true) {
    if (!this.isOpen) return;
    if (this.panel) this.panel.close(false);
    this.isOpen = false;
    this.bellBtn.setAttribute('aria-expanded', 'false');
    this.drawer.hidden = true;
    this.toastBox.hidden = false;
    for (const e of this.toastMap.values()) e.arm();
    if (restoreFocus) this.bellBtn.focus();
  }

  toggle() {
    this.isOpen ? this.close() : this.open();
  }

  /** Opens the preferences panel (and the drawer); its module is loaded on first use. */
  async openSettings() {
    if (!this.built || this.panel) return;
    if (!this.pageMode) this.open();
    try {
      (await import(new URL('preferences.js', import.meta.url).href)).openPreferences(this, this.gearBtn);
    } catch (e) {
      console.warn('belfry:', e);
      this.notice.textContent = this.t.settingsFailed;
      this.notice.hidden = false;
    }
  }

  /** Reloads counts and the list. */
  refresh() {
    return this.resync();
  }

  /** Marks everything read. */
  markAllRead() {
    return this.api('POST', '/v1/me/notifications/read-all').then((r) => {
      this.applyState({ action: 'read_all', category: null });
      return r;
    });
  }

  /** The user views this entity in the host application: everything about it becomes read. */
  markEntityRead(type, id) {
    return this.api('POST', `/v1/me/entities/${encodeURIComponent(type)}/${encodeURIComponent(id)}/read`).then(() =>
      this.applyState({ action: 'read_entity', entity: { type: String(type), id: String(id) } }),
    );
  }

  // ----- lifecycle -----

  connectedCallback() {
    if (!this.built) this.build();
    // Properties (tokenProvider) are often set right after the element is created.
    queueMicrotask(() => this.restart());
    this.ticker = setInterval(() => this.updateTimes(), 30000);
  }

  disconnectedCallback() {
    clearInterval(this.ticker);
    this.stop();
  }

  attributeChangedCallback(name, old, value) {
    if (!this.built || old === value) return;
    if (name === 'locale' || name === 'mode') {
      this.build();
      this.renderCounts();
      this.renderList();
    }
    if (name === 'token') this.refreshedToken = null;
    if (name === 'server' || name === 'token' || name === 'mode') this.restart();
  }

  stop() {
    if (this.link) this.link.stop();
    this.link = null;
    document.removeEventListener('pointerdown', this.outside, true);
    document.removeEventListener('keydown', this.escape);
  }

  /** A press outside the widget closes the drawer. */
  outside = (e) => {
    if (this.isOpen && !e.composedPath().includes(this)) this.close(false);
  };

  /** Escape closes the drawer wherever the focus is. */
  escape = (e) => {
    if (this.isOpen && e.key === 'Escape') this.close(this.matches(':focus-within'));
  };

  async restart() {
    if (!this.isConnected) return;
    this.stop();
    if (!this.token && typeof this.tokenProvider !== 'function') return; // waits for a token
    const run = (this.run = {});
    let token;
    try {
      token = await this.getToken();
    } catch (e) {
      this.onConnection('unauthorized');
      return;
    }
    if (run !== this.run || !this.isConnected) return;
    this.items = [];
    this.loaded = false;
    this.fresh = [];
    this.link = new Link(this, `${this.server}|${tokenSubject(token)}`);
    this.onConnection('connecting');
    this.link.start();
    document.addEventListener('pointerdown', this.outside, true);
    document.addEventListener('keydown', this.escape);
    this.fetchCounts().then(() => this._counts && this._counts.unread && this.reminders());
    if (this.pageMode || this.isOpen) this.load(true);
    if (this.pageMode) this.markSeen();
    this.startPush();
  }

  /** Desktop notifications: their module loads only where they are on, or may be offered once. */
  startPush() {
    try {
      const ls = localStorage;
      if (!navigator.serviceWorker || !window.Notification) return;
      const off = Notification.permission !== 'default' || ls.getItem('belfry-push-asked') || this.getAttribute('push-prompt') === 'off';
      if (!ls.getItem(`belfry-push:${this.server}`) && off) return;
      import(new URL('push.js', import.meta.url).href).then((m) => m.start(this), () => {});
    } catch {
      // Storage or workers unavailable (private mode, sandboxed frame): no desktop notifications.
    }
  }

  // ----- tokens and HTTP -----

  canRefresh() {
    return typeof this.tokenProvider === 'function';
  }

  async getToken() {
    if (this._token) return this._token;
    const attr = this.getAttribute('token');
    if (attr && !this.refreshedToken) return attr;
    if (this.refreshedToken) return this.refreshedToken;
    if (this.canRefresh()) return this.refreshToken();
    throw new HttpError(401, null);
  }

  /** Asks the host for a new token (one request at a time). */
  refreshToken() {
    if (!this.canRefresh()) return Promise.reject(new HttpError(401, null));
    if (!this.pendingToken) {
      this.pendingToken = Promise.resolve()
        .then(() => this.tokenProvider())
        .then((t) => {
          if (typeof t !== 'string' || !t) throw new Error('tokenProvider returned no token');
          this._token = null;
          this.refreshedToken = t;
          return t;
        })
        .finally(() => (this.pendingToken = null));
    }
    return this.pendingToken;
  }

  async api(method, path, body, keepalive = false) {
    for (let attempt = 0; ; attempt++) {
      const token = await this.getToken();
      const headers = { Authorization: `Bearer ${token}` };
      if (body) headers['Content-Type'] = 'application/json';
      const res = await fetch(this.server + path, {
        method,
        headers,
        body: body ? JSON.stringify(body) : undefined,
        cache: 'no-store',
        keepalive,
      });
      if (res.status === 401 && attempt === 0 && this.canRefresh()) {
        await this.refreshToken();
        continue;
      }
      if (res.status === 401) this.onConnection('unauthorized');
      if (!res.ok) throw new HttpError(res.status, await res.json().catch(() => null));
      return res.status === 204 ? null : res.json();
    }
  }

  // ----- events from the stream (this tab's or the leader's) -----

  onRole(leader) {
    this.setAttribute('data-leader', String(leader));
  }

  onConnection(state) {
    this.connection = state;
    this.setAttribute('data-connection', state);
    this.renderCounts();
    if (this.notice) {
      const text = state === 'offline' ? this.t.offline : state === 'unauthorized' ? this.t.expired : '';
      this.notice.textContent = text;
      this.notice.hidden = !text;
    }
    this.emit('belfry:connection', { state });
  }

  onStreamEvent(kind, data, toastHere) {
    if (kind === 'counts') this.setCounts(data);
    else if (kind === 'state') this.applyState(data);
    else if (kind === 'notification') this.onNotification(data, toastHere);
  }

  onNotification(item, toastHere) {
    if (!item || typeof item.id !== 'string') return;
    // A new entry is one more unread and unseen item than counts as of a lower seq.
    const f = (this.fresh ||= []);
    if (item.stack_count === 1 && !item.read && !f.includes(item.seq)) {
      if (f.push(item.seq) > 200) f.shift();
      this.setCounts(this.base);
    }
    if (this.view !== 'archived' && (this.loaded || this.loading)) {
      this.items = this.items.filter(
        (i) => i.id !== item.id && !(item.stack_key && i.stack_key === item.stack_key),
      );
      if (this.view === 'all' || !item.read) this.items.unshift(item);
      this.items.sort((a, b) => b.seq - a.seq);
      this.renderList();
    }
    if (this.isOpen && document.visibilityState === 'visible') this.markSeenSoon();
    if (this.pageMode && document.visibilityState === 'visible') this.markSeenSoon();
    if (toastHere && this.getAttribute('toasts') !== 'off' && !this.pageMode) this.showToast(item);
    this.emit('belfry:notification', { notification: item });
  }

  applyState(s) {
    if (!s || typeof s !== 'object') return;
    const patch = (pred, change) => {
      for (const i of this.items) if (pred(i)) Object.assign(i, change);
    };
    const drop = (ids) => {
      this.items = this.items.filter((i) => !ids.includes(i.id));
      ids.forEach((id) => this.closeToast(id));
    };
    if (s.action === 'items' && Array.isArray(s.ids)) {
      const has = (i) => s.ids.includes(i.id);
      if (s.op === 'read') {
        patch(has, { read: true, seen: true });
        s.ids.forEach((id) => this.closeToast(id));
      } else if (s.op === 'unread') patch(has, { read: false });
      else if (s.op === 'dismiss') {
        patch(has, { dismissed: true });
        s.ids.forEach((id) => this.closeToast(id));
      }
      else if (s.op === 'delete') drop(s.ids);
      else if (s.op === 'archive') {
        if (this.view === 'archived') this.resyncSoon();
        else drop(s.ids);
      } else if (s.op === 'unarchive') {
        if (this.view === 'archived') drop(s.ids);
        else this.resyncSoon();
      }
    } else if (s.action === 'read_all') {
      patch((i) => !s.category || i.category === s.category, { read: true, seen: true });
      for (const [id, t] of [...this.toastMap]) if (!s.category || t.item.category === s.category) this.closeToast(id);
    } else if (s.action === 'seen_all') patch(() => true, { seen: true });
    else if (s.action === 'read_entity' && s.entity) {
      const about = (i) => i.entity && i.entity.type === s.entity.type && String(i.entity.id) === String(s.entity.id);
      patch(about, { read: true, seen: true });
      for (const [id, t] of [...this.toastMap]) if (about(t.item)) this.closeToast(id);
    } else if (s.action === 'delete' && Array.isArray(s.ids)) drop(s.ids);
    else if (s.action === 'answered' && Array.isArray(s.ids)) {
      patch((i) => s.ids.includes(i.id), { answered: s.answered });
      for (const id of s.ids) {
        const e = this.toastMap.get(id);
        if (e) (e.item.answered = s.answered), e.el.querySelector('.actions')?.replaceWith(this.renderActions(e.item) || '');
      }
    }
    this.renderList();
  }

  /** Counts (`{unread, unseen, seq}`) plus the new entries received above their seq. */
  setCounts(c) {
    if (!c || typeof c.unread !== 'number') return;
    this.base = c;
    const n = (this.fresh || []).filter((s) => s > c.seq).length;
    this._counts = { unread: c.unread + n, unseen: (c.unseen || 0) + n };
    this.renderCounts();
    if (this.getAttribute('tab-badge') !== 'off') tabBadge.set(this, this._counts.unread);
    this.emit('belfry:counts', this.counts);
  }

  async fetchCounts() {
    try {
      this.setCounts(await this.api('GET', '/v1/me/counts'));
    } catch {
      /* the stream's counts event follows */
    }
  }

  /** Sticky notifications neither read nor closed come back as toasts on every page load (among the 20 newest unread). */
  async reminders() {
    if (this.pageMode || this.getAttribute('toasts') === 'off') return;
    try {
      const page = await this.api('GET', '/v1/me/notifications?filter=unread&limit=20');
      for (const i of page.items.reverse()) if (i.sticky && !i.dismissed && !this.toastMap.has(i.id)) this.showToast(i);
    } catch {
      /* shown again on the next page */
    }
  }

  /** The user closed toasts: sticky ones are recorded as dismissed, on every device. */
  dismiss(ids) {
    for (const id of ids) {
      const e = this.toastMap.get(id);
      if (e && e.item.sticky) this.api('POST', `/v1/me/notifications/${encodeURIComponent(id)}/dismiss`).catch(() => {});
      this.closeToast(id);
    }
  }

  // ----- the list -----

  async load(reset) {
    if (this.loading && !reset) return;
    const generation = ++this.generation;
    const view = this.view;
    this.loading = true;
    this.failed = false;
    if (reset) {
      this.cursor = null;
      this.renderList();
    }
    try {
      const q = new URLSearchParams({ filter: view, limit: String(PAGE_SIZE) });
      if (!reset && this.cursor) q.set('cursor', this.cursor);
      const page = await this.api('GET', `/v1/me/notifications?${q}`);
      if (generation !== this.generation) return;
      if (reset) {
        // Live arrivals while the page was on its way are newer than its first item: keep them.
        const ids = new Set(page.items.map((i) => i.id));
        const top = page.items.length ? page.items[0].seq : -1;
        const newer = this.items.filter((i) => i.seq > top && !ids.has(i.id));
        this.items = newer.concat(page.items);
      } else {
        const known = new Set(this.items.map((i) => i.id));
        this.items = this.items.concat(page.items.filter((i) => !known.has(i.id)));
      }
      this.cursor = page.next_cursor;
      this.loaded = true;
    } catch {
      if (generation !== this.generation) return;
      this.failed = true;
    } finally {
      if (generation === this.generation) {
        this.loading = false;
        this.renderList();
        if (this.needResync && this.loaded) {
          this.needResync = false;
          this.resync();
        }
      }
    }
  }

  /** Brings counts and the loaded part of the list up to date (after a reconnect or a missed change). */
  async resync() {
    this.fetchCounts();
    if (this.loading) {
      this.needResync = true; // the page being loaded may predate the stream
      return;
    }
    if (!this.loaded) return;
    const generation = ++this.generation;
    const view = this.view;
    try {
      const page = await this.api('GET', `/v1/me/notifications?filter=${view}&limit=${PAGE_SIZE}`);
      if (generation !== this.generation || view !== this.view) return;
      const fresh = new Map(page.items.map((i) => [i.id, i]));
      const floor = page.next_cursor ? Math.min(...page.items.map((i) => i.seq)) : -Infinity;
      // The fresh page is the truth above its oldest item; older loaded items stay.
      const older = this.items.filter((i) => i.seq < floor && !fresh.has(i.id));
      this.items = [...page.items, ...older].sort((a, b) => b.seq - a.seq);
      if (!older.length) this.cursor = page.next_cursor;
      this.renderList();
    } catch {
      /* the next reconnect tries again */
    }
  }

  resyncSoon() {
    clearTimeout(this.resyncTimer);
    this.resyncTimer = setTimeout(() => this.resync(), 150);
  }

  markSeen() {
    this.api('POST', '/v1/me/notifications/seen-all').catch(() => {});
  }

  markSeenSoon() {
    clearTimeout(this.seenTimer);
    this.seenTimer = setTimeout(() => this.markSeen(), 800);
  }

  setView(view) {
    if (view === this.view) return;
    this.view = view;
    for (const tab of this.root.querySelectorAll('.tab')) {
      const on = tab.dataset.view === view;
      tab.setAttribute('aria-selected', String(on));
      tab.tabIndex = on ? 0 : -1;
    }
    this.items = [];
    this.load(true);
  }

  async itemOp(item, op) {
    const before = { read: item.read, seen: item.seen };
    if (op === 'read' || op === 'unread') {
      Object.assign(item, { read: op === 'read' });
      this.renderList();
    }
    const path = `/v1/me/notifications/${encodeURIComponent(item.id)}`;
    try {
      if (op === 'delete') await this.api('DELETE', path);
      else await this.api('POST', `${path}/${op}`);
      if (op === 'archive' || op === 'unarchive' || op === 'delete') this.applyState({ action: 'items', op, ids: [item.id] });
    } catch {
      Object.assign(item, before);
      this.renderList();
    }
  }

  /** Click on a notification: mark it read, let the host route, else go to its link. */
  openItem(item, ev) {
    if (!item.read) {
      item.read = true;
      this.renderList();
      // keepalive: the request survives the navigation that follows.
      this.api('POST', `/v1/me/notifications/${encodeURIComponent(item.id)}/read`, null, true).catch(() => {});
    }
    this.closeToast(item.id);
    const url = safeUrl(item.url);
    const go = this.emit('belfry:open', { notification: item, url }, true);
    if (!this.pageMode) this.close(false);
    if (go && url) {
      if (ev && (ev.ctrlKey || ev.metaKey)) window.open(url, '_blank', 'noopener');
      else window.location.assign(url);
    }
  }

  runAction(item, action) {
    const url = safeUrl(action.url);
    const go = this.emit('belfry:action', { notification: item, action: { ...action, url } }, true);
    if (!item.read) {
      item.read = true;
      this.renderList();
      this.api('POST', `/v1/me/notifications/${encodeURIComponent(item.id)}/read`, null, true).catch(() => {});
    }
    this.closeToast(item.id);
    if (!this.pageMode) this.close(false);
    if (go && url) window.location.assign(url);
  }

  emit(type, detail, cancelable = false) {
    return this.dispatchEvent(new CustomEvent(type, { detail, cancelable, bubbles: true, composed: true }));
  }

  // ----- rendering -----

  build() {
    if (this.built) {
      this.closeAllToasts();
      this.isOpen = false;
    }
    this.built = true;
    this.panel = null;
    this.root.replaceChildren();
    try {
      const sheet = (BelfryInbox.sheet ||= new CSSStyleSheet());
      if (!sheet.cssRules.length) sheet.replaceSync(CSS);
      this.root.adoptedStyleSheets = [sheet];
    } catch {
      this.root.append(h('style', { text: CSS }));
    }
    const t = this.t;
    this.nodes = new Map();
    this.live = h('div', { class: 'sr', 'aria-live': 'polite', 'aria-atomic': 'true' });
    this.notice = h('div', { class: 'notice', role: 'status', hidden: true });
    const tabs = h(
      'div',
      { class: 'tabs', role: 'tablist', 'aria-label': t.notifications, onkeydown: (e) => this.tabKeys(e) },
      ['unread', 'all', 'archived'].map((v) =>
        h('button', {
          type: 'button',
          class: 'tab',
          role: 'tab',
          'data-view': v,
          'aria-selected': String(v === this.view),
          tabindex: v === this.view ? '0' : '-1',
          text: t[v],
          onclick: () => this.setView(v),
        }),
      ),
    );
    this.readAllBtn = h('button', { type: 'button', class: 'link', text: t.markAllRead, onclick: () => this.markAllRead().catch(() => {}) });
    this.list = h('ul', { role: 'list', 'aria-label': t.notifications });
    this.status = h('div', { class: 'state', role: 'status' });
    this.sentinel = h('div', { class: 'sentinel', 'aria-hidden': 'true' });
    this.scroller = h('div', { class: 'scroll' }, this.list, this.status, this.sentinel);
    const headingId = 'belfry-h';
    this.gearBtn = h('button', { type: 'button', class: 'tool gear', part: 'gear', 'aria-label': t.settings, title: t.settings, 'aria-haspopup': 'true', onclick: () => (this.panel ? this.panel.close() : this.openSettings()) }, icon('gear'));
    const head = h('div', { class: 'head' }, h('h2', { id: headingId, text: t.notifications }), this.readAllBtn, this.gearBtn);
    if (this.pageMode) {
      this.countText = h('span', { class: 'count' });
      head.insertBefore(this.countText, this.readAllBtn);
      this.root.append(
        h('section', { class: 'page', part: 'page', 'aria-labelledby': headingId }, head, h('p', { class: 'hint', text: t.swipe }), tabs, this.notice, this.scroller),
        this.live,
      );
      this.bellBtn = null;
      this.drawer = null;
    } else {
      this.badge = h('span', { class: 'badge', part: 'badge', 'aria-hidden': 'true', hidden: true });
      this.dot = h('span', { class: 'dot', part: 'dot', 'aria-hidden': 'true', hidden: true });
      this.conn = h('span', { class: 'conn', 'aria-hidden': 'true', hidden: true });
      this.bellBtn = h(
        'button',
        { type: 'button', class: 'bell', part: 'bell', 'aria-haspopup': 'dialog', 'aria-expanded': 'false', 'aria-controls': 'belfry-drawer', onclick: () => this.toggle() },
        icon('bell'), this.badge, this.dot, this.conn,
      );
      const page = this.getAttribute('page-url');
      const pageUrl = page && safeUrl(page);
      this.drawer = h(
        'div',
        { id: 'belfry-drawer', class: 'drawer', part: 'drawer', role: 'dialog', 'aria-labelledby': headingId, hidden: true, onkeydown: (e) => this.drawerKeys(e) },
        head, tabs, this.notice, this.scroller,
        pageUrl && h('div', { class: 'foot' }, h('a', { href: pageUrl, text: t.seeAll })),
      );
      this.toastBox = h('div', { class: 'toasts', part: 'toasts', role: 'region', 'aria-label': t.toasts });
      this.root.append(this.bellBtn, this.drawer, this.toastBox, this.live);
    }
    if (this.observer) this.observer.disconnect();
    this.observer = null;
  }

  observeMore() {
    if (this.observer) return;
    this.observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting) && this.cursor && !this.loading && !this.failed) this.load(false);
      },
      { root: this.pageMode ? null : this.scroller, rootMargin: '200px' },
    );
    this.observer.observe(this.sentinel);
  }

  tabKeys(e) {
    if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
    const tabs = [...this.root.querySelectorAll('.tab')];
    const i = tabs.indexOf(this.root.activeElement);
    if (i < 0) return;
    const next = tabs[(i + (e.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length];
    next.focus();
    this.setView(next.dataset.view);
    e.preventDefault();
  }

  drawerKeys(e) {
    if (e.key === 'Escape') {
      e.stopPropagation();
      this.close();
    }
  }

  renderCounts() {
    const { unread, unseen } = this._counts;
    const t = this.t;
    const offline = this.connection === 'offline';
    if (this.bellBtn) {
      this.badge.textContent = count99(unread);
      this.badge.hidden = unread === 0;
      this.dot.hidden = unseen === 0;
      this.conn.hidden = !offline;
      this.bellBtn.title = offline ? t.offline : t.notifications;
      this.bellBtn.setAttribute('aria-label', t.bell(unread) + (offline ? `, ${t.offlineSuffix}` : ''));
    }
    if (this.countText) this.countText.textContent = unread ? t.unreadCount(unread) : '';
    if (this.readAllBtn) this.readAllBtn.disabled = unread === 0;
    this.setAttribute('data-unread', String(unread));
    this.setAttribute('data-unseen', String(unseen));
  }

  renderList() {
    if (!this.list) return;
    const t = this.t;
    const keep = new Map();
    const active = this.root.activeElement;
    const focusedId = active && active.closest && active.closest('.item') && active.closest('.item').dataset.id;
    const focusedClass = active && active.className;
    const children = this.items.map((item) => {
      const sig = JSON.stringify([item.read, item.seen, item.stack_count, item.title, item.body, item.seq, this.lang, this.view, item.answered]);
      const old = this.nodes.get(item.id);
      const node = old && old.sig === sig ? old.node : this.renderItem(item);
      // A form being filled in survives a redraw of its item.
      const form = old && node !== old.node && !item.answered && old.node.querySelector('.aform');
      if (form) node.querySelector('.actions')?.after(form);
      keep.set(item.id, { node, sig });
      return node;
    });
    this.nodes = keep;
    const same = children.length === this.list.children.length && children.every((c, i) => this.list.children[i] === c);
    if (!same) this.list.replaceChildren(...children);
    if (focusedId && this.nodes.has(focusedId) && !this.root.activeElement) {
      const again = this.nodes.get(focusedId).node.querySelector(`.${String(focusedClass).split(' ')[0]}`);
      if (again) again.focus();
    }
    let status = '';
    if (this.failed) status = t.failed;
    else if (this.loading && !this.items.length) status = t.loading;
    else if (this.loaded && !this.items.length) status = t.empty[this.view];
    this.status.replaceChildren(status);
    if (this.failed) {
      this.status.append(' ', h('button', { type: 'button', class: 'link', text: t.retry, onclick: () => this.load(!this.items.length) }));
    }
    this.status.hidden = !status;
    this.updateTimes();
    if (this.pageMode || this.isOpen) this.observeMore();
  }

  renderPic(item) {
    const actor = item.actor || null;
    const cat = CATEGORY_ICONS[item.category] || null;
    let avatar;
    if (actor && (actor.name || actor.avatar_url)) {
      avatar = h('span', { class: 'avatar', 'aria-hidden': 'true', text: initials(actor.name) });
      avatar.style.background = `hsl(${hue(actor.name || actor.id || '')} 45% 45%)`;
      const src = safeUrl(actor.avatar_url);
      if (src) {
        const img = h('img', { alt: '', src, loading: 'lazy', referrerpolicy: 'no-referrer', decoding: 'async' });
        img.addEventListener('error', () => img.remove());
        avatar.append(img);
      }
    } else {
      avatar = h('span', { class: 'avatar icon', 'aria-hidden': 'true' }, icon(cat || 'bell'));
    }
    return h('span', { class: 'pic' }, avatar, actor && cat && h('span', { class: 'cat', 'aria-hidden': 'true' }, icon(cat)));
  }

  renderContent(item) {
    const t = this.t;
    const n = item.stack_count || 1;
    const time = h('time', { datetime: item.created_at, 'data-ts': item.created_at });
    try {
      time.title = new Date(item.created_at).toLocaleString(this.lang);
    } catch {
      /* invalid date */
    }
    const entity = item.entity && item.entity.id != null ? `#${item.entity.id}` : null;
    return h(
      'span',
      { class: 'text' },
      h('span', { class: 'title', text: item.title || '' }),
      item.body && h('span', { class: 'body', text: item.body }),
      h(
        'span',
        { class: 'meta' },
        !item.read && h('span', { class: 'sr', text: `${t.unreadMarker}.` }),
        entity && h('span', { class: 'entity', title: `${item.entity.type} ${entity}`, text: entity }),
        time,
        n > 1 && h('span', { class: 'stack', title: t.stacked(n), 'aria-label': t.stacked(n), text: `×${n}` }),
      ),
    );
  }

  renderActions(item) {
    const ans = item.answered;
    // A once action answered by anyone is gone from every item; the answer shows instead.
    const actions = (Array.isArray(item.actions) ? item.actions : []).filter((a) => !(ans && a.once));
    if (!actions.length && !ans) return null;
    const box = h(
      'div',
      { class: 'actions' },
      ans && h('span', { class: 'answered', role: 'status', text: `✓ ${ans.label || ans.action} · ${(ans.by && (ans.by.name || ans.by.id)) || ''}` }),
      !ans && item.sent && h('span', { class: 'sent', role: 'status', text: item.sent }),
      actions.map((a) => {
        const style = ['primary', 'secondary', 'danger'].includes(a.style) ? a.style : 'secondary';
        const call = a.kind === 'callback';
        const usable = call || safeUrl(a.url);
        return h('button', {
          type: 'button',
          class: `btn ${style}`,
          text: a.label || a.id || '',
          disabled: !usable,
          'aria-expanded': call && a.form ? 'false' : null,
          'data-action': a.id,
          onclick: usable ? () => (call ? this.answer(item, a, box) : this.runAction(item, a)) : null,
        });
      }),
    );
    return box;
  }

  /** A callback action: its form (or the answer at once) comes from a module loaded on first use. */
  async answer(item, action, box) {
    const toast = this.toastMap.get(item.id);
    if (toast) clearTimeout(toast.timer), (toast.hold = true);
    (await import(new URL('actions.js', import.meta.url).href)).answer(this, item, action, box);
  }

  renderItem(item) {
    const t = this.t;
    const main = h('button', { type: 'button', class: 'main', part: 'item-main' }, this.renderPic(item), this.renderContent(item), h('span', { class: 'mark', 'aria-hidden': 'true' }));
    main.addEventListener('click', (e) => {
      if (li.swiped) {
        li.swiped = false;
        return;
      }
      this.openItem(item, e);
    });
    const tool = (name, label, iconName, onclick) =>
      h('button', { type: 'button', class: `tool ${name}`, 'aria-label': label, title: label, onclick }, icon(iconName));
    const archived = this.view === 'archived' || item.archived;
    // Archived items can go back to the inbox or be deleted for good;
    // the others toggle read and go to the archive.
    const tools = archived
      ? h(
          'span',
          { class: 'tools' },
          tool('unarchive-btn', t.unarchive, 'unarchive', () => this.itemOp(item, 'unarchive')),
          tool('delete-btn', t.remove, 'remove', () => this.itemOp(item, 'delete')),
        )
      : h(
          'span',
          { class: 'tools' },
          item.read
            ? tool('unread-btn', t.markUnread, 'unread', () => this.itemOp(item, 'unread'))
            : tool('read-btn', t.markRead, 'read', () => this.itemOp(item, 'read')),
          tool('archive-btn', t.archive, 'archive', () => this.itemOp(item, 'archive')),
        );
    const row = h('div', { class: 'row' }, main, tools);
    const li = h('li', { class: `item ${item.read ? 'read' : 'unread'}`, part: 'item', 'data-id': item.id });
    if (this.pageMode) {
      li.append(
        h('div', { class: 'swipe', 'aria-hidden': 'true' },
          h('span', { class: 'r' }, icon('read'), item.read ? t.markUnread : t.markRead),
          h('span', { class: 'l' }, t.archive, icon('archive'))),
      );
      this.swipeable(li, row, item);
    }
    li.append(row);
    const actions = this.renderActions(item);
    if (actions) row.after(actions);
    return li;
  }

  /** Page mode: swipe left archives, swipe right marks read (or unread). */
  swipeable(li, row, item) {
    let start = null;
    let dx = 0;
    let dragging = false;
    const reset = () => {
      start = null;
      dragging = false;
      li.classList.remove('dragging', 'swipe-l', 'swipe-r');
      row.style.transform = '';
    };
    li.addEventListener('pointerdown', (e) => {
      if (e.button !== 0 || e.target.closest('.tool, .btn')) return;
      start = { x: e.clientX, y: e.clientY, id: e.pointerId };
      dx = 0;
    });
    li.addEventListener('pointermove', (e) => {
      if (!start || e.pointerId !== start.id) return;
      dx = e.clientX - start.x;
      const dy = e.clientY - start.y;
      if (!dragging) {
        if (Math.abs(dy) > 12 && Math.abs(dy) > Math.abs(dx)) return reset();
        if (Math.abs(dx) < 12) return;
        dragging = true;
        li.classList.add('dragging');
        try {
          li.setPointerCapture(e.pointerId);
        } catch {
          /* pointer already gone */
        }
      }
      row.style.transform = `translateX(${dx}px)`;
      li.classList.toggle('swipe-l', dx < 0);
      li.classList.toggle('swipe-r', dx > 0);
    });
    const end = (e) => {
      if (!start || e.pointerId !== start.id) return;
      const wasDragging = dragging;
      const far = Math.abs(dx) > Math.min(120, li.offsetWidth * 0.3);
      const dir = dx;
      reset();
      if (!wasDragging) return;
      li.swiped = true; // the click that follows the drag is not an open
      setTimeout(() => (li.swiped = false), 400);
      if (e.type === 'pointercancel' || !far) return;
      if (dir < 0) this.itemOp(item, this.view === 'archived' ? 'unarchive' : 'archive');
      else this.itemOp(item, item.read ? 'unread' : 'read');
    };
    li.addEventListener('pointerup', end);
    li.addEventListener('pointercancel', end);
  }

  updateTimes() {
    for (const el of this.root.querySelectorAll('time[data-ts]')) el.textContent = relTime(el.dataset.ts, this.lang);
  }

  // ----- toasts -----

  showToast(item) {
    const t = this.t;
    const key = (item.stack_key && [...this.toastMap.keys()].find((id) => this.toastMap.get(id).item.stack_key === item.stack_key)) || null;
    if (key) this.closeToast(key, true);
    while (this.toastMap.size >= MAX_TOASTS) {
      const oldest = [...this.toastMap.entries()].find(([, v]) => !v.item.sticky) || [...this.toastMap.entries()][0];
      this.closeToast(oldest[0], true);
    }
    const close = h(
      'button',
      { type: 'button', class: 'tool x', 'aria-label': t.closeHint, title: t.closeHint },
      icon('close'),
    );
    const main = h('button', { type: 'button', class: 'main' }, this.renderPic(item), this.renderContent(item));
    const el = h('div', { class: `toast${item.sticky ? ' sticky' : ''}`, part: 'toast', 'data-id': item.id }, main, close);
    const actions = this.renderActions(item);
    if (actions) el.append(actions);
    main.addEventListener('click', (e) => this.openItem(item, e));
    close.addEventListener('click', (e) => this.dismiss(e.shiftKey ? [...this.toastMap.keys()] : [item.id]));
    el.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') this.dismiss([item.id]);
    });
    const entry = { item, el, timer: null, arm: () => arm() };
    const arm = () => {
      clearTimeout(entry.timer);
      if (!item.sticky && !entry.hold && !this.isOpen) entry.timer = setTimeout(() => this.closeToast(item.id), this.toastDuration());
    };
    el.addEventListener('pointerenter', () => clearTimeout(entry.timer));
    el.addEventListener('pointerleave', arm);
    el.addEventListener('focusin', () => clearTimeout(entry.timer));
    el.addEventListener('focusout', (e) => {
      if (!el.contains(e.relatedTarget)) arm();
    });
    this.toastMap.set(item.id, entry);
    this.toastBox.append(el);
    this.updateTimes();
    arm();
    this.live.textContent = '';
    setTimeout(() => (this.live.textContent = `${t.announce}: ${item.title}${item.body ? `. ${item.body}` : ''}`), 50);
  }

  toastDuration() {
    const ms = Number(this.getAttribute('toast-duration'));
    return Number.isFinite(ms) && ms > 0 ? ms : 6000;
  }

  closeToast(id, quiet) {
    const entry = this.toastMap.get(id);
    if (!entry) return;
    clearTimeout(entry.timer);
    const hadFocus = entry.el.contains(this.root.activeElement);
    entry.el.remove();
    this.toastMap.delete(id);
    if (hadFocus && !quiet && this.bellBtn) this.bellBtn.focus();
  }

  closeAllToasts() {
    for (const id of [...this.toastMap.keys()]) this.closeToast(id);
  }
}

// The further modules (preferences, actions) build their DOM with the same helper.
BelfryInbox.h = h;
if (!customElements.get('belfry-inbox')) customElements.define('belfry-inbox', BelfryInbox);
