/**
 * hls.js (from npm, pinned) in real Chromium plays a content's master.m3u8
 * from the server cache to `ended`, switching rendition on the way: every
 * source frame decoded once (getVideoPlaybackQuality), both picture sizes
 * shown, audio decoded, no player error. The shards are made the way tabs
 * make them (native ffmpeg with the tabs' command lines, checked by the
 * intake); PSNR and the audio joins of the same playlist are refereed by
 * native ffmpeg in tests/server/hls.test.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Browser } from 'playwright';
import { describe, expect, it } from 'vitest';
import { apiUrl } from '../../src/shared/api.ts';
import { newPage, recordVideoSizes, type TrackedPage } from '../harness/browser.ts';
import { e2eSession } from '../harness/e2eSession.ts';
import { countFrames, fixture } from '../harness/fixtures.ts';
import { encodeContent } from '../harness/realShards.ts';
import { streams } from '../harness/referee.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';

let browser: Browser;
let server: TestServer | undefined;
const pages: TrackedPage[] = [];

e2eSession({ onBrowser: (b) => (browser = b), pages, server: () => server, clearServer: () => (server = undefined) });

const HLS_JS = path.resolve(import.meta.dirname, '../../node_modules/hls.js/dist/hls.min.js');
const LADDER = JSON.stringify([
  { id: 'hi', video: { codec: 'h264', width: 320, height: 180, bitrate: 600_000 } },
  { id: 'lo', video: { codec: 'h264', width: 160, height: 90, bitrate: 200_000 } },
  { id: 'audio', audio: { codec: 'aac', bitrate: 128_000, sampleRate: 48000, channels: 2 } },
]);

/** What the page reports: hls.js events and the element's state. */
interface PlayerReport {
  ended: boolean;
  currentTime: number;
  duration: number;
  levels: { height: number; bitrate: number }[];
  /** Level of every video fragment buffered, in order. */
  fragLevels: number[];
  errors: string[];
  decodedFrames: number;
  droppedFrames: number;
  audioBytes: number;
  /** Each SourceBuffer the player made: its MIME type and buffered range, s. */
  buffers: { type: string; start: number; end: number }[];
}

/**
 * A page on the server's origin (so nothing but the player is under test)
 * that runs hls.js on `master`: it starts on the lowest level and, once a
 * fragment of it is buffered, asks for the highest with `nextLevel` (a smooth
 * switch at the next fragment boundary).
 */
async function openPlayer(master: string): Promise<TrackedPage> {
  const t = await newPage(browser);
  pages.push(t);
  await recordVideoSizes(t);
  // Keep every SourceBuffer the player makes, to read where each track was placed.
  await t.page.addInitScript(() => {
    const w = window as any;
    w.__sourceBuffers = [];
    const add = MediaSource.prototype.addSourceBuffer;
    MediaSource.prototype.addSourceBuffer = function (this: MediaSource, type: string) {
      const sb = add.call(this, type);
      w.__sourceBuffers.push({ type, sb });
      return sb;
    };
  });
  const origin = server!.url;
  await t.page.route(`${origin}/hls.min.js`, (r) => r.fulfill({ contentType: 'text/javascript', body: fs.readFileSync(HLS_JS, 'utf8') }));
  await t.page.route(`${origin}/hls-e2e.html`, (r) =>
    r.fulfill({ contentType: 'text/html', body: '<!doctype html><video id="v" muted playsinline></video><script src="/hls.min.js"></script>' }),
  );
  await t.page.goto(`${origin}/hls-e2e.html`);
  await t.page.evaluate((src) => {
    const w = window as any;
    const Hls = w.Hls;
    const v = document.getElementById('v') as HTMLVideoElement;
    const report = { ended: false, fragLevels: [] as number[], errors: [] as string[], levels: [] as unknown[] };
    w.report = report;
    const hls = new Hls({ startLevel: 0, capLevelToPlayerSize: false, enableWorker: true });
    w.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, (_: unknown, d: { levels: { height: number; bitrate: number }[] }) => {
      report.levels = d.levels.map((l) => ({ height: l.height, bitrate: l.bitrate }));
      hls.currentLevel = 0;
      void v.play();
    });
    hls.on(Hls.Events.FRAG_BUFFERED, (_: unknown, d: { frag: { type: string; level: number } }) => {
      if (d.frag.type !== 'main') return;
      report.fragLevels.push(d.frag.level);
      if (report.fragLevels.length === 1) hls.nextLevel = hls.levels.length - 1;
    });
    hls.on(Hls.Events.ERROR, (_: unknown, d: { details: string; fatal: boolean }) => report.errors.push(`${d.details}${d.fatal ? ' (fatal)' : ''}`));
    v.addEventListener('ended', () => (report.ended = true));
    hls.loadSource(src);
    hls.attachMedia(v);
  }, `${origin}${master}`);
  return t;
}

