/**
 * One ordinary MP4 from a content's shards, for download: the same code runs
 * in a browser tab (shards from peers) and in the server (shards from its
 * cache). Packets are copied, never re-encoded; the ShardMap says where each
 * shard goes, whatever timestamps its file carries.
 *
 * Video: one rendition for the whole file. A shard that is missing (or whose
 * codec or size differs from the first one found) is concealed by holding the
 * previous frame across the hole.
 *
 * Audio: the audio rendition's shards are cuts of long AAC runs (see
 * src/encoder/audioCutter.ts). Dropping each file's `lead` and `tail` packets
 * and placing the rest at the map's exact sample start makes consecutive shards
 * of one run follow each other packet for packet, so the decoder sees the run's
 * original packet sequence: sample-exact and seamless. A missing audio shard
 * becomes AAC silence of the same length.
 *
 * Known artifact: where two independently encoded runs meet (every 30 s or
 * so), the first packet of the new run is decoded with the overlap of the old
 * run's last packet. The two encodes window the same material differently, so
 * about one packet (21 ms at 48 kHz) is not perfectly reconstructed: a faint
 * blur, never a gap or a shift. The viewer avoids it by decoding each run's
 * pre-roll and trimming with the append window, which one MP4 track cannot do
 * without re-encoding.
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
import {
  AAC_PACKET_SAMPLES,
  isAudioRendition,
  isVideoRendition,
  mapEnd,
  type AudioRendition,
  type ShardMap,
  type VideoRendition,
} from './shardMap.ts';
import { aacObjectType, aacSilentFrame } from './aac.ts';
import { ShardcastError } from './errors.ts';

export type ShardGetter = (rendition: string, index: number) => Promise<Uint8Array | undefined>;

export interface AssembleOptions {
  /** The video rendition to copy; default: the highest-bitrate one. */
  videoRendition?: string;
  /** Called after each shard file is read (or found missing). */
  onProgress?: (done: number, total: number) => void;
}

export interface ExportReport {
  /** The video rendition copied; null for a content without video. */
  rendition: string | null;
  /** Video shards copied. */
  videoShards: number;
  /** Video shards missing or unusable, concealed by holding a frame. */
  held: number;
  /** Audio shards copied. */
  audioShards: number;
  /** Audio shards missing or unusable, replaced by silence (or, where silence cannot be written, a gap). */
  silent: number;
  /** Why shards were concealed, and anything else a person should know about this file. */
  notes: string[];
}

export interface ExportResult {
  bytes: Uint8Array;
  report: ExportReport;
}

/** An export that cannot be built (yet); the server's export route throws it too, for its limits. */
export class ExportError extends ShardcastError<'unknown-rendition' | 'nothing-to-export' | 'not-cached' | 'export-too-large' | 'busy'> {
  override name = 'ExportError';
}

// ---------------------------------------------------------------- pure planning

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

/**
 * The exact rate of a constant-frame-rate source, when it is a common one.
 * Given to the muxer, it makes the track's timescale a multiple of the frame
 * rate, so every frame lasts the same number of ticks.
 */
