// The harness of the browser tests: the real `belfry` binary on a free port
// over a temporary data directory, a small host application on another
// origin that embeds the widget the way a product would (its backend issues
// user tokens with the admin key), and Debian's Chromium driven by
// playwright-core.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '../..');
export const screenshots = path.join(here, 'screenshots');

export const ADMIN_KEY = 'bfy_sk_browser-tests-0123456789abcdefghijklmnop';

export function binary() {
  const candidates = [
    process.env.BELFRY_BIN,
    process.env.CARGO_TARGET_DIR && path.join(process.env.CARGO_TARGET_DIR, 'debug', 'belfry'),
    path.join(repo, 'target', 'debug', 'belfry'),
  ].filter(Boolean);
  const found = candidates.find((c) => fs.existsSync(c));
  if (!found) throw new Error(`no belfry binary (tried ${candidates.join(', ')}); run cargo build first`);
  return found;
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a truthy value. */
export async function until(check, { timeout = 10000, interval = 50, what = 'condition' } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await sleep(interval);
  }
}

/** A running Belfry. */
export class Belfry {
  constructor({ demo = false, env = {} } = {}) {
    this.demo = demo;
    this.env = env;
    this.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'belfry-browser-'));
    this.log = '';
  }

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    this.port ||= await freePort();
    const args = ['serve', '--listen', `127.0.0.1:${this.port}`, '--data-dir', this.dataDir, '--sqlite-fsync', 'false'];
    if (this.demo) args.push('--demo');
    const proc = spawn(binary(), args, {
      env: { ...process.env, BELFRY_ADMIN_KEY: ADMIN_KEY, BELFRY_LOG: 'warn,belfry=info', NO_COLOR: '1', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    this.exited = exited;
    const from = this.log.length;
    let timer;
    await new Promise((resolve, reject) => {
      const onData = (chunk) => {
        this.log += chunk;
        if (this.log.includes('Belfry listening on', from)) resolve();
      };
      proc.stdout.on('data', onData);
      proc.stderr.on('data', onData);
      exited.then((code) => reject(new Error(`belfry exited with ${code}:\n${this.log}`)));
      timer = setTimeout(() => reject(new Error(`belfry did not start:\n${this.log}`)), 20000);
    }).finally(() => clearTimeout(timer));
  }

  /** Stops gracefully (SIGTERM), like an operator restarting it. */
  async stop() {
    if (!this.proc) return;
    const proc = this.proc;
    this.proc = null;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10000);
    await this.exited;
    clearTimeout(timer);
  }

  async dispose() {
    await this.stop();
    fs.rmSync(this.dataDir, { recursive: true, force: true });
  }

  async call(method, urlPath, body, bearer = ADMIN_KEY) {
    const res = await fetch(this.base + urlPath, {
      method,
      headers: { Authorization: `Bearer ${bearer}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    const json = text ? JSON.parse(text) : null;
    if (!res.ok) throw new Error(`${method} ${urlPath}: ${res.status} ${text}`);
    return json;
  }

  putUser(id, body = {}) {
    return this.call('PUT', `/v1/users/${id}`, body);
  }

  async token(user, ttl = 3600) {
    return (await this.call('POST', `/v1/users/${user}/tokens`, { ttl_seconds: ttl })).token;
  }

  /** Sends a notification to one user; returns the receipt. */
  notify(user, fields) {
    return this.call('POST', '/v1/notifications', { to: { users: [user] }, ...fields });
  }

  batch(user, list) {
    return this.call('POST', '/v1/notifications/batch', {
      notifications: list.map((fields) => ({ to: { users: [user] }, ...fields })),
    });
  }

  inbox(user, query = '') {
    return this.call('GET', `/v1/users/${user}/notifications${query}`);
  }

  archive(user, id) {
    return this.call('POST', `/v1/users/${user}/notifications/${id}/archive`);
  }

  /** `{unread, unseen}` (the seq they are as of left out). */
  async counts(user) {
    const { unread, unseen } = await this.call('GET', `/v1/users/${user}/counts`);
    return { unread, unseen };
  }

  /** The value of a gauge or counter without labels, from /metrics. */
  async metric(name) {
    const text = await (await fetch(`${this.base}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line ? Number(line.split(' ')[1]) : 0;
  }
}

const FAVICON = '<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32"><rect width="32" height="32" rx="6" fill="#334155"/></svg>';

/**
 * A host application on its own origin. `/app?user=…` is a page that embeds
 * the widget; its backend (`/token?user=…`) issues user tokens with the
 * admin key, as a real product's backend would. `/landing/…` is where
 * notification links lead.
 */
export class HostApp {
  constructor(belfry) {
    this.belfry = belfry;
    this.tokenRequests = 0;
  }

  async start() {
    this.server = http.createServer((req, res) => this.handle(req, res).catch((e) => {
      res.writeHead(500);
      res.end(String(e));
    }));
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${this.server.address().port}`;
  }

  async stop() {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  /** The URL of the host page for `user` with widget attributes. */
  url(user, { token, attrs = {}, provider = false, title = 'My Desk', preventOpen = false } = {}) {
    const q = new URLSearchParams({ user, title });
    if (token) q.set('token', token);
    if (provider) q.set('provider', '1');
    if (preventOpen) q.set('prevent', '1');
    for (const [k, v] of Object.entries(attrs)) q.set(`a.${k}`, v);
    return `${this.base}/app?${q}`;
  }

  async handle(req, res) {
    const url = new URL(req.url, this.base);
    const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
    if (url.pathname === '/favicon.svg') {
      res.writeHead(200, { 'Content-Type': 'image/svg+xml' });
      return res.end(FAVICON);
    }
    if (url.pathname === '/token') {
      this.tokenRequests++;
      const token = await this.belfry.token(url.searchParams.get('user'));
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return res.end(JSON.stringify({ token }));
    }
    if (url.pathname === '/belfry-sw.js') {
      // The one line a host serves so that Belfry's service worker runs on its origin.
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' });
      return res.end(`importScripts(${JSON.stringify(`${this.belfry.base}/widget/sw.js`)});\n`);
    }
    if (url.pathname.startsWith('/landing/')) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      return res.end(`<!doctype html><title>Landed</title><h1>Landed on ${esc(url.pathname)}</h1>`);
    }
    if (url.pathname === '/app') {
      const p = url.searchParams;
      const user = p.get('user');
      const attrs = [...p.entries()]
        .filter(([k]) => k.startsWith('a.'))
        .map(([k, v]) => ` ${esc(k.slice(2))}="${esc(v)}"`)
        .join('');
      const token = p.get('token') ? ` token="${esc(p.get('token'))}"` : '';
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      return res.end(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(p.get('title'))}</title>
<link rel="icon" href="/favicon.svg">
<script type="module" src="${this.belfry.base}/widget/belfry.js"></script>
</head><body>
<header style="display:flex;justify-content:flex-end;padding:8px 16px;background:#1e293b;color:#fff">
<belfry-inbox id="inbox" server="${this.belfry.base}"${token}${attrs}></belfry-inbox></header>
<main><h1>My Desk</h1><p>A host application.</p></main>
<script type="module">
  const inbox = document.getElementById('inbox');
  window.events = [];
  for (const type of ['belfry:open', 'belfry:action', 'belfry:answer', 'belfry:notification', 'belfry:counts', 'belfry:connection'])
    inbox.addEventListener(type, (e) => window.events.push({ type, detail: JSON.parse(JSON.stringify(e.detail)) }));
  ${p.get('provider') ? `inbox.tokenProvider = async () => (await (await fetch('/token?user=${encodeURIComponent(user)}')).json()).token;` : ''}
  ${p.get('prevent') ? `inbox.addEventListener('belfry:open', (e) => e.preventDefault());` : ''}
</script>
</body></html>`);
    }
    res.writeHead(404);
    res.end('not found');
  }
}

/** Chromium with a fresh profile. */
export async function launch({ viewport = { width: 1280, height: 800 }, hasTouch = false } = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'belfry-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport,
    hasTouch,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  context.setDefaultTimeout(10000);
  const close = context.close.bind(context);
  context.close = async () => {
    await close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return context;
}

/**
 * Headless Chromium reports every tab as visible. Tests that need a hidden
 * tab switch `document.visibilityState` through this hook, which also fires
 * the `visibilitychange` event the widget listens to.
 */
export async function emulateVisibility(context) {
  await context.addInitScript(() => {
    let state = 'visible';
    Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true, get: () => state });
    Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get: () => state === 'hidden' });
    window.setVisibility = (value) => {
      state = value;
      document.dispatchEvent(new Event('visibilitychange'));
    };
  });
}

/** Collects the page's script errors, so that a test can assert there were none. */
export function watchErrors(page) {
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  return errors;
}

export async function shot(page, name) {
  fs.mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: path.join(screenshots, `${name}.png`), animations: 'disabled' });
}

/** Waits until the widget on `page` has its stream (its own or the leader tab's). */
export async function live(page) {
  await page.waitForSelector('belfry-inbox[data-connection="live"]', { state: 'attached' });
}

export const toasts = (page) => page.locator('belfry-inbox .toast');
export const items = (page) => page.locator('belfry-inbox .item');
