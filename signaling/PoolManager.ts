/**
 * The pool manager: who is connected, which jobs run where, and which shard
 * variant is held by whom. Transport-agnostic: the WebSocket layer hands it
 * validated messages and gives it a `send` function.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
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
import { ProtocolError } from '../src/shared/errors.ts';
export { ProtocolError };
import { planRun } from './jobs.ts';
import { Demand } from './policy/Demand.ts';
import { Health } from './policy/Health.ts';
import { Trust } from './policy/Trust.ts';

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
  /** Transfers the peer is serving now (heartbeat). */
  serving: number;
}

/** Why a job was given out: live (near a viewer's playhead), start (of a content), or background (pre-encoding). */
export type JobClass = 'live' | 'start' | 'background';

export interface ActiveJob {
  job: Job;
  peerId: string;
  assignedAt: number;
  done: Set<number>;
  progress: number;
  klass: JobClass;
  /** Set when the job re-encodes accepted shards to cross-check another encoder. */
  check?: CrossCheck;
  /** Cross-check jobs: what this encoder reported per shard index. */
  results?: Map<number, Reported>;
}

/** A shard's bytes, checked by the server (structure, hash, size) after an upload with the job's token. */
export interface StagedShard {
  sha256: string;
  size: number;
  lead?: number;
  tail?: number;
  /** Kept only when the cache is on: they go there on acceptance. */
  bytes?: Uint8Array;
}

interface Reported extends StagedShard {
  engine?: string;
}

/**
 * A re-encode of shards another encoder made. Stage 'verify': a second encoder
 * of the same engine encodes them; stage 'decide': a third settles the shards
 * where the first two differ.
 */
export interface CrossCheck {
  stage: 'verify' | 'decide';
  contentId: string;
  rendition: string;
  indices: number[];
  /** Engine and build of the checked encodes; hashes are only compared between equal engine strings. */
  engine: string;
  /** The encoder whose accepted shards are checked. */
  origin: string;
  /** The accepted hashes when the check was planned, by index. */
  expected: Map<number, string>;
  /** Stage 'decide': the second encoder and what it reported. */
  verifier?: string;
  verifierResults?: Map<number, Reported>;
  /** Encoders that may not do this check. */
  exclude: Set<string>;
}

export interface PoolEvents {
  'peer-joined': { peerId: string; role: Role };
  'peer-lost': { peerId: string; role: Role; reason: string; requeued: number };
  'job-assigned': { jobId: string; peerId: string; key: string; shards: number; klass: JobClass };
  'job-requeued': { jobId: string; peerId: string; indices: number[]; rendition: string; contentId: string; reason: string };
  'job-done': { jobId: string; peerId: string };
  'shard-accepted': { key: ShardKey; peerId: string; sha256: string; bytes?: Uint8Array };
  /** An accepted variant is taken back (its encoder was caught); any cached copy must go. */
  'shard-revoked': { key: ShardKey; peerId: string; reason: string };
  'check-planned': { stage: 'verify' | 'decide'; origin: string; key: string; shards: number };
  'check-passed': { origin: string; verifier: string; key: string; shards: number };
  'encoder-convicted': { peerId: string; wrong: number; revoked: number };
  'shard-rejected': { key: ShardKey; peerId: string; reason: string };
  'shard-failed': { key: ShardKey; attempts: number };
  'content-complete': { contentId: string };
  'encoder-quarantined': { peerId: string; reason: string; until: number };
  'replicate': { key: string; peerId: string; from: number; cached: boolean; reason: string };
  'replica-stored': { key: string; peerId: string };
  'replica-released': { key: string; peerId: string };
  'shard-orphaned': { key: string; action: 're-encode' | 'from-cache' };
  'job-preempted': { jobId: string; peerId: string; for: string };
}

export interface PoolEventRecord {
  at: number;
  type: keyof PoolEvents;
  detail: unknown;
}

export class PoolManager extends TypedEmitter<PoolEvents> {
  readonly peers = new Map<string, Peer>();
  /**
   * Secret per peer id, kept after a peer leaves so its tab can reconnect under
   * the same id (and health/trust record). Ids are public (/api/pool), so an id
   * alone must not be enough to take one over. Oldest dropped past the cap.
   */
  private readonly resumeSecrets = new Map<string, string>();
  private static readonly MAX_RESUME_SECRETS = 100_000;
  readonly jobs = new Map<string, ActiveJob>();
  /** shard variant key -> ids of peers holding the accepted bytes. */
  readonly holders = new Map<string, Set<string>>();
  /** shard variant key -> job id while it is being encoded. */
  private readonly inFlight = new Map<string, string>();
  /** shard variant key -> failed attempts so far. */
  private readonly attempts = new Map<string, number>();
  readonly recentEvents: PoolEventRecord[] = [];
  readonly counters = {
    jobsAssigned: 0,
    jobsCompleted: 0,
    requeues: 0,
    shardsAccepted: 0,
    shardsRejected: 0,
    locates: 0,
    badMessages: 0,
    replications: 0,
    releases: 0,
    quarantines: 0,
    preemptions: 0,
    orphans: 0,
    /** Time spent checking uploaded shards (structure, hash), ms, and their bytes. */
    intakeChecks: 0,
    intakeCheckMs: 0,
    intakeBytes: 0,
    intakeRefused: 0,
  };
  readonly health: Health;
  readonly trust: Trust;
  /** Cross-checks waiting for an able verifier, oldest first. */
  readonly checks: CrossCheck[] = [];
  /** upload token -> job id. */
  private readonly uploadTokens = new Map<string, string>();
  /** "jobId/index" -> the shard's checked bytes, until its shard-ready. */
  private readonly staged = new Map<string, StagedShard>();
  readonly demand: Demand;
  /** shard variant key -> peer -> when a `replicate` was sent and not yet answered. */
  private readonly replicating = new Map<string, Map<string, number>>();
  /** peer -> until when it is not asked to replicate (it let an order time out, or failed one). */
  private readonly replicateBackoff = new Map<string, number>();
  /** shard variant key -> peers holding a copy made by replication (releasable). */
  readonly replicas = new Map<string, Set<string>>();
  /** shard variant key -> since when its demand has been below the release rate. */
  private readonly coolSince = new Map<string, number>();
  /** Reports of bad bytes already counted, "reporter key peer", so one viewer cannot count twice. */
  private readonly reported = new Set<string>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweepPeriod = 1000;
  /** Replicate orders sent to each encoder since the last sweep (see replicateTo). */
  private replicateOrdersThisSweep = new Map<string, number>();
  /** Epoch ms at which shards accepted before this start that no tab has announced are re-queued (once); see start(). */
  private unheldCheckAt: number | undefined;
  private lastSweep = 0;
  private scheduleQueued = false;

