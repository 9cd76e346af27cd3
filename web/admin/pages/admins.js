// Admins: the accounts that may use this console; add one, remove one.

import { t } from '../i18n.js';
import { announce, api, errorBox, field, fill, h, heading, session, table, timeEl } from '../ui.js';

export async function admins(root) {
  const error = errorBox();
  const list = h('div');
  const email = h('input', { name: 'admin_email', type: 'email', required: true, autocomplete: 'off' });
  const name = h('input', { name: 'admin_name', required: true, autocomplete: 'off' });
  const password = h('input', { name: 'admin_password', type: 'password', required: true, minlength: 12, autocomplete: 'new-password' });
  const form = h('form', { class: 'card' }, h('h2', {}, t('Add an administrator')),
    field(t('Email'), email), field(t('Name'), name), field(t('Password'), password, t('At least 12 characters. Tell it to them in person; they can keep it.')),
    error, h('button', { type: 'submit', class: 'primary' }, t('Add')));

  async function load() {
    const page = await api('GET', '/v1/admins');
    fill(list, table([
      [t('Name'), (a) => a.name],
      [t('Email'), (a) => a.email],
      [t('Created'), (a) => timeEl(a.created_at)],
      ['', (a) => (a.id === session.admin?.id ? t('(you)') : h('button', { type: 'button', class: 'danger small', 'aria-label': t('Remove {name}', { name: a.name }), onclick: async () => {
        if (!window.confirm(t('Remove the administrator {name}?', { name: a.name }))) return;
        try {
          await api('DELETE', `/v1/admins/${encodeURIComponent(a.id)}`);
          announce(t('Removed.'));
          load();
        } catch (e) {
          error.show(e);
        }
      } }, t('Remove')))],
    ], page.items || page, { caption: t('Administrators') }));
  }
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (password.value.length < 12) {
      error.show(t('The password needs at least 12 characters.'));
      return password.focus();
    }
    try {
      await api('POST', '/v1/admins', { email: email.value.trim(), name: name.value.trim(), password: password.value });
      error.show(null);
      form.reset();
      announce(t('Added.'));
      load();
    } catch (err) {
      error.show(err);
    }
  });
  fill(root, heading(t('Administrators')), list, form);
  await load();
}
