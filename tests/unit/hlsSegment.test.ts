import { BufferSource, EncodedPacket, EncodedPacketSink, Input, MP4 } from 'mediabunny';
import { describe, expect, it } from 'vitest';
import { aacAudioSpecificConfig } from '../../src/shared/aac.ts';
import { muxFragment } from '../../src/shared/fragment.ts';
import { planHls } from '../../src/shared/hls/plan.ts';
import { buildInitSegment, buildMediaSegment, SegmentError } from '../../src/shared/hls/segment.ts';
import { buildShardMap, type Rendition, type ShardMap } from '../../src/shared/shardMap.ts';
import { avFacts } from './facts.ts';

const FPS = 30000 / 1001;
const LADDER: Rendition[] = [
  { id: 'v', video: { codec: 'h264', width: 320, height: 180, bitrate: 500_000 } },
  { id: 'audio', audio: { codec: 'aac', bitrate: 96_000, sampleRate: 48000, channels: 2 } },
];

/** An avcC record with one SPS (Baseline, 320x180, at level `level`/10) and one PPS. */
const avcc = (level: number) =>
  new Uint8Array([1, 0x42, 0xc0, level, 0xff, 0xe1, 0, 9, 0x67, 0x42, 0xc0, level, 0xda, 0x05, 0x06, 0x7e, 0x74, 1, 0, 4, 0x68, 0xce, 0x3c, 0x80]);
/** A length-prefixed access unit whose payload names its shard and frame. */
const au = (shard: number, frame: number) => new Uint8Array([0, 0, 0, 3, frame === 0 ? 0x65 : 0x41, shard, frame]);

interface Fixture {
  map: ShardMap;
  files: Map<string, Uint8Array>;
}

/** Shards as encoders write them: every file at time 0. Video shard 3 has other parameter sets; audio shard 2 has one lead and one tail packet. */
async function fixture(): Promise<Fixture> {
  const map = buildShardMap({ contentId: 'c', facts: avFacts(5, { fps: FPS, frames: Math.floor(5 * FPS) }), renditions: LADDER });
  const files = new Map<string, Uint8Array>();
  for (const s of map.shards) {
    const packets = Array.from({ length: s.frames }, (_, j) => new EncodedPacket(au(s.index, j), j === 0 ? 'key' : 'delta', j / FPS, 1 / FPS));
    const config = { codec: 'avc1.42c00d', codedWidth: 320, codedHeight: 180, description: avcc(s.index === 3 ? 0x1e : 0x0d) };
    files.set(`v/${s.index}`, await muxFragment({ kind: 'video', codec: 'avc', decoderConfig: config }, packets));
    const st = s.renditions.audio!;
    const lead = s.index === 2 ? 1024 : 0;
    const tail = s.index === 2 ? 1024 : 0;
    Object.assign(st, { status: 'ready', lead, tail });
    Object.assign(s.renditions.v!, { status: 'ready' });
    const n = (lead + st.samples! + tail) / 1024;
    const apk = Array.from({ length: n }, (_, j) => new EncodedPacket(new Uint8Array([0x21, s.index, j]), 'key', (j * 1024) / 48000, 1024 / 48000));
    const aconfig = { codec: 'mp4a.40.2', sampleRate: 48000, numberOfChannels: 2, description: aacAudioSpecificConfig(48000, 2) };
    files.set(`audio/${s.index}`, await muxFragment({ kind: 'audio', codec: 'aac', decoderConfig: aconfig }, apk));
  }
  return { map, files };
}

async function packetsOf(init: Uint8Array, media: Uint8Array, kind: 'video' | 'audio'): Promise<EncodedPacket[]> {
  const bytes = new Uint8Array(init.length + media.length);
  bytes.set(init);
  bytes.set(media, init.length);
  const input = new Input({ source: new BufferSource(bytes), formats: [MP4] });
  const track = kind === 'video' ? await input.getPrimaryVideoTrack() : await input.getPrimaryAudioTrack();
  const out: EncodedPacket[] = [];
  for await (const p of new EncodedPacketSink(track!).packets()) out.push(p);
  return out;
}

function mfhdSequence(media: Uint8Array): number {
  const at = Buffer.from(media).indexOf('mfhd');
  return new DataView(media.buffer, media.byteOffset).getUint32(at + 8);
}

