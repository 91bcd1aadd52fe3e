/**
 * Source shapes end to end, the ones the README promises beyond plain
 * constant-rate MP4: variable frame rate MP4, WebM (VP9 + Opus), MKV (H.264 +
 * AAC), MOV, and audio only. Each is made by native ffmpeg, published, encoded
 * by real encoder tabs (ffmpeg.wasm and WebCodecs, byte checks and
 * cross-checks on), played by a real viewer tab over WebRTC to the end, and
 * its export.mp4 refereed by native ffprobe against the source.
 *
 * One server and one browser for every shape: all are published first, the
 * same two encoder tabs encode them all, then each is watched.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Browser } from 'playwright';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { launchBrowser, newPage, openEncoderTab, type TrackedPage } from '../harness/browser.ts';
import { countFrames, ffprobeJson, fixture, type FixtureName } from '../harness/fixtures.ts';
import { decodeErrors, pcm, streams } from '../harness/referee.ts';
import { startTestServer, upload, waitCached, type TestServer } from '../harness/testServer.ts';

interface Shape {
  name: string;
  fixture: FixtureName;
  /** The name the upload carries (X-Filename): the server sees what a user's file would be called. */
  file: string;
}

const SHAPES: Shape[] = [
  { name: 'VFR MP4', fixture: 'vfr', file: 'vfr.mp4' },
  { name: 'WebM VP9 + Opus', fixture: 'webm', file: 'clip.webm' },
  { name: 'MKV H.264 + AAC', fixture: 'mkv', file: 'clip.mkv' },
  { name: 'MOV H.264 + AAC', fixture: 'mov', file: 'clip.mov' },
  { name: 'audio only', fixture: 'a-only', file: 'tone.m4a' },
];

let browser: Browser;
let server: TestServer;
const pages: TrackedPage[] = [];
const ids = new Map<string, string>();
const maps = new Map<string, ShardMap>();
let dir: string;

