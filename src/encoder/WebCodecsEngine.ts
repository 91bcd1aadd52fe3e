/**
 * The browser's own encoder (WebCodecs), for what ffmpeg.wasm cannot make.
 *
 * ffmpeg.wasm 0.12's libvpx-vp9 crashes with "memory access out of bounds" on
 * its first frame whatever the options (measured here; upstream
 * ffmpegwasm/ffmpeg.wasm#679), while Chromium's VideoEncoder encodes VP9 in
 * software everywhere. A job here: demux and decode the source slice
 * (mediabunny), scale each frame on a canvas, encode the run with ONE
 * VideoEncoder, forcing a key frame at every shard boundary, and mux each
 * shard's packets into its own self-contained fMP4 whose time starts at 0,
 * exactly like the ffmpeg.wasm path writes them.
 */
import { ALL_FORMATS, BufferSource, BufferTarget, EncodedPacket, EncodedVideoPacketSource, Input, Mp4OutputFormat, Output, VideoSampleSink } from 'mediabunny';
import type { Job } from '../shared/protocol.ts';
import type { VideoSpec } from '../shared/shardMap.ts';

/** WebCodecs codec strings per map codec. VP9 profile 0, level 4.0 (up to 2048x1088), 8 bit. */
const CODEC_STRING: Partial<Record<VideoSpec['codec'], string>> = { vp9: 'vp09.00.40.08', av1: 'av01.0.08M.08' };
const MEDIABUNNY_CODEC = { vp9: 'vp9', av1: 'av1', h264: 'avc' } as const;

export class WebCodecsError extends Error {
  override name = 'WebCodecsError';
}

/** Which map codecs this browser can encode with WebCodecs, at a small size (a capability probe). */
export async function webCodecsCodecs(): Promise<VideoSpec['codec'][]> {
  if (typeof VideoEncoder === 'undefined') return [];
  const out: VideoSpec['codec'][] = [];
  for (const [codec, codecString] of Object.entries(CODEC_STRING) as [VideoSpec['codec'], string][]) {
    try {
      const s = await VideoEncoder.isConfigSupported({ codec: codecString, width: 320, height: 180, bitrate: 300_000 });
      if (s.supported) out.push(codec);
    } catch {
      /* not this one */
    }
  }
  return out;
}

export interface WebCodecsResult {
  files: Uint8Array[];
  execMs: number;
}

/**
 * Encodes a video job from its source slice (whose time 0 is `sliceStart` on
 * the content timeline). Returns one fMP4 per job shard, in order.
 */
export async function encodeVideoJobWebCodecs(
  job: Job,
  slice: Uint8Array,
  sliceStart: number,
  onFrame?: (done: number, total: number) => void,
): Promise<WebCodecsResult> {
  const spec = job.video;
  if (!spec) throw new WebCodecsError('a video job without a video spec');
  const codecString = CODEC_STRING[spec.codec];
  if (!codecString) throw new WebCodecsError(`WebCodecs is not used for ${spec.codec}`);
  const t0 = performance.now();
  const total = job.shards.reduce((a, s) => a + s.frames, 0);
  // Frame index (within the job) where each shard starts: those frames are forced key frames.
  const shardOfFrame: number[] = [];
  job.shards.forEach((s, i) => {
    for (let k = 0; k < s.frames; k++) shardOfFrame.push(i);
  });

  const chunks: { chunk: EncodedVideoChunk; shard: number; sourceTs: number }[] = [];
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
  encoder.configure({
    codec: codecString,
    width: spec.width,
    height: spec.height,
    bitrate: spec.bitrate,
    bitrateMode: 'variable',
    // No look-ahead: one chunk per frame, in order, so every packet belongs to the frame given.
    latencyMode: 'realtime',
  });

  const input = new Input({ source: new BufferSource(slice), formats: ALL_FORMATS });
  const canvas = new OffscreenCanvas(spec.width, spec.height);
  const ctx = canvas.getContext('2d', { alpha: false });
  if (!ctx) throw new WebCodecsError('no 2D canvas to scale frames on');
  ctx.imageSmoothingQuality = 'high';
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
        const shard = shardOfFrame[n]!;
        sample.draw(ctx, 0, 0, spec.width, spec.height);
        const frame = new VideoFrame(canvas, { timestamp: Math.round(sample.timestamp * 1e6), duration: Math.round(sample.duration * 1e6) });
        pending.push({ shard, sourceTs: sample.timestamp });
        encoder.encode(frame, { keyFrame: n === 0 || shardOfFrame[n - 1] !== shard });
        frame.close();
        n++;
        onFrame?.(n, total);
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

  const files: Uint8Array[] = [];
  for (let i = 0; i < job.shards.length; i++) {
    const mine = chunks.filter((c) => c.shard === i);
    if (mine[0]?.chunk.type !== 'key') throw new WebCodecsError(`shard ${job.shards[i]!.index} does not start with a key frame`);
    const target = new BufferTarget();
    const output = new Output({ format: new Mp4OutputFormat({ fastStart: 'fragmented', minimumFragmentDuration: 1000 }), target });
    const source = new EncodedVideoPacketSource(MEDIABUNNY_CODEC[spec.codec]);
    output.addVideoTrack(source);
    await output.start();
    const base = mine[0].sourceTs;
    for (let k = 0; k < mine.length; k++) {
      const c = mine[k]!;
      // Durations from the frames' own spacing, the last one up to the shard's end: the slice's last
      // sample may carry a longer duration than the map's frame (the cache refuses such a shard).
      const next = mine[k + 1];
      const duration = next ? next.sourceTs - c.sourceTs : Math.max(1e-4, job.shards[i]!.duration - (c.sourceTs - base));
      const p = EncodedPacket.fromEncodedChunk(c.chunk).clone({ timestamp: c.sourceTs - base, duration });
      await source.add(p, k === 0 ? { decoderConfig } : undefined);
    }
    await output.finalize();
    files.push(new Uint8Array(target.buffer!));
  }
  return { files, execMs: performance.now() - t0 };
}
