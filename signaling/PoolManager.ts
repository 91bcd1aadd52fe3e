/**
 * The pool manager: a facade over the pool's modules (signaling/pool/). It
 * owns no pool state itself; it wires the modules, routes each validated
 * client message through a dispatch table, and holds the few rules that span
 * modules (assigning and re-queuing jobs, accepting shards, quarantine).
 * Transport-agnostic: the WebSocket layer hands it validated messages and
 * gives it a `send` function per peer.
 *
 * Who owns what: Sessions (peers, resume secrets), AvailabilityIndex (holders
 * and holdings, orphans), JobLedger (jobs, tokens, staged uploads, attempts,
 * in flight), CrossChecks (check queue), Replication (orders, replicas),
 * Stats (counters and recent events, from events), Views (snapshots);
 * Scheduler and JobBuilder are pure policies; ContentStore is the only
 * writer of shard-variant state.
 */
import { randomBytes } from 'node:crypto';
import type { ClientMessage, Job } from '../src/shared/protocol.ts';
import { variantKeyString, contentKeyPrefix, type VariantKey } from '../src/shared/variantKey.ts';
import type { ServerConfig } from './config.ts';
import type { Content, ContentStore } from './ContentStore.ts';
import { TypedEmitter } from '../src/shared/events.ts';
import { Demand } from './policy/Demand.ts';
import { Health } from './policy/Health.ts';
import { Trust } from './policy/Trust.ts';
import { AvailabilityIndex } from './pool/AvailabilityIndex.ts';
import { CrossChecks } from './pool/CrossChecks.ts';
import { engineClaimProblem } from './pool/EngineClaims.ts';
import { buildJob, runIndices } from './pool/JobBuilder.ts';
import { JobLedger } from './pool/JobLedger.ts';
import { Replication } from './pool/Replication.ts';
import { Reports } from './pool/Reports.ts';
import { candidates, engineFor, plan, playheadTimes, type Candidate, type PlanInput } from './pool/Scheduler.ts';
import { Sessions } from './pool/Sessions.ts';
import { Stats } from './pool/Stats.ts';
import { failureKind, VariantFaults } from './pool/VariantFaults.ts';
import { Every, HeartbeatExpiry, JobDeadlines, Once, Ticker } from './pool/tasks.ts';
import {
  ProtocolError,
  type ActiveJob,
  type CrossCheck,
  type JobClass,
  type Outbox,
  type Peer,
  type PeerConnection,
  type PoolEvents,
  type StagedShard,
} from './pool/types.ts';
import { Verification } from './pool/Verification.ts';
import { Views } from './pool/Views.ts';

export { AUDIO_RUN_OVERLAP } from './pool/JobBuilder.ts';
export { ProtocolError } from './pool/types.ts';
export type { ActiveJob, CrossCheck, JobClass, Peer, PeerConnection, PoolEventRecord, PoolEvents, Role, StagedShard } from './pool/types.ts';

type Msg<T extends ClientMessage['type']> = Extract<ClientMessage, { type: T }>;
type Handlers = { [T in ClientMessage['type']]: (peer: Peer, msg: Msg<T>) => void };

export class PoolManager extends TypedEmitter<PoolEvents> {
  readonly health: Health;
  readonly trust: Trust;
  readonly demand: Demand;
  readonly availability: AvailabilityIndex;
  readonly ledger = new JobLedger();
  readonly sessions: Sessions;
  readonly crossChecks: CrossChecks;
  readonly verification: Verification;
  readonly replication: Replication;
  readonly reports: Reports;
  readonly stats: Stats;
  readonly views: Views;
  private readonly outbox: Outbox;
  private readonly faults = new VariantFaults();
  private ticker: Ticker | undefined;
  private scheduleQueued = false;

