import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../src/paths.js';
import { helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { deployAndWait } from './helpers.js';

/**
 * The dashboard in a real browser: Debian's chromium driven by playwright-core, against a real
 * daemon deploying the example app. One page goes through the whole story in order, as a person
 * would: refused with a wrong token, logged in, a deploy started and watched, a rollback pressed.
 */

const CHROMIUM = '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available) {
  const message = `${CHROMIUM} is missing (Debian package chromium); run scripts/install-test-deps.sh`;
  if (process.env.CI === 'true') throw new Error(`CI=true and ${message}`);
  process.stderr.write(`skipping the dashboard's browser tests: ${message}\n`);
}

/**
 * The README's picture of the service page. Written when missing or with TEAL_UPDATE_SCREENSHOT=1
 * only: it shows times and ports, so rewriting it on every run would leave the tree always dirty.
 */
const SCREENSHOT = path.join(packageRoot(), 'docs/dashboard.png');
const writeScreenshot = !existsSync(SCREENSHOT) || process.env.TEAL_UPDATE_SCREENSHOT === '1';

describe.skipIf(!available)('the dashboard in headless Chromium', () => {
  let daemon: TestDaemon;
  let browser: Browser;
  let page: Page;
  let base: string;
  const traffic = new AbortController();
  /** Evaluates an expression in the page: a string, since the tests compile without the DOM's types. */
  const inPage = <T = unknown>(expression: string) => page.evaluate(expression) as Promise<T>;

  beforeAll(async () => {
    daemon = await startTestDaemon({ services: `  web:\n${helloService()}` });
    base = daemon.info.api;
    const first = await deployAndWait(daemon.client, 'web', 'v1');
    expect(first.state).toBe('done');
    // A trickle of users through the data plane, so the page has request rates to show.
    void (async () => {
      while (!traffic.signal.aborted) {
        await fetch(daemon.info.proxy, { signal: traffic.signal }).then(
          (r) => r.arrayBuffer(),
          () => undefined,
        );
        await new Promise((r) => setTimeout(r, 40));
      }
    })();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    page.setDefaultTimeout(15_000);
  });

  afterAll(async () => {
    traffic.abort();
    await browser?.close();
    await daemon?.cleanup();
  });

  it('refuses a wrong token and sets no cookie', async () => {
    await page.goto(`${base}/`);
    expect(new URL(page.url()).pathname).toBe('/login');
    await page.fill('#token', 'not-the-token');
    await page.click('button[type=submit]');
    await expect.poll(() => page.textContent('#login-error')).toContain('Wrong token');
    expect(new URL(page.url()).pathname).toBe('/login');
    expect(await page.context().cookies()).toEqual([]);
  });

  it('logs in with the token and shows the live colour', async () => {
    await page.fill('#token', daemon.token);
    await page.fill('#actor', 'alice');
    await page.click('button[type=submit]');
    await page.waitForURL(`${base}/services`);
    const [cookie] = await page.context().cookies();
    expect(cookie).toMatchObject({ name: 'teal_session', httpOnly: true, sameSite: 'Strict' });
    expect(cookie!.value).not.toContain(daemon.token);

    await page.click('#services a:text("web")');
    await page.waitForURL(`${base}/services/web`);
    await expect.poll(() => page.textContent('#live-colour')).toBe('blue');
    const live = page.locator('#slots [data-live="true"]');
    expect(await live.getAttribute('data-slot')).toBe('blue');
    expect(await live.locator('.slot-version').textContent()).toBe('v1');
  });

  it('starts a deploy from the page, its steps arrive live and the live colour changes without a reload', async () => {
    // Marks this document: a reload would lose the mark.
    await inPage(`(() => {
      window.tealMark = 1;
      window.stepTimes = [];
      new MutationObserver((records) => {
        for (const r of records) for (const _ of r.addedNodes) window.stepTimes.push(performance.now());
      }).observe(document.getElementById('steps'), { childList: true });
    })()`);
    await page.fill('#deploy-version', 'v2');
    await page.click('#deploy-form button[type=submit]');
    await expect.poll(() => page.textContent('#confirm-text')).toContain('Deploy web v2?');
    await page.click('#confirm-ok');

    await page.waitForSelector('#steps li[data-step="switch"][data-status="done"]');
    await expect.poll(() => page.textContent('#live-colour')).toBe('green');
    await expect
      .poll(() => page.textContent('#deployment-summary'))
      .toMatch(/deploy v2, asked by alice.*: done/);
    expect(await inPage('window.tealMark')).toBe(1);
    const times = await inPage<number[]>('window.stepTimes');
    // Steps came one after another over the stream, not as one finished list.
    expect(times.length).toBeGreaterThanOrEqual(5);
    expect(times[times.length - 1]! - times[0]!).toBeGreaterThan(50);
    expect(await page.locator('#steps li[data-step="health"]').count()).toBeGreaterThan(0);
    await expect
      .poll(() => page.locator('#history tbody tr').first().textContent())
      .toMatch(/deployv1 → v2donealice \(dashboard\)/);

    // The request rate of the live slot, from the data plane, for the README's picture.
    await expect
      .poll(() => page.textContent('[data-slot="green"] .slot-rate'), { timeout: 10_000 })
      .toMatch(/^[1-9]/);
    if (writeScreenshot) {
      mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
    }
  });

  it('asks before acting: Escape cancels a rollback and nothing changes', async () => {
    await page.click('#rollback-form button[type=submit]');
    expect(await inPage('document.activeElement.id')).toBe('confirm-cancel');
    await page.keyboard.press('Escape');
    expect(await page.isVisible('#confirm')).toBe(false);
    const status = await daemon.client.request<{ live: string }>('GET', '/v1/services/web');
    expect(status.live).toBe('green');
  });

  it('rolls back from the page and shows the switch to the warm slot', async () => {
    await page.selectOption('#rollback-to', '');
    await page.click('#rollback-form button[type=submit]');
    await page.click('#confirm-ok');
    await expect.poll(() => page.textContent('#live-colour')).toBe('blue');
    await expect.poll(() => page.textContent('#deployment-summary')).toMatch(/rollback v1.*: done/);
    expect(await page.locator('#steps li[data-step="switch"]').count()).toBeGreaterThan(0);
    expect(await page.locator('[data-slot="blue"] .slot-version').textContent()).toBe('v1');
    expect(await inPage('window.tealMark')).toBe(1);
  });

  it('rolls back to a chosen release', async () => {
    await expect
      .poll(() => page.locator('#rollback-to option').allTextContents())
      .toContain('release 2 (v2)');
    await page.selectOption('#rollback-to', '2');
    await page.click('#rollback-form button[type=submit]');
    await expect.poll(() => page.textContent('#confirm-text')).toContain('back to release 2?');
    await page.click('#confirm-ok');
    await expect.poll(() => page.textContent('#live-colour')).toBe('green');
    expect(await page.locator('[data-slot="green"] .slot-version').textContent()).toBe('v2');
    await page.click('#rollback-form button[type=submit]');
    await page.click('#confirm-ok');
    await expect.poll(() => page.textContent('#live-colour')).toBe('blue');
  });

  it('makes a preview link for the warm slot that opens it through the public port', async () => {
    await expect.poll(() => page.isDisabled('#preview-link')).toBe(false);
    await page.click('#preview-link');
    await expect
      .poll(() => page.inputValue('#preview-url'))
      .toMatch(/\/\.teal\/preview\?grant=[0-9a-f]{64}$/);
    const link = await page.inputValue('#preview-url');
    expect(link.startsWith(`${daemon.info.proxy}/`)).toBe(true);
    const opened = await fetch(link, { redirect: 'manual' });
    expect(opened.status).toBe(302);
    const cookie = (opened.headers.get('set-cookie') ?? '').split(';')[0]!;
    expect(cookie).toMatch(/^teal_preview=[0-9a-f]{64}$/);
    expect(await (await fetch(`${daemon.info.proxy}/`, { headers: { cookie } })).text()).toBe('hello v2\n');
    expect(await (await fetch(`${daemon.info.proxy}/`)).text()).toBe('hello v1\n');
  });

  it('follows the live instance logs', async () => {
    await page.click('#log-follow');
    expect(await page.getAttribute('#log-follow', 'aria-pressed')).toBe('true');
    await expect.poll(() => page.textContent('#logs')).toContain('hello v1 listening');
    await page.click('#log-follow');
    expect(await page.getAttribute('#log-follow', 'aria-pressed')).toBe('false');
  });

  it('fits a phone-sized screen and starts keyboard navigation at the skip link', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.reload();
    await expect.poll(() => page.textContent('#live-colour')).toBe('blue');
    const overflow = await inPage<number>(
      'document.documentElement.scrollWidth - document.documentElement.clientWidth',
    );
    expect(overflow).toBeLessThanOrEqual(0);
    await page.keyboard.press('Tab');
    expect(await inPage('document.activeElement.textContent')).toBe('Skip to content');
  });
});
