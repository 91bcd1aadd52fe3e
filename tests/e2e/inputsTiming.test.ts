/**
 * Issue 17, rotation and frame timing, end to end in each engine: sources made
 * by native ffmpeg with a display matrix (90/180/270), a frame hold (a paused
 * screen recording) and a frame-rate change with a hold at a shard boundary.
 * Each is published, encoded by two real tabs of one engine (ffmpeg.wasm, then
 * WebCodecs), played by a real viewer tab from peers to `ended` with no stall,
 * exported, and judged by native ffmpeg against what a player shows for the
 * source (ffmpeg applies the display matrix on decode) with the input suite's
 * judge (tests/harness/inputJudge.ts: frame count, PSNR of every frame paired
 * by index, every frame's time within half a frame of the source's, displayed
 * aspect and orientation), plus the exact displayed size and every shard
 * file's own length.
 *
 * One browser for the file; one server and two tabs per engine.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Browser } from 'playwright';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { newPage, openEncoderTab, type TrackedPage } from '../harness/browser.ts';
import { e2eSession } from '../harness/e2eSession.ts';
import { fixture, type FixtureName } from '../harness/fixtures.ts';
import { judge, psnrDrops } from '../harness/inputJudge.ts';
import { decodeErrors, shardSpan, streams } from '../harness/referee.ts';
import { startTestServer, upload, waitCached, type TestServer } from '../harness/testServer.ts';
import { recordWaits, stallsForWantOfMedia, watchToEnd } from '../harness/viewerPage.ts';

interface Shape {
  fixture: FixtureName;
  /** The size a player shows (the display matrix applied). */
  width: number;
  height: number;
}

const SHAPES: Shape[] = [
  { fixture: 'rot90', width: 180, height: 320 },
  { fixture: 'rot180', width: 320, height: 180 },
  { fixture: 'rot270', width: 180, height: 320 },
  { fixture: 'hold', width: 320, height: 180 },
  { fixture: 'rate-change', width: 320, height: 180 },
];

const ENGINES = [
  { name: 'ffmpeg-wasm', query: '&engines=ffmpeg-wasm' },
  { name: 'webcodecs', query: '&engines=ffmpeg-wasm,webcodecs' },
] as const;

let browser: Browser;
/** Each engine's server and tabs live through its describe block (not one test): made in beforeAll, gone in afterAll. */
let server: TestServer | undefined;
let tabs: TrackedPage[] = [];
/** Viewer pages, closed after each test. */
const pages: TrackedPage[] = [];
e2eSession({ onBrowser: (b) => (browser = b), pages, server: () => undefined, clearServer: () => {} });

/** One rung at the displayed size: what is judged is the picture's orientation and timing, not the ladder. */
const ladder = (s: Shape) => [{ id: 'top', video: { codec: 'h264', width: s.width, height: s.height, bitrate: 600_000 } }];

