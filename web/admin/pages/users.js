// Users & groups: search people (server-side, by text and group), edit one,
// import many from CSV with a per-row report; groups; categories.

import { t } from '../i18n.js';
import { announce, api, checkbox, errorBox, field, fill, h, heading, qs, select, splitList, table, timeEl } from '../ui.js';

export async function users(root) {
  const groupsSection = h('section', { class: 'card' });
  const categoriesSection = h('section', { class: 'card' });
  const usersSection = h('section', { class: 'card' });
  const importSection = h('section', { class: 'card' });
  fill(root, heading(t('Users & groups')),
    h('nav', { class: 'tabs', 'aria-label': t('On this page') },
      h('a', { href: '#users-list' }, t('Users')), h('a', { href: '#users-import' }, t('Import')),
      h('a', { href: '#groups' }, t('Groups')), h('a', { href: '#categories' }, t('Categories'))),
    usersSection, importSection, groupsSection, categoriesSection);
  usersSection.id = 'users-list';
  importSection.id = 'users-import';
  groupsSection.id = 'groups';
  categoriesSection.id = 'categories';
  const groups = (await api('GET', '/v1/groups')).items;
  userList(usersSection, groups);
  csvImport(importSection);
  groupList(groupsSection, groups);
  await categoryList(categoriesSection);
}

function userList(section, groups) {
  const query = h('input', { type: 'search', name: 'query', placeholder: t('id, name or email') });
  const group = select([['', t('any')], ...groups.map((g) => [g.id, g.name || g.id])], { name: 'group' });
  const error = errorBox();
  const list = h('div', { 'aria-live': 'polite' });
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, t('Load more'));
  const editor = h('div');
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': t('Search users') },
    field(t('Search'), query), field(t('Group'), group), h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'primary' }, t('Search'))),
    h('div', { class: 'field actions' }, h('button', { type: 'button', class: 'secondary', onclick: () => edit(null) }, t('New user'))));
  fill(section, h('h2', {}, t('Users')), form, error, editor, list, more);
  let cursor = null;
  let rows = [];
  async function load(append) {
    try {
      const page = await api('GET', `/v1/users${qs({ query: query.value.trim(), group: group.value, limit: 50, cursor: append ? cursor : '' })}`);
      rows = append ? rows.concat(page.items) : page.items;
      cursor = page.next_cursor;
      more.hidden = !cursor;
      error.show(null);
      fill(list, table([
        [t('Id'), (u) => h('button', { type: 'button', class: 'link', onclick: () => edit(u) }, u.id)],
        [t('Name'), (u) => u.name || ''],
        [t('Email'), (u) => u.email || ''],
        [t('Groups'), (u) => (u.groups || []).join(', ')],
        [t('Locale'), (u) => u.locale || ''],
        [t('Updated'), (u) => timeEl(u.updated_at)],
      ], rows, { caption: t('Users'), empty: t('No users match.') }));
    } catch (e) {
      error.show(e);
    }
  }
  function edit(user) {
    const id = h('input', { name: 'id', value: user?.id || '', required: true, readonly: user ? true : null });
    const inputs = {
      name: h('input', { name: 'name', value: user?.name || '' }),
      email: h('input', { name: 'email', type: 'email', value: user?.email || '' }),
      locale: h('input', { name: 'locale', value: user?.locale || '', placeholder: 'en' }),
      timezone: h('input', { name: 'timezone', value: user?.timezone || '', placeholder: 'Europe/Berlin' }),
      groups: h('input', { name: 'groups', value: (user?.groups || []).join(', ') }),
    };
    const err = errorBox();
    const f = h('form', { class: 'card editor', 'aria-label': t('Edit user') },
      h('h3', { tabindex: -1 }, user ? t('Edit {id}', { id: user.id }) : t('New user')),
      field(t('Id'), id),
      field(t('Name'), inputs.name), field(t('Email'), inputs.email),
      h('div', { class: 'row' }, field(t('Locale'), inputs.locale), field(t('Time zone'), inputs.timezone)),
      field(t('Groups'), inputs.groups, t('Group ids, separated by commas.')),
      err,
      h('div', { class: 'buttons' },
        h('button', { type: 'submit', class: 'primary' }, t('Save')),
        h('button', { type: 'button', class: 'secondary', onclick: () => fill(editor) }, t('Close')),
        user ? h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!window.confirm(t('Delete {id} with their inbox?', { id: user.id }))) return;
          try {
            await api('DELETE', `/v1/users/${encodeURIComponent(user.id)}`);
            announce(t('Deleted.'));
            fill(editor);
            load(false);
          } catch (e) {
            err.show(e);
          }
        } }, t('Delete')) : null));
    f.addEventListener('submit', async (e) => {
      e.preventDefault();
      const body = {};
      for (const [k, input] of Object.entries(inputs)) {
        const v = input.value.trim();
        if (k === 'groups') body.groups = splitList(v);
        else body[k] = v || null;
      }
      try {
        await api('PUT', `/v1/users/${encodeURIComponent(id.value.trim())}`, body);
        announce(t('Saved.'));
        fill(editor);
        load(false);
      } catch (e2) {
        err.show(e2);
      }
    });
    fill(editor, f);
    f.querySelector('h3').focus();
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    load(false);
  });
  more.addEventListener('click', () => load(true));
  load(false);
}

