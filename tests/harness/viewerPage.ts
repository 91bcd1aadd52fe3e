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

/** A `waiting` of the video element: the playhead (s), how much was buffered from it on (s), and the buffered ranges. */
export interface Wait {
  t: number;
  ahead: number;
  buffered: string;
}

/** Records every `waiting` of the page's video element after its first frame played, in `window.__waits`. */
export async function recordWaits(t: TrackedPage): Promise<void> {
  await t.page.addInitScript(() => {
    const waits: Wait[] = ((window as any).__waits = []);
    // Waits before the first frame plays are the start-up (the first shards on their way), not stalls.
    let started = false;
    document.addEventListener('playing', () => (started = true), true);
    document.addEventListener(
      'waiting',
      (e) => {
        const v = e.target as HTMLVideoElement;
        if (!started) return;
        const r = Array.from({ length: v.buffered.length }, (_, i) => [v.buffered.start(i), v.buffered.end(i)] as const);
        const at = r.find(([a, b]) => a <= v.currentTime + 1e-3 && v.currentTime < b);
        waits.push({ t: v.currentTime, ahead: at ? at[1] - v.currentTime : 0, buffered: r.map(([a, b]) => `${a.toFixed(3)}-${b.toFixed(3)}`).join(' ') });
      },
      true,
    );
  });
}

/**
 * The `waiting`s recorded by recordWaits with less than 0.1 s buffered from the playhead on: stalls for want of media
 * (a hole, a missing shard). A wait with media buffered is the decoder starved of CPU on a loaded machine, not a fault.
 */
export async function stallsForWantOfMedia(t: TrackedPage): Promise<Wait[]> {
  const waits = (await t.page.evaluate(() => (window as any).__waits)) as Wait[];
  return waits.filter((w) => w.ahead < 0.1);
}
