import { existsSync } from 'node:fs';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { helloService, startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import { deployAndWait } from './helpers.js';

/**
 * The dashboard in Firefox: Debian's firefox-esr driven over WebDriver BiDi by puppeteer-core
 * (playwright drives only its own patched Firefox builds, which cannot be downloaded here). The
 * Chromium suite (dashboard.test.ts) covers every feature; this one walks the main story in the
 * other engine: log in, see the live colour, deploy from the page and see the switch, roll back.
 */

const FIREFOX = '/usr/bin/firefox-esr';
const available = existsSync(FIREFOX);
if (!available) {
  const message = `${FIREFOX} is missing (Debian package firefox-esr); run scripts/install-test-deps.sh`;
  if (process.env.CI === 'true') throw new Error(`CI=true and ${message}`);
  process.stderr.write(`skipping the dashboard's Firefox test: ${message}\n`);
}

describe.skipIf(!available)('the dashboard in headless Firefox', () => {
  let daemon: TestDaemon;
  let browser: Browser;
  let page: Page;

  const text = (selector: string) => page.$eval(selector, (e) => e.textContent ?? '');
  async function until(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check().catch(() => false))) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  beforeAll(async () => {
    daemon = await startTestDaemon({ services: `  web:\n${helloService()}` });
    expect((await deployAndWait(daemon.client, 'web', 'v1')).state).toBe('done');
    browser = await puppeteer.launch({ browser: 'firefox', executablePath: FIREFOX, headless: true });
    page = await browser.newPage();
    await page.setViewport({ width: 1000, height: 900 });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await daemon?.cleanup();
  });

  it('logs in, deploys from the page and watches the live colour change, then rolls back', async () => {
    await page.goto(`${daemon.info.api}/`);
    expect(new URL(page.url()).pathname).toBe('/login');
    await page.type('#token', daemon.token);
    await page.type('#actor', 'bob');
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    expect(new URL(page.url()).pathname).toBe('/services');
    await Promise.all([page.waitForNavigation(), page.click('#services a')]);
    await until('the live colour blue', async () => (await text('#live-colour')) === 'blue');

    // Marks this document: a reload would lose the mark (an expression: the tests compile without DOM types).
    await page.evaluate('window.tealMark = 1');
    await page.type('#deploy-version', 'v2');
    await page.click('#deploy-form button[type=submit]');
    await until('the confirmation', async () => (await text('#confirm-text')).includes('Deploy web v2?'));
    await page.click('#confirm-ok');
    await until('the live colour green', async () => (await text('#live-colour')) === 'green');
    await until('the switch step', async () =>
      Boolean(await page.$('#steps li[data-step="switch"][data-status="done"]')),
    );
    // Same document: the page followed the deployment over its event stream, without a reload.
    expect(await page.evaluate('window.tealMark')).toBe(1);

    await page.click('#rollback-form button[type=submit]');
    await until('the rollback confirmation', async () => (await text('#confirm-text')).length > 0);
    await page.click('#confirm-ok');
    await until('the live colour blue again', async () => (await text('#live-colour')) === 'blue');
    const status = await daemon.client.request<{ live: string }>('GET', '/v1/services/web');
    expect(status.live).toBe('blue');
  }, 60_000);
});