function csvImport(section) {
  const file = h('input', { type: 'file', accept: '.csv,text/csv', name: 'file' });
  const text = h('textarea', { name: 'csv', rows: 6, spellcheck: 'false', placeholder: 'id,email,name,locale,timezone,groups\nana,ana@example.com,Ana,de,Europe/Berlin,support;berlin' });
  const error = errorBox();
  const report = h('div', { 'aria-live': 'polite', class: 'import-report' });
  file.addEventListener('change', async () => {
    if (file.files[0]) text.value = await file.files[0].text();
  });
  const form = h('form', {},
    h('p', {}, t('A header line “id,email,name,locale,timezone,groups” and one person a line; groups separated by semicolons. Existing people are updated.')),
    field(t('CSV file'), file), field(t('or paste CSV'), text), error,
    h('button', { type: 'submit', class: 'primary' }, t('Import')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.show(null);
    fill(report);
    if (!text.value.trim()) return error.show(t('Choose a file or paste CSV first.'));
    try {
      const r = await api('POST', '/v1/users/import', text.value, { type: 'text/csv' });
      fill(report,
        h('p', { class: r.errors.length ? 'warn' : 'ok' }, t('{c} created, {u} updated, {e} rows with errors.', { c: r.created, u: r.updated, e: r.errors.length })),
        r.errors.length ? table([
          [t('Row'), (x) => String(x.row)],
          [t('Field'), (x) => x.field || ''],
          [t('Problem'), (x) => x.message],
        ], r.errors, { caption: t('Rows not imported') }) : null);
      announce(t('Import finished.'));
    } catch (err) {
      error.show(err);
    }
  });
  fill(section, h('h2', {}, t('Import from CSV')), form, report);
}

function groupList(section, groups) {
  const id = h('input', { name: 'group_id', required: true, placeholder: 'support' });
  const name = h('input', { name: 'group_name', placeholder: t('Support team') });
  const error = errorBox();
  const list = h('div');
  const draw = () => fill(list, table([
    [t('Id'), (g) => h('a', { href: '#/users', onclick: (e) => { e.preventDefault(); filterBy(g.id); } }, g.id)],
    [t('Name'), (g) => g.name || ''],
    [t('Members'), (g) => String(g.members)],
    [t('Created'), (g) => timeEl(g.created_at)],
  ], groups, { caption: t('Groups'), empty: t('There are no groups yet.') }));
  function filterBy(gid) {
    const sel = document.querySelector('#users-list select[name=group]');
    if (!sel) return;
    if (![...sel.options].some((o) => o.value === gid)) sel.append(h('option', { value: gid }, gid));
    sel.value = gid;
    sel.form.requestSubmit();
    sel.focus();
  }
  const form = h('form', { class: 'row' }, field(t('Group id'), id), field(t('Name'), name), error,
    h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'primary' }, t('Create or rename'))));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await api('PUT', `/v1/groups/${encodeURIComponent(id.value.trim())}`, { name: name.value.trim() || null });
      groups.splice(0, groups.length, ...(await api('GET', '/v1/groups')).items);
      draw();
      error.show(null);
      announce(t('Saved.'));
    } catch (err) {
      error.show(err);
    }
  });
  draw();
  fill(section, h('h2', {}, t('Groups')), list, h('h3', {}, t('Create or rename a group')), form);
}

