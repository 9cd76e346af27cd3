// Belfry console: English and German. Pages write their English text and
// `t()` looks it up in the German dictionary when the console speaks German
// (the browser's language, or the switch in the header, remembered).
// Placeholders: t('Will reach {n} people', { n: 3 }).

import { DE } from './de.js';

const KEY = 'belfry-admin-lang';

export let lang = pick();

function pick() {
  let stored = null;
  try {
    stored = localStorage.getItem(KEY);
  } catch {
    // storage may be off
  }
  if (stored === 'en' || stored === 'de') return stored;
  return (navigator.languages || [navigator.language || 'en']).some((l) => /^de\b/i.test(l)) ? 'de' : 'en';
}

export function setLang(value) {
  lang = value === 'de' ? 'de' : 'en';
  try {
    localStorage.setItem(KEY, lang);
  } catch {
    // not remembered
  }
  document.documentElement.lang = lang;
}

export function t(text, vars) {
  let s = (lang === 'de' && DE[text]) || text;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  return s;
}

/** Names of channels, statuses and reasons, as shown. */
export const label = (kind, value) => t(LABELS[kind]?.[value] || value);

const LABELS = {
  channel: { in_app: 'In the app', email: 'Email', web_push: 'Browser push', mobile_push: 'Mobile push', chat: 'Chat' },
  status: {
    queued: 'queued', scheduled: 'scheduled', sent: 'sent', failed: 'failed', skipped: 'skipped',
    cancelled: 'cancelled', held: 'held', digested: 'digested', suppressed: 'suppressed',
  },
  reason: {
    master_switch: 'the person switched everything off',
    channel_off: 'the person switched this channel off',
    category_off: 'the person switched this category off',
    source_off: 'the person switched this source off',
    seen_in_app: 'already seen in the app',
    no_address: 'no address for this channel',
    rate_limited: 'rate limited',
  },
};
