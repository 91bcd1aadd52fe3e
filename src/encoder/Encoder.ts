/**
 * The encoder tab's composition root: joins the pool, runs the jobs it is
 * given one at a time, keeps what it made, and serves it to peers. It owns
 * the page state (`EncoderState`, which the page renders on `update`) and
 * wires the controllers, which talk to it through typed events: EngineOffer
 * (engines, builds, benchmarks), JobExecutor (queue, job runs, upload,
 * shard-ready), Replicator (copies the pool asks for) and the ShardStore.
 */
import { MezzanineJobs } from './MezzanineJobs.ts';
import { TypedEmitter } from '../shared/events.ts';
import { PeerManager } from '../net/PeerManager.ts';
import { PoolClient, poolUrl } from '../net/PoolClient.ts';
import type { Capabilities } from '../shared/protocol.ts';
import { ServeLimiter, ShardTransfer } from '../net/ShardTransfer.ts';
import { shardKeyString } from '../shared/shardMap.ts';
import type { EncoderConfig } from './config.ts';
import { EngineOffer, type EngineReport } from './EngineOffer.ts';
import { FfmpegEngine, type FfmpegCoreKind } from './FfmpegEngine.ts';
import { JobExecutor, type CurrentJob } from './JobExecutor.ts';
import { Replicator } from './Replicator.ts';
import { Verifier } from './Verifier.ts';
import { IndexedDbPersistence, ShardStore } from './ShardStore.ts';

export type { CurrentJob } from './JobExecutor.ts';
export type { EngineReport } from './EngineOffer.ts';

