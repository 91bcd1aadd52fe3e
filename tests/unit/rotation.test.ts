/**
 * Display rotation from probe to pixels, with the real tools: the probe reads
 * the display matrix native ffmpeg wrote, the job carries it, and the tab's own
 * ffmpeg command line (run by native ffmpeg) turns the picture into what
 * native ffmpeg shows for the source (it applies the matrix on decode).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { probeFile } from '../../signaling/media/probe.ts';
import { writeSourceSlice } from '../../signaling/media/slice.ts';
import { buildJob } from '../../signaling/pool/JobBuilder.ts';
import { rotationFilter, videoJobArgs } from '../../src/encoder/ffmpegArgs.ts';
import { meanLumaPsnr, psnrStatsName, verifyArgs, verifyShardName } from '../../src/encoder/verifyArgs.ts';
import { buildShardMap } from '../../src/shared/shardMap.ts';
import { fixture, type RotatedFixture } from '../harness/fixtures.ts';

const run = promisify(execFile);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rotation-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const config = { jobSeconds: 4, jobMaxSeconds: 6, audioJobSeconds: 30, jobDeadlineMinMs: 10_000, jobDeadlineMsPerSecond: 2000 };

/** The first frame's luma, as native ffmpeg shows it (display matrix applied). */
async function firstLuma(file: string, w: number, h: number): Promise<Buffer> {
  const { stdout } = await run('ffmpeg', ['-v', 'error', '-i', file, '-frames:v', '1', '-vf', `scale=${w}:${h}`, '-pix_fmt', 'gray', '-f', 'rawvideo', '-'], {
    encoding: 'buffer',
  });
  return stdout;
}

function psnr(a: Buffer, b: Buffer): number {
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i]! - b[i]!) ** 2;
  return se === 0 ? 99 : 10 * Math.log10((255 * 255 * a.length) / se);
}

// ffprobe's rotation is anticlockwise; the probe's (mediabunny's) is the clockwise turn a player applies.
const CASES: { fixture: RotatedFixture; rotation: 90 | 180 | 270; width: number; height: number }[] = [
  { fixture: 'rot90', rotation: 270, width: 180, height: 320 },
  { fixture: 'rot180', rotation: 180, width: 320, height: 180 },
  { fixture: 'rot270', rotation: 90, width: 180, height: 320 },
];

describe.each(CASES)('$fixture', (c) => {
  it('is probed with its displayed size and turn, the job carries the turn, and the encode shows what a player shows', async () => {
    const source = await fixture(c.fixture);
    const facts = await probeFile(source);
    expect([facts.video!.width, facts.video!.height, facts.video!.rotation]).toEqual([c.width, c.height, c.rotation]);

    const rung = { id: 'top', video: { codec: 'h264' as const, width: c.width, height: c.height, bitrate: 600_000 } };
    const map = buildShardMap({ contentId: 'r', facts, renditions: [rung] });
    const { frameTimes, ...video } = facts.video!;
    const content = {
      meta: { id: 'r', name: 'r.mp4', createdAt: '', sourceFile: 's', facts: { ...facts, video: { ...video, frameCount: frameTimes.length } } },
      map,
    };
    const job = buildJob(content, 'top', [0, 1], { id: 'j', now: 0 }, config);
    expect(job.rotation).toBe(c.rotation);
    expect(videoJobArgs(job, 0, 'in.mp4', { preset: 'ultrafast' })).toContain('-noautorotate');

    const slice = await writeSourceSlice(source, { start: job.start, end: job.end, tracks: 'video', timeOrigin: facts.timeOrigin });
    fs.writeFileSync(path.join(dir, 'in.mp4'), slice.bytes);
    const out = (i: number) => path.join(dir, `${c.fixture}_${String(i).padStart(4, '0')}.mp4`);
    const args = videoJobArgs(job, slice.sliceStart, path.join(dir, 'in.mp4'), { preset: 'ultrafast', threads: 1 }, path.join(dir, `${c.fixture}_%04d.mp4`));
    await run('ffmpeg', ['-v', 'error', ...args]);
    const [want, got] = [await firstLuma(source, c.width, c.height), await firstLuma(out(0), c.width, c.height)];
    const p = psnr(want, got);
    expect(p, `first frame ${p.toFixed(1)} dB against the source as shown`).toBeGreaterThan(35);

    // The picture verification (verifyArgs.ts) turns the source the same way, so honest shards pass it.
    for (const i of job.shards.keys()) fs.copyFileSync(out(i), path.join(dir, verifyShardName(i)));
    await run('ffmpeg', ['-v', 'error', ...verifyArgs(job, slice.sliceStart, dir)]);
    for (const i of job.shards.keys()) {
      const v = meanLumaPsnr(fs.readFileSync(path.join(dir, psnrStatsName(i)), 'utf8'));
      expect(v.psnr, `verification of shard ${i}`).toBeGreaterThan(35);
    }
  }, 60_000);
});

describe('rotationFilter', () => {
  it('turns clockwise with transposes and flips only (no resampling), nothing for no turn', () => {
    expect(rotationFilter(90)).toBe('transpose=clock,');
    expect(rotationFilter(180)).toBe('hflip,vflip,');
    expect(rotationFilter(270)).toBe('transpose=cclock,');
    expect(rotationFilter(undefined)).toBe('');
  });
});
