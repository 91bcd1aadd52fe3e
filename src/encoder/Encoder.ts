/**
 * The encoder tab's core: joins the pool, runs the jobs it is given one at a
 * time, keeps what it made, and serves it to peers. The page (src/ui) only
 * renders `EncoderState` and calls start()/stop().
 */
import Peer from 'simple-peer/simplepeer.min.js';
import { TypedEmitter } from '../shared/events.ts';
import { PeerManager, type PeerCtor } from '../net/PeerManager.ts';
import { PoolClient, poolUrl } from '../net/PoolClient.ts';
import type { Capabilities, Job, ServerMessage } from '../shared/protocol.ts';
import { sha256Hex } from '../shared/wire.ts';
import { ServeLimiter, ShardTransfer } from '../net/ShardTransfer.ts';
import { shardKeyString, type VideoSpec } from '../shared/shardMap.ts';
import { webCodecsH264BitrateScale, type EncoderConfig } from './config.ts';
import { FFMPEG_CORE_BUILD, FfmpegEngine, WatchdogError } from './FfmpegEngine.ts';
import { runJob, type EngineName } from './JobRunner.ts';
import { benchmarkWebCodecs, webCodecsBuild, webCodecsCodecs } from './WebCodecsEngine.ts';
import { IndexedDbPersistence, ShardStore } from './ShardStore.ts';

export const ENGINE_NAME = 'ffmpeg-wasm';

/** One engine as the join benchmark found it. */
export interface EngineReport {
  name: EngineName;
  /** "name@build", the value shard-ready carries for shards this engine made. */
  build: string;
  codecs: string[];
  /** Seconds of 320x180 output per wall second in the join benchmark. */
  speed: number | undefined;
  fps: number | undefined;
}

export interface CurrentJob {
  id: string;
  label: string;
  shards: number;
  progress: number;
  fps: number;
  startedAt: number;
}

export interface EncoderState {
  connection: 'connecting' | 'open' | 'closed';
  peerId: string | undefined;
  phase: 'loading' | 'benchmark' | 'idle' | 'encoding' | 'stopped' | 'error';
  /** Seconds of 180p output per wall second in the join benchmark. */
  benchmarkSpeed: number | undefined;
  benchmarkFps: number | undefined;
  /** Every engine this tab offers, with its benchmark (ffmpeg.wasm first). */
  engines: EngineReport[];
  /** H.264 jobs WebCodecs failed and ffmpeg.wasm finished. */
  fallbacks: number;
  current: CurrentJob | undefined;
  jobsDone: number;
  jobsFailed: number;
  /** Shards copied from other holders because the pool asked (replication). */
  replicasTaken: number;
  shardsEncoded: number;
  framesEncoded: number;
  /** Time spent fetching source slices and encoding them (decode, encode and mux), over all jobs, ms. */
  fetchMs: number;
  encodeMs: number;
  shardsHeld: number;
  bytesHeld: number;
  peers: number;
  bytesServed: number;
  shardsServed: number;
  hidden: boolean;
  coreLoads: number;
  watchdogKills: number;
  lastError: string | undefined;
  log: string[];
}

export interface EncoderEvents {
  update: EncoderState;
  'job-finished': { jobId: string; ok: boolean; ms: number; shards: number };
}

export class Encoder extends TypedEmitter<EncoderEvents> {
  readonly state: EncoderState = {
    connection: 'closed',
    peerId: undefined,
    phase: 'loading',
    benchmarkSpeed: undefined,
    benchmarkFps: undefined,
    engines: [],
    fallbacks: 0,
    current: undefined,
    jobsDone: 0,
    jobsFailed: 0,
    replicasTaken: 0,
    shardsEncoded: 0,
    framesEncoded: 0,
    fetchMs: 0,
    encodeMs: 0,
    shardsHeld: 0,
    bytesHeld: 0,
    peers: 0,
    bytesServed: 0,
    shardsServed: 0,
    hidden: false,
    coreLoads: 0,
    watchdogKills: 0,
    lastError: undefined,
    log: [],
  };
  readonly engine: FfmpegEngine;
  /** Video codecs this browser encodes with WebCodecs (empty when it has none, or its benchmark failed). */
  private webCodecs: VideoSpec['codec'][] = [];
  private webCodecsBuild = 'unknown';
  private webCodecsFailuresInARow = 0;
  private readonly store: ShardStore;
  private readonly pool: PoolClient;
  private readonly peers: PeerManager;
  private readonly limiter: ServeLimiter;
  private readonly queue: Job[] = [];
  private readonly cancelled = new Set<string>();
  private running = false;
  private lastProgressSent = 0;

