/**
 * Assembles the CMAF init and media segments of the HLS/DASH output from
 * shard files (isomorphic: the server runs it on its cache, a browser could
 * run it on shards from peers). Packets are copied, never re-encoded, and
 * placed at the map's times, so each media segment's tfdt
 * (baseMediaDecodeTime) is its map time whatever times the shard files carry.
 * The stored shards keep their accepted bytes (and hashes): everything is
 * rewritten on the way out.
 *
 * Video: each segment's first frame carries its shard's H.264 parameter sets
 * in-band, and so does every later shard whose parameter sets differ from the
 * one before (another encoder or preset), so a decoder that starts or seeks
 * at any segment holds the right SPS/PPS under one init segment (the MP4
 * export does the same, src/shared/exportTracks.ts).
 *
 * Audio: each shard's `lead` and `tail` packets are dropped and the rest
 * placed at the map's exact sample start, as in the MP4 export, so
 * consecutive segments continue one packet sequence: gapless, no priming
 * silence. (Where two independently encoded runs meet, the known one-packet
 * blur of the export applies here too.)
 */
import { BufferTarget, CmafOutputFormat, EncodedAudioPacketSource, type EncodedPacket, EncodedVideoPacketSource, Output } from 'mediabunny';
import { ShardcastError } from '../errors.ts';
import { audioPacketTime, audioTrim, exactFrameRate, parseAvcC, withInbandParameterSets } from '../exportPlan.ts';
import { descriptionBytes, parseShard, sameBytes, type AudioShard, type ShardGetter, type VideoShard } from '../exportShards.ts';
import { zeroMp4Times } from '../mp4Times.ts';
import { AAC_PACKET_SAMPLES, type ShardMap } from '../shardMap.ts';
import { initSource, type HlsRenditionPlan, type HlsSegment } from './plan.ts';

/** A segment that cannot be built from the shards there are. */
export class SegmentError extends ShardcastError<'not-cached' | 'segment-unusable' | 'unknown-segment'> {
  override name = 'SegmentError';
}

type Track = VideoShard | AudioShard;

/** Both parts a CMAF muxer writes: the init segment (ftyp+moov) and the media segment (styp, sidx, moof+mdat). */
interface Muxed {
  init: Uint8Array;
  media: Uint8Array;
}

async function mux(first: Track, packets: readonly EncodedPacket[], frameRate: number | undefined): Promise<Muxed> {
  const target = new BufferTarget();
  const initTarget = new BufferTarget();
  const output = new Output({ format: new CmafOutputFormat(), target, initTarget });
  let add: (p: EncodedPacket, meta: boolean) => Promise<void>;
  if (first.kind === 'video') {
    const source = new EncodedVideoPacketSource(first.codec);
    // A timescale that is a multiple of the frame rate gives every frame the same number of ticks.
    output.addVideoTrack(source, frameRate ? { frameRate } : {});
    add = (p, meta) => source.add(p, meta ? { decoderConfig: first.config } : undefined);
  } else {
    const source = new EncodedAudioPacketSource(first.codec);
    output.addAudioTrack(source);
    add = (p, meta) => source.add(p, meta ? { decoderConfig: first.config } : undefined);
  }
  await output.start();
  try {
    for (let i = 0; i < packets.length; i++) await add(packets[i]!, i === 0);
    await output.finalize();
  } catch (e) {
    await output.cancel().catch(() => {});
    throw e;
  }
  return { init: zeroMp4Times(new Uint8Array(initTarget.buffer!)), media: new Uint8Array(target.buffer!) };
}

/** Sets the moof's mfhd sequence_number (ISO/IEC 14496-12 §8.8.5: increasing in presentation order) to `n`, in place. */
function setSequenceNumber(media: Uint8Array, n: number): void {
  const view = new DataView(media.buffer, media.byteOffset, media.byteLength);
  for (let at = 0; at + 8 <= media.byteLength; ) {
    const size = view.getUint32(at);
    const type = String.fromCharCode(...media.subarray(at + 4, at + 8));
    if (type === 'moof') {
      // mfhd is the moof's first child: size, type, version+flags, sequence_number.
      if (String.fromCharCode(...media.subarray(at + 12, at + 16)) === 'mfhd') view.setUint32(at + 20, n >>> 0);
      return;
    }
    if (size < 8) return;
    at += size;
  }
}

/** Reads and parses shard `index` of `rendition`; throws SegmentError when it is missing or unusable. */
async function readShard(get: ShardGetter, rendition: string, index: number, kind: 'video' | 'audio'): Promise<Track> {
  const bytes = await get(rendition, index);
  if (!bytes) throw new SegmentError('not-cached', `shard ${rendition}/${index} is not available yet; the segment can be built once it is`);
  const parsed = await parseShard(bytes, kind);
  if (typeof parsed === 'string') throw new SegmentError('segment-unusable', `shard ${rendition}/${index}: ${parsed}`);
  return parsed;
}

