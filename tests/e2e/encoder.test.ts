/**
 * Encoder tabs end to end: real Chromium, real ffmpeg.wasm, real WebSocket,
 * real WebRTC, real files. Native ffprobe/ffmpeg referee the output.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import wrtc from '@roamhq/wrtc';
import type { Browser } from 'playwright';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PeerManager } from '../../src/net/PeerManager.ts';
import { transportOf } from '../harness/nodePeer.ts';
import { ShardTransfer } from '../../src/net/ShardTransfer.ts';
import { AAC_PACKET_SAMPLES, type ShardMap } from '../../src/shared/shardMap.ts';
import { launchBrowser, openEncoderTab, type TrackedPage } from '../harness/browser.ts';
import { countFrames as countFramesOf, ffprobeJson, fixture } from '../harness/fixtures.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { WsPeer } from '../harness/wsPeer.ts';

const run = promisify(execFile);
let browser: Browser;
let server: TestServer;
const pages: TrackedPage[] = [];

beforeAll(async () => {
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
});

/** An encoder tab on ffmpeg.wasm alone: these tests are about its pipeline (WebCodecs: webcodecs.test.ts). */
async function openEncoder(query = ''): Promise<TrackedPage> {
  const t = await openEncoderTab(browser, `${server.url}/encode${query}${query ? '&' : '?'}engines=ffmpeg-wasm`);
  pages.push(t);
  return t;
}

const encoderState = (t: TrackedPage) => t.page.evaluate(() => (window as any).shardcastEncoder.state);