  constructor(
    private readonly store: ContentStore,
    private readonly config: ServerConfig,
    private readonly now: () => number = Date.now,
    /** Whether the server's cache holds a shard variant. */
    isCached: (k: VariantKey) => boolean = () => false,
    /** Draws for the trust sampling (tests pass a fixed sequence). */
    random: () => number = Math.random,
  ) {
    super();
    this.health = new Health(config, now);
    this.demand = new Demand(config, now);
    this.trust = new Trust(config, random);
    this.reports = new Reports(config, now);
    this.availability = new AvailabilityIndex(config.maxHoldingsPerEncoder);
    this.sessions = new Sessions({ jobsOf: (id) => this.ledger.jobsOf(id), holdingsOf: (id) => this.availability.heldBy(id) });
    this.outbox = { send: (id, msg) => this.sessions.get(id)?.conn.send(msg), emit: (type, detail) => this.emit(type, detail) };
    this.stats = new Stats(this, now);
    const soon = () => this.scheduleSoon();
    this.replication = new Replication(store, this.availability, this.sessions, this.health, this.demand, isCached, this.outbox, config, now, soon);
    this.crossChecks = new CrossChecks(
      store,
      this.availability,
      this.ledger,
      this.trust,
      this.health,
      this.outbox,
      {
        addHolder: (peerId, key) => this.addHolder(peerId, key),
        forgetReplica: (peerId, key) => this.replication.forgetReplica(peerId, key),
        quarantined: (peerId, reason) => this.quarantined(peerId, reason),
        scheduleSoon: soon,
      },
      config,
    );
    this.verification = new Verification(
      store,
      this.trust,
      this.health,
      this.outbox,
      {
        convict: (peerId, wrong) => this.crossChecks.convict(peerId, wrong),
        invalid: (peerId) => this.noteInvalid(peerId),
        timedOut: (peerId) => this.noteFailure(peerId, 'timeout'),
        jobFor: (contentId, rendition, indices) => {
          const content = store.get(contentId);
          return content && buildJob(content, rendition, indices, { id: randomBytes(8).toString('hex'), now: this.now() }, config);
        },
        sources: (k, except) => ({
          from: [...(this.availability.holders.get(variantKeyString(k)) ?? [])].filter((p) => p !== except).slice(0, 16),
          cached: isCached(k),
        }),
        holds: (peerId, key) => this.availability.holds(peerId, key),
        scheduleSoon: soon,
      },
      config,
      now,
    );
    this.views = new Views({
      store,
      sessions: this.sessions,
      ledger: this.ledger,
      index: this.availability,
      health: this.health,
      trust: this.trust,
      demand: this.demand,
      stats: this.stats,
      checks: this.crossChecks,
      reports: this.reports,
      isCached,
      now,
    });
    // The public status of a variant is computed from the store's durable state and this live state.
    store.setLiveState({ encoding: (key) => this.ledger.isInFlight(key), orphaned: (key) => this.availability.isOrphaned(key) });
  }

  // ------------------------------------------------------------ read-only views (server, metrics, tests)

  get peers(): ReadonlyMap<string, Peer> {
    return this.sessions.peers;
  }
  get jobs(): ReadonlyMap<string, ActiveJob> {
    return this.ledger.jobs;
  }
  /** Variant key -> ids of peers holding the accepted bytes. */
  get holders(): ReadonlyMap<string, ReadonlySet<string>> {
    return this.availability.holders;
  }
  /** Cross-checks waiting for an able verifier, oldest first. */
  get checks(): readonly CrossCheck[] {
    return this.crossChecks.queue;
  }
  get counters() {
    return this.stats.counters;
  }
  get recentEvents() {
    return this.stats.recent;
  }
  heat() {
    return this.views.heat();
  }
  /** A snapshot for /api/pool. */
  snapshot() {
    const v = this.verification;
    return { ...this.views.snapshot(), verification: { ...v.counters, waiting: v.queue.length, running: v.inProgress.length } };
  }

  // ------------------------------------------------------------ lifecycle

