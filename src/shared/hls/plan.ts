/**
 * Owns the segmentation policy of the HLS/DASH output: which consecutive
 * shards make one media segment of a rendition, which init segment each
 * segment needs, and which segments can be listed now. Pure: a function of
 * the ShardMap's immutable parts (shard times, audio placements, per-shard
 * overrides), so a segment's number and contents never change while a
 * content is still encoding and its playlist grows (RFC 8216 §6.2.1: a
 * server may only append to an EVENT playlist).
 */
import { effectiveVideoSpec, isAudioRendition, isVideoRendition, type Shard, type ShardMap } from '../shardMap.ts';

/**
 * Segment length the grouping aims at, in seconds. Apple's HLS authoring
 * guide asks for about 6 s; 2 s keeps start-up and rendition switches quick
 * while cutting playlist and request counts ~7x against 0.3 s shards.
 */
export const HLS_TARGET_SEGMENT_S = 2;

/** One media segment of one rendition. */
export interface HlsSegment {
  /** Position in the rendition's playlist from 0: its media sequence number and its URL's index. */
  seq: number;
  /** Map indices of the shards it is built from, consecutive and ascending. */
  shards: number[];
  /** Content seconds where its first sample is presented (the map's time; audio: the exact sample start). */
  start: number;
  /** Seconds. */
  duration: number;
  /** The init segment it is decoded with (an index into 0..inits-1). */
  init: number;
}

export interface HlsRenditionPlan {
  id: string;
  kind: 'video' | 'audio';
  segments: HlsSegment[];
  /** Init segments, numbered from 0; init n is made from the first shard of the first segment that uses it. */
  inits: number;
}

/** Video renditions in map order, then the audio rendition, if any. */
export interface HlsPlan {
  renditions: HlsRenditionPlan[];
}

/** Shard variants a caller can build segments from now (for the server: ready and in its cache). */
export type ShardAvailable = (rendition: string, index: number) => boolean;

/**
 * Runs of consecutive shards about `target` s long: each run grows while one
 * more shard brings its length nearer to the target, so 0.3 s shards give
 * 2.1 s runs and a short last run is kept as it is.
 */
export function groupShards(shards: readonly Shard[], target = HLS_TARGET_SEGMENT_S): Shard[][] {
  const runs: Shard[][] = [];
  let run: Shard[] = [];
  let length = 0;
  for (const s of shards) {
    if (run.length > 0 && Math.abs(length + s.duration - target) > Math.abs(length - target)) {
      runs.push(run);
      run = [];
      length = 0;
    }
    run.push(s);
    length += s.duration;
  }
  if (run.length > 0) runs.push(run);
  return runs;
}

/** What a video init segment describes, as far as the map knows: a change of it needs a new init segment. */
function videoConfigKey(map: ShardMap, shard: Shard, rendition: string): string {
  const v = effectiveVideoSpec(map, shard, rendition);
  return `${v.codec} ${v.width}x${v.height}`;
}

function videoPlan(map: ShardMap, runs: readonly Shard[][], id: string): HlsRenditionPlan {
  const segments: HlsSegment[] = [];
  let init = -1;
  let key: string | undefined;
  for (const run of runs) {
    // A run that spans a codec or size change is split there, so every segment has one init segment.
    let part: Shard[] = [];
    const close = () => {
      if (part.length === 0) return;
      const first = part[0]!;
      const last = part[part.length - 1]!;
      segments.push({ seq: segments.length, shards: part.map((s) => s.index), start: first.start, duration: last.start + last.duration - first.start, init });
      part = [];
    };
    for (const s of run) {
      const k = videoConfigKey(map, s, id);
      if (k !== key) {
        close();
        key = k;
        init++;
      }
      part.push(s);
    }
    close();
  }
  return { id, kind: 'video', segments, inits: Math.max(0, init + 1) };
}

/** Audio segments follow the video runs, holding the audio shards placed under them; their times are the exact sample times. */
function audioPlan(runs: readonly Shard[][], id: string, sampleRate: number): HlsRenditionPlan {
  const segments: HlsSegment[] = [];
  for (const run of runs) {
    const placed = run.filter((s) => s.renditions[id]?.start !== undefined && s.renditions[id]?.samples !== undefined);
    if (placed.length === 0) continue;
    const samples = placed.reduce((n, s) => n + s.renditions[id]!.samples!, 0);
    segments.push({
      seq: segments.length,
      shards: placed.map((s) => s.index),
      start: placed[0]!.renditions[id]!.start!,
      duration: samples / sampleRate,
      init: 0,
    });
  }
  return { id, kind: 'audio', segments, inits: segments.length > 0 ? 1 : 0 };
}

/** The segments of every rendition of `map`, about `target` s each. */
export function planHls(map: ShardMap, target = HLS_TARGET_SEGMENT_S): HlsPlan {
  const runs = groupShards(map.shards, target);
  const renditions = map.renditions.filter(isVideoRendition).map((r) => videoPlan(map, runs, r.id));
  const audio = map.renditions.find(isAudioRendition);
  if (audio) renditions.push(audioPlan(runs, audio.id, audio.audio.sampleRate));
  return { renditions };
}

/** Whether every shard of `seg` is ready in the map and available to the caller. */
export function segmentReady(map: ShardMap, rendition: string, seg: HlsSegment, available: ShardAvailable): boolean {
  return seg.shards.every((i) => map.shards[i]?.renditions[rendition]?.status === 'ready' && available(rendition, i));
}

/**
 * How many leading segments of `r` can be listed: a playlist only grows at
 * its end, so a ready segment after a missing one waits for it.
 */
export function listedSegments(map: ShardMap, r: HlsRenditionPlan, available: ShardAvailable): number {
  let n = 0;
  while (n < r.segments.length && segmentReady(map, r.id, r.segments[n]!, available)) n++;
  return n;
}

/** The segment that init segment `n` of `r` is made from (its first user), or undefined when there is no init `n`. */
export function initSource(r: HlsRenditionPlan, n: number): HlsSegment | undefined {
  return r.segments.find((s) => s.init === n);
}
