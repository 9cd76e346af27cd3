// Deliveries: "why didn't Ana get this?" The log across notifications,
// filtered on the server (recipient, channel, status, category, source,
// time), each row linked to its notification and showing the reason; and a
// chart of deliveries per hour by channel and outcome, drawn here as inline
// SVG (no chart library).

import { label, t } from '../i18n.js';
import { api, errorBox, field, fill, h, heading, isoFromLocal, qs, select, table, timeEl } from '../ui.js';

const CHANNELS = ['in_app', 'email', 'web_push', 'mobile_push', 'chat'];
const STATUSES = ['queued', 'scheduled', 'sent', 'failed', 'skipped', 'cancelled', 'held', 'digested', 'suppressed'];
const COLORS = {
  sent: '#16a34a', held: '#d97706', digested: '#7c3aed', suppressed: '#64748b', failed: '#dc2626',
  skipped: '#94a3b8', cancelled: '#475569', queued: '#0ea5e9', scheduled: '#38bdf8',
};
const SVG = 'http://www.w3.org/2000/svg';

export async function deliveries(root, { params }) {
  const initial = Object.fromEntries(new URLSearchParams(params[0] || ''));
  const error = errorBox();
  const inputs = {
    recipient: h('input', { name: 'recipient', value: initial.recipient || '', placeholder: 'ana' }),
    channel: select([['', t('any')], ...CHANNELS.map((c) => [c, label('channel', c)])], { name: 'channel', value: initial.channel || '' }),
    status: select([['', t('any')], ...STATUSES.map((s) => [s, label('status', s)])], { name: 'status', value: initial.status || '' }),
    category: h('input', { name: 'category', value: initial.category || '' }),
    source: h('input', { name: 'source', value: initial.source || '' }),
    since: h('input', { name: 'since', type: 'datetime-local' }),
    until: h('input', { name: 'until', type: 'datetime-local' }),
  };
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': t('Filter the delivery log') },
    field(t('Recipient'), inputs.recipient),
    field(t('Channel'), inputs.channel),
    field(t('Status'), inputs.status),
    field(t('Category'), inputs.category),
    field(t('Source'), inputs.source),
    field(t('From'), inputs.since),
    field(t('Until'), inputs.until),
    h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'primary' }, t('Filter'))));
  const results = h('div', { 'aria-live': 'polite' });
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, t('Load more'));
  const chart = h('section', { class: 'chart' });
  fill(root, heading(t('Deliveries')), chart, h('h2', {}, t('Delivery log')), form, error, results, more);

  let cursor = null;
  let rows = [];
  function query(extra = {}) {
    return qs({
      recipient: inputs.recipient.value.trim(),
      channel: inputs.channel.value,
      status: inputs.status.value,
      category: inputs.category.value.trim(),
      source: inputs.source.value.trim(),
      since: isoFromLocal(inputs.since.value),
      until: isoFromLocal(inputs.until.value),
      limit: 50,
      ...extra,
    });
  }
  async function load(append) {
    try {
      const page = await api('GET', `/v1/deliveries${query(append ? { cursor } : {})}`);
      rows = append ? rows.concat(page.items) : page.items;
      cursor = page.next_cursor;
      more.hidden = !cursor;
      error.show(null);
      fill(results,
        h('p', { class: 'count-line' }, t('{n} deliveries shown.', { n: rows.length })),
        table([
          [t('At'), (r) => timeEl(r.at)],
          [t('Recipient'), (r) => r.recipient],
          [t('Channel'), (r) => label('channel', r.channel)],
          [t('Status'), (r) => h('span', { class: `pill s-${r.status}` }, label('status', r.status))],
          [t('Reason'), (r) => h('span', { class: 'reason' }, r.reason ? label('reason', r.reason) : r.error || '')],
          [t('Notification'), (r) => h('a', { href: `#/notifications/${encodeURIComponent(r.notification_id || r.notification)}` }, r.title || r.notification_id || r.notification)],
        ], rows, { caption: t('Delivery log'), empty: t('No deliveries match these filters.') }));
    } catch (e) {
      error.show(e);
    }
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    load(false);
  });
  more.addEventListener('click', () => load(true));
  await Promise.all([load(false), drawChart(chart)]);
}

