// The development mailbox: emails Belfry "sent" without an SMTP server,
// rendered in a sandboxed frame (no script, nothing of the console).

import { t } from '../i18n.js';
import { announce, api, emailFrame, errorBox, fill, h, heading, table, timeEl } from '../ui.js';

export async function mailbox(root, { params }) {
  const error = errorBox();
  const list = h('div');
  const view = h('section', { 'aria-live': 'polite' });
  async function load() {
    const items = (await api('GET', '/v1/dev/mailbox')).items;
    fill(list, table([
      [t('To'), (m) => m.to],
      [t('Subject'), (m) => h('a', { href: `#/mailbox/${encodeURIComponent(m.id)}` }, m.subject)],
      [t('Received'), (m) => timeEl(m.created_at)],
    ], items, { caption: t('Emails'), empty: t('The mailbox is empty.') }));
  }
  async function open(id) {
    try {
      const m = await api('GET', `/v1/dev/mailbox/${encodeURIComponent(id)}`);
      fill(view, h('h2', {}, m.subject), h('p', {}, t('To: {to}', { to: m.to })),
        emailFrame(m.html, m.subject), h('details', {}, h('summary', {}, t('Plain text')), h('pre', { class: 'email-text' }, m.text)));
    } catch (e) {
      error.show(e);
    }
  }
  const clear = h('button', { type: 'button', class: 'danger', onclick: async () => {
    if (!window.confirm(t('Empty the mailbox?'))) return;
    try {
      await api('DELETE', '/v1/dev/mailbox');
      announce(t('Emptied.'));
      fill(view);
      load();
    } catch (e) {
      error.show(e);
    }
  } }, t('Empty the mailbox'));
  fill(root, heading(t('Development mailbox')),
    h('p', {}, t('Emails land here when Belfry runs without an SMTP server (development). As JSON: '), h('a', { href: '/v1/dev/mailbox' }, '/v1/dev/mailbox')),
    error, view, list, clear);
  try {
    await load();
  } catch (e) {
    error.show(e);
  }
  if (params[0]) await open(params[0]);
}
