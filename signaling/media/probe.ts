/**
 * Probes an uploaded file with mediabunny (a demuxer: no decoding): container,
 * tracks, codecs, every video frame's timestamp and the key frames.
 */
import fs from 'node:fs/promises';
import { ALL_FORMATS, EncodedPacketSink, FilePathSource, Input, type InputAudioTrack, type InputVideoTrack } from 'mediabunny';
import type { AudioFacts, ProbeFacts, VideoFacts } from '../../src/shared/media.ts';
import { ShardcastError } from '../../src/shared/errors.ts';
import { AAC_PACKET_SAMPLES } from '../../src/shared/shardMap.ts';
import { declaredTracks, type DeclaredTrack } from './census.ts';

export type ProbeErrorCode = 'empty' | 'not-media' | 'no-tracks' | 'unsupported-codec' | 'corrupt';

export class ProbeError extends ShardcastError<ProbeErrorCode> {
  override name = 'ProbeError';
  /** With 'unsupported-codec' from the census: every declared track the demuxer did not read (a volunteer may decode them). */
  undecoded: DeclaredTrack[] = [];
}

/** Frame intervals differing from the median by more than this share make a source variable-frame-rate. */
const VFR_TOLERANCE = 0.01;
/**
 * Frames before this source time (s) are pre-roll that an edit list hides: a file trimmed by stream copy keeps the
 * frames from the key frame before the cut, and the demuxer reports them at negative times. They are decoded
 * (the slices carry them) but never shown, so they are no frames of the content. The tolerance absorbs the
 * rounding of an edit that starts exactly on a frame.
 */
const PRE_ROLL_BEFORE = -1e-6;

/**
 * The first timestamp a track presents. A negative first timestamp comes from
 * an edit list hiding encoder priming (AAC): those samples are never shown.
 */
async function presentedStart(t: InputVideoTrack | InputAudioTrack): Promise<number> {
  return Math.max(0, await t.getFirstTimestamp());
}

/** The index may describe data the file no longer has (a file cut short): read the last packet to be sure. */
async function checkDataPresent(sink: EncodedPacketSink, what: string): Promise<void> {
  const last = await sink.getPacket(Infinity);
  if (!last || last.data.byteLength < last.byteLength) {
    throw new ProbeError('corrupt', `the ${what} data ends before the file's index says it should: the file is truncated`);
  }
}

async function videoFacts(track: InputVideoTrack, origin: number): Promise<VideoFacts> {
  const codec = await track.getCodec();
  if (!codec)
    throw new ProbeError(
      'unsupported-codec',
      `the video codec (${String(await track.getInternalCodecId())}) is not supported; use H.264, HEVC, VP8, VP9 or AV1`,
    );
  const sink = new EncodedPacketSink(track);
  const times: number[] = [];
  const keys: number[] = [];
  let lastDuration = 0;
  let maxEnd = -Infinity;
  for await (const p of sink.packets(undefined, undefined, { metadataOnly: true })) {
    if (!Number.isFinite(p.timestamp)) throw new ProbeError('corrupt', 'a video packet has no valid timestamp');
    if (p.timestamp < PRE_ROLL_BEFORE) continue;
    times.push(p.timestamp);
    if (p.type === 'key') keys.push(p.timestamp);
    if (p.timestamp + p.duration >= maxEnd) {
      maxEnd = p.timestamp + p.duration;
      lastDuration = p.duration;
    }
  }
  if (times.length === 0) throw new ProbeError('corrupt', 'the video track has no frames shown: the file is probably truncated');
  await checkDataPresent(sink, 'video');
  times.sort((a, b) => a - b);
  keys.sort((a, b) => a - b);
  const rel = times.map((t) => t - origin);
  const intervals: number[] = [];
  for (let i = 1; i < rel.length; i++) intervals.push(rel[i]! - rel[i - 1]!);
  const sorted = [...intervals].sort((a, b) => a - b);
  const median = sorted.length ? sorted[Math.floor(sorted.length / 2)]! : lastDuration || 1 / 30;
  // Containers with coarse clocks (Matroska: 1 ms) jitter by a tick; that is not a variable frame rate.
  const tick = 1 / Math.max(1, await track.getTimeResolution().catch(() => 1000));
  const tolerance = Math.max(median * VFR_TOLERANCE, 1.5 * tick);
  const vfr = intervals.some((d) => Math.abs(d - median) > tolerance);
  if (!(lastDuration > 0)) lastDuration = median;
  const span = rel[rel.length - 1]! + lastDuration - rel[0]!;
  const bitrate = await track.getAverageBitrate().catch(() => null);
  // getDisplayWidth/Height below are already rotated; the encoders must turn the pixels to match.
  const rotation = await track.getRotation();
  return {
    codec,
    width: await track.getDisplayWidth(),
    height: await track.getDisplayHeight(),
    fps: span > 0 ? rel.length / span : 0,
    frameTimes: rel,
    lastFrameDuration: lastDuration,
    keyframeTimes: keys.map((t) => t - origin),
    variableFrameRate: vfr,
    ...(bitrate ? { bitrate: Math.round(bitrate) } : {}),
    ...(rotation !== 0 && { rotation }),
  };
}

