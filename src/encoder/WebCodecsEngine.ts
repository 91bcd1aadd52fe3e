/**
 * The browser's own encoder (WebCodecs): the fast path for H.264, and the only
 * path for what ffmpeg.wasm cannot make.
 *
 * ffmpeg.wasm 0.12's libvpx-vp9 crashes with "memory access out of bounds" on
 * its first frame whatever the options (measured here; upstream
 * ffmpegwasm/ffmpeg.wasm#679), while Chromium's VideoEncoder encodes VP9 in
 * software everywhere. For H.264, Chromium's VideoEncoder (OpenH264, software)
 * runs several times faster than ffmpeg.wasm's single-thread libx264 but
 * compresses worse, so it gets more bits (`h264BitrateScale`, see config.ts).
 * A job here: demux and decode the source slice (mediabunny), hand each
 * decoded frame (turned by the job's rotation, frameRotation.ts) to ONE VideoEncoder for the run (Chromium's encoder
 * scales it to the configured size in YUV), forcing a key frame at every
 * shard boundary, and mux each
 * shard's packets into its own self-contained fMP4 whose time starts at 0,
 * exactly like the ffmpeg.wasm path writes them.
 */
import { ALL_FORMATS, BufferSource, EncodedPacket, Input, VideoSampleSink } from 'mediabunny';
import type { Job } from '../shared/protocol.ts';
import type { VideoSpec } from '../shared/shardMap.ts';
import { rotateFrame } from './frameRotation.ts';
import { muxVideoShard } from './videoShard.ts';

const MEDIABUNNY_CODEC = { vp9: 'vp9', av1: 'av1', h264: 'avc' } as const;

/**
 * H.264 level for a frame size at up to 30 fps (ITU-T H.264 table A-1, by
 * macroblocks per frame): 3.1 up to 1280x720, 4.0 up to 2048x1024, else 5.1.
 */
export function h264Level(width: number, height: number): number {
  const mbs = Math.ceil(width / 16) * Math.ceil(height / 16);
  return mbs <= 3600 ? 0x1f : mbs <= 8192 ? 0x28 : 0x33;
}

/**
 * WebCodecs codec string for a rendition. H.264: High profile (as the
 * ffmpeg.wasm path writes) at the level the size needs; VP9 profile 0, level
 * 4.0 (up to 2048x1088), 8 bit; AV1 main, level 4.0, 8 bit.
 */
export function webCodecsCodecString(spec: Pick<VideoSpec, 'codec' | 'width' | 'height'>): string {
  switch (spec.codec) {
    case 'h264':
      return `avc1.6400${h264Level(spec.width, spec.height).toString(16).padStart(2, '0')}`;
    case 'vp9':
      return 'vp09.00.40.08';
    case 'av1':
      return 'av01.0.08M.08';
  }
}

export class WebCodecsError extends Error {
  override name = 'WebCodecsError';
}

/** Sizes the capability probe asks for: the default ladder's rungs (360p and 720p). */
const PROBE_SIZES = [
  [640, 360],
  [1280, 720],
] as const;

/** Which map codecs this browser can encode with WebCodecs at the default ladder's sizes (a capability probe). */
export async function webCodecsCodecs(): Promise<VideoSpec['codec'][]> {
  if (typeof VideoEncoder === 'undefined') return [];
  const out: VideoSpec['codec'][] = [];
  for (const codec of ['h264', 'vp9', 'av1'] as const) {
    let ok = true;
    for (const [width, height] of PROBE_SIZES) {
      try {
        const s = await VideoEncoder.isConfigSupported(encoderConfig({ codec, width, height, bitrate: 1_000_000 }, 1));
        ok &&= s.supported === true;
      } catch {
        ok = false;
      }
    }
    if (ok) out.push(codec);
  }
  return out;
}

/**
 * The engine's build, for the `engine` field of shard-ready: the browser and
 * its full version and platform. The encoder lives in the browser binary, so
 * two tabs of the same build on the same platform make the same bytes from
 * the same input, and hashes are only compared between equal builds.
 */
export async function webCodecsBuild(): Promise<string> {
  const uaData = (navigator as Navigator & { userAgentData?: { getHighEntropyValues(h: string[]): Promise<Record<string, unknown>> } }).userAgentData;
  try {
    const v = await uaData?.getHighEntropyValues(['fullVersionList', 'platform', 'architecture']);
    const brands = (v?.fullVersionList as { brand: string; version: string }[] | undefined) ?? [];
    const b = brands.find((x) => /chrom/i.test(x.brand) && !/not/i.test(x.brand)) ?? brands.find((x) => !/not/i.test(x.brand));
    if (b) return `${b.brand.replace(/\s+/g, '')}/${b.version}-${String(v?.platform ?? '').toLowerCase()}-${String(v?.architecture ?? '')}`.slice(0, 48);
  } catch {
    /* fall back to the user agent */
  }
  const m = /(Chrom\w*|Firefox|Safari)\/([\d.]+)/.exec(navigator.userAgent);
  return (m ? `${m[1]}/${m[2]}` : 'unknown').slice(0, 48);
}

