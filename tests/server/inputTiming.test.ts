/**
 * Source timing from the probe to the slices, for the input shapes of issue 17
 * (tests/harness/inputFixtures.ts), against native ffprobe as the player's
 * view: the map holds exactly the frames a player shows, at their times (an
 * edit list's pre-roll is none of them, a late track keeps its offset, an
 * MPEG-TS clock at 10 s starts at 0), each audio track lasts what a player
 * decodes, and every job-sized source slice carries every frame presented in
 * its range, whatever the decode order (open GOP). Real server, real HTTP.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiUrl } from '../../src/shared/api.ts';
import { isAudioRendition, type ShardMap } from '../../src/shared/shardMap.ts';
import { ffprobeJson } from '../harness/fixtures.ts';
import { INPUT_SHAPES, inputFixture, type InputShape } from '../harness/inputFixtures.ts';
import { shown } from '../harness/inputJudge.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';

let server: TestServer;
let dir: string;
// Normalised shapes (a volunteer's mezzanine first) are mapped from the mezzanine: tests/e2e/mezzanine.test.ts.
const PLAYABLE = INPUT_SHAPES.filter((s) => !s.refused && !s.normalized);

beforeAll(async () => {
  server = await startTestServer({});
  dir = fs.mkdtempSync(path.join(server.dataDir, 'timing-'));
});
afterAll(async () => {
  await server?.destroy();
});

async function publish(shape: InputShape): Promise<{ id: string; map: ShardMap; file: string }> {
  const file = await inputFixture(shape);
  const r = await upload(server.url, fs.readFileSync(file), '', path.basename(file));
  expect(r.status, `${shape.name}: ${JSON.stringify(r.json)}`).toBe(201);
  const { shardMap } = (await (await fetch(`${server.url}/api/contents/${r.json.id}`)).json()) as { shardMap: ShardMap };
  return { id: r.json.id, map: shardMap, file };
}

describe.each(PLAYABLE.map((s) => [s.name, s] as const))('%s', (_n, shape) => {
  it('maps the frames a player shows, at their times, and audio as long as a player decodes it', async () => {
    const { map, file } = await publish(shape);
    const player = await shown(file);
    const frames = map.shards.reduce((n, s) => n + s.frames, 0);
    if (player.display) {
      expect(frames, 'frames in the map vs shown by a player').toBe(player.frameTimes.length);
      // Shards start on frame times: each shard's start is its first frame's time as a player shows it, from the
      // first frame (what counts as 0 differs by a codec delay: Opus pre-skip, unsignalled AAC priming; the e2e
      // judge checks A/V sync by when the sound starts).
      const [m0, p0] = [map.shards[0]!.start, player.frameTimes[0]!];
      for (const s of map.shards) expect(Math.abs(s.start - m0 - (player.frameTimes[s.firstFrame!]! - p0)), `shard ${s.index} start`).toBeLessThan(0.002);
    }
    if (player.audioSeconds !== undefined) {
      const a = map.source.audio!;
      const samples = map.shards.reduce((n, s) => n + (s.renditions.audio?.samples ?? 0), 0) / map.renditions.find(isAudioRendition)!.audio.sampleRate;
      expect(Math.abs(samples / player.audioSeconds - 1), `audio ${samples} s in the map, ${player.audioSeconds} s decoded`).toBeLessThan(0.01);
      expect(a.start).toBeGreaterThanOrEqual(0);
    }
  });
});

describe.each(['open-gop-h264', 'open-gop-hevc', 'trim-copy-bframes'])('%s slices', (name) => {
  it('carry every frame presented in their range, whatever the decode order', async () => {
    const shape = PLAYABLE.find((s) => s.name === name)!;
    const { id, map } = await publish(shape);
    // Ranges as the pool cuts jobs (runs of shards ending on key frames) and one shard past a key frame.
    const at = (i: number) => map.shards[Math.min(i, map.shards.length - 1)]!.start;
    const end = map.shards.at(-1)!.start + map.shards.at(-1)!.duration;
    const ranges: [number, number][] = [
      [0, 1.5],
      [1.5, 3],
      [at(5), at(10)],
      [0, end],
    ];
    for (const [a, b] of ranges) {
      const res = await fetch(`${server.url}${apiUrl.source(id, { start: a, end: b, tracks: 'video' })}`);
      expect(res.status).toBe(200);
      const sliceStart = Number(res.headers.get('X-Slice-Start'));
      const f = path.join(dir, `${name}-${a}-${b}.mp4`);
      fs.writeFileSync(f, new Uint8Array(await res.arrayBuffer()));
      const j = await ffprobeJson(f, ['-select_streams', 'v:0', '-show_entries', 'frame=best_effort_timestamp_time']);
      const times = (j.frames as { best_effort_timestamp_time: string }[]).map((x) => Number(x.best_effort_timestamp_time) + sliceStart);
      const want = map.shards.filter((s) => s.start >= a - 1e-6 && s.start < b - 1e-6).reduce((n, s) => n + s.frames, 0);
      const got = times.filter((t) => t >= a - 1e-3 && t < b - 1e-3).length;
      expect(got, `slice [${a}, ${b}) starting at ${sliceStart}: frames presented in range`).toBe(want);
    }
  });
});
