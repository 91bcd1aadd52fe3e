/**
 * The job builder policy: which consecutive shards one job takes, and the Job
 * message for them (shard times, source slice URL, audio overlap, deadline).
 * Pure: the caller passes the id, token and current time.
 */
import type { Job } from '../../src/shared/protocol.ts';
import { AAC_PACKET_SAMPLES, effectiveVideoSpec, isAudioRendition, isVideoRendition } from '../../src/shared/shardMap.ts';
import type { Content } from '../ContentStore.ts';
import { planRun, type JobPlanOptions } from '../jobs.ts';

/** Extra audio each separately encoded run carries where it meets another run, seconds (DESIGN.md: 100 ms). */
export const AUDIO_RUN_OVERLAP = 0.1;

export interface JobBuilderConfig extends JobPlanOptions {
  jobDeadlineMinMs: number;
  jobDeadlineMsPerSecond: number;
}

/**
 * The shards of the job that starts at shard `first`: a run of consecutive
 * shards that are `free`, in the same retry class as `first` (re-queued
 * shards travel together, apart from fresh ones, so a lost job comes back as
 * exactly its unfinished part) and with the same effective video spec (one
 * exec encodes one spec: a per-shard override ends the run).
 */
export function runIndices(
  content: Content,
  renditionId: string,
  first: number,
  free: (index: number) => boolean,
  isRetry: (index: number) => boolean,
  config: JobPlanOptions,
): number[] {
  const map = content.map;
  const r = map.renditions.find((x) => x.id === renditionId)!;
  const retry = isRetry(first);
  const specOf = (i: number) => (isVideoRendition(r) ? JSON.stringify(effectiveVideoSpec(map, map.shards[i]!, renditionId)) : '');
  const spec = specOf(first);
  return planRun(map, renditionId, first, (i) => free(i) && isRetry(i) === retry && specOf(i) === spec, content.meta.facts.video?.keyframeTimes ?? [], config);
}

/**
 * The job message for shards `indices` of one rendition; `now` (ms) sets the
 * deadline. With an `uploadToken` the encoder must upload each shard's bytes
 * for the server's check before reporting it.
 */
export function buildJob(
  content: Content,
  renditionId: string,
  indices: readonly number[],
  ids: { id: string; uploadToken?: string; now: number },
  config: JobBuilderConfig,
): Job {
  const map = content.map;
  const r = map.renditions.find((x) => x.id === renditionId)!;
  const shards = indices.map((i) => {
    const s = map.shards[i]!;
    const st = s.renditions[renditionId]!;
    const audio = isAudioRendition(r);
    return {
      index: i,
      start: audio ? (st.start ?? s.start) : s.start,
      duration: audio && st.samples ? st.samples / r.audio.sampleRate : s.duration,
      frames: s.frames,
      firstFrame: s.firstFrame,
      ...(audio && st.samples !== undefined && { samples: st.samples }),
    };
  });
  const start = shards[0]!.start;
  const last = shards[shards.length - 1]!;
  const end = last.start + last.duration;
  const kind = isAudioRendition(r) ? 'audio' : 'video';
  const seconds = end - start;
  // Audio runs that meet another run carry ~100 ms extra on that side, for the viewer to trim.
  let leadPackets = 0;
  let tailPackets = 0;
  const packetSec = isAudioRendition(r) ? AAC_PACKET_SAMPLES / r.audio.sampleRate : 0;
  if (isAudioRendition(r)) {
    const margin = Math.ceil(AUDIO_RUN_OVERLAP / packetSec);
    const audioStart = content.meta.facts.audio?.start ?? 0;
    leadPackets = Math.min(margin, Math.max(0, Math.floor((start - audioStart) / packetSec + 1e-6)));
    const lastAudio = map.shards.findLastIndex((s) => s.renditions[renditionId] !== undefined);
    tailPackets = last.index < lastAudio ? margin : 0;
  }
  const rotation = content.meta.facts.video?.rotation;
  const q = new URLSearchParams({
    start: Math.max(0, start - leadPackets * packetSec).toFixed(6),
    end: (end + tailPackets * packetSec).toFixed(6),
    tracks: kind,
  });
  return {
    id: ids.id,
    contentId: map.contentId,
    rendition: renditionId,
    kind,
    ...(isVideoRendition(r) && { video: effectiveVideoSpec(map, map.shards[indices[0]!]!, renditionId) }),
    ...(isVideoRendition(r) && rotation && { rotation }),
    ...(isAudioRendition(r) && { audio: r.audio }),
    shards,
    sourceUrl: `/api/contents/${encodeURIComponent(map.contentId)}/source?${q.toString()}`,
    start,
    end,
    deadline: ids.now + Math.max(config.jobDeadlineMinMs, Math.round(seconds * config.jobDeadlineMsPerSecond)),
    upload: ids.uploadToken !== undefined,
    ...(ids.uploadToken !== undefined && { uploadToken: ids.uploadToken }),
    ...(kind === 'audio' && { leadPackets, tailPackets }),
  };
}