export const ENGINE_NAME = 'ffmpeg-wasm';

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
  /** Jobs the multi-thread ffmpeg core failed and the single-thread core finished. */
  coreFallbacks: number;
  /** The ffmpeg.wasm core that runs jobs now ('multi' until its first failure when asked for). */
  ffmpegCore: FfmpegCoreKind;
  current: CurrentJob | undefined;
  jobsDone: number;
  jobsFailed: number;
  /** Verifications of other encoders' shards answered with figures, and their wall time (ms). */
  verifications: number;
  verifyMs: number;
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
    coreFallbacks: 0,
    ffmpegCore: 'single',
    current: undefined,
    jobsDone: 0,
    jobsFailed: 0,
    verifications: 0,
    verifyMs: 0,
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
  private readonly offer: EngineOffer;
  private readonly jobs: JobExecutor;
  private readonly replicator: Replicator;
  readonly verifier: Verifier;
  private readonly store: ShardStore;
  private readonly pool: PoolClient;
  private readonly peers: PeerManager;
  private readonly limiter: ServeLimiter;
  private readonly mezzanines: MezzanineJobs;

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
    this.pool = this.connectPool();
    this.peers = this.servePeers();
    const send = this.pool.send.bind(this.pool);
    this.offer = new EngineOffer(this.engine, config);
    this.offer.on('log', ({ line }) => this.logLine(line));
    this.jobs = this.runJobs(send);
    this.replicator = new Replicator(this.peers, this.store, send, config.replicateTimeoutMs, base);
    this.replicator.on('stored', () => this.state.replicasTaken++);
    this.replicator.on('log', ({ line }) => this.logLine(line));
    this.verifier = new Verifier(this.engine, this.peers, send, config.replicateTimeoutMs, base);
    this.verifier.on('log', ({ line }) => this.logLine(line));
    this.mezzanines = new MezzanineJobs(
      this.engine,
      this.pool,
      () => this.jobs.busy,
      (l) => this.logLine(l),
      config.mezzaninePollMs,
      base,
    );
    this.watchVisibility();
  }

  /** The pool connection: hello with our capabilities and holdings, heartbeats with our load, and the pool's orders. */
  private connectPool(): PoolClient {
    const pool = new PoolClient({
      url: poolUrl(),
      reconnectMs: this.config.reconnectMs,
      hello: () => ({
        role: 'encoder',
        capabilities: this.capabilities(),
        holdings: this.store.list().map((s) => ({ key: s.key, sha256: s.sha256, size: s.size })),
      }),
      heartbeat: () => ({ activeJobs: this.jobs.busy ? 1 : 0, heldBytes: this.store.usedBytes, peers: this.peers.links.length, serving: this.limiter.busy }),
    });
    pool.on('state', ({ state }) => {
      this.state.connection = state;
      this.state.peerId = pool.peerId;
      // The pool re-queues our jobs when we drop; do not finish stale ones.
      if (state === 'closed') this.jobs.cancelAll();
      this.changed();
    });
    pool.on('job', ({ job }) => this.jobs.add(job));
    pool.on('job-cancel', ({ jobId, reason }) => {
      this.jobs.cancel(jobId);
      this.logLine(`job ${jobId.slice(0, 6)} cancelled: ${reason}`);
    });
    pool.on('error', (e) => this.logLine(`pool: ${e.code}: ${e.message}`));
    pool.on('replicate', (m) => void this.replicator.replicate(m));
    pool.on('verify', (m) => void this.verifier.verify(m));
    pool.on('release', ({ key, reason }) => {
      void this.store.delete(key).then(() => this.changed());
      this.logLine(`released ${shardKeyString(key)} (${reason})`);
    });
    pool.on('shard-rejected', ({ key, reason }) => {
      // The pool will not send viewers here for it: no point keeping it.
      void this.store.delete(key).then(() => this.changed());
      this.logLine(`pool rejected ${shardKeyString(key)}: ${reason}`);
    });
    return pool;
  }

  /** Peer links: every link serves our store, within the tab-wide serve limit. */
  private servePeers(): PeerManager {
    const peers = new PeerManager(this.pool, { maxPeers: this.config.maxPeers });
    peers.on('link', ({ link }) => {
      const t = ShardTransfer.of(link, { get: (k) => this.store.get(k) }, this.limiter);
      t.on('served', ({ bytes }) => {
        this.state.bytesServed += bytes;
        this.state.shardsServed++;
        this.changed();
      });
      link.on('open', () => this.updatePeers());
      link.on('close', () => this.updatePeers());
    });
    return peers;
  }

  private runJobs(send: PoolClient['send']): JobExecutor {
    const jobs = new JobExecutor(this.engine, this.offer, this.store, send, this.config, this.base);
    jobs.on('changed', () => this.changed());
    jobs.on('log', ({ line }) => this.logLine(line));
    jobs.on('busy', ({ busy }) => {
      if (busy) this.state.phase = 'encoding';
      else if (this.state.phase === 'encoding') this.state.phase = 'idle';
    });
    jobs.on('job-finished', (e) => this.emit('job-finished', e));
    jobs.on('offer-changed', () => {
      this.pool.send({ type: 'capabilities', capabilities: this.capabilities() });
    });
    return jobs;
  }

  private watchVisibility(): void {
    if (typeof document === 'undefined') return;
    const vis = () => {
      this.state.hidden = document.visibilityState === 'hidden';
      this.changed();
    };
    document.addEventListener('visibilitychange', vis);
    vis();
  }

  private updatePeers(): void {
    this.state.peers = this.peers.links.filter((l) => l.open).length;
    this.changed();
  }

  /** Refreshes the state's copies of what the store, engine and jobs own, and tells the page. */
  private changed(): void {
    const j = this.jobs?.stats;
    if (j) {
      this.state.current = j.current;
      this.state.jobsDone = j.jobsDone;
      this.state.jobsFailed = j.jobsFailed;
      this.state.fallbacks = j.fallbacks;
      this.state.coreFallbacks = j.coreFallbacks;
      this.state.shardsEncoded = j.shardsEncoded;
      this.state.framesEncoded = j.framesEncoded;
      this.state.fetchMs = j.fetchMs;
      this.state.encodeMs = j.encodeMs;
      this.state.lastError = j.lastError;
    }
    if (this.verifier) {
      this.state.verifications = this.verifier.stats.done;
      this.state.verifyMs = this.verifier.stats.ms;
    }
    this.state.shardsHeld = this.store.count;
    this.state.bytesHeld = this.store.usedBytes;
    this.state.coreLoads = this.engine.stats.loads;
    this.state.watchdogKills = this.engine.stats.watchdogKills;
    this.state.ffmpegCore = this.engine.kind;
    // The offer's builds change when the multi-thread core falls back; empty until start() settles it.
    if (this.offer?.reports.length) this.state.engines = this.offer.reports;
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
    await this.offer.detect();
    if (this.config.benchmark) {
      this.state.phase = 'benchmark';
      this.changed();
      await this.offer.benchmark();
      this.state.benchmarkSpeed = this.offer.ffmpegSpeed?.speed;
      this.state.benchmarkFps = this.offer.ffmpegSpeed?.fps;
    }
    this.state.engines = this.offer.settle();
    this.state.phase = 'idle';
    this.pool.connect();
    this.changed();
  }

  /** What hello and capabilities messages carry: the engine offer, one job at a time, the store's budget. */
  private capabilities(): Capabilities {
    return {
      // The build goes with each engine: the pool accepts a shard-ready only with the declared one.
      engines: this.state.engines.map((e) => ({
        name: e.name,
        build: e.build.slice(e.name.length + 1),
        codecs: e.codecs,
        ...(e.speed !== undefined && { speed: e.speed }),
      })),
      maxJobs: 1,
      storageBytes: this.config.storeBudgetBytes,
    };
  }

  stop(): void {
    this.state.phase = 'stopped';
    this.mezzanines.stop();
    this.pool.close();
    this.peers.closeAll();
    this.engine.terminate();
    this.changed();
  }
}
