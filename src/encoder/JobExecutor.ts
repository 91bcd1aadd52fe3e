/**
 * Job execution in the encoder tab: owns the queue of jobs the pool gave,
 * the set of cancelled ones, the job running now and the job counters. Runs
 * one job at a time (runJob: slice, encode, per-shard fMP4), keeps the
 * shards, uploads them for the server's check, and reports them ready, done
 * or failed. The Encoder copies `stats` into its page state on `changed`.
 */
import { TypedEmitter } from '../shared/events.ts';
import type { ClientMessage, Job } from '../shared/protocol.ts';
import type { EncoderConfig } from './config.ts';
import type { EngineOffer } from './EngineOffer.ts';
import { WatchdogError, type FfmpegCoreKind, type FfmpegEngine } from './FfmpegEngine.ts';
import { runJob, type EncodedShard, type EngineName } from './JobRunner.ts';
import { reportIfGone, type ShardStore } from './ShardStore.ts';
import { uploadShard } from './upload.ts';

export interface CurrentJob {
  id: string;
  label: string;
  shards: number;
  progress: number;
  fps: number;
  startedAt: number;
}

/** What the executor has done so far (the page shows it). */
export interface JobStats {
  current: CurrentJob | undefined;
  jobsDone: number;
  jobsFailed: number;
  /** H.264 jobs WebCodecs failed and ffmpeg.wasm finished. */
  fallbacks: number;
  /** Jobs the multi-thread ffmpeg core failed and the single-thread core finished. */
  coreFallbacks: number;
  shardsEncoded: number;
  framesEncoded: number;
  /** Time spent fetching source slices and encoding them (decode, encode and mux), over all jobs, ms. */
  fetchMs: number;
  encodeMs: number;
  lastError: string | undefined;
}

export interface JobExecutorEvents {
  /** Something the page shows changed. */
  changed: Record<string, never>;
  /** Running jobs (true) or out of work (false). */
  busy: { busy: boolean };
  log: { line: string };
  'job-finished': { jobId: string; ok: boolean; ms: number; shards: number };
  /** The engine offer changed (WebCodecs H.264 dropped, or the ffmpeg.wasm build after a core fallback): the pool needs the new capabilities. */
  'offer-changed': Record<string, never>;
}

/** How often at most a job's progress goes to the pool (ms). */
const PROGRESS_EVERY_MS = 500;

export class JobExecutor extends TypedEmitter<JobExecutorEvents> {
  readonly stats: JobStats = {
    current: undefined,
    jobsDone: 0,
    jobsFailed: 0,
    fallbacks: 0,
    coreFallbacks: 0,
    shardsEncoded: 0,
    framesEncoded: 0,
    fetchMs: 0,
    encodeMs: 0,
    lastError: undefined,
  };
  private readonly queue: Job[] = [];
  private readonly cancelled = new Set<string>();
  private running = false;
  private lastProgressSent = 0;

  constructor(
    private readonly engine: FfmpegEngine,
    private readonly offer: EngineOffer,
    private readonly store: ShardStore,
    private readonly send: (msg: ClientMessage) => boolean,
    private readonly config: EncoderConfig,
    private readonly base: string,
  ) {
    super();
    engine.onProgress = (p) => this.progress(p);
    engine.onLog = (line) => {
      const m = /fps=\s*([\d.]+)/.exec(line);
      if (m && this.stats.current) this.stats.current.fps = Number(m[1]);
    };
  }

  /** Whether a job is running (heartbeats report it). */
  get busy(): boolean {
    return this.running;
  }

  /** Queues a job from the pool and starts it when the tab is free. */
  add(job: Job): void {
    this.queue.push(job);
    void this.pump();
  }

  /** The pool took the job back: drop it if queued, and do not report it if running. */
  cancel(jobId: string): void {
    this.cancelled.add(jobId);
    const i = this.queue.findIndex((j) => j.id === jobId);
    if (i >= 0) this.queue.splice(i, 1);
  }

  /** The connection dropped: the pool re-queues our jobs, so none of them may be finished from here. */
  cancelAll(): void {
    for (const j of this.queue.splice(0)) this.cancelled.add(j.id);
    if (this.stats.current) this.cancelled.add(this.stats.current.id);
  }

