/**
 * The pool manager: who is connected, which jobs run where, and which shard
 * variant is held by whom. Transport-agnostic: the WebSocket layer hands it
 * validated messages and gives it a `send` function.
 */
import { randomBytes } from 'node:crypto';
import type { ClientMessage, Capabilities, Job, ServerMessage, HolderEntry } from '../src/shared/protocol.ts';
import {
  AAC_PACKET_SAMPLES,
  effectiveVideoSpec,
  isAudioRendition,
  isVideoRendition,
  shardKeyString,
  type ShardKey,
} from '../src/shared/shardMap.ts';
import type { ServerConfig } from './config.ts';
import type { Content, ContentStore } from './ContentStore.ts';
import { TypedEmitter } from '../src/shared/events.ts';
import { planRun } from './jobs.ts';

export type Role = 'encoder' | 'viewer';

/** Extra audio each separately encoded run carries where it meets another run, seconds (DESIGN.md: 100 ms). */
export const AUDIO_RUN_OVERLAP = 0.1;

export interface PeerConnection {
  send(msg: ServerMessage): void;
  close(code: number, reason: string): void;
}

export interface Peer {
  id: string;
  role: Role;
  conn: PeerConnection;
  capabilities?: Capabilities;
  joinedAt: number;
  lastSeen: number;
  jobs: Set<string>;
  holdings: Set<string>;
  completedJobs: number;
  failedJobs: number;
  shardsEncoded: number;
  activeJobsReported: number;
  heldBytes: number;
}

export interface ActiveJob {
  job: Job;
  peerId: string;
  assignedAt: number;
  done: Set<number>;
  progress: number;
}

export interface PoolEvents {
  'peer-joined': { peerId: string; role: Role };
  'peer-lost': { peerId: string; role: Role; reason: string; requeued: number };
  'job-assigned': { jobId: string; peerId: string; key: string; shards: number };
  'job-requeued': { jobId: string; peerId: string; indices: number[]; rendition: string; contentId: string; reason: string };
  'job-done': { jobId: string; peerId: string };
  'shard-accepted': { key: ShardKey; peerId: string; sha256: string };
  'shard-rejected': { key: ShardKey; peerId: string; reason: string };
  'shard-failed': { key: ShardKey; attempts: number };
  'content-complete': { contentId: string };
}

export interface PoolEventRecord {
  at: number;
  type: keyof PoolEvents;
  detail: unknown;
}

