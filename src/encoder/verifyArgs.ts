/**
 * The pure parts of a picture verification (Verifier.ts): the ffmpeg command
 * line that decodes shards and their source and measures PSNR, reading
 * ffmpeg's PSNR stats, and comparing frame times. Kept pure so the exact
 * filter graph and arithmetic are unit-tested.
 */
import type { Job } from '../shared/protocol.ts';
import { rotationFilter } from './ffmpegArgs.ts';

const fmt = (t: number) => t.toFixed(6).replace(/\.?0+$/, '') || '0';

/** Name of shard `i`'s input and of its PSNR stats file in the exec's directory. */
export const verifyShardName = (i: number) => `s${i}.mp4`;
export const psnrStatsName = (i: number) => `psnr${i}.log`;

/**
 * One ffmpeg exec for a whole verification: the source slice is decoded
 * once, trimmed to the job's first frame, turned by the job's rotation and
 * scaled to the rendition as the encoders do (ffmpegArgs.ts), split per shard, each branch cut to its
 * shard's frames (by frame number, so rounding never shifts a boundary); each
 * shard is compared frame by frame (both sides renumbered, so pairing goes by
 * frame order, not time: times are checked apart) with the psnr filter, whose
 * per-frame stats go to `psnrStatsName(i)`.
 */
export function verifyArgs(job: Job, sliceStart: number, dir: string): string[] {
  const v = job.video;
  if (!v) throw new Error(`verification ${job.id} is not a video job`);
  const first = job.shards[0]!;
  const halfFrame = first.duration / first.frames / 2;
  const offset = Math.max(0, first.start - sliceStart - halfFrame);
  const n = job.shards.length;
  const total = job.shards[n - 1]!.firstFrame + job.shards[n - 1]!.frames - first.firstFrame;
  // Exact integers in an exact time base: setpts=N/(25*TB) rounds in a coarse stream time base, and pairs frames off by one.
  const byOrder = 'settb=1/25,setpts=N';
  const ref = [
    `[0:v]${offset > 0 ? `trim=start=${fmt(offset)},setpts=PTS-STARTPTS,` : ''}trim=end_frame=${total},${rotationFilter(job.rotation)}scale=${v.width}:${v.height}:flags=bicubic,setsar=1,format=yuv420p`,
    n > 1 ? `,split=${n}${job.shards.map((_, i) => `[r${i}]`).join('')}` : '[r0]',
  ].join('');
  const branches = job.shards.map((s, i) => {
    const a = s.firstFrame - first.firstFrame;
    return (
      `[r${i}]trim=start_frame=${a}:end_frame=${a + s.frames},${byOrder}[ref${i}];` +
      `[${i + 1}:v]format=yuv420p,setsar=1,${byOrder}[enc${i}];` +
      `[enc${i}][ref${i}]psnr=stats_file=${dir}/${psnrStatsName(i)}[o${i}]`
    );
  });
  return [
    '-nostdin',
    '-y',
    // Turned by the job's rotation, as the encoders do (ffmpegArgs.ts), never also by a matrix in the slice.
    '-noautorotate',
    '-i',
    `${dir}/in.mp4`,
    ...job.shards.flatMap((_, i) => ['-i', `${dir}/${verifyShardName(i)}`]),
    '-filter_complex',
    [ref, ...branches].join(';'),
    ...job.shards.flatMap((_, i) => ['-map', `[o${i}]`, '-f', 'null', '-']),
  ];
}

/** The highest PSNR reported: identical pictures (ffmpeg's "inf") count as this, dB. */
export const PSNR_CAP = 100;

/**
 * Mean luma PSNR (dB) of a psnr filter stats file: 10·log10(255² / mean MSE
 * of Y over the frames), capped at PSNR_CAP; 0 when no frame was compared.
 */
export function meanLumaPsnr(stats: string): { psnr: number; frames: number } {
  const mses = [...stats.matchAll(/mse_y:([0-9.]+|inf|nan)/g)].map((m) => Number(m[1]));
  if (mses.length === 0 || mses.some((x) => !Number.isFinite(x))) return { psnr: 0, frames: mses.length };
  const mse = mses.reduce((a, b) => a + b, 0) / mses.length;
  return { psnr: mse === 0 ? PSNR_CAP : Math.min(PSNR_CAP, Math.max(0, 10 * Math.log10((255 * 255) / mse))), frames: mses.length };
}

/**
 * The largest difference (s) between the shard's frame times and the
 * source's (both sorted and rebased to their first frame), frame by frame
 * over the frames both have; Infinity when either has none.
 */
export function maxTimeError(shardTimes: readonly number[], sourceTimes: readonly number[]): number {
  const a = [...shardTimes].sort((x, y) => x - y);
  const b = [...sourceTimes].sort((x, y) => x - y);
  if (a.length === 0 || b.length === 0) return Infinity;
  let worst = 0;
  for (let k = 0; k < Math.min(a.length, b.length); k++) worst = Math.max(worst, Math.abs(a[k]! - a[0]! - (b[k]! - b[0]!)));
  return worst;
}

/** The source frame times (slice time, s) of one shard: its `frames` first from half a frame before its start. */
export function sourceFramesOf(sourceTimes: readonly number[], shard: { start: number; duration: number; frames: number }, sliceStart: number): number[] {
  const from = shard.start - sliceStart - shard.duration / shard.frames / 2;
  return [...sourceTimes]
    .sort((x, y) => x - y)
    .filter((t) => t >= from)
    .slice(0, shard.frames);
}