  private progress(p: number): void {
    const cur = this.stats.current;
    if (!cur) return;
    cur.progress = p;
    const now = performance.now();
    if (now - this.lastProgressSent > PROGRESS_EVERY_MS) {
      this.lastProgressSent = now;
      this.send({ type: 'job-progress', jobId: cur.id, progress: Math.min(1, Math.max(0, p)), fps: cur.fps });
      this.emit('changed', {});
    }
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (let job = this.queue.shift(); job; job = this.queue.shift()) {
        if (!this.cancelled.has(job.id)) await this.run(job);
      }
    } finally {
      this.running = false;
      this.emit('busy', { busy: false });
      this.emit('changed', {});
    }
  }

  private async run(job: Job): Promise<void> {
    const t0 = performance.now();
    const first = job.shards[0]!.index;
    const last = job.shards[job.shards.length - 1]!.index;
    this.stats.current = {
      id: job.id,
      label: `${job.contentId} ${job.rendition} shards ${first}-${last} (${job.start.toFixed(2)}-${job.end.toFixed(2)} s)`,
      shards: job.shards.length,
      progress: 0,
      fps: 0,
      startedAt: Date.now(),
    };
    this.emit('busy', { busy: true });
    this.emit('changed', {});
    try {
      const totalFrames = job.shards.reduce((a, s) => a + s.frames, 0);
      const { shards, timings, engine, core, fallback, coreFallback } = await runJob(job, this.engine, {
        base: this.base,
        preset: this.config.preset,
        ...(this.engine.threads && { threads: this.engine.threads }),
        webCodecs: this.offer.jobOffer(),
        ...(this.config.testHooks.failEngine === 'ffmpeg-multi' && { crashMultiAfterFrames: this.config.testHooks.failAfterFrames }),
        onProgress: (p) => {
          // WebCodecs prints no fps line as ffmpeg does: derive it from progress.
          const cur = this.stats.current;
          if (cur && job.kind === 'video') cur.fps = (p * totalFrames) / Math.max(0.001, (performance.now() - t0) / 1000);
          this.engine.onProgress?.(p);
        },
      });
      if (coreFallback) {
        this.stats.coreFallbacks++;
        this.offer.coreChanged();
        this.log(`job ${job.id.slice(0, 6)}: ${coreFallback}`);
      }
      if (fallback) {
        this.stats.fallbacks++;
        this.log(`job ${job.id.slice(0, 6)}: ${fallback}`);
      }
      // A changed build (the single-thread core now) must reach the pool before shard-ready names it.
      if (this.offer.afterJob(engine, fallback) || coreFallback) this.emit('offer-changed', {});
      if (this.cancelled.has(job.id)) return;
      if (!(await this.deliver(job, shards, engine, core))) return;
      this.send({ type: 'job-done', jobId: job.id });
      this.stats.jobsDone++;
      this.stats.shardsEncoded += shards.length;
      this.stats.framesEncoded += timings.frames;
      this.stats.encodeMs += timings.execMs;
      this.stats.fetchMs += timings.fetchMs;
      this.log(
        `job ${job.id.slice(0, 6)}: ${shards.length} ${job.rendition} shards in ${(timings.totalMs / 1000).toFixed(2)} s (fetch ${timings.fetchMs.toFixed(0)} ms, encode ${timings.execMs.toFixed(0)} ms, ${engine})`,
      );
      this.emit('job-finished', { jobId: job.id, ok: true, ms: timings.totalMs, shards: shards.length });
    } catch (e) {
      const reason = e instanceof WatchdogError ? `watchdog: ${e.message}` : (e as Error).message;
      this.stats.jobsFailed++;
      this.stats.lastError = reason;
      this.log(`job ${job.id.slice(0, 6)} failed: ${reason}`);
      if (!this.cancelled.has(job.id)) this.send({ type: 'job-failed', jobId: job.id, reason: reason.slice(0, 900) });
      this.emit('job-finished', { jobId: job.id, ok: false, ms: performance.now() - t0, shards: 0 });
    } finally {
      this.stats.current = undefined;
      this.emit('changed', {});
    }
  }

  /**
   * Keeps each shard, uploads it when the job asks (a refused one is not
   * reported), and reports it ready. False when the job was cancelled meanwhile.
   */
  private async deliver(job: Job, shards: EncodedShard[], engine: EngineName, core: FfmpegCoreKind | undefined): Promise<boolean> {
    for (const s of shards) {
      const key = { contentId: job.contentId, rendition: job.rendition, index: s.index };
      await this.store.put(key, s.sha256, s.bytes);
      // The server accepts only bytes it has checked: upload first, then report.
      if (job.upload) {
        const refused = await uploadShard(this.base, job, s);
        if (refused) {
          this.log(refused);
          continue;
        }
      }
      if (this.cancelled.has(job.id)) return false;
      this.send({
        type: 'shard-ready',
        jobId: job.id,
        key,
        sha256: s.sha256,
        size: s.bytes.byteLength,
        engine: this.offer.buildOf(engine, core),
        ...(s.lead !== undefined && { lead: s.lead }),
        ...(s.tail !== undefined && { tail: s.tail }),
      });
      reportIfGone(this.store, key, this.send);
    }
    return true;
  }

  private log(line: string): void {
    this.emit('log', { line });
  }
}
