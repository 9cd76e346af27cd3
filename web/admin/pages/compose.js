// Compose: who gets it (with the live audience size), what it says, how it
// goes out and when; previews as a toast, a drawer item and an email; then
// the notification's page (#/notifications/{id}) with its delivery
// progress per channel, live, and cancelling while it is scheduled.

import { label, t } from '../i18n.js';
import {
  announce, api, checkbox, debounce, emailFrame, errorBox, field, fill, h, heading, isoFromLocal, qs,
  select, splitList, table, timeEl,
} from '../ui.js';

const CHANNELS = ['in_app', 'email', 'web_push', 'mobile_push', 'chat'];
const OUTCOMES = ['sent', 'held', 'digested', 'suppressed', 'failed'];

export async function compose(root, { navigate }) {
  const [groups, categories] = await Promise.all([
    api('GET', '/v1/groups').then((r) => r.items),
    api('GET', '/v1/categories').then((r) => r.items || r).catch(() => []),
  ]);

  const error = errorBox();
  const audienceKind = h('fieldset', { class: 'audience' }, h('legend', {}, t('Audience')));
  const kinds = [
    ['all', t('Everyone')],
    ['groups', t('Groups')],
    ['users', t('Users')],
    ['entity', t('Subscribers of an entity')],
  ];
  const radios = kinds.map(([value, text], i) => {
    const input = h('input', { type: 'radio', name: 'audience', value, checked: i === 1 });
    audienceKind.append(h('label', { class: 'check' }, input, ' ', text));
    return input;
  });
  const groupBoxes = groups.map((g) => h('input', { type: 'checkbox', name: 'group', value: g.id }));
  const groupsPart = h('fieldset', { class: 'sub', 'data-for': 'groups' }, h('legend', {}, t('Groups')),
    groups.length
      ? groups.map((g, i) => h('label', { class: 'check' }, groupBoxes[i], ' ', g.name || g.id, ' ', h('small', {}, `(${g.id}, ${t('{n} members', { n: g.members })})`)))
      : h('p', { class: 'empty' }, t('There are no groups yet.')));
  const usersInput = h('textarea', { rows: 2, name: 'users', placeholder: 'ana, bo' });
  const usersPart = h('div', { class: 'sub', 'data-for': 'users' }, field(t('User ids'), usersInput, t('Separated by commas or spaces.')));
  const entityType = h('input', { name: 'entity_type', placeholder: 'ticket' });
  const entityId = h('input', { name: 'entity_id', placeholder: '123' });
  const entityPart = h('div', { class: 'sub row', 'data-for': 'entity' }, field(t('Entity type'), entityType), field(t('Entity id'), entityId));
  const size = h('p', { class: 'audience-size', 'aria-live': 'polite', id: 'audience-size' });

  const category = select([['', t('(none)')], ...categories.map((c) => [c.id, c.name ? `${c.name} (${c.id})` : c.id])], { name: 'category' });
  const title = h('input', { name: 'title', required: true, maxlength: 500 });
  const body = h('textarea', { name: 'body', rows: 4 });
  const url = h('input', { name: 'url', type: 'url', placeholder: 'https://…' });
  const actionsList = h('div', { class: 'actions-list' });
  const addAction = h('button', { type: 'button', class: 'secondary' }, t('Add a link button'));
  const sticky = checkbox(t('Sticky (stays at the top until closed)'), { name: 'sticky' });
  const channelDefault = h('input', { type: 'radio', name: 'channel_mode', value: 'default', checked: true });
  const channelChosen = h('input', { type: 'radio', name: 'channel_mode', value: 'chosen' });
  const channelBoxes = CHANNELS.map((c) => h('input', { type: 'checkbox', name: 'channel', value: c, checked: c === 'in_app' || c === 'email', disabled: true }));
  const channelsPart = h('fieldset', {}, h('legend', {}, t('Channels')),
    h('label', { class: 'check' }, channelDefault, ' ', t('As the category decides (its defaults)')),
    h('label', { class: 'check' }, channelChosen, ' ', t('These channels:')),
    h('div', { class: 'sub-checks' }, CHANNELS.map((c, i) => h('label', { class: 'check' }, channelBoxes[i], ' ', label('channel', c)))),
    h('small', { class: 'hint' }, t('Each person’s preferences still apply.')));
  const later = h('input', { type: 'datetime-local', name: 'send_at' });
  const send = h('button', { type: 'submit', class: 'primary' }, t('Send'));

  addAction.addEventListener('click', () => {
    if (actionsList.children.length >= 3) return;
    const row = h('div', { class: 'row action-row' },
      field(t('Button label'), h('input', { name: 'action_label' })),
      field(t('Button link'), h('input', { name: 'action_url', type: 'url', placeholder: 'https://…' })),
      field(t('Style'), select([['primary', t('primary')], ['secondary', t('secondary')], ['danger', t('danger')]], { name: 'action_style' })));
    row.append(h('button', { type: 'button', class: 'link', onclick: () => { row.remove(); update(); } }, t('Remove')));
    actionsList.append(row);
    row.querySelector('input').focus();
  });

  const kind = () => radios.find((r) => r.checked).value;
  function target() {
    switch (kind()) {
      case 'all': return { all: true };
      case 'groups': return { groups: groupBoxes.filter((b) => b.checked).map((b) => b.value) };
      case 'users': return { users: splitList(usersInput.value) };
      default: return { entity: { type: entityType.value.trim(), id: entityId.value.trim() } };
    }
  }
  function targetComplete(to) {
    if (to.all) return true;
    if (to.groups) return to.groups.length > 0;
    if (to.users) return to.users.length > 0;
    return Boolean(to.entity.type && to.entity.id);
  }
  function actions() {
    return [...actionsList.querySelectorAll('.action-row')].map((row, i) => ({
      id: `link-${i + 1}`,
      kind: 'link',
      label: row.querySelector('[name=action_label]').value.trim(),
      url: row.querySelector('[name=action_url]').value.trim(),
      style: row.querySelector('[name=action_style]').value,
    })).filter((a) => a.label || a.url);
  }
  function request() {
    const req = { to: target(), title: title.value.trim() };
    if (body.value.trim()) req.body = body.value.trim();
    if (url.value.trim()) req.url = url.value.trim();
    if (category.value) req.category = category.value;
    const acts = actions();
    if (acts.length) req.actions = acts;
    if (sticky.querySelector('input').checked) req.sticky = true;
    if (channelChosen.checked) req.channels = channelBoxes.filter((b) => b.checked).map((b) => b.value);
    const at = isoFromLocal(later.value);
    if (at) req.send_at = at;
    return req;
  }

  let sizeRequest = 0;
  const refreshSize = debounce(async () => {
    const to = target();
    const id = ++sizeRequest;
    if (!targetComplete(to)) {
      size.textContent = t('Choose who receives it.');
      return;
    }
    size.textContent = t('Counting…');
    try {
      const { count } = await api('POST', '/v1/audience/size', { to });
      if (id === sizeRequest) {
        size.textContent = t('Will reach {n} people.', { n: count });
        size.dataset.count = count;
      }
    } catch (e) {
      if (id === sizeRequest) size.textContent = e.problem?.detail || e.message;
    }
  }, 250);

  function showParts() {
    for (const part of [groupsPart, usersPart, entityPart]) part.hidden = part.dataset.for !== kind();
    for (const box of channelBoxes) box.disabled = !channelChosen.checked;
  }

  // Previews: the widget's toast and drawer item, and the email.
  const preview = h('section', { class: 'preview', 'aria-label': t('Preview') });
  function update() {
    const req = request();
    const c = categories.find((x) => x.id === req.category);
    const acts = (req.actions || []).map((a) => h('span', { class: `btn ${a.style}` }, a.label || a.url));
    const toast = h('div', { class: 'pv-toast' },
      h('strong', {}, req.title || t('(no title)')), req.body ? h('p', {}, req.body) : null, acts.length ? h('div', { class: 'pv-actions' }, acts) : null);
    const item = h('div', { class: `pv-item${req.sticky ? ' sticky' : ''}` },
      h('span', { class: 'pv-dot', 'aria-hidden': 'true' }),
      h('div', {}, h('strong', {}, req.title || t('(no title)')), req.body ? h('p', {}, req.body) : null,
        h('small', {}, [c ? c.name || c.id : null, t('now')].filter(Boolean).join(' · ')),
        acts.length ? h('div', { class: 'pv-actions' }, acts.map((a) => a.cloneNode(true))) : null));
    fill(preview,
      h('h2', {}, t('Preview')),
      h('h3', {}, t('Toast')), toast,
      h('h3', {}, t('Drawer item')), h('div', { class: 'pv-drawer' }, item),
      h('h3', {}, t('Email')), emailFrame(emailHtml(req), t('Email preview')),
      h('p', { class: 'hint' }, t('The email uses the category’s template when one is set up; this is the plain layout.')));
  }

  const form = h('form', { class: 'compose', novalidate: true },
    heading(t('Compose a notification')),
    h('div', { class: 'columns' },
      h('div', { class: 'col' },
        audienceKind, groupsPart, usersPart, entityPart, size,
        field(t('Category'), category),
        field(t('Title'), title),
        field(t('Body'), body),
        field(t('Link'), url, t('Where a click on the notification leads.')),
        h('fieldset', {}, h('legend', {}, t('Buttons')), actionsList, addAction),
        sticky,
        channelsPart,
        field(t('Send later (optional)'), later, t('Leave empty to send now.')),
        error,
        send),
      h('div', { class: 'col' }, preview)),
    h('section', { class: 'recent' }));

  form.addEventListener('input', () => {
    showParts();
    update();
  });
  form.addEventListener('change', (e) => {
    showParts();
    update();
    if (e.target.name === 'audience' || e.target.name === 'group') refreshSize();
  });
  usersInput.addEventListener('input', refreshSize);
  entityType.addEventListener('input', refreshSize);
  entityId.addEventListener('input', refreshSize);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const req = request();
    if (!targetComplete(req.to)) return error.show(t('Choose who receives it.'));
    if (!req.title) {
      error.show(t('A title is required.'));
      return title.focus();
    }
    error.show(null);
    send.disabled = true;
    try {
      const receipt = await api('POST', '/v1/notifications', req);
      announce(req.send_at ? t('Scheduled.') : t('Sent.'));
      navigate(`#/notifications/${encodeURIComponent(receipt.id)}`);
    } catch (err) {
      error.show(err);
    } finally {
      send.disabled = false;
    }
  });

  fill(root, form);
  showParts();
  update();
  refreshSize();
  recent(form.querySelector('.recent'));
}

