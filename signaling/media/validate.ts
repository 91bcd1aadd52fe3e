/**
 * Structural checks of a shard file from an (untrusted) encoder: it parses as
 * MP4, holds one track of the rendition's codec and size, starts with a key
 * frame, has the map's frame count, and lasts the map's duration within one
 * frame (the shard's or the source's average, whichever is shorter) (audio: exactly the map's samples plus the declared lead and tail).
 * It also bounds what else a shard may carry: only the top-level boxes our
 * encoders write, media data holding nothing but the samples, and a size
 * bounded by the rendition's bitrate (see `maxShardBytes`).
 */
import { BufferSource, EncodedPacketSink, Input, MP4, type EncodedPacket } from 'mediabunny';
import { AAC_PACKET_SAMPLES, effectiveVideoSpec, type AudioSpec, type Shard, type ShardMap, type VideoSpec } from '../../src/shared/shardMap.ts';
import { ShardcastError } from '../../src/shared/errors.ts';

export class ShardCheckError extends ShardcastError<
  'not-mp4' | 'wrong-track' | 'wrong-codec' | 'wrong-size' | 'not-keyframe-first' | 'wrong-duration' | 'wrong-frames' | 'unexpected-box' | 'shard-too-large'
> {
  override name = 'ShardCheckError';
}

const VIDEO_CODEC: Record<VideoSpec['codec'], string> = { h264: 'avc', vp9: 'vp9', av1: 'av1' };

export type ShardExpectation =
  | {
      kind: 'video';
      spec: VideoSpec;
      frames: number;
      duration: number;
      /**
       * The source's average frame duration (s). The shard must last its map duration within one frame, and a
       * shard of one held frame (1.5 s) has no short frame of its own to measure by: without this bound a shard
       * ending 1.5 s early, a hole that stalls viewers for good, passed.
       */
      frameDuration?: number;
    }
  | { kind: 'audio'; spec: AudioSpec; samples: number; lead: number; tail: number };

export interface ShardFacts {
  codecString: string | null;
  packets: number;
  duration: number;
}

/**
 * Top-level boxes a shard may have. Read from both writers' output: ffmpeg's
 * segment muxer with `movflags=frag_keyframe+empty_moov+default_base_moof`
 * (ffmpeg.wasm, src/encoder/ffmpegArgs.ts) writes ftyp, moov, then moof+mdat
 * per key frame, then mfra; mediabunny's fragmented muxer (WebCodecs video and
 * cut AAC runs, src/shared/fragment.ts) writes ftyp, moov, moof, mdat, mfra.
 * Anything else (free, skip, uuid, a second moov, ...) is room for padding.
 */
const ALLOWED_BOXES: ReadonlySet<string> = new Set(['ftyp', 'moov', 'moof', 'mdat', 'mfra']);

/**
 * Slack of the size bound, as a multiple of the rendition's bitrate over
 * (duration + VBV_SECONDS). ffmpeg.wasm's x264 runs with -maxrate 1.5x and
 * -bufsize 2 s of the bitrate (ffmpegArgs.ts), so one shard holds at most
 * bitrate x (2 s + 1.5 x duration); WebCodecs H.264 gets up to 1.6x the
 * bitrate (src/encoder/config.ts) with no buffer bound, and AAC runs in
 * constant quality: 4x covers both with room.
 */
export const SIZE_SLACK = 4;
/** Seconds of bitrate a rate controller may burst into one shard (x264's -bufsize is 2 s). */
export const VBV_SECONDS = 2;
/** Bytes allowed on top for the init segment and sample tables (an honest 0.3 s shard's are under 2 KiB). */
export const CONTAINER_BYTES = 64 * 1024;

