// Belfry console: the helpers every page uses. Elements are built with
// `h()`, which sets text with textContent and never parses markup: a
// producer's or a user's string is always shown as text. Email HTML goes
// only into `emailFrame()`, a sandboxed frame that runs no script.

import { t } from './i18n.js';

/** Builds an element: h('button', { class: 'x', onclick }, 'text', child…). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked' || k === 'selected' || k === 'disabled' || k === 'multiple' || k === 'required') el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's content. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
/** A labelled control: the label names the input (for screen readers and clicks). */
export function field(label, input, hint) {
  input.id ||= `f${++uid}`;
  const hintEl = hint ? h('small', { class: 'hint', id: `${input.id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: input.id }, label), input, hintEl);
}

export function checkbox(label, attrs = {}) {
  const input = h('input', { type: 'checkbox', ...attrs });
  return h('label', { class: 'check' }, input, ' ', label);
}

export function select(options, attrs = {}) {
  return h('select', attrs, options.map(([value, label]) => h('option', { value, selected: value === attrs.value }, label)));
}

/** The console's session: the CSRF token every state change sends back. */
export const session = { csrf: null, admin: null, onExpired: null };

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.code = this.problem.code;
  }
}

/**
 * Calls the public API with the session cookie; every state change sends
 * the CSRF token. A JSON body is sent as JSON, a string as it is
 * (with `type`). Answers the parsed JSON (null for 204).
 */
export async function api(method, path, body, { type, quiet401 } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && session.csrf) headers['X-CSRF-Token'] = session.csrf;
  let payload;
  if (body !== undefined) {
    if (typeof body === 'string') {
      payload = body;
      headers['Content-Type'] = type || 'text/plain';
    } else {
      payload = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  } catch {
    throw new ApiError(0, { code: 'network', detail: t('Belfry could not be reached. Check the connection and try again.') });
  }
  const text = await res.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = { detail: text };
    }
  }
  if (!res.ok) {
    if (res.status === 401 && !quiet401 && session.onExpired) session.onExpired();
    throw new ApiError(res.status, json);
  }
  return json;
}

/** Query string of the non-empty values. */
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** Says something to screen readers (and shows it) in the page's live region. */
export function announce(message, kind = 'ok') {
  const el = document.getElementById('status');
  if (!el) return;
  el.className = `status ${kind}`;
  el.textContent = message;
  clearTimeout(announce.timer);
  announce.timer = setTimeout(() => {
    if (el.textContent === message) el.textContent = '';
  }, 8000);
}

/** An error as text, with the field errors of a 422. */
export function errorText(e) {
  const p = e?.problem || {};
  const parts = [p.detail || e?.message || String(e)];
  for (const fe of p.errors || []) parts.push(`${fe.field}: ${fe.message}`);
  return [...new Set(parts)].join(' — ');
}

/** A box that shows an error (role=alert) or nothing. */
export function errorBox() {
  const el = h('div', { class: 'error', role: 'alert', hidden: true });
  el.show = (e) => {
    el.hidden = !e;
    el.textContent = e ? (typeof e === 'string' ? e : errorText(e)) : '';
  };
  return el;
}

const dateFormats = new Map();
/** A timestamp in the console's language. */
export function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const lang = document.documentElement.lang || 'en';
  if (!dateFormats.has(lang)) dateFormats.set(lang, new Intl.DateTimeFormat(lang, { dateStyle: 'short', timeStyle: 'medium' }));
  return dateFormats.get(lang).format(d);
}

export function timeEl(iso) {
  return h('time', { datetime: iso || '' }, when(iso));
}

/** A table: columns are [header, (row) => cell content]. */
export function table(columns, rows, { caption, empty } = {}) {
  if (!rows.length) return h('p', { class: 'empty' }, empty || t('Nothing here yet.'));
  return h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': caption || '' },
    h('table', {},
      caption ? h('caption', { class: 'sr' }, caption) : null,
      h('thead', {}, h('tr', {}, columns.map(([name]) => h('th', { scope: 'col' }, name)))),
      h('tbody', {}, rows.map((row) => h('tr', {}, columns.map(([name, cell]) => h('td', { 'data-label': name }, cell(row))))))));
}

/**
 * Email HTML in a sandboxed frame: no `allow-scripts`, no
 * `allow-same-origin`, so the email runs nothing and reaches nothing of the
 * console (it also inherits the console's Content-Security-Policy).
 */
export function emailFrame(html, title) {
  const frame = h('iframe', { class: 'email', sandbox: '', title: title || t('Email'), referrerpolicy: 'no-referrer' });
  frame.srcdoc = html || '';
  return frame;
}

/** An ISO timestamp from a datetime-local input's value ('' stays ''). */
export function isoFromLocal(value) {
  if (!value) return '';
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

export function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** A page heading that takes the focus when a page opens (focus order for keyboards). */
export function heading(text) {
  return h('h1', { tabindex: -1, class: 'page-title' }, text);
}

/** Splits a list typed with commas, semicolons, spaces or new lines. */
export function splitList(text) {
  return String(text || '').split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
}
