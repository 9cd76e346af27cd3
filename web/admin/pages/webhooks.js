// Webhooks: the endpoints Belfry calls, their attempts (newest first),
// registering, rotating the secret (shown once) and removing.

import { t } from '../i18n.js';
import { announce, api, errorBox, field, fill, h, heading, qs, table, timeEl } from '../ui.js';

const EVENTS = ['action.submitted', 'delivery.failed', 'delivery.sent', 'notification.read'];

export async function webhooks(root, { params }) {
  const error = errorBox();
  const list = h('div');
  const detail = h('section', { 'aria-live': 'polite' });
  const id = h('input', { name: 'webhook_id', required: true, placeholder: 'crm' });
  const url = h('input', { name: 'url', type: 'url', required: true, placeholder: 'https://example.com/belfry' });
  const source = h('input', { name: 'source' });
  const boxes = EVENTS.map((ev) => h('input', { type: 'checkbox', name: 'event', value: ev, checked: ev === 'delivery.failed' }));
  const secretBox = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'card' }, h('h2', {}, t('Register a webhook')),
    h('div', { class: 'row' }, field(t('Id'), id), field(t('URL'), url), field(t('Only this source (optional)'), source)),
    h('fieldset', {}, h('legend', {}, t('Events')), EVENTS.map((ev, i) => h('label', { class: 'check' }, boxes[i], ' ', ev))),
    error, h('button', { type: 'submit', class: 'primary' }, t('Save')));

  function showSecret(w) {
    if (!w.secret) return;
    fill(secretBox, h('div', { class: 'card once', role: 'alert' },
      h('p', {}, t('The signing secret of {id}, shown this once:', { id: w.id })),
      h('input', { readonly: true, value: w.secret, class: 'secret', 'aria-label': t('Signing secret') })));
  }

  async function load() {
    const items = (await api('GET', '/v1/webhooks')).items;
    fill(list, table([
      [t('Id'), (w) => h('a', { href: `#/webhooks/${encodeURIComponent(w.id)}` }, w.id)],
      [t('URL'), (w) => w.url],
      [t('Events'), (w) => w.events.join(', ')],
      [t('State'), (w) => (w.enabled ? (w.failure_streak ? t('failing ({n} in a row)', { n: w.failure_streak }) : t('enabled')) : t('disabled: {r}', { r: w.disabled_reason || '' }))],
    ], items, { caption: t('Webhooks'), empty: t('There are no webhooks yet.') }));
  }

  async function attempts(wid) {
    try {
      const [w, page] = await Promise.all([
        api('GET', `/v1/webhooks/${encodeURIComponent(wid)}`),
        api('GET', `/v1/webhooks/${encodeURIComponent(wid)}/attempts${qs({ limit: 100 })}`),
      ]);
      fill(detail, h('h2', {}, t('Attempts of {id}', { id: w.id })),
        h('p', {}, w.url),
        h('div', { class: 'buttons' },
          h('button', { type: 'button', class: 'secondary', onclick: async () => {
            try {
              showSecret(await api('POST', `/v1/webhooks/${encodeURIComponent(wid)}/rotate-secret`));
              announce(t('New secret issued.'));
            } catch (e) {
              error.show(e);
            }
          } }, t('Rotate the secret')),
          h('button', { type: 'button', class: 'danger', onclick: async () => {
            if (!window.confirm(t('Remove the webhook {id}?', { id: w.id }))) return;
            try {
              await api('DELETE', `/v1/webhooks/${encodeURIComponent(wid)}`);
              announce(t('Removed.'));
              location.hash = '#/webhooks';
            } catch (e) {
              error.show(e);
            }
          } }, t('Remove'))),
        table([
          [t('At'), (a) => timeEl(a.at)],
          [t('Event'), (a) => a.event_type],
          [t('Attempt'), (a) => String(a.attempt)],
          [t('Status'), (a) => h('span', { class: `pill s-${a.status}` }, t(a.status))],
          [t('Response'), (a) => [a.response_code ? String(a.response_code) : '', a.response ? ` ${a.response.slice(0, 200)}` : '']],
          [t('Took'), (a) => `${a.duration_ms} ms`],
          [t('Next retry'), (a) => timeEl(a.next_retry_at)],
        ], page.items, { caption: t('Attempts'), empty: t('No attempts yet.') }));
    } catch (e) {
      error.show(e);
    }
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const w = await api('PUT', `/v1/webhooks/${encodeURIComponent(id.value.trim())}`, {
        url: url.value.trim(),
        events: boxes.filter((b) => b.checked).map((b) => b.value),
        source: source.value.trim() || null,
      });
      error.show(null);
      showSecret(w);
      announce(t('Saved.'));
      load();
    } catch (err) {
      error.show(err);
    }
  });

  fill(root, heading(t('Webhooks')), secretBox, detail, h('h2', {}, t('Webhooks')), list, form);
  await load();
  if (params[0]) await attempts(params[0]);
}
