// Belfry inbox widget: the preferences panel.
//
// A second module, imported by belfry.js (relative to its own URL) only when
// the gear is first used, so the first module stays small. It renders into
// the widget's shadow root, in place of the list (drawer or page), and talks
// to `GET`/`PUT /v1/me/preferences` through the widget's own client (tokens,
// refresh on 401). Every change is saved at once as a merge patch; what the
// server answers is what the panel shows, so a refused change (422, network)
// reverts its control and says why.

const STRINGS = {
  en: {
    title: 'Notification settings',
    back: 'Back to notifications',
    loading: 'Loading…',
    loadFailed: 'Could not load your settings.',
    retry: 'Try again',
    saved: 'Saved',
    notSaved: 'Not saved:',
    offline: 'Belfry could not be reached. Check your connection and try again.',
    general: 'General',
    enabled: 'Receive notifications',
    enabledHint: 'When off, nothing reaches you by email, push or chat. Notifications still appear here, in the app.',
    channels: 'Channels',
    channel: { in_app: 'In the app', email: 'Email', web_push: 'Browser push', mobile_push: 'Mobile push', chat: 'Chat' },
    alwaysOn: 'always on',
    categories: 'Categories',
    sources: 'Sources',
    category: 'Category',
    source: 'Source',
    mode: { instant: 'Instant', digest: 'Daily digest', off: 'Off', '': 'As its category' },
    critical: 'Required: cannot be switched off',
    reset: 'Reset',
    resetOf: (name) => `Reset ${name} to the defaults`,
    digest: 'Daily digest',
    digestTime: 'Send the digest at',
    digestHint: 'Categories set to “Daily digest” arrive in one email a day at this time.',
    quiet: 'Quiet hours',
    quietOn: 'Hold email and push during quiet hours',
    quietHint: 'Held messages are sent when quiet hours end; some urgent categories go out at once.',
    from: 'From',
    until: 'Until',
    days: 'Days',
    timezone: 'Time zone',
    noZone: 'UTC (none set)',
    device: 'Desktop notifications on this device',
    deviceOn: 'Turn on',
    deviceOff: 'Turn off',
    deviceIsOn: 'On',
    deviceIsOff: 'Off',
    deviceDenied: 'Blocked in this browser’s site settings for this page.',
    deviceUnavailable: 'Not set up on this Belfry server.',
    deviceFailed: 'Could not change desktop notifications:',
    chat: 'Chat',
    chatHint: 'Get your notifications in your own Slack or Teams channel, or at a webhook of yours, when chat is on above.',
    chatKind: { slack: 'Slack', teams: 'Microsoft Teams', webhook: 'Webhook' },
    chatUrl: { slack: 'Slack incoming webhook URL', teams: 'Teams incoming webhook or workflow URL', webhook: 'Your endpoint (https)' },
    chatConnect: 'Connect',
    chatDisconnect: 'Disconnect',
    chatTo: (host) => `Connected (${host})`,
    chatNone: 'Not connected',
    chatSecret: 'Signing secret (shown only now; keep it to verify the signature):',
    chatFailed: 'Could not change the chat channel:',
  },
  de: {
    title: 'Benachrichtigungseinstellungen',
    back: 'Zurück zu den Benachrichtigungen',
    loading: 'Wird geladen…',
    loadFailed: 'Ihre Einstellungen konnten nicht geladen werden.',
    retry: 'Erneut versuchen',
    saved: 'Gespeichert',
    notSaved: 'Nicht gespeichert:',
    offline: 'Belfry ist nicht erreichbar. Prüfen Sie die Verbindung und versuchen Sie es erneut.',
    general: 'Allgemein',
    enabled: 'Benachrichtigungen erhalten',
    enabledHint: 'Ausgeschaltet erreicht Sie nichts per E-Mail, Push oder Chat. In der Anwendung erscheinen Benachrichtigungen weiterhin.',
    channels: 'Kanäle',
    channel: { in_app: 'In der Anwendung', email: 'E-Mail', web_push: 'Browser-Push', mobile_push: 'Mobil-Push', chat: 'Chat' },
    alwaysOn: 'immer an',
    categories: 'Kategorien',
    sources: 'Quellen',
    category: 'Kategorie',
    source: 'Quelle',
    mode: { instant: 'Sofort', digest: 'Tägliche Zusammenfassung', off: 'Aus', '': 'Wie die Kategorie' },
    critical: 'Erforderlich: kann nicht ausgeschaltet werden',
    reset: 'Zurücksetzen',
    resetOf: (name) => `${name} auf die Voreinstellungen zurücksetzen`,
    digest: 'Tägliche Zusammenfassung',
    digestTime: 'Zusammenfassung senden um',
    digestHint: 'Kategorien mit „Tägliche Zusammenfassung“ kommen einmal am Tag zu dieser Uhrzeit in einer E-Mail.',
    quiet: 'Ruhezeiten',
    quietOn: 'E-Mail und Push während der Ruhezeiten zurückhalten',
    quietHint: 'Zurückgehaltenes wird gesendet, wenn die Ruhezeit endet; manche dringenden Kategorien gehen sofort hinaus.',
    from: 'Von',
    until: 'Bis',
    days: 'Tage',
    timezone: 'Zeitzone',
    noZone: 'UTC (keine festgelegt)',
    device: 'Desktop-Benachrichtigungen auf diesem Gerät',
    deviceOn: 'Einschalten',
    deviceOff: 'Ausschalten',
    deviceIsOn: 'An',
    deviceIsOff: 'Aus',
    deviceDenied: 'In den Website-Einstellungen dieses Browsers blockiert.',
    deviceUnavailable: 'Auf diesem Belfry-Server nicht eingerichtet.',
    deviceFailed: 'Desktop-Benachrichtigungen konnten nicht geändert werden:',
    chat: 'Chat',
    chatHint: 'Erhalten Sie Ihre Benachrichtigungen in Ihrem eigenen Slack- oder Teams-Kanal oder an einem eigenen Webhook, wenn Chat oben eingeschaltet ist.',
    chatKind: { slack: 'Slack', teams: 'Microsoft Teams', webhook: 'Webhook' },
    chatUrl: { slack: 'URL des eingehenden Slack-Webhooks', teams: 'URL des eingehenden Teams-Webhooks oder Workflows', webhook: 'Ihr Endpunkt (https)' },
    chatConnect: 'Verbinden',
    chatDisconnect: 'Trennen',
    chatTo: (host) => `Verbunden (${host})`,
    chatNone: 'Nicht verbunden',
    chatSecret: 'Signaturschlüssel (nur jetzt sichtbar; bewahren Sie ihn zum Prüfen der Signatur auf):',
    chatFailed: 'Der Chat-Kanal konnte nicht geändert werden:',
  },
};