export class ProtocolError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class PoolManager extends TypedEmitter<PoolEvents> {
  readonly peers = new Map<string, Peer>();
  readonly jobs = new Map<string, ActiveJob>();
  /** shard variant key -> ids of peers holding the accepted bytes. */
  readonly holders = new Map<string, Set<string>>();
  /** shard variant key -> job id while it is being encoded. */
  private readonly inFlight = new Map<string, string>();
  /** shard variant key -> failed attempts so far. */
  private readonly attempts = new Map<string, number>();
  readonly recentEvents: PoolEventRecord[] = [];
  readonly counters = { jobsAssigned: 0, jobsCompleted: 0, requeues: 0, shardsAccepted: 0, shardsRejected: 0, locates: 0, badMessages: 0 };
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: ContentStore,
    private readonly config: ServerConfig,
    private readonly now: () => number = Date.now,
    /** Whether the server's cache holds a shard variant. */
    private readonly isCached: (k: ShardKey) => boolean = () => false,
  ) {
    super();
    for (const type of [
      'peer-joined',
      'peer-lost',
      'job-assigned',
      'job-requeued',
      'shard-rejected',
      'shard-failed',
      'content-complete',
    ] as const) {
      this.on(type, (detail) => {
        this.recentEvents.push({ at: this.now(), type, detail });
        if (this.recentEvents.length > 200) this.recentEvents.splice(0, this.recentEvents.length - 200);
      });
    }
  }

  start(): void {
    const period = Math.max(100, Math.min(1000, this.config.heartbeatTimeoutMs / 4));
    this.sweepTimer = setInterval(() => this.sweep(), period);
    this.sweepTimer.unref();
  }

  stop(): void {
    clearInterval(this.sweepTimer);
    for (const p of [...this.peers.values()]) p.conn.close(1001, 'server shutting down');
    this.peers.clear();
  }

  // ------------------------------------------------------------ connections

  /** Handles `hello`; returns the peer id, or throws a ProtocolError. */
  join(conn: PeerConnection, hello: Extract<ClientMessage, { type: 'hello' }>): string {
    if (hello.role === 'encoder' && !hello.capabilities) {
      throw new ProtocolError('missing-capabilities', 'an encoder must say what it can encode: hello.capabilities');
    }
    let id = hello.peerId;
    if (!id || this.peers.has(id)) id = randomBytes(9).toString('base64url').replace(/[-_]/g, 'x');
    const now = this.now();
    const peer: Peer = {
      id,
      role: hello.role,
      conn,
      ...(hello.capabilities && { capabilities: hello.capabilities }),
      joinedAt: now,
      lastSeen: now,
      jobs: new Set(),
      holdings: new Set(),
      completedJobs: 0,
      failedJobs: 0,
      shardsEncoded: 0,
      activeJobsReported: 0,
      heldBytes: 0,
    };
    this.peers.set(id, peer);
    conn.send({ type: 'welcome', protocol: 1, peerId: id, heartbeatMs: this.config.heartbeatMs, iceServers: this.config.iceServers });
    for (const h of hello.holdings ?? []) {
      // Only bytes matching the accepted hash count: a holding is a claim, not proof.
      const st = this.store.get(h.key.contentId)?.map.shards[h.key.index]?.renditions[h.key.rendition];
      if (st?.status === 'ready' && st.sha256 === h.sha256) this.addHolder(id, shardKeyString(h.key));
    }
    this.emit('peer-joined', { peerId: id, role: hello.role });
    this.schedule();
    return id;
  }

  /** The peer's socket closed or it went silent: its unfinished work goes back to the queue at once. */
  leave(peerId: string, reason: string): void {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    this.peers.delete(peerId);
    let requeued = 0;
    for (const jobId of [...peer.jobs]) requeued += this.requeueJob(jobId, `encoder lost: ${reason}`, false);
    for (const key of peer.holdings) {
      const set = this.holders.get(key);
      set?.delete(peerId);
      if (set?.size === 0) this.holders.delete(key);
    }
    this.emit('peer-lost', { peerId, role: peer.role, reason, requeued });
    this.schedule();
  }

  private sweep(): void {
    const cutoff = this.now() - this.config.heartbeatTimeoutMs;
    for (const p of [...this.peers.values()]) {
      if (p.lastSeen < cutoff) {
        p.conn.close(4000, 'missed heartbeats');
        this.leave(p.id, 'missed heartbeats');
      }
    }
    const now = this.now();
    for (const [jobId, aj] of [...this.jobs]) {
      if (aj.job.deadline < now) {
        this.peers.get(aj.peerId)?.conn.send({ type: 'job-cancel', jobId, reason: 'deadline passed' });
        this.requeueJob(jobId, 'deadline passed', true);
      }
    }
    this.schedule();
  }

  // ------------------------------------------------------------ messages

  /** Handles one validated message from a joined peer. Protocol violations get an error reply. */
  handle(peerId: string, msg: ClientMessage): void {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    peer.lastSeen = this.now();
    try {
      this.dispatch(peer, msg);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.counters.badMessages++;
      peer.conn.send({ type: 'error', code: e.code, message: e.message, ref: msg.type });
    }
  }

  private dispatch(peer: Peer, msg: ClientMessage): void {
    switch (msg.type) {
      case 'hello':
        throw new ProtocolError('already-joined', 'hello was already received on this connection');
      case 'heartbeat':
        if (msg.activeJobs !== undefined) peer.activeJobsReported = msg.activeJobs;
        if (msg.heldBytes !== undefined) peer.heldBytes = msg.heldBytes;
        return;
      case 'job-progress': {
        const aj = this.ownJob(peer, msg.jobId);
        aj.progress = msg.progress;
        return;
      }
      case 'shard-ready':
        return this.shardReady(peer, msg);
      case 'job-done': {
        const aj = this.ownJob(peer, msg.jobId);
        const missing = aj.job.shards.filter((s) => !aj.done.has(s.index)).length;
        if (missing > 0) {
          peer.failedJobs++;
          this.requeueJob(msg.jobId, `job reported done with ${missing} shards missing`, true);
        } else {
          peer.completedJobs++;
          this.finishJob(msg.jobId);
          this.emit('job-done', { jobId: msg.jobId, peerId: peer.id });
        }
        this.schedule();
        return;
      }
      case 'job-failed': {
        this.ownJob(peer, msg.jobId);
        peer.failedJobs++;
        this.requeueJob(msg.jobId, `encoder failed: ${msg.reason}`, true);
        this.schedule();
        return;
      }
      case 'locate':
        return this.locate(peer, msg);
      case 'signal': {
        const to = this.peers.get(msg.to);
        if (!to) throw new ProtocolError('unknown-peer', `peer ${msg.to} is not connected`);
        to.conn.send({ type: 'signal', from: peer.id, data: msg.data });
        return;
      }
      case 'shard-dropped': {
        const key = shardKeyString(msg.key);
        peer.holdings.delete(key);
        const set = this.holders.get(key);
        set?.delete(peer.id);
        if (set?.size === 0) this.holders.delete(key);
        return;
      }
      case 'report-peer':
        // Trust scoring comes with cross-checks; for now the report is recorded as an event.
        this.emit('shard-rejected', { key: msg.key, peerId: msg.peerId, reason: `reported by ${peer.id}: ${msg.reason}` });
        return;
    }
  }

  private ownJob(peer: Peer, jobId: string): ActiveJob {
    const aj = this.jobs.get(jobId);
    if (!aj || aj.peerId !== peer.id) throw new ProtocolError('unknown-job', `job ${jobId} is not assigned to you (it may have been re-queued)`);
    return aj;
  }

  private shardReady(peer: Peer, msg: Extract<ClientMessage, { type: 'shard-ready' }>): void {
    if (peer.role !== 'encoder') throw new ProtocolError('not-an-encoder', 'only encoders report shards');
    const content = this.store.get(msg.key.contentId);
    const st = content?.map.shards[msg.key.index]?.renditions[msg.key.rendition];
    if (!content || !st) throw new ProtocolError('unknown-shard', `no shard ${shardKeyString(msg.key)}`);
    const key = shardKeyString(msg.key);
    let aj: ActiveJob | undefined;
    if (msg.jobId !== undefined) {
      aj = this.ownJob(peer, msg.jobId);
      if (aj.job.contentId !== msg.key.contentId || aj.job.rendition !== msg.key.rendition || !aj.job.shards.some((s) => s.index === msg.key.index)) {
        throw new ProtocolError('not-in-job', `shard ${key} is not part of job ${msg.jobId}`);
      }
    }
    if (st.status === 'ready') {
      if (st.sha256 !== msg.sha256) {
        this.counters.shardsRejected++;
        peer.conn.send({ type: 'shard-rejected', key: msg.key, reason: 'hash differs from the accepted variant' });
        this.emit('shard-rejected', { key: msg.key, peerId: peer.id, reason: 'hash mismatch' });
        return;
      }
    } else {
      if (!aj) throw new ProtocolError('not-assigned', `shard ${key} was not assigned to you`);
      this.store.accept(msg.key.contentId, msg.key.rendition, msg.key.index, {
        sha256: msg.sha256,
        size: msg.size,
        ...(msg.engine !== undefined && { engine: msg.engine }),
        ...(msg.lead !== undefined && { lead: msg.lead }),
        ...(msg.tail !== undefined && { tail: msg.tail }),
      });
      this.counters.shardsAccepted++;
      peer.shardsEncoded++;
      this.emit('shard-accepted', { key: msg.key, peerId: peer.id, sha256: msg.sha256 });
    }
    if (aj) {
      aj.done.add(msg.key.index);
      this.inFlight.delete(key);
    }
    this.addHolder(peer.id, key);
    peer.conn.send({ type: 'shard-accepted', key: msg.key, sha256: msg.sha256 });
    if (this.isComplete(content)) this.emit('content-complete', { contentId: content.meta.id });
  }

  private addHolder(peerId: string, key: string): void {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    peer.holdings.add(key);
    let set = this.holders.get(key);
    if (!set) this.holders.set(key, (set = new Set()));
    set.add(peerId);
  }

  private locate(peer: Peer, msg: Extract<ClientMessage, { type: 'locate' }>): void {
    const content = this.store.get(msg.contentId);
    if (!content) throw new ProtocolError('unknown-content', `no content ${msg.contentId}`);
    this.counters.locates++;
    const renditions = msg.renditions ?? content.map.renditions.map((r) => r.id);
    const shards: HolderEntry[] = [];
    const end = Math.min(content.map.shards.length, msg.from + msg.count);
    for (let i = msg.from; i < end; i++) {
      const s = content.map.shards[i]!;
      for (const r of renditions) {
        const st = s.renditions[r];
        if (!st) continue;
        const peers = [...(this.holders.get(shardKeyString({ contentId: msg.contentId, rendition: r, index: i })) ?? [])].filter(
          (p) => p !== peer.id,
        );
        shards.push({ index: i, rendition: r, ...(st.sha256 && { sha256: st.sha256 }), peers, cached: this.isCached({ contentId: msg.contentId, rendition: r, index: i }) });
      }
    }
    peer.conn.send({ type: 'holders', requestId: msg.requestId, contentId: msg.contentId, shards });
  }

  private isComplete(c: Content): boolean {
    return c.map.shards.every((s) => Object.values(s.renditions).every((st) => st.status === 'ready'));
  }

  // ------------------------------------------------------------ scheduling

  private finishJob(jobId: string): void {
    const aj = this.jobs.get(jobId);
    if (!aj) return;
    this.jobs.delete(jobId);
    this.peers.get(aj.peerId)?.jobs.delete(jobId);
    this.counters.jobsCompleted++;
  }

  /**
   * Puts a job's unfinished shards back in the queue. `counts` says whether
   * this counts as a failed attempt (a lost socket does not count against the
   * shards: the encoder went, not the work). Returns the number re-queued.
   */
  private requeueJob(jobId: string, reason: string, counts: boolean): number {
    const aj = this.jobs.get(jobId);
    if (!aj) return 0;
    this.jobs.delete(jobId);
    this.peers.get(aj.peerId)?.jobs.delete(jobId);
    const content = this.store.get(aj.job.contentId);
    const indices: number[] = [];
    for (const s of aj.job.shards) {
      if (aj.done.has(s.index)) continue;
      const keyObj = { contentId: aj.job.contentId, rendition: aj.job.rendition, index: s.index };
      const key = shardKeyString(keyObj);
      this.inFlight.delete(key);
      const st = content?.map.shards[s.index]?.renditions[aj.job.rendition];
      if (!st || st.status === 'ready') continue;
      const n = (this.attempts.get(key) ?? 0) + (counts ? 1 : 0);
      this.attempts.set(key, Math.max(n, this.attempts.get(key) ?? 0, 1));
      if (counts && n >= this.config.maxJobAttempts) {
        st.status = 'failed';
        this.emit('shard-failed', { key: keyObj, attempts: n });
      } else {
        st.status = 'pending';
        indices.push(s.index);
      }
    }
    this.counters.requeues++;
    this.emit('job-requeued', { jobId, peerId: aj.peerId, indices, rendition: aj.job.rendition, contentId: aj.job.contentId, reason });
    return indices.length;
  }

  /** Gives pending work to encoders with free slots. */
  schedule(): void {
    const free = [...this.peers.values()].filter(
      (p) => p.role === 'encoder' && p.jobs.size < (p.capabilities?.maxJobs ?? 1),
    );
    if (free.length === 0) return;
    // Least-loaded first, so work spreads across the pool.
    free.sort((a, b) => a.jobs.size - b.jobs.size || a.joinedAt - b.joinedAt);
    for (const peer of free) {
      while (peer.jobs.size < (peer.capabilities?.maxJobs ?? 1)) {
        const job = this.nextJob(peer);
        if (!job) return;
        this.assign(peer, job);
      }
    }
  }

  private canEncode(peer: Peer, codec: string): boolean {
    return peer.capabilities?.engines.some((e) => e.codecs.includes(codec)) ?? false;
  }

  /**
   * Picks the next job: re-queued shards first (they have waited longest),
   * then the earliest pending shard of any content, in publication order.
   */
  private nextJob(peer: Peer): Job | undefined {
    type Candidate = { content: Content; order: number; rendition: string; index: number; retry: boolean };
    let best: Candidate | undefined;
    const better = (a: Candidate, b: Candidate) =>
      a.retry !== b.retry ? a.retry : a.order !== b.order ? a.order < b.order : a.index < b.index;
    this.store.all().forEach((content, order) => {
      const map = content.map;
      for (const r of map.renditions) {
        const codec = isVideoRendition(r) ? r.video.codec : r.audio.codec;
        if (!this.canEncode(peer, codec)) continue;
        for (let i = 0; i < map.shards.length; i++) {
          const st = map.shards[i]!.renditions[r.id];
          if (!st || st.status !== 'pending') continue;
          const key = shardKeyString({ contentId: map.contentId, rendition: r.id, index: i });
          if (this.inFlight.has(key)) continue;
          const c: Candidate = { content, order, rendition: r.id, index: i, retry: (this.attempts.get(key) ?? 0) > 0 };
          if (!best || better(c, best)) best = c;
          break; // later shards of this rendition come after this one
        }
      }
    });
    const pick = best as Candidate | undefined;
    return pick && this.buildJob(pick.content, pick.rendition, pick.index);
  }

  private buildJob(content: Content, renditionId: string, first: number): Job {
    const map = content.map;
    const r = map.renditions.find((x) => x.id === renditionId)!;
    const keyframes = content.meta.facts.video?.keyframeTimes ?? [];
    const keyOf = (i: number) => shardKeyString({ contentId: map.contentId, rendition: renditionId, index: i });
    // Re-queued shards travel together, apart from fresh ones, so a lost job comes back as exactly its unfinished part.
    const retry = (this.attempts.get(keyOf(first)) ?? 0) > 0;
    // One exec encodes one spec: a per-shard override of codec, size or bitrate ends the run.
    const specOf = (i: number) => (isVideoRendition(r) ? JSON.stringify(effectiveVideoSpec(map, map.shards[i]!, renditionId)) : '');
    const spec = specOf(first);
    const indices = planRun(
      map,
      renditionId,
      first,
      (i) => {
        const st = map.shards[i]!.renditions[renditionId];
        return st?.status === 'pending' && !this.inFlight.has(keyOf(i)) && (this.attempts.get(keyOf(i)) ?? 0) > 0 === retry && specOf(i) === spec;
      },
      keyframes,
      this.config,
    );
    const shards = indices.map((i) => {
      const s = map.shards[i]!;
      const st = s.renditions[renditionId]!;
      const audio = isAudioRendition(r);
      return {
        index: i,
        start: audio ? st.start ?? s.start : s.start,
        duration: audio && st.samples ? st.samples / r.audio.sampleRate : s.duration,
        frames: s.frames,
        firstFrame: s.firstFrame,
        ...(audio && st.samples !== undefined && { samples: st.samples }),
      };
    });
    const start = shards[0]!.start;
    const last = shards[shards.length - 1]!;
    const end = last.start + last.duration;
    const kind = isAudioRendition(r) ? 'audio' : 'video';
    const id = randomBytes(8).toString('hex');
    const seconds = end - start;
    // Audio runs that meet another run carry ~100 ms extra on that side, for the viewer to trim.
    let leadPackets = 0;
    let tailPackets = 0;
    if (isAudioRendition(r)) {
      const packetSec = AAC_PACKET_SAMPLES / r.audio.sampleRate;
      const margin = Math.ceil(AUDIO_RUN_OVERLAP / packetSec);
      const audioStart = content.meta.facts.audio?.start ?? 0;
      leadPackets = Math.min(margin, Math.max(0, Math.floor((start - audioStart) / packetSec + 1e-6)));
      const lastAudio = map.shards.findLastIndex((s) => s.renditions[renditionId] !== undefined);
      tailPackets = last.index < lastAudio ? margin : 0;
    }
    const packetSec = isAudioRendition(r) ? AAC_PACKET_SAMPLES / r.audio.sampleRate : 0;
    const q = new URLSearchParams({
      start: Math.max(0, start - leadPackets * packetSec).toFixed(6),
      end: (end + tailPackets * packetSec).toFixed(6),
      tracks: kind,
    });
    return {
      id,
      contentId: map.contentId,
      rendition: renditionId,
      kind,
      ...(isVideoRendition(r) && { video: effectiveVideoSpec(map, map.shards[first]!, renditionId) }),
      ...(isAudioRendition(r) && { audio: r.audio }),
      shards,
      sourceUrl: `/api/contents/${encodeURIComponent(map.contentId)}/source?${q.toString()}`,
      start,
      end,
      deadline: this.now() + Math.max(this.config.jobDeadlineMinMs, Math.round(seconds * this.config.jobDeadlineMsPerSecond)),
      upload: this.config.cacheEnabled,
      ...(kind === 'audio' && { leadPackets, tailPackets }),
    };
  }

  private assign(peer: Peer, job: Job): void {
    const content = this.store.get(job.contentId)!;
    for (const s of job.shards) {
      this.inFlight.set(shardKeyString({ contentId: job.contentId, rendition: job.rendition, index: s.index }), job.id);
      const st = content.map.shards[s.index]!.renditions[job.rendition]!;
      st.status = 'encoding';
    }
    this.jobs.set(job.id, { job, peerId: peer.id, assignedAt: this.now(), done: new Set(), progress: 0 });
    peer.jobs.add(job.id);
    this.counters.jobsAssigned++;
    peer.conn.send({ type: 'job', job });
    this.emit('job-assigned', { jobId: job.id, peerId: peer.id, key: `${job.contentId}/${job.rendition}`, shards: job.shards.length });
  }

  /** Called when a content is deleted: its jobs are cancelled and its holdings forgotten. */
  forgetContent(contentId: string): void {
    for (const [jobId, aj] of [...this.jobs]) {
      if (aj.job.contentId !== contentId) continue;
      this.jobs.delete(jobId);
      const p = this.peers.get(aj.peerId);
      p?.jobs.delete(jobId);
      p?.conn.send({ type: 'job-cancel', jobId, reason: 'content deleted' });
    }
    const prefix = `${contentId}/`;
    for (const key of [...this.inFlight.keys()]) if (key.startsWith(prefix)) this.inFlight.delete(key);
    for (const key of [...this.holders.keys()]) {
      if (!key.startsWith(prefix)) continue;
      for (const p of this.holders.get(key)!) this.peers.get(p)?.holdings.delete(key);
      this.holders.delete(key);
    }
    this.schedule();
  }

  /** A snapshot for /pool and /metrics. */
  snapshot() {
    return {
      peers: [...this.peers.values()].map((p) => ({
        id: p.id,
        role: p.role,
        joinedAt: p.joinedAt,
        lastSeen: p.lastSeen,
        jobs: [...p.jobs],
        holdings: p.holdings.size,
        completedJobs: p.completedJobs,
        failedJobs: p.failedJobs,
        shardsEncoded: p.shardsEncoded,
        engines: p.capabilities?.engines ?? [],
      })),
      jobs: [...this.jobs.values()].map((aj) => ({
        id: aj.job.id,
        peerId: aj.peerId,
        contentId: aj.job.contentId,
        rendition: aj.job.rendition,
        shards: aj.job.shards.map((s) => s.index),
        done: aj.done.size,
        progress: aj.progress,
        deadline: aj.job.deadline,
      })),
      counters: { ...this.counters },
      events: this.recentEvents.slice(-50),
    };
  }
}
