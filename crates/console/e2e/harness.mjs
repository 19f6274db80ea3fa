// What the console's two browser drivers (console.test.mjs, agent.test.mjs) share: Debian's Chromium started
// through playwright-core (headless, no sandbox as root), one page whose requests to any other origin are
// blocked and recorded, page errors and CSP violations recorded, "ok - ..." step lines, and the run's end
// (the same-origin and no-error checks, "not ok - ..." with exit code 1 on the first failure). It must never
// hold a test step of its own.

import { join } from 'node:path';
import { chromium } from 'playwright-core';

export function assert(cond, message) {
  if (!cond) throw new Error(`assertion failed: ${message}`);
}

/** `api(method, path, body, token)` against the API server at `urlBase`, JSON in and out. */
export function apiClient(urlBase, defaultToken) {
  return async (method, path, body, token = defaultToken) => {
    const r = await fetch(`${urlBase}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', Accept: 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null, headers: r.headers };
  };
}

/**
 * Starts Chromium and opens one page on `urlBase`'s origin, then runs `steps({ page, shot, step })`; `shot(name)`
 * saves `<shots>/<prefix><name>.png`. Ends the process: 0 when every step passed, no request left the origin
 * and no page error or CSP violation happened; 1 otherwise.
 */
export async function runInBrowser({ urlBase, shots, prefix = '', timeoutMs, timed = false }, steps) {
  const started = Date.now();
  const step = (name) => console.log(timed ? `ok - ${name} (${((Date.now() - started) / 1000).toFixed(1)}s)` : `ok - ${name}`);
  const foreign = [];
  const pageErrors = [];
  const browser = await chromium.launch({
    executablePath: process.env.BERTH_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  let exitCode = 0;
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
    const origin = new URL(urlBase).origin;
    await context.route('**/*', (route) => {
      const u = route.request().url();
      if (new URL(u).origin !== origin) {
        foreign.push(u);
        return route.abort();
      }
      return route.continue();
    });
    const page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy|Refused to/.test(m.text())) pageErrors.push(`console: ${m.text()}`);
    });
    page.setDefaultTimeout(timeoutMs);
    const shot = (name) => page.screenshot({ path: join(shots, `${prefix}${name}.png`), fullPage: true });
    await steps({ page, shot, step });
    assert(foreign.length === 0, `requests to other origins: ${foreign.join(', ')}`);
    assert(pageErrors.length === 0, pageErrors.join('\n'));
    step('no request left the API server origin; no page error or CSP violation');
  } catch (e) {
    console.error(`not ok - ${e.stack ?? e}`);
    if (pageErrors.length) console.error(pageErrors.join('\n'));
    exitCode = 1;
  } finally {
    await browser.close();
  }
  process.exit(exitCode);
}