const CHANNELS = ['email', 'web_push', 'mobile_push', 'chat'];
const CHAT_KINDS = ['slack', 'teams', 'webhook'];
const SWITCHES = ['web_push', 'mobile_push', 'chat'];
const MODES = ['instant', 'digest', 'off'];
const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const QUIET_DEFAULT = { start: '22:00', end: '07:00' };

const STYLE = `
.prefs{display:flex;flex-direction:column;min-height:0;flex:1;background:var(--_bg);color:var(--_fg)}
.prefs .phead{display:flex;align-items:center;gap:6px;padding:10px 12px 8px;border-bottom:1px solid var(--_border)}
.prefs h2{margin:0;font-size:1.05em;font-weight:650;flex:1}
.prefs .pbody{overflow-y:auto;overscroll-behavior:contain;flex:1;padding:4px 14px 14px}
.prefs h3{margin:14px 0 6px;font-size:.8em;font-weight:650;text-transform:uppercase;letter-spacing:.04em;color:var(--_muted)}
.prefs fieldset{border:0;margin:0;padding:0;min-width:0}
.prefs legend{padding:0;margin:10px 0 4px;font-size:.85em;font-weight:600}
.prefs .opt{display:flex;align-items:center;gap:8px;padding:5px 0;font-size:.9em}
.prefs .opt.off{color:var(--_muted)}
.prefs .tag{font-size:.8em;color:var(--_muted)}
.prefs .note{margin:2px 0 6px;font-size:.8em;color:var(--_muted);line-height:1.35}
.prefs input[type=checkbox]{width:16px;height:16px;margin:0;accent-color:var(--_accent)}
.prefs input,.prefs select{font:inherit;font-size:.88em;color:inherit}
.prefs select,.prefs input[type=time]{padding:3px 4px;border:1px solid var(--_border);border-radius:6px;background:var(--_bg);max-width:100%}
.prefs input:focus-visible,.prefs select:focus-visible{outline:2px solid var(--_accent);outline-offset:2px}
.prefs :disabled{cursor:not-allowed}
.prefs table{width:100%;border-collapse:collapse;font-size:.86em}
.prefs th,.prefs td{padding:6px 4px;text-align:center;border-bottom:1px solid var(--_border);vertical-align:middle}
.prefs thead th{font-size:.85em;font-weight:600;color:var(--_muted)}
.prefs th[scope=row],.prefs thead th:first-child{text-align:left;font-weight:550}
.prefs td select{width:100%;min-width:6.5em}
.prefs .lock{display:inline-flex;align-items:center;gap:3px;margin-left:4px;color:var(--_muted);vertical-align:middle}
.prefs .lock svg{width:14px;height:14px}
.prefs .row2{display:flex;flex-wrap:wrap;gap:12px;align-items:center}
.prefs .row2 label{display:flex;gap:6px;align-items:center;font-size:.9em}
.prefs .days{display:flex;flex-wrap:wrap;gap:4px 10px}
.prefs .days label{display:flex;gap:4px;align-items:center;font-size:.85em}
.prefs .msg{margin:8px 14px 0;padding:8px 10px;border-radius:8px;font-size:.85em;background:var(--belfry-error-bg,#fef2f2);color:var(--belfry-error-fg,#991b1b)}
.prefs .ok{font-size:.8em;color:var(--_muted)}
.prefs .crow{padding:2px 0 6px;border-bottom:1px solid var(--_border)}
.prefs .crow .cname{min-width:8em;font-weight:550}
.prefs .crow input[type=url]{flex:1;min-width:10em;padding:3px 6px;border:1px solid var(--_border);border-radius:6px;background:var(--_bg)}
.prefs .secret{display:block;padding:4px 6px;border-radius:6px;background:var(--_hover,#f3f4f6);font-size:.8em;word-break:break-all;user-select:all}
.page .prefs .phead{padding:14px 16px 10px}
.page .prefs .pbody{padding:4px 16px 16px}
.page .prefs input[type=checkbox]{width:20px;height:20px}
`;

