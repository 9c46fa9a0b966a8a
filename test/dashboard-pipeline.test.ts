import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../src/proxy/switch.contract.js';
import { startTestDaemon, type TestDaemon } from '../src/testing/daemon.js';
import {
  endedRun,
  makeRepo,
  pipelineConfig,
  pipelineServices,
  type TestRepo,
  waitRun,
} from './pipeline-helpers.js';

/**
 * The dashboard's pipeline pages in headless Chromium, against a real daemon following a real bare
 * repository: a run started from the page, its stages arriving live, a stage's log, production's
 * manual gate promoted from the page, and the run counted on /metrics.
 */

const CHROMIUM = '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available) {
  const message = `${CHROMIUM} is missing (Debian package chromium); run scripts/install-test-deps.sh`;
  if (process.env.CI === 'true') throw new Error(`CI=true and ${message}`);
  process.stderr.write(`skipping the dashboard's pipeline browser tests: ${message}\n`);
}

describe.skipIf(!available)('the dashboard’s pipeline pages in headless Chromium', () => {
  let daemon: TestDaemon;
  let repo: TestRepo;
  let sha: string;
  let gate: string;
  let browser: Browser;
  let page: Page;
  let base: string;
  const inPage = <T = unknown>(expression: string) => page.evaluate(expression) as Promise<T>;
  const metrics = async () => {
    const res = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${daemon.token}` } });
    return res.text();
  };

  beforeAll(async () => {
    repo = makeRepo();
    gate = path.join(repo.dir, 'go');
    // The test stage waits for the test to let it go, so the page is surely watching it run.
    sha = repo.commit(
      'the first commit\n\nwith a body',
      0,
      `echo "testing $TEAL_VERSION"\nwhile [ ! -f ${gate} ]; do sleep 0.05; done\necho "let go"\n`,
    );
    daemon = await startTestDaemon({
      services: pipelineServices({ promote: 'manual' }),
      extraConfig: pipelineConfig(repo.bare),
      env: { TEAL_GITHUB_SECRET: 'unused-secret-0123' },
    });
    base = daemon.info.api;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    page.setDefaultTimeout(20_000);
  });

  afterAll(async () => {
    await browser?.close();
    await daemon?.cleanup();
    repo?.remove();
  });

  it('lists the pipeline on the overview, after logging in from its page', async () => {
    await page.goto(`${base}/pipelines/web`);
    expect(new URL(page.url()).pathname).toBe('/login');
    await page.fill('#token', daemon.token);
    await page.fill('#actor', 'bob');
    await page.click('button[type=submit]');
    await page.waitForURL(`${base}/pipelines/web`);
    await expect.poll(() => page.textContent('#runs tbody')).toContain('No runs yet.');
    await page.click('a:text("Overview")');
    await page.waitForURL(`${base}/services`);
    await expect
      .poll(() => page.textContent('#pipelines tr[data-pipeline="web"]'))
      .toContain('check → test → build');
    await page.click('#pipelines a:text("web")');
    await page.waitForURL(`${base}/pipelines/web`);
  });

  it('runs the head of the branch from the page; the stages arrive live and a stage’s log shows its output', async () => {
    expect(await metrics()).not.toMatch(/^teal_pipeline_runs_total\{/m);
    await page.click('#run-pipeline');
    await expect.poll(() => page.textContent('#confirm-text')).toContain('Run pipeline web');
    expect(await inPage('document.activeElement.id')).toBe('confirm-cancel');
    await page.click('#confirm-ok');
    await page.waitForURL(`${base}/pipelines/web/runs/1`);
    // Marks this document: the steps below must arrive without a reload.
    await inPage('window.tealMark = 1');
    await page.waitForSelector('#run-steps li[data-kind="stage"][data-name="check"][data-state="done"]');
    await page.waitForSelector('#run-steps li[data-kind="stage"][data-name="test"][data-state="running"]');
    expect(await page.locator('#run-steps li[data-name="build"]').count()).toBe(0);
    await expect.poll(() => page.textContent('#run-state')).toBe('running');
    writeFileSync(gate, '');
    await page.waitForSelector('#run-steps li[data-kind="stage"][data-name="build"][data-state="done"]');
    await page.waitForSelector('#run-steps li[data-kind="artifact"][data-state="done"]');
    const test = page.locator('#run-steps li[data-kind="stage"][data-name="test"]');
    expect(await test.textContent()).toMatch(/test done, exit 0 \(\d+\.\d s\)/);
    expect(await page.textContent('#run-facts')).toContain(sha);
    expect(await page.textContent('#run-facts')).toContain('bob (dashboard)');

    await test.locator('button[data-log="test"]').click();
    await expect.poll(() => page.textContent('#stage-log')).toContain(`testing ${sha.slice(0, 7)}\nlet go\n`);
    expect(await inPage('document.activeElement.id')).toBe('stage-log');
    expect(await inPage('window.tealMark')).toBe(1);
  });

  it('waits at production’s manual gate; promote from the run page and the deployment is done', async () => {
    await page.waitForSelector(
      '#run-steps li[data-kind="deploy"][data-name="web-staging"][data-state="done"]',
    );
    await page.waitForSelector('#run-steps li[data-kind="deploy"][data-name="web"][data-state="waiting"]');
    await expect.poll(() => page.textContent('#run-state')).toBe('waiting for promote');
    expect(await page.isDisabled('#run-promote')).toBe(false);
    await page.click('#run-promote');
    await expect.poll(() => page.textContent('#confirm-text')).toContain('Promote web');
    await page.click('#confirm-ok');
    await page.waitForSelector('#run-steps li[data-kind="deploy"][data-name="web"][data-state="done"]');
    await expect.poll(() => page.textContent('#run-state')).toBe('done');
    expect(await page.isDisabled('#run-promote')).toBe(true);
    expect(await page.isDisabled('#run-cancel')).toBe(true);
    const link = page.locator('#run-steps li[data-name="web"] a.service-link');
    expect(await link.getAttribute('href')).toBe('/services/web');
    expect(await link.textContent()).toBe('web, deployment #1');
    expect((await request(`${daemon.info.proxy}/`)).body).toBe(`hello ${sha.slice(0, 7)}\n`);
    expect(await inPage('window.tealMark')).toBe(1);

    // The run is counted on /metrics, with its stages' times.
    const text = await metrics();
    expect(text).toContain('teal_pipeline_runs_total{pipeline="web",outcome="done"} 1\n');
    expect(text).toContain(
      'teal_pipeline_stage_seconds_count{pipeline="web",stage="test",outcome="done"} 1\n',
    );
    expect(text).toContain('teal_pipeline_run_seconds_count{pipeline="web",outcome="done"} 1\n');
  });

  it('shows the run in the pipeline’s list; cancel is offered only while a run is in progress', async () => {
    await page.click('.crumbs a:text("pipeline web")');
    await page.waitForURL(`${base}/pipelines/web`);
    const row = page.locator('#runs tr[data-n="1"]');
    await expect.poll(() => row.getAttribute('data-state')).toBe('done');
    const text = await row.textContent();
    expect(text).toContain(sha.slice(0, 7));
    expect(text).toContain('the first commit');
    expect(text).not.toContain('with a body');
    expect(text).toContain('bob (dashboard)');
    expect(await page.isDisabled('#cancel-run')).toBe(true);

    // A second run, cancelled from the page while its test stage runs: the stage is killed.
    repo.commit('the second commit', 0, 'echo "a long test"\nsleep 30\n');
    await page.click('#run-pipeline');
    await page.click('#confirm-ok');
    await page.waitForURL(`${base}/pipelines/web/runs/2`);
    await page.waitForSelector('#run-steps li[data-kind="stage"][data-name="test"][data-state="running"]');
    expect(await page.isDisabled('#run-cancel')).toBe(false);
    await page.click('#run-cancel');
    await page.click('#confirm-ok');
    await expect.poll(() => page.textContent('#run-state')).toBe('cancelled');
    await page.waitForSelector('#run-steps li[data-name="test"][data-state="cancelled"]');
    expect((await waitRun(daemon, 2, endedRun)).state).toBe('cancelled');
    expect(await page.textContent('#run-summary')).toContain('cancelled by bob (dashboard)');
  });

  it('fits a phone-sized screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${base}/pipelines/web/runs/1`);
    await expect.poll(() => page.textContent('#run-state')).toBe('done');
    const overflow = await inPage<number>(
      'document.documentElement.scrollWidth - document.documentElement.clientWidth',
    );
    const wide = await inPage<string[]>(
      `[...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1).map((e) => e.tagName + '#' + e.id + '.' + e.className)`,
    );
    expect(overflow, wide.join(' ')).toBeLessThanOrEqual(0);
    await page.keyboard.press('Tab');
    expect(await inPage('document.activeElement.textContent')).toBe('Skip to content');
  });
});
