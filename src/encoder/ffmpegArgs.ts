/**
 * ffmpeg command lines for encoder jobs. Pure functions, so the exact flags
 * are unit-tested and the same lines serve ffmpeg.wasm and the native
 * referee in benchmarks.
 *
 * One exec encodes a whole job (DESIGN.md, "Jobs"): a fixed cost of ~46 ms per
 * exec makes one exec per 0.3 s shard 2.3x slower.
 */
import type { Job } from '../shared/protocol.ts';
import { AAC_PACKET_SAMPLES } from '../shared/shardMap.ts';

export interface VideoEncodeSettings {
  /** libx264 preset. */
  preset: string;
  /** Threads for the encoder; the multi-thread core needs an explicit 2 (DESIGN.md). */
  threads?: number;
}

/**
 * Shard boundaries as frame numbers within the job (the first frame of every
 * shard but the first). Cutting by frame number, not by time, is immune to
 * timestamp rounding: ffmpeg.wasm placed time-based cuts a frame off here.
 */
export function shardBoundaryFrames(job: Pick<Job, 'shards'>): number[] {
  const out: number[] = [];
  let n = 0;
  for (const s of job.shards.slice(0, -1)) out.push((n += s.frames));
  return out;
}

/**
 * The ffmpeg filter that turns a frame by `rotation` degrees clockwise (the
 * job's display rotation), or '' for none. transpose and flips only move
 * pixels (chroma planes too), so the WebCodecs path's plane rotation
 * (frameRotation.ts) gives the very same picture. Checked against native
 * ffmpeg's autorotation of a file with the matching display matrix.
 */
export function rotationFilter(rotation: Job['rotation']): string {
  switch (rotation) {
    case 90:
      return 'transpose=clock,';
    case 180:
      return 'hflip,vflip,';
    case 270:
      return 'transpose=cclock,';
    default:
      return '';
  }
}

const fmt = (t: number) => t.toFixed(6).replace(/\.?0+$/, '') || '0';

export const SEGMENT_PATTERN = 'shard_%04d.mp4';
export const segmentName = (i: number) => `shard_${String(i).padStart(4, '0')}.mp4`;

/**
 * Encodes a job's source slice into one self-contained fragmented MP4 per
 * shard: a key frame forced at every shard boundary, the segment muxer cutting
 * there, no B-frames (without an edit list B-frames put every shard 2 frames
 * late in MSE), source timestamps kept (variable frame rate survives), the
 * pixels turned by the job's rotation before scaling to the (rotated) size.
 */
export function videoJobArgs(job: Job, sliceStart: number, input: string, settings: VideoEncodeSettings, outPattern = SEGMENT_PATTERN): string[] {
  const v = job.video;
  if (!v) throw new Error(`job ${job.id} has no video parameters`);
  const frames = job.shards.reduce((a, s) => a + s.frames, 0);
  const cuts = shardBoundaryFrames(job);
  // The slice starts at a key frame before the job: decode from there and drop the frames before the job
  // with a trim filter. No input seek (-ss): ffmpeg.wasm's seek into a B-frame source garbled frames here,
  // while the same command was clean in native ffmpeg. Trim half a frame early, so float rounding never
  // drops the job's first frame (which would shift every shard boundary by one frame).
  const halfFrame = job.shards[0]!.duration / job.shards[0]!.frames / 2;
  const offset = Math.max(0, job.start - sliceStart - halfFrame);
  const trim = offset > 0 ? `trim=start=${fmt(offset)},setpts=PTS-STARTPTS,` : '';
  const codecArgs =
    v.codec === 'h264'
      ? ['-c:v', 'libx264', '-preset', settings.preset, '-profile:v', 'high', '-bf', '0', '-sc_threshold', '0', '-g', '600']
      : v.codec === 'vp9'
        ? ['-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8', '-row-mt', '1', '-lag-in-frames', '0', '-g', '600']
        : ['-c:v', 'libaom-av1', '-cpu-used', '8', '-usage', 'realtime', '-g', '600'];
  const rate = String(v.bitrate);
  return [
    '-nostdin',
    '-y',
    // The job's rotation is the one authority: never also apply a display matrix the slice might carry.
    '-noautorotate',
    '-i',
    input,
    '-map',
    '0:v:0',
    '-an',
    '-sn',
    '-dn',
    '-frames:v',
    String(frames),
    '-fps_mode',
    'passthrough',
    '-vf',
    `${trim}${rotationFilter(job.rotation)}scale=${v.width}:${v.height}:flags=bicubic,setsar=1`,
    '-pix_fmt',
    'yuv420p',
    ...codecArgs,
    ...(settings.threads ? ['-threads', String(settings.threads)] : []),
    '-b:v',
    rate,
    '-maxrate',
    String(Math.round(v.bitrate * 1.5)),
    '-bufsize',
    String(Math.round(v.bitrate * 2)),
    ...(cuts.length ? ['-force_key_frames', `expr:${cuts.map((n) => `eq(n,${n})`).join('+')}`] : []),
    '-f',
    'segment',
    ...(cuts.length ? ['-segment_frames', cuts.join(',')] : ['-segment_time', '100000']),
    '-segment_format',
    'mp4',
    '-segment_format_options',
    'movflags=frag_keyframe+empty_moov+default_base_moof',
    '-reset_timestamps',
    '1',
    outPattern,
  ];
}