  constructor(
    private readonly config: EncoderConfig,
    private readonly base: string = location.origin,
  ) {
    super();
    this.engine = new FfmpegEngine({ watchdogMs: config.watchdogMs, recycleAfterExecs: config.recycleAfterExecs, core: config.ffmpegCore });
    this.store = new ShardStore(config.storeBudgetBytes, config.persist ? new IndexedDbPersistence() : undefined, (s) => {
      // Tell the pool before the copy disappears; it decides whether another is needed.
      this.pool.send({ type: 'shard-dropped', key: s.key });
    });
    this.limiter = new ServeLimiter(config.maxConcurrentServes);
    this.pool = new PoolClient({
      url: poolUrl(),
      reconnectMs: config.reconnectMs,
      hello: () => ({
        role: 'encoder',
        capabilities: this.capabilities(),
        holdings: this.store.list().map((s) => ({ key: s.key, sha256: s.sha256, size: s.size })),
      }),
      heartbeat: () => ({ activeJobs: this.running ? 1 : 0, heldBytes: this.store.usedBytes, peers: this.peers.links.length, serving: this.limiter.busy }),
    });
    this.pool.on('state', ({ state }) => {
      this.state.connection = state;
      this.state.peerId = this.pool.peerId;
      if (state === 'closed') {
        // The pool re-queues our jobs when we drop; do not finish stale ones.
        for (const j of this.queue.splice(0)) this.cancelled.add(j.id);
        if (this.state.current) this.cancelled.add(this.state.current.id);
      }
      this.changed();
    });
    this.pool.on('job', ({ job }) => {
      this.queue.push(job);
      void this.pump();
    });
    this.pool.on('job-cancel', ({ jobId, reason }) => {
      this.cancelled.add(jobId);
      const i = this.queue.findIndex((j) => j.id === jobId);
      if (i >= 0) this.queue.splice(i, 1);
      this.logLine(`job ${jobId.slice(0, 6)} cancelled: ${reason}`);
    });
    this.pool.on('error', (e) => this.logLine(`pool: ${e.code}: ${e.message}`));
    this.pool.on('replicate', (m) => void this.replicate(m));
    this.pool.on('release', ({ key, reason }) => {
      void this.store.delete(key).then(() => this.changed());
      this.logLine(`released ${shardKeyString(key)} (${reason})`);
    });
    this.pool.on('shard-rejected', ({ key, reason }) => {
      // The pool will not send viewers here for it: no point keeping it.
      void this.store.delete(key).then(() => this.changed());
      this.logLine(`pool rejected ${shardKeyString(key)}: ${reason}`);
    });
    this.peers = new PeerManager(this.pool, Peer as unknown as PeerCtor, { maxPeers: config.maxPeers });
    this.peers.on('link', ({ link }) => {
      const t = ShardTransfer.of(link, { get: (k) => this.store.get(k) }, this.limiter);
      t.on('served', ({ bytes }) => {
        this.state.bytesServed += bytes;
        this.state.shardsServed++;
        this.changed();
      });
      link.on('open', () => this.updatePeers());
      link.on('close', () => this.updatePeers());
    });
    this.engine.onProgress = (p) => {
      if (!this.state.current) return;
      this.state.current.progress = p;
      const now = performance.now();
      if (now - this.lastProgressSent > 500) {
        this.lastProgressSent = now;
        this.pool.send({ type: 'job-progress', jobId: this.state.current.id, progress: Math.min(1, Math.max(0, p)), fps: this.state.current.fps });
        this.changed();
      }
    };
    this.engine.onLog = (line) => {
      const m = /fps=\s*([\d.]+)/.exec(line);
      if (m && this.state.current) this.state.current.fps = Number(m[1]);
    };
    if (typeof document !== 'undefined') {
      const vis = () => {
        this.state.hidden = document.visibilityState === 'hidden';
        this.changed();
      };
      document.addEventListener('visibilitychange', vis);
      vis();
    }
  }

