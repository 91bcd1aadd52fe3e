import { BufferTarget, EncodedAudioPacketSource, EncodedPacket, Mp4OutputFormat, Output } from 'mediabunny';
import { describe, expect, it } from 'vitest';
import { zeroMp4Times } from '../../src/shared/mp4Times.ts';

/** A tiny fragmented MP4 muxed by mediabunny, which stamps the wall clock into mvhd/tkhd/mdhd. */
async function mux(): Promise<Uint8Array> {
  const target = new BufferTarget();
  const output = new Output({ format: new Mp4OutputFormat({ fastStart: 'fragmented' }), target });
  const source = new EncodedAudioPacketSource('opus');
  output.addAudioTrack(source);
  await output.start();
  for (let i = 0; i < 3; i++) {
    await source.add(
      new EncodedPacket(new Uint8Array([0xf8, i, i]), 'key', i * 0.02, 0.02),
      i === 0 ? { decoderConfig: { codec: 'opus', sampleRate: 48000, numberOfChannels: 2 } } : undefined,
    );
  }
  await output.finalize();
  return new Uint8Array(target.buffer!);
}

/** Offsets of the 4-byte creation times (version 0 headers) of every box of `type`. */
function timesOf(bytes: Uint8Array, type: string): number[] {
  const out: number[] = [];
  for (let i = 4; i + 12 < bytes.length; i++) {
    if (String.fromCharCode(...bytes.subarray(i, i + 4)) === type) out.push(new DataView(bytes.buffer, bytes.byteOffset).getUint32(i + 8));
  }
  return out;
}

describe('zeroMp4Times', () => {
  it('clears the muxer clock in mvhd, tkhd and mdhd and nothing else', async () => {
    const bytes = await mux();
    for (const t of ['mvhd', 'tkhd', 'mdhd'])
      expect(
        timesOf(bytes, t).some((v) => v > 0),
        t,
      ).toBe(true);
    const before = bytes.slice();
    zeroMp4Times(bytes);
    for (const t of ['mvhd', 'tkhd', 'mdhd']) expect(timesOf(bytes, t), t).toEqual([0]);
    expect(bytes.length).toBe(before.length);
    // Only the 3 boxes' two time fields changed: at most 3 × 8 bytes.
    const changed = bytes.reduce((n, b, i) => n + (b !== before[i] ? 1 : 0), 0);
    expect(changed).toBeGreaterThan(0);
    expect(changed).toBeLessThanOrEqual(24);
  });

  it('leaves truncated or garbage input alone without throwing', () => {
    const junk = new Uint8Array([0, 0, 0, 200, 109, 111, 111, 118, 1, 2, 3]);
    expect([...zeroMp4Times(junk.slice())]).toEqual([...junk]);
  });
});