  start(): void {
    const period = Math.max(100, Math.min(1000, this.config.heartbeatTimeoutMs / 4));
    this.ticker = new Ticker(
      period,
      [
        new Every('replication-window', period, () => this.replication.beginPass()),
        new HeartbeatExpiry(period, this.config.heartbeatTimeoutMs, (cutoff) =>
          this.sessions.silentSince(cutoff).map((p) => ({ id: p.id, close: () => this.dropSilent(p) })),
        ),
        // After a restart nobody holds anything until tabs reconnect and announce their holdings.
        // A tab not back within the grace period (--restart-grace-ms) is as lost as a silent one: a
        // shard only it held, with no cached copy either (a kill can come between acknowledgement and
        // cache write, or the cache is off), would otherwise stay "ready" with no copy anywhere, and
        // never be encoded again.
        new Once('restart-unheld-check', period, this.now() + this.config.restartGraceMs, () => this.replication.orphanUnheld()),
        new JobDeadlines(
          period,
          (now) => [...this.ledger.jobs.values()].filter((aj) => aj.job.deadline < now),
          (aj) => this.expireJob(aj),
        ),
        new Every('verify-deadlines', period, (now) => this.verification.expire(now)),
        new Every('replication-pass', period, () => this.replication.pass()),
        new Every('health-pruning', period, () => this.health.prune((id) => this.sessions.peers.has(id))),
        new Every('schedule', period, () => this.schedule()),
      ],
      this.now,
    );
    this.ticker.start();
  }

  stop(): void {
    this.ticker?.stop();
    this.sessions.closeAll(1001, 'server shutting down');
  }

  // ------------------------------------------------------------ connections

  /** Handles `hello`; returns the peer id, or throws a ProtocolError. */
  join(conn: PeerConnection, hello: Msg<'hello'>): string {
    if (hello.role === 'encoder' && !hello.capabilities) {
      throw new ProtocolError('missing-capabilities', 'an encoder must say what it can encode: hello.capabilities');
    }
    const { peer, resume } = this.sessions.open(conn, hello.role, this.now(), hello.capabilities, hello.peerId, hello.resume);
    const id = peer.id;
    if (hello.role === 'encoder') this.health.benchmark(id, Math.max(0, ...(hello.capabilities?.engines.map((e) => e.speed ?? 0) ?? [0])) || undefined);
    conn.send({ type: 'welcome', protocol: 1, peerId: id, resume, heartbeatMs: this.config.heartbeatMs, iceServers: this.config.iceServers });
    for (const h of hello.holdings ?? []) {
      // Only bytes matching the accepted hash count: a holding is a claim, not proof.
      const st = this.store.get(h.key.contentId)?.map.shards[h.key.index]?.renditions[h.key.rendition];
      if (!st || st.sha256 !== h.sha256) continue;
      const key = variantKeyString(h.key);
      // A reloaded tab brings back a shard orphaned while it was away: no need to encode it again.
      if (st.status === 'pending') this.availability.clearOrphan(key);
      if (st.status === 'ready') this.addHolder(id, key);
    }
    this.emit('peer-joined', { peerId: id, role: hello.role });
    // A viewer brings no capacity and no work: nothing to schedule.
    if (hello.role === 'encoder') this.schedule();
    return id;
  }

  private dropSilent(p: Peer): void {
    p.conn.close(4000, 'missed heartbeats');
    this.leave(p.id, 'missed heartbeats');
  }

  /** The peer's socket closed or it went silent: its unfinished work goes back to the queue at once. */
  leave(peerId: string, reason: string): void {
    const peer = this.sessions.close(peerId);
    if (!peer) return;
    let requeued = 0;
    for (const jobId of [...this.ledger.jobsOf(peerId)]) requeued += this.requeueJob(jobId, `encoder lost: ${reason}`, false);
    for (const key of this.availability.removePeer(peerId)) this.replication.orphaned(key);
    this.replication.peerLeft(peerId);
    this.verification.peerLeft(peerId);
    if (peer.role === 'viewer') this.demand.leave(peerId);
    this.reports.forget(peerId);
    this.emit('peer-lost', { peerId, role: peer.role, reason, requeued });
    if (peer.role === 'encoder') this.schedule();
  }

  // ------------------------------------------------------------ messages

  /** A message that failed validation at the socket (counted as a bad message); `peerId` undefined before hello. */
  badMessage(peerId: string | undefined, code: string): void {
    this.emit('bad-message', { ...(peerId !== undefined && { peerId }), code });
  }

  /** Handles one validated message from a joined peer. Protocol violations get an error reply. */
  handle(peerId: string, msg: ClientMessage): void {
    const peer = this.sessions.seen(peerId, this.now());
    if (!peer) return;
    try {
      (this.handlers[msg.type] as (peer: Peer, msg: ClientMessage) => void)(peer, msg);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.emit('bad-message', { peerId, code: e.code });
      peer.conn.send({ type: 'error', code: e.code, message: e.message, ref: msg.type });
    }
  }

