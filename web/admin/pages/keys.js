// Sources & keys: the secret keys producers send with (a key's name is the
// source it stands for); create one (its secret is shown this once) or
// revoke one.

import { t } from '../i18n.js';
import { announce, api, checkbox, errorBox, field, fill, h, heading, table, timeEl } from '../ui.js';

export async function keys(root) {
  const error = errorBox();
  const list = h('div');
  const created = h('div', { 'aria-live': 'polite' });
  const name = h('input', { name: 'key_name', required: true, placeholder: 'billing' });
  const send = checkbox(t('send: send notifications and post events'), { name: 'scope_send', checked: true });
  const admin = checkbox(t('admin: everything, including configuration'), { name: 'scope_admin' });
  const form = h('form', { class: 'card' }, h('h2', {}, t('Create a key')),
    field(t('Name'), name, t('Who uses it, e.g. the application or source it belongs to.')),
    h('fieldset', {}, h('legend', {}, t('Scopes')), send, admin),
    error, h('button', { type: 'submit', class: 'primary' }, t('Create')));

  const sources = h('section');
  async function loadSources() {
    try {
      const known = (await api('GET', '/v1/preferences/defaults')).available?.sources || [];
      fill(sources, h('h2', {}, t('Sources')),
        h('p', { class: 'hint' }, t('The sources notifications were sent with (their “source” field); people can switch a source off in their preferences.')),
        table([
          [t('Id'), (x) => x.id],
          [t('Name'), (x) => x.name || ''],
        ], known, { caption: t('Sources'), empty: t('No notification has named a source yet.') }));
    } catch {
      sources.hidden = true;
    }
  }

  async function load() {
    const page = await api('GET', '/v1/keys');
    const items = page.items || page;
    fill(list, table([
      [t('Name'), (k) => k.name],
      [t('Prefix'), (k) => h('code', {}, k.prefix || '')],
      [t('Scopes'), (k) => (k.scopes || []).join(', ')],
      [t('Created'), (k) => timeEl(k.created_at)],
      [t('Revoked'), (k) => (k.revoked_at ? timeEl(k.revoked_at) : '')],
      ['', (k) => (k.revoked_at ? '' : h('button', { type: 'button', class: 'danger small', 'aria-label': t('Revoke {name}', { name: k.name }), onclick: async () => {
        if (!window.confirm(t('Revoke the key {name}? Whoever uses it is refused from now on.', { name: k.name }))) return;
        try {
          await api('DELETE', `/v1/keys/${encodeURIComponent(k.id)}`);
          announce(t('Revoked.'));
          load();
        } catch (e) {
          error.show(e);
        }
      } }, t('Revoke')))],
    ], items, { caption: t('Keys'), empty: t('There are no keys yet.') }));
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const scopes = [];
    if (send.querySelector('input').checked) scopes.push('send');
    if (admin.querySelector('input').checked) scopes.push('admin');
    if (!name.value.trim()) {
      error.show(t('A name is required.'));
      return name.focus();
    }
    try {
      const k = await api('POST', '/v1/keys', { name: name.value.trim(), scopes });
      error.show(null);
      const secret = h('input', { readonly: true, value: k.secret, class: 'secret', name: 'secret', 'aria-label': t('The new secret') });
      const copy = h('button', { type: 'button', class: 'secondary', onclick: async () => {
        secret.select();
        try {
          await navigator.clipboard.writeText(k.secret);
          announce(t('Copied.'));
        } catch {
          announce(t('Select the secret and copy it.'));
        }
      } }, t('Copy'));
      fill(created, h('div', { class: 'card once', role: 'alert' },
        h('h2', {}, t('The secret of {name}', { name: k.name })),
        h('p', {}, t('Copy it now: it is shown only this once. Belfry keeps only its hash.')),
        h('div', { class: 'row' }, secret, copy),
        h('button', { type: 'button', class: 'link', onclick: () => fill(created) }, t('Done, hide it'))));
      secret.focus();
      secret.select();
      name.value = '';
      load();
    } catch (err) {
      error.show(err);
    }
  });

  fill(root, heading(t('Sources & keys')),
    h('p', {}, t('Producers send with a secret key in the Authorization header. Each source (an application, a service) should have its own key, so that it can be revoked alone.')),
    created, form, h('h2', {}, t('Keys')), list, sources);
  await Promise.all([load(), loadSources()]);
}
