// Harbor Desk, the fictional help desk of Belfry's demo mode. It shows what
// a host application does: get a user token from its own backend (here
// POST /demo/token), give <belfry-inbox> a tokenProvider, route its
// belfry:open events itself, and tell Belfry when the user views an entity.

const view = document.getElementById('view');
const status = document.getElementById('trigger-status');
const search = document.getElementById('search');
const localeSelect = document.getElementById('locale');

async function demoToken() {
  const response = await fetch('/demo/token', { method: 'POST' });
  if (!response.ok) throw new Error(`demo token: HTTP ${response.status}`);
  return (await response.json()).token;
}

const tickets = await fetch('/demo/tickets.json').then((r) => r.json());
const savedLocale = localStorage.getItem('harbor-locale') || '';
localeSelect.value = savedLocale;

function el(tag, props, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null) continue;
    if (k === 'text') node.textContent = v;
    else if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  node.append(...kids.filter((kid) => kid != null));
  return node;
}

function createInbox(mode) {
  const inbox = document.createElement('belfry-inbox');
  if (mode) inbox.setAttribute('mode', mode);
  else inbox.setAttribute('page-url', '/notifications');
  if (savedLocale) inbox.setAttribute('locale', savedLocale);
  inbox.tokenProvider = demoToken;
  // A single-page application routes links to itself instead of reloading.
  inbox.addEventListener('belfry:open', (event) => {
    const url = event.detail.url && new URL(event.detail.url);
    if (url && url.origin === location.origin && url.pathname.startsWith('/tickets/')) {
      event.preventDefault();
      navigate(url.pathname);
    }
  });
  return inbox;
}

const onPhonePage = location.pathname === '/notifications';
const inbox = createInbox(onPhonePage ? 'page' : null);
if (!onPhonePage) document.getElementById('bell-slot').append(inbox);

localeSelect.addEventListener('change', () => {
  localStorage.setItem('harbor-locale', localeSelect.value);
  if (localeSelect.value) inbox.setAttribute('locale', localeSelect.value);
  else inbox.removeAttribute('locale');
});

for (const button of document.querySelectorAll('[data-kind]')) {
  button.addEventListener('click', async () => {
    button.disabled = true;
    status.textContent = '';
    try {
      const response = await fetch('/demo/trigger', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ kind: button.dataset.kind }),
      });
      const body = await response.json();
      status.textContent = response.ok
        ? `Sent ${body.ids.length === 1 ? 'one notification' : `${body.ids.length} notifications`}.`
        : `Could not send: ${body.detail}`;
    } catch (e) {
      status.textContent = `Could not send: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  });
}

function navigate(path) {
  history.pushState(null, '', path);
  render();
}

window.addEventListener('popstate', render);
document.addEventListener('click', (event) => {
  const a = event.target.closest && event.target.closest('a[data-route]');
  if (!a || event.ctrlKey || event.metaKey || event.shiftKey) return;
  event.preventDefault();
  navigate(a.getAttribute('href'));
});
search.addEventListener('input', () => {
  if (location.pathname !== '/') navigate('/');
  else render();
});

function ticketList() {
  const q = search.value.trim().toLowerCase();
  const rows = tickets
    .filter((t) => !q || `${t.id} ${t.subject} ${t.customer} ${t.company}`.toLowerCase().includes(q))
    .map((t) =>
      el('tr', {},
        el('td', {}, el('a', { href: `/tickets/${t.id}`, 'data-route': '', text: `#${t.id}` })),
        el('td', {}, el('a', { href: `/tickets/${t.id}`, 'data-route': '', text: t.subject })),
        el('td', { text: `${t.customer}, ${t.company}` }),
        el('td', {}, el('span', { class: `pill ${t.status.toLowerCase()}`, text: t.status })),
        el('td', { text: t.priority }),
      ),
    );
  return [
    el('h1', { text: 'Open tickets' }),
    el('p', { class: 'sub', text: 'Support queue · Berlin office' }),
    el('table', { class: 'tickets' },
      el('thead', {}, el('tr', {}, ...['Ticket', 'Subject', 'Customer', 'Status', 'Priority'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, ...rows),
    ),
    rows.length ? null : el('p', { class: 'sub', text: 'No ticket matches your search.' }),
  ];
}

function ticketView(id) {
  const t = tickets.find((x) => String(x.id) === id);
  if (!t) return [el('h1', { text: 'Ticket not found' }), el('p', {}, el('a', { href: '/', 'data-route': '', text: 'Back to the tickets' }))];
  // The user looks at this ticket: its notifications are read now (in every tab).
  inbox.markEntityRead('ticket', String(t.id)).catch(() => {});
  return [
    el('p', {}, el('a', { href: '/', 'data-route': '', text: '← All tickets' })),
    el('h1', { text: `#${t.id} ${t.subject}` }),
    el('p', { class: 'sub' }, el('span', { class: `pill ${t.status.toLowerCase()}`, text: t.status }), ` ${t.customer}, ${t.company} · priority ${t.priority.toLowerCase()}`),
    el('article', { class: 'message' }, el('h2', { text: t.customer }), el('p', { text: t.description })),
    el('label', { class: 'reply' }, 'Reply', el('textarea', { rows: '4', placeholder: `Write to ${t.customer}…` })),
  ];
}

function render() {
  const path = location.pathname;
  for (const a of document.querySelectorAll('[data-nav]')) {
    const current = (a.dataset.nav === 'notifications') === (path === '/notifications');
    if (current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  let content;
  if (path === '/notifications') content = [inbox];
  else if (path.startsWith('/tickets/')) content = ticketView(decodeURIComponent(path.slice('/tickets/'.length)));
  else content = ticketList();
  if (path !== '/notifications' || !view.contains(inbox)) view.replaceChildren(...content.filter(Boolean));
}

render();
