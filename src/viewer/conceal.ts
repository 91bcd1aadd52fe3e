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
import { AAC_PACKET_SAMPLES } from '../shared/shardMap.ts';

/** MPEG-4 audio sampling frequency index table (ISO/IEC 14496-3, 1.6.3.4). */
const AAC_SAMPLE_RATES = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

/** Syntactic elements per channel configuration 1-7 (ISO/IEC 14496-3, table 1.19). */
const ELEMENTS: Record<number, ('sce' | 'cpe' | 'lfe')[]> = {
  1: ['sce'],
  2: ['cpe'],
  3: ['sce', 'cpe'],
  4: ['sce', 'cpe', 'sce'],
  5: ['sce', 'cpe', 'cpe'],
  6: ['sce', 'cpe', 'cpe', 'lfe'],
  8: ['sce', 'cpe', 'cpe', 'cpe', 'lfe'],
};

class BitWriter {
  private readonly bytes: number[] = [];
  private acc = 0;
  private n = 0;
  put(value: number, bits: number): void {
    for (let i = bits - 1; i >= 0; i--) {
      this.acc = (this.acc << 1) | ((value >> i) & 1);
      if (++this.n === 8) {
        this.bytes.push(this.acc);
        this.acc = 0;
        this.n = 0;
      }
    }
  }
  finish(): Uint8Array {
    if (this.n > 0) this.put(0, 8 - this.n);
    return new Uint8Array(this.bytes);
  }
}

export function aacChannelConfigSupported(channels: number): boolean {
  return channels in ELEMENTS;
}

/**
 * One AAC-LC raw data block that decodes to 1024 samples of silence: every
 * channel element signals zero scale-factor bands (max_sfb = 0), so it carries
 * no spectral data at all.
 */
export function aacSilentFrame(channels: number): Uint8Array {
  const elements = ELEMENTS[channels];
  if (!elements) throw new Error(`no AAC channel configuration for ${channels} channels`);
  const w = new BitWriter();
  // ics_info: reserved bit, ONLY_LONG_SEQUENCE, sine window, max_sfb 0, no prediction.
  const icsInfo = () => {
    w.put(0, 1);
    w.put(0, 2);
    w.put(0, 1);
    w.put(0, 6);
    w.put(0, 1);
  };
  // individual_channel_stream without band data: global gain, then no pulse, TNS or gain control.
  const ics = (commonWindow: boolean) => {
    w.put(100, 8);
    if (!commonWindow) icsInfo();
    w.put(0, 3);
  };
  const tags = { sce: 0, cpe: 0, lfe: 0 };
  for (const e of elements) {
    w.put(e === 'sce' ? 0 : e === 'cpe' ? 1 : 3, 3);
    w.put(tags[e]++, 4);
    if (e === 'cpe') {
      w.put(1, 1); // common_window
      icsInfo();
      w.put(0, 2); // ms_mask_present
      ics(true);
      ics(true);
    } else {
      ics(false);
    }
  }
  w.put(7, 3); // ID_END
  return w.finish();
}

/** The two-byte AudioSpecificConfig of AAC-LC at this rate and channel count. */
export function aacAudioSpecificConfig(sampleRate: number, channels: number): Uint8Array {
  const freq = AAC_SAMPLE_RATES.indexOf(sampleRate);
  if (freq < 0) throw new Error(`AAC has no sampling frequency index for ${sampleRate} Hz`);
  const channelConfig = channels === 8 ? 7 : channels;
  const w = new BitWriter();
  w.put(2, 5); // AAC LC
  w.put(freq, 4);
  w.put(channelConfig, 4);
  w.put(0, 3);
  return w.finish();
}

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