/**
 * The largest shard (bytes) the check accepts for a rendition of `bitrate`
 * bits per second and a shard of `seconds`: CONTAINER_BYTES + bitrate / 8 x
 * SIZE_SLACK x (seconds + VBV_SECONDS). A 0.3 s shard at 400 kbit/s may be
 * ~526 KB; honest ones are 11-15 KB (testsrc2, native x264 veryfast), so the
 * bound is a backstop against bulk padding; the box and media-data checks
 * refuse padding of any size.
 */
export function maxShardBytes(bitrate: number, seconds: number): number {
  return Math.ceil(CONTAINER_BYTES + (bitrate / 8) * SIZE_SLACK * (seconds + VBV_SECONDS));
}

/** The top-level boxes as [type, size]; throws not-mp4 when they do not tile the file exactly. */
function topLevelBoxes(bytes: Uint8Array): [string, number][] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const boxes: [string, number][] = [];
  let at = 0;
  while (at < bytes.byteLength) {
    if (at + 8 > bytes.byteLength)
      throw new ShardCheckError('not-mp4', `the shard does not parse as an MP4 file: ${bytes.byteLength - at} stray bytes after the last box`);
    let size = dv.getUint32(at);
    let header = 8;
    if (size === 1) {
      if (at + 16 > bytes.byteLength) throw new ShardCheckError('not-mp4', 'the shard does not parse as an MP4 file: a box with a 64-bit size is cut short');
      size = Number(dv.getBigUint64(at + 8));
      header = 16;
    } else if (size === 0) size = bytes.byteLength - at;
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (size < header || at + size > bytes.byteLength) {
      throw new ShardCheckError('not-mp4', `the shard does not parse as an MP4 file: box '${type}' at byte ${at} overruns it`);
    }
    boxes.push([type, size - header]);
    at += size;
  }
  return boxes;
}

/** Only the boxes our encoders write, at most one ftyp, moov and mfra; returns the bytes of media data. */
function checkBoxes(bytes: Uint8Array): number {
  const boxes = topLevelBoxes(bytes);
  let mdat = 0;
  for (const [type, payload] of boxes) {
    if (!ALLOWED_BOXES.has(type)) {
      throw new ShardCheckError('unexpected-box', `a shard holds only ${[...ALLOWED_BOXES].join(', ')} boxes at top level; this one has '${type}'`);
    }
    if (type === 'mdat') mdat += payload;
  }
  for (const once of ['ftyp', 'moov', 'mfra']) {
    if (boxes.filter(([t]) => t === once).length > 1) throw new ShardCheckError('unexpected-box', `a shard has at most one '${once}' box`);
  }
  return mdat;
}

/** What a video shard of `renditionId` at `shard` must be: the rendition's spec with the shard's overrides, its frames and duration. */
export function videoShardExpectation(map: ShardMap, shard: Shard, renditionId: string): ShardExpectation {
  const fps = map.source.video?.fps;
  return {
    kind: 'video',
    spec: effectiveVideoSpec(map, shard, renditionId),
    frames: shard.frames,
    duration: shard.duration,
    ...(fps && { frameDuration: 1 / fps }),
  };
}