/**
 * The VideoEncoder configuration for a rendition. `bitrateScale` multiplies
 * the rendition's bitrate (see config.ts: OpenH264 needs more bits for the same
 * PSNR). Chromium here refuses `bitrateMode: 'quantizer'` for H.264 (measured:
 * isConfigSupported false for avc1.42/4d/64 at 360p and 720p), so rate control
 * is by bitrate.
 */
function encoderConfig(spec: VideoSpec, bitrateScale: number): VideoEncoderConfig {
  return {
    codec: webCodecsCodecString(spec),
    width: spec.width,
    height: spec.height,
    bitrate: Math.round(spec.bitrate * bitrateScale),
    bitrateMode: 'variable',
    // No look-ahead: one chunk per frame, in order, so every packet belongs to the frame given.
    latencyMode: 'realtime',
    // Length-prefixed NAL units with the parameter sets in the decoder config (avcC), as MP4 wants.
    ...(spec.codec === 'h264' && { avc: { format: 'avc' as const } }),
  };
}

/** Options of one WebCodecs job. */
export interface WebCodecsJobOptions {
  /** Multiplies the rendition's bitrate (per codec; config.ts). */
  bitrateScale?: number;
  /**
   * Test hook: throw after this many frames, as a broken encoder would
   * (the encode page's `failEngine`/`failAfterFrames` parameters).
   */
  failAfterFrames?: number;
  onFrame?: (done: number, total: number) => void;
}

export interface WebCodecsResult {
  files: Uint8Array[];
  execMs: number;
}

/**
 * Encodes a video job from its source slice (whose time 0 is `sliceStart` on
 * the content timeline, seconds). Returns one fMP4 per job shard, in order,
 * and the wall time it took (ms). Throws WebCodecsError when the browser
 * cannot encode the rendition, the slice is short of frames, or the encoder
 * misbehaves; a VideoEncoder error is rethrown as it is.
 */
export async function encodeVideoJobWebCodecs(job: Job, slice: Uint8Array, sliceStart: number, opts: WebCodecsJobOptions = {}): Promise<WebCodecsResult> {
  const spec = job.video;
  if (!spec) throw new WebCodecsError('a video job without a video spec');
  if (typeof VideoEncoder === 'undefined') throw new WebCodecsError('this browser has no WebCodecs VideoEncoder');
  const config = encoderConfig(spec, opts.bitrateScale ?? 1);
  const support = await VideoEncoder.isConfigSupported(config);
  if (!support.supported) throw new WebCodecsError(`this browser cannot encode ${config.codec} at ${spec.width}x${spec.height}`);
  const t0 = performance.now();
  const { chunks, decoderConfig } = await encodeRun(job, slice, sliceStart, config, opts);
  const files: Uint8Array[] = [];
  for (let i = 0; i < job.shards.length; i++) {
    // Each frame at its source time; muxVideoShard rebases the shard to 0 and takes the last duration from the map.
    const packets = chunks.filter((c) => c.shard === i).map((c) => EncodedPacket.fromEncodedChunk(c.chunk).clone({ timestamp: c.sourceTs }));
    files.push(await muxVideoShard(job.shards[i]!, MEDIABUNNY_CODEC[spec.codec], decoderConfig, packets));
  }
  return { files, execMs: performance.now() - t0 };
}

/** One encoded frame: its chunk, the job shard it belongs to, and its source timestamp (s, slice time). */
interface RunChunk {
  chunk: EncodedVideoChunk;
  shard: number;
  sourceTs: number;
}

/** The job shard each of the job's frames belongs to, by frame index within the job. */
function shardOfFrames(job: Job): number[] {
  const out: number[] = [];
  job.shards.forEach((s, i) => {
    for (let k = 0; k < s.frames; k++) out.push(i);
  });
  return out;
}

/**
 * Decodes the slice from the job's start and feeds ONE VideoEncoder for the
 * whole run, forcing a key frame where each shard starts. Returns every
 * chunk, in order, tagged with its shard, and the decoder configuration.
 */
