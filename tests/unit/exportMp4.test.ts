import { describe, expect, it } from 'vitest';
import { aacObjectType, aacSilentFrame } from '../../src/shared/aac.ts';
import {
  audioPacketTime,
  audioTrim,
  defaultVideoRendition,
  exactFrameRate,
  heldDuration,
  parseAvcC,
  pickVideoRendition,
  withInbandParameterSets,
} from '../../src/shared/exportMp4.ts';
import { avFacts } from './facts.ts';
import { AAC_PACKET_SAMPLES, buildShardMap, type Rendition } from '../../src/shared/shardMap.ts';

function mapOf(seconds: number, renditions?: Rendition[]) {
  const fps = 30000 / 1001;
  const facts = avFacts(seconds, { fps, width: 640, height: 360, frames: Math.floor(seconds * fps) });
  return buildShardMap({ contentId: 'c', facts, ...(renditions && { renditions }) });
}

/** Reads an MSB-first bit string back, to check bitstreams against their syntax. */
function bitsOf(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(2).padStart(8, '0')).join('');
}

describe('which video rendition', () => {
  it('defaults to the highest bitrate', () => {
    const map = mapOf(2);
    expect(map.renditions.map((r) => r.id)).toEqual(['360p', '180p', 'audio']);
    expect(defaultVideoRendition(map)).toBe('360p');
    expect(defaultVideoRendition(mapOf(2, [{ id: 'audio', audio: { codec: 'aac', bitrate: 128000, sampleRate: 48000, channels: 2 } }]))).toBeUndefined();
  });

  it('prefers the most complete rendition, then the highest bitrate', () => {
    const map = mapOf(2);
    expect(pickVideoRendition(map, (r) => (r === '360p' ? 5 : 7))).toBe('180p');
    expect(pickVideoRendition(map, () => 7)).toBe('360p');
    expect(pickVideoRendition(map, () => 0)).toBe('360p');
  });
});

describe('video placement', () => {
  it('keeps a frame its own length, and holds it across a hole', () => {
    expect(heldDuration(1, 0.0333, 1.0333)).toBeCloseTo(0.0333, 9);
    expect(heldDuration(1, 0.0333, 1.3336)).toBeCloseTo(0.3336, 9);
    // A next frame that comes early (rounding) never shortens a frame.
    expect(heldDuration(1, 0.0333, 1.03)).toBeCloseTo(0.0333, 9);
  });

  it('knows the exact rate of common constant frame rates only', () => {
    expect(exactFrameRate(29.97002997, false)).toBe(30000 / 1001);
    expect(exactFrameRate(25, false)).toBe(25);
    expect(exactFrameRate(23.976, false)).toBe(24000 / 1001);
    expect(exactFrameRate(29.97, true)).toBeUndefined();
    expect(exactFrameRate(27.3, false)).toBeUndefined();
    expect(exactFrameRate(undefined, undefined)).toBeUndefined();
    // The first frame must lie on the rate's grid, or the muxer would round every frame onto it.
    expect(exactFrameRate(24, false, 2 / 24)).toBe(24);
    expect(exactFrameRate(30, false, 0.021)).toBeUndefined();
  });
});

describe('audio placement', () => {
  it('drops whole packets of lead and tail', () => {
    expect(audioTrim(1024, 0, 1024)).toEqual({ front: 1, back: 0 });
    expect(audioTrim(6 * 1024, 5 * 1024, 1024)).toEqual({ front: 6, back: 5 });
    expect(() => audioTrim(1000, 0, 1024)).toThrow(/whole packets/);
    expect(() => audioTrim(0, 1500, 1024)).toThrow(/whole packets/);
  });

  it('places every kept packet on the sample grid, so consecutive shards of a run follow each other exactly', () => {
    const map = mapOf(10);
    const sr = 48000;
    let expected = 0; // in samples
    for (const s of map.shards) {
      const st = s.renditions.audio!;
      const packets = st.samples! / AAC_PACKET_SAMPLES;
      expect(Number.isInteger(packets)).toBe(true);
      for (let k = 0; k < packets; k++) {
        const t = audioPacketTime(st.start!, k, AAC_PACKET_SAMPLES, sr);
        expect(Math.round(t * sr)).toBe(expected);
        expect(Math.abs(t * sr - expected)).toBeLessThan(1e-6);
        expected += AAC_PACKET_SAMPLES;
      }
    }
    // The pre-roll packet of the file's first audio lies one packet before the start.
    expect(audioPacketTime(0, -1, AAC_PACKET_SAMPLES, sr)).toBeCloseTo(-1024 / 48000, 12);
  });
});