async function recent(section) {
  try {
    const page = await api('GET', `/v1/notifications${qs({ limit: 10 })}`);
    fill(section, h('h2', {}, t('Recent notifications')),
      table([
        [t('Title'), (n) => h('a', { href: `#/notifications/${encodeURIComponent(n.id)}` }, n.title || n.id)],
        [t('Audience'), (n) => n.audience || ''],
        [t('Status'), (n) => t(n.status || '')],
        [t('Category'), (n) => n.category || ''],
        [t('Source'), (n) => n.source || ''],
        [t('Created'), (n) => timeEl(n.created_at)],
      ], page.items, { caption: t('Recent notifications'), empty: t('Nothing sent yet.') }));
  } catch {
    section.hidden = true;
  }
}

/** A plain email document for the preview, built as a DOM (texts stay text). */
function emailHtml(req) {
  const doc = document.implementation.createHTMLDocument(req.title || '');
  const el = (tag, text, attrs = {}) => {
    const e = doc.createElement(tag);
    if (text) e.textContent = text;
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  };
  doc.body.append(el('h1', req.title || t('(no title)')));
  if (req.body) for (const para of req.body.split(/\n{2,}/)) doc.body.append(el('p', para));
  const links = (req.actions || []).filter((a) => a.url).map((a) => [a.label || a.url, a.url]);
  if (req.url) links.push([t('Open'), req.url]);
  for (const [text, href] of links) {
    const p = el('p');
    p.append(el('a', text, { href }));
    doc.body.append(p);
  }
  return `<!doctype html>${doc.documentElement.outerHTML}`;
}

