/**
 * Structural checks of a shard file from an (untrusted) encoder: it parses as
 * MP4, holds one track of the rendition's codec and size, starts with a key
 * frame, has the map's frame count, and lasts the map's duration within one
 * frame (the shard's or the source's average, whichever is shorter) (audio: exactly the map's samples plus the declared lead and tail).
 */
import { BufferSource, EncodedPacketSink, Input, MP4, type EncodedPacket } from 'mediabunny';
import { AAC_PACKET_SAMPLES, effectiveVideoSpec, type AudioSpec, type Shard, type ShardMap, type VideoSpec } from '../../src/shared/shardMap.ts';
import { ShardcastError } from '../../src/shared/errors.ts';

export class ShardCheckError extends ShardcastError<
  'not-mp4' | 'wrong-track' | 'wrong-codec' | 'wrong-size' | 'not-keyframe-first' | 'wrong-duration' | 'wrong-frames'
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
