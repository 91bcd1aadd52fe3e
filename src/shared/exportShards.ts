/**
 * Reading an export's shard files: the order they are read in, a few ahead of
 * use (ShardReader owns the read-ahead window), and parsing each into its one
 * track's codec, decoder configuration and packets.
 */
import { BufferSource, EncodedAudioPacketSource, EncodedPacket, EncodedPacketSink, EncodedVideoPacketSource, Input, MP4 } from 'mediabunny';
import type { AudioRendition, ShardMap, VideoRendition } from './shardMap.ts';

/** Reads one shard's file: its bytes, or undefined when there is no such shard (rendition id, shard index). */
export type ShardGetter = (rendition: string, index: number) => Promise<Uint8Array | undefined>;

export const sameBytes = (a: Uint8Array | undefined, b: Uint8Array | undefined) =>
  a === b || (!!a && !!b && a.length === b.length && a.every((x, i) => x === b[i]));

export function descriptionBytes(d: AllowSharedBufferSource | undefined): Uint8Array | undefined {
  if (!d) return undefined;
  if (ArrayBuffer.isView(d)) return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  return new Uint8Array(d);
}

export type OutVideoCodec = ConstructorParameters<typeof EncodedVideoPacketSource>[0];
export type OutAudioCodec = ConstructorParameters<typeof EncodedAudioPacketSource>[0];

export interface VideoShard {
  kind: 'video';
  codec: OutVideoCodec;
  config: VideoDecoderConfig;
  packets: EncodedPacket[];
}
export interface AudioShard {
  kind: 'audio';
  codec: OutAudioCodec;
  config: AudioDecoderConfig;
  packets: EncodedPacket[];
}
/** A parsed shard, a reason it cannot be used, or undefined when the getter has no such shard. */
export type Parsed = VideoShard | AudioShard | string | undefined;

/** The one track of a shard file with its packets, or a reason it cannot be used. */
export async function parseShard(bytes: Uint8Array, kind: 'video' | 'audio'): Promise<VideoShard | AudioShard | string> {
  const input = new Input({ source: new BufferSource(bytes), formats: [MP4] });
  try {
    const track = kind === 'video' ? await input.getPrimaryVideoTrack() : await input.getPrimaryAudioTrack();
    if (!track) return `no ${kind} track`;
    const codec = await track.getCodec();
    const config = await track.getDecoderConfig();
    if (!codec || !config) return `unknown ${kind} codec`;
    const packets: EncodedPacket[] = [];
    for await (const p of new EncodedPacketSink(track).packets()) packets.push(p);
    if (packets.length === 0) return 'no samples';
    if (packets[0]!.type !== 'key') return 'does not start with a key frame';
    return track.isVideoTrack()
      ? { kind: 'video', codec: codec as OutVideoCodec, config: config as VideoDecoderConfig, packets }
      : { kind: 'audio', codec: codec as OutAudioCodec, config: config as AudioDecoderConfig, packets };
  } catch (e) {
    return `unreadable (${(e as Error).message})`;
  } finally {
    input.dispose();
  }
}

export interface ReadItem {
  kind: 'video' | 'audio';
  rendition: string;
  index: number;
}

/**
 * Reads and parses shards in order, a few ahead of use, so a slow getter
 * (peers, disk) overlaps with muxing. Each shard is read once.
 */
export class ShardReader {
  private readonly pending: (Promise<Uint8Array | undefined> | undefined)[] = [];
  private done = 0;

  constructor(
    private readonly items: readonly ReadItem[],
    private readonly get: ShardGetter,
    private readonly depth: number,
    private readonly onProgress?: (done: number, total: number) => void,
  ) {}

  async read(k: number): Promise<Parsed> {
    for (let j = k; j < Math.min(this.items.length, k + this.depth); j++) {
      if (this.pending[j]) continue;
      const p = this.get(this.items[j]!.rendition, this.items[j]!.index);
      // A rejection surfaces when its shard is awaited; until then it must not count as unhandled.
      p.catch(() => {});
      this.pending[j] = p;
    }
    const bytes = await this.pending[k]!;
    this.pending[k] = undefined;
    this.onProgress?.(++this.done, this.items.length);
    return bytes ? parseShard(bytes, this.items[k]!.kind) : undefined;
  }
}

/** Shard by shard, video then audio, so both tracks advance together; audio shards without a placement are left out. */
export function readOrder(map: ShardMap, videoR: VideoRendition | undefined, audioR: AudioRendition | undefined): ReadItem[] {
  const items: ReadItem[] = [];
  for (const s of map.shards) {
    if (videoR && s.renditions[videoR.id]) items.push({ kind: 'video', rendition: videoR.id, index: s.index });
    if (audioR && s.renditions[audioR.id]?.samples && s.renditions[audioR.id]?.start !== undefined) {
      items.push({ kind: 'audio', rendition: audioR.id, index: s.index });
    }
  }
  return items;
}