export function exactFrameRate(fps: number | undefined, variable: boolean | undefined): number | undefined {
  if (!fps || variable) return undefined;
  for (const [n, d] of COMMON_RATES) if (Math.abs(fps - n / d) / (n / d) < 1e-4) return n / d;
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

const sameBytes = (a: Uint8Array | undefined, b: Uint8Array | undefined) =>
  a === b || (!!a && !!b && a.length === b.length && a.every((x, i) => x === b[i]));

function descriptionBytes(d: AllowSharedBufferSource | undefined): Uint8Array | undefined {
  if (!d) return undefined;
  if (ArrayBuffer.isView(d)) return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  return new Uint8Array(d);
}

// ---------------------------------------------------------------- reading shards

type OutVideoCodec = ConstructorParameters<typeof EncodedVideoPacketSource>[0];
type OutAudioCodec = ConstructorParameters<typeof EncodedAudioPacketSource>[0];

interface VideoShard {
  kind: 'video';
  codec: OutVideoCodec;
  config: VideoDecoderConfig;
  packets: EncodedPacket[];
}
interface AudioShard {
  kind: 'audio';
  codec: OutAudioCodec;
  config: AudioDecoderConfig;
  packets: EncodedPacket[];
}
/** A parsed shard, a reason it cannot be used, or undefined when the getter has no such shard. */
type Parsed = VideoShard | AudioShard | string | undefined;

/** The one track of a shard file with its packets, or a reason it cannot be used. */
async function parseShard(bytes: Uint8Array, kind: 'video' | 'audio'): Promise<VideoShard | AudioShard | string> {
  const input = new Input({ source: new BufferSource(bytes), formats: [MP4] });
  try {
    const track = kind === 'video' ? await input.getPrimaryVideoTrack() : await input.getPrimaryAudioTrack();
    if (!track) return `no ${kind} track`;
    const codec = await track.getCodec();
    const config = await track.getDecoderConfig();
    if (!codec || !config) return `unknown ${kind} codec`;
    const packets: EncodedPacket[] = [];
    for await (const p of new EncodedPacketSink(track).packets()) packets.push(p);
    if (packets.length === 0) return 'no samples';
    if (packets[0]!.type !== 'key') return 'does not start with a key frame';
    return track.isVideoTrack()
      ? { kind: 'video', codec: codec as OutVideoCodec, config: config as VideoDecoderConfig, packets }
      : { kind: 'audio', codec: codec as OutAudioCodec, config: config as AudioDecoderConfig, packets };
  } catch (e) {
    return `unreadable (${(e as Error).message})`;
  } finally {
    input.dispose();
  }
}

interface ReadItem {
  kind: 'video' | 'audio';
  rendition: string;
  index: number;
}

/**
 * Reads and parses shards in order, a few ahead of use, so a slow getter
 * (peers, disk) overlaps with muxing. Each shard is read once.
 */
class ShardReader {
  private readonly pending: (Promise<Uint8Array | undefined> | undefined)[] = [];
  private done = 0;

  constructor(
    private readonly items: readonly ReadItem[],
    private readonly get: ShardGetter,
    private readonly depth: number,
    private readonly onProgress?: (done: number, total: number) => void,
  ) {}

  async read(k: number): Promise<Parsed> {
    for (let j = k; j < Math.min(this.items.length, k + this.depth); j++) {
      if (this.pending[j]) continue;
      const p = this.get(this.items[j]!.rendition, this.items[j]!.index);
      // A rejection surfaces when its shard is awaited; until then it must not count as unhandled.
      p.catch(() => {});
      this.pending[j] = p;
    }
    const bytes = await this.pending[k]!;
    this.pending[k] = undefined;
    this.onProgress?.(++this.done, this.items.length);
    return bytes ? parseShard(bytes, this.items[k]!.kind) : undefined;
  }
}

// ---------------------------------------------------------------- assembly

const MAX_NOTES = 20;
const READ_AHEAD = 4;

export async function assembleMp4(map: ShardMap, get: ShardGetter, opts: AssembleOptions = {}): Promise<ExportResult> {
  const notes: string[] = [];
  const note = (s: string) => {
    if (notes.length < MAX_NOTES) notes.push(s);
    else if (notes.length === MAX_NOTES) notes.push('(more notes left out)');
  };

  const videoId = opts.videoRendition ?? defaultVideoRendition(map);
  let videoR: VideoRendition | undefined;
  if (videoId !== undefined) {
    const r = map.renditions.find((x) => x.id === videoId);
    if (!r || !isVideoRendition(r)) {
      const known = map.renditions.filter(isVideoRendition).map((x) => x.id);
      throw new ExportError('unknown-rendition', `"${videoId}" is not a video rendition of this content; its video renditions are: ${known.join(', ') || 'none'}`);
    }
    videoR = r;
  }
  const audioR: AudioRendition | undefined = map.renditions.find(isAudioRendition);

  // Shard by shard, video then audio, so both tracks advance together.
  const items: ReadItem[] = [];
  for (const s of map.shards) {
    if (videoR && s.renditions[videoR.id]) items.push({ kind: 'video', rendition: videoR.id, index: s.index });
    if (audioR && s.renditions[audioR.id]?.samples && s.renditions[audioR.id]?.start !== undefined) {
      items.push({ kind: 'audio', rendition: audioR.id, index: s.index });
    }
  }
  const reader = new ShardReader(items, get, READ_AHEAD, opts.onProgress);

  // The tracks must exist before the muxer starts, and each one's decoder
  // config comes from its first usable shard: read until one of each is found.
  // What is read on the way is kept for the main pass.
  const early: Parsed[] = [];
  let firstVideo: VideoShard | undefined;
  let firstAudio: AudioShard | undefined;
  while (early.length < items.length && ((videoR && !firstVideo) || (audioR && !firstAudio))) {
    const v = await reader.read(early.length);
    early.push(v);
    if (typeof v === 'object' && v.kind === 'video') firstVideo ??= v;
    if (typeof v === 'object' && v.kind === 'audio') firstAudio ??= v;
  }
  if (!firstVideo && !firstAudio) {
    throw new ExportError(
      'nothing-to-export',
      items.length === 0
        ? 'the content has no shards to export'
        : 'none of the content\'s shards could be read: encode the content first (open /encode tabs) and try again',
    );
  }

  const target = new BufferTarget();
  const output = new Output({ format: new Mp4OutputFormat({ fastStart: 'in-memory' }), target });

  const video = firstVideo && videoR ? { first: firstVideo, source: new EncodedVideoPacketSource(firstVideo.codec) } : undefined;
  if (video) {
    const frameRate = exactFrameRate(map.source.video?.fps, map.source.video?.variableFrameRate);
    output.addVideoTrack(video.source, frameRate ? { frameRate } : {});
  } else if (videoR) {
    note(`no shard of video rendition "${videoR.id}" could be read: the file has no video`);
  }
  const entryDesc = descriptionBytes(video?.first.config.description);
  const firstAvc = video?.first.codec === 'avc' ? parseAvcC(entryDesc ?? new Uint8Array()) : undefined;
  /** The H.264 parameter sets the decoder holds after the last shard written. */
  let activeDesc = entryDesc;

  const audio = firstAudio && audioR ? { first: firstAudio, source: new EncodedAudioPacketSource(firstAudio.codec) } : undefined;
  let silence: Uint8Array | undefined;
  let packetSamples = AAC_PACKET_SAMPLES;
  let sampleRate = 48000;
  if (audio) {
    output.addAudioTrack(audio.source);
    const c = audio.first.config;
    sampleRate = c.sampleRate;
    packetSamples = Math.round(audio.first.packets[0]!.duration * sampleRate) || packetSamples;
    if (audio.first.codec === 'aac' && aacObjectType(descriptionBytes(c.description)) === 2 && (c.numberOfChannels === 1 || c.numberOfChannels === 2)) {
      silence = aacSilentFrame(c.numberOfChannels);
    }
  } else if (audioR && items.some((x) => x.kind === 'audio')) {
    note('no audio shard could be read: the file has no audio');
  }
  await output.start();

  let videoShards = 0;
  let held = 0;
  let audioShards = 0;
  let silent = 0;
  // A failure part way (a getter that throws) must not leave the muxer holding its buffers.
  try {
    // ---- video: each packet is written once the next one's time is known, so
    // the frame before a hole can be held across it.
    let videoStarted = false;
    let pendingVideo: EncodedPacket | undefined;
    const flushVideo = async (nextTimestamp: number) => {
      if (!pendingVideo || !video) return;
      const p = pendingVideo;
      const d = heldDuration(p.timestamp, p.duration, nextTimestamp);
      await video.source.add(d > p.duration + 1e-9 ? p.clone({ duration: d }) : p, videoStarted ? undefined : { decoderConfig: video.first.config });
      videoStarted = true;
      pendingVideo = undefined;
    };
    const addVideo = async (p: EncodedPacket) => {
      await flushVideo(p.timestamp);
      pendingVideo = p;
    };

    let audioStarted = false;
    const addAudio = async (p: EncodedPacket) => {
      await audio!.source.add(p, audioStarted ? undefined : { decoderConfig: audio!.first.config });
      audioStarted = true;
    };

    for (let k = 0; k < items.length; k++) {
      const item = items[k]!;
      const s = map.shards[item.index]!;
      const got = k < early.length ? early[k] : await reader.read(k);
      const label = `${item.rendition}/${item.index}`;
      const why = got === undefined ? 'not available' : typeof got === 'string' ? got : undefined;

      if (item.kind === 'video') {
        if (!video) continue;
        let use: VideoShard | undefined;
        let inband: AvcParameterSets | undefined;
        const cfg = video.first.config;
        if (why) note(`${label}: ${why}`);
        else if (typeof got === 'object' && got.kind === 'video') {
          if (got.codec !== video.first.codec || got.config.codedWidth !== cfg.codedWidth || got.config.codedHeight !== cfg.codedHeight) {
            note(`${label}: ${got.codec} ${got.config.codedWidth}x${got.config.codedHeight} differs from the file's ${video.first.codec} ${cfg.codedWidth}x${cfg.codedHeight}`);
          } else if (got.codec === 'avc') {
            // Another encoder or preset may have written other parameter sets,
            // which one sample entry cannot describe. Such a shard carries its
            // own in-band (decoders use the latest SPS/PPS), and so does the
            // first shard after it, to switch the decoder back. VP9 and AV1
            // carry theirs in the bitstream anyway.
            const desc = descriptionBytes(got.config.description);
            if (sameBytes(desc, entryDesc) && sameBytes(activeDesc, entryDesc)) use = got;
            else {
              const own = parseAvcC(desc ?? new Uint8Array());
              if (own && firstAvc && own.lengthSize === firstAvc.lengthSize) {
                inband = own;
                use = got;
              } else note(`${label}: its H.264 configuration cannot be carried in-band`);
            }
            if (use) activeDesc = desc;
          } else use = got;
        }
        if (!use) {
          held++;
          continue;
        }
        videoShards++;
        const t0 = Math.min(...use.packets.map((p) => p.timestamp));
        const withParams = (p: EncodedPacket) => (inband ? withInbandParameterSets(p.data, inband) : p.data);
        if (!videoStarted && !pendingVideo && item.index > 0) {
          // Holes at the very start: show this shard's key frame from the content's start.
          const from = map.shards[0]!.start;
          const key = use.packets[0]!;
          await addVideo(key.clone({ timestamp: from, duration: s.start - from, data: withParams(key) }));
        }
        for (let j = 0; j < use.packets.length; j++) {
          const p = use.packets[j]!;
          await addVideo(p.clone({ timestamp: s.start + (p.timestamp - t0), ...(j === 0 && { data: withParams(p) }) }));
        }
        continue;
      }

      // ---- audio
      if (!audio) continue;
      const st = s.renditions[item.rendition]!;
      const start = st.start!;
      const want = st.samples! / packetSamples;
      const cfg = audio.first.config;
      let kept: EncodedPacket[] | undefined;
      let preroll: EncodedPacket | undefined;
      if (why) note(`${label}: ${why}`);
      else if (typeof got === 'object' && got.kind === 'audio') {
        let trim: { front: number; back: number } | undefined;
        try {
          trim = audioTrim(st.lead ?? 0, st.tail ?? 0, packetSamples);
        } catch (e) {
          note(`${label}: ${(e as Error).message}`);
        }
        if (
          got.codec !== audio.first.codec ||
          got.config.sampleRate !== cfg.sampleRate ||
          got.config.numberOfChannels !== cfg.numberOfChannels ||
          !sameBytes(descriptionBytes(got.config.description), descriptionBytes(cfg.description))
        ) {
          note(`${label}: ${got.codec} ${got.config.sampleRate} Hz x ${got.config.numberOfChannels} differs from the file's audio format`);
        } else if (!Number.isInteger(want)) {
          note(`${label}: ${st.samples} samples is not a whole number of ${packetSamples}-sample packets`);
        } else if (trim && got.packets.length !== trim.front + want + trim.back) {
          note(`${label}: ${got.packets.length} packets, the map expects ${trim.front + want + trim.back}`);
        } else if (trim) {
          kept = got.packets.slice(trim.front, trim.front + want);
          // The file's first audio keeps one packet of pre-roll (the encoder's
          // priming, or real audio before a later run's start), so the decoder
          // is warmed up at the first kept sample. It lies before the start and
          // the muxer's edit list hides it.
          if (!audioStarted && trim.front > 0) preroll = got.packets[trim.front - 1];
        }
      }
      const at = (j: number) => audioPacketTime(start, j, packetSamples, sampleRate);
      const dur = packetSamples / sampleRate;
      if (kept) {
        audioShards++;
        if (preroll) await addAudio(preroll.clone({ timestamp: at(-1), duration: dur }));
        for (let j = 0; j < kept.length; j++) await addAudio(kept[j]!.clone({ timestamp: at(j), duration: dur }));
      } else {
        silent++;
        if (silence && Number.isInteger(want)) {
          for (let j = 0; j < want; j++) await addAudio(new EncodedPacket(silence, 'key', at(j), dur));
        } else note(`${label}: left as a gap (silence can only be written for AAC-LC mono or stereo)`);
      }
    }
    if (videoR && !video) held = items.filter((x) => x.kind === 'video').length;
    await flushVideo(mapEnd(map));

    await output.finalize();
  } catch (e) {
    await output.cancel().catch(() => {});
    throw e;
  }
  if (!target.buffer) throw new Error('the MP4 muxer produced no bytes');
  return {
    bytes: new Uint8Array(target.buffer),
    report: { rendition: videoR?.id ?? null, videoShards, held, audioShards, silent, notes },
  };
}