export async function checkShard(bytes: Uint8Array, want: ShardExpectation): Promise<ShardFacts> {
  const bitrate = want.spec.bitrate;
  const seconds = want.kind === 'video' ? want.duration : (want.samples + want.lead + want.tail) / want.spec.sampleRate;
  const limit = maxShardBytes(bitrate, seconds);
  if (bytes.byteLength > limit) {
    throw new ShardCheckError(
      'shard-too-large',
      `${bytes.byteLength} bytes where a ${seconds.toFixed(3)} s shard at ${bitrate} bit/s may have at most ${limit} (signaling/media/validate.ts maxShardBytes)`,
    );
  }
  // Before parsing: the box walk is cheap and refuses padding the parser would skip over.
  const mdatBytes = checkBoxes(bytes);
  const input = new Input({ source: new BufferSource(bytes), formats: [MP4] });
  try {
    try {
      if (!(await input.canRead())) throw new Error('not MP4');
    } catch {
      throw new ShardCheckError('not-mp4', 'the shard does not parse as an MP4 file');
    }
    let tracks;
    try {
      tracks = await input.getTracks();
    } catch (e) {
      throw new ShardCheckError('not-mp4', `the shard's MP4 structure is broken: ${(e as Error).message}`);
    }
    if (tracks.length !== 1) throw new ShardCheckError('wrong-track', `a shard holds exactly one track; this one has ${tracks.length}`);
    const track = tracks[0]!;
    const packets: EncodedPacket[] = [];
    try {
      for await (const p of new EncodedPacketSink(track).packets(undefined, undefined, { metadataOnly: true })) packets.push(p);
    } catch (e) {
      throw new ShardCheckError('not-mp4', `the shard's samples cannot be read: ${(e as Error).message}`);
    }
    if (packets.length === 0) throw new ShardCheckError('wrong-frames', 'the shard has no samples');
    const start = Math.min(...packets.map((p) => p.timestamp));
    const end = Math.max(...packets.map((p) => p.timestamp + p.duration));
    const duration = end - start;
    const codecString = await track.getCodecParameterString().catch(() => null);
    // Media data holds the samples and nothing else (no bytes hidden between or after them).
    const sampleBytes = packets.reduce((n, p) => n + p.byteLength, 0);
    if (sampleBytes !== mdatBytes) {
      throw new ShardCheckError('unexpected-box', `the media data has ${mdatBytes} bytes where the samples take ${sampleBytes}`);
    }

    if (want.kind === 'video') {
      if (!track.isVideoTrack()) throw new ShardCheckError('wrong-track', 'a video rendition shard must hold a video track');
      const codec = await track.getCodec();
      if (codec !== VIDEO_CODEC[want.spec.codec]) throw new ShardCheckError('wrong-codec', `expected ${want.spec.codec}, got ${String(codec)}`);
      const w = await track.getDisplayWidth();
      const h = await track.getDisplayHeight();
      if (w !== want.spec.width || h !== want.spec.height) {
        throw new ShardCheckError('wrong-size', `expected ${want.spec.width}x${want.spec.height}, got ${w}x${h}`);
      }
      if (packets[0]!.type !== 'key') throw new ShardCheckError('not-keyframe-first', 'the shard does not start with a key frame');
      if (packets.length !== want.frames) {
        throw new ShardCheckError('wrong-frames', `expected ${want.frames} frames, got ${packets.length}`);
      }
      const frame = Math.min(want.duration / want.frames, want.frameDuration ?? Infinity);
      if (Math.abs(duration - want.duration) > frame + 1e-6) {
        throw new ShardCheckError('wrong-duration', `expected ${want.duration.toFixed(4)} s (within one frame), got ${duration.toFixed(4)} s`);
      }
    } else {
      if (!track.isAudioTrack()) throw new ShardCheckError('wrong-track', 'an audio rendition shard must hold an audio track');
      const codec = await track.getCodec();
      if (codec !== want.spec.codec) throw new ShardCheckError('wrong-codec', `expected ${want.spec.codec}, got ${String(codec)}`);
      const sr = await track.getSampleRate();
      const ch = await track.getNumberOfChannels();
      if (sr !== want.spec.sampleRate || ch !== want.spec.channels) {
        throw new ShardCheckError('wrong-size', `expected ${want.spec.sampleRate} Hz x ${want.spec.channels}, got ${sr} Hz x ${ch}`);
      }
      const samples = want.samples + want.lead + want.tail;
      if (packets.length * AAC_PACKET_SAMPLES !== samples) {
        throw new ShardCheckError('wrong-duration', `expected ${samples / AAC_PACKET_SAMPLES} packets (${samples} samples), got ${packets.length}`);
      }
    }
    return { codecString, packets: packets.length, duration };
  } finally {
    input.dispose();
  }
}
