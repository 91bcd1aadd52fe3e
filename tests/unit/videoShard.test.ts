/**
 * Video shard timing with the real tools: native ffmpeg runs the tab's own
 * command line (ffmpegArgs.ts) on a slice of a source that holds a frame for
 * 1.5 s, and retimeSegment must give each shard the map's duration.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { probeFile } from '../../signaling/media/probe.ts';
import { writeSourceSlice } from '../../signaling/media/slice.ts';
import { checkShard, videoShardExpectation } from '../../signaling/media/validate.ts';
import { segmentName, videoJobArgs } from '../../src/encoder/ffmpegArgs.ts';
import { retimeSegment } from '../../src/encoder/videoShard.ts';
import type { Job } from '../../src/shared/protocol.ts';
import { buildShardMap } from '../../src/shared/shardMap.ts';
import { fixture } from '../harness/fixtures.ts';
import { shardSpan } from '../harness/referee.ts';

const run = promisify(execFile);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'video-shard-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('retimeSegment', () => {
  it("gives a held frame that ends a shard the rest of the map's duration, where ffmpeg's segment muxer gives it one frame, which the server refuses", async () => {
    const source = await fixture('hold');
    const facts = await probeFile(source);
    const map = buildShardMap({ contentId: 'h', facts, renditions: [{ id: 'top', video: { codec: 'h264', width: 320, height: 180, bitrate: 400_000 } }] });
    const hold = map.shards.findIndex((s) => s.duration > 1);
    expect(hold, 'the map has a shard holding one frame for over a second').toBeGreaterThan(0);
    const shards = map.shards
      .slice(hold - 1, hold + 2)
      .map(({ index, start, duration, frames, firstFrame }) => ({ index, start, duration, frames, firstFrame }));
    const end = shards.at(-1)!.start + shards.at(-1)!.duration;
    const slice = await writeSourceSlice(source, { start: shards[0]!.start, end, tracks: 'video', timeOrigin: facts.timeOrigin });
    fs.writeFileSync(path.join(dir, 'in.mp4'), slice.bytes);
    const job: Job = {
      ...{ id: 'j', contentId: 'h', rendition: 'top', kind: 'video', sourceUrl: '/x', deadline: 0, upload: false },
      video: { codec: 'h264', width: 320, height: 180, bitrate: 400_000 },
      shards,
      start: shards[0]!.start,
      end,
    };
    await run('ffmpeg', [
      '-v',
      'error',
      ...videoJobArgs(job, slice.sliceStart, path.join(dir, 'in.mp4'), { preset: 'ultrafast', threads: 1 }, path.join(dir, 'shard_%04d.mp4')),
    ]);
    for (const [i, s] of shards.entries()) {
      const raw = new Uint8Array(fs.readFileSync(path.join(dir, segmentName(i))));
      const retimed = await retimeSegment(raw, s);
      const [t0, t1] = await shardSpan(retimed);
      expect(t0).toBe(0);
      expect(t1, `shard ${s.index} lasts its map duration`).toBeCloseTo(s.duration, 3);
      // The server's check passes it; what the issue saw, the segment muxer ending the held frame after one
      // nominal frame, it refuses (that hole stalled viewers for good).
      const want = videoShardExpectation(map, map.shards[s.index]!, 'top');
      await checkShard(retimed, want);
      if (s.index === hold) {
        expect((await shardSpan(raw))[1]).toBeLessThan(0.1);
        await expect(checkShard(raw, want)).rejects.toMatchObject({ code: 'wrong-duration' });
      }
    }
  }, 60_000);
});