const LOCK = 'M7 11V8a5 5 0 0 1 10 0v3M5.5 11h13v9.5h-13z';
const BACK = 'M15 5.5L8.5 12l6.5 6.5';

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

function svg(d) {
  const NS = 'http://www.w3.org/2000/svg';
  const el = document.createElementNS(NS, 'svg');
  el.setAttribute('viewBox', '0 0 24 24');
  el.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(NS, 'path');
  path.setAttribute('d', d);
  el.append(path);
  return el;
}

let sheet;
function adopt(root) {
  try {
    if (!sheet) {
      sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLE);
    }
    if (!root.adoptedStyleSheets.includes(sheet)) root.adoptedStyleSheets = [...root.adoptedStyleSheets, sheet];
    return null;
  } catch {
    return h('style', { text: STYLE });
  }
}

/** Why a save was refused, in words: the server's field messages, else its detail. */
export function reason(error, t) {
  const p = error && error.problem;
  if (p && Array.isArray(p.errors) && p.errors.length) return p.errors.map((e) => e.message).join(' ');
  if (p && p.detail) return p.detail;
  if (error && error.status) return `HTTP ${error.status}`;
  return t.offline;
}

/**
 * Opens the panel in `widget` (a <belfry-inbox>); `gear` gets the focus
 * back when it closes. Does nothing when it is already open.
 */
export async function openPreferences(widget, gear) {
  if (widget.panel) {
    widget.panel.focus();
    return widget.panel;
  }
  const panel = new Panel(widget, gear);
  widget.panel = panel;
  panel.open();
  return panel;
}

class Panel {
  constructor(w, gear) {
    this.w = w;
    this.gear = gear;
    this.t = STRINGS[w.lang] || STRINGS.en;
    this.state = null;
    this.syncs = [];
    this.queue = Promise.resolve();
    this.shape = '';
  }