  /** One handler per client message type. */
  private readonly handlers: Handlers = {
    hello: () => {
      throw new ProtocolError('already-joined', 'hello was already received on this connection');
    },
    heartbeat: (peer, msg) => {
      if (msg.activeJobs !== undefined) peer.activeJobsReported = msg.activeJobs;
      if (msg.heldBytes !== undefined) peer.heldBytes = msg.heldBytes;
      if (msg.serving !== undefined) peer.serving = msg.serving;
    },
    'job-progress': (peer, msg) => {
      this.ledger.own(peer.id, msg.jobId).progress = msg.progress;
    },
    'shard-ready': (peer, msg) => this.shardReady(peer, msg),
    'job-done': (peer, msg) => this.jobDone(peer, msg.jobId),
    'job-failed': (peer, msg) => {
      const aj = this.ledger.own(peer.id, msg.jobId);
      peer.failedJobs++;
      const blamed = this.jobsFault(aj, failureKind('job-failed', msg.reason), `encoder failed: ${msg.reason}`);
      this.requeueJob(msg.jobId, `encoder failed: ${msg.reason}`, true);
      if (!blamed) this.noteFailure(peer.id, 'failed');
      this.schedule();
    },
    locate: (peer, msg) => this.locate(peer, msg),
    signal: (peer, msg) => {
      const to = this.sessions.get(msg.to);
      if (!to) throw new ProtocolError('unknown-peer', `peer ${msg.to} is not connected`);
      to.conn.send({ type: 'signal', from: peer.id, data: msg.data });
    },
    capabilities: (peer, msg) => {
      if (peer.role !== 'encoder') throw new ProtocolError('not-an-encoder', 'only encoders have capabilities');
      peer.capabilities = msg.capabilities;
      this.health.benchmark(peer.id, Math.max(0, ...msg.capabilities.engines.map((e) => e.speed ?? 0)) || undefined);
      this.schedule();
    },
    'shard-dropped': (peer, msg) => {
      this.removeHolder(peer.id, variantKeyString(msg.key), true);
      this.replication.forgetReplica(peer.id, variantKeyString(msg.key));
    },
    'shard-stored': (peer, msg) => this.replication.stored(peer, msg, (id, key) => this.addHolder(id, key)),
    'replicate-failed': (peer, msg) => this.replication.failed(peer.id, msg.key),
    'report-peer': (peer, msg) => this.reportPeer(peer, msg),
    'verify-result': (peer, msg) => this.verification.result(peer.id, msg.verifyId, msg.shards),
    'verify-failed': (peer, msg) => this.verification.failed(peer.id, msg.verifyId, msg.reason),
  };

  /**
   * A peer says another served it bad bytes. Never a conviction: the report
   * counts (once per reporter, key and peer, within the reporter's budget) only
   * about a peer the server lists as a holder, and then puts that peer last in
   * the reporter's own holder lists; where the accepted variant is the
   * reported encoder's own and unverified, the server has it encoded again
   * (a cross-check convicts, if anything does).
   */
  private reportPeer(peer: Peer, msg: Msg<'report-peer'>): void {
    const key = variantKeyString(msg.key);
    if (msg.peerId === peer.id || !this.availability.holds(msg.peerId, key)) return;
    if (this.reports.consider(peer.id, key, msg.peerId) !== 'counted') return;
    const recheck = this.trust.isUnverified(msg.peerId, key) && this.crossChecks.recheck(msg.peerId, msg.key);
    this.emit('peer-reported', { key: msg.key, peerId: msg.peerId, reporter: peer.id, reason: msg.reason, recheck });
  }

