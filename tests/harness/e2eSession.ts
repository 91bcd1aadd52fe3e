/** The browser-test lifecycle every e2e file shares: one browser per file, and each test's pages and server closed after it. */
import type { Browser } from 'playwright';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { launchBrowser, type TrackedPage } from './browser.ts';

/**
 * Registers the hooks. `onBrowser` receives the file's browser once launched; `pages` is the array the file pushes
 * its pages into (emptied after each test); `server()`/`clearServer()` read and reset the file's current server, if any.
 */
export function e2eSession(opts: {
  onBrowser: (b: Browser) => void;
  pages: TrackedPage[];
  server: () => { destroy(): Promise<void> } | undefined;
  clearServer: () => void;
  /** Extra clean-up after each test, before the server goes (for example Node peers). */
  afterEachTest?: () => void;
}): void {
  let browser: Browser | undefined;
  beforeAll(async () => {
    browser = await launchBrowser();
    opts.onBrowser(browser);
  });
  afterAll(async () => {
    await browser?.close();
  });
  afterEach(async () => {
    for (const p of opts.pages.splice(0)) await p.context.close().catch(() => {});
    opts.afterEachTest?.();
    await opts.server()?.destroy();
    opts.clearServer();
  });
}
