// Templates & rules: edit a template's texts per locale, save and preview
// it for every channel (the email in a sandboxed frame); a text that does
// not parse shows its error at its line. Rules are edited as JSON.

import { t } from '../i18n.js';
import { announce, api, emailFrame, errorBox, field, fill, h, heading, table, timeEl } from '../ui.js';

const FIELDS = ['title', 'body', 'email_subject', 'email_text', 'email_html', 'push_title', 'push_body', 'chat'];
const MULTILINE = new Set(['body', 'email_text', 'email_html', 'chat']);
const SAMPLE = {
  type: 'ticket.assigned',
  actor: { id: 'bo', name: 'Bo Berg' },
  entity: { type: 'ticket', id: '123' },
  data: { subject: 'Printer on floor 3 is jammed' },
};

export async function templates(root, { params }) {
  const list = h('section', { class: 'card' });
  const editor = h('section', { class: 'editor-area' });
  const rules = h('section', { class: 'card', id: 'rules' });
  fill(root, heading(t('Templates & rules')), list, editor, rules);

  async function loadList() {
    const items = (await api('GET', '/v1/templates')).items;
    const newId = h('input', { name: 'new_template', placeholder: 'ticket-assigned', pattern: '[a-z0-9._\\-]+' });
    const form = h('form', { class: 'row' }, field(t('New template id'), newId),
      h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'secondary' }, t('New template'))));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (newId.value.trim()) open({ id: newId.value.trim(), default_locale: 'en', locales: { en: { title: '' } } }, true);
    });
    fill(list, h('h2', {}, t('Templates')), table([
      [t('Id'), (tp) => h('a', { href: `#/templates/${encodeURIComponent(tp.id)}` }, tp.id)],
      [t('Locales'), (tp) => Object.keys(tp.locales).join(', ')],
      [t('Updated'), (tp) => timeEl(tp.updated_at)],
    ], items, { caption: t('Templates'), empty: t('There are no templates yet.') }), form);
    return items;
  }

  function open(tpl, isNew) {
    const locales = structuredClone(tpl.locales || {});
    const defaultLocale = h('input', { name: 'default_locale', value: tpl.default_locale || 'en' });
    const localeBlocks = h('div');
    const error = errorBox();
    const errorList = h('ul', { class: 'template-errors', 'aria-live': 'polite' });
    const sample = h('textarea', { name: 'sample', rows: 7, spellcheck: 'false' });
    sample.value = JSON.stringify(SAMPLE, null, 2);
    const previewLocale = h('input', { name: 'preview_locale', value: tpl.default_locale || 'en' });
    const preview = h('div', { class: 'template-preview', 'aria-live': 'polite' });
    const areas = {};

    function localeBlock(locale) {
      const block = h('fieldset', { class: 'locale', dataset: { locale } }, h('legend', {}, t('Locale {l}', { l: locale })));
      for (const f of FIELDS) {
        const input = MULTILINE.has(f)
          ? h('textarea', { name: `${locale}.${f}`, rows: f === 'email_html' ? 6 : 3, spellcheck: 'false', class: 'code-input' })
          : h('input', { name: `${locale}.${f}`, class: 'code-input' });
        input.value = locales[locale][f] || '';
        areas[`${locale}.${f}`] = input;
        const where = h('div', { class: 'error-at', hidden: true, dataset: { field: `${locale}.${f}` } });
        block.append(h('div', { class: 'tfield' }, field(f, input), where));
      }
      block.append(h('button', { type: 'button', class: 'link', onclick: () => {
        delete locales[locale];
        block.remove();
      } }, t('Remove this locale')));
      return block;
    }
    for (const locale of Object.keys(locales)) localeBlocks.append(localeBlock(locale));
    const addLocale = h('input', { name: 'add_locale', placeholder: 'de', size: 6 });

    function collect() {
      const out = {};
      for (const block of localeBlocks.querySelectorAll('fieldset.locale')) {
        const locale = block.dataset.locale;
        out[locale] = {};
        for (const f of FIELDS) {
          const v = areas[`${locale}.${f}`].value;
          if (v !== '') out[locale][f] = v;
        }
      }
      return out;
    }

    function clearErrors() {
      fill(errorList);
      for (const el of editor.querySelectorAll('.error-at')) {
        el.hidden = true;
        fill(el);
      }
      for (const a of Object.values(areas)) a.removeAttribute('aria-invalid');
    }

    /** Shows each template error under its text: the lines with the bad one marked, and the message. */
    function showTemplateErrors(errors) {
      let first = null;
      for (const e of errors) {
        const key = `${e.locale}.${e.field}`;
        const input = areas[key];
        const msg = t('{field}, line {line}, column {column}: {message}', { field: key, line: e.line, column: e.column, message: e.message });
        errorList.append(h('li', {}, input ? h('a', { href: '#', onclick: (ev) => { ev.preventDefault(); focusAt(input, e.line, e.column); } }, msg) : msg));
        if (!input) continue;
        input.setAttribute('aria-invalid', 'true');
        const where = editor.querySelector(`.error-at[data-field="${CSS.escape(key)}"]`);
        const lines = input.value.split('\n');
        const from = Math.max(1, e.line - 2);
        const to = Math.min(lines.length, e.line + 2);
        const code = h('ol', { class: 'code', start: from });
        for (let n = from; n <= to; n++) {
          code.append(h('li', { class: n === e.line ? 'bad' : null, dataset: { line: n } }, lines[n - 1] || ' ',
            n === e.line ? h('span', { class: 'caret', 'aria-hidden': 'true' }, `${' '.repeat(Math.max(0, e.column - 1))}^ ${e.message}`) : null));
        }
        where.append(h('p', { class: 'error-line', dataset: { line: e.line, column: e.column } }, t('Line {line}, column {column}: {message}', { line: e.line, column: e.column, message: e.message })), code);
        where.hidden = false;
        first ||= [input, e.line, e.column];
      }
      if (first) focusAt(...first);
    }

    function focusAt(input, line, column) {
      const lines = input.value.split('\n');
      let pos = 0;
      for (let i = 0; i < line - 1 && i < lines.length; i++) pos += lines[i].length + 1;
      pos += Math.max(0, column - 1);
      input.focus();
      input.setSelectionRange?.(pos, Math.min(input.value.length, pos + 1));
    }

    async function saveAndPreview(e) {
      e.preventDefault();
      clearErrors();
      error.show(null);
      fill(preview);
      try {
        await api('PUT', `/v1/templates/${encodeURIComponent(tpl.id)}`, { default_locale: defaultLocale.value.trim(), locales: collect() });
        announce(t('Saved.'));
        loadList();
      } catch (err) {
        if (err.code === 'invalid_template' && err.problem.template_errors) {
          error.show(t('The template does not parse; see the marked lines.'));
          showTemplateErrors(err.problem.template_errors);
        } else error.show(err);
        return;
      }
      let event;
      try {
        event = JSON.parse(sample.value || '{}');
      } catch (err) {
        error.show(t('The sample event is not JSON: {m}', { m: err.message }));
        return;
      }
      try {
        const p = await api('POST', `/v1/templates/${encodeURIComponent(tpl.id)}/preview`, { event, locale: previewLocale.value.trim() || null });
        fill(preview,
          h('h3', {}, t('In the app')), h('div', { class: 'pv-item' }, h('div', {}, h('strong', { class: 'pv-title' }, p.in_app.title || ''), p.in_app.body ? h('p', {}, p.in_app.body) : null)),
          h('h3', {}, t('Email')), h('p', {}, h('strong', {}, t('Subject: ')), p.email.subject),
          p.email.html ? emailFrame(p.email.html, t('Email preview')) : null,
          p.email.text ? h('pre', { class: 'email-text' }, p.email.text) : null,
          h('h3', {}, t('Browser push')), h('p', {}, h('strong', {}, p.web_push.title || ''), ' ', p.web_push.body || ''),
          h('h3', {}, t('Chat')), h('pre', {}, p.chat.text));
      } catch (err) {
        error.show(err);
      }
    }

    const form = h('form', { class: 'card template-editor', novalidate: true },
      h('h2', { tabindex: -1 }, isNew ? t('New template {id}', { id: tpl.id }) : t('Template {id}', { id: tpl.id })),
      h('p', { class: 'hint' }, t('Texts are minijinja templates over event, actor, entity, data and recipient, e.g. {{ actor.name }}.')),
      field(t('Default locale'), defaultLocale),
      localeBlocks,
      h('div', { class: 'row' }, field(t('Add a locale'), addLocale),
        h('div', { class: 'field actions' }, h('button', { type: 'button', class: 'secondary', onclick: () => {
          const l = addLocale.value.trim();
          if (!l || locales[l]) return;
          locales[l] = {};
          localeBlocks.append(localeBlock(l));
          addLocale.value = '';
        } }, t('Add')))),
      h('details', {}, h('summary', {}, t('Sample event for the preview')), field(t('Event (JSON)'), sample), field(t('Preview in locale'), previewLocale)),
      error, errorList,
      h('div', { class: 'buttons' },
        h('button', { type: 'submit', class: 'primary' }, t('Save and preview')),
        isNew ? null : h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!window.confirm(t('Delete the template {id}?', { id: tpl.id }))) return;
          try {
            await api('DELETE', `/v1/templates/${encodeURIComponent(tpl.id)}`);
            announce(t('Deleted.'));
            location.hash = '#/templates';
          } catch (err) {
            error.show(err);
          }
        } }, t('Delete'))),
      h('h3', {}, t('Preview')), preview);
    form.addEventListener('submit', saveAndPreview);
    fill(editor, form);
    form.querySelector('h2').focus();
  }

  const items = await loadList();
  if (params[0]) {
    const found = items.find((x) => x.id === params[0]);
    if (found) open(found, false);
    else open({ id: params[0], default_locale: 'en', locales: { en: { title: '' } } }, true);
  }
  await ruleList(rules);
}