  open() {
    const t = this.t;
    const w = this.w;
    this.host = w.drawer || w.root.querySelector('.page');
    // The list makes room; the connection notice stays visible above the panel.
    this.covered = [...this.host.children].filter((c) => !c.hidden && !c.classList.contains('notice'));
    this.covered.forEach((c) => (c.hidden = true));
    this.backBtn = h('button', { type: 'button', class: 'tool back', 'aria-label': t.back, title: t.back, onclick: () => this.close() }, svg(BACK));
    this.msg = h('div', { class: 'msg', role: 'alert', hidden: true });
    this.status = h('span', { class: 'ok', role: 'status', 'aria-live': 'polite' });
    this.body = h('div', { class: 'pbody' });
    this.el = h(
      'section',
      { class: 'prefs', part: 'preferences', role: 'region', 'aria-labelledby': 'belfry-ph', 'data-lang': w.lang, onkeydown: (e) => this.keys(e) },
      adopt(w.root),
      h('div', { class: 'phead' }, this.backBtn, h('h2', { id: 'belfry-ph', text: t.title }), this.status),
      this.msg,
      this.body,
    );
    this.host.append(this.el);
    this.backBtn.focus();
    this.load();
  }

  focus() {
    if (this.el && !this.el.contains(this.w.root.activeElement)) this.backBtn.focus();
  }

  /** Closes the panel, shows the list again and (unless told not to) focuses the gear. */
  close(restoreFocus = true) {
    if (this.w.panel !== this) return;
    this.w.panel = null;
    this.el.remove();
    this.covered.forEach((c) => (c.hidden = false));
    if (restoreFocus && this.gear && this.gear.isConnected) this.gear.focus();
  }

  keys(e) {
    if (e.key !== 'Escape') return;
    // Escape closes the panel only, not the drawer around it.
    e.stopPropagation();
    e.preventDefault();
    this.close();
  }

  async load() {
    const t = this.t;
    this.body.replaceChildren(h('p', { class: 'note', role: 'status', text: t.loading }));
    try {
      const state = await this.w.api('GET', '/v1/me/preferences');
      if (this.w.panel !== this) return;
      this.apply(state);
    } catch (e) {
      if (this.w.panel !== this) return;
      this.body.replaceChildren(
        h('p', { class: 'note', role: 'alert', text: `${t.loadFailed} ${reason(e, t)}` }),
        h('button', { type: 'button', class: 'link', text: t.retry, onclick: () => this.load() }),
      );
    }
  }

  /** Shows what the server answered: the controls follow it (rebuilt when rows came or went). */
  apply(state) {
    this.state = state;
    const shape = JSON.stringify([
      (state.available.categories || []).map((c) => [c.id, c.name, c.critical]),
      (state.available.sources || []).map((s) => [s.id, s.name]),
    ]);
    if (shape !== this.shape) {
      const active = this.w.root.activeElement;
      const key = active && this.body.contains(active) ? active.dataset.k : null;
      this.shape = shape;
      this.render();
      const again = key && this.body.querySelector(`[data-k="${CSS_ESCAPE(key)}"]`);
      if (again) again.focus();
    }
    for (const sync of this.syncs) sync(state);
  }

  /** Saves a merge patch; on failure the controls go back to the last saved state and the message says why. */
  save(patch) {
    const t = this.t;
    this.msg.hidden = true;
    this.status.textContent = '';
    this.queue = this.queue.then(async () => {
      try {
        const state = await this.w.api('PUT', '/v1/me/preferences', patch);
        if (this.w.panel !== this) return;
        this.apply(state);
        this.status.textContent = t.saved;
        this.el.setAttribute('data-saved', String(Number(this.el.getAttribute('data-saved') || 0) + 1));
      } catch (e) {
        if (this.w.panel !== this) return;
        this.apply(this.state);
        this.msg.textContent = `${t.notSaved} ${reason(e, t)}`;
        this.msg.hidden = false;
      }
    });
    return this.queue;
  }

  // ----- rendering -----

