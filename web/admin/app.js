// Belfry console: the shell. Signs in (an admin account: a session cookie
// and a CSRF token), then shows one page per hash route (#/compose,
// #/deliveries …), each a module imported the first time it is opened.
// Every page talks to the public /v1 API with the session, like any client.

import { lang, setLang, t } from './i18n.js';
import { api, ApiError, announce, errorBox, field, fill, h, heading, session } from './ui.js';

const PAGES = [
  // [route, English name, module, export]
  ['compose', 'Compose', () => import('./pages/compose.js'), 'compose'],
  ['deliveries', 'Deliveries', () => import('./pages/deliveries.js'), 'deliveries'],
  ['users', 'Users & groups', () => import('./pages/users.js'), 'users'],
  ['templates', 'Templates & rules', () => import('./pages/templates.js'), 'templates'],
  ['keys', 'Sources & keys', () => import('./pages/keys.js'), 'keys'],
  ['webhooks', 'Webhooks', () => import('./pages/webhooks.js'), 'webhooks'],
  ['settings', 'Settings', () => import('./pages/settings.js'), 'settings'],
  ['admins', 'Admins', () => import('./pages/admins.js'), 'admins'],
  ['mailbox', 'Mailbox', () => import('./pages/mailbox.js'), 'mailbox'],
];
// Routes that are not in the menu: a notification's progress page.
const HIDDEN = [['notifications', () => import('./pages/compose.js'), 'notification']];

const view = document.getElementById('view');
const nav = document.getElementById('nav');
const menuToggle = document.getElementById('menu-toggle');
let renderId = 0;
let cleanup = null;

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [name, ...rest] = hash.split('/').map(decodeURIComponent);
  return { name: name || 'compose', params: rest };
}

export function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function chrome() {
  document.documentElement.lang = lang;
  document.title = t('Belfry console');
  document.getElementById('brand-name').textContent = t('Belfry console');
  document.getElementById('skip').textContent = t('Skip to content');
  document.getElementById('lang-label').textContent = t('Language');
  document.getElementById('lang').value = lang;
  const signOut = document.getElementById('sign-out');
  signOut.textContent = t('Sign out');
  signOut.hidden = !session.admin;
  menuToggle.textContent = t('Menu');
  menuToggle.hidden = !session.admin;
  nav.hidden = !session.admin;
  document.getElementById('who').textContent = session.admin ? session.admin.name || session.admin.email : '';
  const current = route().name;
  fill(nav, !session.admin ? [] : PAGES.map(([r, name]) => h('a', { href: `#/${r}`, 'aria-current': r === current ? 'page' : null }, t(name))));
}

async function render() {
  const id = ++renderId;
  cleanup?.();
  cleanup = null;
  chrome();
  nav.classList.remove('open');
  menuToggle.setAttribute('aria-expanded', 'false');
  if (!session.admin) return signIn();
  const { name, params } = route();
  const entry = PAGES.find(([r]) => r === name)?.slice(2) || HIDDEN.find(([r]) => r === name)?.slice(1);
  if (!entry) {
    fill(view, heading(t('Not found')), h('p', {}, t('There is no such page.')));
    return;
  }
  const [load, exportName] = entry;
  fill(view, h('p', { class: 'loading' }, t('Loading…')));
  try {
    const mod = await load();
    if (id !== renderId) return;
    const root = h('div', { class: `page page-${name}` });
    fill(view, root);
    const stop = await mod[exportName](root, { params, navigate });
    if (id !== renderId) {
      if (typeof stop === 'function') stop();
      return;
    }
    if (typeof stop === 'function') cleanup = stop;
    root.querySelector('h1')?.focus();
  } catch (e) {
    if (id !== renderId) return;
    if (e instanceof ApiError && e.status === 401) return;
    const box = errorBox();
    fill(view, heading(t('Something went wrong')), box);
    box.show(e);
  }
}

function signIn(message) {
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const error = errorBox();
  const button = h('button', { type: 'submit', class: 'primary' }, t('Sign in'));
  const form = h('form', { class: 'signin card', novalidate: true },
    h('h1', { tabindex: -1 }, t('Sign in to the Belfry console')),
    field(t('Email'), email),
    field(t('Password'), password),
    error,
    button,
    h('p', { class: 'hint' }, t('An administrator account is created with “belfry admin create” or by another administrator.')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!email.value || !password.value) {
      error.show(t('Enter your email address and password.'));
      (email.value ? password : email).focus();
      return;
    }
    button.disabled = true;
    try {
      const s = await api('POST', '/v1/admin/sessions', { email: email.value.trim(), password: password.value }, { quiet401: true });
      started(s);
      announce(t('Signed in.'));
      render();
    } catch (err) {
      if (err.code === 'invalid_credentials' || err.status === 401) error.show(t('Wrong email address or password.'));
      else if (err.code === 'locked_out' || err.status === 429) error.show(t('Too many failed attempts: this account is locked for a while. Try again later.'));
      else error.show(err);
      password.value = '';
      password.focus();
    } finally {
      button.disabled = false;
    }
  });
  fill(view, form);
  if (message) error.show(message);
  (message ? password : email).focus();
}

function started(s) {
  session.admin = s.admin;
  session.csrf = s.csrf_token;
}

session.onExpired = () => {
  if (!session.admin) return;
  session.admin = null;
  session.csrf = null;
  render();
  announce(t('Your session has ended. Sign in again.'), 'error');
};

async function signOut() {
  try {
    await api('DELETE', '/v1/admin/session');
  } catch {
    // signed out either way
  }
  session.admin = null;
  session.csrf = null;
  announce(t('Signed out.'));
  render();
}

document.getElementById('sign-out').addEventListener('click', signOut);
document.getElementById('lang').addEventListener('change', (e) => {
  setLang(e.target.value);
  render();
});
menuToggle.addEventListener('click', () => {
  const open = nav.classList.toggle('open');
  menuToggle.setAttribute('aria-expanded', String(open));
});
window.addEventListener('hashchange', render);

(async () => {
  try {
    started(await api('GET', '/v1/admin/session', undefined, { quiet401: true }));
  } catch {
    // not signed in
  }
  render();
})();