  private jobDone(peer: Peer, jobId: string): void {
    const aj = this.ledger.own(peer.id, jobId);
    const missing = aj.job.shards.filter((s) => !aj.done.has(s.index)).length;
    if (missing > 0) {
      peer.failedJobs++;
      this.requeueJob(jobId, `job reported done with ${missing} shards missing`, true);
    } else {
      peer.completedJobs++;
      this.health.jobDone(peer.id, aj.job.end - aj.job.start, this.now() - aj.assignedAt);
      this.ledger.remove(jobId);
      this.emit('job-done', { jobId, peerId: peer.id });
      if (aj.check) this.crossChecks.done(peer, aj);
      // Shards of engines whose bytes differ run to run are verified by picture, not by hash.
      else if (!this.verification.afterJob(peer.id, aj.job.contentId, aj.job.rendition, [...aj.done])) this.crossChecks.afterJob(peer, aj);
    }
    this.schedule();
  }

  private shardReady(peer: Peer, msg: Msg<'shard-ready'>): void {
    if (peer.role !== 'encoder') throw new ProtocolError('not-an-encoder', 'only encoders report shards');
    const content = this.store.get(msg.key.contentId);
    const st = content?.map.shards[msg.key.index]?.renditions[msg.key.rendition];
    const key = variantKeyString(msg.key);
    if (!content || !st) throw new ProtocolError('unknown-shard', `no shard ${key}`);
    const aj = msg.jobId !== undefined ? this.ledger.own(peer.id, msg.jobId) : undefined;
    if (aj && !inJob(aj.job, msg.key)) throw new ProtocolError('not-in-job', `shard ${key} is not part of job ${msg.jobId}`);
    let staged: StagedShard | undefined;
    if (aj && this.config.testHooks.verifyShardBytes) {
      // The server accepts what it has checked, never an encoder's word: the bytes come first.
      staged = this.ledger.staging(aj.job.id, msg.key.index);
      const why = !staged
        ? "not uploaded: PUT the shard with the job's upload token before shard-ready"
        : staged.sha256 !== msg.sha256 || staged.size !== msg.size || staged.lead !== msg.lead || staged.tail !== msg.tail
          ? 'the report differs from the uploaded bytes'
          : engineClaimProblem(aj.job, peer.capabilities, msg.engine);
      if (why) {
        peer.conn.send({ type: 'shard-rejected', key: msg.key, reason: why });
        this.emit('shard-rejected', { key: msg.key, peerId: peer.id, reason: why });
        if (staged) this.noteInvalid(peer.id);
        return;
      }
      this.ledger.unstage(aj.job.id, msg.key.index);
    }
    const variant = {
      sha256: msg.sha256,
      size: msg.size,
      ...(msg.engine !== undefined && { engine: msg.engine }),
      ...(msg.lead !== undefined && { lead: msg.lead }),
      ...(msg.tail !== undefined && { tail: msg.tail }),
    };
    if (aj?.check) {
      this.crossChecks.reported(peer, aj, msg.key, { ...variant, ...(staged?.bytes && { bytes: staged.bytes }) });
      return;
    }
    if (st.status === 'ready') {
      if (st.sha256 !== msg.sha256) {
        peer.conn.send({ type: 'shard-rejected', key: msg.key, reason: 'hash differs from the accepted variant' });
        this.emit('shard-rejected', { key: msg.key, peerId: peer.id, reason: 'hash mismatch' });
        return;
      }
    } else {
      // A re-encode of an orphaned shard may differ byte for byte from the lost one: the new variant replaces it.
      if (!aj) throw new ProtocolError('not-assigned', `shard ${key} was not assigned to you`);
      // The same bytes as another shard of the rendition: one shard passed off as another, or pictures that
      // really repeat (a still). The server cannot tell which, so the job is cross-checked whatever the trust.
      if (sameBytesElsewhere(content, msg.key, msg.sha256)) this.trust.suspect(peer.id);
      this.store.accept(msg.key.contentId, msg.key.rendition, msg.key.index, variant);
      this.availability.clearOrphan(key);
      peer.shardsEncoded++;
      this.trust.accepted(peer.id, key);
      this.emit('shard-accepted', { key: msg.key, peerId: peer.id, sha256: msg.sha256, ...(staged?.bytes && { bytes: staged.bytes }) });
    }
    if (aj) this.ledger.doneShard(aj, msg.key);
    this.faults.forget(msg.key);
    this.addHolder(peer.id, key);
    peer.conn.send({ type: 'shard-accepted', key: msg.key, sha256: msg.sha256 });
    if (isComplete(content)) this.emit('content-complete', { contentId: content.meta.id });
  }