async function playerReport(t: TrackedPage): Promise<PlayerReport> {
  return t.page.evaluate(() => {
    const w = window as any;
    const v = document.getElementById('v') as HTMLVideoElement & { webkitAudioDecodedByteCount?: number };
    const q = v.getVideoPlaybackQuality();
    return {
      ...w.report,
      currentTime: v.currentTime,
      duration: v.duration,
      decodedFrames: q.totalVideoFrames,
      droppedFrames: q.droppedVideoFrames,
      audioBytes: v.webkitAudioDecodedByteCount ?? -1,
      buffers: (w.__sourceBuffers as { type: string; sb: SourceBuffer }[]).map(({ type, sb }) => ({
        type,
        start: sb.buffered.length ? sb.buffered.start(0) : -1,
        end: sb.buffered.length ? sb.buffered.end(sb.buffered.length - 1) : -1,
      })),
    };
  });
}

describe('hls.js plays the HLS output', () => {
  it('master.m3u8 from the cache to the end: every frame once, a rendition switch, audio, no error', async () => {
    server = await startTestServer({ verifySampleRate: 0, verifyNewEncoderJobs: 0, cacheEnabled: true, jobDeadlineMinMs: 600_000, audioJobSeconds: 4 });
    const source = await fixture('av-2997');
    const r = await upload(server.url, fs.readFileSync(source), `?renditions=${encodeURIComponent(LADDER)}`);
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    const id = r.json.id as string;
    await encodeContent(server.url, id);
    // Every shard checked and cached: the playlists are complete.
    for (const rendition of ['hi', 'lo', 'audio']) {
      for (let i = 0; i < 50; i++) {
        if ((await (await fetch(`${server.url}${apiUrl.hlsPlaylist(id, rendition)}`)).text()).includes('#EXT-X-ENDLIST')) break;
        await new Promise((res) => setTimeout(res, 200));
      }
    }

    const t = await openPlayer(apiUrl.hlsMaster(id));
    await t.page.waitForFunction(() => (window as any).report?.ended === true, null, { timeout: 90_000 }).catch(() => {});
    const got = await playerReport(t);
    const context = `report: ${JSON.stringify(got)}; page: ${t.problems.join(' | ')}`;
    expect(got.ended, context).toBe(true);
    // The only error allowed is nextLevel's own: it aborts the fragment of the old level being loaded (non-fatal).
    expect(
      got.errors.filter((e) => e !== 'aborted'),
      context,
    ).toEqual([]);
    const want = await streams(source);
    expect(Math.abs(got.duration - Number(want.video.duration)), context).toBeLessThan(0.1);
    expect(Math.abs(got.decodedFrames - (await countFrames(source))), context).toBeLessThanOrEqual(1);
    expect(got.audioBytes, context).toBeGreaterThan(0);
    // Video and audio placed together: each track's buffer spans the content, from its start to its end.
    expect(got.buffers.map((b) => b.type.split('/')[0]).sort(), context).toEqual(['audio', 'video']);
    for (const b of got.buffers) {
      expect(b.start, context).toBeLessThan(0.05);
      expect(Math.abs(b.end - got.duration), context).toBeLessThan(0.1);
    }
    // Levels as hls.js orders them; it started on the lowest and switched to the highest mid-stream.
    expect(got.levels.map((l) => l.height)).toEqual([90, 180]);
    expect(got.fragLevels[0], context).toBe(0);
    expect(got.fragLevels.at(-1), context).toBe(1);
    const sizes = await t.page.evaluate(() => (window as any).__videoSizes as string[]);
    expect(sizes, context).toContain('160x90');
    expect(sizes.at(-1), context).toBe('320x180');
  }, 240_000);
});