async function getContent(id: string): Promise<{ status: string; shardMap: ShardMap }> {
  return (await (await fetch(`${server.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
}

async function waitReady(id: string, timeoutMs = 240_000): Promise<ShardMap> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const c = await getContent(id);
    if (c.status === 'ready') return c.shardMap;
    if (Date.now() > end) {
      const problems = pages.flatMap((p) => p.problems).slice(0, 10);
      throw new Error(`content ${id} not encoded in time (status ${c.status}); page errors: ${problems.join(' | ')}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('encoder tabs', () => {
  let id: string;
  let map: ShardMap;
  let a: TrackedPage;
  let b: TrackedPage;
  const tmp = () => fs.mkdtempSync(path.join(server.dataDir, 'check-'));

  beforeAll(async () => {
    server = await startTestServer({ heartbeatMs: 500, heartbeatTimeoutMs: 3000 });
    const r = await upload(server.url, fs.readFileSync(await fixture('av-2997')));
    id = r.json.id;
  });
  afterAll(async () => {
    for (const p of pages.splice(0)) await p.context.close().catch(() => {});
    await server?.destroy();
  });

  it('two tabs encode every shard of every rendition; closing one mid-job loses nothing', async () => {
    a = await openEncoder('?preset=slow');
    await a.page.waitForFunction(() => (window as any).shardcastEncoder.state.current !== undefined, null, { timeout: 60_000 });
    const aId = (await encoderState(a)).peerId as string;
    await a.context.close(); // mid-job: the socket closes with the tab
    b = await openEncoder();
    map = await waitReady(id);
    const lost = server.pool.recentEvents.filter((e) => e.type === 'job-requeued' && (e.detail as { peerId: string }).peerId === aId);
    expect(lost.length).toBeGreaterThan(0);
    const requeued = lost.flatMap((e) => {
      const d = e.detail as { indices: number[]; rendition: string };
      return d.indices.map((i) => `${d.rendition}/${i}`);
    });
    expect(requeued.length).toBeGreaterThan(0);
    // Every variant is ready, and the re-queued ones were finished by the other tab.
    for (const s of map.shards) for (const st of Object.values(s.renditions)) expect(st.status).toBe('ready');
    const bId = (await encoderState(b)).peerId as string;
    for (const k of requeued) expect([...(server.pool.holders.get(`${id}/${k}`) ?? [])]).toEqual([bId]);
    expect(b.problems).toEqual([]);
  });

  it('every shard is a self-contained fMP4: key frame first, right codec and size, duration within one frame', async () => {
    const dir = tmp();
    for (const r of map.renditions) {
      for (const s of map.shards) {
        const st = s.renditions[r.id]!;
        const res = await fetch(`${server.url}/api/contents/${id}/shards/${r.id}/${s.index}`);
        expect(res.status, `${r.id}/${s.index} in the cache`).toBe(200);
        const bytes = new Uint8Array(await res.arrayBuffer());
        expect(createHash('sha256').update(bytes).digest('hex')).toBe(st.sha256);
        const file = path.join(dir, `${r.id}-${s.index}.mp4`);
        fs.writeFileSync(file, bytes);
        if ('video' in r) {
          const j = await ffprobeJson(file, ['-show_streams', '-show_frames', '-select_streams', 'v:0', '-show_entries', 'frame=pict_type,key_frame,pts_time']);
          const v = j.streams[0];
          expect([v.codec_name, v.width, v.height]).toEqual(['h264', r.video.width, r.video.height]);
          expect(j.frames).toHaveLength(s.frames);
          expect(j.frames[0].key_frame).toBe(1);
          expect(j.frames.slice(1).every((f: { pict_type: string }) => f.pict_type !== 'B')).toBe(true);
          const pts = j.frames.map((f: { pts_time: string }) => Number(f.pts_time));
          const frame = s.duration / s.frames;
          // first to last frame, plus the last frame's own length
          const dur = pts[pts.length - 1] - pts[0] + frame;
          expect(Math.abs(dur - s.duration)).toBeLessThanOrEqual(frame + 1e-3);
        } else {
          const j = await ffprobeJson(file, ['-show_streams', '-count_packets']);
          expect([j.streams[0].codec_name, Number(j.streams[0].sample_rate), j.streams[0].channels]).toEqual(['aac', 48000, 2]);
          expect(Number(j.streams[0].nb_read_packets) * AAC_PACKET_SAMPLES).toBe(st.samples! + (st.lead ?? 0) + (st.tail ?? 0));
        }
      }
    }
    // No overlap and no gap: the map's shards tile the timeline.
    for (let i = 1; i < map.shards.length; i++) {
      const p = map.shards[i - 1]!;
      expect(p.start + p.duration).toBeCloseTo(map.shards[i]!.start, 9);
    }
  });

  describe('one tab, one clean run', () => {
    let hq: string;
    let hqMap: ShardMap;
    beforeAll(async () => {
      // A generous bitrate, so PSNR measures placement rather than compression.
      const ladder = [
        { id: 'hq', video: { codec: 'h264', width: 320, height: 180, bitrate: 2_000_000 } },
        { id: 'audio', audio: { codec: 'aac', bitrate: 128_000, sampleRate: 48000, channels: 2 } },
      ];
      const r = await upload(server.url, fs.readFileSync(await fixture('av-2997')), `?renditions=${encodeURIComponent(JSON.stringify(ladder))}`);
      hq = r.json.id;
      hqMap = await waitReady(hq);
    });

    async function concat(rendition: string, name: string): Promise<string> {
      const dir = tmp();
      const lines: string[] = [];
      for (const s of hqMap.shards) {
        if (!s.renditions[rendition]) continue;
        const f = path.join(dir, `${s.index}.mp4`);
        fs.writeFileSync(f, new Uint8Array(await (await fetch(`${server.url}/api/contents/${hq}/shards/${rendition}/${s.index}`)).arrayBuffer()));
        lines.push(`file '${f}'`);
      }
      fs.writeFileSync(path.join(dir, 'list.txt'), lines.join('\n'));
      const out = path.join(dir, name);
      await run('ffmpeg', [
        '-v',
        'error',
        '-f',
        'concat',
        '-safe',
        '0',
        '-i',
        path.join(dir, 'list.txt'),
        ...(name.endsWith('.wav') ? ['-c:a', 'pcm_s16le'] : ['-c', 'copy']),
        out,
      ]);
      return out;
    }

    async function psnr(a: string, b: string, shift: number): Promise<number> {
      // Frame-indexed comparison; `shift` drops frames from the start of one side.
      const trim = (n: number) => (n > 0 ? `trim=start_frame=${n},` : '');
      const graph = `[0:v]${trim(shift)}setpts=N/TB/30[x];[1:v]${trim(-shift)}setpts=N/TB/30[y];[x][y]psnr`;
      const { stderr } = await run('ffmpeg', ['-v', 'info', '-i', a, '-i', b, '-lavfi', graph, '-f', 'null', '-'], { maxBuffer: 16 * 2 ** 20 });
      return Number(/PSNR .*average:([\d.]+)/.exec(stderr)?.[1]);
    }

    it('the video shards in map order rebuild the source frame for frame', async () => {
      const video = await concat('hq', 'video.mp4');
      const source = await fixture('av-2997');
      expect(await countFramesOf(video)).toBe(hqMap.shards.reduce((n, s) => n + s.frames, 0));
      const aligned = await psnr(video, source, 0);
      expect(aligned).toBeGreaterThan(30);
      // One frame off either way is clearly worse: the shards sit exactly where the map says.
      expect(aligned - (await psnr(video, source, 1))).toBeGreaterThan(3);
      expect(aligned - (await psnr(video, source, -1))).toBeGreaterThan(3);
    });

    it('the audio shards of the run, concatenated, decode to the source audio duration within one AAC frame', async () => {
      const wav = await concat('audio', 'audio.wav');
      const decoded = Number((await ffprobeJson(wav, ['-show_entries', 'format=duration'])).format.duration);
      const source = Number((await ffprobeJson(await fixture('av-2997'), ['-select_streams', 'a:0', '-show_entries', 'stream=duration'])).streams[0].duration);
      const extra = hqMap.shards.reduce((n, s) => n + (s.renditions.audio?.lead ?? 0) + (s.renditions.audio?.tail ?? 0), 0);
      expect(extra).toBe(AAC_PACKET_SAMPLES); // one run: just its priming packet
      expect(Math.abs(decoded - extra / 48000 - source)).toBeLessThanOrEqual(AAC_PACKET_SAMPLES / 48000);
    });
  });

  it('a Node-side WebRTC peer fetches a shard from an encoder tab, and its hash matches', async () => {
    const viewer = await WsPeer.viewer(server.url);
    const mgr = new PeerManager(transportOf(viewer), { maxPeers: 2, wrtc });
    viewer.send({ type: 'locate', requestId: 1, contentId: id, from: 0, count: 1000 });
    const h = await viewer.next('holders');
    const entry = h.shards.find((e) => e.peers.length > 0)!;
    expect(entry).toBeDefined();
    const link = await mgr.connect(entry.peers[0]!);
    const got = await ShardTransfer.of(link).fetch({ contentId: id, rendition: entry.rendition, index: entry.index }, entry.sha256, 10_000);
    expect(got.sha256).toBe(map.shards[entry.index]!.renditions[entry.rendition]!.sha256);
    mgr.closeAll();
    viewer.close();
  });

  it('a reloaded tab still holds its shards (IndexedDB) and announces them again', async () => {
    const before = (await encoderState(b)).shardsHeld as number;
    expect(before).toBeGreaterThan(0);
    await b.page.reload();
    await b.page.waitForFunction(() => (window as any).shardcastEncoder?.state.connection === 'open', null, { timeout: 60_000 });
    const st = await encoderState(b);
    expect(st.shardsHeld).toBe(before);
    const held = [...server.pool.holders.entries()].filter(([, set]) => set.has(st.peerId)).length;
    expect(held).toBe(before);
  });
});

describe('one tab, many jobs', () => {
  beforeAll(async () => {
    // One shard per job: 120 jobs, more than a loaded core survives (45-100 execs) without recycling.
    server = await startTestServer({ jobSeconds: 0.5, jobMaxSeconds: 0.5 });
  });
  afterAll(async () => {
    for (const p of pages.splice(0)) await p.context.close().catch(() => {});
    await server?.destroy();
  });

  it('runs 120 jobs through one tab, recycling the ffmpeg core, without a crash', async () => {
    const r = await upload(server.url, fs.readFileSync(await fixture('long-tiny')), '?shardDuration=0.5');
    expect(r.json.renditions).toEqual(['72p']);
    expect(r.json.shards).toBe(120);
    const t = await openEncoder('?recycleAfterExecs=20&persist=0');
    await waitReady(r.json.id, 280_000);
    // The content is ready at the last acceptance; the tab counts the job a moment later (after its cache upload).
    await t.page.waitForFunction(() => (window as any).shardcastEncoder.state.jobsDone + (window as any).shardcastEncoder.state.jobsFailed >= 120, null, {
      timeout: 30_000,
    });
    const st = await encoderState(t);
    expect(st.jobsDone).toBe(120);
    expect(st.jobsFailed).toBe(0);
    // 121 execs (benchmark included) at 20 per core: 7 loads.
    expect(st.coreLoads).toBe(Math.ceil(121 / 20));
  });
});

describe('one tab on the multi-thread core', () => {
  beforeAll(async () => {
    server = await startTestServer({});
  });
  afterAll(async () => {
    for (const p of pages.splice(0)) await p.context.close().catch(() => {});
    await server?.destroy();
  });

  it('encodes every shard with -threads 2, each holding exactly its frames, and never falls back', async () => {
    const r = await upload(server.url, fs.readFileSync(await fixture('v-23976')));
    const t = await openEncoder('?ffmpegCore=multi&persist=0');
    const map = await waitReady(r.json.id);
    const engine = await t.page.evaluate(() => ({
      kind: (window as any).shardcastEncoder.engine.kind,
      isolated: crossOriginIsolated,
      stats: (window as any).shardcastEncoder.engine.stats,
    }));
    expect(engine).toMatchObject({ kind: 'multi', isolated: true, stats: { multiFallbacks: 0, watchdogKills: 0 } });
    const dir = fs.mkdtempSync(path.join(server.dataDir, 'mt-'));
    for (const s of map.shards) {
      for (const rendition of Object.keys(s.renditions)) {
        const res = await fetch(`${server.url}/api/contents/${r.json.id}/shards/${rendition}/${s.index}`);
        expect(res.status).toBe(200);
        const f = path.join(dir, `${rendition}_${s.index}.mp4`);
        fs.writeFileSync(f, new Uint8Array(await res.arrayBuffer()));
        expect(await countFramesOf(f)).toBe(s.frames);
      }
    }
    expect(t.problems).toEqual([]);
  });
});
