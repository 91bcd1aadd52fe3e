/**
 * Concealment for shards that cannot be had: fragments that fill a hole in
 * the SourceBuffers so the element never waits at it.
 *
 * A hole left alone stalls Chromium forever, and seeking over it from the
 * `waiting` handler still stalls for a few ms and drops the audio around it
 * (DESIGN.md, "Viewer"). Filling it plays straight through:
 * - video: the keyframe of a shard we already have, as one sample whose
 *   duration spans the hole (the picture holds);
 * - audio: AAC-LC frames that decode to silence, built here bit by bit, so no
 *   encoder is needed in the viewer.
 */
import { BufferSource, EncodedPacket, EncodedPacketSink, Input, MP4 } from 'mediabunny';
import { aacAudioSpecificConfig, aacSilentFrame } from '../shared/aac.ts';
import { muxFragment } from '../shared/fragment.ts';
import { AAC_PACKET_SAMPLES } from '../shared/shardMap.ts';

export { aacChannelConfigSupported } from '../shared/aac.ts';

/** A self-contained fMP4 of AAC-LC silence: whole 1024-sample frames covering at least `samples`. */
export async function silenceFragment(sampleRate: number, channels: number, samples: number): Promise<Uint8Array> {
  const frame = aacSilentFrame(channels);
  const frames = Math.max(1, Math.ceil(samples / AAC_PACKET_SAMPLES));
  const d = AAC_PACKET_SAMPLES / sampleRate;
  const decoderConfig = { codec: 'mp4a.40.2', sampleRate, numberOfChannels: channels, description: aacAudioSpecificConfig(sampleRate, channels) };
  const packets = Array.from({ length: frames }, (_, i) => new EncodedPacket(frame, 'key', i * d, d));
  return muxFragment({ kind: 'audio', codec: 'aac', decoderConfig }, packets);
}

/**
 * A self-contained fMP4 holding the first (key) frame of `shard` for `seconds`:
 * one sample, so the picture stays put over the hole. Returns the codec string
 * it carries, which is the shard's own.
 */
export async function holdFragment(shard: Uint8Array, seconds: number): Promise<{ bytes: Uint8Array; codec: string }> {
  const input = new Input({ source: new BufferSource(shard), formats: [MP4] });
  try {
    const track = await input.getPrimaryVideoTrack();
    if (!track) throw new Error('the shard to hold has no video track');
    const codec = track.codec;
    const decoderConfig = await track.getDecoderConfig();
    const codecString = await track.getCodecParameterString();
    if (!codec || !decoderConfig || !codecString) throw new Error('the shard to hold has no usable decoder configuration');
    const key = await new EncodedPacketSink(track).getFirstPacket();
    if (!key || key.type !== 'key') throw new Error('the shard to hold does not start with a keyframe');
    const bytes = await muxFragment({ kind: 'video', codec, decoderConfig }, [key.clone({ timestamp: 0, duration: seconds })]);
    return { bytes, codec: codecString };
  } finally {
    input.dispose();
  }
}
