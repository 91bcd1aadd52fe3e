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
import { BufferTarget, Mp4OutputFormat, Output } from 'mediabunny';
import { defaultVideoRendition } from './exportPlan.ts';
import { readOrder, ShardReader, type AudioShard, type Parsed, type ReadItem, type ShardGetter, type VideoShard } from './exportShards.ts';
import { AudioTrackWriter, ExportNotes, VideoTrackWriter } from './exportTracks.ts';
import { ShardcastError } from './errors.ts';
import { isAudioRendition, isVideoRendition, mapEnd, type AudioRendition, type ShardMap, type VideoRendition } from './shardMap.ts';

export {
  audioPacketTime,
  audioTrim,
  defaultVideoRendition,
  exactFrameRate,
  heldDuration,
  parseAvcC,
  pickVideoRendition,
  withInbandParameterSets,
  type AvcParameterSets,
} from './exportPlan.ts';
export type { ShardGetter } from './exportShards.ts';

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

const READ_AHEAD = 4;

/**
 * One MP4 of `map`'s content from its shards, read through `get` (in order,
 * READ_AHEAD at a time). Throws ExportError `unknown-rendition` when
 * `opts.videoRendition` is not a video rendition of the map, and
 * `nothing-to-export` when no shard could be read; a getter's rejection is
 * rethrown as it is.
 */
export async function assembleMp4(map: ShardMap, get: ShardGetter, opts: AssembleOptions = {}): Promise<ExportResult> {
  const notes = new ExportNotes();
  const videoR = videoRenditionOf(map, opts.videoRendition ?? defaultVideoRendition(map));
  const audioR: AudioRendition | undefined = map.renditions.find(isAudioRendition);
  const items = readOrder(map, videoR, audioR);
  const reader = new ShardReader(items, get, READ_AHEAD, opts.onProgress);
  const { early, firstVideo, firstAudio } = await readFirsts(reader, items, !!videoR, !!audioR);

  const target = new BufferTarget();
  const output = new Output({ format: new Mp4OutputFormat({ fastStart: 'in-memory' }), target });
  const video = firstVideo && videoR ? new VideoTrackWriter(output, firstVideo, map, notes) : undefined;
  if (!video && videoR) notes.add(`no shard of video rendition "${videoR.id}" could be read: the file has no video`);
  const audio = firstAudio && audioR ? new AudioTrackWriter(output, firstAudio, notes) : undefined;
  if (!audio && audioR && items.some((x) => x.kind === 'audio')) notes.add('no audio shard could be read: the file has no audio');
  await output.start();

  // A failure part way (a getter that throws) must not leave the muxer holding its buffers.
  try {
    for (let k = 0; k < items.length; k++) {
      const item = items[k]!;
      const got = k < early.length ? early[k] : await reader.read(k);
      const label = `${item.rendition}/${item.index}`;
      if (item.kind === 'video') await video?.write(label, item.index, got);
      else await audio?.write(label, map.shards[item.index]!.renditions[item.rendition]!, got);
    }
    await video?.finish(mapEnd(map));
    await output.finalize();
  } catch (e) {
    await output.cancel().catch(() => {});
    throw e;
  }
  if (!target.buffer) throw new Error('the MP4 muxer produced no bytes');
  const held = videoR && !video ? items.filter((x) => x.kind === 'video').length : (video?.held ?? 0);
  return {
    bytes: new Uint8Array(target.buffer),
    report: {
      rendition: videoR?.id ?? null,
      videoShards: video?.shards ?? 0,
      held,
      audioShards: audio?.shards ?? 0,
      silent: audio?.silent ?? 0,
      notes: notes.list,
    },
  };
}

/** The video rendition `id` of `map` (undefined for none); throws ExportError `unknown-rendition` naming the ones there are. */
function videoRenditionOf(map: ShardMap, id: string | undefined): VideoRendition | undefined {
  if (id === undefined) return undefined;
  const r = map.renditions.find((x) => x.id === id);
  if (r && isVideoRendition(r)) return r;
  const known = map.renditions.filter(isVideoRendition).map((x) => x.id);
  throw new ExportError('unknown-rendition', `"${id}" is not a video rendition of this content; its video renditions are: ${known.join(', ') || 'none'}`);
}

/**
 * The tracks must exist before the muxer starts, and each one's decoder
 * config comes from its first usable shard: reads until one of each wanted
 * kind is found. What is read on the way is kept (`early`) for the main pass.
 * Throws ExportError `nothing-to-export` when none is usable.
 */
async function readFirsts(
  reader: ShardReader,
  items: readonly ReadItem[],
  wantVideo: boolean,
  wantAudio: boolean,
): Promise<{ early: Parsed[]; firstVideo?: VideoShard; firstAudio?: AudioShard }> {
  const early: Parsed[] = [];
  let firstVideo: VideoShard | undefined;
  let firstAudio: AudioShard | undefined;
  while (early.length < items.length && ((wantVideo && !firstVideo) || (wantAudio && !firstAudio))) {
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
        : "none of the content's shards could be read: encode the content first (open /encode tabs) and try again",
    );
  }
  return { early, ...(firstVideo && { firstVideo }), ...(firstAudio && { firstAudio }) };
}