/**
 * ffmpeg's AAC encoder quality (-q:a, 0.1 to 2) for a target bitrate: about
 * 64 kb/s per channel at q 1 on music, scaled linearly and clamped.
 */
export function aacQuality(bitrate: number, channels: number): string {
  const q = bitrate / (64_000 * channels);
  return Math.min(2, Math.max(0.3, q)).toFixed(2);
}

/**
 * Encodes the audio of a whole job (a long run) in one go; it is cut into
 * shards on the AAC packet grid afterwards, so no shard carries its own
 * priming samples.
 */
export function audioJobArgs(job: Job, sliceStart: number, input: string, output: string): string[] {
  const a = job.audio;
  if (!a) throw new Error(`job ${job.id} has no audio parameters`);
  const lead = (job.leadPackets ?? 0) * AAC_PACKET_SAMPLES;
  const tail = (job.tailPackets ?? 0) * AAC_PACKET_SAMPLES;
  const offset = Math.max(0, job.start - lead / a.sampleRate - sliceStart);
  const samples = lead + job.shards.reduce((n, s) => n + (s.samples ?? 0), 0) + tail;
  // As for video, a trim filter rather than an input seek (sample-exact, no demuxer seek).
  const trim = offset > 0 ? `atrim=start=${fmt(offset)},asetpts=PTS-STARTPTS,` : '';
  return [
    '-nostdin',
    '-y',
    '-i',
    input,
    '-map',
    '0:a:0',
    '-vn',
    '-sn',
    '-dn',
    // Exactly the run's samples at the output rate (padded with silence if the
    // source is short), so the packet grid matches the map. Resample first:
    // -ar alone would resample after the trim, counting input samples.
    '-af',
    `${trim}aresample=${a.sampleRate},apad=whole_len=${samples},atrim=end_sample=${samples}`,
    '-c:a',
    a.codec === 'aac' ? 'aac' : 'libopus',
    // AAC in constant quality, not constant bitrate: the bitrate controller carries state from frame
    // to frame, so two separate encodes of the same audio quantise differently and the cut where two
    // runs meet steps the waveform (a 2-3% click, measured); in VBR both runs converge to the same
    // bytes within 2 packets of the overlap. The rendition's bitrate picks the quality.
    ...(a.codec === 'aac' ? ['-q:a', aacQuality(a.bitrate, a.channels)] : ['-b:a', String(a.bitrate)]),
    '-ar',
    String(a.sampleRate),
    '-ac',
    String(a.channels),
    '-f',
    'mp4',
    '-movflags',
    'frag_keyframe+empty_moov+default_base_moof',
    output,
  ];
}
