/**
 * Job planning: which shards go together into one encoding job.
 *
 * A shard is the unit of storage and delivery, not of encoding: an encoder exec
 * has a fixed cost (~46 ms) and each job decodes from the previous source key
 * frame. So a job is a run of consecutive pending shards of one rendition,
 * about `jobSeconds` long, ended at a source key frame when one falls in the
 * allowed range (so the next job's slice starts right there). Audio jobs are
 * long runs, because each separate AAC encode brings its own priming.
 */
import type { ShardMap } from '../src/shared/shardMap.ts';
import { isAudioRendition } from '../src/shared/shardMap.ts';

export interface JobPlanOptions {
  jobSeconds: number;
  jobMaxSeconds: number;
  audioJobSeconds: number;
}

/**
 * Extends a run from shard `first` over consecutive shards for which
 * `available(i)` holds. Returns the shard indices of the job.
 */
export function planRun(
  map: ShardMap,
  renditionId: string,
  first: number,
  available: (index: number) => boolean,
  keyframeTimes: readonly number[],
  opts: JobPlanOptions,
): number[] {
  const r = map.renditions.find((x) => x.id === renditionId);
  const audio = r !== undefined && isAudioRendition(r);
  const total = map.shards.length;
  const contentLen = map.shards[total - 1]!.start + map.shards[total - 1]!.duration - map.shards[0]!.start;
  let target: number;
  let max: number;
  if (audio) {
    // Whole content when it is short, else runs of audioJobSeconds.
    target = contentLen <= 2 * opts.audioJobSeconds ? Infinity : opts.audioJobSeconds;
    max = target === Infinity ? Infinity : 2 * opts.audioJobSeconds;
  } else {
    target = opts.jobSeconds;
    max = opts.jobMaxSeconds;
  }
  const min = audio ? target : Math.min(target, Math.max(opts.jobSeconds * 0.66, max * 0.4));
  const kf = new Set(keyframeTimes.map((t) => t.toFixed(4)));
  const out: number[] = [];
  let len = 0;
  for (let i = first; i < total && available(i); i++) {
    const s = map.shards[i]!;
    if (out.length > 0 && len + s.duration > max + 1e-9) break;
    out.push(i);
    len += s.duration;
    const next = map.shards[i + 1];
    if (!next) break;
    // Ending where the source has a key frame lets the next job's slice start there.
    if (!audio && len >= min && kf.has(next.start.toFixed(4))) break;
    if (len >= target) break;
  }
  return out;
}