  render() {
    const t = this.t;
    this.syncs = [];
    const sync = (fn) => this.syncs.push(fn);

    // General: the master switch and the channel switches.
    const master = this.checkbox('enabled', (on) => ({ enabled: on }));
    sync((s) => (master.checked = !!s.enabled));
    const general = h(
      'div',
      { class: 'sect' },
      h('h3', { id: 'belfry-pg', text: t.general }),
      h('label', { class: 'opt' }, master, t.enabled),
      h('p', { class: 'note', id: 'belfry-pen', text: t.enabledHint }),
    );
    master.setAttribute('aria-describedby', 'belfry-pen');
    const inApp = h('input', { type: 'checkbox', checked: true, disabled: true, 'data-k': 'channels.in_app' });
    const channelOpts = [h('label', { class: 'opt' }, inApp, t.channel.in_app, h('span', { class: 'tag', text: `(${t.alwaysOn})` }))];
    for (const c of CHANNELS) {
      const box = this.checkbox(`channels.${c}`, (on) => ({ channels: { [c]: on } }));
      sync((s) => (box.checked = !!s.channels[c]));
      channelOpts.push(h('label', { class: 'opt' }, box, t.channel[c]));
    }
    general.append(h('fieldset', {}, h('legend', { text: t.channels }), channelOpts));
    const device = h('div', { class: 'device', hidden: true });
    general.append(device);
    this.device(device);

    const parts = [general];
    const categories = this.state.available.categories || [];
    if (categories.length) parts.push(this.table('categories', categories, true));
    const sources = this.state.available.sources || [];
    if (sources.length) parts.push(this.table('sources', sources, false));
    parts.push(this.chatSection(), this.digestSection(), this.quietSection());
    this.body.replaceChildren(...parts);
  }

  /** This browser's desktop notifications (web push): shown where the browser and page can have them. */
  async device(box) {
    const t = this.t;
    let push;
    try {
      push = await import(new URL('push.js', import.meta.url).href);
    } catch {
      return;
    }
    const state = h('span', { class: 'tag' });
    const note = h('p', { class: 'note', hidden: true });
    const button = h('button', { type: 'button', class: 'link', 'data-k': 'device' });
    const show = (s) => {
      box.hidden = s === 'unsupported';
      box.dataset.state = s;
      state.textContent = `(${s === 'on' ? t.deviceIsOn : t.deviceIsOff})`;
      button.textContent = s === 'on' ? t.deviceOff : t.deviceOn;
      button.setAttribute('aria-label', `${t.device}: ${button.textContent}`);
      button.hidden = s === 'denied' || s === 'unavailable';
      note.textContent = s === 'denied' ? t.deviceDenied : s === 'unavailable' ? t.deviceUnavailable : '';
      note.hidden = !note.textContent;
    };
    button.addEventListener('click', async () => {
      button.disabled = true;
      this.msg.hidden = true;
      try {
        show(await (box.dataset.state === 'on' ? push.disable(this.w) : push.enable(this.w)));
      } catch (e) {
        this.msg.textContent = `${t.deviceFailed} ${reason(e, t)}`;
        this.msg.hidden = false;
      } finally {
        button.disabled = false;
      }
    });
    box.append(h('div', { class: 'opt' }, h('span', { text: t.device }), state, button), note);
    try {
      show(await push.status(this.w));
    } catch {
      show('unsupported');
    }
  }

