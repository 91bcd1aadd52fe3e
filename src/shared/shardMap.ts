/**
 * The ShardMap: the one description a viewer needs to rebuild a stream, and the
 * one authority on time (a viewer places each shard at the map's `start`,
 * whatever timestamps the shard file carries).
 *
 * This module holds the schema (validated at runtime on both sides) and the
 * pure builder that turns probe facts into a map.
 */
import { z } from 'zod';
import type { ProbeFacts } from './media.ts';
import { ShardcastError } from './errors.ts';
import { variantKeyString, type VariantKey } from './variantKey.ts';

export const SHARD_MAP_VERSION = 1;

/** Shard length bounds in seconds. Shorter shards cost too much in key frames, longer ones hurt churn recovery. */
export const SHARD_DURATION_MIN = 0.2;
export const SHARD_DURATION_MAX = 0.5;
export const SHARD_DURATION_DEFAULT = 0.3;

/** Samples per AAC packet: the grid audio shards are cut on. */
export const AAC_PACKET_SAMPLES = 1024;

export const AUDIO_RENDITION_ID = 'audio';

// ---------------------------------------------------------------- schema

const finite = z.number().finite();
const positive = finite.positive();
const nonNegative = finite.nonnegative();
const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();

export const renditionIdSchema = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, 'rendition ids are 1-32 chars of a-z, 0-9, _ and -');

export const videoCodecSchema = z.enum(['h264', 'vp9', 'av1']);
export const audioCodecSchema = z.enum(['aac', 'opus']);

export const videoSpecSchema = z.object({
  codec: videoCodecSchema,
  width: posInt.max(7680).refine((n) => n % 2 === 0, 'width must be even'),
  height: posInt.max(4320).refine((n) => n % 2 === 0, 'height must be even'),
  /** Target bitrate in bits/s. */
  bitrate: posInt.min(10_000).max(100_000_000),
});

export const audioSpecSchema = z.object({
  codec: audioCodecSchema,
  bitrate: posInt.min(8_000).max(1_000_000),
  sampleRate: z.union([z.literal(44100), z.literal(48000)]),
  channels: z.union([z.literal(1), z.literal(2)]),
});

export const renditionSchema = z.union([
  z.object({ id: renditionIdSchema, video: videoSpecSchema }).strict(),
  z.object({ id: renditionIdSchema, audio: audioSpecSchema }).strict(),
]);

export const shardStatusSchema = z.enum(['pending', 'encoding', 'ready', 'failed']);

export const sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, 'sha256 is 64 lowercase hex digits');

export const shardRenditionStateSchema = z.object({
  status: shardStatusSchema,
  sha256: sha256Schema.optional(),
  size: posInt.optional(),
  /** Encoder engine that made the accepted variant, e.g. "ffmpeg-wasm". */
  engine: z.string().max(128).optional(),
  /** Audio only: exact start of the shard's first sample on the content timeline (s). */
  start: finite.optional(),
  /** Audio only: number of samples, always a whole number of AAC packets. */
  samples: posInt.optional(),
  /** Audio only, set with the accepted variant: samples in the file before `start` (priming, pre-roll). */
  lead: nonNegInt.max(10 * 48000).optional(),
  /** Audio only, set with the accepted variant: samples in the file after the shard's end. */
  tail: nonNegInt.max(10 * 48000).optional(),
});

export const shardOverridesSchema = z.record(renditionIdSchema, videoSpecSchema.partial().strict());

export const shardSchema = z.object({
  index: nonNegInt,
  /** Presentation time of the shard's first frame on the content timeline (s). */
  start: nonNegative,
  duration: positive,
  /** Whole frames in the shard (audio-only contents: AAC packets). */
  frames: posInt,
  /** Index of the shard's first frame in the source (audio-only: first AAC packet after priming). */
  firstFrame: nonNegInt,
  overrides: shardOverridesSchema.optional(),
  /** Higher is encoded sooner. */
  priority: z.number().int().min(-100).max(100).optional(),
  renditions: z.record(renditionIdSchema, shardRenditionStateSchema),
});

export const sourceSchema = z.object({
  duration: positive,
  container: z.string().max(64).optional(),
  video: z
    .object({
      codec: z.string().max(32),
      width: posInt,
      height: posInt,
      fps: positive,
      variableFrameRate: z.boolean().optional(),
    })
    .optional(),
  audio: z.object({ codec: z.string().max(32), sampleRate: posInt, channels: posInt, start: nonNegative.optional() }).optional(),
});