/** The video packets of `shards` at their map times, with parameter sets in-band where the decoder needs them (see the file comment). */
function placeVideo(map: ShardMap, label: string, items: readonly { index: number; shard: VideoShard }[]): EncodedPacket[] {
  const out: EncodedPacket[] = [];
  const first = items[0]!.shard;
  const lengthSize = parseAvcC(descriptionBytes(first.config.description) ?? new Uint8Array())?.lengthSize;
  let previous: Uint8Array | undefined;
  for (const [k, { index, shard }] of items.entries()) {
    if (shard.codec !== first.codec || shard.config.codedWidth !== first.config.codedWidth || shard.config.codedHeight !== first.config.codedHeight) {
      throw new SegmentError(
        'segment-unusable',
        `${label}: shard ${index} is ${shard.codec} ${shard.config.codedWidth}x${shard.config.codedHeight}, the segment's first is not`,
      );
    }
    const desc = descriptionBytes(shard.config.description);
    let inband: ReturnType<typeof parseAvcC>;
    if (shard.codec === 'avc' && (k === 0 || !sameBytes(desc, previous))) {
      inband = parseAvcC(desc ?? new Uint8Array());
      if (!inband || inband.lengthSize !== lengthSize)
        throw new SegmentError('segment-unusable', `${label}: shard ${index}'s H.264 configuration cannot be carried in-band`);
    }
    previous = desc;
    const start = map.shards[index]!.start;
    const t0 = Math.min(...shard.packets.map((p) => p.timestamp));
    shard.packets.forEach((p, j) => {
      out.push(p.clone({ timestamp: start + (p.timestamp - t0), ...(j === 0 && inband && { data: withInbandParameterSets(p.data, inband) }) }));
    });
  }
  return out;
}

/** The audio packets of `shards` with lead and tail dropped, at their exact sample times. */
function placeAudio(map: ShardMap, r: HlsRenditionPlan, label: string, items: readonly { index: number; shard: AudioShard }[]): EncodedPacket[] {
  const first = items[0]!.shard;
  const sampleRate = first.config.sampleRate;
  const packetSamples = Math.round(first.packets[0]!.duration * sampleRate) || AAC_PACKET_SAMPLES;
  const dur = packetSamples / sampleRate;
  const out: EncodedPacket[] = [];
  for (const { index, shard } of items) {
    const st = map.shards[index]!.renditions[r.id]!;
    const c = shard.config;
    if (
      shard.codec !== first.codec ||
      c.sampleRate !== sampleRate ||
      c.numberOfChannels !== first.config.numberOfChannels ||
      !sameBytes(descriptionBytes(c.description), descriptionBytes(first.config.description))
    ) {
      throw new SegmentError('segment-unusable', `${label}: shard ${index}'s audio format differs from the segment's first shard`);
    }
    let trim: { front: number; back: number };
    try {
      trim = audioTrim(st.lead ?? 0, st.tail ?? 0, packetSamples);
    } catch (e) {
      throw new SegmentError('segment-unusable', `${label}: shard ${index}: ${(e as Error).message}`);
    }
    const want = (st.samples ?? 0) / packetSamples;
    if (!Number.isInteger(want) || shard.packets.length !== trim.front + want + trim.back) {
      throw new SegmentError(
        'segment-unusable',
        `${label}: shard ${index} has ${shard.packets.length} packets, the map expects ${trim.front + want + trim.back}`,
      );
    }
    shard.packets.slice(trim.front, trim.front + want).forEach((p, j) => {
      out.push(p.clone({ timestamp: audioPacketTime(st.start!, j, packetSamples, sampleRate), duration: dur }));
    });
  }
  return out;
}

/**
 * CMAF media segment `seg` of rendition `r`: one moof+mdat holding its
 * shards' samples at their map times, mfhd sequence number seq+1. Throws
 * SegmentError `not-cached` when `get` lacks a shard, `segment-unusable`
 * when a shard does not fit (another codec, size or packet count).
 */
export async function buildMediaSegment(map: ShardMap, r: HlsRenditionPlan, seg: HlsSegment, get: ShardGetter): Promise<Uint8Array> {
  const label = `${r.id} segment ${seg.seq}`;
  const tracks = await Promise.all(seg.shards.map(async (index) => ({ index, shard: await readShard(get, r.id, index, r.kind) })));
  const first = tracks[0]!.shard;
  const packets =
    first.kind === 'video'
      ? placeVideo(map, label, tracks as { index: number; shard: VideoShard }[])
      : placeAudio(map, r, label, tracks as { index: number; shard: AudioShard }[]);
  const { media } = await mux(first, packets, frameRateOf(map, r));
  setSequenceNumber(media, seg.seq + 1);
  return media;
}

/**
 * CMAF init segment `n` of rendition `r`, described by the first shard of
 * the first segment that uses it (creation times zeroed, so it is the same
 * bytes on every request). Throws SegmentError `unknown-segment` when `r`
 * has no init `n`, and as buildMediaSegment for that shard.
 */
export async function buildInitSegment(map: ShardMap, r: HlsRenditionPlan, n: number, get: ShardGetter): Promise<Uint8Array> {
  const seg = initSource(r, n);
  if (!seg) throw new SegmentError('unknown-segment', `rendition ${r.id} has init segments 0 to ${r.inits - 1}, not ${n}`);
  const shard = await readShard(get, r.id, seg.shards[0]!, r.kind);
  return (await mux(shard, shard.packets.slice(0, 1), frameRateOf(map, r))).init;
}

function frameRateOf(map: ShardMap, r: HlsRenditionPlan): number | undefined {
  return r.kind === 'video' ? exactFrameRate(map.source.video?.fps, map.source.video?.variableFrameRate) : undefined;
}

/** The RFC 6381 codec string of a shard file's one track (for CODECS in the master playlist), or undefined when it does not parse. */
export async function shardCodecString(bytes: Uint8Array, kind: 'video' | 'audio'): Promise<string | undefined> {
  const parsed = await parseShard(bytes, kind);
  return typeof parsed === 'string' ? undefined : parsed.config.codec;
}
