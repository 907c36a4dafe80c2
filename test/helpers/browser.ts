// A real browser for page tests: Debian's chromium (CHROMIUM, default /usr/bin/chromium) driven by
// playwright-core, headless, with the flags measured in PROBES.md and a fresh profile directory each
// launch. Every page opened through it records what a user would see go wrong: uncaught page errors,
// console errors, failed requests and WebSocket errors, HTTP responses >= 400. `check` fails on any of
// them, and `screenshotOnFailure` saves a screenshot and names its path in the failure.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** Where screenshots of failed browser tests go (outside the checkout). */
export const SCREENSHOT_DIR = process.env.TEST_SCREENSHOT_DIR || join(tmpdir(), 'orch-browser-failures');

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Browser {
  open(url: string): Promise<WatchedPage>;
  close(): Promise<void>;
}

export interface WatchedPage {
  page: Page;
  /** Everything that went wrong on the page so far, one line each. */
  problems: string[];
  /** Ignore problems matching `pattern` from now on (for a test that breaks the connection on purpose). */
  expect(pattern: RegExp): void;
  /** Throws, listing them, if the page had any problem. */
  check(): void;
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'orch-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
      viewport: { width: 1280, height: 900 },
      timeout: 60_000,
    });
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    throw new Error(`could not start ${CHROMIUM} (Debian package chromium): ${(err as Error).message}`);
  }
  // the persistent context opens with one blank page; tests use pages of their own
  for (const p of context.pages()) await p.close();
  return {
    async open(url) {
      const page = await context.newPage();
      const watched = watch(page);
      await page.goto(url, { waitUntil: 'load' });
      return watched;
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** What `check` throws: the message lists the page's problems. */
export class PageProblems extends Error {}

function watch(page: Page): WatchedPage {
  const problems: string[] = [];
  const expected: RegExp[] = [];
  const note = (line: string) => {
    if (!expected.some((re) => re.test(line))) problems.push(line);
  };
  page.on('pageerror', (err) => note(`page error: ${err.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') note(`console error: ${m.text()} (${m.location().url})`);
  });
  page.on('requestfailed', (r) => note(`request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400) note(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  page.on('websocket', (ws) => ws.on('socketerror', (e) => note(`WebSocket error: ${ws.url()}: ${e}`)));
  return {
    page,
    problems,
    expect: (re) => void expected.push(re),
    check() {
      if (problems.length) throw new PageProblems(`the page ${page.url()} had ${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
    },
    close: () => page.close(),
  };
}

/**
 * Runs `fn`, then checks the page. On any failure saves a full-page screenshot under SCREENSHOT_DIR and
 * rethrows with the screenshot's path and the page's problems in the message.
 */
export async function screenshotOnFailure<T>(w: WatchedPage, name: string, fn: () => Promise<T>): Promise<T> {
  try {
    const result = await fn();
    w.check();
    return result;
  } catch (err) {
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    const file = join(SCREENSHOT_DIR, `${name.replace(/[^A-Za-z0-9_-]+/g, '-')}-${Date.now()}.png`);
    let shot = `screenshot: ${file}`;
    await w.page.screenshot({ path: file, fullPage: true }).catch((e: Error) => (shot = `no screenshot (${e.message})`));
    const problems = !(err instanceof PageProblems) && w.problems.length ? `\npage problems:\n  ${w.problems.join('\n  ')}` : '';
    const e = err as Error;
    e.message = `${e.message}\n${shot}${problems}`;
    throw e;
  }
}

/** The trimmed text of the first element matching `selector`, '' if there is none. */
export async function text(page: Page, selector: string): Promise<string> {
  const l = page.locator(selector).first();
  return (await l.count()) ? (await l.innerText()).trim() : '';
}

/**
 * Polls `ready` until it holds; a generous default (60 s), since this machine is shared. Gives up at
 * once when the page has a problem (nothing good comes after a page error). On timeout the error says
 * what was awaited.
 */
export async function waitFor(w: WatchedPage, what: string, ready: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ready())) {
    w.check();
    if (Date.now() > deadline) throw new Error(`waited ${timeoutMs} ms for: ${what} (page ${w.page.url()})`);
    await w.page.waitForTimeout(200);
  }
}

/** The cells of a table's rows as objects keyed by the column headings. */
export async function tableRows(page: Page, table: string, rowSelector = 'tbody tr'): Promise<Record<string, string>[]> {
  const heads = await page.locator(`${table} thead th`).allInnerTexts();
  const rows = page.locator(`${table} ${rowSelector}`);
  const out: Record<string, string>[] = [];
  for (let i = 0; i < (await rows.count()); i++) {
    const cells = await rows.nth(i).locator('td').allInnerTexts();
    out.push(Object.fromEntries(heads.map((h, j) => [h.trim(), (cells[j] ?? '').trim()])));
  }
  return out;
}
