/**
 * Cuts one long AAC encode into audio shards on the packet grid.
 *
 * Each independent AAC encode starts with 1024 priming samples, and ffmpeg's
 * fragmented MP4 has no edit list to hide them, so per-shard encodes click and
 * gap at every boundary (DESIGN.md: 38 silences and 63 clicks in 10 s). A run
 * is therefore encoded once and split between packets: every shard holds whole
 * packets, and its place on the timeline is exact.
 *
 * Run layout, in packets: [priming][lead][shard 0][shard 1]...[shard n][tail]
 * - priming: 1 packet, always;
 * - lead: extra audio before the run's start when the run does not start the
 *   content (the viewer trims it where two runs meet);
 * - tail: extra audio after the run's end when it does not end the content.
 * The first shard carries priming + lead, the last carries the tail.
 */
import { BufferSource, EncodedPacketSink, Input, MP4, type EncodedPacket } from 'mediabunny';
import { muxFragment } from '../shared/fragment.ts';
import { AAC_PACKET_SAMPLES } from '../shared/shardMap.ts';
import { zeroMp4Times } from '../shared/mp4Times.ts';

export interface AudioShardOut {
  index: number;
  bytes: Uint8Array;
  /** Samples in the file before the shard's own start (priming + lead). */
  lead: number;
  /** Samples in the file after the shard's own end. */
  tail: number;
}

export interface AudioRunLayout {
  /** Packets per shard, in job order. */
  shards: { index: number; packets: number }[];
  leadPackets: number;
  tailPackets: number;
}

export class AudioCutError extends Error {
  override name = 'AudioCutError';
}

export async function cutAudioRun(encoded: Uint8Array, layout: AudioRunLayout): Promise<AudioShardOut[]> {
  const input = new Input({ source: new BufferSource(encoded), formats: [MP4] });
  try {
    const track = await input.getPrimaryAudioTrack();
    if (!track) throw new AudioCutError('the encoded run has no audio track');
    const codec = await track.getCodec();
    if (codec !== 'aac' && codec !== 'opus') throw new AudioCutError(`unexpected codec ${String(codec)} in the encoded run`);
    const decoderConfig = await track.getDecoderConfig();
    if (!decoderConfig) throw new AudioCutError('the encoded run has no decoder configuration');
    const packets: EncodedPacket[] = [];
    for await (const p of new EncodedPacketSink(track).packets()) packets.push(p);
    const needed = 1 + layout.leadPackets + layout.shards.reduce((a, s) => a + s.packets, 0) + layout.tailPackets;
    if (packets.length < needed) {
      throw new AudioCutError(`the encoded run has ${packets.length} packets; its layout needs ${needed}`);
    }
    const out: AudioShardOut[] = [];
    let at = 0;
    for (let i = 0; i < layout.shards.length; i++) {
      const s = layout.shards[i]!;
      const before = i === 0 ? 1 + layout.leadPackets : 0;
      const after = i === layout.shards.length - 1 ? layout.tailPackets : 0;
      const slice = packets.slice(at, at + before + s.packets + after);
      at += before + s.packets;
      out.push({
        index: s.index,
        bytes: await muxPackets(codec, decoderConfig, slice),
        lead: before * AAC_PACKET_SAMPLES,
        tail: after * AAC_PACKET_SAMPLES,
      });
    }
    return out;
  } finally {
    input.dispose();
  }
}

/** One self-contained fragmented MP4 (init + one media segment) from packets, rebased to start at 0. */
async function muxPackets(codec: 'aac' | 'opus', decoderConfig: AudioDecoderConfig, packets: EncodedPacket[]): Promise<Uint8Array> {
  const t0 = packets[0]!.timestamp;
  const rebased = packets.map((p) => p.clone({ timestamp: p.timestamp - t0 }));
  // Same job, same bytes: the cross-checks compare hashes.
  return zeroMp4Times(await muxFragment({ kind: 'audio', codec, decoderConfig }, rebased));
}