export const shardMapSchema = z
  .object({
    version: z.literal(SHARD_MAP_VERSION),
    contentId: z.string().min(1).max(64),
    shardDuration: finite.min(SHARD_DURATION_MIN).max(SHARD_DURATION_MAX),
    source: sourceSchema,
    renditions: z.array(renditionSchema).min(1).max(16),
    shards: z.array(shardSchema).min(1),
  })
  .superRefine((map, ctx) => {
    const ids = new Set<string>();
    for (const r of map.renditions) {
      if (ids.has(r.id)) ctx.addIssue({ code: 'custom', message: `duplicate rendition id "${r.id}"`, path: ['renditions'] });
      ids.add(r.id);
    }
    let prevEnd = -Infinity;
    map.shards.forEach((s, i) => {
      if (s.index !== i) ctx.addIssue({ code: 'custom', message: `shard ${i} has index ${s.index}`, path: ['shards', i, 'index'] });
      if (s.start < prevEnd - 1e-6) ctx.addIssue({ code: 'custom', message: `shard ${i} overlaps the previous one`, path: ['shards', i, 'start'] });
      prevEnd = s.start + s.duration;
      for (const r of Object.keys(s.renditions)) {
        if (!ids.has(r)) ctx.addIssue({ code: 'custom', message: `shard ${i} names unknown rendition "${r}"`, path: ['shards', i, 'renditions'] });
      }
      for (const r of Object.keys(s.overrides ?? {})) {
        if (!ids.has(r)) ctx.addIssue({ code: 'custom', message: `shard ${i} overrides unknown rendition "${r}"`, path: ['shards', i, 'overrides'] });
      }
    });
  });

export type VideoCodec = z.infer<typeof videoCodecSchema>;
export type AudioCodec = z.infer<typeof audioCodecSchema>;
export type VideoSpec = z.infer<typeof videoSpecSchema>;
export type AudioSpec = z.infer<typeof audioSpecSchema>;
export type Rendition = z.infer<typeof renditionSchema>;
export type VideoRendition = Extract<Rendition, { video: VideoSpec }>;
export type AudioRendition = Extract<Rendition, { audio: AudioSpec }>;
export type ShardStatus = z.infer<typeof shardStatusSchema>;
export type ShardRenditionState = z.infer<typeof shardRenditionStateSchema>;
export type Shard = z.infer<typeof shardSchema>;
export type ShardOverrides = z.infer<typeof shardOverridesSchema>;
export type ShardMap = z.infer<typeof shardMapSchema>;

/** A shard variant: one shard in one rendition (the same type as VariantKey). */
export type ShardKey = VariantKey;

/** The key's one string form (see variantKeyString). */
export const shardKeyString = variantKeyString;

export function isVideoRendition(r: Rendition): r is VideoRendition {
  return 'video' in r;
}
export function isAudioRendition(r: Rendition): r is AudioRendition {
  return 'audio' in r;
}

// ---------------------------------------------------------------- errors

/** Thrown for inputs the map cannot be built from; `code` is stable for API clients. */
export class ShardMapError extends ShardcastError<'bad-shard-duration' | 'no-media' | 'bad-ladder' | 'invalid-map'> {
  override name = 'ShardMapError';
}

export function checkShardDuration(d: unknown): number {
  if (d === undefined) return SHARD_DURATION_DEFAULT;
  const n = typeof d === 'string' && d.trim() !== '' ? Number(d) : d;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < SHARD_DURATION_MIN || n > SHARD_DURATION_MAX) {
    throw new ShardMapError(
      'bad-shard-duration',
      `shard duration must be a number of seconds from ${SHARD_DURATION_MIN} to ${SHARD_DURATION_MAX} (got ${JSON.stringify(d)}); ` +
        `leave it out for the default ${SHARD_DURATION_DEFAULT}`,
    );
  }
  return n;
}

/** Parses untrusted JSON into a ShardMap, with every problem listed in the message. */
export function parseShardMap(value: unknown): ShardMap {
  const r = shardMapSchema.safeParse(value);
  if (!r.success) {
    const issues = r.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new ShardMapError('invalid-map', `invalid shard map: ${issues.join('; ')}`);
  }
  return r.data;
}

// ---------------------------------------------------------------- ladder

const even = (n: number) => Math.max(2, 2 * Math.round(n / 2));

/**
 * Bits per pixel per frame for H.264 at "good web quality". 0.08 gives about
 * 2.2 Mb/s for 720p30 and 0.55 Mb/s for 360p30.
 */