  /** Records a holder if the peer is connected (the index enforces the holdings cap). */
  private addHolder(peerId: string, key: string): void {
    if (this.sessions.get(peerId)) this.availability.add(peerId, key);
  }

  /** `dropped`: the peer evicted it to make room, so it is no place to copy it back to. */
  private removeHolder(peerId: string, key: string, dropped = false): void {
    if (this.availability.remove(peerId, key)) this.replication.orphaned(key, dropped ? peerId : undefined);
  }

  private locate(peer: Peer, msg: Msg<'locate'>): void {
    const content = this.store.get(msg.contentId);
    if (!content) throw new ProtocolError('unknown-content', `no content ${msg.contentId}`);
    this.emit('located', { peerId: peer.id, contentId: msg.contentId });
    // A window past the end (valid: `from` is bounded by the schema, not by this content) asks for nothing;
    // a negative count would run the requests counter backwards.
    if (peer.role === 'viewer') this.demand.locate(peer.id, msg.contentId, msg.from, Math.max(0, Math.min(msg.count, content.map.shards.length - msg.from)));
    const shards = this.views.holdersOf(content, msg.from, msg.count, msg.renditions, peer.id);
    peer.conn.send({ type: 'holders', requestId: msg.requestId, contentId: msg.contentId, shards });
  }

  // ------------------------------------------------------------ jobs

  /**
   * Puts a job's unfinished shards back in the queue. `counts` says whether
   * this counts as a failed attempt (a lost socket does not count against the
   * shards: the encoder went, not the work). Returns the number re-queued.
   */
  private requeueJob(jobId: string, reason: string, counts: boolean): number {
    const r = this.ledger.requeue(jobId, counts, this.config.maxJobAttempts, (k) => {
      const st = this.store.get(k.contentId)?.map.shards[k.index]?.renditions[k.rendition];
      // A failed variant was given up (out of attempts, or the job's own fault): it does not go back.
      return st && (st.status === 'ready' || st.status === 'failed');
    });
    if (!r) return 0;
    const { aj } = r;
    if (aj.check) {
      // A check's shards are accepted already: only the check goes back, for someone else.
      this.crossChecks.requeue(aj.check, aj.peerId);
      this.emit('check-requeued', { jobId, peerId: aj.peerId });
      return 0;
    }
    for (const f of r.failed) {
      this.store.markFailed(f.key.contentId, f.key.rendition, f.key.index);
      this.faults.forget(f.key);
      this.emit('shard-failed', { ...f, reason: `${f.attempts} attempts failed; last: ${reason}` });
    }
    this.emit('job-requeued', { jobId, peerId: aj.peerId, indices: r.indices, rendition: aj.job.rendition, contentId: aj.job.contentId, reason });
    return r.indices.length;
  }

  /** A job's deadline passed: cancelled, re-queued (counted), and held against its encoder. */
  private expireJob(aj: ActiveJob): void {
    this.outbox.send(aj.peerId, { type: 'job-cancel', jobId: aj.job.id, reason: 'deadline passed' });
    this.requeueJob(aj.job.id, 'deadline passed', true);
    this.noteFailure(aj.peerId, 'timeout');
  }

  private planInput(): PlanInput {
    const statusOf = (k: VariantKey) => this.store.get(k.contentId)?.map.shards[k.index]?.renditions[k.rendition]?.status;
    return {
      contents: this.store.all(),
      playheads: playheadTimes(this.demand.active(), (id) => this.store.get(id)),
      isPending: (k) => statusOf(k) === 'pending',
      isRetry: (k) => this.ledger.attemptsOf(variantKeyString(k)) > 0,
      predicted: (id, start) => this.demand.predicted(id, start),
      config: this.config,
    };
  }