async function content(id: string): Promise<{ status: string; shardMap: ShardMap }> {
  return (await (await fetch(`${server.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
}

beforeAll(async () => {
  browser = await launchBrowser();
  server = await startTestServer({});
  dir = fs.mkdtempSync(path.join(server.dataDir, 'sources-'));
  for (const s of SHAPES) {
    const r = await upload(server.url, fs.readFileSync(await fixture(s.fixture)), '', s.file);
    expect(r.status, `${s.name}: ${JSON.stringify(r.json)}`).toBe(201);
    ids.set(s.name, r.json.id);
  }
  // Two tabs: new encoders' first jobs are cross-checked, which needs a second encoder of the same build.
  for (let i = 0; i < 2; i++) pages.push(await openEncoderTab(browser, `${server.url}/encode?persist=0`));
  const end = Date.now() + 300_000;
  for (const s of SHAPES) {
    for (;;) {
      const c = await content(ids.get(s.name)!);
      if (c.status === 'ready') {
        maps.set(s.name, c.shardMap);
        break;
      }
      if (Date.now() > end) {
        const failed = server.pool.recentEvents.filter((e) => /fail|reject/.test(e.type)).slice(-5);
        throw new Error(
          `${s.name} not encoded in time (status ${c.status}); events ${JSON.stringify(failed)}; tabs: ${pages
            .flatMap((p) => p.problems)
            .slice(0, 5)
            .join(' | ')}`,
        );
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}, 420_000);

afterAll(async () => {
  for (const p of pages) await p.context.close().catch(() => {});
  await browser?.close();
  await server?.destroy();
});

interface Played {
  state: string;
  error: string | undefined;
  skipped: number;
  fromPeers: number;
  fromCache: number;
  cells: string[];
  currentTime: number;
}

async function watch(id: string): Promise<Played> {
  const t = await newPage(browser);
  pages.push(t);
  // Cache off: every shard comes from the encoder tabs over WebRTC.
  await t.page.goto(`${server.url}/watch/${id}?cache=0`);
  await t.page.waitForSelector('[data-state="ended"], [data-state="error"]', { timeout: 120_000 });
  const r = (await t.page.evaluate(() => {
    const w = (window as any).shardcastViewer;
    return {
      state: w.state,
      error: w.error,
      skipped: w.stats.skipped,
      fromPeers: w.stats.fromPeers,
      fromCache: w.stats.fromCache,
      cells: [...w.cells.video, ...w.cells.audio].map((c: { status: string }) => c.status),
      currentTime: w.video.currentTime,
    };
  })) as Played;
  await t.context.close();
  return r;
}

describe.each(SHAPES)('$name', (shape) => {
  it('is encoded by the tabs, plays from peers to the end with nothing skipped, and exports to what the source holds', async () => {
    const id = ids.get(shape.name)!;
    const map = maps.get(shape.name)!;
    const source = await fixture(shape.fixture);
    const src = await streams(source);
    const hasVideo = src.video !== undefined;
    const hasAudio = src.audio !== undefined;
    // The map has what the source has: video rungs only for a video source, an audio rendition only with sound.
    expect(map.renditions.some((r) => 'video' in r)).toBe(hasVideo);
    expect(map.renditions.some((r) => 'audio' in r)).toBe(hasAudio);
    for (const s of map.shards) for (const [r, st] of Object.entries(s.renditions)) expect(st.status, `${r}/${s.index}`).toBe('ready');

    const played = await watch(id);
    expect(played.error).toBeUndefined();
    expect(played.state).toBe('ended');
    expect(played.skipped).toBe(0);
    expect(played.fromCache).toBe(0);
    const tracks = (hasVideo ? 1 : 0) + (hasAudio ? 1 : 0);
    expect(played.fromPeers).toBe(map.shards.length * tracks);
    expect(played.currentTime).toBeGreaterThan(src.duration - 0.5);

    await waitCached(server.url, id, map, 60_000);
    const res = await fetch(`${server.url}/api/contents/${id}/export.mp4`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect(res.status, new TextDecoder().decode(bytes.subarray(0, 300))).toBe(200);
    expect([res.headers.get('x-export-held'), res.headers.get('x-export-silent')]).toEqual(['0', '0']);
    const file = path.join(dir, `${id}.mp4`);
    fs.writeFileSync(file, bytes);
    expect(await decodeErrors(file)).toBe('');
    const out = await streams(file);

    if (hasVideo) {
      expect(out.video?.codec_name).toBe('h264');
      const [srcFrames, outFrames] = [await countFrames(source), await countFrames(file)];
      expect(Math.abs(outFrames - srcFrames), `export ${outFrames} frames, source ${srcFrames}`).toBeLessThanOrEqual(1);
      // Every frame in its place, by the frames' own timestamps (from the first frame): a VFR source
      // keeps its change of rate, a millisecond timebase its rounding, to within a millisecond or two.
      const times = async (f: string) => {
        const j = await ffprobeJson(f, ['-select_streams', 'v:0', '-show_entries', 'frame=pts_time']);
        const pts = (j.frames as { pts_time: string }[]).map((x) => Number(x.pts_time));
        return pts.map((t) => t - pts[0]!);
      };
      const [st, ot] = [await times(source), await times(file)];
      const worst = st.slice(0, ot.length).reduce((m, t, i) => Math.max(m, Math.abs(t - ot[i]!)), 0);
      console.log(
        `${shape.name}: video ${srcFrames} frames over ${st.at(-1)!.toFixed(4)} s; export ${outFrames} over ${ot.at(-1)!.toFixed(4)} s; worst frame offset ${(worst * 1000).toFixed(2)} ms`,
      );
      expect(worst, 'largest distance of an exported frame from its source frame, s').toBeLessThan(0.002);
    } else {
      expect(out.video).toBeUndefined();
    }
    if (hasAudio) {
      expect(out.audio?.codec_name).toBe('aac');
      // Decoded lengths: Matroska and WebM carry no stream duration.
      const [sd, od] = [(await pcm(source)).length / 48000, (await pcm(file)).length / 48000];
      expect(Math.abs(od - sd), `export audio ${od} s, source ${sd} s`).toBeLessThan(0.05);
    } else {
      expect(out.audio).toBeUndefined();
    }
    console.log(
      `${shape.name}: ${map.shards.length} shards × ${map.renditions.map((r) => r.id).join(', ')}; export ${out.duration.toFixed(3)} s (source ${src.duration.toFixed(3)} s)`,
    );
  }, 240_000);
});