async function audioFacts(track: InputAudioTrack, origin: number): Promise<AudioFacts> {
  const codec = await track.getCodec();
  if (!codec)
    throw new ProbeError(
      'unsupported-codec',
      `the audio codec (${String(await track.getInternalCodecId())}) is not supported; use AAC, Opus, MP3, FLAC or PCM`,
    );
  const start = await presentedStart(track);
  const end = await track.computeDuration();
  const sink = new EncodedPacketSink(track);
  await checkDataPresent(sink, 'audio');
  const sampleRate = await track.getSampleRate();
  let duration = Math.max(0, end - start);
  if (codec === 'aac') {
    // Every AAC packet decodes to 1024 samples, whatever the container says it lasts: a file muxed without an
    // edit list (-use_editlist 0) stretches its first packet over the video's B-frame delay (timestamps claim
    // 4.083 s where a player decodes 4.032 s), and Matroska's 1 ms ticks shorten every packet (4.010 s for
    // 4.032 s). Packets an edit list hides entirely are not counted, one it hides in part counts its rest.
    let packets = 0;
    let first: number | undefined;
    for await (const p of sink.packets(undefined, undefined, { metadataOnly: true })) {
      if (p.timestamp + p.duration <= start + 1e-6) continue;
      first ??= p.timestamp;
      packets++;
    }
    duration = (packets * AAC_PACKET_SAMPLES) / sampleRate - Math.max(0, start - (first ?? start));
  }
  return {
    codec,
    sampleRate,
    channels: await track.getNumberOfChannels(),
    start: start - origin,
    duration,
  };
}

/**
 * @param opts.readableOnly probe the tracks the demuxer reads and ignore the declared ones it skips (the facts of a
 *   source waiting for its mezzanine); by default such a track is a ProbeError 'unsupported-codec'.
 */
export async function probeFile(path: string, opts: { readableOnly?: boolean } = {}): Promise<ProbeFacts> {
  const st = await fs.stat(path);
  if (st.size === 0) throw new ProbeError('empty', 'the file is empty');
  const input = new Input({ source: new FilePathSource(path), formats: ALL_FORMATS });
  try {
    let format;
    try {
      if (!(await input.canRead())) throw new Error('unknown format');
      format = await input.getFormat();
    } catch {
      throw new ProbeError(
        'not-media',
        'the file is not a media container shardcast can read (MP4, MOV, WebM, MKV, MPEG-TS, Ogg; the README lists them under Accepted files)',
      );
    }
    try {
      const video = await input.getPrimaryVideoTrack();
      const audio = await input.getPrimaryAudioTrack();
      if (!opts.readableOnly) await checkNothingDropped(path, containerName(format.name), { video: video !== null, audio: audio !== null });
      if (!video && !audio) {
        throw new ProbeError('no-tracks', 'no video or audio track could be read: the file has none, or it is truncated (an MP4 cut short loses its index)');
      }
      const starts = await Promise.all([video, audio].filter((t) => t !== null).map((t) => presentedStart(t)));
      const origin = Math.min(...starts);
      const v = video ? await videoFacts(video, origin) : undefined;
      const a = audio ? await audioFacts(audio, origin) : undefined;
      const end = Math.max(v ? v.frameTimes[v.frameTimes.length - 1]! + v.lastFrameDuration : 0, a ? a.start + a.duration : 0);
      if (!(end > 0) || !Number.isFinite(end)) throw new ProbeError('corrupt', 'the media has no duration: the file is probably truncated');
      if (v && (v.width <= 0 || v.height <= 0)) throw new ProbeError('corrupt', 'the video track has no frame size');
      if (a && !(a.sampleRate > 0 && a.channels > 0)) throw new ProbeError('corrupt', 'the audio track has no sample rate or channels');
      return {
        container: containerName(format.name),
        mimeType: await input.getMimeType().catch(() => 'application/octet-stream'),
        duration: end,
        timeOrigin: origin,
        size: st.size,
        ...(v && { video: v }),
        ...(a && { audio: a }),
      };
    } catch (e) {
      if (e instanceof ProbeError) throw e;
      throw new ProbeError('corrupt', `the file could not be read to the end (${(e as Error).message}); it is probably truncated or damaged`);
    }
  } finally {
    input.dispose();
  }
}

/**
 * A track the container declares but the demuxer did not give us would be dropped without a word: refuse the file
 * instead (415 'unsupported-codec', naming the track and its codec).
 */
async function checkNothingDropped(path: string, container: string, read: { video: boolean; audio: boolean }): Promise<void> {
  const undecoded = (await declaredTracks(path, container)).filter((t) => !read[t.type]);
  const t = undecoded[0];
  if (!t) return;
  const e = new ProbeError(
    'unsupported-codec',
    `the ${t.type} track (${t.codec} in ${container}) cannot be read by shardcast, and the file would publish without it; ` +
      `convert it first, e.g. ffmpeg -i in -c:v libx264 -c:a aac out.mp4 (accepted: see the README, "Accepted files")`,
  );
  e.undecoded = undecoded;
  throw e;
}

function containerName(formatName: string): string {
  const n = formatName.toLowerCase();
  if (n.includes('webm')) return 'webm';
  if (n.includes('matroska') || n.includes('mkv')) return 'matroska';
  if (n.includes('quicktime') || n === 'mov') return 'mov';
  if (n.includes('mp4') || n.includes('isobmff')) return 'mp4';
  return n.replace(/[^a-z0-9]+/g, '-');
}