async function drawChart(section) {
  const days = 3;
  const since = new Date(Date.now() - days * 24 * 3600 * 1000);
  since.setMinutes(0, 0, 0);
  fill(section, h('h2', {}, t('Deliveries per hour, last {n} days', { n: days })));
  let buckets;
  try {
    buckets = (await api('GET', `/v1/stats/deliveries${qs({ bucket: 'hour', since: since.toISOString() })}`)).buckets;
  } catch (e) {
    section.append(h('p', { class: 'error' }, e.message));
    return;
  }
  const hours = days * 24 + 1;
  const start = since.getTime();
  const channels = CHANNELS.filter((c) => buckets.some((b) => b.channel === c));
  for (const extra of buckets.map((b) => b.channel)) if (!channels.includes(extra)) channels.push(extra);
  if (!channels.length) {
    section.append(h('p', { class: 'empty' }, t('No deliveries in this time.')));
    return;
  }
  const statuses = STATUSES.filter((s) => buckets.some((b) => b.status === s));
  section.append(h('ul', { class: 'legend', 'aria-label': t('Legend') },
    statuses.map((s) => h('li', {}, h('span', { class: 'swatch', style: null, dataset: { status: s } }), label('status', s)))));
  // Swatch colours are set through the CSSOM (no inline style attributes under the CSP).
  for (const sw of section.querySelectorAll('.swatch')) sw.style.background = COLORS[sw.dataset.status] || '#999';
  for (const channel of channels) {
    const grid = Array.from({ length: hours }, () => ({}));
    let total = 0;
    for (const b of buckets) {
      if (b.channel !== channel) continue;
      const i = Math.floor((new Date(b.start).getTime() - start) / 3600000);
      if (i < 0 || i >= hours) continue;
      grid[i][b.status] = (grid[i][b.status] || 0) + b.count;
      total += b.count;
    }
    const max = Math.max(1, ...grid.map((g) => Object.values(g).reduce((a, v) => a + v, 0)));
    const summary = statuses.map((s) => `${label('status', s)} ${grid.reduce((a, g) => a + (g[s] || 0), 0)}`).join(', ');
    section.append(h('figure', { class: 'channel-chart' },
      h('figcaption', {}, `${label('channel', channel)} — ${t('{n} in total', { n: total })}`),
      bars(grid, max, statuses, start, `${label('channel', channel)}: ${summary}`)));
  }
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

/** Stacked bars, one per hour, scaled to the busiest hour. */
function bars(grid, max, statuses, start, description) {
  const W = 720;
  const H = 120;
  const pad = 24;
  const bw = (W - pad) / grid.length;
  const root = svg('svg', { viewBox: `0 0 ${W} ${H + 18}`, role: 'img', 'aria-label': description, class: 'bars', preserveAspectRatio: 'none' });
  root.append(svg('line', { x1: pad, y1: H, x2: W, y2: H, stroke: '#cbd5e1' }));
  const maxLabel = svg('text', { x: 0, y: 10, class: 'axis' });
  maxLabel.textContent = String(max);
  root.append(maxLabel);
  grid.forEach((g, i) => {
    let y = H;
    const x = pad + i * bw;
    for (const s of statuses) {
      const n = g[s] || 0;
      if (!n) continue;
      const bh = (n / max) * (H - 4);
      y -= bh;
      const rect = svg('rect', { x: x + 0.5, y, width: Math.max(1, bw - 1), height: bh, fill: COLORS[s] || '#999' });
      const tip = svg('title', {});
      tip.textContent = `${new Date(start + i * 3600000).toLocaleString(document.documentElement.lang)}: ${label('status', s)} ${n}`;
      rect.append(tip);
      root.append(rect);
    }
    const d = new Date(start + i * 3600000);
    if (d.getHours() === 0) {
      const tick = svg('text', { x, y: H + 14, class: 'axis' });
      tick.textContent = d.toLocaleDateString(document.documentElement.lang, { day: 'numeric', month: 'short' });
      root.append(tick);
    }
  });
  return root;
}