/** Who a notification was for, in words. */
function audienceText(to) {
  if (!to) return '';
  if (to.all) return t('Everyone');
  const parts = [];
  if (to.groups?.length) parts.push(`${t('Groups')}: ${to.groups.join(', ')}`);
  if (to.users?.length) parts.push(`${t('Users')}: ${to.users.join(', ')}`);
  if (to.emails?.length) parts.push(`${t('Email')}: ${to.emails.join(', ')}`);
  if (to.entity) parts.push(`${t('Subscribers of an entity')}: ${to.entity.type} ${to.entity.id}`);
  return parts.join('; ');
}

/** The latest event of each recipient on each channel, counted by outcome. */
export function progress(events) {
  const last = new Map();
  for (const ev of events) last.set(`${ev.channel}\u0000${ev.recipient}`, ev);
  const counts = {};
  for (const ev of last.values()) {
    counts[ev.channel] ||= {};
    counts[ev.channel][ev.status] = (counts[ev.channel][ev.status] || 0) + 1;
  }
  return counts;
}

/** A notification's page: what was sent, its delivery progress (live), cancel while scheduled. */
export async function notification(root, { params }) {
  const id = params[0];
  const error = errorBox();
  const head = h('div');
  const counts = h('div', { 'aria-live': 'polite', class: 'progress' });
  const log = h('div');
  fill(root, heading(t('Notification')), error, head, h('h2', {}, t('Delivery progress')), counts, h('h2', {}, t('Delivery log')), log);
  let stopped = false;
  let timer;
  let lastKey = '';
  let lastLog = '';

  async function load() {
    try {
      const [n, d] = await Promise.all([
        api('GET', `/v1/notifications/${encodeURIComponent(id)}`),
        api('GET', `/v1/notifications/${encodeURIComponent(id)}/deliveries?limit=1000`),
      ]);
      if (stopped) return;
      const scheduled = n.status !== 'cancelled' && n.send_at && new Date(n.send_at) > new Date();
      const cancel = scheduled ? h('button', { type: 'button', class: 'danger', onclick: async () => {
        if (!window.confirm(t('Cancel this scheduled notification?'))) return;
        try {
          await api('DELETE', `/v1/notifications/${encodeURIComponent(id)}`);
          announce(t('Cancelled.'));
          load();
        } catch (e) {
          error.show(e);
        }
      } }, t('Cancel the scheduled send')) : null;
      const key = JSON.stringify([n.status, scheduled, n.summary]);
      if (key !== lastKey) {
        lastKey = key;
        fill(head, h('dl', { class: 'facts' },
          h('dt', {}, t('Title')), h('dd', {}, n.title || ''),
          n.body ? [h('dt', {}, t('Body')), h('dd', {}, n.body)] : null,
          h('dt', {}, t('Status')), h('dd', { class: 'n-status' }, scheduled ? t('scheduled for {when}', { when: new Date(n.send_at).toLocaleString(document.documentElement.lang) }) : t(n.status)),
          h('dt', {}, t('Audience')), h('dd', { class: 'n-audience' }, audienceText(n.to)),
          n.category ? [h('dt', {}, t('Category')), h('dd', {}, n.category)] : null,
          h('dt', {}, t('Created')), h('dd', {}, timeEl(n.created_at)),
          h('dt', {}, t('In inboxes')), h('dd', {}, t('{n} (read: {r})', { n: n.summary.inbox_entries, r: n.summary.inbox_read + n.summary.broadcast_read }))),
        cancel);
      }
      const c = progress(d.items);
      // Redrawn only when something changed: the counts are a live region.
      const logKey = JSON.stringify([c, d.items.length, scheduled]);
      if (logKey === lastLog) {
        error.show(null);
        if (!stopped) timer = setTimeout(load, 1500);
        return;
      }
      lastLog = logKey;
      const channels = Object.keys(c).sort((a, b) => CHANNELS.indexOf(a) - CHANNELS.indexOf(b));
      fill(counts, channels.length ? table([
        [t('Channel'), (ch) => label('channel', ch)],
        ...OUTCOMES.map((o) => [label('status', o), (ch) => h('span', { class: `count s-${o}`, dataset: { channel: ch, status: o } }, String(c[ch][o] || 0))]),
        [t('other'), (ch) => String(Object.entries(c[ch]).filter(([s]) => !OUTCOMES.includes(s)).reduce((a, [, v]) => a + v, 0))],
      ], channels, { caption: t('Delivery progress') }) : h('p', { class: 'empty' }, scheduled ? t('Nothing is delivered before the scheduled time.') : t('No deliveries yet.')));
      fill(log, table([
        [t('Recipient'), (ev) => ev.recipient],
        [t('Channel'), (ev) => label('channel', ev.channel)],
        [t('Status'), (ev) => h('span', { class: `pill s-${ev.status}` }, label('status', ev.status))],
        [t('Reason'), (ev) => (ev.reason ? label('reason', ev.reason) : ev.error || '')],
        [t('At'), (ev) => timeEl(ev.at)],
      ], d.items.slice(-200).reverse(), { caption: t('Delivery log') }));
      error.show(null);
    } catch (e) {
      error.show(e);
    }
    if (!stopped) timer = setTimeout(load, 1500);
  }
  await load();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