const H264_BITS_PER_PIXEL = 0.08;

/**
 * The default ladder: the source height capped at 720p, plus a low rung at half
 * the height and about a quarter of the bitrate, plus one shared audio rendition.
 */
export function defaultLadder(facts: Pick<ProbeFacts, 'video' | 'audio'>): Rendition[] {
  const out: Rendition[] = [];
  if (facts.video) {
    const { width, height } = facts.video;
    const fps = Math.min(60, Math.max(1, facts.video.fps || 30));
    const topH = even(Math.min(height, 720));
    const topW = even((width * topH) / height);
    const topRate = Math.round(topW * topH * fps * H264_BITS_PER_PIXEL);
    const clampRate = (b: number) => Math.min(100_000_000, Math.max(50_000, Math.round(b / 1000) * 1000));
    out.push({ id: `${topH}p`, video: { codec: 'h264', width: topW, height: topH, bitrate: clampRate(topRate) } });
    const lowH = even(topH / 2);
    if (lowH >= 72 && lowH < topH) {
      const lowW = even((width * lowH) / height);
      out.push({ id: `${lowH}p`, video: { codec: 'h264', width: lowW, height: lowH, bitrate: clampRate(topRate / 4) } });
    }
  }
  if (facts.audio) {
    const channels = facts.audio.channels >= 2 ? 2 : 1;
    out.push({
      id: AUDIO_RENDITION_ID,
      audio: {
        codec: 'aac',
        bitrate: channels === 2 ? 128_000 : 64_000,
        sampleRate: facts.audio.sampleRate === 44100 ? 44100 : 48000,
        channels,
      },
    });
  }
  return out;
}

// ---------------------------------------------------------------- builder

export interface BuildShardMapOptions {
  contentId: string;
  facts: ProbeFacts;
  /** Seconds, 0.2..0.5; default 0.3. */
  shardDuration?: number;
  /** Replaces the default ladder. */
  renditions?: Rendition[];
}

interface Cut {
  start: number;
  duration: number;
  frames: number;
  firstFrame: number;
}

/**
 * Cuts a frame timeline into shards whose starts are frame timestamps. Each cut
 * snaps to the frame nearest to `previous start + D`, so a constant frame rate
 * gives a constant frame count per shard (9 frames at 29.97 fps and D = 0.3),
 * and a variable one follows its own timestamps.
 */
export function cutFrames(frameTimes: readonly number[], end: number, d: number): Cut[] {
  const n = frameTimes.length;
  if (n === 0) return [];
  const t = (i: number) => frameTimes[i]!;
  const cuts: Cut[] = [];
  let b = 0;
  let j = 0;
  while (b < n) {
    const target = t(b) + d;
    if (j <= b) j = b + 1;
    while (j < n && t(j) < target) j++;
    // j is the first frame at or after the target; its predecessor may be nearer.
    let next = j;
    if (j < n && j - 1 > b && target - t(j - 1) < t(j) - target) next = j - 1;
    if (j >= n) {
      // The remaining frames are shorter than one shard: they form the last, short shard.
      next = n;
    }
    const stop = next < n ? t(next) : end;
    cuts.push({ start: t(b), duration: stop - t(b), frames: next - b, firstFrame: b });
    b = next;
  }
  return cuts;
}

/** Audio shards for a content with video: packet runs aligned as closely as the AAC grid allows to the video cuts. */
function audioPlacement(
  cuts: readonly Cut[],
  audio: { start: number; duration: number },
  sampleRate: number,
): ({ start: number; samples: number; firstPacket: number } | null)[] {
  const packetDur = AAC_PACKET_SAMPLES / sampleRate;
  const totalPackets = Math.max(1, Math.ceil((audio.duration * sampleRate) / AAC_PACKET_SAMPLES - 1e-9));
  // q[i]: index (1-based after the priming packet) of shard i's first packet.
  const q = cuts.map((c, i) => (i === 0 ? 1 : Math.min(totalPackets + 1, Math.max(1, 1 + Math.round((c.start - audio.start) / packetDur)))));
  q.push(totalPackets + 1);
  for (let i = 1; i < q.length; i++) q[i] = Math.max(q[i]!, q[i - 1]!);
  return cuts.map((_, i) => {
    const first = q[i]!;
    const packets = q[i + 1]! - first;
    if (packets <= 0) return null;
    return { start: audio.start + ((first - 1) * AAC_PACKET_SAMPLES) / sampleRate, samples: packets * AAC_PACKET_SAMPLES, firstPacket: first - 1 };
  });
}

