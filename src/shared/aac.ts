/**
 * AAC bitstream pieces written from ISO/IEC 14496-3: silent frames that fill
 * holes (viewer and export), and AudioSpecificConfig reading and writing.
 */

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

/** AAC audio object type from an AudioSpecificConfig (2 is AAC-LC). */
export function aacObjectType(asc: Uint8Array | undefined): number | undefined {
  if (!asc || asc.length < 2) return undefined;
  const t = asc[0]! >> 3;
  return t === 31 ? 32 + (((asc[0]! & 7) << 3) | (asc[1]! >> 5)) : t;
}