  /**
   * Gives pending work to encoders with free slots (Scheduler.plan decides):
   * cross-checks go before pre-encoding but never hold up live work; when live
   * work waits and every able encoder is busy, one background job gives way.
   */
  schedule(): void {
    const slotsOf = (p: Peer) => Math.min(p.capabilities?.maxJobs ?? 1, this.config.maxJobsPerEncoder) - p.jobs.size - this.verification.busy(p.id);
    const free = [...this.sessions.peers.values()].filter((p) => p.role === 'encoder' && slotsOf(p) > 0 && !this.health.isQuarantined(p.id));
    const input = this.planInput();
    const list = candidates(input);
    if (!list.some((c) => c.klass === 'live')) {
      const slots = free.map((peer) => ({ peer, free: slotsOf(peer) }));
      this.verification.take(slots);
      for (const pick of this.crossChecks.take(slots)) {
        this.assign(pick.peer, this.newJob(this.store.get(pick.check.contentId)!, pick.check.rendition, pick.indices), 'background', pick.check);
      }
    }
    const encoders = free.map((p) => ({
      id: p.id,
      free: slotsOf(p),
      score: this.health.score(p.id),
      load: p.jobs.size,
      joinedAt: p.joinedAt,
      engines: p.capabilities?.engines ?? [],
    }));
    const running = [...this.ledger.jobs.values()]
      .filter((aj) => aj.klass === 'background' && this.sessions.get(aj.peerId))
      .map((aj) => ({
        jobId: aj.job.id,
        peerId: aj.peerId,
        progress: aj.progress,
        assignedAt: aj.assignedAt,
        engines: this.sessions.get(aj.peerId)!.capabilities?.engines ?? [],
      }));
    const p = plan(input, list, encoders, running);
    for (const a of p.assignments) this.assign(this.sessions.get(a.peerId)!, this.newJob(a.content, a.rendition, a.indices), a.klass);
    if (p.preempt) this.preempt(p.preempt.jobId, p.preempt.peerId, p.preempt.pick, input);
  }

