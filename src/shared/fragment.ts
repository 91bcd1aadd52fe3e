/**
 * Owns the one way shardcast writes a fragmented MP4 from encoded packets:
 * one track, one init segment and one media fragment (mediabunny's muxer with
 * `minimumFragmentDuration` long enough that a shard never splits). Encoder
 * shards (WebCodecs video, cut AAC runs) and the viewer's concealment
 * fragments all come from here, so they share the layout the Reconstructor
 * and the server's intake expect.
 */
import {
  BufferTarget,
  EncodedAudioPacketSource,
  EncodedVideoPacketSource,
  Mp4OutputFormat,
  Output,
  type AudioCodec,
  type EncodedPacket,
  type VideoCodec,
} from 'mediabunny';

/** The one track of a fragment: its mediabunny codec and the decoder configuration the first packet carries. */
export type FragmentTrack =
  | { kind: 'video'; codec: VideoCodec; decoderConfig: VideoDecoderConfig }
  | { kind: 'audio'; codec: AudioCodec; decoderConfig: AudioDecoderConfig };

/** Longer than any shard (seconds), so the media data is one fragment. */
const ONE_FRAGMENT_S = 1000;

/**
 * A self-contained fragmented MP4 (init + one media fragment) holding
 * `packets` as they are: timestamps and durations in seconds, unchanged, so a
 * caller that wants the fragment to start at 0 rebases them first.
 * Throws when `packets` is empty (a fragment with no sample is of no use) or
 * when mediabunny refuses a packet (out of order, wrong codec).
 */
export async function muxFragment(track: FragmentTrack, packets: Iterable<EncodedPacket>): Promise<Uint8Array> {
  const target = new BufferTarget();
  const output = new Output({ format: new Mp4OutputFormat({ fastStart: 'fragmented', minimumFragmentDuration: ONE_FRAGMENT_S }), target });
  const add = addTo(output, track);
  await output.start();
  let first = true;
  for (const p of packets) {
    await add(p, first);
    first = false;
  }
  if (first) throw new Error(`muxFragment: no packets for the ${track.kind} track (${track.codec})`);
  await output.finalize();
  return new Uint8Array(target.buffer!);
}

function addTo(output: Output, track: FragmentTrack): (p: EncodedPacket, first: boolean) => Promise<void> {
  if (track.kind === 'video') {
    const source = new EncodedVideoPacketSource(track.codec);
    output.addVideoTrack(source);
    return (p, first) => source.add(p, first ? { decoderConfig: track.decoderConfig } : undefined);
  }
  const source = new EncodedAudioPacketSource(track.codec);
  output.addAudioTrack(source);
  return (p, first) => source.add(p, first ? { decoderConfig: track.decoderConfig } : undefined);
}
