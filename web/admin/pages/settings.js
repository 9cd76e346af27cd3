// Settings: retention (changed at run time, for every node) and the
// default preferences (what a person without choices of their own gets).

import { label, t } from '../i18n.js';
import { announce, api, checkbox, errorBox, field, fill, h, heading } from '../ui.js';

const NAMES = {
  retention_days: 'Days read or archived inbox items are kept (0: forever)',
  delivery_log_retention_days: 'Days delivery-log lines are kept (0: forever)',
  mailbox_retention_days: 'Days development-mailbox emails are kept (0: forever)',
};

export async function settings(root) {
  const retention = h('section', { class: 'card' });
  const defaults = h('section', { class: 'card' });
  fill(root, heading(t('Settings')), retention, defaults);
  await Promise.all([retentionForm(retention), defaultsForm(defaults)]);
}

async function retentionForm(section) {
  const error = errorBox();
  let current;
  try {
    current = await api('GET', '/v1/settings');
  } catch (e) {
    fill(section, h('h2', {}, t('Retention')), error);
    error.show(e);
    return;
  }
  const inputs = {};
  const fields = Object.entries(current).filter(([, v]) => v === null || typeof v === 'number').map(([k, v]) => {
    inputs[k] = h('input', { type: 'number', min: 0, step: 1, name: k, value: v ?? '', inputmode: 'numeric' });
    return field(t(NAMES[k] || k), inputs[k], v === null ? t('Empty: the server’s configuration.') : null);
  });
  const form = h('form', {}, fields, error, h('button', { type: 'submit', class: 'primary' }, t('Save')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = {};
    for (const [k, input] of Object.entries(inputs)) body[k] = input.value === '' ? null : Number(input.value);
    try {
      const saved = await api('PUT', '/v1/settings', body);
      for (const [k, input] of Object.entries(inputs)) if (saved && k in saved) input.value = saved[k] ?? '';
      error.show(null);
      announce(t('Saved.'));
    } catch (err) {
      error.show(err);
    }
  });
  fill(section, h('h2', {}, t('Retention')), form);
}

async function defaultsForm(section) {
  const error = errorBox();
  const d = await api('GET', '/v1/preferences/defaults');
  const enabled = checkbox(t('Notifications beyond the app are on'), { name: 'enabled', checked: d.enabled });
  const channels = Object.keys(d.channels).map((c) => [c, checkbox(label('channel', c), { name: `channel_${c}`, checked: d.channels[c] })]);
  const digest = h('input', { type: 'time', name: 'digest_time', value: d.digest?.time || '18:00' });
  const form = h('form', {},
    h('p', {}, t('What a person gets until they choose for themselves; their own choices stay and win. Per-category defaults are set with each category.')),
    enabled,
    h('fieldset', {}, h('legend', {}, t('Channels')), channels.map(([, el]) => el)),
    field(t('Daily digest at'), digest),
    error, h('button', { type: 'submit', class: 'primary' }, t('Save')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await api('PUT', '/v1/preferences/defaults', {
        enabled: enabled.querySelector('input').checked,
        channels: Object.fromEntries(channels.map(([c, el]) => [c, el.querySelector('input').checked])),
        digest: { time: digest.value },
      });
      error.show(null);
      announce(t('Saved.'));
    } catch (err) {
      error.show(err);
    }
  });
  fill(section, h('h2', {}, t('Default preferences')), form);
}
