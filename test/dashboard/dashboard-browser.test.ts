/**
 * The Control Tower end to end in real Chromium: a real relay, worker and planner; the page from the
 * relay, driven by playwright-core against Debian's chromium. Also checks what the relay kept: no
 * plaintext of any objective, progress line, question or answer.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../helpers/processes.js';
import { startTower, type Tower } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
if (!existsSync(CHROMIUM) && process.env.CI === 'true')
  throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
const SHOTS = resolve(import.meta.dirname, '../../test-results/dashboard');

const SECRETS = {
  objective: 'quarterly-ledger-ZQX1 reconciliation',
  question: 'Which cluster for ledger-ZQX2?',
  answer: 'cluster-ZQX3',
  progress: 'step 2 of 3',
};

const taskRow = (page: Page, id: string, state: string) =>
  page.waitForSelector(`#tasks li[data-task="${id}"][data-state="${state}"]`, { timeout: 30_000 });

describe.skipIf(!existsSync(CHROMIUM))('dashboard - browser', () => {
  let t: Tower;
  let browser: Browser;

  beforeAll(async () => {
    t = await startTower('tower');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    mkdirSync(SHOTS, { recursive: true });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await t?.stop();
  });

  it('shows a task live to completion, answers a question through the generated form, cancels a task and reopens a deep link', async () => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await page.goto(t.link);
    await page.waitForSelector('#live[data-state="live"]', { timeout: 20_000 });
    await page.waitForSelector('#fleet [data-worker="tower-w1"]', { timeout: 20_000 });
    expect(await page.textContent('#fleet [data-worker="tower-w1"]')).toContain('repo=payments');

    // A running task appears and completes, with its timeline, result and artifacts.
    await t.planner.ok('orchestrate_task', {
      agent_id: 'tower-w1',
      task_id: 'run-1',
      objective: SECRETS.objective,
      constraints: { sleep_ms: 4_000, progress: 3 },
    });
    await taskRow(page, 'run-1', 'running');
    await taskRow(page, 'run-1', 'completed');
    await page.click('#tasks li[data-task="run-1"]');
    await page.waitForSelector('#drawer[data-state="completed"]');
    expect(await page.textContent('#d-result')).toContain(`done: ${SECRETS.objective}`);
    expect(await page.textContent('#d-artifacts')).toContain('report.md');
    expect(await page.textContent('#d-timeline')).toContain(SECRETS.progress);
    expect(await page.locator('#d-timeline li').first().getAttribute('data-seq')).toBe('1');
    expect(page.url()).toContain('task=run-1');

    // A question: the form comes from its JSON schema; the typed answer reaches the executor.
    await t.planner.ok('orchestrate_task', {
      agent_id: 'tower-w1',
      task_id: 'ask-2',
      objective: 'needs an answer',
      constraints: {
        ask: true,
        question: SECRETS.question,
        schema: {
          type: 'object',
          properties: {
            cluster: { type: 'string', title: 'Cluster', enum: ['cluster-ZQX0', SECRETS.answer] },
            replicas: { type: 'integer', minimum: 1, title: 'Replicas' },
            confirm: { type: 'boolean', title: 'Confirm' },
          },
          required: ['cluster', 'replicas'],
        },
      },
    });
    await taskRow(page, 'ask-2', 'waiting_input');
    await page.click('#tasks li[data-task="ask-2"]');
    await page.waitForSelector('#d-question:not([hidden])');
    expect(await page.textContent('#d-question-text')).toBe(SECRETS.question);
    await page.selectOption('#f-cluster', { label: SECRETS.answer });
    await page.fill('#f-replicas', '3');
    await page.check('#f-confirm');
    await page.screenshot({ path: join(SHOTS, 'question.png'), fullPage: true });
    await page.click('#d-submit');
    await taskRow(page, 'ask-2', 'completed');
    await page.waitForSelector('#toast[data-ok="true"]:has-text("answer ask-2: done")', { timeout: 20_000 });
    const status = await t.planner.ok<{ result: { structured: { answer: unknown } } }>('get_task_status', {
      task_id: 'ask-2',
    });
    expect(status.result.structured.answer).toEqual({ cluster: SECRETS.answer, replicas: 3, confirm: true });

    // Cancel from the page: the worker stops the task.
    await t.planner.ok('orchestrate_task', {
      agent_id: 'tower-w1',
      task_id: 'long-3',
      objective: 'a long one',
      constraints: { sleep_ms: 120_000 },
    });
    await taskRow(page, 'long-3', 'running');
    await page.click('#tasks li[data-task="long-3"]');
    await page.fill('#d-reason', 'changed my mind');
    await page.click('#d-cancel');
    await taskRow(page, 'long-3', 'cancelled');
    await page.waitForSelector('#toast:has-text("cancel long-3: done")', { timeout: 20_000 });

    // A deep link opens the task's drawer after a reload.
    await page.goto(`${t.link}&task=ask-2`);
    await page.reload();
    await page.waitForSelector('#drawer[data-state="completed"]', { timeout: 20_000 });
    expect(await page.textContent('#d-title')).toBe('ask-2');
    await page.screenshot({ path: join(SHOTS, 'dashboard.png'), fullPage: true });

    // A phone: one column, nothing wider than the screen.
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true });
    await phone.goto(`${t.link}&task=run-1`);
    await phone.waitForSelector('#drawer[data-state="completed"]', { timeout: 20_000 });
    expect(await phone.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
    await phone.screenshot({ path: join(SHOTS, 'phone.png') });

    // An API key without the dashboard key: only that tasks exist.
    const blind = await browser.newPage();
    await blind.goto(`${t.relay.httpUrl}/dashboard#key=${encodeURIComponent(t.key)}`);
    await blind.waitForSelector('#tasks li[data-task="run-1"][data-state="sealed"]', { timeout: 20_000 });
    const blindText = await blind.textContent('body');
    expect(blindText).toContain('only that tasks exist');
    expect(blindText).not.toContain(SECRETS.objective);

    // A link without any key shows nothing.
    const none = await browser.newPage();
    await none.goto(`${t.relay.httpUrl}/dashboard`);
    await none.waitForSelector('#banner:has-text("no dashboard key")');
    expect(await none.locator('#tasks li').count()).toBe(0);
  }, 180_000);

  it('leaves the relay no plaintext of objectives, progress lines, questions or answers', async () => {
    await eventually(() => existsSync(join(t.relay.dataDir, 'relay.db')), 5_000, 'relay.db');
    const dir = t.relay.dataDir;
    const stored = ['relay.db', 'relay.db-wal']
      .filter((f) => existsSync(join(dir, f)))
      .map((f) => readFileSync(join(dir, f)).toString('latin1'))
      .join('\n');
    const captured = readFileSync(t.capture, 'utf8');
    const served = await (
      await fetch(`${t.relay.httpUrl}/api/v1/orchestration/tasks`, {
        headers: { authorization: `ApiKey ${t.key}` },
      })
    ).text();
    // The digests are there (sealed), under their task ids.
    expect(served).toContain('"task_id":"ask-2"');
    expect(stored).toContain('ask-2');
    const payloads = captured
      .trim()
      .split('\n')
      .map((l) => Buffer.from((JSON.parse(l) as { payload: string }).payload, 'base64').toString('latin1'))
      .join('\n');
    for (const plain of Object.values(SECRETS)) {
      expect(stored, `relay.db holds ${plain}`).not.toContain(plain);
      expect(served, `the API served ${plain}`).not.toContain(plain);
      expect(payloads, `an envelope carried ${plain}`).not.toContain(plain);
    }
  });
});