async function ruleList(section) {
  const error = errorBox();
  const list = h('div');
  const editor = h('div');
  async function load() {
    const items = (await api('GET', '/v1/rules')).items;
    fill(list, table([
      [t('Id'), (r) => h('button', { type: 'button', class: 'link', onclick: () => edit(r) }, r.id)],
      [t('Event'), (r) => r.event],
      [t('Template'), (r) => r.template],
      [t('Enabled'), (r) => (r.enabled ? t('yes') : t('no'))],
      [t('Updated'), (r) => timeEl(r.updated_at)],
    ], items, { caption: t('Rules'), empty: t('There are no rules yet.') }));
  }
  function edit(rule) {
    const id = h('input', { name: 'rule_id', value: rule?.id || '', readonly: rule ? true : null });
    const json = h('textarea', { name: 'rule_json', rows: 12, spellcheck: 'false', class: 'code-input' });
    const { id: _id, created_at: _c, updated_at: _u, ...def } = rule || {
      event: 'ticket.assigned', template: 'ticket-assigned', to: { users: [], groups: [], creator: false, entity_subscribers: true }, enabled: true,
    };
    json.value = JSON.stringify(def, null, 2);
    const err = errorBox();
    const f = h('form', { class: 'card editor' }, h('h3', { tabindex: -1 }, rule ? t('Rule {id}', { id: rule.id }) : t('New rule')),
      field(t('Id'), id), field(t('Rule (JSON): event, when, template, category, to, subscribe, stack_key, enabled'), json), err,
      h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary' }, t('Save')),
        h('button', { type: 'button', class: 'secondary', onclick: () => fill(editor) }, t('Close')),
        rule ? h('button', { type: 'button', class: 'danger', onclick: async () => {
          try {
            await api('DELETE', `/v1/rules/${encodeURIComponent(rule.id)}`);
            fill(editor);
            load();
          } catch (e) {
            err.show(e);
          }
        } }, t('Delete')) : null));
    f.addEventListener('submit', async (e) => {
      e.preventDefault();
      let body;
      try {
        body = JSON.parse(json.value);
      } catch (e2) {
        return err.show(t('Not JSON: {m}', { m: e2.message }));
      }
      try {
        await api('PUT', `/v1/rules/${encodeURIComponent(id.value.trim())}`, body);
        announce(t('Saved.'));
        fill(editor);
        load();
      } catch (e3) {
        err.show(e3);
      }
    });
    fill(editor, f);
    f.querySelector('h3').focus();
  }
  fill(section, h('h2', {}, t('Rules')), error, editor, list, h('button', { type: 'button', class: 'secondary', onclick: () => edit(null) }, t('New rule')));
  try {
    await load();
  } catch (e) {
    error.show(e);
  }
}
