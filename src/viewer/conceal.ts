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
import {
  BufferSource,
  BufferTarget,
  EncodedAudioPacketSource,
  EncodedPacket,
  EncodedPacketSink,
  EncodedVideoPacketSource,
  Input,
  MP4,
  Mp4OutputFormat,
  Output,
} from 'mediabunny';
import { aacAudioSpecificConfig, aacSilentFrame } from '../shared/aac.ts';
import { AAC_PACKET_SAMPLES } from '../shared/shardMap.ts';

export { aacChannelConfigSupported } from '../shared/aac.ts';

/** A self-contained fMP4 of AAC-LC silence: whole 1024-sample frames covering at least `samples`. */
export async function silenceFragment(sampleRate: number, channels: number, samples: number): Promise<Uint8Array> {
  const frame = aacSilentFrame(channels);
  const frames = Math.max(1, Math.ceil(samples / AAC_PACKET_SAMPLES));
  const target = new BufferTarget();
  const output = new Output({ format: new Mp4OutputFormat({ fastStart: 'fragmented', minimumFragmentDuration: 1000 }), target });
  const source = new EncodedAudioPacketSource('aac');
  output.addAudioTrack(source);
  await output.start();
  const d = AAC_PACKET_SAMPLES / sampleRate;
  for (let i = 0; i < frames; i++) {
    const meta = i === 0 ? { decoderConfig: { codec: 'mp4a.40.2', sampleRate, numberOfChannels: channels, description: aacAudioSpecificConfig(sampleRate, channels) } } : undefined;
    await source.add(new EncodedPacket(frame, 'key', i * d, d), meta);
  }
  await output.finalize();
  return new Uint8Array(target.buffer!);
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
    const target = new BufferTarget();
    const output = new Output({ format: new Mp4OutputFormat({ fastStart: 'fragmented', minimumFragmentDuration: 1000 }), target });
    const source = new EncodedVideoPacketSource(codec);
    output.addVideoTrack(source);
    await output.start();
    await source.add(key.clone({ timestamp: 0, duration: seconds }), { decoderConfig });
    await output.finalize();
    return { bytes: new Uint8Array(target.buffer!), codec: codecString };
  } finally {
    input.dispose();
  }
}
