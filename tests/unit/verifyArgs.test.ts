import { describe, expect, it } from 'vitest';
import { maxTimeError, meanLumaPsnr, PSNR_CAP, sourceFramesOf, verifyArgs } from '../../src/encoder/verifyArgs.ts';
import type { Job } from '../../src/shared/protocol.ts';

const job = {
  id: 'j',
  video: { codec: 'h264', width: 320, height: 180, bitrate: 400_000 },
  shards: [
    { index: 4, start: 1.2, duration: 0.3, frames: 9, firstFrame: 36 },
    { index: 5, start: 1.5, duration: 0.3, frames: 9, firstFrame: 45 },
  ],
} as unknown as Job;

describe('verifyArgs', () => {
  it('decodes the source once, trims to the job, scales as the encoders do, and cuts each shard by frame number', () => {
    const args = verifyArgs(job, 1.0, '/d');
    expect(args.filter((a) => a === '-i')).toHaveLength(3);
    const graph = args[args.indexOf('-filter_complex') + 1]!;
    // Half a frame early (1/60 s): rounding never drops the first frame.
    expect(graph).toContain('[0:v]trim=start=0.183333,setpts=PTS-STARTPTS,trim=end_frame=18,scale=320:180:flags=bicubic,setsar=1');
    expect(graph).toContain('split=2[r0][r1]');
    expect(graph).toContain('[r1]trim=start_frame=9:end_frame=18,settb=1/25,setpts=N[ref1]');
    expect(graph).toContain('[enc1][ref1]psnr=stats_file=/d/psnr1.log[o1]');
    expect(args.filter((a) => a === 'null')).toHaveLength(2);
  });
});

describe('meanLumaPsnr', () => {
  it('averages the luma MSE over frames before taking the log, and caps identical pictures', () => {
    const stats = 'n:1 mse_avg:1 mse_y:6.5025 mse_u:1 psnr_y:40\nn:2 mse_avg:1 mse_y:650.25 mse_u:1 psnr_y:20\n';
    // mean MSE 328.37... -> 10 log10(65025 / 328.37) = 22.97 dB (the mean of the dB values would say 30).
    expect(meanLumaPsnr(stats).psnr).toBeCloseTo(22.97, 2);
    expect(meanLumaPsnr(stats).frames).toBe(2);
    expect(meanLumaPsnr('n:1 mse_y:0.00 psnr_y:inf\n').psnr).toBe(PSNR_CAP);
    expect(meanLumaPsnr('')).toEqual({ psnr: 0, frames: 0 });
  });
});

describe('frame times', () => {
  it('compares times rebased to each side first frame, in presentation order', () => {
    expect(maxTimeError([0.1, 0.0, 0.05], [2.0, 2.05, 2.1])).toBeCloseTo(0, 9);
    expect(maxTimeError([0, 0.05, 0.1], [2.0, 2.05, 2.2])).toBeCloseTo(0.1, 9);
    expect(maxTimeError([], [1])).toBe(Infinity);
  });
  it("picks the shard's frames from the slice, from half a frame before its start", () => {
    const times = Array.from({ length: 30 }, (_, k) => k / 30);
    expect(sourceFramesOf(times, { start: 1.2, duration: 0.3, frames: 9 }, 1.0)).toEqual(times.slice(6, 15));
  });
});