  private updatePeers(): void {
    this.state.peers = this.peers.links.filter((l) => l.open).length;
    this.changed();
  }

  private changed(): void {
    this.state.shardsHeld = this.store.count;
    this.state.bytesHeld = this.store.usedBytes;
    this.state.coreLoads = this.engine.stats.loads;
    this.state.watchdogKills = this.engine.stats.watchdogKills;
    this.emit('update', this.state);
  }

  private logLine(s: string): void {
    this.state.log.push(`${new Date().toLocaleTimeString()} ${s}`);
    if (this.state.log.length > 50) this.state.log.shift();
    this.changed();
  }

  async start(): Promise<void> {
    this.state.phase = 'loading';
    this.changed();
    const restored = await this.store.restore();
    if (restored.length) this.logLine(`restored ${restored.length} shards from the previous session`);
    await this.engine.load();
    const offered = this.config.engines.split(',').map((x) => x.trim());
    this.webCodecs = offered.includes('webcodecs') ? await webCodecsCodecs() : [];
    if (this.webCodecs.length) {
      this.webCodecsBuild = await webCodecsBuild();
      this.logLine(`WebCodecs encodes ${this.webCodecs.join(', ')} (${this.webCodecsBuild})`);
    }
    if (this.config.benchmark) {
      this.state.phase = 'benchmark';
      this.changed();
      await this.benchmark();
    }
    this.state.engines = [
      { name: 'ffmpeg-wasm', build: this.buildOf('ffmpeg-wasm'), codecs: ['h264', 'aac'], speed: this.state.benchmarkSpeed, fps: this.state.benchmarkFps },
      ...(this.webCodecs.length
        ? [{ name: 'webcodecs' as const, build: this.buildOf('webcodecs'), codecs: [...this.webCodecs], speed: this.webCodecsSpeed?.speed, fps: this.webCodecsSpeed?.fps }]
        : []),
    ];
    this.state.phase = 'idle';
    this.pool.connect();
    this.changed();
  }

  private webCodecsSpeed: { speed: number; fps: number } | undefined;

  /** "name@build" for shard-ready: the ffmpeg core build and the preset (it changes the bytes), or the browser build. */
  private capabilities(): Capabilities {
    return {
      engines: this.state.engines.map((e) => ({ name: e.name, codecs: e.codecs, ...(e.speed !== undefined && { speed: e.speed }) })),
      maxJobs: 1,
      storageBytes: this.config.storeBudgetBytes,
    };
  }

  private buildOf(engine: EngineName): string {
    return engine === 'ffmpeg-wasm' ? `ffmpeg-wasm@${FFMPEG_CORE_BUILD}/${this.config.preset}` : `webcodecs@${this.webCodecsBuild}`;
  }

  /**
   * Short 180p encodes with each engine: they warm ffmpeg.wasm up (the first
   * exec is ~2x slower), measure each engine's speed for the pool, and take a
   * WebCodecs that fails out of the offer.
   */
  private async benchmark(): Promise<void> {
    await this.benchmarkFfmpeg();
    if (!this.webCodecs.length) return;
    // H.264 when the browser has it (the fast path for the default ladder), else the codec it has.
    const codec = this.webCodecs.includes('h264') ? 'h264' : this.webCodecs[0]!;
    try {
      this.webCodecsSpeed = await benchmarkWebCodecs(codec);
      this.logLine(`benchmark: WebCodecs ${codec} ${this.webCodecsSpeed.fps.toFixed(0)} fps at 320x180 (${this.webCodecsSpeed.speed.toFixed(1)}x real time)`);
    } catch (e) {
      this.logLine(`WebCodecs failed its benchmark, not offered: ${(e as Error).message}`);
      this.webCodecs = [];
    }
  }

