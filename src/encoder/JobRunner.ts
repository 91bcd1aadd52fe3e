/**
 * Runs one job: fetch the job's source slice, encode the whole run in one
 * go (one ffmpeg exec, or one WebCodecs VideoEncoder), and hand back one
 * self-contained fMP4 per shard with its hash.
 */
import type { Job } from '../shared/protocol.ts';
import { AAC_PACKET_SAMPLES } from '../shared/shardMap.ts';
import { sha256Hex } from '../shared/wire.ts';
import { cutAudioRun } from './audioCutter.ts';
import { fetchUnlessBusy } from './busyRetry.ts';
import { audioJobArgs, segmentName, videoJobArgs } from './ffmpegArgs.ts';
import type { ExecResult, FfmpegCoreKind, FfmpegEngine } from './FfmpegEngine.ts';
import { encodeVideoJobWebCodecs } from './WebCodecsEngine.ts';
import { retimeSegment } from './videoShard.ts';
import type { VideoSpec } from '../shared/shardMap.ts';

export interface EncodedShard {
  index: number;
  bytes: Uint8Array;
  sha256: string;
  lead?: number;
  tail?: number;
}

export interface JobTimings {
  fetchMs: number;
  execMs: number;
  totalMs: number;
  sliceBytes: number;
  frames: number;
}

export class JobError extends Error {
  override name = 'JobError';
}

/** A job's source slice and its start on the content timeline (X-Slice-Start, s); throws JobError on an HTTP error. */
export async function fetchSlice(job: Job, base: string, signal?: AbortSignal): Promise<{ bytes: Uint8Array; sliceStart: number }> {
  // Slices built at once are bounded (503 busy): wait for a turn rather than fail the job.
  const res = await fetchUnlessBusy(new URL(job.sourceUrl, base), { ...(signal && { signal }) });
  if (!res.ok) {
    const text = await res.text().catch(() => '');
    throw new JobError(`source slice: HTTP ${res.status} ${text.slice(0, 200)}`);
  }
  const sliceStart = Number(res.headers.get('X-Slice-Start'));
  if (!Number.isFinite(sliceStart)) throw new JobError('source slice came without X-Slice-Start');
  return { bytes: new Uint8Array(await res.arrayBuffer()), sliceStart };
}

export type EngineName = 'ffmpeg-wasm' | 'webcodecs';

/** What this tab's WebCodecs can do, and how a job should use it. */
export interface WebCodecsOffer {
  /** Map codecs the tab encodes with WebCodecs (empty: none, or switched off). */
  codecs: readonly VideoSpec['codec'][];
  /** Bitrate factor for H.264 at a rendition height (config.ts). */
  h264BitrateScale: (height: number) => number;
  /** Test hook: fail WebCodecs jobs after this many frames. */
  failAfterFrames?: number;
}

/**
 * Which engine runs a job. Audio: ffmpeg.wasm (WebCodecs has no AAC encoder).
 * VP9/AV1: WebCodecs (ffmpeg.wasm cannot make them). H.264: the pool's choice
 * (job.engine) when this tab offers WebCodecs H.264, else ffmpeg.wasm.
 */
export function engineFor(job: Job, webCodecs: readonly string[]): EngineName {
  if (job.kind !== 'video' || !job.video) return 'ffmpeg-wasm';
  if (job.video.codec !== 'h264') return 'webcodecs';
  return job.engine === 'webcodecs' && webCodecs.includes('h264') ? 'webcodecs' : 'ffmpeg-wasm';
}

/** How runJob runs a job: where the slice comes from, the x264 preset and threads, and the engines' hooks. */
export interface RunJobOptions {
  base: string;
  preset: string;
  threads?: number;
  signal?: AbortSignal;
  onProgress?: (p: number) => void;
  webCodecs?: WebCodecsOffer;
  /** Test hook: kill the multi-thread core's exec after this many frames (FfmpegEngine.exec). */
  crashMultiAfterFrames?: number;
}

/**
 * Runs one job: fetches its slice, encodes it with the engine engineFor()
 * picks (WebCodecs H.264 falling back to ffmpeg.wasm; the multi-thread core
 * to the single-thread one), and returns one hashed fMP4 per job shard, in
 * order, with timings (ms). `fallback`/`coreFallback` say why a fallback ran.
 * Throws JobError when the slice or ffmpeg's output is not what the job needs,
 * and whatever the engine throws when no fallback is left.
 */
export async function runJob(
  job: Job,
  engine: FfmpegEngine,
  opts: RunJobOptions,
): Promise<{ shards: EncodedShard[]; timings: JobTimings; engine: EngineName; core?: FfmpegCoreKind; fallback?: string; coreFallback?: string }> {
  const t0 = performance.now();
  const { bytes, sliceStart } = await fetchSlice(job, opts.base, opts.signal);
  const fetchMs = performance.now() - t0;
  const jobFrames = job.shards.reduce((a, s) => a + s.frames, 0);
  let used = engineFor(job, opts.webCodecs?.codecs ?? []);
  let fallback: string | undefined;
  if (used === 'webcodecs') {
    const r = await tryWebCodecs(job, bytes, sliceStart, opts);
    if ('files' in r) {
      const shards = await hashed(job, r.files);
      return { shards, timings: { fetchMs, execMs: r.execMs, totalMs: performance.now() - t0, sliceBytes: bytes.byteLength, frames: jobFrames }, engine: used };
    }
    fallback = r.fallback;
    used = 'ffmpeg-wasm';
  }
  const ff = new FfmpegRun(engine, bytes, opts);
  let shards: EncodedShard[];
  let execMs: number;
  let core: FfmpegCoreKind;
  if (job.kind === 'video') {
    const r = await ff.exec((dir, threads) =>
      videoJobArgs(job, sliceStart, `${dir}/in.mp4`, { preset: opts.preset, ...(threads && { threads }) }, `${dir}/shard_%04d.mp4`),
    );
    ({ execMs, core } = r);
    shards = await hashed(job, await retimed(job, r.files), r.files.size);
  } else {
    const r = await ff.exec((dir) => audioJobArgs(job, sliceStart, `${dir}/in.mp4`, `${dir}/run.mp4`));
    ({ execMs, core } = r);
    shards = await audioShards(job, r.files.get('run.mp4'));
  }
  return {
    shards,
    timings: { fetchMs, execMs, totalMs: performance.now() - t0, sliceBytes: bytes.byteLength, frames: job.kind === 'video' ? jobFrames : 0 },
    engine: used,
    core,
    ...(fallback !== undefined && { fallback }),
    ...(ff.coreFallback !== undefined && { coreFallback: ff.coreFallback }),
  };
}