  /**
   * The person's own chat targets (`/v1/me/channels`): one row per kind,
   * connected (with the URL's host and a way to disconnect) or a URL field
   * to connect. A webhook's signing secret is shown once, when it is made.
   */
  chatSection() {
    const t = this.t;
    const rows = h('div', { class: 'chat' });
    const sect = h(
      'div',
      { class: 'sect', 'data-sect': 'chat' },
      h('h3', { id: 'belfry-pc', text: t.chat }),
      h('p', { class: 'note', text: t.chatHint }),
      rows,
    );
    const fail = (e) => {
      this.msg.textContent = `${t.chatFailed} ${reason(e, t)}`;
      this.msg.hidden = false;
    };
    const show = (targets, secret) => {
      const by = Object.fromEntries(targets.map((x) => [x.kind, x]));
      rows.replaceChildren(
        ...CHAT_KINDS.map((kind) => {
          const target = by[kind];
          const row = h('div', { class: 'crow', 'data-chat': kind, 'data-state': target ? 'on' : 'off' });
          const act = async (method, body) => {
            this.msg.hidden = true;
            row.querySelectorAll('button,input').forEach((el) => (el.disabled = true));
            try {
              const made = await this.w.api(method, `/v1/me/channels/${kind}`, body);
              const now = await this.w.api('GET', '/v1/me/channels');
              if (this.w.panel === this) show(now.items, made && made.secret ? { kind, value: made.secret } : null);
            } catch (e) {
              if (this.w.panel !== this) return;
              row.querySelectorAll('button,input').forEach((el) => (el.disabled = false));
              fail(e);
            }
          };
          const name = h('span', { class: 'cname', text: t.chatKind[kind] });
          if (target) {
            let host = target.url;
            try {
              host = new URL(target.url).host;
            } catch {}
            row.append(
              h(
                'div',
                { class: 'opt' },
                name,
                h('span', { class: 'tag', text: t.chatTo(host) }),
                h('button', {
                  type: 'button',
                  class: 'link',
                  'data-k': `chat.${kind}.disconnect`,
                  'aria-label': `${t.chatKind[kind]}: ${t.chatDisconnect}`,
                  text: t.chatDisconnect,
                  onclick: () => act('DELETE'),
                }),
              ),
            );
            if (secret && secret.kind === kind) {
              row.append(h('p', { class: 'note', text: t.chatSecret }), h('code', { class: 'secret', 'data-k': `chat.${kind}.secret`, text: secret.value }));
            }
          } else {
            const input = h('input', { type: 'url', required: true, placeholder: 'https://…', 'aria-label': t.chatUrl[kind], 'data-k': `chat.${kind}.url` });
            const form = h(
              'form',
              { class: 'row2' },
              input,
              h('button', { type: 'submit', class: 'link', 'data-k': `chat.${kind}.connect`, 'aria-label': `${t.chatKind[kind]}: ${t.chatConnect}`, text: t.chatConnect }),
            );
            form.addEventListener('submit', (ev) => {
              ev.preventDefault();
              if (input.value.trim()) act('PUT', { url: input.value.trim() });
            });
            row.append(h('div', { class: 'opt' }, name, h('span', { class: 'tag', text: t.chatNone })), form);
          }
          return row;
        }),
      );
    };
    this.w
      .api('GET', '/v1/me/channels')
      .then((list) => this.w.panel === this && show(list.items, null))
      .catch((e) => this.w.panel === this && fail(e));
    return sect;
  }

  checkbox(key, patch) {
    const box = h('input', { type: 'checkbox', 'data-k': key });
    box.addEventListener('change', () => this.save(patch(box.checked)));
    return box;
  }

  /**
   * One row per category (or source): the email mode and the other
   * channels. Categories show what applies (their choice, else the
   * category's defaults); a source without a choice follows the category,
   * shown as an empty mode and mixed checkboxes. A row with a choice can be
   * reset to the defaults (also a critical one: that never switches it off).
   */
  table(kind, list, isCategory) {
    const t = this.t;
    const head = h(
      'tr',
      {},
      h('th', { scope: 'col', text: isCategory ? t.category : t.source }),
      CHANNELS.map((c) => h('th', { scope: 'col', text: t.channel[c] })),
    );
    const rows = list.map((item) => {
      const name = item.name || item.id;
      const critical = isCategory && !!item.critical;
      const base = `${kind}.${item.id}`;
      const choice = (s) => (s[kind] && s[kind][item.id]) || {};
      const defaults = item.defaults || {};
      const select = h(
        'select',
        { 'data-k': `${base}.email`, 'aria-label': `${name}: ${t.channel.email}` },
        (isCategory ? MODES : ['', ...MODES]).map((m) => h('option', { value: m, text: t.mode[m] })),
      );
      select.addEventListener('change', () => this.save({ [kind]: { [item.id]: { email: select.value || null } } }));
      this.syncs.push((s) => {
        const mode = choice(s).email || (isCategory ? defaults.email || 'off' : '');
        select.value = mode;
        // A critical category's email can move between instant and digest, never to off.
        if (critical) select.querySelector('option[value=off]').disabled = mode !== 'off';
      });
      const cells = [h('td', {}, select)];
      for (const c of SWITCHES) {
        const box = h('input', { type: 'checkbox', 'data-k': `${base}.${c}`, 'aria-label': `${name}: ${t.channel[c]}` });
        box.addEventListener('change', () => this.save({ [kind]: { [item.id]: { [c]: box.checked } } }));
        this.syncs.push((s) => {
          const own = choice(s)[c];
          const on = own != null ? own : isCategory ? !!defaults[c] : false;
          box.indeterminate = own == null && !isCategory;
          box.checked = on;
          // Critical: what is on stays on (switching on is allowed).
          box.disabled = critical && on;
        });
        cells.push(h('td', {}, box));
      }
      const label = h('th', { scope: 'row' }, name);
      if (critical) {
        label.append(h('span', { class: 'lock', title: t.critical }, svg(LOCK), h('span', { class: 'sr', text: t.critical })));
      }
      const reset = h('button', { type: 'button', class: 'link', 'data-k': `${base}.reset`, 'aria-label': t.resetOf(name), text: t.reset });
      reset.addEventListener('click', () => this.save({ [kind]: { [item.id]: null } }));
      this.syncs.push((s) => (reset.hidden = !Object.keys(choice(s)).length));
      label.append(' ', reset);
      return h('tr', { 'data-row': base, 'data-critical': critical ? 'true' : null }, label, cells);
    });
    const id = `belfry-p${kind}`;
    return h(
      'div',
      { class: 'sect' },
      h('h3', { id, text: isCategory ? t.categories : t.sources }),
      h('table', { 'aria-labelledby': id, 'data-table': kind }, h('thead', {}, head), h('tbody', {}, rows)),
    );
  }