describe('the segment assembler', async () => {
  const { map, files } = await fixture();
  const get = async (r: string, i: number) => files.get(`${r}/${i}`);
  const [video, audio] = planHls(map).renditions;

  it('places every video frame at its map time, with the stored shards untouched', async () => {
    const before = new Map([...files].map(([k, v]) => [k, v.slice()]));
    const init = await buildInitSegment(map, video!, 0, get);
    for (const seg of video!.segments) {
      const media = await buildMediaSegment(map, video!, seg, get);
      expect(mfhdSequence(media)).toBe(seg.seq + 1);
      const got = await packetsOf(init, media, 'video');
      const want = seg.shards.flatMap((i) =>
        Array.from({ length: map.shards[i]!.frames }, (_, j) => ({ shard: i, frame: j, t: map.shards[i]!.start + j / FPS })),
      );
      expect(got).toHaveLength(want.length);
      got.forEach((p, k) => {
        expect(p.timestamp).toBeCloseTo(want[k]!.t, 4);
        // The payload (after any parameter sets) is the frame's own.
        expect([...p.data.subarray(p.data.length - 2)]).toEqual([want[k]!.shard, want[k]!.frame]);
      });
    }
    expect(files).toEqual(before);
  });

  it('carries parameter sets in-band at each segment start and wherever they change', async () => {
    const seg = video!.segments[0]!;
    expect(seg.shards).toEqual([0, 1, 2, 3, 4, 5, 6]);
    const got = await packetsOf(await buildInitSegment(map, video!, 0, get), await buildMediaSegment(map, video!, seg, get), 'video');
    const firstOf = (shard: number) => got.find((p) => p.data.at(-2) === shard && p.data.at(-1) === 0)!;
    const inband = (shard: number) => firstOf(shard).data.length > au(0, 0).length;
    // Segment start, shard 3 (its own SPS/PPS) and shard 4 (back to the others) carry them; 1, 2, 5, 6 need not.
    expect([0, 1, 2, 3, 4, 5, 6].map(inband)).toEqual([true, false, false, true, true, false, false]);
    // Shard 3's in-band SPS is its own (level 3.0), shard 4's the others' (level 1.3).
    expect([...firstOf(3).data.subarray(4, 8)]).toEqual([0x67, 0x42, 0xc0, 0x1e]);
    expect([...firstOf(4).data.subarray(4, 8)]).toEqual([0x67, 0x42, 0xc0, 0x0d]);
  });

  it('drops each audio shard’s lead and tail and places the rest at its exact sample time, gapless across segments', async () => {
    const init = await buildInitSegment(map, audio!, 0, get);
    let next: number | undefined;
    for (const seg of audio!.segments) {
      const got = await packetsOf(init, await buildMediaSegment(map, audio!, seg, get), 'audio');
      const want = seg.shards.flatMap((i) => {
        const st = map.shards[i]!.renditions.audio!;
        return Array.from({ length: st.samples! / 1024 }, (_, j) => ({ id: [0x21, i, j + st.lead! / 1024], t: st.start! + (j * 1024) / 48000 }));
      });
      expect(got.map((p) => [...p.data])).toEqual(want.map((w) => w.id));
      for (const [k, p] of got.entries()) expect(p.timestamp).toBeCloseTo(want[k]!.t, 6);
      if (next !== undefined) expect(got[0]!.timestamp).toBeCloseTo(next, 6);
      next = got.at(-1)!.timestamp + 1024 / 48000;
    }
  });

  it('refuses a segment whose shard is missing or does not match the map', async () => {
    const seg = audio!.segments[0]!;
    await expect(buildMediaSegment(map, audio!, seg, async (r, i) => (i === seg.shards[1] ? undefined : get(r, i)))).rejects.toMatchObject({
      code: 'not-cached',
    });
    const wrong = structuredClone(map);
    wrong.shards[seg.shards[0]!]!.renditions.audio!.tail = 2048;
    const e = await buildMediaSegment(wrong, audio!, seg, get).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SegmentError);
    expect((e as SegmentError).code).toBe('segment-unusable');
    await expect(buildInitSegment(map, video!, 5, get)).rejects.toMatchObject({ code: 'unknown-segment' });
  });
});