  constructor(
    private readonly store: ContentStore,
    private readonly config: ServerConfig,
    private readonly now: () => number = Date.now,
    /** Whether the server's cache holds a shard variant. */
    private readonly isCached: (k: ShardKey) => boolean = () => false,
    /** Draws for the trust sampling (tests pass a fixed sequence). */
    random: () => number = Math.random,
  ) {
    super();
    this.health = new Health(config, now);
    this.demand = new Demand(config, now);
    this.trust = new Trust(config, random);
    for (const type of [
      'peer-joined',
      'peer-lost',
      'job-assigned',
      'job-requeued',
      'shard-rejected',
      'shard-failed',
      'content-complete',
      'encoder-quarantined',
      'replicate',
      'replica-stored',
      'replica-released',
      'shard-orphaned',
      'job-preempted',
      'shard-revoked',
      'check-planned',
      'check-passed',
      'encoder-convicted',
    ] as const) {
      this.on(type, (detail) => {
        this.recentEvents.push({ at: this.now(), type, detail });
        if (this.recentEvents.length > 200) this.recentEvents.splice(0, this.recentEvents.length - 200);
      });
    }
  }

  start(): void {
    const period = Math.max(100, Math.min(1000, this.config.heartbeatTimeoutMs / 4));
    this.sweepPeriod = period;
    this.sweepTimer = setInterval(() => this.sweep(), period);
    this.sweepTimer.unref();
    // After a restart nobody holds anything until tabs reconnect and announce their holdings.
    // A tab not back within the heartbeat timeout is as lost as a silent one: a shard only it
    // held, with no cached copy either (a kill can come between acknowledgement and cache
    // write), would otherwise stay "ready" with no copy anywhere, and never be encoded again.
    this.unheldCheckAt = this.now() + this.config.heartbeatTimeoutMs;
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
    if (!id || this.peers.has(id) || !this.resumes(id, hello.resume)) id = randomBytes(9).toString('base64url').replace(/[-_]/g, 'x');
    const resume = randomBytes(18).toString('base64url');
    this.resumeSecrets.delete(id);
    this.resumeSecrets.set(id, resume);
    if (this.resumeSecrets.size > PoolManager.MAX_RESUME_SECRETS) this.resumeSecrets.delete(this.resumeSecrets.keys().next().value!);
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
      serving: 0,
    };
    this.peers.set(id, peer);
    if (hello.role === 'encoder') this.health.benchmark(id, Math.max(0, ...(hello.capabilities?.engines.map((e) => e.speed ?? 0) ?? [0])) || undefined);
    conn.send({ type: 'welcome', protocol: 1, peerId: id, resume, heartbeatMs: this.config.heartbeatMs, iceServers: this.config.iceServers });
    for (const h of hello.holdings ?? []) {
      // Only bytes matching the accepted hash count: a holding is a claim, not proof.
      const st = this.store.get(h.key.contentId)?.map.shards[h.key.index]?.renditions[h.key.rendition];
      if (!st || st.sha256 !== h.sha256) continue;
      // A reloaded tab brings back a shard orphaned while it was away: no need to encode it again.
      if (st.status === 'pending') st.status = 'ready';
      if (st.status === 'ready') this.addHolder(id, shardKeyString(h.key));
    }
    this.emit('peer-joined', { peerId: id, role: hello.role });
    // A viewer brings no capacity and no work: nothing to schedule.
    if (hello.role === 'encoder') this.schedule();
    return id;
  }

  private resumes(id: string, secret: string | undefined): boolean {
    const known = this.resumeSecrets.get(id);
    if (!known || !secret || known.length !== secret.length) return false;
    return timingSafeEqual(Buffer.from(known), Buffer.from(secret));
  }

  /** The peer's socket closed or it went silent: its unfinished work goes back to the queue at once. */
  leave(peerId: string, reason: string): void {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    this.peers.delete(peerId);
    let requeued = 0;
    for (const jobId of [...peer.jobs]) requeued += this.requeueJob(jobId, `encoder lost: ${reason}`, false);
    for (const key of peer.holdings) this.removeHolder(peerId, key);
    for (const pending of this.replicating.values()) pending.delete(peerId);
    this.replicateBackoff.delete(peerId);
    if (peer.role === 'viewer') this.demand.leave(peerId);
    this.emit('peer-lost', { peerId, role: peer.role, reason, requeued });
    if (peer.role === 'encoder') this.schedule();
  }

  private sweep(): void {
    // When the server itself is behind (a long task), the sweep runs late and messages wait unread:
    // allow for that lateness, or a busy server would drop healthy tabs and feed itself more work.
    const now0 = this.now();
    this.replicateOrdersThisSweep.clear();
    const late = this.lastSweep ? Math.max(0, now0 - this.lastSweep - this.sweepPeriod) : 0;
    this.lastSweep = now0;
    const cutoff = now0 - this.config.heartbeatTimeoutMs - late;
    for (const p of [...this.peers.values()]) {
      if (p.lastSeen < cutoff) {
        p.conn.close(4000, 'missed heartbeats');
        this.leave(p.id, 'missed heartbeats');
      }
    }
    const now = this.now();
    if (this.unheldCheckAt !== undefined && now >= this.unheldCheckAt) {
      this.unheldCheckAt = undefined;
      this.requeueUnheld();
    }
    for (const [jobId, aj] of [...this.jobs]) {
      if (aj.job.deadline < now) {
        this.peers.get(aj.peerId)?.conn.send({ type: 'job-cancel', jobId, reason: 'deadline passed' });
        this.requeueJob(jobId, 'deadline passed', true);
        this.noteFailure(aj.peerId, 'timeout');
      }
    }
    this.replicationPass();
    this.health.prune((id) => this.peers.has(id));
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
        if (msg.serving !== undefined) peer.serving = msg.serving;
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
          this.health.jobDone(peer.id, aj.job.end - aj.job.start, this.now() - aj.assignedAt);
          this.finishJob(msg.jobId);
          this.emit('job-done', { jobId: msg.jobId, peerId: peer.id });
          if (aj.check) this.checkDone(peer, aj);
          else this.planCheck(peer, aj);
        }
        this.schedule();
        return;
      }
      case 'job-failed': {
        this.ownJob(peer, msg.jobId);
        peer.failedJobs++;
        this.requeueJob(msg.jobId, `encoder failed: ${msg.reason}`, true);
        this.noteFailure(peer.id, 'failed');
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
      case 'capabilities':
        if (peer.role !== 'encoder') throw new ProtocolError('not-an-encoder', 'only encoders have capabilities');
        peer.capabilities = msg.capabilities;
        this.health.benchmark(peer.id, Math.max(0, ...msg.capabilities.engines.map((e) => e.speed ?? 0)) || undefined);
        this.schedule();
        return;
      case 'shard-dropped':
        this.removeHolder(peer.id, shardKeyString(msg.key), true);
        this.replicas.get(shardKeyString(msg.key))?.delete(peer.id);
        return;
      case 'shard-stored':
        return this.shardStored(peer, msg);
      case 'replicate-failed':
        this.replicating.get(shardKeyString(msg.key))?.delete(peer.id);
        this.replicateBackoff.set(peer.id, this.now() + this.config.replicateTimeoutMs);
        return;
      case 'report-peer': {
        // Only a report about a peer that claims the shard counts, and once per reporter and shard.
        const key = shardKeyString(msg.key);
        const once = `${peer.id} ${key} ${msg.peerId}`;
        if (!this.holders.get(key)?.has(msg.peerId) || this.reported.has(once)) return;
        this.reported.add(once);
        if (this.reported.size > 100_000) this.reported.clear();
        // The event says a report counted (the /pool page and tests read it that way): emitted only past the checks above.
        this.emit('shard-rejected', { key: msg.key, peerId: msg.peerId, reason: `reported by ${peer.id}: ${msg.reason}` });
        this.removeHolder(msg.peerId, key);
        this.noteInvalid(msg.peerId);
        return;
      }
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
    let staged: StagedShard | undefined;
    if (aj && this.config.testHooks.verifyShardBytes) {
      // The server accepts what it has checked, never an encoder's word: the bytes come first.
      staged = this.staged.get(`${aj.job.id}/${msg.key.index}`);
      const why = !staged
        ? 'not uploaded: PUT the shard with the job\'s upload token before shard-ready'
        : staged.sha256 !== msg.sha256 || staged.size !== msg.size || staged.lead !== msg.lead || staged.tail !== msg.tail
          ? 'the report differs from the uploaded bytes'
          : undefined;
      if (why) {
        this.counters.shardsRejected++;
        peer.conn.send({ type: 'shard-rejected', key: msg.key, reason: why });
        this.emit('shard-rejected', { key: msg.key, peerId: peer.id, reason: why });
        if (staged) this.noteInvalid(peer.id);
        return;
      }
      this.staged.delete(`${aj.job.id}/${msg.key.index}`);
    }
    if (aj?.check) {
      aj.done.add(msg.key.index);
      aj.results!.set(msg.key.index, { sha256: msg.sha256, size: msg.size, ...(msg.lead !== undefined && { lead: msg.lead }), ...(msg.tail !== undefined && { tail: msg.tail }), ...(staged?.bytes && { bytes: staged.bytes }), ...(msg.engine !== undefined && { engine: msg.engine }) });
      // A verifier that agrees holds a verified copy; a decider's verdict waits for the whole job.
      if (aj.check.stage === 'verify') {
        if (st.status === 'ready' && st.sha256 === msg.sha256) {
          this.addHolder(peer.id, key);
          peer.conn.send({ type: 'shard-accepted', key: msg.key, sha256: msg.sha256 });
        } else peer.conn.send({ type: 'shard-rejected', key: msg.key, reason: 'cross-check: differs from the accepted variant; a third encoder decides' });
      }
      return;
    }
    if (st.status === 'ready') {
      if (st.sha256 !== msg.sha256) {
        this.counters.shardsRejected++;
        peer.conn.send({ type: 'shard-rejected', key: msg.key, reason: 'hash differs from the accepted variant' });
        this.emit('shard-rejected', { key: msg.key, peerId: peer.id, reason: 'hash mismatch' });
        return;
      }
    } else {
      // A re-encode of an orphaned shard may differ byte for byte from the lost one: the new variant replaces it.
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
      this.trust.accepted(peer.id, key);
      this.emit('shard-accepted', { key: msg.key, peerId: peer.id, sha256: msg.sha256, ...(staged?.bytes && { bytes: staged.bytes }) });
    }
    if (aj) {
      aj.done.add(msg.key.index);
      this.inFlight.delete(key);
    }
    this.addHolder(peer.id, key);
    peer.conn.send({ type: 'shard-accepted', key: msg.key, sha256: msg.sha256 });
    if (this.isComplete(content)) this.emit('content-complete', { contentId: content.meta.id });
  }

  /** `dropped`: the peer evicted it to make room, so it is no place to copy it back to. */
  private removeHolder(peerId: string, key: string, dropped = false): void {
    this.peers.get(peerId)?.holdings.delete(key);
    const set = this.holders.get(key);
    if (!set?.delete(peerId)) return;
    if (set.size === 0) {
      this.holders.delete(key);
      this.orphaned(key, dropped ? peerId : undefined);
    }
  }

  private addHolder(peerId: string, key: string): void {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    // The holders index grows with what encoders claim: one encoder cannot grow it without bound.
    if (!peer.holdings.has(key) && peer.holdings.size >= this.config.maxHoldingsPerEncoder) return;
    peer.holdings.add(key);
    let set = this.holders.get(key);
    if (!set) this.holders.set(key, (set = new Set()));
    set.add(peerId);
  }

  private locate(peer: Peer, msg: Extract<ClientMessage, { type: 'locate' }>): void {
    const content = this.store.get(msg.contentId);
    if (!content) throw new ProtocolError('unknown-content', `no content ${msg.contentId}`);
    this.counters.locates++;
    // A window past the end (valid: `from` is bounded by the schema, not by this content) asks for nothing;
    // a negative count would run the requests counter backwards.
    if (peer.role === 'viewer') this.demand.locate(peer.id, msg.contentId, msg.from, Math.max(0, Math.min(msg.count, content.map.shards.length - msg.from)));
    const renditions = msg.renditions ?? content.map.renditions.map((r) => r.id);
    const shards: HolderEntry[] = [];
    const end = Math.min(content.map.shards.length, msg.from + msg.count);
    for (let i = msg.from; i < end; i++) {
      const s = content.map.shards[i]!;
      for (const r of renditions) {
        const st = s.renditions[r];
        if (!st) continue;
        // Quarantined peers are not offered; the least busy come first.
        const peers = [...(this.holders.get(shardKeyString({ contentId: msg.contentId, rendition: r, index: i })) ?? [])]
          .filter((p) => p !== peer.id && !this.health.isQuarantined(p))
          .sort((a, b) => (this.peers.get(a)?.serving ?? 0) - (this.peers.get(b)?.serving ?? 0));
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
    this.forgetUploads(aj);
    this.counters.jobsCompleted++;
  }

  private forgetUploads(aj: ActiveJob): void {
    if (aj.job.uploadToken) this.uploadTokens.delete(aj.job.uploadToken);
    for (const s of aj.job.shards) this.staged.delete(`${aj.job.id}/${s.index}`);
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
    this.forgetUploads(aj);
    if (aj.check) {
      // A check's shards are accepted already: only the check goes back, for someone else.
      aj.check.exclude.add(aj.peerId);
      this.checks.unshift(aj.check);
      this.counters.requeues++;
      return 0;
    }
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

  /**
   * Gives pending work to encoders with free slots: the best-scoring encoders
   * first, the most urgent work first (live, then content starts, then
   * background pre-encoding, which pauses while live work waits).
   *
   * The candidate list is built once per call (not once per encoder): with
   * hundreds of encoders and viewers the per-encoder scan was the server's
   * main cost. After each assignment only that content and rendition's
   * candidates are rebuilt.
   */
  schedule(): void {
    const slots = (p: Peer) => Math.min(p.capabilities?.maxJobs ?? 1, this.config.maxJobsPerEncoder) - p.jobs.size;
    const free = [...this.peers.values()].filter((p) => p.role === 'encoder' && slots(p) > 0 && !this.health.isQuarantined(p.id));
    const playheads = this.playheadTimes();
    const list = this.candidates(playheads);
    // Cross-checks go before pre-encoding but never hold up live work.
    if (!list.some((c) => c.klass === 'live')) this.assignChecks(free, slots);
    if (free.length > 0 && list.length > 0) {
      // Fast, reliable encoders take the most urgent jobs; ties go to the least loaded.
      free.sort((a, b) => this.health.score(b.id) - this.health.score(a.id) || a.jobs.size - b.jobs.size || a.joinedAt - b.joinedAt);
      for (const peer of free) {
        while (slots(peer) > 0) {
          const i = list.findIndex((c) => this.canEncode(peer, c.codec));
          const pick = list[i];
          if (!pick) break;
          // Background work pauses while live work waits.
          if (pick.klass === 'background' && list.some((c) => c.klass === 'live')) break;
          this.assign(peer, this.buildJob(pick.content, pick.rendition, pick.index), pick.klass);
          this.refresh(list, pick, playheads);
        }
      }
    }
    this.preemptForLive(list, playheads);
  }

  /** Coalesces many schedule requests from one burst of events into one pass. */
  private scheduleSoon(): void {
    if (this.scheduleQueued) return;
    this.scheduleQueued = true;
    setImmediate(() => {
      this.scheduleQueued = false;
      this.schedule();
    });
  }

  /**
   * When live work waits and every able encoder is busy, one background job
   * gives way: it is cancelled (not counted as a failure) and its encoder
   * takes the live job. Background work is short, so little is lost.
   */
  private preemptForLive(list: Candidate[], playheads: Map<string, number[]>): void {
    const live = list.filter((c) => c.klass === 'live');
    if (live.length === 0) return;
    // The job with the least work done gives way: least progress, and among jobs too short to report any, the newest.
    const running = [...this.jobs.values()].filter((aj) => aj.klass === 'background').sort((a, b) => a.progress - b.progress || b.assignedAt - a.assignedAt);
    for (const aj of running) {
      const peer = this.peers.get(aj.peerId);
      const pick = peer && live.find((c) => this.canEncode(peer, c.codec));
      if (!peer || !pick) continue;
      peer.conn.send({ type: 'job-cancel', jobId: aj.job.id, reason: 'preempted by live demand' });
      this.requeueJob(aj.job.id, 'preempted by live demand', false);
      this.counters.preemptions++;
      this.emit('job-preempted', { jobId: aj.job.id, peerId: peer.id, for: `${pick.content.meta.id}/${pick.rendition}/${pick.index}` });
      this.assign(peer, this.buildJob(pick.content, pick.rendition, pick.index), 'live');
      this.refresh(list, pick, playheads);
      return;
    }
  }

  /** Active viewers' playhead times, per content, one per distinct shard. */
  private playheadTimes(): Map<string, number[]> {
    const out = new Map<string, Set<number>>();
    for (const p of this.demand.active()) {
      let set = out.get(p.contentId);
      if (!set) out.set(p.contentId, (set = new Set()));
      set.add(p.index);
    }
    const times = new Map<string, number[]>();
    for (const [id, set] of out) {
      const shards = this.store.get(id)?.map.shards;
      if (shards) times.set(id, [...set].flatMap((i) => (shards[i] ? [shards[i].start] : [])));
    }
    return times;
  }

  private canEncode(peer: Peer, codec: string): boolean {
    return peer.capabilities?.engines.some((e) => e.codecs.includes(codec)) ?? false;
  }

  /**
   * The engine of a peer that finishes a job of `codec` soonest: the fastest
   * of its engines that make the codec, by the join benchmark (every engine
   * benchmarks the same 320x180 encode, so the speeds compare; WebCodecs H.264
   * ran 4-15x ffmpeg.wasm here). Each engine's rate control is set to reach
   * the rendition's quality target (src/encoder/config.ts), so speed decides.
   * The job names the engine, so the pool's choice is what runs.
   */
  private engineFor(peer: Peer, codec: string): string | undefined {
    let best: { name: string; speed: number } | undefined;
    for (const e of peer.capabilities?.engines ?? []) {
      if (!e.codecs.includes(codec)) continue;
      const speed = e.speed ?? 0;
      if (!best || speed > best.speed) best = { name: e.name, speed };
    }
    return best?.name;
  }

  /** Every content and rendition's candidates, most urgent first. */
  private candidates(playheads: Map<string, number[]>): Candidate[] {
    const out: Candidate[] = [];
    this.store.all().forEach((content, order) => {
      for (const r of content.map.renditions) out.push(...this.candidatesOf(content, order, r.id, playheads));
    });
    return out.sort(compareCandidates);
  }

  /** After an assignment: that content and rendition's candidates again, in place. */
  private refresh(list: Candidate[], pick: Candidate, playheads: Map<string, number[]>): void {
    for (let i = list.length - 1; i >= 0; i--) if (list[i]!.content === pick.content && list[i]!.rendition === pick.rendition) list.splice(i, 1);
    for (const c of this.candidatesOf(pick.content, pick.order, pick.rendition, playheads)) {
      const at = list.findIndex((x) => compareCandidates(c, x) < 0);
      list.splice(at < 0 ? list.length : at, 0, c);
    }
  }

  /**
   * One content and rendition's candidates: the first pending shard at or
   * after each viewer's playhead (live: the nearer, the sooner), and the first
   * pending shard at all, re-queued and fresh apart (start, when it is in the
   * content's first seconds; else background, by predicted demand).
   */
  private candidatesOf(content: Content, order: number, renditionId: string, playheads: Map<string, number[]>): Candidate[] {
    const map = content.map;
    const r = map.renditions.find((x) => x.id === renditionId)!;
    const codec = isVideoRendition(r) ? r.video.codec : r.audio.codec;
    const keyOf = (i: number) => shardKeyString({ contentId: map.contentId, rendition: renditionId, index: i });
    const pendingAt = (i: number) => map.shards[i]!.renditions[renditionId]?.status === 'pending' && !this.inFlight.has(keyOf(i));
    const retryOf = (i: number) => (this.attempts.get(keyOf(i)) ?? 0) > 0;
    const out: Candidate[] = [];
    const base = { content, order, rendition: renditionId, codec };
    for (const t of playheads.get(map.contentId) ?? []) {
      for (let i = 0; i < map.shards.length; i++) {
        const s = map.shards[i]!;
        if (s.start + s.duration <= t) continue;
        if (s.start > t + this.config.liveWindowSeconds) break;
        if (!pendingAt(i)) continue;
        if (!out.some((c) => c.index === i)) out.push({ ...base, index: i, klass: 'live', urgency: s.start - t, retry: retryOf(i) });
        break;
      }
    }
    for (const retry of [true, false]) {
      const first = map.shards.findIndex((_s, i) => pendingAt(i) && retryOf(i) === retry);
      if (first < 0) continue;
      const s = map.shards[first]!;
      if (out.some((c) => c.index === first)) continue;
      if (s.start < this.config.startSeconds) out.push({ ...base, index: first, klass: 'start', urgency: s.start, retry });
      else out.push({ ...base, index: first, klass: 'background', urgency: -this.demand.predicted(map.contentId, s.start), retry });
    }
    return out;
  }

  // ------------------------------------------------------------ health

  private noteFailure(peerId: string, kind: 'failed' | 'timeout'): void {
    const reason = this.health.jobFailed(peerId, kind);
    if (reason) this.quarantined(peerId, reason);
  }

  private noteInvalid(peerId: string): void {
    const reason = this.health.invalidShard(peerId);
    if (reason) this.quarantined(peerId, reason);
  }

  /** A quarantined encoder's jobs go back to the queue and viewers stop being sent to it. */
  private quarantined(peerId: string, reason: string): void {
    this.counters.quarantines++;
    const peer = this.peers.get(peerId);
    for (const jobId of [...(peer?.jobs ?? [])]) {
      peer?.conn.send({ type: 'job-cancel', jobId, reason: `quarantined: ${reason}` });
      this.requeueJob(jobId, `encoder quarantined: ${reason}`, false);
    }
    this.emit('encoder-quarantined', { peerId, reason, until: this.health.get(peerId).quarantinedUntil });
  }

  // ------------------------------------------------------------ verification

  /**
   * An upload of a shard's bytes (HTTP PUT) names its job by the job's upload
   * token, which only the encoder it was sent to has seen. Returns the job and
   * the peer, or throws a ProtocolError (unknown token, shard not in the job).
   */
  uploadTarget(token: string, key: ShardKey): { job: Job; peerId: string } {
    const jobId = this.uploadTokens.get(token);
    const aj = jobId ? this.jobs.get(jobId) : undefined;
    if (!aj) throw new ProtocolError('bad-upload-token', 'this upload token belongs to no running job (it may have been re-queued)');
    if (aj.job.contentId !== key.contentId || aj.job.rendition !== key.rendition || !aj.job.shards.some((s) => s.index === key.index)) {
      throw new ProtocolError('not-in-job', `shard ${shardKeyString(key)} is not part of the token's job`);
    }
    return { job: aj.job, peerId: aj.peerId };
  }

  /** The server checked an upload's bytes: they wait for the encoder's shard-ready. */
  stage(jobId: string, index: number, shard: StagedShard, checkMs: number): void {
    if (!this.jobs.has(jobId)) return;
    this.staged.set(`${jobId}/${index}`, shard);
    this.counters.intakeChecks++;
    this.counters.intakeCheckMs += checkMs;
    this.counters.intakeBytes += shard.size;
  }

  /** An upload failed the structure check: the shard is rejected with the reason, and it counts against the encoder. */
  uploadRefused(jobId: string, key: ShardKey, reason: string): void {
    const aj = this.jobs.get(jobId);
    if (!aj) return;
    this.counters.intakeRefused++;
    this.counters.shardsRejected++;
    this.peers.get(aj.peerId)?.conn.send({ type: 'shard-rejected', key, reason });
    this.emit('shard-rejected', { key, peerId: aj.peerId, reason });
    this.noteInvalid(aj.peerId);
  }

  /** After an encoder's job: maybe have another encoder of the same engine make the same shards. */
  private planCheck(peer: Peer, aj: ActiveJob): void {
    const content = this.store.get(aj.job.contentId);
    if (!content) return;
    const expected = new Map<number, string>();
    let engine: string | undefined;
    for (const s of aj.job.shards) {
      const st = content.map.shards[s.index]?.renditions[aj.job.rendition];
      if (st?.status !== 'ready' || !st.sha256 || !this.holders.get(shardKeyString({ contentId: aj.job.contentId, rendition: aj.job.rendition, index: s.index }))?.has(peer.id)) continue;
      expected.set(s.index, st.sha256);
      engine ??= st.engine;
    }
    if (expected.size === 0) return;
    // An engine not known to be deterministic would be blamed for its own noise: not compared by hash.
    if (!engine || !this.config.verifyEngines.split(',').map((e) => e.trim()).includes(engine.split('@')[0]!)) {
      this.trust.counters.unverifiable += expected.size;
      return;
    }
    if (!this.trust.shouldCheck(peer.id)) return;
    this.queueCheck({ stage: 'verify', contentId: aj.job.contentId, rendition: aj.job.rendition, indices: [...expected.keys()], engine, origin: peer.id, expected, exclude: new Set([peer.id]) });
  }

  private queueCheck(c: CrossCheck): void {
    if (c.stage === 'decide') this.checks.unshift(c);
    else this.checks.push(c);
    while (this.checks.length > this.config.verifyQueueMax) this.trust.counters.unverifiable += this.checks.pop()!.indices.length;
    this.emit('check-planned', { stage: c.stage, origin: c.origin, key: `${c.contentId}/${c.rendition}/${c.indices[0]}`, shards: c.indices.length });
    this.scheduleSoon();
  }

  /** Gives waiting checks to free encoders that run the same engine and are not party to them. */
  private assignChecks(free: Peer[], slots: (p: Peer) => number): void {
    for (let i = 0; i < this.checks.length; i++) {
      const c = this.checks[i]!;
      const content = this.store.get(c.contentId);
      // Shards replaced or revoked meanwhile are not checked against a stale hash.
      const indices = content ? c.indices.filter((x) => content.map.shards[x]?.renditions[c.rendition]?.sha256 === c.expected.get(x)) : [];
      if (indices.length === 0) {
        this.checks.splice(i--, 1);
        continue;
      }
      const r = content!.map.renditions.find((x) => x.id === c.rendition)!;
      const codec = isVideoRendition(r) ? r.video.codec : r.audio.codec;
      const engineName = c.engine.split('@')[0];
      // A holder of one of the shards would overwrite the copy it serves with its re-encode: not asked.
      const holdsAny = (p: Peer) => indices.some((x) => p.holdings.has(shardKeyString({ contentId: c.contentId, rendition: c.rendition, index: x })));
      const peer = free.find(
        (p) =>
          slots(p) > 0 &&
          !c.exclude.has(p.id) &&
          !this.health.isQuarantined(p.id) &&
          !holdsAny(p) &&
          (p.capabilities?.engines.some((e) => e.name === engineName && e.codecs.includes(codec)) ?? false),
      );
      if (!peer) continue;
      this.checks.splice(i--, 1);
      c.indices = indices;
      this.assign(peer, this.buildJob(content!, c.rendition, indices[0]!, indices), 'background', c);
    }
  }

  /** A check job finished: compare, and either pass the checked encoder, ask a third, or convict. */
  private checkDone(peer: Peer, aj: ActiveJob): void {
    const c = aj.check!;
    const results = aj.results!;
    const keyOf = (index: number) => shardKeyString({ contentId: c.contentId, rendition: c.rendition, index });
    const st = (index: number) => this.store.get(c.contentId)?.map.shards[index]?.renditions[c.rendition];
    // Hashes of different engines or builds prove nothing either way.
    const comparable = c.indices.filter((i) => results.get(i)?.engine === c.engine && st(i)?.sha256 === c.expected.get(i));
    this.trust.counters.unverifiable += c.indices.length - comparable.length;
    if (c.stage === 'verify') {
      const differ = comparable.filter((i) => results.get(i)!.sha256 !== c.expected.get(i));
      for (const i of comparable) if (!differ.includes(i)) this.trust.verified(c.origin, keyOf(i));
      if (differ.length === 0) {
        this.trust.passed(c.origin);
        this.emit('check-passed', { origin: c.origin, verifier: peer.id, key: keyOf(c.indices[0]!), shards: comparable.length });
        return;
      }
      this.trust.counters.mismatches += differ.length;
      this.queueCheck({ ...c, stage: 'decide', indices: differ, verifier: peer.id, verifierResults: results, exclude: new Set([...c.exclude, peer.id]) });
      return;
    }
    // Decide: the third encode sides with the checked encoder or with the verifier.
    const originWrong: number[] = [];
    const verifierWrong: number[] = [];
    for (const i of c.indices) {
      const k = { contentId: c.contentId, rendition: c.rendition, index: i };
      const mine = results.get(i);
      if (!comparable.includes(i) || !mine) {
        peer.conn.send({ type: 'shard-rejected', key: k, reason: 'cross-check: not comparable' });
        continue;
      }
      if (mine.sha256 === c.expected.get(i)) {
        verifierWrong.push(i);
        this.trust.verified(c.origin, keyOf(i));
        this.addHolder(peer.id, keyOf(i));
        peer.conn.send({ type: 'shard-accepted', key: k, sha256: mine.sha256 });
      } else if (mine.sha256 === c.verifierResults?.get(i)?.sha256) {
        originWrong.push(i);
        this.replaceVariant(k, peer, mine, c.origin);
      } else {
        this.trust.counters.inconclusive++;
        peer.conn.send({ type: 'shard-rejected', key: k, reason: 'cross-check: three encodes, three results' });
      }
    }
    if (originWrong.length) this.convict(c.origin, originWrong.length);
    if (verifierWrong.length && c.verifier) this.convict(c.verifier, verifierWrong.length);
  }

  /** Two encoders agree against the accepted variant: theirs replaces it, and every copy of the old one is dropped. */
  private replaceVariant(k: ShardKey, decider: Peer, shard: Reported, wrong: string): void {
    const key = shardKeyString(k);
    this.trust.settle(wrong, key);
    this.emit('shard-revoked', { key: k, peerId: wrong, reason: 'replaced after a cross-check' });
    this.store.accept(k.contentId, k.rendition, k.index, {
      sha256: shard.sha256,
      size: shard.size,
      ...(shard.engine !== undefined && { engine: shard.engine }),
      ...(shard.lead !== undefined && { lead: shard.lead }),
      ...(shard.tail !== undefined && { tail: shard.tail }),
    });
    this.addHolder(decider.id, key);
    this.dropOtherHolders(key, decider.id, 'the variant was replaced after a cross-check');
    decider.conn.send({ type: 'shard-accepted', key: k, sha256: shard.sha256 });
    this.emit('shard-accepted', { key: k, peerId: decider.id, sha256: shard.sha256, ...(shard.bytes && { bytes: shard.bytes }) });
  }

  /** Holders other than `keep` hold bytes that are no longer the accepted variant. */
  private dropOtherHolders(key: string, keep: string | undefined, reason: string): void {
    const k = parseKey(key)!;
    for (const p of [...(this.holders.get(key) ?? [])]) {
      if (p === keep) continue;
      this.holders.get(key)?.delete(p);
      this.peers.get(p)?.holdings.delete(key);
      this.replicas.get(key)?.delete(p);
      this.peers.get(p)?.conn.send({ type: 'release', key: k, reason });
    }
    if (this.holders.get(key)?.size === 0) this.holders.delete(key);
  }

  /**
   * An encoder was found in the wrong by two others: quarantine, and its
   * accepted shards that no check covered are taken back (not served,
   * encoded again by others), since they may be wrong too.
   */
  private convict(peerId: string, wrong: number): void {
    const revoked = this.trust.failed(peerId);
    for (const key of revoked) {
      const k = parseKey(key);
      const st = k && this.store.get(k.contentId)?.map.shards[k.index]?.renditions[k.rendition];
      if (!k || st?.status !== 'ready') continue;
      this.emit('shard-revoked', { key: k, peerId, reason: 'its encoder failed a cross-check' });
      this.store.revoke(k.contentId, k.rendition, k.index);
      this.dropOtherHolders(key, undefined, 'revoked: its encoder failed a cross-check');
      this.attempts.delete(key);
    }
    this.emit('encoder-convicted', { peerId, wrong, revoked: revoked.length });
    const reason = this.health.crossCheckFailed(peerId, wrong);
    if (reason) this.quarantined(peerId, reason);
    this.scheduleSoon();
  }

  // ------------------------------------------------------------ replication

  /** Orphans every accepted shard that neither a connected encoder nor the cache holds: it is encoded again. */
  private requeueUnheld(): void {
    for (const c of this.store.all())
      for (const sh of c.map.shards)
        for (const [rendition, st] of Object.entries(sh.renditions)) {
          if (st.status !== 'ready') continue;
          const k = { contentId: c.meta.id, rendition, index: sh.index };
          const key = shardKeyString(k);
          if (!this.holders.get(key)?.size && !this.isCached(k)) this.orphaned(key);
        }
  }

  /**
   * A shard variant's last holder is gone. With a cached copy, an encoder
   * with free room (other than `droppedBy`, which just evicted it) is asked to
   * take it from the cache; none may have room, and then the cache alone
   * serves it. Otherwise it is encoded again. Copying into a full store would
   * evict another last copy, orphan that one, and so on for ever.
   */
  private orphaned(key: string, droppedBy?: string): void {
    const k = parseKey(key);
    const content = k && this.store.get(k.contentId);
    const st = content?.map.shards[k!.index]?.renditions[k!.rendition];
    if (!k || !st || st.status !== 'ready') return;
    this.counters.orphans++;
    if (this.isCached(k)) {
      this.emit('shard-orphaned', { key, action: 'from-cache' });
      this.replicateTo(key, st.sha256!, st.size ?? 1, 1, 'last holder left; copy from the cache', { ...(droppedBy && { exclude: droppedBy }), needRoom: true });
    } else {
      this.emit('shard-orphaned', { key, action: 're-encode' });
      st.status = 'pending';
      // One leave can orphan hundreds of shards: schedule once, after it.
      this.scheduleSoon();
    }
  }

  /**
   * Sends up to `n` `replicate` orders for a key to the least-loaded able
   * encoders: not `exclude`, and with `needRoom`, only those whose store (as
   * last reported: capabilities and heartbeats) takes `size` bytes without
   * evicting.
   */
  private replicateTo(key: string, sha256: string, size: number, n: number, reason: string, opts: { exclude?: string; needRoom?: boolean } = {}): number {
    const k = parseKey(key)!;
    const holders = [...(this.holders.get(key) ?? [])].filter((p) => !this.health.isQuarantined(p));
    const cached = this.isCached(k);
    if (holders.length === 0 && !cached) return 0;
    let pending = this.replicating.get(key);
    if (!pending) this.replicating.set(key, (pending = new Map()));
    // Orders given since the last sweep count as load. Every order is answered by one message
    // (shard-stored or replicate-failed) that counts against the encoder's own message rate limit,
    // and load read from heartbeats does not move within a sweep: one pass over many hot shards, or
    // one leave orphaning hundreds, sent every order to the same least-loaded tab (426 in one second
    // in the churn simulation), whose answers then got it closed for flooding (1008) with all it held.
    const given = (id: string) => this.replicateOrdersThisSweep.get(id) ?? 0;
    const targets = [...this.peers.values()]
      .filter((p) => p.role === 'encoder' && p.id !== opts.exclude && !p.holdings.has(key) && !pending.has(p.id) && !this.health.isQuarantined(p.id) && (this.replicateBackoff.get(p.id) ?? 0) <= this.now())
      .filter((p) => !opts.needRoom || p.capabilities?.storageBytes === undefined || p.heldBytes + size <= p.capabilities.storageBytes)
      .sort((a, b) => a.serving + a.jobs.size + given(a.id) - (b.serving + b.jobs.size + given(b.id)) || a.holdings.size - b.holdings.size)
      .slice(0, n);
    for (const t of targets) {
      this.replicateOrdersThisSweep.set(t.id, given(t.id) + 1);
      pending.set(t.id, this.now());
      t.conn.send({ type: 'replicate', key: k, sha256, size, from: holders.slice(0, 16), cached });
      this.counters.replications++;
      this.emit('replicate', { key, peerId: t.id, from: holders.length, cached, reason });
    }
    return targets.length;
  }

  private shardStored(peer: Peer, msg: Extract<ClientMessage, { type: 'shard-stored' }>): void {
    const key = shardKeyString(msg.key);
    const asked = this.replicating.get(key)?.delete(peer.id);
    const st = this.store.get(msg.key.contentId)?.map.shards[msg.key.index]?.renditions[msg.key.rendition];
    if (!asked) throw new ProtocolError('not-asked', `no replication of ${key} was asked of you`);
    if (st?.status !== 'ready' || st.sha256 !== msg.sha256) throw new ProtocolError('hash-mismatch', `${key}: the stored copy does not match the accepted hash`);
    this.addHolder(peer.id, key);
    let set = this.replicas.get(key);
    if (!set) this.replicas.set(key, (set = new Set()));
    set.add(peer.id);
    this.emit('replica-stored', { key, peerId: peer.id });
  }

  /**
   * Runs every sweep: hot shards (or shards whose holders are busy) get
   * replicas up to their want; replicas of shards cool for long enough are
   * released; stale replication orders are forgotten.
   */
  private replicationPass(): void {
    const now = this.now();
    for (const [key, pending] of this.replicating) {
      for (const [peerId, at] of pending) {
        if (now - at <= this.config.replicateTimeoutMs) continue;
        // An encoder that lets orders lapse is not asked again for a while (it may be overloaded or broken).
        pending.delete(peerId);
        this.replicateBackoff.set(peerId, now + 4 * this.config.replicateTimeoutMs);
      }
      if (pending.size === 0) this.replicating.delete(key);
    }
    const busy = (id: string) => (this.peers.get(id)?.serving ?? 0) >= this.config.busyServing;
    // Every shard with any demand: a cool shard still wants a copy when all its holders are busy.
    for (const { contentId, index, rate } of this.demand.hot(0.01)) {
      const content = this.store.get(contentId);
      const shard = content?.map.shards[index];
      if (!shard) continue;
      for (const [rendition, st] of Object.entries(shard.renditions)) {
        if (st.status !== 'ready' || !st.sha256) continue;
        const key = shardKeyString({ contentId, rendition, index });
        const holders = [...(this.holders.get(key) ?? [])];
        let want = rate >= this.config.replicateAboveRate ? Math.ceil(rate / this.config.perReplicaRate) : 1;
        if (holders.length > 0 && holders.every(busy)) want = Math.max(want, holders.length + 1);
        want = Math.min(want, this.config.maxReplicas);
        const have = holders.length + (this.replicating.get(key)?.size ?? 0);
        if (want > have && holders.length > 0) this.replicateTo(key, st.sha256, st.size ?? 1, want - have, `demand ${rate.toFixed(1)} req/s`);
        if (rate < this.config.releaseBelowRate) {
          if (!this.coolSince.has(key)) this.coolSince.set(key, now);
        } else this.coolSince.delete(key);
      }
    }
    // Release replicas of shards that stayed cool, never the last copy.
    for (const [key, set] of this.replicas) {
      const k = parseKey(key);
      const rate = k ? this.demand.rate(k.contentId, k.index) : 0;
      if (rate >= this.config.releaseBelowRate) {
        this.coolSince.delete(key);
        continue;
      }
      const since = this.coolSince.get(key) ?? now;
      this.coolSince.set(key, since);
      if (now - since < this.config.releaseAfterMs) continue;
      for (const peerId of [...set]) {
        if ((this.holders.get(key)?.size ?? 0) <= 1) break;
        set.delete(peerId);
        this.removeHolder(peerId, key);
        this.peers.get(peerId)?.conn.send({ type: 'release', key: k!, reason: 'demand has cooled' });
        this.counters.releases++;
        this.emit('replica-released', { key, peerId });
      }
      if (set.size === 0) {
        this.replicas.delete(key);
        this.coolSince.delete(key);
      }
    }
  }

  private buildJob(content: Content, renditionId: string, first: number, fixed?: number[]): Job {
    const map = content.map;
    const r = map.renditions.find((x) => x.id === renditionId)!;
    const keyframes = content.meta.facts.video?.keyframeTimes ?? [];
    const keyOf = (i: number) => shardKeyString({ contentId: map.contentId, rendition: renditionId, index: i });
    // Re-queued shards travel together, apart from fresh ones, so a lost job comes back as exactly its unfinished part.
    const retry = (this.attempts.get(keyOf(first)) ?? 0) > 0;
    // One exec encodes one spec: a per-shard override of codec, size or bitrate ends the run.
    const specOf = (i: number) => (isVideoRendition(r) ? JSON.stringify(effectiveVideoSpec(map, map.shards[i]!, renditionId)) : '');
    const spec = specOf(first);
    const indices = fixed ?? planRun(
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
      upload: this.config.testHooks.verifyShardBytes,
      ...(this.config.testHooks.verifyShardBytes && { uploadToken: randomBytes(18).toString('base64url') }),
      ...(kind === 'audio' && { leadPackets, tailPackets }),
    };
  }

  private assign(peer: Peer, job: Job, klass: JobClass, check?: CrossCheck): void {
    const content = this.store.get(job.contentId)!;
    if (job.uploadToken) this.uploadTokens.set(job.uploadToken, job.id);
    // The job names the engine, so the pool's choice is what runs; a cross-check runs the engine it checks.
    const engine = check ? check.engine.split('@')[0] : this.engineFor(peer, job.video?.codec ?? job.audio?.codec ?? '');
    if (engine) job.engine = engine;
    if (check) {
      this.jobs.set(job.id, { job, peerId: peer.id, assignedAt: this.now(), done: new Set(), progress: 0, klass, check, results: new Map() });
      peer.jobs.add(job.id);
      this.counters.jobsAssigned++;
      peer.conn.send({ type: 'job', job });
      this.emit('job-assigned', { jobId: job.id, peerId: peer.id, key: `${job.contentId}/${job.rendition}`, shards: job.shards.length, klass });
      return;
    }
    for (const s of job.shards) {
      this.inFlight.set(shardKeyString({ contentId: job.contentId, rendition: job.rendition, index: s.index }), job.id);
      const st = content.map.shards[s.index]!.renditions[job.rendition]!;
      st.status = 'encoding';
    }
    this.jobs.set(job.id, { job, peerId: peer.id, assignedAt: this.now(), done: new Set(), progress: 0, klass });
    peer.jobs.add(job.id);
    this.counters.jobsAssigned++;
    peer.conn.send({ type: 'job', job });
    this.emit('job-assigned', { jobId: job.id, peerId: peer.id, key: `${job.contentId}/${job.rendition}`, shards: job.shards.length, klass });
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
    for (let i = this.checks.length - 1; i >= 0; i--) if (this.checks[i]!.contentId === contentId) this.checks.splice(i, 1);
    this.trust.forgetPrefix(prefix);
    for (const key of [...this.holders.keys()]) {
      if (!key.startsWith(prefix)) continue;
      for (const p of this.holders.get(key)!) this.peers.get(p)?.holdings.delete(key);
      this.holders.delete(key);
    }
    this.schedule();
  }

  /**
   * Per content, per rendition: one character per shard for its state
   * (r ready, e encoding, p pending, f failed) and its live holder count, for
   * the /pool heat map.
   */
  heat() {
    return this.store.all().map((c) => ({
      id: c.meta.id,
      name: c.meta.name,
      shards: c.map.shards.length,
      renditions: c.map.renditions.map((r) => ({
        id: r.id,
        status: c.map.shards.map((s) => (s.renditions[r.id]?.status ?? '-')[0]).join(''),
        holders: c.map.shards.map((s) => this.holders.get(shardKeyString({ contentId: c.meta.id, rendition: r.id, index: s.index }))?.size ?? 0),
        cached: c.map.shards.map((s) => (this.isCached({ contentId: c.meta.id, rendition: r.id, index: s.index }) ? '1' : '0')).join(''),
      })),
      demand: c.map.shards.map((s) => Number(this.demand.rate(c.meta.id, s.index).toFixed(2))),
    }));
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
        serving: p.serving,
        heldBytes: p.heldBytes,
        ...(p.role === 'encoder' && {
          health: (() => {
            const h = this.health.get(p.id);
            return {
              score: Number(this.health.score(p.id).toFixed(3)),
              speed: Number(h.speed.toFixed(3)),
              ok: h.ok,
              failed: h.failed,
              timedOut: h.timedOut,
              invalid: h.invalid,
              quarantinedUntil: h.quarantinedUntil > this.now() ? h.quarantinedUntil : 0,
              trust: (() => {
                const t = this.trust.get(p.id);
                return { checkRate: Number(this.trust.rate(p.id).toFixed(3)), passed: t.passed, failed: t.failed, unverified: this.trust.unverifiedCount(p.id) };
              })(),
              ...(h.quarantinedUntil > this.now() && h.quarantineReason && { quarantineReason: h.quarantineReason }),
            };
          })(),
        }),
      })),
      viewers: this.demand.active().map((v) => ({ contentId: v.contentId, index: v.index })),
      jobs: [...this.jobs.values()].map((aj) => ({
        id: aj.job.id,
        peerId: aj.peerId,
        contentId: aj.job.contentId,
        rendition: aj.job.rendition,
        shards: aj.job.shards.map((s) => s.index),
        done: aj.done.size,
        progress: aj.progress,
        deadline: aj.job.deadline,
        klass: aj.klass,
        ...(aj.check && { check: aj.check.stage }),
      })),
      contents: this.heat(),
      counters: { ...this.counters },
      trust: { ...this.trust.counters, checksWaiting: this.checks.length },
      events: this.recentEvents.slice(-50),
    };
  }
}

/** "content/rendition/index" back to a key. */
function parseKey(key: string): ShardKey | undefined {
  const m = /^(.+)\/([^/]+)\/(\d+)$/.exec(key);
  return m ? { contentId: m[1]!, rendition: m[2]!, index: Number(m[3]) } : undefined;
}

interface Candidate {
  content: Content;
  /** Publication order of the content. */
  order: number;
  rendition: string;
  codec: string;
  index: number;
  klass: JobClass;
  /** Lower is sooner: seconds to a playhead (live), start time (start), minus predicted demand (background). */
  urgency: number;
  retry: boolean;
}

const CLASS_RANK: Record<JobClass, number> = { live: 0, start: 1, background: 2 };

/** Live before start before background; within a class re-queued work first, then urgency, content order, position. */
function compareCandidates(a: Candidate, b: Candidate): number {
  return (
    CLASS_RANK[a.klass] - CLASS_RANK[b.klass] ||
    Number(b.retry) - Number(a.retry) ||
    a.urgency - b.urgency ||
    a.order - b.order ||
    a.index - b.index
  );
}
