/**
 * Runs one job: fetch the job's source slice, encode the whole run in one
 * ffmpeg exec, and hand back one self-contained fMP4 per shard with its hash.
 */
import type { Job } from '../shared/protocol.ts';
import { AAC_PACKET_SAMPLES } from '../shared/shardMap.ts';
import { sha256Hex } from '../shared/wire.ts';
import { cutAudioRun } from './audioCutter.ts';
import { audioJobArgs, segmentName, videoJobArgs } from './ffmpegArgs.ts';
import type { FfmpegEngine } from './FfmpegEngine.ts';
import { encodeVideoJobWebCodecs } from './WebCodecsEngine.ts';

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

async function fetchSlice(job: Job, base: string, signal?: AbortSignal): Promise<{ bytes: Uint8Array; sliceStart: number }> {
  const res = await fetch(new URL(job.sourceUrl, base), { ...(signal && { signal }) });
  if (!res.ok) {
    const text = await res.text().catch(() => '');
    throw new JobError(`source slice: HTTP ${res.status} ${text.slice(0, 200)}`);
  }
  const sliceStart = Number(res.headers.get('X-Slice-Start'));
  if (!Number.isFinite(sliceStart)) throw new JobError('source slice came without X-Slice-Start');
  return { bytes: new Uint8Array(await res.arrayBuffer()), sliceStart };
}

/** Which engine a job goes to: ffmpeg.wasm for H.264 and audio, WebCodecs for what ffmpeg.wasm cannot make (VP9). */
export function engineFor(job: Job): 'ffmpeg-wasm' | 'webcodecs' {
  return job.kind === 'video' && job.video && job.video.codec !== 'h264' ? 'webcodecs' : 'ffmpeg-wasm';
}

export async function runJob(
  job: Job,
  engine: FfmpegEngine,
  opts: { base: string; preset: string; threads?: number; signal?: AbortSignal; onProgress?: (p: number) => void },
): Promise<{ shards: EncodedShard[]; timings: JobTimings }> {
  const t0 = performance.now();
  const { bytes, sliceStart } = await fetchSlice(job, opts.base, opts.signal);
  const fetchMs = performance.now() - t0;
  const shards: EncodedShard[] = [];
  let execMs: number;
  let frames = 0;
  if (engineFor(job) === 'webcodecs') {
    const r = await encodeVideoJobWebCodecs(job, bytes, sliceStart, (done, total) => opts.onProgress?.(done / total));
    execMs = r.execMs;
    for (let i = 0; i < job.shards.length; i++) {
      const out = r.files[i]!;
      shards.push({ index: job.shards[i]!.index, bytes: out, sha256: await sha256Hex(out) });
    }
    frames = job.shards.reduce((a, s) => a + s.frames, 0);
  } else if (job.kind === 'video') {
    const r = await engine.exec(
      (dir) =>
        videoJobArgs(job, sliceStart, `${dir}/in.mp4`, { preset: opts.preset, ...(opts.threads && { threads: opts.threads }) }, `${dir}/shard_%04d.mp4`),
      { 'in.mp4': bytes },
    );
    execMs = r.execMs;
    for (let i = 0; i < job.shards.length; i++) {
      const out = r.files.get(segmentName(i));
      if (!out || out.byteLength === 0) {
        throw new JobError(`ffmpeg wrote ${r.files.size} shard files for a job of ${job.shards.length} shards (missing ${segmentName(i)})`);
      }
      shards.push({ index: job.shards[i]!.index, bytes: out, sha256: await sha256Hex(out) });
    }
    frames = job.shards.reduce((a, s) => a + s.frames, 0);
  } else {
    const r = await engine.exec((dir) => audioJobArgs(job, sliceStart, `${dir}/in.mp4`, `${dir}/run.mp4`), { 'in.mp4': bytes });
    execMs = r.execMs;
    const run = r.files.get('run.mp4');
    if (!run) throw new JobError('ffmpeg wrote no audio run');
    const cut = await cutAudioRun(run, {
      shards: job.shards.map((s) => ({ index: s.index, packets: (s.samples ?? 0) / AAC_PACKET_SAMPLES })),
      leadPackets: job.leadPackets ?? 0,
      tailPackets: job.tailPackets ?? 0,
    });
    for (const c of cut) shards.push({ index: c.index, bytes: c.bytes, sha256: await sha256Hex(c.bytes), lead: c.lead, tail: c.tail });
  }
  return { shards, timings: { fetchMs, execMs, totalMs: performance.now() - t0, sliceBytes: bytes.byteLength, frames } };
}
