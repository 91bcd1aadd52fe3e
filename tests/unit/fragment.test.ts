/** The one fMP4-fragment writer: what goes in comes back out, in one fragment. */
import { BufferSource, EncodedPacket, EncodedPacketSink, Input, MP4 } from 'mediabunny';
import { describe, expect, it } from 'vitest';
import { aacAudioSpecificConfig, aacSilentFrame } from '../../src/shared/aac.ts';
import { muxFragment } from '../../src/shared/fragment.ts';

const track = {
  kind: 'audio' as const,
  codec: 'aac' as const,
  decoderConfig: { codec: 'mp4a.40.2', sampleRate: 48000, numberOfChannels: 2, description: aacAudioSpecificConfig(48000, 2) },
};
const d = 1024 / 48000;
const packets = (n: number) => Array.from({ length: n }, (_, i) => new EncodedPacket(aacSilentFrame(2), 'key', i * d, d));

/** Top-level box types, in order. */
function boxes(bytes: Uint8Array): string[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: string[] = [];
  for (let at = 0; at + 8 <= bytes.length; at += view.getUint32(at)) out.push(String.fromCharCode(...bytes.subarray(at + 4, at + 8)));
  return out;
}

describe('muxFragment', () => {
  it('writes an init segment and exactly one media fragment', async () => {
    const bytes = await muxFragment(track, packets(40));
    const types = boxes(bytes);
    expect(types.slice(0, 2)).toEqual(['ftyp', 'moov']);
    expect(types.filter((t) => t === 'moof')).toHaveLength(1);
  });

  it('keeps the packets, their timestamps and the decoder configuration', async () => {
    const bytes = await muxFragment(track, packets(5));
    const input = new Input({ source: new BufferSource(bytes), formats: [MP4] });
    try {
      const t = (await input.getPrimaryAudioTrack())!;
      expect(await t.getCodec()).toBe('aac');
      expect((await t.getDecoderConfig())?.sampleRate).toBe(48000);
      const got: number[] = [];
      for await (const p of new EncodedPacketSink(t).packets()) got.push(p.timestamp);
      expect(got.map((x) => Math.round(x * 48000))).toEqual([0, 1024, 2048, 3072, 4096]);
    } finally {
      input.dispose();
    }
  });

  it('refuses an empty packet list with a message naming the track', async () => {
    await expect(muxFragment(track, [])).rejects.toThrow(/no packets for the audio track \(aac\)/);
  });
});
