/** Reading a watch page's Viewer from a test: its state, stats and timeline cells, and waiting for it to end. */
import { expect } from 'vitest';
import type { TrackedPage } from './browser.ts';

/** One timeline cell as the page's Viewer keeps it. */
export interface ViewerCell {
  status: string;
  source?: string;
  rendition?: string;
  concealed?: string;
}

/** What a test reads off `window.shardcastViewer`. */
export interface ViewerReport {
  state: string;
  error: string | undefined;
  stats: {
    codecSwitches: number;
    fromPeers: number;
    fromCache: number;
    skipped: number;
    hashFailures: number;
    stalls: number;
    stallMs: number;
    firstFrameMs: number;
    fetchMs: number[];
  };
  video: ViewerCell[];
  audio: ViewerCell[];
  currentTime: number;
}

export const viewerReport = (t: TrackedPage) =>
  t.page.evaluate(() => {
    const w = (window as any).shardcastViewer;
    return { state: w.state, error: w.error, stats: w.stats, video: w.cells.video, audio: w.cells.audio, currentTime: w.video.currentTime };
  }) as Promise<ViewerReport>;

/**
 * Waits for the page to reach `ended` (or `error`, which fails) within `timeoutMs`, and returns its report. A timeout
 * says where it stuck: state, playhead, counters and the cells never appended.
 */
export async function watchToEnd(t: TrackedPage, timeoutMs = 120_000): Promise<ViewerReport> {
  try {
    await t.page.waitForSelector('[data-state="ended"], [data-state="error"]', { timeout: timeoutMs });
  } catch (e) {
    const r = await viewerReport(t).catch(() => undefined);
    const stuck = r && [...r.video.entries(), ...r.audio.entries()].filter(([, c]) => c.status !== 'appended' && c.status !== 'skipped').slice(0, 6);
    throw new Error(
      `${(e as Error).message.split('\n')[0]}; viewer: ${JSON.stringify({ state: r?.state, t: r?.currentTime, stats: r && { ...r.stats, fetchMs: undefined }, stuck })}; problems: ${t.problems.slice(0, 3).join(' | ')}`,
    );
  }
  const r = await viewerReport(t);
  expect(r.error, `viewer error; page problems: ${t.problems.join(' | ')}`).toBeUndefined();
  expect(r.state).toBe('ended');
  return r;
}
