/** Publishing: uploads, the CLI, and what bad input gets. Real files made by native ffmpeg. */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AAC_PACKET_SAMPLES, type ShardMap } from '../../src/shared/shardMap.ts';
import { fixture, ffprobeJson } from '../harness/fixtures.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';

const run = promisify(execFile);
let s: TestServer;

beforeAll(async () => {
  s = await startTestServer({ maxUploadBytes: 5 * 2 ** 20 });
});
afterAll(async () => {
  await s.destroy();
});

/** Nothing of a refused upload may stay behind: no temp file, no content directory. */
function leftovers(): string[] {
  const tmp = fs.readdirSync(path.join(s.dataDir, 'tmp'));
  const contents = fs.readdirSync(path.join(s.dataDir, 'contents')).filter((n) => !s.store.get(n));
  return [...tmp, ...contents];
}

async function getMap(id: string): Promise<ShardMap> {
  const res = await fetch(`${s.url}/api/contents/${id}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { shardMap: ShardMap }).shardMap;
}

/**
 * The source's audio track survived ingest: the map's source facts are the track's (native ffprobe
 * is the referee), there is an audio rendition, and every shard has its audio placed on the AAC
 * packet grid, back to back, covering the track.
 */
async function expectAudioKept(map: ShardMap, file: string): Promise<void> {
  const probe = await ffprobeJson(file, ['-select_streams', 'a:0', '-show_streams', '-show_format']);
  const a = probe.streams[0];
  expect(a, 'the fixture has an audio track').toBeDefined();
  expect(map.source.audio).toMatchObject({ codec: a.codec_name, sampleRate: Number(a.sample_rate), channels: a.channels });
  const r = map.renditions.find((x) => x.id === 'audio');
  expect(r).toEqual({ id: 'audio', audio: expect.objectContaining({ codec: 'aac', sampleRate: 48000, channels: Math.min(2, a.channels) }) });
  const sr = 48000;
  let total = 0;
  for (const [i, sh] of map.shards.entries()) {
    const st = sh.renditions.audio;
    expect(st, `shard ${i} has audio`).toMatchObject({ status: 'pending' });
    expect(st!.samples! % AAC_PACKET_SAMPLES, `shard ${i}: whole packets`).toBe(0);
    expect(st!.samples!).toBeGreaterThan(0);
    if (i === 0) expect(st!.start).toBeCloseTo(map.source.audio!.start ?? 0, 6);
    else expect(st!.start).toBeCloseTo(map.shards[i - 1]!.renditions.audio!.start! + map.shards[i - 1]!.renditions.audio!.samples! / sr, 6);
    total += st!.samples!;
  }
  // Together the shards cover the track, to within the packet the last one is rounded up to.
  expect(Math.abs(total / sr - Number(probe.format.duration))).toBeLessThan((2 * AAC_PACKET_SAMPLES) / sr);
}

describe('publish', () => {
  it('the CLI uploads a real file and prints the id; the map has frame-exact shards', async () => {
    const file = await fixture('av-2997');
    const cli = path.resolve('signaling/bin/shardcast.js');
    const { stdout, stderr } = await run(process.execPath, [cli, 'publish', file, '--server', s.url], { timeout: 60_000 });
    const id = stdout.trim();
    expect(id).toMatch(/^[A-Za-z0-9]+$/);
    expect(stderr).toMatch(/100%/); // the progress bar reached the end
    const map = await getMap(id);
    // Referee: native ffprobe's frame timestamps.
    const probe = await ffprobeJson(file, ['-select_streams', 'v:0', '-show_entries', 'frame=pts_time', '-show_entries', 'stream=start_time']);
    const start = Number(probe.streams[0].start_time);
    const times: number[] = probe.frames.map((f: { pts_time: string }) => Number(f.pts_time) - start);
    expect(map.shards.reduce((a, sh) => a + sh.frames, 0)).toBe(times.length);
    expect(map.shards).toHaveLength(Math.ceil(times.length / 9)); // 9 frames = 0.3003 s at 29.97 fps
    for (const sh of map.shards) {
      expect(sh.start).toBeCloseTo(times[sh.firstFrame]!, 5);
    }
    expect(map.shardDuration).toBe(0.3);
    expect(map.renditions.map((r) => r.id)).toEqual(['180p', '90p', 'audio']);
    expect(map.source).toMatchObject({ video: { width: 320, height: 180 }, audio: { sampleRate: 48000, channels: 2 } });
    expect(map.source.video!.fps).toBeCloseTo(29.97, 1);
  });

  it('the CLI takes --shard-duration and refuses a bad one before uploading', async () => {
    const file = await fixture('av-2997');
    const cli = path.resolve('signaling/bin/shardcast.js');
    const { stdout } = await run(process.execPath, [cli, 'publish', file, '--server', s.url, '--shard-duration', '0.5']);
    expect((await getMap(stdout.trim())).shardDuration).toBe(0.5);
    const bad = await run(process.execPath, [cli, 'publish', file, '--server', s.url, '--shard-duration', '0.9']).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect(bad).toMatchObject({ code: 1 });
    expect((bad as { stderr: string }).stderr).toMatch(/0\.2 to 0\.5/);
  });

  it.each([
    ['v-23976', 7, false],
    ['vfr', null, true],
    ['a-only', 14, null],
    ['webm', 9, false],
    ['mkv', 9, false],
  ] as const)('publishes %s', async (name, framesPerShard, vfr) => {
    const r = await upload(s.url, fs.readFileSync(await fixture(name)), '', `${name}.bin`);
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    const map = await getMap(r.json.id);
    if (framesPerShard !== null) for (const sh of map.shards.slice(0, -1)) expect(sh.frames).toBe(framesPerShard);
    if (vfr !== null) expect(map.source.video!.variableFrameRate).toBe(vfr);
    if (name === 'a-only') expect(map.renditions.map((x) => x.id)).toEqual(['audio']);
    if (name === 'v-23976' || name === 'vfr') expect(map.renditions.every((x) => 'video' in x)).toBe(true);
    if (name === 'webm' || name === 'mkv') await expectAudioKept(map, await fixture(name));
    const list = (await (await fetch(`${s.url}/api/contents`)).json()) as { contents: { id: string; status: string }[] };
    expect(list.contents.find((c) => c.id === r.json.id)).toMatchObject({ status: 'encoding' });
  });

  it.each([
    ['empty', 400, 'empty'],
    ['not-media', 415, 'not-media'],
    ['truncated', 422, 'no-tracks'],
    ['truncated-faststart', 422, 'corrupt'],
  ] as const)('refuses %s input with %i and a reason, leaving nothing behind', async (name, status, code) => {
    const before = s.store.all().length;
    const r = await upload(s.url, fs.readFileSync(await fixture(name)));
    expect(r.status).toBe(status);
    expect(r.json.error.code).toBe(code);
    expect(r.json.error.message.length).toBeGreaterThan(10);
    expect(s.store.all().length).toBe(before);
    expect(leftovers()).toEqual([]);
  });

  it('refuses an upload over the size limit (declared or streamed) and a bad shard duration', async () => {
    const big = new Uint8Array(6 * 2 ** 20);
    const r = await upload(s.url, big);
    expect(r.status).toBe(413);
    expect(r.json.error.code).toBe('too-large');
    const bad = await upload(s.url, fs.readFileSync(await fixture('av-2997')), '?shardDuration=0.1');
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatchObject({ code: 'bad-shard-duration' });
    expect(bad.json.error.message).toMatch(/0\.2 to 0\.5/);
    expect(leftovers()).toEqual([]);
  });

  it('takes a custom rendition ladder, and refuses a bad one', async () => {
    const clip = fs.readFileSync(await fixture('av-2997'));
    const ladder = [{ id: 'hq', video: { codec: 'h264', width: 320, height: 180, bitrate: 1_500_000 } }];
    const ok = await upload(s.url, clip, `?renditions=${encodeURIComponent(JSON.stringify(ladder))}`);
    expect(ok.status).toBe(201);
    expect((await getMap(ok.json.id)).renditions).toEqual(ladder);
    const bad = await upload(
      s.url,
      clip,
      `?renditions=${encodeURIComponent(JSON.stringify([{ id: 'x', video: { codec: 'h264', width: 321, height: 180, bitrate: 1e6 } }]))}`,
    );
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toMatch(/even/);
    expect(leftovers()).toEqual([]);
  });

  it('answers unknown ids and paths with JSON errors', async () => {
    const res = await fetch(`${s.url}/api/contents/nope`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unknown-content');
    expect((await fetch(`${s.url}/api/nothing`)).status).toBe(404);
    expect((await fetch(`${s.url}/api/contents`, { method: 'PUT' })).status).toBe(405);
  });
});

describe('source slices', () => {
  it('serves a stream-copy slice from the key frame at or before the start, which decodes and covers the range', async () => {
    const file = await fixture('av-2997');
    const r = await upload(s.url, fs.readFileSync(file));
    const res = await fetch(`${s.url}/api/contents/${r.json.id}/source?start=6&end=8&tracks=video`);
    expect(res.status).toBe(200);
    const sliceStart = Number(res.headers.get('x-slice-start'));
    expect(sliceStart).toBeCloseTo(5.005, 2); // the key frame every 5 s (150 frames at 29.97)
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect(bytes.byteLength).toBeLessThan(fs.statSync(file).size * 0.6);
    const out = path.join(s.dataDir, 'slice.mp4');
    fs.writeFileSync(out, bytes);
    const { stderr } = await run('ffmpeg', ['-v', 'error', '-i', out, '-f', 'null', '-']);
    expect(stderr).toBe('');
    const probe = await ffprobeJson(out, ['-count_frames', '-show_streams']);
    const v = probe.streams.find((x: { codec_type: string }) => x.codec_type === 'video');
    expect(probe.streams.some((x: { codec_type: string }) => x.codec_type === 'audio')).toBe(false);
    // Every frame from the key frame up to 8 s, plus at most a few past it that B-frames before 8 s refer to.
    const wanted = Math.ceil((8 - sliceStart) * (30000 / 1001) - 1e-6);
    expect(Number(v.nb_read_frames)).toBeGreaterThanOrEqual(wanted);
    expect(Number(v.nb_read_frames)).toBeLessThanOrEqual(wanted + 4);
    const bad = await fetch(`${s.url}/api/contents/${r.json.id}/source?start=8&end=6`);
    expect(bad.status).toBe(400);
  });
});