describe('AAC silence', () => {
  it('writes a mono frame as one single channel element without bands', () => {
    const bits = bitsOf(aacSilentFrame(1));
    // ID_SCE, tag 0, global_gain, ics_info (reserved, ONLY_LONG, shape, max_sfb 0, no prediction),
    // no pulse, no TNS, no gain control, ID_END, then zero padding to the byte.
    const want = '000' + '0000' + (100).toString(2).padStart(8, '0') + '0' + '00' + '0' + '000000' + '0' + '000' + '111';
    expect(bits.startsWith(want)).toBe(true);
    expect(bits.slice(want.length)).toMatch(/^0*$/);
    expect(bits.length).toBe(Math.ceil(want.length / 8) * 8);
  });

  it('writes a stereo frame as one channel pair element with a common window', () => {
    const bits = bitsOf(aacSilentFrame(2));
    const ics = (100).toString(2).padStart(8, '0') + '000';
    const want = '001' + '0000' + '1' + '0' + '00' + '0' + '000000' + '0' + '00' + ics + ics + '111';
    expect(bits.startsWith(want)).toBe(true);
    expect(bits.slice(want.length)).toMatch(/^0*$/);
  });

  it('reads the audio object type of an AudioSpecificConfig', () => {
    expect(aacObjectType(new Uint8Array([0x11, 0x90]))).toBe(2); // AAC-LC, 48 kHz, stereo
    expect(aacObjectType(new Uint8Array([0x2b, 0x92, 0x08, 0x00]))).toBe(5); // SBR
    expect(aacObjectType(new Uint8Array([0xf8, 0x40]))).toBe(34);
    expect(aacObjectType(undefined)).toBeUndefined();
  });
});

describe('H.264 parameter sets in-band', () => {
  const sps = new Uint8Array([0x67, 0x64, 0x00, 0x0d, 0xac]);
  const pps = new Uint8Array([0x68, 0xeb, 0xe3]);
  const avcc = new Uint8Array([1, 0x64, 0x00, 0x0d, 0xff, 0xe1, 0, sps.length, ...sps, 1, 0, pps.length, ...pps, 0xfd, 0xf8, 0xf8, 0]);

  it('reads SPS and PPS from an avcC record, and refuses a broken one', () => {
    const ps = parseAvcC(avcc)!;
    expect(ps.lengthSize).toBe(4);
    expect(ps.nals.map((n) => [...n])).toEqual([[...sps], [...pps]]);
    expect(parseAvcC(avcc.subarray(0, 10))).toBeUndefined();
    expect(parseAvcC(new Uint8Array([0, 1, 2, 3, 4, 5, 6]))).toBeUndefined();
  });

  it('prefixes an access unit with length-prefixed parameter sets', () => {
    const au = new Uint8Array([0, 0, 0, 2, 0x65, 0x88]);
    const out = withInbandParameterSets(au, parseAvcC(avcc)!);
    expect([...out]).toEqual([0, 0, 0, sps.length, ...sps, 0, 0, 0, pps.length, ...pps, ...au]);
    const two = withInbandParameterSets(au, { lengthSize: 2, nals: [pps] });
    expect([...two]).toEqual([0, pps.length, ...pps, ...au]);
  });
});
