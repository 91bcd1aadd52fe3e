/**
 * The pure decisions of an MP4 export (src/shared/exportMp4.ts): which video
 * rendition, how long a held frame lasts, which audio packets are kept and
 * where they go, the frame rate given to the muxer, and how H.264 parameter
 * sets are carried in-band. No I/O, no muxer: unit-tested on their own.
 */
import { isVideoRendition, type ShardMap } from './shardMap.ts';

/** The highest-bitrate video rendition (larger picture on a tie), or undefined for audio-only contents. */
export function defaultVideoRendition(map: ShardMap): string | undefined {
  return pickVideoRendition(map, () => 0);
}

/**
 * The video rendition a download should use when several are partly there:
 * the one with the most shards available, then the highest bitrate. A
 * complete lower rendition beats a higher one with frozen holes.
 */
export function pickVideoRendition(map: ShardMap, available: (rendition: string) => number): string | undefined {
  const vs = map.renditions.filter(isVideoRendition).map((r) => ({ r, n: available(r.id) }));
  vs.sort((a, b) => b.n - a.n || b.r.video.bitrate - a.r.video.bitrate || b.r.video.width * b.r.video.height - a.r.video.width * a.r.video.height);
  return vs[0]?.r.id;
}

/**
 * How long a copied video frame lasts: its own duration, or longer when the
 * next frame written comes later (a missing shard, or the content's end after
 * a missing last shard). Holding the last decoded frame conceals the hole.
 */
export function heldDuration(timestamp: number, duration: number, nextTimestamp: number): number {
  return Math.max(duration, nextTimestamp - timestamp);
}

/** Packets to drop from the front and the back of an audio shard file, from its lead and tail in samples. */
export function audioTrim(lead: number, tail: number, packetSamples: number): { front: number; back: number } {
  if (!Number.isInteger(lead / packetSamples) || !Number.isInteger(tail / packetSamples)) {
    throw new RangeError(`lead ${lead} and tail ${tail} must be whole packets of ${packetSamples} samples`);
  }
  return { front: lead / packetSamples, back: tail / packetSamples };
}

/** Content time of the k-th kept packet of an audio shard starting at `start` s. */
export function audioPacketTime(start: number, k: number, packetSamples: number, sampleRate: number): number {
  return start + (k * packetSamples) / sampleRate;
}

const COMMON_RATES: readonly [number, number][] = [
  [24000, 1001],
  [24, 1],
  [25, 1],
  [30000, 1001],
  [30, 1],
  [50, 1],
  [60000, 1001],
  [60, 1],
];

/** How far (in frames) the first frame may lie off the rate's grid for the rate to be used. */
const GRID_TOLERANCE = 0.01;

/**
 * The exact rate of a constant-frame-rate source, when it is a common one and
 * the first frame (`firstFrame`, s, content time) lies on its grid. Given to
 * the muxer, it makes the track's timescale a multiple of the frame rate, so
 * every frame lasts the same number of ticks; but the muxer then rounds every
 * time to that grid, so a video that starts off it (Matroska or MPEG-TS
 * video starting 21 ms after the audio's priming, in 1 ms ticks) would move
 * by up to half a frame against its audio: then there is no rate.
 */
export function exactFrameRate(fps: number | undefined, variable: boolean | undefined, firstFrame = 0): number | undefined {
  if (!fps || variable) return undefined;
  for (const [n, d] of COMMON_RATES) {
    const rate = n / d;
    if (Math.abs(fps - rate) / rate >= 1e-4) continue;
    return Math.abs(firstFrame * rate - Math.round(firstFrame * rate)) <= GRID_TOLERANCE ? rate : undefined;
  }
  return undefined;
}

export interface AvcParameterSets {
  lengthSize: number;
  nals: Uint8Array[];
}

/** SPS and PPS NAL units of an avcC record (ISO/IEC 14496-15), or undefined if it does not parse. */
export function parseAvcC(avcc: Uint8Array): AvcParameterSets | undefined {
  if (avcc.length < 7 || avcc[0] !== 1) return undefined;
  const lengthSize = (avcc[4]! & 3) + 1;
  const nals: Uint8Array[] = [];
  let at = 5;
  for (const mask of [0x1f, 0xff]) {
    if (at >= avcc.length) return undefined;
    const count = avcc[at++]! & mask;
    for (let i = 0; i < count; i++) {
      if (at + 2 > avcc.length) return undefined;
      const len = (avcc[at]! << 8) | avcc[at + 1]!;
      at += 2;
      if (at + len > avcc.length) return undefined;
      nals.push(avcc.subarray(at, at + len));
      at += len;
    }
  }
  return { lengthSize, nals };
}

/** Prefixes a length-prefixed H.264 access unit with parameter sets, so it decodes under another sample entry. */
export function withInbandParameterSets(data: Uint8Array, ps: AvcParameterSets): Uint8Array {
  const extra = ps.nals.reduce((n, x) => n + ps.lengthSize + x.length, 0);
  const out = new Uint8Array(extra + data.length);
  let at = 0;
  for (const nal of ps.nals) {
    for (let i = ps.lengthSize - 1; i >= 0; i--) out[at++] = (nal.length >>> (8 * i)) & 0xff;
    out.set(nal, at);
    at += nal.length;
  }
  out.set(data, at);
  return out;
}