  private async benchmarkFfmpeg(): Promise<void> {
    const seconds = 2;
    const r = await this.engine.exec(
      () => [
        '-nostdin', '-f', 'lavfi', '-i', `testsrc2=size=320x180:rate=30:duration=${seconds}`,
        '-c:v', 'libx264', '-preset', this.config.preset, '-bf', '0',
        ...(this.engine.threads ? ['-threads', String(this.engine.threads)] : []), '-f', 'null', '-',
      ],
      {},
    );
    this.state.benchmarkSpeed = seconds / (r.execMs / 1000);
    this.state.benchmarkFps = (seconds * 30) / (r.execMs / 1000);
    this.logLine(`benchmark: ffmpeg.wasm ${this.state.benchmarkFps.toFixed(0)} fps at 320x180 (${this.state.benchmarkSpeed.toFixed(1)}x real time)`);
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
      if (this.state.phase === 'encoding') this.state.phase = 'idle';
      this.changed();
    }
  }

  private async run(job: Job): Promise<void> {
    const t0 = performance.now();
    this.state.phase = 'encoding';
    const first = job.shards[0]!.index;
    const last = job.shards[job.shards.length - 1]!.index;
    this.state.current = {
      id: job.id,
      label: `${job.contentId} ${job.rendition} shards ${first}-${last} (${job.start.toFixed(2)}-${job.end.toFixed(2)} s)`,
      shards: job.shards.length,
      progress: 0,
      fps: 0,
      startedAt: Date.now(),
    };
    this.changed();
    const kind = job.kind;
    try {
      const totalFrames = job.shards.reduce((a, s) => a + s.frames, 0);
      const { shards, timings, engine, fallback } = await runJob(job, this.engine, {
        base: this.base,
        preset: this.config.preset,
        ...(this.engine.threads && { threads: this.engine.threads }),
        webCodecs: {
          codecs: this.webCodecs,
          h264BitrateScale: (height) => webCodecsH264BitrateScale(height, this.config.webcodecsH264BitrateScale),
          ...(this.config.failEngine === 'webcodecs' && { failAfterFrames: this.config.failAfterFrames }),
        },
        onProgress: (p) => {
          // WebCodecs prints no fps line as ffmpeg does: derive it from progress.
          const cur = this.state.current;
          if (cur && kind === 'video') cur.fps = (p * totalFrames) / Math.max(0.001, (performance.now() - t0) / 1000);
          this.engine.onProgress?.(p);
        },
      });
      if (fallback) {
        this.state.fallbacks++;
        this.webCodecsFailuresInARow++;
        this.logLine(`job ${job.id.slice(0, 6)}: ${fallback}`);
        if (this.webCodecsFailuresInARow >= this.config.webcodecsMaxFailures && this.webCodecs.includes('h264')) {
          this.webCodecs = this.webCodecs.filter((c) => c !== 'h264');
          this.logLine(`WebCodecs H.264 failed ${this.webCodecsFailuresInARow} jobs in a row: H.264 stays on ffmpeg.wasm in this tab`);
          // Tell the pool, or it keeps naming WebCodecs for H.264 jobs and schedules by a speed we no longer have.
          this.state.engines = this.state.engines
            .map((e) => (e.name === 'webcodecs' ? { ...e, codecs: e.codecs.filter((c) => c !== 'h264') } : e))
            .filter((e) => e.codecs.length > 0);
          this.pool.send({ type: 'capabilities', capabilities: this.capabilities() });
        }
      } else if (engine === 'webcodecs') this.webCodecsFailuresInARow = 0;
      if (this.cancelled.has(job.id)) return;
      for (const s of shards) {
        const key = { contentId: job.contentId, rendition: job.rendition, index: s.index };
        await this.store.put(key, s.sha256, s.bytes);
        // The server accepts only bytes it has checked: upload first, then report.
        if (job.upload && !(await this.upload(job, s))) continue;
        if (this.cancelled.has(job.id)) return;
        this.pool.send({
          type: 'shard-ready',
          jobId: job.id,
          key,
          sha256: s.sha256,
          size: s.bytes.byteLength,
          engine: this.buildOf(engine),
          ...(s.lead !== undefined && { lead: s.lead }),
          ...(s.tail !== undefined && { tail: s.tail }),
        });
      }
      this.pool.send({ type: 'job-done', jobId: job.id });
      this.state.jobsDone++;
      this.state.shardsEncoded += shards.length;
      this.state.framesEncoded += timings.frames;
      this.state.encodeMs += timings.execMs;
      this.state.fetchMs += timings.fetchMs;
      this.logLine(`job ${job.id.slice(0, 6)}: ${shards.length} ${job.rendition} shards in ${(timings.totalMs / 1000).toFixed(2)} s (fetch ${timings.fetchMs.toFixed(0)} ms, encode ${timings.execMs.toFixed(0)} ms, ${engine})`);
      this.emit('job-finished', { jobId: job.id, ok: true, ms: timings.totalMs, shards: shards.length });
    } catch (e) {
      const reason = e instanceof WatchdogError ? `watchdog: ${e.message}` : (e as Error).message;
      this.state.jobsFailed++;
      this.state.lastError = reason;
      this.logLine(`job ${job.id.slice(0, 6)} failed: ${reason}`);
      if (!this.cancelled.has(job.id)) this.pool.send({ type: 'job-failed', jobId: job.id, reason: reason.slice(0, 900) });
      this.emit('job-finished', { jobId: job.id, ok: false, ms: performance.now() - t0, shards: 0 });
    } finally {
      this.state.current = undefined;
      this.changed();
    }
  }

  /**
   * The pool asks for a copy of a shard (it is hot, or its last holder left):
   * fetch it from a holder over WebRTC, or else from the server cache, verify
   * it against the accepted hash, keep it, and say so.
   */
  private async replicate(m: Extract<ServerMessage, { type: 'replicate' }>): Promise<void> {
    const k = shardKeyString(m.key);
    let bytes: Uint8Array | undefined;
    const tried: string[] = [];
    for (const peerId of m.from) {
      try {
        const link = await this.peers.connect(peerId);
        bytes = (await ShardTransfer.of(link).fetch(m.key, m.sha256, this.config.replicateTimeoutMs)).bytes;
        break;
      } catch (e) {
        tried.push(`${peerId.slice(0, 6)}: ${(e as Error).message}`);
      }
    }
    if (!bytes && m.cached) {
      try {
        const res = await fetch(new URL(`/api/contents/${encodeURIComponent(m.key.contentId)}/shards/${encodeURIComponent(m.key.rendition)}/${m.key.index}`, this.base));
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const got = new Uint8Array(await res.arrayBuffer());
        if ((await sha256Hex(got)) !== m.sha256) throw new Error('hash mismatch');
        bytes = got;
      } catch (e) {
        tried.push(`cache: ${(e as Error).message}`);
      }
    }
    if (!bytes) {
      this.pool.send({ type: 'replicate-failed', key: m.key, reason: tried.join('; ').slice(0, 500) || 'no source' });
      return;
    }
    await this.store.put(m.key, m.sha256, bytes);
    this.state.replicasTaken++;
    this.pool.send({ type: 'shard-stored', key: m.key, sha256: m.sha256, size: bytes.byteLength });
    this.logLine(`replicated ${k} (${bytes.byteLength} bytes)`);
  }

  /** Uploads a shard for the server's check (and cache); false when it was refused or could not be sent. */
  private async upload(job: Job, s: { index: number; bytes: Uint8Array; lead?: number; tail?: number }): Promise<boolean> {
    const url = new URL(`/api/contents/${encodeURIComponent(job.contentId)}/shards/${encodeURIComponent(job.rendition)}/${s.index}`, this.base);
    if (s.lead !== undefined) url.searchParams.set('lead', String(s.lead));
    if (s.tail !== undefined) url.searchParams.set('tail', String(s.tail));
    try {
      const res = await fetch(url, {
        method: 'PUT',
        body: s.bytes as Uint8Array<ArrayBuffer>,
        headers: { 'Content-Type': 'video/mp4', ...(job.uploadToken && { Authorization: `Bearer ${job.uploadToken}` }) },
      });
      if (res.ok) return true;
      this.logLine(`server refused ${job.rendition}/${s.index}: ${(await res.text()).slice(0, 200)}`);
    } catch (e) {
      this.logLine(`upload failed: ${(e as Error).message}`);
    }
    return false;
  }

  stop(): void {
    this.state.phase = 'stopped';
    this.pool.close();
    this.peers.closeAll();
    this.engine.terminate();
    this.changed();
  }
}
