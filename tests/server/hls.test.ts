/**
 * HLS and DASH from the server cache, against a real server whose shards were
 * made the way tabs make them (native ffmpeg with the tabs' command lines,
 * uploaded with job tokens and checked by the intake). The playlists are
 * validated against RFC 8216 at every step while the content encodes (EVENT,
 * append-only, then EXT-X-ENDLIST), and native ffmpeg, the referee, reads the
 * master playlist back: the source's frame count and duration, PSNR, and an
 * audio tone without silence or click at the segment joins.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiUrl } from '../../src/shared/api.ts';
import { planHls, type HlsPlan } from '../../src/shared/hls/plan.ts';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { countFrames, fixture } from '../harness/fixtures.ts';
import { checkGrowth, checkMasterPlaylist, checkMediaPlaylist } from '../harness/playlistRules.ts';
import { waitFor } from '../harness/poolKit.ts';
import { encodeContent } from '../harness/realShards.ts';
import { decodeErrors, pcm, psnr, streams } from '../harness/referee.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { analyse } from '../harness/tone.ts';

const run = promisify(execFile);
const LADDER = JSON.stringify([
  { id: 'hi', video: { codec: 'h264', width: 320, height: 180, bitrate: 600_000 } },
  { id: 'lo', video: { codec: 'h264', width: 160, height: 90, bitrate: 200_000 } },
  { id: 'audio', audio: { codec: 'aac', bitrate: 128_000, sampleRate: 48000, channels: 2 } },
]);

let s: TestServer;
let id: string;
let source: string;
let dir: string;
let plan: HlsPlan;
const url = (p: string) => `${s.url}${p}`;
const text = async (p: string) => {
  const res = await fetch(url(p));
  expect(res.status, `${p}: ${res.status}`).toBe(200);
  expect(res.headers.get('content-type')).toBe('application/vnd.apple.mpegurl');
  return res.text();
};
const errorOf = async (p: string) => {
  const res = await fetch(url(p));
  return { status: res.status, code: ((await res.json()) as { error: { code: string } }).error.code };
};
const ids = () => plan.renditions.map((r) => r.id);

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-hls-'));
  s = await startTestServer({ verifySampleRate: 0, verifyNewEncoderJobs: 0, cacheEnabled: true, jobDeadlineMinMs: 600_000, audioJobSeconds: 4 });
  source = await fixture('av-2997');
  const r = await upload(s.url, fs.readFileSync(source), `?renditions=${encodeURIComponent(LADDER)}`);
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  id = r.json.id;
  const map = ((await (await fetch(url(apiUrl.content(id)))).json()) as { shardMap: ShardMap }).shardMap;
  plan = planHls(map);
}, 60_000);

afterAll(async () => {
  await s?.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('HLS from the cache', () => {
  it('before any shard is encoded: a valid master, empty EVENT playlists, and 404 not-cached for segments', async () => {
    const master = checkMasterPlaylist(await text(apiUrl.hlsMaster(id)));
    expect(master.variants.map((v) => [v.uri, v.resolution, v.audio])).toEqual([
      ['hi/playlist.m3u8', '320x180', 'audio'],
      ['lo/playlist.m3u8', '160x90', 'audio'],
    ]);
    expect(master.audioUri).toBe('audio/playlist.m3u8');
    for (const r of ids()) {
      const m = checkMediaPlaylist(await text(apiUrl.hlsPlaylist(id, r)));
      expect([m.segments.length, m.ended, m.type]).toEqual([0, false, 'EVENT']);
    }
    expect(await errorOf(apiUrl.hlsSegment(id, 'hi', 0))).toEqual({ status: 404, code: 'not-cached' });
    expect(await errorOf(apiUrl.hlsInit(id, 'audio', 0))).toEqual({ status: 404, code: 'not-cached' });
  });

  it('grows by appending complete segments while jobs finish, and ends with EXT-X-ENDLIST', async () => {
    const readings = new Map<string, string[]>(ids().map((r) => [r, []]));
    const read = async () => {
      for (const r of ids()) readings.get(r)!.push(await text(apiUrl.hlsPlaylist(id, r)));
    };
    await encodeContent(s.url, id, read);
    // The last job's shards reach the cache just after their acceptance.
    for (const r of ids()) {
      await waitFor(async () => ((await text(apiUrl.hlsPlaylist(id, r))).includes('#EXT-X-ENDLIST') ? true : undefined), `${r} playlist ended`, 30_000).catch(
        (e: Error) => {
          const heat = s.pool.snapshot().contents?.[0]?.renditions.map((x) => `${x.id} status ${x.status} cached ${x.cached}`);
          throw new Error(`${e.message}; ${heat?.join('; ')}`);
        },
      );
    }
    await read();
    let partial = 0;
    for (const [r, texts] of readings) {
      for (let i = 1; i < texts.length; i++) checkGrowth(texts[i - 1]!, texts[i]!);
      const last = checkMediaPlaylist(texts.at(-1)!);
      const total = plan.renditions.find((x) => x.id === r)!.segments.length;
      expect([last.ended, last.segments.length]).toEqual([true, total]);
      partial += texts.filter((t) => {
        const n = checkMediaPlaylist(t).segments.length;
        return n > 0 && n < total;
      }).length;
    }
    // The growth was seen, not just the two ends.
    expect(partial).toBeGreaterThan(0);
    // Audio came in several runs (audioJobSeconds 4), so shards carry lead and tail packets to trim.
    const map = ((await (await fetch(url(apiUrl.content(id)))).json()) as { shardMap: ShardMap }).shardMap;
    expect(map.shards.filter((x) => (x.renditions.audio?.lead ?? 0) > 0).length).toBeGreaterThan(0);
    // Real codec strings now, read from the shards.
    const master = checkMasterPlaylist(await text(apiUrl.hlsMaster(id)));
    for (const v of master.variants) expect(v.codecs).toEqual([expect.stringMatching(/^avc1\.[0-9a-f]{6}$/), 'mp4a.40.2']);
  }, 180_000);

  it('native ffmpeg reads master.m3u8: the source’s frames and duration, PSNR ≥ 30 dB, a tone without silences or clicks', async () => {
    const out = path.join(dir, 'master.mp4');
    await run('ffmpeg', ['-v', 'error', '-y', '-i', url(apiUrl.hlsMaster(id)), '-map', '0:v:0', '-map', '0:a:0', '-c', 'copy', out]);
    const [got, want] = [await streams(out), await streams(source)];
    expect([got.video.width, got.video.height]).toEqual([320, 180]);
    expect(await countFrames(out)).toBe(await countFrames(source));
    expect(Math.abs(Number(got.video.duration) - Number(want.video.duration))).toBeLessThan(1 / 29.97);
    expect(Math.abs(Number(got.audio.duration) - Number(want.audio.duration))).toBeLessThan(0.03);
    // In sync: each track starts where the source's does.
    expect(Math.abs(Number(got.video.start_time) - Number(want.video.start_time))).toBeLessThan(1 / 29.97);
    expect(Math.abs(Number(got.audio.start_time) - Number(want.audio.start_time))).toBeLessThan(0.03);
    expect(await decodeErrors(out)).toBe('');
    expect(await psnr(out, source, 320, 180)).toBeGreaterThanOrEqual(30);
    const tone = analyse(await pcm(out), 48000);
    expect(tone.silences).toEqual([]);
    expect(tone.clicks).toEqual([]);
    expect(tone.length).toBeCloseTo(Number(want.audio.duration), 1);
  }, 120_000);

  it('every rendition plays on its own, and DASH reads the same segments', async () => {
    const frames = await countFrames(source);
    const lo = path.join(dir, 'lo.mp4');
    await run('ffmpeg', ['-v', 'error', '-y', '-i', url(apiUrl.hlsPlaylist(id, 'lo')), '-c', 'copy', lo]);
    expect(await countFrames(lo)).toBe(frames);
    expect((await streams(lo)).video.width).toBe(160);
    const dash = path.join(dir, 'dash.mp4');
    await run('ffmpeg', ['-v', 'error', '-y', '-i', url(apiUrl.dash(id)), '-map', '0:v:0', '-map', '0:a:0', '-c', 'copy', dash]);
    expect(await countFrames(dash)).toBe(frames);
    expect(await decodeErrors(dash)).toBe('');
  }, 120_000);

  it('answers bad requests with clear errors', async () => {
    expect(await errorOf(apiUrl.hlsPlaylist(id, 'nope'))).toEqual({ status: 400, code: 'unknown-rendition' });
    expect(await errorOf(apiUrl.hlsSegment(id, 'hi', 99_999))).toEqual({ status: 404, code: 'unknown-segment' });
    expect(await errorOf(apiUrl.hlsInit(id, 'hi', 1))).toEqual({ status: 404, code: 'unknown-segment' });
    expect(await errorOf(`/api/contents/${id}/hls/hi/seg--1.m4s`)).toEqual({ status: 400, code: 'bad-index' });
    expect(await errorOf(apiUrl.hlsMaster('nope'))).toEqual({ status: 404, code: 'unknown-content' });
  });

  it('builds at most --hls-max-concurrent-builds (4) segments at once: more get 503 busy with Retry-After, then succeed', async () => {
    const all = plan.renditions.flatMap((r) => r.segments.map((seg) => apiUrl.hlsSegment(id, r.id, seg.seq)));
    expect(all.length).toBeGreaterThan(4);
    let busy: Response | undefined;
    for (let i = 0; i < 10 && !busy; i++) {
      const answers = await Promise.all(all.map((p) => fetch(url(p))));
      expect(answers.some((a) => a.status === 200)).toBe(true);
      busy = answers.find((a) => a.status !== 200);
      for (const a of answers) if (a !== busy) await a.arrayBuffer();
    }
    expect(busy?.status).toBe(503);
    expect(busy!.headers.get('retry-after')).toBe('1');
    expect(((await busy!.json()) as { error: { code: string } }).error.code).toBe('busy');
    for (const p of all) expect((await fetch(url(p))).status, p).toBe(200);
  });
});

describe('HLS of a private content (--viewer-token)', () => {
  let p: TestServer | undefined;
  afterAll(async () => {
    await p?.destroy();
  });

  it('needs the viewer token, and names every URI with it so a player keeps it on relative URIs', async () => {
    p = await startTestServer({ joinToken: 'join-secret', viewerToken: 'viewer secret', verifyNewEncoderJobs: 0, verifySampleRate: 0 });
    const r = await upload(p.url, fs.readFileSync(await fixture('av-3s')), `?renditions=${encodeURIComponent(LADDER)}`);
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    const master = `${p.url}${apiUrl.hlsMaster(r.json.id)}`;
    expect((await fetch(master)).status).toBe(401);
    const res = await fetch(`${master}?token=viewer+secret`);
    expect(res.status).toBe(200);
    const { variants, audioUri } = checkMasterPlaylist(await res.text());
    const uris = [...variants.map((v) => v.uri), audioUri!];
    expect(uris).toEqual(['hi', 'lo', 'audio'].map((x) => `${x}/playlist.m3u8?token=viewer+secret`));
    // Resolved as a player does, each one opens.
    for (const u of uris) expect((await fetch(new URL(u, master))).status, u).toBe(200);
  });
});