  digestSection() {
    const t = this.t;
    const time = h('input', { type: 'time', required: true, 'data-k': 'digest.time', 'aria-describedby': 'belfry-pdh' });
    time.addEventListener('change', () => {
      if (time.value) this.save({ digest: { time: time.value } });
    });
    this.syncs.push((s) => (time.value = (s.digest && s.digest.time) || ''));
    return h(
      'div',
      { class: 'sect' },
      h('h3', { text: t.digest }),
      h('div', { class: 'row2' }, h('label', {}, t.digestTime, time)),
      h('p', { class: 'note', id: 'belfry-pdh', text: t.digestHint }),
    );
  }

  quietSection() {
    const t = this.t;
    const lang = this.w.lang;
    const current = () => this.state.quiet_hours;
    const on = this.checkbox('quiet_hours', (checked) => ({ quiet_hours: checked ? { ...QUIET_DEFAULT } : null }));
    on.setAttribute('aria-describedby', 'belfry-pqh');
    const start = h('input', { type: 'time', required: true, 'data-k': 'quiet_hours.start' });
    const end = h('input', { type: 'time', required: true, 'data-k': 'quiet_hours.end' });
    const dayBoxes = DAYS.map((d) => h('input', { type: 'checkbox', value: d, 'data-k': `quiet_hours.days.${d}` }));
    const change = () => {
      if (!current() || !start.value || !end.value) return;
      this.save({
        quiet_hours: {
          start: start.value,
          end: end.value,
          days: dayBoxes.filter((b) => b.checked).map((b) => b.value),
        },
      });
    };
    start.addEventListener('change', change);
    end.addEventListener('change', change);
    dayBoxes.forEach((b) => b.addEventListener('change', change));
    this.syncs.push((s) => {
      const q = s.quiet_hours;
      on.checked = !!q;
      start.value = q ? q.start : QUIET_DEFAULT.start;
      end.value = q ? q.end : QUIET_DEFAULT.end;
      start.disabled = end.disabled = !q;
      dayBoxes.forEach((b) => {
        b.checked = q ? (q.days || DAYS).includes(b.value) : true;
        b.disabled = !q;
      });
    });
    const dayName = (i) => {
      try {
        return new Intl.DateTimeFormat(lang, { weekday: 'short', timeZone: 'UTC' }).format(new Date(Date.UTC(2024, 0, 1 + i)));
      } catch {
        return DAYS[i];
      }
    };
    const zone = h('span', { 'data-k': 'timezone' });
    this.syncs.push((s) => (zone.textContent = s.timezone || t.noZone));
    return h(
      'div',
      { class: 'sect' },
      h('h3', { text: t.quiet }),
      h('label', { class: 'opt' }, on, t.quietOn),
      h('p', { class: 'note', id: 'belfry-pqh', text: t.quietHint }),
      h('div', { class: 'row2' }, h('label', {}, t.from, start), h('label', {}, t.until, end)),
      h(
        'fieldset',
        {},
        h('legend', { text: t.days }),
        h('div', { class: 'days' }, dayBoxes.map((b, i) => h('label', {}, b, dayName(i)))),
      ),
      h('p', { class: 'note' }, `${t.timezone}: `, zone),
    );
  }
}

const CSS_ESCAPE = (s) => (window.CSS && CSS.escape ? CSS.escape(s) : String(s).replace(/["\\]/g, '\\$&'));