async function categoryList(section) {
  const error = errorBox();
  const list = h('div');
  const editor = h('div');
  async function load() {
    const items = (await api('GET', '/v1/categories')).items;
    fill(list, table([
      [t('Id'), (c) => h('button', { type: 'button', class: 'link', onclick: () => edit(c) }, c.id)],
      [t('Name'), (c) => c.name || ''],
      [t('Critical'), (c) => (c.critical ? t('yes') : '')],
      [t('Email'), (c) => t(c.defaults?.email || '')],
      [t('Push'), (c) => (c.defaults?.web_push ? t('on') : t('off'))],
    ], items, { caption: t('Categories'), empty: t('There are no categories yet.') }));
  }
  function edit(c) {
    const id = h('input', { name: 'category_id', value: c?.id || '', readonly: c ? true : null, required: true });
    const name = h('input', { name: 'category_name', value: c?.name || '' });
    const icon = h('input', { name: 'icon', value: c?.icon || '' });
    const critical = checkbox(t('Critical: people cannot switch it off'), { name: 'critical', checked: c?.critical });
    const bypass = checkbox(t('Goes out during quiet hours'), { name: 'bypass', checked: c?.bypass_quiet_hours });
    const email = select([['instant', t('instant')], ['digest', t('digest')], ['off', t('off')]], { name: 'email', value: c?.defaults?.email || 'instant' });
    const push = checkbox(t('Browser push on by default'), { name: 'web_push', checked: c ? c.defaults?.web_push : true });
    const mobile = checkbox(t('Mobile push on by default'), { name: 'mobile_push', checked: c ? c.defaults?.mobile_push : true });
    const chat = checkbox(t('Chat on by default'), { name: 'chat', checked: c ? c.defaults?.chat : true });
    const err = errorBox();
    const f = h('form', { class: 'card editor' }, h('h3', { tabindex: -1 }, c ? t('Edit {id}', { id: c.id }) : t('New category')),
      field(t('Id'), id), field(t('Name'), name), field(t('Icon'), icon), critical, bypass,
      field(t('Email by default'), email), push, mobile, chat, err,
      h('div', { class: 'buttons' },
        h('button', { type: 'submit', class: 'primary' }, t('Save')),
        h('button', { type: 'button', class: 'secondary', onclick: () => fill(editor) }, t('Close')),
        c ? h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!window.confirm(t('Delete the category {id}?', { id: c.id }))) return;
          try {
            await api('DELETE', `/v1/categories/${encodeURIComponent(c.id)}`);
            fill(editor);
            announce(t('Deleted.'));
            load();
          } catch (e) {
            err.show(e);
          }
        } }, t('Delete')) : null));
    f.addEventListener('submit', async (e) => {
      e.preventDefault();
      const on = (x) => x.querySelector('input').checked;
      try {
        await api('PUT', `/v1/categories/${encodeURIComponent(id.value.trim())}`, {
          name: name.value.trim() || null,
          icon: icon.value.trim() || null,
          critical: on(critical),
          bypass_quiet_hours: on(bypass),
          defaults: { email: email.value, web_push: on(push), mobile_push: on(mobile), chat: on(chat) },
        });
        announce(t('Saved.'));
        fill(editor);
        load();
      } catch (e2) {
        err.show(e2);
      }
    });
    fill(editor, f);
    f.querySelector('h3').focus();
  }
  fill(section, h('h2', {}, t('Categories')), error, editor, list,
    h('button', { type: 'button', class: 'secondary', onclick: () => edit(null) }, t('New category')));
  try {
    await load();
  } catch (e) {
    error.show(e);
  }
}
