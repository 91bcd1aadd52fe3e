/**
 * The one Playwright harness for every browser test: which Chromium to use,
 * and the flags it runs with on this kind of machine.
 */
import fs from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright';

/**
 * The flags every test browser gets:
 * - no sandbox (tests run as root), no GPU, no QUIC;
 * - no background networking, component updates or sync: the machine has no
 *   network, and Chromium's attempts to reach Google are refused or hang;
 * - WebRTC host candidates as plain IPs rather than mDNS names (fewer moving parts);
 * - media may autoplay without a gesture.
 */
export const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
];

export interface FoundBrowser {
  path: string | undefined;
  source: 'env' | 'system' | 'playwright';
}

/** The browser to use, without installing anything: env var, Debian's chromium, then Playwright's own. */
export function findBrowser(): FoundBrowser | undefined {
  const env = process.env.SHARDCAST_CHROMIUM || process.env.CHROMIUM_PATH;
  if (env) {
    if (!fs.existsSync(env)) throw new Error(`SHARDCAST_CHROMIUM points at ${env}, which does not exist`);
    return { path: env, source: 'env' };
  }
  for (const p of ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']) {
    if (fs.existsSync(p)) return { path: p, source: 'system' };
  }
  try {
    const own = chromium.executablePath();
    if (own && fs.existsSync(own)) return { path: own, source: 'playwright' };
  } catch {
    /* Playwright has no browser of its own here */
  }
  return undefined;
}

export const NO_BROWSER_MESSAGE =
  'No Chromium found. Install one (Debian/Ubuntu: apt-get install chromium), or run `npx playwright install chromium` where downloads work, ' +
  'or point SHARDCAST_CHROMIUM at a Chromium or Chrome binary.';

export async function launchBrowser(extraArgs: string[] = []): Promise<Browser> {
  const found = findBrowser();
  if (!found) throw new Error(NO_BROWSER_MESSAGE);
  return chromium.launch({
    headless: true,
    ...(found.path && { executablePath: found.path }),
    args: [...CHROMIUM_FLAGS, ...extraArgs],
  });
}

export interface TrackedPage {
  page: Page;
  context: BrowserContext;
  /** Console errors and page errors, for the failure message. */
  problems: string[];
  /** Every console line, for debugging. */
  console: string[];
}

/** A page in a fresh context (its own storage: a separate "tab" of a separate person). */
export async function newPage(browser: Browser): Promise<TrackedPage> {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems: string[] = [];
  const lines: string[] = [];
  page.on('console', (m) => {
    lines.push(`${m.type()}: ${m.text()}`);
    if (lines.length > 500) lines.shift();
    if (m.type() === 'error') problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  return { page, context, problems, console: lines };
}

/** Opens an encode page (`url`, with its query) in a fresh context and waits until it has joined the pool. */
export async function openEncoderTab(browser: Browser, url: string): Promise<TrackedPage> {
  const t = await newPage(browser);
  await t.page.goto(url);
  await t.page.waitForFunction(() => (window as any).shardcastEncoder?.state.connection === 'open', null, { timeout: 60_000 });
  return t;
}

/** The address other hosts reach this machine on: the test namespace's, or localhost. */
export function hostAddress(): string {
  return process.env.SHARDCAST_HOST_IP || 'localhost';
}

/** Records every picture size the page's video element shows (its `resize` events) in `window.__videoSizes`, as "WxH". */
export async function recordVideoSizes(t: TrackedPage): Promise<void> {
  await t.page.addInitScript(() => {
    const sizes: string[] = ((window as any).__videoSizes = []);
    document.addEventListener(
      'resize',
      (e) => {
        const el = e.target as HTMLVideoElement;
        if (el instanceof HTMLVideoElement) sizes.push(`${el.videoWidth}x${el.videoHeight}`);
      },
      true,
    );
  });
}