export function buildShardMap(opts: BuildShardMapOptions): ShardMap {
  const d = checkShardDuration(opts.shardDuration);
  const { facts } = opts;
  if (!facts.video && !facts.audio) throw new ShardMapError('no-media', 'the source has neither a video nor an audio track');
  const renditions = opts.renditions ?? defaultLadder(facts);
  if (renditions.length === 0) throw new ShardMapError('bad-ladder', 'the rendition ladder is empty');
  for (const r of renditions) {
    if (isVideoRendition(r) && !facts.video) throw new ShardMapError('bad-ladder', `rendition "${r.id}" is video but the source has no video track`);
    if (isAudioRendition(r) && !facts.audio) throw new ShardMapError('bad-ladder', `rendition "${r.id}" is audio but the source has no audio track`);
  }
  const audioR = renditions.find(isAudioRendition);
  const videoRs = renditions.filter(isVideoRendition);

  let cuts: Cut[];
  if (facts.video && videoRs.length > 0) {
    const v = facts.video;
    const end = v.frameTimes[v.frameTimes.length - 1]! + v.lastFrameDuration;
    cuts = cutFrames(v.frameTimes, end, d);
    if (cuts.length === 0) throw new ShardMapError('no-media', 'the video track has no frames');
  } else {
    // Audio-only: the shards are runs of whole AAC packets.
    const a = facts.audio!;
    const sr = audioR!.audio.sampleRate;
    const per = Math.max(1, Math.round((d * sr) / AAC_PACKET_SAMPLES));
    const total = Math.max(1, Math.ceil((a.duration * sr) / AAC_PACKET_SAMPLES - 1e-9));
    cuts = [];
    for (let p = 0; p < total; p += per) {
      const frames = Math.min(per, total - p);
      cuts.push({
        start: a.start + (p * AAC_PACKET_SAMPLES) / sr,
        duration: (frames * AAC_PACKET_SAMPLES) / sr,
        frames,
        firstFrame: p,
      });
    }
  }

  const audioAt = audioR && facts.audio ? audioPlacement(cuts, facts.audio, audioR.audio.sampleRate) : [];

  const shards: Shard[] = cuts.map((c, index) => {
    const states: Record<string, ShardRenditionState> = {};
    for (const r of videoRs) states[r.id] = { status: 'pending' };
    const a = audioAt[index];
    if (audioR && a) states[audioR.id] = { status: 'pending', start: a.start, samples: a.samples };
    return { index, start: c.start, duration: c.duration, frames: c.frames, firstFrame: c.firstFrame, renditions: states };
  });

  const map: ShardMap = {
    version: SHARD_MAP_VERSION,
    contentId: opts.contentId,
    shardDuration: d,
    source: {
      duration: facts.duration,
      container: facts.container,
      ...(facts.video && {
        video: {
          codec: facts.video.codec,
          width: facts.video.width,
          height: facts.video.height,
          fps: facts.video.fps,
          variableFrameRate: facts.video.variableFrameRate,
        },
      }),
      ...(facts.audio && {
        audio: {
          codec: facts.audio.codec,
          sampleRate: facts.audio.sampleRate,
          channels: facts.audio.channels,
          start: facts.audio.start,
        },
      }),
    },
    renditions,
    shards,
  };
  return parseShardMap(map);
}

// ---------------------------------------------------------------- queries

/** The rendition's parameters for one shard, with the shard's overrides applied. */
export function effectiveVideoSpec(map: ShardMap, shard: Shard, renditionId: string): VideoSpec {
  const r = map.renditions.find((x) => x.id === renditionId);
  if (!r || !isVideoRendition(r)) throw new ShardMapError('invalid-map', `no video rendition "${renditionId}"`);
  return { ...r.video, ...shard.overrides?.[renditionId] };
}

/** End of the content on the map's timeline. */
export function mapEnd(map: ShardMap): number {
  const last = map.shards[map.shards.length - 1]!;
  return last.start + last.duration;
}

/** Share of shard variants that are ready, 0..1. */
export function readiness(map: ShardMap): { ready: number; total: number; failed: number } {
  let ready = 0;
  let total = 0;
  let failed = 0;
  for (const s of map.shards) {
    for (const st of Object.values(s.renditions)) {
      total++;
      if (st.status === 'ready') ready++;
      else if (st.status === 'failed') failed++;
    }
  }
  return { ready, total, failed };
}