async function readyMap(id: string, tabs: TrackedPage[]): Promise<ShardMap> {
  const end = Date.now() + 240_000;
  for (;;) {
    const c = (await (await fetch(`${server!.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
    if (c.status === 'ready') return c.shardMap;
    if (Date.now() > end) {
      const events = server!.pool.recentEvents.filter((e) => /fail|reject/.test(e.type)).slice(-4);
      throw new Error(
        `${id} not encoded (status ${c.status}); events ${JSON.stringify(events)}; tabs: ${tabs
          .flatMap((t) => t.problems)
          .slice(0, 4)
          .join(' | ')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** PSNR (dB) above which a 320x180 frame is indistinguishable from the source to the eye. */
const TRANSPARENT_DB = 38;

/** Judges an export against its source as a player shows it (tests/harness/inputJudge.ts); returns figures for the log. */
async function judgeExport(exported: string, source: string, shape: Shape): Promise<string> {
  expect(await decodeErrors(exported)).toBe('');
  const out = (await streams(exported)).video;
  expect(`${out.width}x${out.height}`, 'displayed size').toBe(`${shape.width}x${shape.height}`);
  const j = await judge(source, exported);
  // The judge's dip rule (a frame 6 dB below its neighbours' median) also fires where x264's rate control gives a
  // forced key frame 41 dB beside 50 dB P-frames of a near-still picture (seen once in the hold, ffmpeg.wasm).
  // A wrong frame here scores 25 dB or less, a turned or squeezed one 9: a dip counts below TRANSPARENT_DB.
  const dips = psnrDrops(j.psnr)
    .filter(([, db]) => db < TRANSPARENT_DB)
    .map(([i, db, m]) => `frame ${i}: PSNR ${db.toFixed(1)} dB, neighbours' median ${m.toFixed(1)} dB`);
  expect([...j.failures.filter((f) => !/^frame \d+: PSNR/.test(f)), ...dips]).toEqual([]);
  return `${j.export.frameTimes.length} frames, PSNR min ${Math.min(...j.psnr).toFixed(1)} dB mean ${j.psnrMean.toFixed(1)} dB, worst frame time ${(j.worstPts * 1000).toFixed(1)} ms (limit ${(j.halfFrame * 1000).toFixed(1)})`;
}

describe.each(ENGINES)('encoded by $name tabs', (engine) => {
  const ids = new Map<FixtureName, string>();
  const maps = new Map<FixtureName, ShardMap>();

  beforeAll(async () => {
    server = await startTestServer({});
    for (const s of SHAPES) {
      const q = `?renditions=${encodeURIComponent(JSON.stringify(ladder(s)))}`;
      const r = await upload(server.url, fs.readFileSync(await fixture(s.fixture)), q, `${s.fixture}.mp4`);
      expect(r.status, `${s.fixture}: ${JSON.stringify(r.json)}`).toBe(201);
      ids.set(s.fixture, r.json.id);
    }
    // Two tabs: a new encoder's first jobs are cross-checked against a second one of the same build.
    tabs = [];
    for (let i = 0; i < 2; i++) tabs.push(await openEncoderTab(browser, `${server.url}/encode?persist=0${engine.query}`));
    for (const s of SHAPES) maps.set(s.fixture, await readyMap(ids.get(s.fixture)!, tabs));
  }, 420_000);

  afterAll(async () => {
    for (const t of tabs.splice(0)) await t.context.close().catch(() => {});
    await server?.destroy();
    server = undefined;
  });

  it.each(SHAPES)(
    '$fixture: plays to the end without a stall and exports what a player shows for the source',
    async (shape) => {
      const id = ids.get(shape.fixture)!;
      const map = maps.get(shape.fixture)!;
      for (const s of map.shards) expect(s.renditions.top?.engine, `shard ${s.index}`).toMatch(new RegExp(`^${engine.name}@`));

      const viewer = await newPage(browser);
      pages.push(viewer);
      await recordWaits(viewer);
      await viewer.page.goto(`${server!.url}/watch/${id}?cache=0`);
      const played = await watchToEnd(viewer, 60_000);
      expect(played.stats.skipped).toBe(0);
      // A stall for want of media (a hole in the buffer, the frame hold) is the failure. On this shared 2-core
      // machine the element also waits now and then with seconds buffered (the decoder starved of CPU): logged, not failed.
      expect(await stallsForWantOfMedia(viewer), `stalls for want of media (viewer counted ${played.stats.stalls})`).toEqual([]);
      expect(played.stats.fromPeers).toBe(map.shards.length);

      await waitCached(server!.url, id, map, 60_000);
      // Each shard file lasts what the map says (the export would hide a short one: it holds each frame to the next).
      for (const s of map.shards) {
        const shard = new Uint8Array(await (await fetch(`${server!.url}/api/contents/${id}/shards/top/${s.index}`)).arrayBuffer());
        const [t0, t1] = await shardSpan(shard);
        expect(t1 - t0, `shard ${s.index}'s samples span, s`).toBeCloseTo(s.duration, 3);
      }
      const res = await fetch(`${server!.url}/api/contents/${id}/export.mp4`);
      const bytes = new Uint8Array(await res.arrayBuffer());
      expect(res.status, new TextDecoder().decode(bytes.subarray(0, 300))).toBe(200);
      const file = path.join(server!.dataDir, `${engine.name}-${shape.fixture}.mp4`);
      fs.writeFileSync(file, bytes);
      const verdict = await judgeExport(file, await fixture(shape.fixture), shape);
      console.log(
        `${engine.name} ${shape.fixture}: ${map.shards.length} shards; ${verdict}; viewer waits in all: ${JSON.stringify(await viewer.page.evaluate(() => (window as any).__waits))}`,
      );
    },
    120_000,
  );
});