/** WebCodecs' files for the job, or why it failed when ffmpeg.wasm can take the job over (H.264); other failures are thrown. */
async function tryWebCodecs(
  job: Job,
  bytes: Uint8Array,
  sliceStart: number,
  opts: RunJobOptions,
): Promise<{ files: Uint8Array[]; execMs: number } | { fallback: string }> {
  try {
    return await encodeVideoJobWebCodecs(job, bytes, sliceStart, {
      ...(job.video?.codec === 'h264' && opts.webCodecs && { bitrateScale: opts.webCodecs.h264BitrateScale(job.video.height) }),
      ...(opts.webCodecs?.failAfterFrames !== undefined && { failAfterFrames: opts.webCodecs.failAfterFrames }),
      onFrame: (done, total) => opts.onProgress?.(done / total),
    });
  } catch (e) {
    // ffmpeg.wasm makes H.264 too: a broken WebCodecs costs time, not the job. Other codecs have no second engine.
    if (job.video?.codec !== 'h264') throw e;
    return { fallback: `WebCodecs failed (${(e as Error).message}); encoded with ffmpeg.wasm` };
  }
}

/**
 * One ffmpeg.wasm exec of a job's slice. The multi-thread core falls back to
 * the single-thread one on its first crash or stall: the exec is then run
 * again there (without `-threads`), rather than failed, and `coreFallback`
 * says why.
 */
class FfmpegRun {
  coreFallback: string | undefined;
  constructor(
    private readonly engine: FfmpegEngine,
    private readonly bytes: Uint8Array,
    private readonly opts: RunJobOptions,
  ) {}

  async exec(args: (dir: string, threads: number | undefined) => string[]): Promise<ExecResult> {
    const before = this.engine.kind;
    try {
      // ffmpeg.wasm transfers (detaches) what it is given: keep the slice for a second run.
      const input = before === 'multi' ? this.bytes.slice() : this.bytes;
      const crash = this.opts.crashMultiAfterFrames;
      return await this.engine.exec(
        (dir) => args(dir, this.opts.threads),
        { 'in.mp4': input },
        { ...(crash !== undefined && { crashMultiAfterFrames: crash }) },
      );
    } catch (e) {
      if (before !== 'multi' || this.engine.kind !== 'single') throw e;
      this.coreFallback = `the multi-thread core failed (${(e as Error).message.slice(0, 200)}); encoded with the single-thread core`;
      return await this.engine.exec((dir) => args(dir, undefined), { 'in.mp4': this.bytes });
    }
  }
}

/** The job's shards from one file per shard, in job order, hashed; throws JobError when one is missing or empty (`written`: files ffmpeg wrote). */
async function hashed(job: Job, files: (Uint8Array | undefined)[], written = files.length): Promise<EncodedShard[]> {
  const shards: EncodedShard[] = [];
  for (let i = 0; i < job.shards.length; i++) {
    const out = files[i];
    if (!out || out.byteLength === 0) {
      throw new JobError(`ffmpeg wrote ${written} shard files for a job of ${job.shards.length} shards (missing ${segmentName(i)})`);
    }
    shards.push({ index: job.shards[i]!.index, bytes: out, sha256: await sha256Hex(out) });
  }
  return shards;
}

/**
 * ffmpeg's segment files in job order, each re-timed by the map (videoShard.ts: the segment muxer gives a
 * shard's last frame one nominal frame, which cuts a held frame short). A missing file stays missing for
 * hashed() to report; a file that cannot be re-timed throws JobError.
 */
async function retimed(job: Job, files: Map<string, Uint8Array>): Promise<(Uint8Array | undefined)[]> {
  const out: (Uint8Array | undefined)[] = [];
  for (const [i, shard] of job.shards.entries()) {
    const f = files.get(segmentName(i));
    try {
      out.push(f?.byteLength ? await retimeSegment(f, shard) : f);
    } catch (e) {
      throw new JobError(`ffmpeg's ${segmentName(i)}: ${(e as Error).message}`);
    }
  }
  return out;
}

/** An audio job's shards, cut from its one encoded run on the packet grid (audioCutter.ts), hashed. */
async function audioShards(job: Job, run: Uint8Array | undefined): Promise<EncodedShard[]> {
  if (!run) throw new JobError('ffmpeg wrote no audio run');
  const cut = await cutAudioRun(run, {
    shards: job.shards.map((s) => ({ index: s.index, packets: (s.samples ?? 0) / AAC_PACKET_SAMPLES })),
    leadPackets: job.leadPackets ?? 0,
    tailPackets: job.tailPackets ?? 0,
  });
  const shards: EncodedShard[] = [];
  for (const c of cut) shards.push({ index: c.index, bytes: c.bytes, sha256: await sha256Hex(c.bytes), lead: c.lead, tail: c.tail });
  return shards;
}
