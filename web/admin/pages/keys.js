// Sources & keys. A source is an integration that sends (the help desk,
// the CRM); people see its name and can switch it off. A key made for a
// source is a send key bound to it. Keys can also be made without a source
// (send or admin scope). A new key's secret is shown this once; revoking
// (or deleting its source) ends it.

import { t } from '../i18n.js';
import { announce, api, checkbox, errorBox, field, fill, h, heading, select, table, timeEl } from '../ui.js';

export async function keys(root) {
  const error = errorBox();
  const created = h('div', { 'aria-live': 'polite' });
  const sourcesList = h('div');
  const keysList = h('section');

  // A source: create or change.
  const sourceId = h('input', { name: 'source_id', required: true, placeholder: 'helpdesk', pattern: '[a-z0-9._\\-]+' });
  const sourceName = h('input', { name: 'source_name', required: true, placeholder: t('Help desk') });
  const sourceIcon = h('input', { name: 'source_icon', placeholder: 'https://… / /icons/helpdesk.svg' });
  const sourceError = errorBox();
  const sourceForm = h('form', { class: 'card' }, h('h2', {}, t('Add or change a source')),
    h('div', { class: 'row' }, field(t('Source id'), sourceId), field(t('Source name'), sourceName), field(t('Icon (optional)'), sourceIcon)),
    sourceError, h('button', { type: 'submit', class: 'primary' }, t('Save the source')));

  // A key: for a source (a send key bound to it) or with scopes.
  const keyName = h('input', { name: 'key_name', placeholder: t('e.g. help desk production') });
  const keySource = select([['', t('(no source)')]], { name: 'key_source' });
  const send = checkbox(t('send: send notifications and post events'), { name: 'scope_send', checked: true });
  const admin = checkbox(t('admin: everything, including configuration'), { name: 'scope_admin' });
  const scopes = h('fieldset', {}, h('legend', {}, t('Scopes')), send, admin);
  const keyForm = h('form', { class: 'card' }, h('h2', {}, t('Create a key')),
    h('div', { class: 'row' }, field(t('Key name'), keyName), field(t('For the source'), keySource, t('A source’s key can only send, as that source.'))),
    scopes, error, h('button', { type: 'submit', class: 'primary' }, t('Create the key')));
  keySource.addEventListener('change', () => {
    scopes.hidden = Boolean(keySource.value);
  });

  function showSecret(k) {
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
  }

  async function loadSources() {
    const items = (await api('GET', '/v1/sources')).items;
    const current = keySource.value;
    fill(keySource, h('option', { value: '' }, t('(no source)')), items.map((s) => h('option', { value: s.id }, `${s.name} (${s.id})`)));
    keySource.value = items.some((s) => s.id === current) ? current : '';
    scopes.hidden = Boolean(keySource.value);
    fill(sourcesList, table([
      [t('Id'), (s) => s.id],
      [t('Name'), (s) => s.name],
      [t('Icon'), (s) => s.icon || ''],
      [t('Created'), (s) => timeEl(s.created_at)],
      ['', (s) => h('div', { class: 'buttons' },
        h('button', { type: 'button', class: 'secondary small', 'aria-label': t('Create a key for {name}', { name: s.name }), onclick: () => {
          keySource.value = s.id;
          scopes.hidden = true;
          keyName.focus();
        } }, t('New key')),
        h('button', { type: 'button', class: 'secondary small', 'aria-label': t('Edit {name}', { id: s.name, name: s.name }), onclick: () => {
          sourceId.value = s.id;
          sourceName.value = s.name;
          sourceIcon.value = s.icon || '';
          sourceName.focus();
        } }, t('Edit')),
        h('button', { type: 'button', class: 'danger small', 'aria-label': t('Delete the source {name}', { name: s.name }), onclick: async () => {
          if (!window.confirm(t('Delete the source {name}? Its keys are revoked.', { name: s.name }))) return;
          try {
            await api('DELETE', `/v1/sources/${encodeURIComponent(s.id)}`);
            announce(t('Deleted; its keys are revoked.'));
            await Promise.all([loadSources(), loadKeys()]);
          } catch (e) {
            sourceError.show(e);
          }
        } }, t('Delete')))],
    ], items, { caption: t('Sources'), empty: t('There are no sources yet.') }));
  }

  async function loadKeys() {
    let page;
    try {
      page = await api('GET', '/v1/keys');
    } catch (e) {
      if (e.status === 404 || e.status === 405) {
        keysList.hidden = true;
        return;
      }
      throw e;
    }
    keysList.hidden = false;
    fill(keysList, h('h2', {}, t('Keys')), table([
      [t('Name'), (k) => k.name],
      [t('Prefix'), (k) => h('code', {}, k.prefix || '')],
      [t('Source'), (k) => k.source || ''],
      [t('Scopes'), (k) => (k.scopes || []).join(', ')],
      [t('Created'), (k) => timeEl(k.created_at)],
      [t('Revoked'), (k) => (k.revoked_at ? timeEl(k.revoked_at) : '')],
      ['', (k) => (k.revoked_at ? '' : h('button', { type: 'button', class: 'danger small', 'aria-label': t('Revoke {name}', { name: k.name }), onclick: async () => {
        if (!window.confirm(t('Revoke the key {name}? Whoever uses it is refused from now on.', { name: k.name }))) return;
        try {
          await api('DELETE', `/v1/keys/${encodeURIComponent(k.id)}`);
          announce(t('Revoked.'));
          loadKeys();
        } catch (e) {
          error.show(e);
        }
      } }, t('Revoke')))],
    ], page.items || [], { caption: t('Keys'), empty: t('There are no keys yet.') }));
  }

  sourceForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await api('PUT', `/v1/sources/${encodeURIComponent(sourceId.value.trim())}`, { name: sourceName.value.trim(), icon: sourceIcon.value.trim() || null });
      sourceError.show(null);
      announce(t('Saved.'));
      sourceForm.reset();
      await loadSources();
    } catch (err) {
      sourceError.show(err);
    }
  });

  keyForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = keyName.value.trim();
    try {
      let k;
      if (keySource.value) {
        k = await api('POST', `/v1/sources/${encodeURIComponent(keySource.value)}/keys`, name ? { name } : {});
      } else {
        if (!name) {
          error.show(t('A name is required.'));
          return keyName.focus();
        }
        const chosen = [];
        if (send.querySelector('input').checked) chosen.push('send');
        if (admin.querySelector('input').checked) chosen.push('admin');
        k = await api('POST', '/v1/keys', { name, scopes: chosen });
      }
      error.show(null);
      keyName.value = '';
      showSecret(k);
      loadKeys();
    } catch (err) {
      error.show(err);
    }
  });

  fill(root, heading(t('Sources & keys')),
    h('p', {}, t('Producers send with a secret key in the Authorization header. Give each source (an application, a service) its own key, so that it can be revoked alone.')),
    created,
    h('h2', {}, t('Sources')), sourcesList, sourceForm,
    keyForm, keysList);
  await Promise.all([loadSources(), loadKeys()]);
}