async function encodeRun(
  job: Job,
  slice: Uint8Array,
  sliceStart: number,
  config: VideoEncoderConfig,
  opts: WebCodecsJobOptions,
): Promise<{ chunks: RunChunk[]; decoderConfig: VideoDecoderConfig }> {
  const total = job.shards.reduce((a, s) => a + s.frames, 0);
  const shardOfFrame = shardOfFrames(job);
  const chunks: RunChunk[] = [];
  let decoderConfig: VideoDecoderConfig | undefined;
  let failure: Error | undefined;
  const pending: { shard: number; sourceTs: number }[] = [];
  const encoder = new VideoEncoder({
    output: (chunk, meta) => {
      if (meta?.decoderConfig) decoderConfig ??= meta.decoderConfig;
      const p = pending.shift();
      if (p) chunks.push({ chunk, ...p });
    },
    error: (e) => (failure = e),
  });
  encoder.configure(config);

  const input = new Input({ source: new BufferSource(slice), formats: ALL_FORMATS });
  try {
    const track = await input.getPrimaryVideoTrack();
    if (!track) throw new WebCodecsError('the source slice has no video track');
    const first = job.shards[0]!;
    const halfFrame = first.duration / first.frames / 2;
    const from = Math.max(0, job.start - sliceStart - halfFrame);
    let n = 0;
    for await (const sample of new VideoSampleSink(track).samples(0)) {
      try {
        if (sample.timestamp < from) continue;
        if (n >= total) break;
        if (opts.failAfterFrames !== undefined && n >= opts.failAfterFrames) {
          throw new WebCodecsError(`test hook: the encoder fails after ${opts.failAfterFrames} frames (failEngine)`);
        }
        const shard = shardOfFrame[n]!;
        // The decoded frame goes to the encoder as it is (turned by the job's rotation, in YUV):
        // Chromium scales it to the configured size in YUV. Drawing it on a canvas first went through RGB
        // with another colour matrix than the source's (measured: red bar luma 81 -> 94, PSNR 26 dB
        // against the source for an otherwise exact copy).
        const decoded = sample.toVideoFrame();
        const frame = job.rotation ? await rotateFrame(decoded, job.rotation).finally(() => decoded.close()) : decoded;
        pending.push({ shard, sourceTs: sample.timestamp });
        encoder.encode(frame, { keyFrame: n === 0 || shardOfFrame[n - 1] !== shard });
        frame.close();
        n++;
        opts.onFrame?.(n, total);
        // Keep the encoder's queue short, so memory stays flat on long jobs.
        while (encoder.encodeQueueSize > 4) await new Promise((r) => setTimeout(r, 1));
        if (failure) throw failure;
      } finally {
        sample.close();
      }
    }
    if (n < total) throw new WebCodecsError(`the source slice gave ${n} frames for a job of ${total}`);
    await encoder.flush();
    if (failure) throw failure;
  } finally {
    if (encoder.state !== 'closed') encoder.close();
    input.dispose();
  }
  if (!decoderConfig) throw new WebCodecsError('the encoder gave no decoder configuration');
  if (chunks.length !== total) throw new WebCodecsError(`the encoder gave ${chunks.length} packets for ${total} frames`);
  return { chunks, decoderConfig };
}

/**
 * The join benchmark for WebCodecs: `seconds` of 320x180 at 30 fps drawn on a
 * canvas (a moving pattern, so the encoder has work) and encoded, the same
 * size and length as ffmpeg.wasm's benchmark so the two speeds compare.
 * Drawing each frame stands in for a job's decode and scale. Throws when the
 * encoder fails, which takes the engine out of the tab's offer.
 */
export async function benchmarkWebCodecs(codec: VideoSpec['codec'], seconds = 2): Promise<{ speed: number; fps: number }> {
  const spec: VideoSpec = { codec, width: 320, height: 180, bitrate: 300_000 };
  const frames = seconds * 30;
  let failure: Error | undefined;
  let out = 0;
  const encoder = new VideoEncoder({ output: () => void out++, error: (e) => (failure = e) });
  encoder.configure(encoderConfig(spec, 1));
  const canvas = new OffscreenCanvas(spec.width, spec.height);
  const ctx = canvas.getContext('2d', { alpha: false });
  if (!ctx) throw new WebCodecsError('no 2D canvas');
  const t0 = performance.now();
  try {
    for (let n = 0; n < frames; n++) {
      const g = ctx.createLinearGradient(n * 4, 0, spec.width + n * 4, spec.height);
      g.addColorStop(0, `hsl(${n * 6}, 80%, 50%)`);
      g.addColorStop(1, `hsl(${n * 6 + 180}, 80%, 30%)`);
      ctx.fillStyle = g;
      ctx.fillRect(0, 0, spec.width, spec.height);
      ctx.fillStyle = '#fff';
      ctx.font = '40px sans-serif';
      ctx.fillText(String(n), 20 + ((n * 5) % 200), 100);
      const frame = new VideoFrame(canvas, { timestamp: Math.round((n * 1e6) / 30), duration: Math.round(1e6 / 30) });
      encoder.encode(frame, { keyFrame: n % 9 === 0 });
      frame.close();
      while (encoder.encodeQueueSize > 4) await new Promise((r) => setTimeout(r, 1));
      if (failure) throw failure;
    }
    await encoder.flush();
    if (failure) throw failure;
  } finally {
    if (encoder.state !== 'closed') encoder.close();
  }
  if (out !== frames) throw new WebCodecsError(`the benchmark encoder gave ${out} packets for ${frames} frames`);
  const s = (performance.now() - t0) / 1000;
  return { speed: seconds / s, fps: frames / s };
}