  private preempt(jobId: string, peerId: string, pick: Candidate, input: PlanInput): void {
    const peer = this.sessions.get(peerId)!;
    peer.conn.send({ type: 'job-cancel', jobId, reason: 'preempted by live demand' });
    this.requeueJob(jobId, 'preempted by live demand', false);
    this.emit('job-preempted', { jobId, peerId, for: variantKeyString({ contentId: pick.content.meta.id, rendition: pick.rendition, index: pick.index }) });
    const keyOf = (i: number) => ({ contentId: pick.content.map.contentId, rendition: pick.rendition, index: i });
    const indices = runIndices(
      pick.content,
      pick.rendition,
      pick.index,
      (i) => input.isPending(keyOf(i)),
      (i) => input.isRetry(keyOf(i)),
      this.config,
    );
    this.assign(peer, this.newJob(pick.content, pick.rendition, indices), 'live');
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

  private newJob(content: Content, rendition: string, indices: readonly number[]): Job {
    const ids = {
      id: randomBytes(8).toString('hex'),
      now: this.now(),
      ...(this.config.testHooks.verifyShardBytes && { uploadToken: randomBytes(18).toString('base64url') }),
    };
    return buildJob(content, rendition, indices, ids, this.config);
  }

  /** Sends a job and records it; the job names the engine, so the pool's choice is what runs (a check runs the engine it checks). */
  private assign(peer: Peer, job: Job, klass: JobClass, check?: CrossCheck): void {
    const engine = check ? check.engine.split('@')[0] : engineFor(peer.capabilities?.engines ?? [], job.video?.codec ?? job.audio?.codec ?? '');
    if (engine) job.engine = engine;
    this.ledger.add({ job, peerId: peer.id, assignedAt: this.now(), done: new Set(), progress: 0, klass, ...(check && { check, results: new Map() }) });
    peer.conn.send({ type: 'job', job });
    this.emit('job-assigned', { jobId: job.id, peerId: peer.id, key: `${job.contentId}/${job.rendition}`, shards: job.shards.length, klass });
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
    for (const jobId of [...this.ledger.jobsOf(peerId)]) {
      this.outbox.send(peerId, { type: 'job-cancel', jobId, reason: `quarantined: ${reason}` });
      this.requeueJob(jobId, `encoder quarantined: ${reason}`, false);
    }
    this.emit('encoder-quarantined', { peerId, reason, until: this.health.get(peerId).quarantinedUntil });
  }

  // ------------------------------------------------------------ uploads (HTTP PUT)

  /**
   * An upload of a shard's bytes (HTTP PUT) names its job by the job's upload
   * token, which only the encoder it was sent to has seen. Returns the job and
   * the peer, or throws a ProtocolError (unknown token, shard not in the job).
   */
  uploadTarget(token: string, key: VariantKey): { job: Job; peerId: string } {
    const aj = this.ledger.byToken(token);
    if (!aj) throw new ProtocolError('bad-upload-token', 'this upload token belongs to no running job (it may have been re-queued)');
    if (!inJob(aj.job, key)) throw new ProtocolError('not-in-job', `shard ${variantKeyString(key)} is not part of the token's job`);
    return { job: aj.job, peerId: aj.peerId };
  }

  /** The server checked an upload's bytes (taking `checkMs` ms): they wait for the encoder's shard-ready. */
  stage(jobId: string, index: number, shard: StagedShard, checkMs: number): void {
    if (this.ledger.stage(jobId, index, shard)) this.emit('shard-staged', { jobId, index, size: shard.size, checkMs });
  }

  /**
   * An upload failed the structure check (`code`, e.g. "wrong-frames"): the shard is rejected with the reason, and it
   * counts against the encoder, unless another encoder failed the same variant the same way (then it is the job's).
   */
  uploadRefused(jobId: string, key: VariantKey, reason: string, code: string): void {
    const aj = this.ledger.get(jobId);
    if (!aj) return;
    this.emit('upload-refused', { jobId, key, reason });
    this.outbox.send(aj.peerId, { type: 'shard-rejected', key, reason });
    this.emit('shard-rejected', { key, peerId: aj.peerId, reason });
    if (!this.jobsFault(aj, failureKind('refused', code), reason, [key])) this.noteInvalid(aj.peerId);
  }

  /**
   * Notes that `aj`'s encoder failed `keys` (default: the job's unfinished shards) with failure `kind`. Where another
   * encoder failed a variant the same way, the variant is given up (marked failed, with the reason, for /pool) and
   * the other encoders' failures are forgiven. Returns true when any variant was the job's fault.
   */
  private jobsFault(aj: ActiveJob, kind: string, reason: string, keys?: VariantKey[]): boolean {
    if (aj.check) return false;
    const { contentId, rendition } = aj.job;
    const ks = keys ?? aj.job.shards.filter((s) => !aj.done.has(s.index)).map((s) => ({ contentId, rendition, index: s.index }));
    let blamed = false;
    for (const key of ks) {
      const others = this.faults.note(key, aj.peerId, kind);
      if (others.length === 0 || this.store.get(contentId)?.map.shards[key.index]?.renditions[rendition]?.status === 'failed') continue;
      blamed = true;
      for (const p of others) this.health.forgive(p, kind.startsWith('refused') ? 'invalid' : 'failed');
      this.store.markFailed(contentId, rendition, key.index);
      this.faults.forget(key);
      const why = `${others.length + 1} encoders failed it the same way, so the source is at fault, not them: ${reason}`;
      this.emit('shard-failed', { key, attempts: this.ledger.attemptsOf(variantKeyString(key)) + 1, reason: why });
    }
    return blamed;
  }

  /** Called when a content is deleted: its jobs are cancelled and its holdings forgotten. */
  forgetContent(contentId: string): void {
    for (const aj of this.ledger.removeContent(contentId)) this.outbox.send(aj.peerId, { type: 'job-cancel', jobId: aj.job.id, reason: 'content deleted' });
    this.crossChecks.forgetContent(contentId);
    this.faults.forgetContent(contentId);
    this.verification.forgetContent(contentId);
    this.trust.forgetPrefix(contentKeyPrefix(contentId));
    this.availability.removePrefix(contentKeyPrefix(contentId));
    this.schedule();
  }
}

function inJob(job: Job, key: VariantKey): boolean {
  return job.contentId === key.contentId && job.rendition === key.rendition && job.shards.some((s) => s.index === key.index);
}

function sameBytesElsewhere(c: Content, k: VariantKey, sha256: string): boolean {
  return c.map.shards.some((s) => s.index !== k.index && s.renditions[k.rendition]?.sha256 === sha256);
}

function isComplete(c: Content): boolean {
  return c.map.shards.every((s) => Object.values(s.renditions).every((st) => st.status === 'ready'));
}
